//! The bound on every deletion (docs/architecture.md#bad-input-and-stuck-deletions): cleanup
//! that keeps failing is retried for `ManagerOptions::deletion_grace` from the deletion request;
//! then the finalizer goes and what was left is reported, never left hanging.

use std::time::Duration;

use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use scaleset_core::failure::{CleanupFailure, on_cleanup_failure};

use super::ephemeral_runner::observe::{now, timestamp};
use crate::Context;
use crate::error::Error;
use crate::metrics::ControllerLabel;

/// Reason of the Warning Event that reports an abandoned cleanup.
pub const CLEANUP_ABANDONED: &str = "CleanupAbandoned";

/// How long `obj` has been deleting (zero when it is not).
pub fn deleting_for<K: Resource>(obj: &K) -> Duration {
    obj.meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| now().saturating_duration_since(timestamp(t)))
        .unwrap_or_default()
}

/// A deletion's cleanup failed with `error` (or waits on something that cannot be hurried).
/// Within the grace period the error comes back, to be retried as usual. Past it, the
/// abandonment is reported (a Warning Event `CleanupAbandoned` saying what was left and why, a
/// log line, `arc_controller_abandoned_cleanups_total`) and `Ok(())` tells the caller to remove
/// its finalizer. `left` says what stays behind, e.g. "scale set 7 on the service".
pub async fn abandon_after_grace<K>(
    ctx: &Context,
    obj: &K,
    error: Error,
    left: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let elapsed = deleting_for(obj);
    if on_cleanup_failure(elapsed, ctx.options.deletion_grace) == CleanupFailure::Retry {
        return Err(error);
    }
    let kind = K::kind(&());
    let name = obj.name_any();
    let note = format!(
        "deletion of {kind} {name} gave up after {}s: {left} could not be cleaned up ({error}); the finalizer was removed so that the deletion completes; clean up by hand what is named here",
        elapsed.as_secs()
    );
    tracing::warn!(
        controller = ctx.controller,
        kind = %kind,
        object = %name,
        namespace = %obj.namespace().unwrap_or_default(),
        left,
        error = %error,
        "cleanup abandoned after the deletion grace period"
    );
    ctx.metrics
        .abandoned_cleanups
        .get_or_create(&ControllerLabel {
            controller: ctx.controller.to_owned(),
        })
        .inc();
    ctx.publish(
        &obj.object_ref(&()),
        EventType::Warning,
        CLEANUP_ABANDONED,
        &note,
    )
    .await;
    Ok(())
}
