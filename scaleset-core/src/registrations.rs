//! Orphaned runner registrations: runners registered in a scale set on the service with no
//! EphemeralRunner behind them (a manager that died between the JIT call and writing the
//! runner's status, or an EphemeralRunner whose finalizers were removed by hand).
//!
//! The registrations come from GitHub's documented REST API ("List self-hosted runners" of the
//! organization, repository or enterprise), which lists every runner of the scope and does not
//! say which scale set a runner belongs to. [`belongs_to`] claims a listed runner for the
//! EphemeralRunnerSet being swept only when all of these hold:
//!
//! - its `runner_group_id`, when the answer carries one, is the scale set's runner group (the
//!   group id the service reports for the scale set). A repository's runners may come without
//!   one; then the other rules decide alone;
//! - its name starts with the set's runner name prefix, `<EphemeralRunnerSet name>-runner-`
//!   ([`crate::naming::runner_generate_name`]): every EphemeralRunner of the set is named from
//!   it, and a JIT registration carries its EphemeralRunner's name;
//! - its labels include every label the scale set is registered with, its name first
//!   ([`crate::autoscaling_runner_set::scale_set_labels`]), compared as GitHub compares labels
//!   (ASCII case-insensitively).
//!
//! Each rule only ever narrows the list, so a scope full of other runners (other scale sets,
//! other groups, runners registered by hand or by other tools) yields nothing to remove. When a
//! service answers differently (no labels, other names) the sweep removes nothing, never
//! something foreign: an orphan that is not recognised stays registered, which costs one idle
//! registration, while a wrong claim would unregister another tool's runner. A busy runner is
//! never chosen ([`plan`] reports it as kept); one that became busy between the list and the
//! delete is refused by the service (422) and kept for the next sweep.
//!
//! Observe in this order, so that a registration minted during the sweep is never taken for an
//! orphan: first list the registrations on the service, then list the EphemeralRunners of that
//! scale set from the API server (not a cache). An EphemeralRunner always exists before its JIT
//! config is requested, so every registration in the first list whose runner still exists shows
//! up in the second.
//!
//! ```
//! use scaleset_core::registrations::{orphaned, Registration, KnownRunner};
//! let registered = [Registration { id: 7, name: "set-a".into() }, Registration { id: 8, name: "set-b".into() }];
//! let known = [KnownRunner { name: "set-a".into(), runner_id: 0 }];
//! assert_eq!(orphaned(&registered, &known), vec![8]);
//! ```

use std::collections::BTreeSet;

use crate::autoscaling_runner_set::scale_set_labels;
use crate::naming::runner_generate_name;

/// A runner registered in the scale set, as the service lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Runner id.
    pub id: i64,
    /// Runner name (the EphemeralRunner's name).
    pub name: String,
}

/// An EphemeralRunner of the scale set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRunner {
    /// Its name.
    pub name: String,
    /// `status.runnerId` (`<= 0` when not recorded yet).
    pub runner_id: i64,
}

/// Ids of registrations to remove from the service: no EphemeralRunner has their name or
/// records their id. A registration whose name matches a runner is left to that runner's own
/// reconcile (it adopts or replaces it), so a runner in the middle of registering is never
/// touched. Removal answers `JobStillRunning` for a runner that is still busy: skip it and try
/// again on the next sweep.
pub fn orphaned(registered: &[Registration], runners: &[KnownRunner]) -> Vec<i64> {
    let names: BTreeSet<&str> = runners.iter().map(|r| r.name.as_str()).collect();
    let ids: BTreeSet<i64> = runners
        .iter()
        .map(|r| r.runner_id)
        .filter(|id| *id > 0)
        .collect();
    registered
        .iter()
        .filter(|r| !names.contains(r.name.as_str()) && !ids.contains(&r.id))
        .map(|r| r.id)
        .collect()
}

/// A self-hosted runner as GitHub's REST API lists it (the fields the sweep reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRunner {
    /// Runner id (the id the Actions service gave the registration).
    pub id: i64,
    /// Runner name.
    pub name: String,
    /// Whether it runs a job now.
    pub busy: bool,
    /// Label names.
    pub labels: Vec<String>,
    /// Runner group; absent for runners listed without one (a repository's).
    pub runner_group_id: Option<i64>,
}

/// What tells the registrations of one EphemeralRunnerSet apart in a REST listing (see the
/// module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptSet {
    /// The scale set's runner group id, as the service reports the scale set.
    pub runner_group_id: i64,
    /// `<EphemeralRunnerSet name>-runner-`.
    pub runner_name_prefix: String,
    /// The scale set's labels, its name first.
    pub labels: Vec<String>,
}

impl SweptSet {
    /// The set named `ers_name` whose scale set the service reports with `scale_set_name`,
    /// `labels` and `runner_group_id`.
    ///
    /// ```
    /// use scaleset_core::registrations::SweptSet;
    /// let set = SweptSet::new("arc", "linux", &["gpu".into()], 3);
    /// assert_eq!(set.runner_name_prefix, "arc-runner-");
    /// assert_eq!(set.labels, ["linux", "gpu"]);
    /// ```
    pub fn new(
        ers_name: &str,
        scale_set_name: &str,
        labels: &[String],
        runner_group_id: i64,
    ) -> Self {
        SweptSet {
            runner_group_id,
            runner_name_prefix: runner_generate_name(ers_name),
            labels: scale_set_labels(scale_set_name, labels),
        }
    }
}

/// Whether a listed runner is a registration of `set`: same runner group (when listed with
/// one), the set's runner name prefix, and every label of the scale set. A set known by no
/// label claims nothing.
///
/// ```
/// use scaleset_core::registrations::{belongs_to, ListedRunner, SweptSet};
/// let set = SweptSet::new("arc", "arc", &[], 1);
/// let runner = ListedRunner { id: 9, name: "arc-runner-x7k2p".into(), busy: false,
///     labels: vec!["ARC".into()], runner_group_id: Some(1) };
/// assert!(belongs_to(&set, &runner));
/// assert!(!belongs_to(&set, &ListedRunner { runner_group_id: Some(2), ..runner.clone() }));
/// assert!(!belongs_to(&set, &ListedRunner { name: "arc-x7k2p".into(), ..runner.clone() }));
/// assert!(!belongs_to(&set, &ListedRunner { labels: vec!["self-hosted".into()], ..runner }));
/// ```
pub fn belongs_to(set: &SweptSet, runner: &ListedRunner) -> bool {
    !set.labels.is_empty()
        && runner
            .runner_group_id
            .is_none_or(|group| group == set.runner_group_id)
        && runner.name.starts_with(&set.runner_name_prefix)
        && set.labels.iter().all(|wanted| {
            runner
                .labels
                .iter()
                .any(|label| label.eq_ignore_ascii_case(wanted))
        })
}

/// What one sweep of one set does with the registrations it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepPlan {
    /// Orphans to delete.
    pub remove: Vec<Registration>,
    /// Orphans kept because they run a job; a later sweep takes them once they are idle.
    pub busy: Vec<Registration>,
}

/// The sweep of one set: the listed runners that [`belong to`](belongs_to) `set`, then those
/// [`orphaned`] against its EphemeralRunners, split into idle ones to delete and busy ones to
/// keep.
///
/// ```
/// use scaleset_core::registrations::{plan, KnownRunner, ListedRunner, SweptSet};
/// let set = SweptSet::new("arc", "arc", &[], 1);
/// let listed = |id: i64, name: &str, busy: bool| ListedRunner { id, name: name.into(), busy,
///     labels: vec!["arc".into()], runner_group_id: Some(1) };
/// let runners = [KnownRunner { name: "arc-runner-aaaaa".into(), runner_id: 1 }];
/// let p = plan(&set, &[listed(1, "arc-runner-aaaaa", true), listed(2, "arc-runner-bbbbb", false),
///     listed(3, "arc-runner-ccccc", true), listed(4, "other-runner-ddddd", false)], &runners);
/// assert_eq!(p.remove.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
/// assert_eq!(p.busy.iter().map(|r| r.id).collect::<Vec<_>>(), [3]);
/// ```
pub fn plan(set: &SweptSet, listed: &[ListedRunner], runners: &[KnownRunner]) -> SweepPlan {
    let ours: Vec<&ListedRunner> = listed.iter().filter(|r| belongs_to(set, r)).collect();
    let registered: Vec<Registration> = ours
        .iter()
        .map(|r| Registration {
            id: r.id,
            name: r.name.clone(),
        })
        .collect();
    let orphans: BTreeSet<i64> = orphaned(&registered, runners).into_iter().collect();
    let mut out = SweepPlan::default();
    for (runner, registration) in ours.iter().zip(registered) {
        if !orphans.contains(&registration.id) {
            continue;
        }
        if runner.busy {
            out.busy.push(registration);
        } else {
            out.remove.push(registration);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reg(id: i64, name: &str) -> Registration {
        Registration {
            id,
            name: name.into(),
        }
    }

    fn known(name: &str, runner_id: i64) -> KnownRunner {
        KnownRunner {
            name: name.into(),
            runner_id,
        }
    }

    #[test]
    fn registrations_behind_a_runner_by_name_or_id_are_kept() {
        let registered = [reg(1, "a"), reg(2, "b"), reg(3, "renamed"), reg(4, "gone")];
        let runners = [known("a", 1), known("b", 0), known("c", 3)];
        assert_eq!(orphaned(&registered, &runners), vec![4]);
    }

    #[test]
    fn nothing_registered_or_every_runner_gone() {
        assert!(orphaned(&[], &[known("a", 1)]).is_empty());
        assert_eq!(orphaned(&[reg(5, "x"), reg(6, "y")], &[]), vec![5, 6]);
    }

    #[test]
    fn unrecorded_ids_never_match() {
        // A runner with runnerId 0 does not protect a registration with id 0 or below.
        assert_eq!(orphaned(&[reg(9, "z")], &[known("other", 0)]), vec![9]);
    }

    fn listed(
        id: i64,
        name: &str,
        labels: &[&str],
        group: Option<i64>,
        busy: bool,
    ) -> ListedRunner {
        ListedRunner {
            id,
            name: name.into(),
            busy,
            labels: labels.iter().map(|l| (*l).to_string()).collect(),
            runner_group_id: group,
        }
    }

    fn ids(registrations: &[Registration]) -> Vec<i64> {
        registrations.iter().map(|r| r.id).collect()
    }

    #[test]
    fn only_the_sets_own_registrations_are_claimed() {
        let set = SweptSet::new("arc", "linux", &["gpu".into()], 3);
        let both = ["self-hosted", "Linux", "GPU"];
        let listed = [
            listed(1, "arc-runner-aaaaa", &both, Some(3), false),
            // another group, same name and labels (a scale set of the same name there)
            listed(2, "arc-runner-bbbbb", &both, Some(1), false),
            // another set's runners
            listed(3, "arc2-runner-ccccc", &both, Some(3), false),
            listed(4, "arc-ddddd", &both, Some(3), false),
            // a label missing
            listed(5, "arc-runner-eeeee", &["linux"], Some(3), false),
            listed(6, "arc-runner-fffff", &[], Some(3), false),
            // listed without a group (a repository's runner)
            listed(7, "arc-runner-ggggg", &both, None, false),
        ];
        let claimed: Vec<i64> = listed
            .iter()
            .filter(|r| belongs_to(&set, r))
            .map(|r| r.id)
            .collect();
        assert_eq!(claimed, [1, 7]);
    }

    #[test]
    fn a_set_known_by_no_label_claims_nothing() {
        let set = SweptSet::new("arc", " ", &[], 1);
        assert!(set.labels.is_empty());
        assert!(!belongs_to(
            &set,
            &listed(1, "arc-runner-aaaaa", &["x"], Some(1), false)
        ));
    }

    #[test]
    fn busy_orphans_are_kept_and_known_runners_untouched() {
        let set = SweptSet::new("arc", "arc", &[], 1);
        let listed = [
            listed(1, "arc-runner-aaaaa", &["arc"], Some(1), false),
            listed(2, "arc-runner-bbbbb", &["arc"], Some(1), true),
            listed(3, "arc-runner-ccccc", &["arc"], Some(1), false),
            listed(4, "arc-runner-ddddd", &["arc"], Some(1), true),
            listed(5, "arc-runner-renamed", &["arc"], Some(1), false),
        ];
        let runners = [
            known("arc-runner-aaaaa", 0),
            known("arc-runner-bbbbb", 2),
            known("x", 5),
        ];
        let p = plan(&set, &listed, &runners);
        assert_eq!(ids(&p.remove), [3]);
        assert_eq!(ids(&p.busy), [4]);
        assert_eq!(p.remove[0].name, "arc-runner-ccccc");
    }

    fn any_listed() -> impl Strategy<Value = ListedRunner> {
        (
            1i64..40,
            prop_oneof![
                "arc-runner-[a-z0-9]{5}",
                "arc-[a-z0-9]{5}",
                "arc2-runner-[a-z0-9]{5}",
                "[a-z-]{0,15}",
            ],
            any::<bool>(),
            prop::collection::vec(
                prop_oneof![
                    "arc",
                    "ARC",
                    "gpu",
                    "Gpu",
                    "linux",
                    "self-hosted",
                    "[a-z]{1,4}"
                ],
                0..4,
            ),
            prop_oneof![Just(None), (0i64..4).prop_map(Some)],
        )
            .prop_map(|(id, name, busy, labels, group)| ListedRunner {
                id,
                name,
                busy,
                labels,
                runner_group_id: group,
            })
    }

    proptest! {
        /// Whatever the scope lists: a registration is deleted only if it is idle, claimed by all
        /// three rules, and no EphemeralRunner has its name or id; busy orphans are kept; every
        /// orphan of the set is either deleted or kept as busy.
        #[test]
        fn the_plan_deletes_only_idle_orphans_of_the_set(
            listed in prop::collection::vec(any_listed(), 0..30),
            known_names in prop::collection::vec("arc-runner-[a-z0-9]{5}", 0..5),
            known_ids in prop::collection::vec(-1i64..40, 0..5),
            group in 1i64..3,
            extra in prop::collection::vec(prop_oneof!["gpu", "GPU"], 0..2),
        ) {
            let set = SweptSet::new("arc", "arc", &extra, group);
            let runners: Vec<KnownRunner> = known_names.iter().cloned().zip(known_ids.iter().copied())
                .map(|(name, runner_id)| KnownRunner { name, runner_id })
                .collect();
            let p = plan(&set, &listed, &runners);
            for r in &p.remove {
                let deleted = listed.iter().find(|l| l.id == r.id && l.name == r.name);
                prop_assert!(deleted.is_some());
                let Some(l) = deleted else { continue };
                prop_assert!(!l.busy, "busy runner {l:?} deleted");
                prop_assert!(l.runner_group_id.is_none_or(|g| g == group), "{l:?}");
                prop_assert!(l.name.starts_with("arc-runner-"), "{l:?}");
                for wanted in &set.labels {
                    prop_assert!(l.labels.iter().any(|x| x.eq_ignore_ascii_case(wanted)), "{l:?}");
                }
                prop_assert!(!runners.iter().any(|k| k.name == l.name || (k.runner_id > 0 && k.runner_id == l.id)));
            }
            for r in &p.busy {
                prop_assert!(listed.iter().any(|l| l.id == r.id && l.busy && belongs_to(&set, l)));
            }
            let claimed: Vec<Registration> = listed.iter().filter(|l| belongs_to(&set, l))
                .map(|l| Registration { id: l.id, name: l.name.clone() }).collect();
            prop_assert_eq!(p.remove.len() + p.busy.len(), orphaned(&claimed, &runners).len());
        }
    }
}
