//! The desired-count step (docs/architecture.md#desired-count) comes from
//! `scaleset_core::desired`; this module only turns a decision into the EphemeralRunnerSet merge
//! patch.

use k8s_reconcilers::crd::{EphemeralRunnerSet, EphemeralRunnerSetSpec};

use crate::kube::MergePatch;

pub use scaleset_core::desired::{Bounds, Decision, Scaler};

/// The JSON merge patch ARC's listener sends to the EphemeralRunnerSet: from `replicas` and
/// `patchID` -1 to the decision's, so `{"spec":{"patchID":P,"replicas":T}}`, with
/// `replicas: null` when the target is 0 (the CRD type omits a zero `replicas`).
pub fn ers_patch(decision: Decision) -> Result<MergePatch<EphemeralRunnerSet>, serde_json::Error> {
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
    MergePatch::between(&set(-1, -1), &set(replicas, patch_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_target_deletes_replicas() -> Result<(), serde_json::Error> {
        let patch = ers_patch(Decision {
            target: 0,
            patch_id: 4,
        })?;
        assert_eq!(
            patch.to_string(),
            r#"{"spec":{"patchID":4,"replicas":null}}"#
        );
        let patch = ers_patch(Decision {
            target: 2,
            patch_id: 0,
        })?;
        assert_eq!(patch.to_string(), r#"{"spec":{"patchID":0,"replicas":2}}"#);
        Ok(())
    }
}
