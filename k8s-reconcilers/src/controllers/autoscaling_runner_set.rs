//! AutoscalingRunnerSet reconciler (controllers.md 4): the service-side scale set, the
//! EphemeralRunnerSet and AutoscalingListener, status, and deletion in order.

mod deletion;
pub mod desired;
pub(crate) mod scale_set;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use scaleset_core::autoscaling_runner_set::{self as core, ArsPhase, SpecDrift};
use serde_json::json;

use crate::Context;
use crate::crd::{
    AutoscalingListener, AutoscalingRunnerSet, AutoscalingRunnerSetStatus, EphemeralRunnerSet,
};
use crate::error::Error;
use crate::github::ObjectSettings;
use crate::meta::contains_all;
use crate::names::{annotations, finalizers};

use scale_set::Synced;

/// Controller name (metrics label).
pub const CONTROLLER: &str = "autoscalingrunnerset";
/// Condition type that reports whether the configuration works.
pub const READY_CONDITION: &str = "Ready";
/// Requeue while draining runners before a spec change (ARC: 1 s).
const DRAIN_WAIT: Duration = Duration::from_secs(1);
/// Steady-state re-check: finds a scale set the service lost without waiting for an event.
pub(crate) const RECHECK: Duration = Duration::from_secs(300);
/// Requeue while the listener or the runner set is being replaced (ARC: 5 s).
const REPLACE_WAIT: Duration = Duration::from_secs(5);

/// Runs the AutoscalingRunnerSet controller until its watch streams end.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let ars: Api<AutoscalingRunnerSet> = super::watched_api(&ctx);
    let ers: Api<EphemeralRunnerSet> = super::watched_api(&ctx);
    let listeners: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &ctx.options.controller_namespace);
    Controller::new(ars, watcher::Config::default())
        .trigger_backoff(super::watch_backoff())
        .owns(ers, watcher::Config::default())
        .watches(listeners, watcher::Config::default(), |al| {
            let ns = al.spec.autoscaling_runner_set_namespace.clone()?;
            let name = al.spec.autoscaling_runner_set_name.clone()?;
            Some(ObjectRef::<AutoscalingRunnerSet>::new(&name).within(&ns))
        })
        .graceful_shutdown_on(ctx.options.shutdown.signal())
        .run(reconcile, Context::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "autoscalingrunnerset controller event");
            }
        })
        .await;
    Ok(())
}

/// One reconcile pass.
pub async fn reconcile(ars: Arc<AutoscalingRunnerSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.instrumented(&*ars, reconcile_inner(ars.clone(), &ctx))
        .await
}

async fn reconcile_inner(ars: Arc<AutoscalingRunnerSet>, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(&ars)?;
    let api: Api<AutoscalingRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    if ars.meta().deletion_timestamp.is_none()
        && !core::version_allowed(
            ars.labels()
                .get(crate::names::labels::VERSION)
                .map(String::as_str),
            &ctx.options.build_version,
        )
    {
        tracing::warn!(ars = %ars.name_any(), build = %ctx.options.build_version,
            "app.kubernetes.io/version of this AutoscalingRunnerSet does not match the controller; deleting it");
        if let Err(e) = api.delete(&ars.name_any(), &DeleteParams::default()).await {
            tracing::warn!(error = %e, "deleting a version-mismatched AutoscalingRunnerSet failed");
        }
        return Ok(Action::await_change());
    }
    let result = finalizer(
        &api,
        finalizers::AUTOSCALING_RUNNER_SET,
        ars,
        |event| async {
            match event {
                Finalizer::Apply(ars) => apply(&ars, ctx).await,
                Finalizer::Cleanup(ars) => {
                    ctx.verified_scale_sets.forget(&ars);
                    deletion::cleanup(&ars, ctx)
                        .await
                        .map(|()| Action::await_change())
                }
            }
        },
    )
    .await;
    super::finalizer_result(result)
}

pub(crate) fn namespace(ars: &AutoscalingRunnerSet) -> Result<String, Error> {
    super::namespace_of(ars.meta())
}

async fn apply(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<Action, Error> {
    match apply_inner(ars, ctx).await {
        Err(Error::Config(message)) => {
            set_condition(ars, ctx, false, "InvalidConfiguration", &message, None).await?;
            Err(Error::Config(message))
        }
        other => other,
    }
}

async fn apply_inner(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<Action, Error> {
    let ns = namespace(ars)?;
    scaleset_core::desired::Bounds::from_spec(
        ars.spec.min_runners.map(i64::from),
        ars.spec.max_runners.map(i64::from),
    )
    .map_err(|e| Error::Config(format!("spec: {e}")))?;
    let name = ars.name_any();
    let api: Api<AutoscalingRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    let status = ars.status.clone().unwrap_or_default();

    let hash = desired::ars_hash(ars);
    if ars.annotations().get(annotations::INTEGRITY_HASH) != Some(&hash) {
        let patch = json!({"metadata": {"annotations": {annotations::INTEGRITY_HASH: hash}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let patch = json!({"status": {"phase": ArsPhase::Pending.as_str()}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok(Action::await_change());
    }

    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    if status.phase == ArsPhase::Outdated.as_str() {
        if !delete_listeners(ars, ctx).await? {
            return Ok(Action::requeue(REPLACE_WAIT));
        }
        if let Some(ers) = ers_api.get_opt(&name).await?
            && ers.meta().deletion_timestamp.is_none()
        {
            let patch = json!({"spec": {"replicas": null, "patchID": 0}});
            ers_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok(Action::await_change());
    }

    let service = ctx
        .github
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
        .await?;
    let scale_set_id = match scale_set::sync(ars, ctx, &service).await? {
        Synced::Ready(id) => id,
        Synced::Patched => return Ok(Action::await_change()),
        Synced::Refused(changed) => {
            let message = changed.to_string();
            let first = set_condition(
                ars,
                ctx,
                false,
                "ConfigUrlChanged",
                &message,
                Some(ArsPhase::Failed),
            )
            .await?;
            if first {
                ctx.publish(
                    &ars.object_ref(&()),
                    EventType::Warning,
                    "ConfigUrlChanged",
                    &message,
                )
                .await;
            }
            return Ok(Action::await_change());
        }
    };

    // EphemeralRunnerSet.
    let desired_ers = desired::runner_set(ars, scale_set_id, &ctx.options);
    let Some(ers) = ers_api.get_opt(&name).await? else {
        ers_api.create(&PostParams::default(), &desired_ers).await?;
        return Ok(Action::await_change());
    };
    let ers_status = ers.status.clone().unwrap_or_default();
    if ers_status.phase == ArsPhase::Outdated.as_str() && status.phase == ArsPhase::Running.as_str()
    {
        if !delete_listeners(ars, ctx).await? {
            return Ok(Action::requeue(REPLACE_WAIT));
        }
        if ers.meta().deletion_timestamp.is_none() {
            ers_api.delete(&name, &DeleteParams::default()).await?;
        }
        return Ok(Action::requeue(REPLACE_WAIT));
    }
    if ers.meta().deletion_timestamp.is_some() {
        return Ok(Action::requeue(REPLACE_WAIT));
    }
    let desired_hash = desired_ers
        .annotations()
        .get(annotations::INTEGRITY_HASH)
        .cloned()
        .unwrap_or_default();
    let live_hash = ers.annotations().get(annotations::INTEGRITY_HASH);
    let spec_differs = ers.spec.ephemeral_runner_spec != desired_ers.spec.ephemeral_runner_spec;
    if spec_differs
        || live_hash != Some(&desired_hash) && ctx.options.drift_policy == core::DriftPolicy::Drain
    {
        let pending = u32::try_from(ers_status.pending_ephemeral_runners).unwrap_or(0);
        let running = u32::try_from(ers_status.running_ephemeral_runners).unwrap_or(0);
        match core::on_spec_drift(pending, running, ctx.options.drift_policy) {
            SpecDrift::Drain => {
                delete_listeners(ars, ctx).await?;
                return Ok(Action::requeue(DRAIN_WAIT));
            }
            SpecDrift::PatchInPlace => {
                let mut metadata = json!({
                    "labels": desired_ers.labels(),
                    "annotations": desired_ers.annotations(),
                });
                if ctx.options.drift_policy == core::DriftPolicy::Replace {
                    // The set controller sees the hash mismatch and replaces idle runners.
                    if let Some(a) = metadata["annotations"].as_object_mut() {
                        a.remove(annotations::INTEGRITY_HASH);
                    }
                }
                let patch = json!({
                    "metadata": metadata,
                    "spec": {
                        "ephemeralRunnerSpec": desired_ers.spec.ephemeral_runner_spec,
                        "ephemeralRunnerMetadata": desired_ers.spec.ephemeral_runner_metadata,
                    }
                });
                ers_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                return Ok(Action::await_change());
            }
        }
    }
    let mut desired_annotations = desired_ers.annotations().clone();
    desired_annotations.remove(annotations::INTEGRITY_HASH);
    if !contains_all(ers.metadata.labels.as_ref(), desired_ers.labels())
        || !contains_all(ers.metadata.annotations.as_ref(), &desired_annotations)
        || ers.spec.ephemeral_runner_metadata != desired_ers.spec.ephemeral_runner_metadata
    {
        let patch = json!({
            "metadata": {"labels": desired_ers.labels(), "annotations": desired_annotations},
            "spec": {"ephemeralRunnerMetadata": desired_ers.spec.ephemeral_runner_metadata},
        });
        ers_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok(Action::await_change());
    }

    // AutoscalingListener.
    let desired_al = desired::listener(ars, scale_set_id, &ctx.options);
    let al_name = desired_al.name_any();
    let al_api: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &ctx.options.controller_namespace);
    let mut found = None;
    for al in deletion::listeners_of(ars, ctx).await? {
        if al.name_any() == al_name {
            found = Some(al);
        } else if al.meta().deletion_timestamp.is_none() {
            tracing::info!(listener = %al.name_any(), "deleting a listener left from an earlier runner group or URL");
            al_api
                .delete(&al.name_any(), &DeleteParams::default())
                .await?;
        }
    }
    match found {
        None => match al_api.get_opt(&al_name).await? {
            None => {
                al_api.create(&PostParams::default(), &desired_al).await?;
                return Ok(Action::await_change());
            }
            Some(_) => {
                // Same name but not labelled as ours (e.g. created by another tool): replace.
                al_api.delete(&al_name, &DeleteParams::default()).await?;
                return Ok(Action::requeue(REPLACE_WAIT));
            }
        },
        Some(al) if al.meta().deletion_timestamp.is_some() => {
            return Ok(Action::requeue(REPLACE_WAIT));
        }
        Some(al) => {
            if al.spec != desired_al.spec
                || !contains_all(al.metadata.labels.as_ref(), desired_al.labels())
                || !contains_all(al.metadata.annotations.as_ref(), desired_al.annotations())
            {
                tracing::info!(listener = %al_name, "listener spec changed; recreating it");
                al_api.delete(&al_name, &DeleteParams::default()).await?;
                return Ok(Action::await_change());
            }
        }
    }

    // Status.
    let target = AutoscalingRunnerSetStatus {
        current_runners: ers_status.current_replicas,
        phase: ArsPhase::Running.as_str().to_owned(),
        pending_ephemeral_runners: ers_status.pending_ephemeral_runners,
        running_ephemeral_runners: ers_status.running_ephemeral_runners,
        failed_ephemeral_runners: ers_status.failed_ephemeral_runners,
        conditions: status.conditions.clone(),
    };
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
    set_condition(
        ars,
        ctx,
        true,
        "Running",
        "the runner scale set is configured",
        None,
    )
    .await?;
    Ok(Action::requeue(RECHECK))
}

/// Deletes every listener of `ars`; `true` once none is left.
async fn delete_listeners(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<bool, Error> {
    let listeners = deletion::listeners_of(ars, ctx).await?;
    let api: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &ctx.options.controller_namespace);
    for al in &listeners {
        if al.meta().deletion_timestamp.is_none() {
            match api.delete(&al.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(listeners.is_empty())
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
    let status = ars.status.clone().unwrap_or_default();
    let wanted = if ready { "True" } else { "False" };
    let current = status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == READY_CONDITION));
    let phase_ok = phase.is_none_or(|p| status.phase == p.as_str());
    if let Some(c) = current
        && c.status == wanted
        && c.reason == reason
        && c.message == message
        && phase_ok
    {
        return Ok(false);
    }
    if current.is_none() && ready {
        // Nothing to report until something went wrong once.
        return Ok(false);
    }
    let transition = match current {
        Some(c) if c.status == wanted => c.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let condition = Condition {
        type_: READY_CONDITION.to_owned(),
        status: wanted.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: transition,
        observed_generation: ars.metadata.generation,
    };
    let mut patch = json!({"status": {"conditions": [condition]}});
    if let Some(p) = phase {
        patch["status"]["phase"] = json!(p.as_str());
    }
    let api: Api<AutoscalingRunnerSet> = Api::namespaced(ctx.client.clone(), &namespace(ars)?);
    api.patch_status(
        &ars.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}
