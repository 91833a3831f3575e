//! Orphaned runner registrations: runners registered in a scale set on the service with no
//! EphemeralRunner behind them (a manager that died between the JIT call and writing the
//! runner's status, or an EphemeralRunner whose finalizers were removed by hand).
//!
//! Observe in this order, so that a registration minted during the sweep is never taken for an
//! orphan: first list the scale set's registrations on the service, then list the
//! EphemeralRunners of that scale set from the API server (not a cache). An EphemeralRunner
//! always exists before its JIT config is requested, so every registration in the first list
//! whose runner still exists shows up in the second.
//!
//! ```
//! use scaleset_core::registrations::{orphaned, Registration, KnownRunner};
//! let registered = [Registration { id: 7, name: "set-a".into() }, Registration { id: 8, name: "set-b".into() }];
//! let known = [KnownRunner { name: "set-a".into(), runner_id: 0 }];
//! assert_eq!(orphaned(&registered, &known), vec![8]);
//! ```

use std::collections::BTreeSet;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
