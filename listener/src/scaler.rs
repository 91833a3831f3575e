//! The desired-count step (listener.md section 5) comes from `scaleset_core::desired`; this
//! module only turns a decision into the JSON merge patch body.

pub use scaleset_core::desired::{Bounds, Decision, Scaler};

/// The JSON merge patch ARC's listener sends to the EphemeralRunnerSet:
/// `{"spec":{"patchID":P,"replicas":T}}`, with `replicas: null` when the target is 0.
pub fn ers_patch_body(decision: Decision) -> serde_json::Value {
    let patch = decision.merge_patch();
    let replicas = patch
        .spec
        .replicas
        .map_or(serde_json::Value::Null, serde_json::Value::from);
    serde_json::json!({"spec": {"patchID": patch.spec.patch_id, "replicas": replicas}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_target_deletes_replicas() {
        let body = ers_patch_body(Decision {
            target: 0,
            patch_id: 4,
        });
        assert_eq!(
            body.to_string(),
            r#"{"spec":{"patchID":4,"replicas":null}}"#
        );
        let body = ers_patch_body(Decision {
            target: 2,
            patch_id: 0,
        });
        assert_eq!(body.to_string(), r#"{"spec":{"patchID":0,"replicas":2}}"#);
    }
}
