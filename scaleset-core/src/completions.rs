//! Which completed jobs the listener's count already reflects
//! (docs/architecture.md#the-patchid-protocol).
//!
//! A runner deletes itself as soon as its job is done, often before the listener's patch for the
//! completion reaches the set. A set that acts on the earlier patch then counts the job in
//! `replicas` but no longer among its runners, and creates a runner for a job that is over. So
//! the listener lists, with every patch, the runners whose completions its count reflects
//! ([`CompletionLog`], the annotation [`COMPLETED_RUNNERS`]), and the set holds back one
//! creation for every runner that finished with a job its count does not reflect yet
//! ([`Completions`]), until the listener's next patch or [`HOLD`] at most.
//!
//! ```
//! use scaleset_core::completions::{CompletionLog, Completions};
//! use scaleset_core::time::Timestamp;
//! let t = Timestamp::from_unix_seconds(1_000);
//! // The set acts on patch 4, which counts the job of runner "a"; then "a" finishes.
//! let mut set = Completions::default();
//! set.finished("a", t);
//! assert_eq!(set.held(Some(""), 4, t).count, 1);
//! // The listener handles the completion; its patch 5 lists "a".
//! let mut log = CompletionLog::default();
//! log.completed("a", t);
//! let listed = log.listed(5, Some(4), t);
//! assert_eq!(listed, "a");
//! assert_eq!(set.held(Some(&listed), 5, t).count, 0);
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::runner_set::ObservedRunner;
use crate::time::Timestamp;

/// The EphemeralRunnerSet annotation the listener writes with each patch: the runners whose
/// job completions its count reflects, comma-separated, among those the set may not have acted
/// on yet. Present (even empty) only when the listener speaks this protocol.
pub const COMPLETED_RUNNERS: &str = "actions.github.com/completed-runners";

/// Longest a set holds back a creation for a finished runner whose completion the listener's
/// count does not reflect: the listener patches within milliseconds of handling a completion,
/// so a hold that lasts this long has missed the patch (a listener restart, a lost message),
/// and the set creates the runner as if it had no hold.
pub const HOLD: Duration = Duration::from_secs(5);

/// How long a set remembers that the count reflects a runner's completion, for a runner that
/// finishes after the patch that listed it was acted on.
pub const REFLECTED_TTL: Duration = Duration::from_secs(60);

/// How long the listener lists a completion when the set's status does not say which patch it
/// acted on (ARC's CRD prunes `status.observedPatchID`).
pub const LISTED_TTL: Duration = Duration::from_secs(30);

/// Most runners the listener lists in one patch (the annotation stays under 40 KB); older
/// completions drop first, which costs the set at most a [`HOLD`] for each.
pub const LISTED_MAX: usize = 512;

/// The listener's side: completions handled and the patch that first reflected them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompletionLog {
    /// Runner name, the `patchID` that first reflected it (`None` before the next patch), and
    /// when the completion was handled; oldest first.
    entries: VecDeque<(String, Option<i64>, Timestamp)>,
}

impl CompletionLog {
    /// The listener handled a JobCompleted of `runner` at `at`.
    pub fn completed(&mut self, runner: &str, at: Timestamp) {
        if runner.is_empty() {
            return;
        }
        self.entries.push_back((runner.to_owned(), None, at));
        while self.entries.len() > LISTED_MAX {
            self.entries.pop_front();
        }
    }

    /// The value of [`COMPLETED_RUNNERS`] for the patch `patch_id` the listener writes now:
    /// every completion handled so far that a patch after `observed` (the set's
    /// `status.observedPatchID` as the last patch returned it) reflects, or, without it, that
    /// was handled within [`LISTED_TTL`].
    pub fn listed(&mut self, patch_id: i64, observed: Option<i64>, now: Timestamp) -> String {
        for (_, first, _) in &mut self.entries {
            first.get_or_insert(patch_id);
        }
        // A listener that restarted numbers its patches from 1 again, below what the set
        // observed of its predecessor: then only the age says what the set may have missed.
        let acted = observed.filter(|o| *o <= patch_id);
        self.entries.retain(|(_, first, at)| match (acted, first) {
            (Some(o), Some(p)) if *p > 0 => *p > o,
            _ => now.saturating_duration_since(*at) < LISTED_TTL,
        });
        let names: Vec<&str> = self.entries.iter().map(|(n, _, _)| n.as_str()).collect();
        names.join(",")
    }
}

/// The set's side: its runners that finished with a job, and the completions the listener's
/// count reflects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completions {
    runners: BTreeMap<String, Completion>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Completion {
    /// When the set saw the runner finished with its job (`Succeeded`, `Failed`, deleting or
    /// gone).
    finished: Option<Timestamp>,
    /// When a patch the set acted on listed it.
    reflected: Option<Timestamp>,
}

/// The creations a set holds back in one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Runners finished with a job the count still reflects as assigned.
    pub count: u32,
    /// When the first of these holds ends, to look again then.
    pub until: Option<Timestamp>,
}

impl Completions {
    /// A runner of the set that had a job was seen finished at `at` (its first sighting counts).
    pub fn finished(&mut self, runner: &str, at: Timestamp) {
        self.runners
            .entry(runner.to_owned())
            .or_default()
            .finished
            .get_or_insert(at);
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.runners.is_empty()
    }

    /// The holds of a pass on `patch_id`, whose [`COMPLETED_RUNNERS`] annotation is `listed`
    /// (`None`: the listener does not speak the protocol, and nothing is held). A forced patch
    /// (`patchID` 0) counts no job, so nothing is held either. Forgets what no longer matters.
    pub fn held(&mut self, listed: Option<&str>, patch_id: i64, now: Timestamp) -> Held {
        let Some(listed) = listed else {
            self.runners.clear();
            return Held::default();
        };
        for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            self.runners
                .entry(name.to_owned())
                .or_default()
                .reflected
                .get_or_insert(now);
        }
        let age = |at: Timestamp| now.saturating_duration_since(at);
        self.runners.retain(|_, c| match (c.finished, c.reflected) {
            (_, Some(reflected)) => age(reflected) < REFLECTED_TTL,
            (Some(finished), None) => age(finished) < HOLD,
            (None, None) => false,
        });
        if patch_id == 0 {
            return Held::default();
        }
        let finished = self.runners.values().filter_map(|c| match c.reflected {
            None => c.finished,
            Some(_) => None,
        });
        finished.fold(Held::default(), |held, at| Held {
            count: held.count + 1,
            until: Some(held.until.map_or(at + HOLD, |u| u.min(at + HOLD))),
        })
    }

    /// Marks the runners whose job is over ([`ObservedRunner::job_done`]): a patch the set
    /// acted on listed its completion, or the set saw the runner finish or go with its job
    /// (a runner the watch cache never showed, which the set's own creations still show as
    /// live). Call it after [`Completions::held`] for the same pass. Every later count leaves
    /// a listed job out too, so the mark lasts while the set remembers the listing
    /// ([`REFLECTED_TTL`]).
    pub fn mark_done(&self, runners: &mut [ObservedRunner]) {
        for r in runners {
            r.job_done = self.runners.contains_key(&r.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_seconds(s)
    }

    #[test]
    fn a_finished_runner_is_held_until_listed_or_for_the_hold_at_most() {
        let mut set = Completions::default();
        set.finished("a", t(100));
        set.finished("a", t(102));
        let held = set.held(Some("x"), 3, t(101));
        assert_eq!(held.count, 1);
        assert_eq!(held.until, Some(t(100) + HOLD));
        assert_eq!(set.held(Some(""), 3, t(104)).count, 1);
        assert_eq!(set.held(Some(""), 3, t(105)).count, 0, "the hold ended");
        assert!(!set.runners.contains_key("a"));
    }

    #[test]
    fn a_listed_runner_that_finishes_later_is_not_held() {
        let mut set = Completions::default();
        assert_eq!(set.held(Some("a,b"), 7, t(100)).count, 0);
        set.finished("a", t(130));
        assert_eq!(set.held(Some(""), 8, t(130)).count, 0);
        assert!(set.runners.contains_key("b"));
        assert_eq!(set.held(Some(""), 8, t(161)).count, 0);
        assert!(set.is_empty(), "reflections are forgotten after their TTL");
    }

    #[test]
    fn nothing_is_held_for_a_forced_patch_or_a_listener_without_the_list() {
        let mut set = Completions::default();
        set.finished("a", t(100));
        assert_eq!(set.held(Some(""), 0, t(100)), Held::default());
        assert_eq!(set.held(None, 3, t(100)), Held::default());
        assert!(set.is_empty());
    }

    #[test]
    fn the_listener_lists_what_the_set_may_not_have_acted_on() {
        let mut log = CompletionLog::default();
        log.completed("a", t(100));
        log.completed("", t(100));
        assert_eq!(log.listed(4, Some(2), t(100)), "a");
        log.completed("b", t(101));
        assert_eq!(log.listed(5, Some(3), t(101)), "a,b");
        assert_eq!(
            log.listed(6, Some(4), t(102)),
            "b",
            "the set acted on patch 4"
        );
        assert_eq!(log.listed(7, Some(6), t(102)), "");
    }

    #[test]
    fn without_a_usable_observed_patch_the_age_decides() {
        let mut log = CompletionLog::default();
        log.completed("a", t(100));
        assert_eq!(log.listed(1, None, t(100)), "a");
        // A restarted listener's patch 2 against its predecessor's observed 900.
        assert_eq!(log.listed(2, Some(900), t(129)), "a");
        assert_eq!(log.listed(3, None, t(130)), "");
    }

    #[test]
    fn the_list_is_bounded() {
        let mut log = CompletionLog::default();
        for i in 0..LISTED_MAX + 10 {
            log.completed(&format!("runner-{i}"), t(100));
        }
        let listed = log.listed(1, None, t(100));
        assert_eq!(listed.split(',').count(), LISTED_MAX);
        assert!(listed.starts_with("runner-10,"));
    }
}
