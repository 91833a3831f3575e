//! The sweep that removes runner registrations without an EphemeralRunner behind them: at
//! start-up and then every `orphan_cleanup_interval`, for every EphemeralRunnerSet in the
//! watched namespaces. Per set it reads the scale set (A3: its runner group and labels), lists
//! the scope's runners through GitHub's REST API, lists the set's EphemeralRunners, and deletes
//! what `scaleset_core::registrations::plan` picks through the same REST API (the ids it acts on
//! are the ids that listing reported). A runner that runs a job is kept: listed busy, or refused
//! by the delete (422, `JobStillRunning`), it is retried on the next sweep.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use scaleset_core::registrations::{
    KnownRunner, ListedRunner, Registration, SweptSet, belongs_to, plan,
};

use crate::Context;
use crate::controllers::watched_api;
use crate::crd::{EphemeralRunner, EphemeralRunnerSet};
use crate::error::Error;
use crate::github::ObjectSettings;

/// Name used for this task's context (metrics, Events).
pub const CONTROLLER: &str = "orphaned-registrations";

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Registrations removed, by runner id.
    pub removed: Vec<i64>,
    /// Registrations kept because their job is still running.
    pub busy: Vec<i64>,
    /// Scale sets that could not be swept, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Sweeps at start-up and then every interval until shutdown.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let mut shutdown = ctx.options.shutdown.signal();
    let interval = ctx.options.orphan_cleanup_interval;
    loop {
        let report = sweep(&ctx).await;
        if !report.removed.is_empty() || !report.failed.is_empty() {
            tracing::info!(removed = ?report.removed, busy = ?report.busy, failed = ?report.failed,
                "orphaned registration sweep");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// One sweep over every EphemeralRunnerSet in the watched namespaces.
pub async fn sweep(ctx: &Context) -> SweepReport {
    let mut report = SweepReport::default();
    let sets: Api<EphemeralRunnerSet> = watched_api(ctx);
    let sets = match sets.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            report
                .failed
                .push(("(listing EphemeralRunnerSets)".into(), e.to_string()));
            return report;
        }
    };
    let mut listings = Listings::new();
    for set in sets {
        if set.meta().deletion_timestamp.is_some()
            || set.spec.ephemeral_runner_spec.runner_scale_set_id <= 0
        {
            continue;
        }
        if let Err(e) = sweep_set(ctx, &set, &mut listings, &mut report).await {
            let name = format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any());
            report.failed.push((name, e.to_string()));
        }
    }
    report
}

/// The REST listings of one sweep, by namespace, configuration URL and credentials Secret: the
/// sets of one organization, repository or enterprise share one listing instead of each paging
/// through the same runners. A listing made for an earlier set was still made before this set's
/// EphemeralRunners are listed, which is the order the sweep needs.
type Listings = HashMap<(String, String, String), Vec<ListedRunner>>;

async fn sweep_set(
    ctx: &Context,
    set: &EphemeralRunnerSet,
    listings: &mut Listings,
    report: &mut SweepReport,
) -> Result<(), Error> {
    let namespace = set.namespace().unwrap_or_default();
    let spec = &set.spec.ephemeral_runner_spec;
    let scale_set_id = spec.runner_scale_set_id;
    let service = ctx
        .github
        .for_object(
            &ctx.client,
            ObjectSettings::for_runner_spec(&namespace, spec),
        )
        .await?;
    let Some(scale_set) = service
        .get_runner_scale_set_by_id(scale_set_id)
        .await
        .map_err(Error::Service)?
    else {
        // Gone on the service, and its registrations with it.
        return Ok(());
    };
    let swept = SweptSet::new(
        &set.name_any(),
        &scale_set.name,
        &scale_set.labels,
        scale_set.runner_group_id,
    );
    // Registrations first, runners second (see scaleset_core::registrations).
    let key = (
        namespace.clone(),
        spec.github_config_url.clone(),
        spec.github_config_secret.clone(),
    );
    let listed = match listings.entry(key) {
        Entry::Occupied(listed) => listed.into_mut(),
        Entry::Vacant(slot) => slot.insert(
            service
                .list_self_hosted_runners()
                .await
                .map_err(Error::Service)?,
        ),
    };
    if !listed.iter().any(|r| belongs_to(&swept, r)) {
        return Ok(());
    }
    let runners: Api<EphemeralRunner> = Api::namespaced(ctx.client.clone(), &namespace);
    let known: Vec<KnownRunner> = runners
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|er| er.spec.runner_scale_set_id == scale_set_id)
        .map(|er| KnownRunner {
            runner_id: er.status.as_ref().map_or(0, |s| s.runner_id),
            name: er.name_any(),
        })
        .collect();
    let plan = plan(&swept, listed, &known);
    for busy in plan.busy {
        tracing::debug!(runner_id = busy.id, runner = %busy.name,
            "orphaned registration still runs a job; kept");
        report.busy.push(busy.id);
    }
    for Registration { id, name } in plan.remove {
        match service.delete_self_hosted_runner(id).await {
            Ok(()) => {
                tracing::info!(scale_set_id, runner_id = id, runner = %name,
                    "removed a registration without an EphemeralRunner");
                ctx.publish(
                    &set.object_ref(&()),
                    EventType::Normal,
                    "OrphanedRegistrationRemoved",
                    &format!(
                        "removed runner {name:?} (id {id}) from scale set {scale_set_id}: no EphemeralRunner had it"
                    ),
                )
                .await;
                report.removed.push(id);
            }
            Err(e) if e.is_job_still_running() => {
                tracing::debug!(
                    runner_id = id,
                    "orphaned registration still runs a job; kept"
                );
                report.busy.push(id);
            }
            Err(e) => {
                ctx.publish(
                    &set.object_ref(&()),
                    EventType::Warning,
                    "OrphanedRegistrationRemovalFailed",
                    &format!("removing runner {name:?} (id {id}) from the service failed: {e}"),
                )
                .await;
                return Err(Error::Service(e));
            }
        }
    }
    Ok(())
}
