//! The desired-count step (docs/architecture.md#desired-count) comes from
//! `scaleset_core::desired`; this module only turns a decision into the EphemeralRunnerSet merge
//! patch.

use k8s_reconcilers::crd::{EphemeralRunnerSet, EphemeralRunnerSetSpec};

use kube::ResourceExt;
use scaleset_core::completions::COMPLETED_RUNNERS;

use crate::kube::MergePatch;

pub use scaleset_core::desired::{Bounds, Decision, Scaler};

/// The JSON merge patch ARC's listener sends to the EphemeralRunnerSet: from `replicas` and
/// `patchID` -1 to the decision's, so `{"spec":{"patchID":P,"replicas":T}}`, with
/// `replicas: null` when the target is 0 (the CRD type omits a zero `replicas`). Beside it, the
/// annotation [`COMPLETED_RUNNERS`] with `completed`: the runners whose completions the count
/// reflects ([`scaleset_core::completions::CompletionLog::listed`]).
pub fn ers_patch(
    decision: Decision,
    completed: &str,
) -> Result<MergePatch<EphemeralRunnerSet>, serde_json::Error> {
    let set = |replicas, patch_id| {
        let spec = EphemeralRunnerSetSpec {
            replicas,
            patch_id,
            ..Default::default()
        };
        EphemeralRunnerSet::new("", spec)
    };
    // The scaler keeps both within the CRD's 32 bits: targets up to max_runners, patch ids
    // wrapping at i32::MAX.
    let replicas = i32::try_from(decision.target).unwrap_or(i32::MAX);
    let patch_id = i32::try_from(decision.patch_id).unwrap_or(i32::MAX);
    let mut to = set(replicas, patch_id);
    to.annotations_mut()
        .insert(COMPLETED_RUNNERS.to_owned(), completed.to_owned());
    MergePatch::between(&set(-1, -1), &to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_target_deletes_replicas() -> Result<(), serde_json::Error> {
        let patch = ers_patch(
            Decision {
                target: 0,
                patch_id: 4,
            },
            "",
        )?;
        assert_eq!(
            patch.to_string(),
            r#"{"metadata":{"annotations":{"actions.github.com/completed-runners":""}},"spec":{"patchID":4,"replicas":null}}"#
        );
        let patch = ers_patch(
            Decision {
                target: 2,
                patch_id: 0,
            },
            "a,b",
        )?;
        assert_eq!(
            patch.to_string(),
            r#"{"metadata":{"annotations":{"actions.github.com/completed-runners":"a,b"}},"spec":{"patchID":0,"replicas":2}}"#
        );
        Ok(())
    }
}
