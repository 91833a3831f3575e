//! Deletion of an EphemeralRunner (docs/architecture.md#ephemeralrunner-deletion): the registration
//! first, then container-hook resources and the finalizers; the pod and the JIT Secret follow the
//! runner by garbage collection. Nothing is left behind.

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use scaleset_core::ephemeral_runner::{FinalizerStep, after_remove, finalizer_start};
use serde_json::json;

use super::{Pass, observe, resources, service};
use crate::controllers::delete_ignoring_missing;
use crate::crd::EphemeralRunner;
use crate::error::Error;
use crate::names::{finalizers, labels};

use crate::controllers::recent::Recent;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;

/// Which finalizers a cleanup drops when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    /// The registration finalizer; the finalizer helper drops its own.
    Registration,
    /// Both, in one patch (the runner is not being cleaned up through the helper);
    /// `registration_gone`: the service removed the registration itself, so no `RemoveRunner`.
    Both {
        /// The service already removed the registration.
        registration_gone: bool,
    },
    /// Both, in one patch, for a runner someone else deleted (the set's scale-down or cleanup,
    /// a user), whose pod may still run: the pod is deleted too.
    External,
}

/// The UIDs of runners whose finalizers a pass removed, for a while. The watch events of their
/// deletion still show the finalizers; a pass for one of those would only send finalizer
/// patches that fail with 404 (two writes per runner) and read the pod and Secret again.
#[derive(Debug, Default)]
pub(super) struct Released(Recent<String>);

impl Released {
    /// Whether `er` is a runner this controller already released.
    pub(super) fn contains(&self, er: &EphemeralRunner) -> bool {
        let uid = er.metadata.uid.clone().unwrap_or_default();
        er.metadata.deletion_timestamp.is_some() && self.0.contains(&uid)
    }

    /// Remembers `er` as released.
    pub(super) fn insert(&self, er: &EphemeralRunner) {
        if let Some(uid) = er.metadata.uid.clone() {
            self.0.insert(uid);
        }
    }
}

impl Pass<'_> {
    /// Runs while the main finalizer is present on a deleting runner: the registration, hook
    /// resources (and an orphaned pod and JIT Secret), then the registration finalizer. Called by the
    /// finalizer helper, which drops the main finalizer when this returns `Ok`, or directly by
    /// the pass that deleted the runner (`Finish::Both`), which drops both in one patch.
    pub(super) async fn cleanup(
        &self,
        er: &EphemeralRunner,
        finish: Finish,
    ) -> Result<Requeue, Error> {
        let name = er.name_any();
        let pod = self.cached_pod(&name);
        let registration_gone =
            matches!(
                finish,
                Finish::Both {
                    registration_gone: true
                }
            ) || self
                .removed
                .contains(&resources::registered_id(er, pod.as_ref(), None));
        if !registration_gone
            && er
                .finalizers()
                .iter()
                .any(|f| f == finalizers::RUNNER_REGISTRATION)
        {
            match self.release_registration(er, pod.as_ref()).await {
                Ok(()) => {}
                Err(e @ Error::Waiting { .. }) => return Err(e),
                // The service gone, the Secret missing: after the grace period the
                // registration is left to the orphaned-registration sweep, and reported.
                Err(e) => {
                    let left = format!("the registration of runner {name} on the service");
                    crate::controllers::cleanup_bound::abandon_after_grace(self.ctx, er, e, &left)
                        .await?;
                }
            }
        }
        let stop_pod = matches!(finish, Finish::External);
        self.delete_dependents(er, pod.as_ref(), stop_pod).await?;
        if resources::uses_container_hooks(er) {
            self.delete_hook_resources(&name).await?;
        }
        let done: &[&str] = match finish {
            Finish::Registration => &[finalizers::RUNNER_REGISTRATION],
            Finish::Both { .. } | Finish::External => &[
                finalizers::RUNNER_REGISTRATION,
                finalizers::EPHEMERAL_RUNNER,
            ],
        };
        self.remove_finalizers(er, done).await?;
        if !matches!(finish, Finish::Registration) {
            self.released.insert(er);
        }
        Ok(Requeue::await_change())
    }

    /// Removes the runner from the service, waiting while its job runs (`pod`: the runner's
    /// pod as the watch cache has it).
    async fn release_registration(
        &self,
        er: &EphemeralRunner,
        pod: Option<&Pod>,
    ) -> Result<(), Error> {
        let name = er.name_any();
        let mut runner_id = resources::registered_id(er, pod, None);
        if runner_id <= 0 {
            let secret = self.secrets.get_opt(&name).await?;
            runner_id = resources::registered_id(er, pod, secret.as_ref());
        }
        let service = self.service(er).await?;
        if runner_id <= 0 {
            // A JIT config may have been issued without being recorded (a restart between
            // the service call and the Secret write): look the name up.
            runner_id = service
                .get_runner_by_name(&name)
                .await
                .map_err(Error::Service)?
                .filter(|r| r.runner_scale_set_id == er.spec.runner_scale_set_id)
                .map(|r| r.id)
                .unwrap_or_default();
        }
        if let FinalizerStep::RemoveFromService { runner_id } = finalizer_start(true, runner_id) {
            let result = service::remove(&*service, runner_id)
                .await
                .map_err(Error::Service)?;
            let deleting_for = er
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|t| observe::now().saturating_duration_since(observe::timestamp(t)))
                .unwrap_or_default();
            let alive = observe::runner_alive(pod);
            match after_remove(result, alive, deleting_for, self.policy) {
                FinalizerStep::Release | FinalizerStep::RemoveFromService { .. } => {}
                FinalizerStep::RetryAfter(after) => {
                    return Err(Error::Waiting {
                        what: format!("the job of runner {name} (id {runner_id}) to finish"),
                        retry_after: after,
                    });
                }
                FinalizerStep::Error => {
                    return Err(Error::Waiting {
                        what: format!("runner {name} (id {runner_id}) removal from the service"),
                        retry_after: scaleset_core::ephemeral_runner::JOB_STILL_RUNNING_RETRY,
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes those of `names` the runner has, in one JSON patch whose `test` operations make it
    /// fail rather than drop another controller's finalizer when the list changed meanwhile.
    async fn remove_finalizers(&self, er: &EphemeralRunner, names: &[&str]) -> Result<(), Error> {
        let mut present: Vec<(usize, &String)> = er
            .finalizers()
            .iter()
            .enumerate()
            .filter(|(_, f)| names.contains(&f.as_str()))
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        // From the highest index down, so each removal leaves the next index in place.
        present.reverse();
        let ops: Vec<serde_json::Value> = present
            .iter()
            .flat_map(|(index, finalizer)| {
                let path = format!("/metadata/finalizers/{index}");
                [
                    json!({"op": "test", "path": path, "value": finalizer}),
                    json!({"op": "remove", "path": path}),
                ]
            })
            .collect();
        let patch = serde_json::from_value(serde_json::Value::Array(ops)).map_err(|source| {
            Error::Serialize {
                what: "finalizer patch",
                source,
            }
        })?;
        match self
            .runners
            .patch(
                &er.name_any(),
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::controllers::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The pod and the JIT Secret name the runner as their controlling owner, so the garbage
    /// collector deletes them once the runner is gone. Deletes them here when this deletion
    /// orphans them: the runner carries the `orphan` finalizer (`kubectl delete
    /// --cascade=orphan`), or the collector already took the runner's owner reference off them.
    /// With `stop_pod`, deletes the pod anyway: the collector goes at its client's pace (20
    /// requests a second by default), which left the pods of 1,000 scaled-down runners in place
    /// for two minutes after the runners.
    async fn delete_dependents(
        &self,
        er: &EphemeralRunner,
        pod: Option<&Pod>,
        stop_pod: bool,
    ) -> Result<(), Error> {
        let name = er.name_any();
        let orphaning = er.finalizers().iter().any(|f| f == ORPHAN_FINALIZER);
        match pod {
            Some(pod) if !orphaning && owned_by(&pod.metadata, er) => {
                if stop_pod && pod.metadata.deletion_timestamp.is_none() {
                    delete_ignoring_missing(&self.pods, &name).await?;
                }
                Ok(())
            }
            Some(pod) => {
                if pod.metadata.deletion_timestamp.is_none() {
                    delete_ignoring_missing(&self.pods, &name).await?;
                }
                delete_ignoring_missing(&self.secrets, &name).await
            }
            // No pod (or none in the cache yet): the Secret says whether it was orphaned.
            None => match self.secrets.get_opt(&name).await? {
                Some(secret)
                    if secret.metadata.deletion_timestamp.is_none()
                        && (orphaning || !owned_by(&secret.metadata, er)) =>
                {
                    delete_ignoring_missing(&self.secrets, &name).await
                }
                _ => Ok(()),
            },
        }
    }

    /// Job pods and Secrets that the container hooks labelled `runner-pod=<runner>`.
    async fn delete_hook_resources(&self, runner: &str) -> Result<(), Error> {
        let selector = ListParams::default().labels(&format!("{}={runner}", labels::RUNNER_POD));
        delete_labelled(&self.pods, &selector).await?;
        delete_labelled(&self.secrets, &selector).await
    }
}

/// The finalizer the API server adds to an object deleted with `propagationPolicy: Orphan`.
const ORPHAN_FINALIZER: &str = "orphan";

/// Whether an object names `er` as one of its owners.
fn owned_by(meta: &kube::api::ObjectMeta, er: &EphemeralRunner) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| Some(&o.uid) == er.metadata.uid.as_ref())
}

async fn delete_labelled<K>(api: &Api<K>, selector: &ListParams) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut errors = Vec::new();
    for object in api.list(selector).await? {
        if object.meta().deletion_timestamp.is_some() {
            continue;
        }
        let name = object.meta().name.clone().unwrap_or_default();
        if let Err(e) = delete_ignoring_missing(api, &name).await {
            errors.push(format!("{name}: {e}"));
        }
    }
    Error::partial("deleting container-hook resources", errors)
}
