//! A set's own runner creations and deletions that its watch cache may not show yet
//! (docs/architecture.md#runners-from-the-watch-cache).
//!
//! The set controller reads its runners from a watch cache. A pass that follows its own writes
//! within milliseconds would otherwise miss the runners it just created (and create them again)
//! or count the ones it just deleted as live (and delete more for a scale-down). The controller
//! records each write here and [`UnseenWrites::overlay`] lays them over the cached runners until
//! the cache shows them, as Kubernetes' ReplicaSet controller does with its expectations.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ObservedRunner, RunnerPhase};
use crate::time::Timestamp;

/// How long a write is laid over the cache at most: a cache that has not shown a write after
/// this long has missed it (the object came and went between two looks), or is relisting.
pub const UNSEEN_WRITE_TTL: Duration = Duration::from_secs(30);

/// One set's writes that its cache did not show at the last look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnseenWrites {
    /// Created runners by name: the `patchID` stamp and when.
    created: BTreeMap<String, (i64, Timestamp)>,
    /// Deleted runners by name, and when.
    deleted: BTreeMap<String, Timestamp>,
}

impl UnseenWrites {
    /// Records that runner `name`, stamped with `patch_id`, was created at `at`.
    pub fn created(&mut self, name: impl Into<String>, patch_id: i64, at: Timestamp) {
        self.created.insert(name.into(), (patch_id, at));
    }

    /// Records that the deletion of runner `name` was requested at `at`.
    pub fn deleted(&mut self, name: impl Into<String>, at: Timestamp) {
        let name = name.into();
        self.created.remove(&name);
        self.deleted.insert(name, at);
    }

    /// Forgets the writes a cache event for runner `name` shows: its creation once it appears,
    /// its deletion once it appears `deleting` or disappears.
    pub fn seen(&mut self, name: &str, deleting_or_gone: bool) {
        self.created.remove(name);
        if deleting_or_gone {
            self.deleted.remove(name);
        }
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.deleted.is_empty()
    }

    /// The runners as the set's own writes left them: `cached`, with runners whose deletion the
    /// cache does not show yet marked `deleting`, plus a pending runner for every creation the
    /// cache does not show yet. Writes the cache shows, and writes older than
    /// [`UNSEEN_WRITE_TTL`], are forgotten.
    pub fn overlay(
        &mut self,
        mut cached: Vec<ObservedRunner>,
        now: Timestamp,
    ) -> Vec<ObservedRunner> {
        let fresh = |at: &Timestamp| now.saturating_duration_since(*at) < UNSEEN_WRITE_TTL;
        self.created
            .retain(|name, (_, at)| fresh(at) && cached.iter().all(|r| &r.name != name));
        self.deleted
            .retain(|name, at| fresh(at) && cached.iter().any(|r| &r.name == name && !r.deleting));
        for runner in &mut cached {
            if self.deleted.contains_key(&runner.name) {
                runner.deleting = true;
            }
        }
        cached.extend(self.created.iter().map(|(name, (patch_id, at))| {
            let mut runner = ObservedRunner::new(name.clone(), RunnerPhase::Pending, *at);
            runner.patch_id = Some(*patch_id);
            runner
        }));
        cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(secs)
    }

    fn live(name: &str) -> ObservedRunner {
        ObservedRunner::new(name, RunnerPhase::Running, at(1))
    }

    fn names(runners: &[ObservedRunner]) -> Vec<(&str, bool)> {
        runners
            .iter()
            .map(|r| (r.name.as_str(), r.deleting))
            .collect()
    }

    #[test]
    fn a_creation_counts_as_pending_until_the_cache_shows_it() {
        let mut writes = UnseenWrites::default();
        writes.created("b", 7, at(10));
        let view = writes.overlay(vec![live("a")], at(11));
        assert_eq!(names(&view), [("a", false), ("b", false)]);
        assert_eq!(view[1].phase, RunnerPhase::Pending);
        assert_eq!(view[1].patch_id, Some(7));
        let view = writes.overlay(vec![live("a"), live("b")], at(12));
        assert_eq!(names(&view), [("a", false), ("b", false)]);
        assert!(writes.is_empty());
    }

    #[test]
    fn a_deletion_counts_until_the_cache_shows_the_runner_deleting_or_gone() {
        let mut writes = UnseenWrites::default();
        writes.deleted("a", at(10));
        writes.deleted("b", at(10));
        let view = writes.overlay(vec![live("a"), live("b")], at(11));
        assert_eq!(names(&view), [("a", true), ("b", true)]);
        let mut b = live("b");
        b.deleting = true;
        let view = writes.overlay(vec![b], at(12));
        assert_eq!(names(&view), [("b", true)]);
        assert!(writes.is_empty());
    }

    #[test]
    fn cache_events_clear_writes_and_old_writes_expire() {
        let mut writes = UnseenWrites::default();
        writes.created("a", 1, at(10));
        writes.deleted("b", at(10));
        writes.seen("a", false);
        writes.seen("b", false);
        let view = writes.overlay(vec![live("b")], at(11));
        assert_eq!(names(&view), [("b", true)], "b is not yet deleting");
        writes.created("c", 1, at(11));
        let view = writes.overlay(vec![live("b")], at(11) + UNSEEN_WRITE_TTL);
        assert_eq!(names(&view), [("b", false)]);
        assert!(writes.is_empty());
    }

    #[test]
    fn deleting_a_runner_the_cache_never_showed_forgets_its_creation() {
        let mut writes = UnseenWrites::default();
        writes.created("a", 1, at(10));
        writes.deleted("a", at(10));
        assert!(writes.overlay(Vec::new(), at(11)).is_empty());
        assert!(writes.is_empty());
    }
}
