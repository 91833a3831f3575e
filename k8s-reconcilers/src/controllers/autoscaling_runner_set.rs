//! AutoscalingRunnerSet reconciler (docs/architecture.md#autoscalingrunnerset-reconciler): the
//! service-side scale set, the EphemeralRunnerSet and AutoscalingListener, status, and deletion in
//! order.

mod children;
mod deletion;
pub mod desired;
#[cfg(test)]
mod mock_tests;
pub(crate) mod scale_set;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
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
use children::Children;

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

/// The controller's context, its view of the children and its own writes to the ARSes.
pub struct State {
    ctx: Arc<Context>,
    children: Children,
    writes: super::OwnWrites,
}

impl State {
    /// A state whose child caches stay empty, so every pass reads its children from the API
    /// server.
    #[cfg(test)]
    pub(crate) fn uncached(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            children: Children::uncached(),
            writes: Default::default(),
        })
    }

    /// Records a write of this controller that turned `ars` into `written`.
    pub(crate) fn wrote(&self, ars: &AutoscalingRunnerSet, written: &AutoscalingRunnerSet) {
        self.writes.wrote(&ars.metadata, &written.metadata);
    }
}

/// Runs the AutoscalingRunnerSet controller until its watch streams end.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let ars: Api<AutoscalingRunnerSet> = super::watched_api(&ctx);
    let ers: Api<EphemeralRunnerSet> = super::watched_api(&ctx);
    let listeners: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &ctx.options.controller_namespace);
    let queue = ctx.queue.clone();
    let (ars, store) = super::watch_own(ars, &queue);
    let (ers, ers_store) = super::watch_cached(ers);
    let (listeners, listener_store) = super::watch_cached(listeners);
    let shutdown = ctx.options.shutdown.signal();
    let state = Arc::new(State {
        ctx,
        children: Children::new(ers_store, listener_store),
        writes: Default::default(),
    });
    let results = Controller::for_stream(ars, store)
        .trigger_backoff(super::watch_backoff())
        .owns_stream(queue.watch_owners::<AutoscalingRunnerSet, _, _, _>(ers))
        .watches_stream(
            listeners,
            queue.mapped(|al: AutoscalingListener| {
                let ns = al.spec.autoscaling_runner_set_namespace.clone()?;
                let name = al.spec.autoscaling_runner_set_name.clone()?;
                Some(ObjectRef::<AutoscalingRunnerSet>::new(&name).within(&ns))
            }),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state);
    super::drain(queue, results).await;
    Ok(())
}

fn error_policy(ars: Arc<AutoscalingRunnerSet>, error: &Error, state: Arc<State>) -> Action {
    Context::error_policy(ars, error, state.ctx.clone())
}

/// One reconcile pass.
pub async fn reconcile(ars: Arc<AutoscalingRunnerSet>, state: Arc<State>) -> Result<Action, Error> {
    state
        .ctx
        .instrumented(&*ars, reconcile_inner(ars.clone(), &state))
        .await
}

/// Observe, ask [`core::ars_step`], carry out the one step it returns.
async fn reconcile_inner(ars: Arc<AutoscalingRunnerSet>, state: &State) -> Result<Action, Error> {
    // The cache shows the ARS from before this controller's last write to it, whose own watch
    // event starts the next pass (docs/architecture.md#own-writes-and-the-watch-cache).
    if state.writes.superseded(ars.meta()) {
        return Ok(Action::await_change());
    }
    let result = pass(&ars, state).await;
    match result {
        // Input the user can fix (the spec, a Secret it names, the host of its URL) ends as the
        // Ready=False condition; the error policy adds the Warning Event and decides the retry.
        Err(e) if ars.meta().deletion_timestamp.is_none() && e.is_users_to_fix() => {
            let reason = e.reason().unwrap_or("InvalidConfiguration");
            set_condition(&ars, state, false, reason, &e.to_string(), None).await?;
            Err(e)
        }
        other => other,
    }
}

async fn pass(ars: &AutoscalingRunnerSet, state: &State) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let drift = ctx.options.drift_policy;
    let (mut observation, observed) = observe(ars, state).await?;
    let mut step = core::ars_step(&observation, drift);
    let mut service = None;
    if step == ArsStep::ObserveScaleSet {
        let (sync, client) = scale_set::observe(ars, ctx).await?;
        observation.scale_set = Some(sync);
        service = client;
        step = core::ars_step(&observation, drift);
    }
    tracing::debug!(ars = %ars.name_any(), ?step, "autoscalingrunnerset step");
    execute(ars, state, &observed, step, service).await
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
    state: &State,
) -> Result<(ArsObservation, Observed), Error> {
    let ctx = &*state.ctx;
    let status = ars.status.clone().unwrap_or_default();
    let id = scale_set::recorded(ars).id.unwrap_or_default();

    let runner_set = state.children.runner_set(ars, ctx).await?;
    let desired_runner_set = desired::runner_set(ars, id, &ctx.options);
    let desired_listener = desired::listener(ars, id, &ctx.options);
    let listeners = state
        .children
        .listeners(ars, ctx, &desired_listener.name_any())
        .await?;

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
    state: &State,
    observed: &Observed,
    step: ArsStep,
    service: Option<Arc<dyn ActionsService>>,
) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let children = &state.children;
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
            let action = remove_finalizer(&api, ars, state).await;
            state.writes.forget(&ars.metadata);
            action
        }
        ArsStep::AddFinalizer => add_finalizer(&api, ars, state).await,
        ArsStep::Invalid(message) => Err(Error::Config(message)),
        ArsStep::MarkPending => {
            let hash = desired::ars_hash(ars);
            let patch = json!({"metadata": {"annotations": {annotations::INTEGRITY_HASH: hash}}});
            let patched = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            state.wrote(ars, &patched);
            set_phase(&api, ars, state, ArsPhase::Pending).await
        }
        // Not returned once the scale set is observed; look again.
        ArsStep::ObserveScaleSet => Ok(Action::requeue(Duration::ZERO)),
        ArsStep::ScaleSet(sync) => {
            let service = match service {
                Some(s) => s,
                None => actions_service(ars, ctx).await?,
            };
            scale_set::execute(ars, state, &service, sync).await
        }
        ArsStep::Refuse(changed) => refuse(ars, state, &changed).await,
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
            set_phase(&api, ars, state, ArsPhase::Outdated).await
        }
        ArsStep::CreateRunnerSet => {
            ers_api
                .create(&PostParams::default(), &observed.desired_runner_set)
                .await?;
            Ok(Action::await_change())
        }
        ArsStep::DeleteRunnerSet => {
            super::ignore_not_found(ers_api.delete(&name, &DeleteParams::default()).await)?;
            if let Some(set) = &observed.runner_set {
                children.deleted(&set.metadata);
            }
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
            patch_runner_set(&ers_api, children, observed, &patch).await
        }
        ArsStep::PatchRunnerSetMetadata => {
            let desired = &observed.desired_runner_set;
            let patch = json!({
                "metadata": {"labels": desired.labels(), "annotations": runner_set_annotations(desired)},
                "spec": {"ephemeralRunnerMetadata": desired.spec.ephemeral_runner_metadata},
            });
            patch_runner_set(&ers_api, children, observed, &patch).await
        }
        ArsStep::StopListener => {
            delete_listeners(&al_api, children, observed, |_| true).await?;
            Ok(Action::requeue(REPLACE_WAIT))
        }
        ArsStep::CreateListener => {
            al_api
                .create(&PostParams::default(), &observed.desired_listener)
                .await?;
            Ok(Action::await_change())
        }
        ArsStep::ReplaceListener => {
            delete_listeners(&al_api, children, observed, |al| {
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
            let name = observed.desired_listener.name_any();
            let patched = al_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            if let Some(before) = observed.listeners.iter().find(|l| l.name_any() == name) {
                children.patched(&before.metadata, &patched.metadata);
            }
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
                write_status(&api, ars, state, &patch).await?;
            }
            set_condition(ars, state, true, RUNNING_REASON, RUNNING_MESSAGE, None).await?;
            Ok(Action::requeue(RECHECK))
        }
        ArsStep::Parked => Ok(Action::await_change()),
        ArsStep::Done => Ok(Action::requeue(RECHECK)),
    }
}

async fn set_phase(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
    state: &State,
    phase: ArsPhase,
) -> Result<Action, Error> {
    let patch = json!({"status": {"phase": phase.as_str()}});
    write_status(api, ars, state, &patch).await?;
    Ok(Action::await_change())
}

/// Merge-patches the ARS's status and records the write.
async fn write_status(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
    state: &State,
    patch: &serde_json::Value,
) -> Result<(), Error> {
    let patched = api
        .patch_status(
            &ars.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    state.wrote(ars, &patched);
    Ok(())
}

/// Phase `Failed` with a `ConfigUrlChanged` condition, and an Event the first time.
async fn refuse(
    ars: &AutoscalingRunnerSet,
    state: &State,
    changed: &core::ConfigUrlChanged,
) -> Result<Action, Error> {
    let message = changed.to_string();
    let reason = "ConfigUrlChanged";
    if set_condition(ars, state, false, reason, &message, Some(ArsPhase::Failed)).await? {
        state
            .ctx
            .publish(&ars.object_ref(&()), EventType::Warning, reason, &message)
            .await;
    }
    Ok(Action::await_change())
}

/// Merge-patches the observed EphemeralRunnerSet.
async fn patch_runner_set(
    api: &Api<EphemeralRunnerSet>,
    children: &Children,
    observed: &Observed,
    patch: &serde_json::Value,
) -> Result<Action, Error> {
    let name = observed.desired_runner_set.name_any();
    let patched = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    if let Some(before) = &observed.runner_set {
        children.patched(&before.metadata, &patched.metadata);
    }
    Ok(Action::await_change())
}

/// Deletes the listeners of `observed` that are not terminating and match `which`.
async fn delete_listeners(
    api: &Api<AutoscalingListener>,
    children: &Children,
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
        children.deleted(&al.metadata);
    }
    Ok(())
}

/// Applies a JSON patch to the ARS; an ARS already gone is done.
async fn json_patch(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
    state: &State,
    ops: serde_json::Value,
) -> Result<Action, Error> {
    let patch = serde_json::from_value(ops).map_err(|source| Error::Serialize {
        what: "finalizer patch",
        source,
    })?;
    match api
        .patch(
            &ars.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(patched) => state.wrote(ars, &patched),
        Err(e) if super::is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

async fn add_finalizer(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
    state: &State,
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
    json_patch(api, ars, state, ops).await
}

async fn remove_finalizer(
    api: &Api<AutoscalingRunnerSet>,
    ars: &AutoscalingRunnerSet,
    state: &State,
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
    json_patch(api, ars, state, ops).await
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
    state: &State,
    ready: bool,
    reason: &str,
    message: &str,
    phase: Option<ArsPhase>,
) -> Result<bool, Error> {
    let Some(patch) = condition_update(ars, ready, reason, message, phase) else {
        return Ok(false);
    };
    let api: Api<AutoscalingRunnerSet> =
        Api::namespaced(state.ctx.client.clone(), &namespace(ars)?);
    write_status(&api, ars, state, &patch).await?;
    Ok(true)
}
