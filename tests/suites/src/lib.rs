//! Test suites that cross crates: they live in this package's tests/ folder.
pub mod helm;

use k8s_openapi::api::core::v1::Pod;
use k8s_reconcilers::controllers::ephemeral_runner::resources::registered_id;
use k8s_reconcilers::crd::EphemeralRunner;
use kube::{Api, ResourceExt};

/// The registration id of runner `er` (0: none yet): its status's, or, before the status records
/// it with the runner's first status write, the one its pod carries.
pub async fn registration_id(pods: &Api<Pod>, er: &EphemeralRunner) -> anyhow::Result<i64> {
    let pod = pods.get_opt(&er.name_any()).await?;
    Ok(registered_id(er, pod.as_ref(), None))
}

/// Every runner of `runners` with its registration id ([`registration_id`]).
pub async fn runners_with_registration(
    runners: &Api<EphemeralRunner>,
    pods: &Api<Pod>,
) -> anyhow::Result<Vec<(EphemeralRunner, i64)>> {
    let mut out = Vec::new();
    for er in runners.list(&Default::default()).await?.items {
        let id = registration_id(pods, &er).await?;
        out.push((er, id));
    }
    Ok(out)
}

/// Waits up to `timeout` until `runners` holds exactly `n` runners not being deleted, each
/// registered; returns them with their registration ids.
pub async fn registered_runners(
    runners: &Api<EphemeralRunner>,
    pods: &Api<Pod>,
    n: usize,
    timeout: std::time::Duration,
) -> anyhow::Result<Vec<(EphemeralRunner, i64)>> {
    testbed::eventually(&format!("{n} registered runners"), timeout, || async {
        let mut live = runners_with_registration(runners, pods).await?;
        live.retain(|(er, _)| er.metadata.deletion_timestamp.is_none());
        let registered = live.iter().all(|(_, id)| *id > 0);
        Ok((live.len() == n && registered).then_some(live))
    })
    .await
}

/// Waits up to `timeout` for a Warning Event (with `reason`, when given) about `object` in
/// namespace `ns` whose message contains `needle`; returns the message.
pub async fn warning_event(
    client: &kube::Client,
    ns: &str,
    object: &str,
    reason: Option<&str>,
    needle: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    use k8s_openapi::api::core::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    testbed::eventually(
        &format!("a Warning Event {reason:?} on {object} saying {needle:?}"),
        timeout,
        || async {
            let list = events.list(&Default::default()).await?;
            Ok(list.items.into_iter().find_map(|e| {
                let message = e.message.unwrap_or_default();
                (e.type_.as_deref() == Some("Warning")
                    && reason.is_none_or(|r| e.reason.as_deref() == Some(r))
                    && e.involved_object.name.as_deref() == Some(object)
                    && message.contains(needle))
                .then_some(message)
            }))
        },
    )
    .await
}

/// How many deletions `controller` gave up on after the grace period
/// (`arc_controller_abandoned_cleanups_total`).
pub fn abandoned_cleanups(metrics: &k8s_reconcilers::metrics::Metrics, controller: &str) -> u64 {
    metrics
        .abandoned_cleanups
        .get_or_create(&k8s_reconcilers::metrics::ControllerLabel {
            controller: controller.to_owned(),
        })
        .get()
}
