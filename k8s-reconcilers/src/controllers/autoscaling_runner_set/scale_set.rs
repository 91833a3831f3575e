//! The service-side scale set of an AutoscalingRunnerSet: observe, ask scaleset-core, apply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use scaleset_core::autoscaling_runner_set::{
    self as core, DesiredScaleSet, Lookup, Recorded, ScaleSetUpdate, ServiceScaleSet, ServiceView,
    SyncStep,
};
use serde_json::json;

use crate::Context;
use crate::crd::AutoscalingRunnerSet;
use crate::error::Error;
use crate::github::{ActionsService, NewScaleSet, ScaleSet, ScaleSetPatch};
use crate::names::annotations;

use super::desired::url_labels;

/// How long a scale set read from the service stands for it while the ARS is unchanged; the
/// controller's periodic re-check reads it again after this.
pub const VERIFIED_FOR: Duration = super::RECHECK;

/// The scale sets last read from the service, per ARS: a reconcile driven by a runner-set
/// change reuses the read instead of asking the service again. A change to the ARS's spec
/// (other than its runner bounds), labels or annotations makes the next reconcile read again.
#[derive(Debug, Default)]
pub struct VerifiedScaleSets {
    entries: Mutex<HashMap<String, Verified>>,
}

#[derive(Debug, Clone)]
struct Verified {
    fingerprint: String,
    at: Instant,
    scale_set: ServiceScaleSet,
}

impl VerifiedScaleSets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        crate::lock(&self.entries)
    }

    fn get(&self, ars: &AutoscalingRunnerSet, id: i64, now: Instant) -> Option<ServiceScaleSet> {
        let fingerprint = fingerprint(ars);
        self.lock()
            .get(&key(ars))
            .filter(|v| {
                v.fingerprint == fingerprint
                    && v.scale_set.id == id
                    && now.saturating_duration_since(v.at) < VERIFIED_FOR
            })
            .map(|v| v.scale_set.clone())
    }

    fn put(&self, ars: &AutoscalingRunnerSet, scale_set: ServiceScaleSet, at: Instant) {
        let entry = Verified {
            fingerprint: fingerprint(ars),
            at,
            scale_set,
        };
        self.lock().insert(key(ars), entry);
    }

    /// Forgets the read for `ars` (it was changed or is going away).
    pub fn forget(&self, ars: &AutoscalingRunnerSet) {
        self.lock().remove(&key(ars));
    }
}

fn key(ars: &AutoscalingRunnerSet) -> String {
    format!("{}/{}", ars.namespace().unwrap_or_default(), ars.name_any())
}

/// What of the ARS a scale-set read depends on: identity and annotations. The annotations carry
/// the ARS hash (spec without the runner bounds, and labels), which a pass stores before it
/// observes the scale set, so status writes and new bounds leave the fingerprint as it is.
fn fingerprint(ars: &AutoscalingRunnerSet) -> String {
    let meta = ars.meta();
    serde_json::json!({
        "uid": meta.uid,
        "annotations": meta.annotations,
    })
    .to_string()
}

fn to_core(s: &ScaleSet) -> ServiceScaleSet {
    ServiceScaleSet {
        id: s.id,
        name: s.name.clone(),
        runner_group_id: s.runner_group_id,
        runner_group_name: s.runner_group_name.clone(),
        labels: s.labels.clone(),
    }
}

fn service_err(e: crate::github::ServiceError) -> Error {
    Error::Service(e)
}

/// A create or update of the scale set the service refused (400/422): the spec's name, group or
/// labels cannot work as they are, so the user has to change them.
fn refused(e: crate::github::ServiceError, desired: &DesiredScaleSet) -> Error {
    if e.kind != crate::github::ServiceErrorKind::Invalid {
        return Error::Service(e);
    }
    Error::Config(format!(
        "the Actions service refused runner scale set {:?} with labels {:?} ({e}); change spec.runnerScaleSetName (or the AutoscalingRunnerSet name it defaults to) or spec.runnerScaleSetLabels to values the service accepts",
        desired.name, desired.labels
    ))
}

/// The scale set the spec asks for.
fn desired(ars: &AutoscalingRunnerSet) -> DesiredScaleSet {
    let spec = &ars.spec;
    DesiredScaleSet::from_spec(
        &ars.name_any(),
        spec.runner_scale_set_name.as_deref(),
        spec.runner_group.as_deref(),
        spec.runner_scale_set_labels.as_deref().unwrap_or_default(),
        spec.github_config_url.as_deref().unwrap_or_default(),
    )
}

/// What the ARS annotations record about its scale set.
pub fn recorded(ars: &AutoscalingRunnerSet) -> Recorded {
    let a = ars.annotations();
    Recorded {
        id: core::parse_scale_set_id(a.get(annotations::RUNNER_SCALE_SET_ID).map(String::as_str)),
        config_url: a.get(annotations::GITHUB_CONFIG_URL).cloned(),
        name: a.get(annotations::RUNNER_SCALE_SET_NAME).cloned(),
        runner_group_name: a.get(annotations::RUNNER_GROUP_NAME).cloned(),
    }
}

/// Reads the recorded scale set (from the verified reads when the ARS is unchanged, else from
/// the service) and returns scaleset-core's step for it, with the service client when the
/// service was asked. Credentials are resolved only to ask it.
pub async fn observe(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
) -> Result<(SyncStep, Option<Arc<dyn ActionsService>>), Error> {
    let recorded = recorded(ars);
    let verified = &ctx.verified_scale_sets;
    let (view, service) = match recorded.id {
        Some(id) => match verified.get(ars, id, Instant::now()) {
            Some(known) => (ServiceView::Found(known), None),
            None => {
                let service = super::actions_service(ars, ctx).await?;
                let at = Instant::now();
                let view = match service
                    .get_runner_scale_set_by_id(id)
                    .await
                    .map_err(service_err)?
                {
                    Some(found) => {
                        let found = to_core(&found);
                        verified.put(ars, found.clone(), at);
                        ServiceView::Found(found)
                    }
                    None => ServiceView::Missing,
                };
                (view, Some(service))
            }
        },
        None => (ServiceView::Missing, None),
    };
    let step = core::sync_scale_set(&desired(ars), &recorded, &view);
    if !matches!(step, SyncStep::InSync) {
        verified.forget(ars);
    }
    Ok((step, service))
}

/// Carries out one scale-set step (never `InSync` or `Refuse`, which the reconciler handles).
pub async fn execute(
    ars: &AutoscalingRunnerSet,
    state: &super::State,
    service: &Arc<dyn ActionsService>,
    step: SyncStep,
) -> Result<Action, Error> {
    let ctx = &*state.ctx;
    let desired = desired(ars);
    let config_url = desired.config_url.clone();
    let api: Api<AutoscalingRunnerSet> =
        Api::namespaced(ctx.client.clone(), &super::namespace(ars)?);
    let name = ars.name_any();
    let patch = match step {
        SyncStep::FindOrCreate => {
            let group_id = group_id(service, desired.runner_group.as_deref()).await?;
            let found = service
                .get_runner_scale_set(group_id, &desired.name)
                .await
                .map_err(service_err)?;
            let set = match core::on_lookup(found.as_ref().map(to_core).as_ref()) {
                Lookup::Adopt(_) => found.ok_or_else(|| Error::Unusable {
                    what: format!(
                        "the service found scale set {:?} but sent no id",
                        desired.name
                    ),
                })?,
                Lookup::Create => service
                    .create_runner_scale_set(NewScaleSet {
                        name: desired.name.clone(),
                        runner_group_id: group_id,
                        labels: desired.labels.clone(),
                    })
                    .await
                    .map_err(|e| refused(e, &desired))?,
            };
            tracing::info!(ars = %name, id = set.id, scale_set = %set.name, "runner scale set ready on the service");
            let mut patch = json!({
                "metadata": {
                    "annotations": {
                        annotations::RUNNER_SCALE_SET_ID: set.id.to_string(),
                        annotations::RUNNER_SCALE_SET_NAME: set.name,
                        annotations::RUNNER_GROUP_NAME: set.runner_group_name,
                        annotations::GITHUB_CONFIG_URL: config_url,
                    },
                    "labels": url_labels(&config_url),
                }
            });
            if ars
                .spec
                .runner_scale_set_name
                .as_deref()
                .is_none_or(|n| n.trim().is_empty())
            {
                patch["spec"] = json!({ "runnerScaleSetName": desired.name });
            }
            patch
        }
        SyncStep::Recreate { lost_id } => {
            tracing::warn!(ars = %name, lost_id, "the service lost the runner scale set; creating it again");
            ctx.publish(
                &ars.object_ref(&()),
                EventType::Warning,
                "RunnerScaleSetLost",
                &format!(
                    "runner scale set {lost_id} no longer exists on the service; creating it again"
                ),
            )
            .await;
            json!({"metadata": {"annotations": {annotations::RUNNER_SCALE_SET_ID: null}}})
        }
        SyncStep::RecordConfigUrl => {
            json!({"metadata": {"annotations": {annotations::GITHUB_CONFIG_URL: config_url}}})
        }
        SyncStep::RecordNames {
            name: set_name,
            runner_group_name,
        } => json!({"metadata": {"annotations": {
            annotations::RUNNER_SCALE_SET_NAME: set_name,
            annotations::RUNNER_GROUP_NAME: runner_group_name,
        }}}),
        SyncStep::Update(update) => {
            update_scale_set(ars, ctx, service, &update).await?;
            // The ARS is unchanged, so no watch event follows: look again at once.
            return Ok(Action::requeue(Duration::ZERO));
        }
        SyncStep::InSync | SyncStep::Refuse(_) => return Ok(Action::await_change()),
    };
    let patched = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    state.wrote(ars, &patched);
    Ok(Action::await_change())
}

/// Pushes `update` and reports, as an Event, what the service did not apply.
async fn update_scale_set(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
    service: &Arc<dyn ActionsService>,
    update: &ScaleSetUpdate,
) -> Result<(), Error> {
    let id = recorded(ars).id.unwrap_or_default();
    let runner_group_id = match &update.runner_group {
        None => None,
        Some(group) => Some(group_id(service, group.as_deref()).await?),
    };
    let updated = service
        .update_runner_scale_set(
            id,
            ScaleSetPatch {
                name: update.name.clone(),
                runner_group_id,
                labels: update.labels.clone(),
            },
        )
        .await
        .map_err(|e| refused(e, &desired(ars)))?;
    let missing = core::not_applied(update, &to_core(&updated));
    if !missing.is_empty() {
        ctx.publish(
            &ars.object_ref(&()),
            EventType::Warning,
            "RunnerScaleSetUpdateNotApplied",
            &format!("the service did not apply these scale set changes: {missing:?}"),
        )
        .await;
    }
    Ok(())
}

async fn group_id(service: &Arc<dyn ActionsService>, group: Option<&str>) -> Result<i64, Error> {
    match group.map(str::trim).filter(|g| !g.is_empty()) {
        None => Ok(core::DEFAULT_RUNNER_GROUP_ID),
        Some(name) => match service.get_runner_group_by_name(name).await {
            Ok(group) => Ok(group.id),
            // It may be created on GitHub any time: retried in minutes.
            Err(e) if e.is_not_found() => Err(Error::Unavailable(format!(
                "spec.runnerGroup {name:?}: no runner group of that name on the service ({e}); create it in the settings of the organization or enterprise, or set runnerGroup to an existing group (empty for the default group)"
            ))),
            Err(e) => Err(Error::Service(e)),
        },
    }
}
