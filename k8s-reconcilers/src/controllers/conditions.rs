//! The `Ready` condition (docs/architecture.md#bad-input-and-stuck-deletions): a reconcile that
//! fails on something the user can fix leaves `Ready=False` on the object, with the reason of
//! its Warning Event and a message naming the field, the value and the fix; the next pass that
//! succeeds sets it back to `True`. Objects that never failed carry no condition (no write).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Context;
use crate::error::Error;

/// Condition type.
pub const READY: &str = "Ready";
/// Reason of `Ready=True` after a failure was fixed.
pub const RECONCILED: &str = "Reconciled";

/// The object's `Ready` condition, read from its status.
pub fn ready_of<K: Serialize>(obj: &K) -> Option<Condition> {
    let value = serde_json::to_value(obj).ok()?;
    value
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .filter_map(|c| serde_json::from_value::<Condition>(c.clone()).ok())
        .find(|c| c.type_ == READY)
}

/// The `Ready` condition to write, or `None` when `current` already says so, or when all is well
/// and nothing was ever reported.
pub fn ready_condition(
    generation: Option<i64>,
    current: Option<&Condition>,
    ready: bool,
    reason: &str,
    message: &str,
) -> Option<Condition> {
    let wanted = if ready { "True" } else { "False" };
    let stable = without_request_ids(message);
    let message = stable.as_str();
    match current {
        Some(c) if c.status == wanted && c.reason == reason && c.message == message => None,
        None if ready => None,
        _ => Some(Condition {
            type_: READY.to_owned(),
            status: wanted.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: match current {
                Some(c) if c.status == wanted => c.last_transition_time.clone(),
                _ => Time(k8s_openapi::jiff::Timestamp::now()),
            },
            observed_generation: generation,
        }),
    }
}

/// `message` without the service's request ids (` (activity_id="…")`,
/// ` (github_request_id="…")`), which differ with every call: the same failure must not
/// rewrite the condition, since each write starts another pass.
fn without_request_ids(message: &str) -> String {
    let mut out = message.to_owned();
    for start in [" (activity_id=\"", " (github_request_id=\""] {
        while let Some(at) = out.find(start) {
            let Some(len) = out[at + start.len()..].find("\")") else {
                break;
            };
            out.replace_range(at..at + start.len() + len + 2, "");
        }
    }
    out
}

/// Writes the `Ready` condition that the result of a pass over `obj` calls for (see the module
/// documentation). Objects being deleted are left alone; a failed write is only logged.
pub async fn report<K>(ctx: &Context, obj: &K, result: &Result<Action, Error>)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    // The AutoscalingRunnerSet writes its own, together with its phase.
    if obj.meta().deletion_timestamp.is_some()
        || K::kind(&()) == crate::crd::AutoscalingRunnerSet::kind(&())
    {
        return;
    }
    let current = ready_of(obj);
    let generation = obj.meta().generation;
    let condition = match result {
        Err(e) if e.is_users_to_fix() => {
            let reason = e.reason().unwrap_or("InvalidConfiguration");
            ready_condition(generation, current.as_ref(), false, reason, &e.to_string())
        }
        Ok(_) if current.as_ref().is_some_and(|c| c.status == "False") => ready_condition(
            generation,
            current.as_ref(),
            true,
            RECONCILED,
            "the last reconcile succeeded",
        ),
        _ => None,
    };
    let Some(condition) = condition else {
        return;
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({"status": {"conditions": [condition]}});
    if let Err(e) = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(object = %obj.name_any(), error = %e, "could not write the Ready condition");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_do_not_change_the_condition() {
        let first = "GetRunnerScaleSet: status 401: Bad credentials (activity_id=\"a-1\")";
        let again = "GetRunnerScaleSet: status 401: Bad credentials (activity_id=\"b-2\") (github_request_id=\"c\")";
        let written = ready_condition(Some(1), None, false, "CredentialsRejected", first);
        assert_eq!(
            written.as_ref().map(|c| c.message.as_str()),
            Some("GetRunnerScaleSet: status 401: Bad credentials")
        );
        assert_eq!(
            ready_condition(
                Some(1),
                written.as_ref(),
                false,
                "CredentialsRejected",
                again
            ),
            None
        );
        assert_eq!(
            without_request_ids("no id (activity_id=\"x"),
            "no id (activity_id=\"x"
        );
    }

    use super::*;

    fn failed(message: &str) -> Condition {
        Condition {
            type_: READY.into(),
            status: "False".into(),
            reason: "InvalidConfiguration".into(),
            message: message.into(),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn written_only_on_a_change_and_never_for_an_object_that_never_failed() {
        assert_eq!(ready_condition(Some(1), None, true, RECONCILED, "ok"), None);
        let first = ready_condition(Some(1), None, false, "InvalidConfiguration", "spec.x");
        assert!(first.is_some_and(|c| c.status == "False" && c.message == "spec.x"));
        let current = failed("spec.x");
        assert_eq!(
            ready_condition(
                Some(1),
                Some(&current),
                false,
                "InvalidConfiguration",
                "spec.x"
            ),
            None
        );
        let other = ready_condition(Some(2), Some(&current), false, "InvalidConfiguration", "y")
            .expect("a new message is written");
        assert_eq!(
            other.last_transition_time, current.last_transition_time,
            "still False: no transition"
        );
        let fixed = ready_condition(Some(2), Some(&current), true, RECONCILED, "ok")
            .expect("the fix is written");
        assert_eq!(fixed.status, "True");
        assert_ne!(fixed.last_transition_time, current.last_transition_time);
    }
}
