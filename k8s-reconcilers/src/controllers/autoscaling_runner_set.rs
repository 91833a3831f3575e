//! AutoscalingRunnerSet reconciler (docs/architecture.md#autoscalingrunnerset-reconciler): the
//! service-side scale set, the EphemeralRunnerSet and AutoscalingListener, status, and deletion in
//! order.

mod deletion;
pub mod desired;
#[cfg(test)]
mod mock_tests;
pub(crate) mod scale_set;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use scaleset_core::autoscaling_runner_set::{
    self as core, ArsObservation, ArsPhase, ArsStep, SpecDrift,
};
use serde_json::json;

use crate::Context;
use crate::crd::{
    AutoscalingListener, AutoscalingRunnerSet, AutoscalingRunnerSetStatus, EphemeralRunnerSet,
};
use crate::error::Error;
use crate::github::{ActionsService, ObjectSettings};
use crate::meta::contains_all;
use crate::names::{annotations, finalizers};

/// Controller name (metrics label).
pub const CONTROLLER: &str = "autoscalingrunnerset";
/// Condition type that reports whether the configuration works.
pub const READY_CONDITION: &str = super::conditions::READY;
/// Requeue while draining runners before a spec change (ARC: 1 s).
const DRAIN_WAIT: Duration = Duration::from_secs(1);
/// Steady-state re-check: finds a scale set the service lost without waiting for an event.
pub(crate) const RECHECK: Duration = Duration::from_secs(300);
/// Reason and message of the Ready condition once the scale set runs.
const RUNNING_REASON: &str = "Running";
const RUNNING_MESSAGE: &str = "the runner scale set is configured";
/// Requeue while the listener or the runner set is being replaced (ARC: 5 s).
const REPLACE_WAIT: Duration = Duration::from_secs(5);

/// Runs the AutoscalingRunnerSet controller until its watch streams end.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let ars: Api<AutoscalingRunnerSet> = super::watched_api(&ctx);
    let ers: Api<PartialObjectMeta<EphemeralRunnerSet>> = super::watched_api(&ctx);
    let listeners: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &ctx.options.controller_namespace);
    let queue = ctx.queue.clone();
    let (ars, store) = super::watch_own(ars, &queue);
    let results = Controller::for_stream(ars, store)
        .trigger_backoff(super::watch_backoff())
        .owns_stream(super::watch_owned::<AutoscalingRunnerSet, _>(ers, &queue))
        .watches(
            listeners,
            watcher::Config::default(),
            queue.mapped(|al: AutoscalingListener| {
                let ns = al.spec.autoscaling_runner_set_namespace.clone()?;
                let name = al.spec.autoscaling_runner_set_name.clone()?;
                Some(ObjectRef::<AutoscalingRunnerSet>::new(&name).within(&ns))
            }),
        )
        .graceful_shutdown_on(ctx.options.shutdown.signal())
        .run(reconcile, Context::error_policy, ctx);
    super::drain(queue, results).await;
    Ok(())
}

/// One reconcile pass.
pub async fn reconcile(ars: Arc<AutoscalingRunnerSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.instrumented(&*ars, reconcile_inner(ars.clone(), &ctx))
        .await
}

/// Observe, ask [`core::ars_step`], carry out the one step it returns.
async fn reconcile_inner(ars: Arc<AutoscalingRunnerSet>, ctx: &Context) -> Result<Action, Error> {
    let result = pass(&ars, ctx).await;
    match result {
        // Input the user can fix (the spec, a Secret it names, the host of its URL) ends as the
        // Ready=False condition; the error policy adds the Warning Event and decides the retry.
        Err(e) if ars.meta().deletion_timestamp.is_none() && e.is_users_to_fix() => {
            let reason = e.reason().unwrap_or("InvalidConfiguration");
            set_condition(&ars, ctx, false, reason, &e.to_string(), None).await?;
            Err(e)
        }
        other => other,
    }
}

async fn pass(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<Action, Error> {
    let drift = ctx.options.drift_policy;
    let (mut observation, observed) = observe(ars, ctx).await?;
    let mut step = core::ars_step(&observation, drift);
    let mut service = None;
    if step == ArsStep::ObserveScaleSet {
        let client = actions_service(ars, ctx).await?;
        observation.scale_set = Some(scale_set::observe(ars, ctx, &client).await?);
        service = Some(client);
        step = core::ars_step(&observation, drift);
    }
    tracing::debug!(ars = %ars.name_any(), ?step, "autoscalingrunnerset step");
    execute(ars, ctx, &observed, step, service).await
}

pub(crate) fn namespace(ars: &AutoscalingRunnerSet) -> Result<String, Error> {
    super::namespace_of(ars.meta())
}

pub(crate) async fn actions_service(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
) -> Result<Arc<dyn ActionsService>, Error> {
    let ns = namespace(ars)?;
    ctx.github
        .for_object(
            &ctx.client,
            ObjectSettings {
                namespace: &ns,
                config_url: ars.spec.github_config_url.as_deref().unwrap_or_default(),
                secret: ars.spec.github_config_secret.as_deref().unwrap_or_default(),
                proxy: ars.spec.proxy.as_ref(),
                tls: ars.spec.github_server_tls.as_ref(),
                vault: ars.spec.vault_config.as_ref(),
            },
        )
        .await
}

/// The cluster objects one pass read and the ones it would create.
struct Observed {
    runner_set: Option<EphemeralRunnerSet>,
    desired_runner_set: EphemeralRunnerSet,
    /// The listener with the desired name and every other one labelled as this ARS's.
    listeners: Vec<AutoscalingListener>,
    desired_listener: AutoscalingListener,
}

fn terminating<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// The listener is the desired one: same spec, and its labels and annotations include the
/// desired ones.
fn listener_matches(al: &AutoscalingListener, desired: &AutoscalingListener) -> bool {
    al.name_any() == desired.name_any()
        && al.spec.without_bounds() == desired.spec.without_bounds()
        && contains_all(al.metadata.labels.as_ref(), desired.labels())
        && contains_all(al.metadata.annotations.as_ref(), desired.annotations())
}

/// The desired runner-set annotations without the integrity hash, which the set controller
/// owns under [`core::DriftPolicy::Replace`].
fn runner_set_annotations(desired: &EphemeralRunnerSet) -> crate::meta::Map {
    let mut a = desired.annotations().clone();
    a.remove(annotations::INTEGRITY_HASH);
    a
}

async fn observe(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
) -> Result<(ArsObservation, Observed), Error> {
    let ns = namespace(ars)?;
    let name = ars.name_any();
    let status = ars.status.clone().unwrap_or_default();
    let id = scale_set::recorded(ars).id.unwrap_or_default();

    let runner_set = Api::<EphemeralRunnerSet>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?;
    let desired_runner_set = desired::runner_set(ars, id, &ctx.options);
    let desired_listener = desired::listener(ars, id, &ctx.options);
    let mut listeners = deletion::listeners_of(ars, ctx).await?;
    if !listeners
        .iter()
        .any(|l| l.name_any() == desired_listener.name_any())
        && let Some(al) = Api::<AutoscalingListener>::namespaced(
            ctx.client.clone(),
            &ctx.options.controller_namespace,
        )
        .get_opt(&desired_listener.name_any())
        .await?
    {
        // Same name but not labelled as ours (e.g. created by another tool): replaced.
        listeners.push(al);
    }

    let ers_status = runner_set
        .as_ref()
        .and_then(|r| r.status.clone())
        .unwrap_or_default();
    let as_u32 = |n: i32| u32::try_from(n).unwrap_or(0);
    let target = running_status(&status, &ers_status);
    let observation = ArsObservation {
        deleting: terminating(ars),
        finalizer: ars
            .finalizers()
            .iter()
            .any(|f| f == finalizers::AUTOSCALING_RUNNER_SET),
        version_allowed: core::version_allowed(
            ars.labels()
                .get(crate::names::labels::VERSION)
                .map(String::as_str),
            &ctx.options.build_version,
        ),
        invalid_spec: scaleset_core::naming::check_ars_name(&ars.name_any())
            .err()
            .map(|e| format!("metadata.name: {e}"))
            .or_else(|| {
                scaleset_core::desired::Bounds::from_spec(
                    ars.spec.min_runners.map(i64::from),
                    ars.spec.max_runners.map(i64::from),
                )
                .err()
                .map(|e| format!("spec: {e}"))
            })
            .or_else(|| {
                let containers: Vec<&str> = ars
                    .spec
                    .template
                    .as_ref()
                    .and_then(|t| t.spec.as_ref())
                    .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
                    .unwrap_or_default();
                core::check_runner_template(&containers).err()
            }),
        spec_hash_current: ars.annotations().get(annotations::INTEGRITY_HASH)
            == Some(&desired::ars_hash(ars)),
        phase_outdated: status.phase == ArsPhase::Outdated.as_str(),
        scale_set: None,
        runner_set: deletion::presence(runner_set.iter().map(terminating)),
        runner_set_outdated: ers_status.phase == ArsPhase::Outdated.as_str(),
        runner_set_spec_current: runner_set.as_ref().is_some_and(|r| {
            r.spec.ephemeral_runner_spec == desired_runner_set.spec.ephemeral_runner_spec
        }),
        runner_set_hash_current: runner_set.as_ref().is_some_and(|r| {
            r.annotations().get(annotations::INTEGRITY_HASH)
                == desired_runner_set
                    .annotations()
                    .get(annotations::INTEGRITY_HASH)
        }),
        runner_set_metadata_current: runner_set.as_ref().is_some_and(|r| {
            contains_all(r.metadata.labels.as_ref(), desired_runner_set.labels())
                && contains_all(
                    r.metadata.annotations.as_ref(),
                    &runner_set_annotations(&desired_runner_set),
                )
                && r.spec.ephemeral_runner_metadata
                    == desired_runner_set.spec.ephemeral_runner_metadata
        }),
        active_runners: as_u32(ers_status.pending_ephemeral_runners)
            .saturating_add(as_u32(ers_status.running_ephemeral_runners)),
        listener: deletion::presence(listeners.iter().map(terminating)),
        listener_current: listeners
            .iter()
            .all(|l| terminating(l) || listener_matches(l, &desired_listener))
            && listeners
                .iter()
                .any(|l| !terminating(l) && listener_matches(l, &desired_listener)),
        listener_bounds_current: listeners.iter().all(|l| {
            (l.spec.min_runners, l.spec.max_runners)
                == (
                    desired_listener.spec.min_runners,
                    desired_listener.spec.max_runners,
                )
        }),
        status_current: target == status
            && condition_update(ars, true, RUNNING_REASON, RUNNING_MESSAGE, None).is_none(),
    };
    let observed = Observed {
        runner_set,
        desired_runner_set,
        listeners,
        desired_listener,
    };
    Ok((observation, observed))
}

/// The ARS status of a converged pass: phase `Running` and the runner set's counters.
fn running_status(
    status: &AutoscalingRunnerSetStatus,
    ers: &crate::crd::EphemeralRunnerSetStatus,
) -> AutoscalingRunnerSetStatus {
    AutoscalingRunnerSetStatus {
        current_runners: ers.current_replicas,
        phase: ArsPhase::Running.as_str().to_owned(),
        pending_ephemeral_runners: ers.pending_ephemeral_runners,
        running_ephemeral_runners: ers.running_ephemeral_runners,
        failed_ephemeral_runners: ers.failed_ephemeral_runners,
        conditions: status.conditions.clone(),
    }
}

/// Carries out one step.
async fn execute(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
    observed: &Observed,
    step: ArsStep,
    service: Option<Arc<dyn ActionsService>>,
) -> Result<Action, Error> {
    let ns = namespace(ars)?;
    let name = ars.name_any();
    let api: Api<AutoscalingRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    let al_api: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &ctx.options.controller_namespace);
    match step {
        ArsStep::DeleteSelf => {
            tracing::warn!(ars = %name, build = %ctx.options.build_version,
                "app.kubernetes.io/version of this AutoscalingRunnerSet does not match the controller; deleting it");
            if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                tracing::warn!(error = %e, "deleting a version-mismatched AutoscalingRunnerSet failed");
            }
            Ok(Action::await_change())
        }
        ArsStep::Deletion(_) => {
            ctx.verified_scale_sets.forget(ars);
            match deletion::cleanup(ars, ctx).await {
                Ok(()) => {}
                // Waiting for the listener and the runner set, which have bounds of their own
                // (busy runners finish their job first).
                Err(e @ Error::Waiting { .. }) => return Err(e),
                Err(e) => {
                    let left = match scale_set::recorded(ars).id {
                        Some(id) => format!(
                            "runner scale set {id} on the service (and the cleanup-protection finalizers of the chart's objects)"
                        ),
                        None => {
                            "the cleanup-protection finalizers of the chart's objects".to_owned()
                        }
                    };
                    super::cleanup_bound::abandon_after_grace(ctx, ars, e, &left).await?;
                }
            }
            remove_finalizer(&api, ars).await
        }
        ArsStep::AddFinalizer => add_finalizer(&api, ars).await,
        ArsStep::Invalid(message) => Err(Error::Config(message)),
        ArsStep::MarkPending => {
            let hash = desired::ars_hash(ars);
            let patch = json!({"metadata": {"annotations": {annotations::INTEGRITY_HASH: hash}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            set_phase(&api, &name, ArsPhase::Pending).await
        }
        // Not returned once the scale set is observed; look again.
        ArsStep::ObserveScaleSet => Ok(Action::requeue(Duration::ZERO)),
        ArsStep::ScaleSet(sync) => {
            let service = match service {
                Some(s) => s,
                None => actions_service(ars, ctx).await?,
            };
            scale_set::execute(ars, ctx, &service, sync).await
        }
        ArsStep::Refuse(changed) => refuse(ars, ctx, &changed).await,
        ArsStep::MarkOutdated => {
            let message = "the runners report a deprecated runner version (exit code 7); the listener is stopped and the runner set deleted until the spec changes (e.g. a newer runner image)";
            tracing::warn!(ars = %name, "{message}");
            ctx.publish(
                &ars.object_ref(&()),
                EventType::Warning,
                "RunnerVersionOutdated",
                message,
            )
            .await;
            set_phase(&api, &name, ArsPhase::Outdated).await
        }
        ArsStep::CreateRunnerSet => {
            ers_api
                .create(&PostParams::default(), &observed.desired_runner_set)
                .await?;
            Ok(Action::await_change())
        }
        ArsStep::DeleteRunnerSet => {
            super::ignore_not_found(ers_api.delete(&name, &DeleteParams::default()).await)?;
            Ok(Action::requeue(REPLACE_WAIT))
        }
        ArsStep::RolloutRunnerSet(SpecDrift::Drain) => Ok(Action::requeue(DRAIN_WAIT)),
        ArsStep::RolloutRunnerSet(SpecDrift::PatchInPlace) => {
            let desired = &observed.desired_runner_set;
            let annotations = match ctx.options.drift_policy {
                // The set controller sees the hash mismatch and replaces idle runners.
                core::DriftPolicy::Replace => runner_set_annotations(desired),
                core::DriftPolicy::Drain => desired.annotations().clone(),
            };
            let patch = json!({
                "metadata": {"labels": desired.labels(), "annotations": annotations},
                "spec": {
                    "ephemeralRunnerSpec": desired.spec.ephemeral_runner_spec,
                    "ephemeralRunnerMetadata": desired.spec.ephemeral_runner_metadata,
                }
            });
            ers_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(Action::await_change())
        }
        ArsStep::PatchRunnerSetMetadata => {
            let desired = &observed.desired_runner_set;
            let patch = json!({
                "metadata": {"labels": desired.labels(), "annotations": runner_set_annotations(desired)},
                "spec": {"ephemeralRunnerMetadata": desired.spec.ephemeral_runner_metadata},
            });
            ers_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(Action::await_change())
        }
        ArsStep::StopListener => {
            delete_listeners(&al_api, observed, |_| true).await?;
            Ok(Action::requeue(REPLACE_WAIT))
        }
        ArsStep::CreateListener => {
            al_api
                .create(&PostParams::default(), &observed.desired_listener)
                .await?;
            Ok(Action::await_change())
        }
        ArsStep::ReplaceListener => {
            delete_listeners(&al_api, observed, |al| {
                !listener_matches(al, &observed.desired_listener)
            })
            .await?;
            Ok(Action::requeue(REPLACE_WAIT))
        }
        ArsStep::UpdateListenerBounds => {
            let patch = json!({"spec": {
                "minRunners": observed.desired_listener.spec.min_runners,
                "maxRunners": observed.desired_listener.spec.max_runners,
            }});
            al_api
                .patch(
                    &observed.desired_listener.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            Ok(Action::await_change())
        }
        ArsStep::Wait(d) => Ok(Action::requeue(d)),
        ArsStep::UpdateStatus => {
            let status = ars.status.clone().unwrap_or_default();
            let ers = observed
                .runner_set
                .as_ref()
                .and_then(|r| r.status.clone())
                .unwrap_or_default();
            let target = running_status(&status, &ers);
            if target != status {
                let patch = json!({"status": {
                    "currentRunners": target.current_runners,
                    "phase": target.phase,
                    "pendingEphemeralRunners": target.pending_ephemeral_runners,
                    "runningEphemeralRunners": target.running_ephemeral_runners,
                    "failedEphemeralRunners": target.failed_ephemeral_runners,
                }});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            set_condition(ars, ctx, true, RUNNING_REASON, RUNNING_MESSAGE, None).await?;
            Ok(Action::requeue(RECHECK))
        }
        ArsStep::Parked => Ok(Action::await_change()),
        ArsStep::Done => Ok(Action::requeue(RECHECK)),
    }
}

async fn set_phase(
    api: &Api<AutoscalingRunnerSet>,
    name: &str,
    phase: ArsPhase,
) -> Result<Action, Error> {
    let patch = json!({"status": {"phase": phase.as_str()}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Action::await_change())
}

/// Phase `Failed` with a `ConfigUrlChanged` condition, and an Event the first time.
async fn refuse(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
    changed: &core::ConfigUrlChanged,
) -> Result<Action, Error> {
    let message = changed.to_string();
    let reason = "ConfigUrlChanged";
    if set_condition(ars, ctx, false, reason, &message, Some(ArsPhase::Failed)).await? {
        ctx.publish(&ars.object_ref(&()), EventType::Warning, reason, &message)
            .await;
    }
    Ok(Action::await_change())
}

/// Deletes the listeners of `observed` that are not terminating and match `which`.
async fn delete_listeners(
    api: &Api<AutoscalingListener>,
    observed: &Observed,
    which: impl Fn(&AutoscalingListener) -> bool,
) -> Result<(), Error> {
    for al in observed
        .listeners
        .iter()
        .filter(|al| !terminating(*al) && which(al))
    {
        tracing::info!(listener = %al.name_any(), "deleting listener");
        super::ignore_not_found(api.delete(&al.name_any(), &DeleteParams::default()).await)?;
    }
    Ok(())
}

/// Applies a JSON patch to the ARS; an ARS already gone is done.
async fn json_patch(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
    ops: serde_json::Value,
) -> Result<Action, Error> {
    let patch = serde_json::from_value(ops).map_err(|source| Error::Serialize {
        what: "finalizer patch",
        source,
    })?;
    super::ignore_not_found(
        api.patch(
            &ars.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await,
    )?;
    Ok(Action::await_change())
}

async fn add_finalizer(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
) -> Result<Action, Error> {
    let ops = match &ars.metadata.finalizers {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizers::AUTOSCALING_RUNNER_SET]},
        ]),
        Some(current) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizers::AUTOSCALING_RUNNER_SET},
        ]),
    };
    json_patch(api, ars, ops).await
}

async fn remove_finalizer(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
) -> Result<Action, Error> {
    let Some(i) = ars
        .finalizers()
        .iter()
        .position(|f| f == finalizers::AUTOSCALING_RUNNER_SET)
    else {
        return Ok(Action::await_change());
    };
    let path = format!("/metadata/finalizers/{i}");
    let ops = json!([
        {"op": "test", "path": path, "value": finalizers::AUTOSCALING_RUNNER_SET},
        {"op": "remove", "path": path},
    ]);
    json_patch(api, ars, ops).await
}

/// The Ready condition (and phase) to write, or `None` when the status already says so.
fn condition_update(
    ars: &AutoscalingRunnerSet,
    ready: bool,
    reason: &str,
    message: &str,
    phase: Option<ArsPhase>,
) -> Option<serde_json::Value> {
    let status = ars.status.clone().unwrap_or_default();
    let current = status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == READY_CONDITION));
    let phase_ok = phase.is_none_or(|p| status.phase == p.as_str());
    let condition = match super::conditions::ready_condition(
        ars.metadata.generation,
        current,
        ready,
        reason,
        message,
    ) {
        Some(condition) => condition,
        // The condition is right; only the phase is not.
        None if !phase_ok => current?.clone(),
        None => return None,
    };
    let mut patch = json!({"status": {"conditions": [condition]}});
    if let Some(p) = phase {
        patch["status"]["phase"] = json!(p.as_str());
    }
    Some(patch)
}

/// Sets the Ready condition (and optionally the phase); returns whether anything changed.
async fn set_condition(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
    ready: bool,
    reason: &str,
    message: &str,
    phase: Option<ArsPhase>,
) -> Result<bool, Error> {
    let Some(patch) = condition_update(ars, ready, reason, message, phase) else {
        return Ok(false);
    };
    let api: Api<AutoscalingRunnerSet> = Api::namespaced(ctx.client.clone(), &namespace(ars)?);
    api.patch_status(
        &ars.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}
