//! The runner bounds followed live: `minRunners` and `maxRunners` of the listener's
//! AutoscalingRunnerSet, watched so that a change takes effect without a new listener
//! (docs/architecture.md#runner-bounds). The listener's Role grants `get`, `list` and `watch`
//! on that one AutoscalingRunnerSet.

use futures::StreamExt;
use k8s_reconcilers::crd::AutoscalingRunnerSet;
use kube::api::{Api, ObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::scaler::Bounds;

/// What the listener reads of its AutoscalingRunnerSet: the metadata and the two bounds, so
/// that the pod template and the rest of the spec are never parsed.
#[derive(Clone, Debug, Deserialize)]
pub struct ArsBounds {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: BoundsSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BoundsSpec {
    #[serde(default)]
    min_runners: Option<i64>,
    #[serde(default)]
    max_runners: Option<i64>,
}

impl ArsBounds {
    /// The bounds of the spec, with ARC's defaults; an error names the field and the fix.
    pub fn bounds(&self) -> Result<Bounds, scaleset_core::desired::BoundsError> {
        Bounds::from_spec(self.spec.min_runners, self.spec.max_runners)
    }
}

crate::kube::projection_of!(ArsBounds, AutoscalingRunnerSet);

/// Watches `namespace/name` and sends every valid change of its bounds on `tx`, until every
/// receiver is gone. Invalid bounds are logged and skipped (the manager reports them on the
/// AutoscalingRunnerSet); the listener goes on with the ones it has. Watch errors are retried
/// with kube's backoff.
pub async fn follow(client: kube::Client, namespace: &str, name: &str, tx: watch::Sender<Bounds>) {
    let api: Api<ArsBounds> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut objects = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    loop {
        let next = tokio::select! {
            next = objects.next() => next,
            () = tx.closed() => return,
        };
        match next {
            None => return,
            Some(Err(e)) => {
                warn!(error = %e, autoscaling_runner_set = name,
                    "watching the AutoscalingRunnerSet for its runner bounds failed; retrying")
            }
            Some(Ok(ars)) => match ars.bounds() {
                Ok(bounds) => {
                    tx.send_if_modified(|current| {
                        let changed = *current != bounds;
                        if changed {
                            info!(
                                min_runners = bounds.min_runners(),
                                max_runners = bounds.max_runners(),
                                "runner bounds changed"
                            );
                            *current = bounds;
                        }
                        changed
                    });
                }
                Err(e) => warn!(error = %e, autoscaling_runner_set = name,
                    "the AutoscalingRunnerSet has invalid runner bounds; keeping the current ones"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_read_from_the_spec_alone_with_arcs_defaults() {
        let ars: ArsBounds = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "set"},
            "spec": {"minRunners": 2, "maxRunners": 5, "template": {"spec": {"containers": []}}},
        }))
        .expect("an ARS");
        assert_eq!(ars.bounds(), Bounds::new(2, 5));
        let unset: ArsBounds =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "set"}}))
                .expect("an ARS without spec");
        assert_eq!(unset.bounds(), Bounds::from_spec(None, None));
        let inverted: ArsBounds = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "set"}, "spec": {"minRunners": 6, "maxRunners": 5},
        }))
        .expect("an ARS");
        let e = inverted.bounds().expect_err("min above max");
        assert!(e.to_string().contains("minRunners 6"), "{e}");
    }
}
