//! EphemeralRunner reconciler (docs/architecture.md#ephemeralrunner-lifecycle): JIT config, JIT
//! Secret and runner pod in one pass, status mirrored from the pod, the retry budget, and removal
//! from the service before anything is deleted.
//!
//! Each pass observes the runner, its JIT Secret and its pod, asks
//! [`scaleset_core::ephemeral_runner::decide`] what to do, carries that out, and observes again
//! while the step made progress that the next step builds on (JIT → Secret → runner id → pod).

pub mod observe;
pub mod resources;

mod deletion;
#[cfg(test)]
mod mock_tests;
mod service;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use scaleset_core::ephemeral_runner::{
    Action, DeleteCause, ExistingRunner, JitConflict, PodCreateError, RetryPolicy, RetryRemoval,
    ServiceRemoval, after_retry_removal, decide, on_pod_create_error, on_runner_exists,
};
use serde_json::json;

use crate::Context;
use crate::controllers::recent::RemovedRegistrations;
use crate::controllers::{delete_ignoring_missing, namespace_of, watched_api};
use crate::crd::EphemeralRunner;
use crate::error::Error;
use crate::names::{finalizers, labels};
use deletion::Finish;

/// Controller name (metrics label, Event source).
pub const CONTROLLER: &str = "ephemeralrunner";

/// Most steps one pass carries out before it yields (JIT, Secret, runner id, pod and slack).
const MAX_STEPS: usize = 8;

/// How long after the controller started a runner must have been created for the controller to
/// know it made every JIT Secret the runner has (clock skew between the API server and here).
const START_MARGIN: Duration = Duration::from_secs(2);

/// Longest a reconcile waits for the pod watch's first list before it retries.
const POD_CACHE_WAIT: Duration = Duration::from_secs(10);

/// Tunables of the EphemeralRunner controller.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Pod retry budget and backoff (ARC's defaults).
    pub retry: RetryPolicy,
}

struct State {
    ctx: Arc<Context>,
    settings: Settings,
    /// Runner pods as the controller's pod watch last saw them; every change to one of them
    /// triggers its runner's reconcile after the store has it.
    pod_store: reflector::Store<Pod>,
    released: deletion::Released,
    own_writes: super::OwnWrites,
    /// When this controller started, and the runners it created a JIT Secret for since.
    made: observe::Made,
    removed: Arc<RemovedRegistrations>,
}

/// Runs the EphemeralRunner controller with `settings` on the shared runner watch: `runner_store`
/// its cache, `events` the runners it saw created or changed.
pub(super) async fn run_on(
    ctx: Arc<Context>,
    settings: Settings,
    runner_store: reflector::Store<EphemeralRunner>,
    events: impl futures::Stream<Item = Result<EphemeralRunner, watcher::Error>> + Send + 'static,
    removed: Arc<RemovedRegistrations>,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = watched_api(&ctx);
    let concurrency = ctx.options.runner_max_concurrent_reconciles.max(1);
    let pod_selector = format!("{}=True", labels::EPHEMERAL_RUNNER);
    let shutdown = ctx.options.shutdown.signal();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let pod_events = watcher(pods, watcher::Config::default().labels(&pod_selector))
        .modify(slim_pod)
        .reflect(pod_writer)
        .backoff(super::watch_backoff())
        .touched_objects();
    let queue = ctx.queue.clone();
    let state = Arc::new(State {
        ctx,
        settings,
        pod_store,
        released: deletion::Released::default(),
        own_writes: super::OwnWrites::default(),
        made: observe::Made::since(observe::now() + START_MARGIN),
        removed,
    });
    let results = Controller::for_stream(queue.watch_self(events), runner_store)
        .trigger_backoff(super::watch_backoff())
        .owns_stream(queue.watch_owners::<EphemeralRunner, _, _, _>(pod_events))
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state);
    super::drain(queue, results).await;
    Ok(())
}

/// What the pod cache keeps of a runner pod: its metadata and status. No pass reads a cached
/// pod's spec (a pod is created from the runner), and the spec is most of a pod.
fn slim_pod(pod: &mut Pod) {
    super::drop_managed_fields(pod);
    pod.spec = None;
}

fn error_policy(er: Arc<EphemeralRunner>, error: &Error, state: Arc<State>) -> Requeue {
    Context::error_policy(er, error, state.ctx.clone())
}

async fn reconcile(er: Arc<EphemeralRunner>, state: Arc<State>) -> Result<Requeue, Error> {
    let ctx = state.ctx.clone();
    ctx.instrumented(&*er, async {
        let ns = namespace_of(&er.metadata)?;
        let ready = tokio::time::timeout(POD_CACHE_WAIT, state.pod_store.wait_until_ready());
        if !matches!(ready.await, Ok(Ok(()))) {
            return Err(Error::Waiting {
                what: "the runner pod watch to list the pods".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        if state.released.contains(&er) || state.own_writes.superseded(&er.metadata) {
            return Ok(Requeue::await_change());
        }
        let api: Api<EphemeralRunner> = Api::namespaced(ctx.client.clone(), &ns);
        let pass = Pass::new(&state, &ns);
        let deleting = er.metadata.deletion_timestamp.is_some();
        let result = if deleting
            && er
                .finalizers()
                .iter()
                .any(|f| f == finalizers::EPHEMERAL_RUNNER)
        {
            // Both finalizers go in one patch; through the helper, its own took a second.
            pass.cleanup(&er, Finish::External)
                .await
                .map_err(kube::runtime::finalizer::Error::CleanupFailed)
        } else {
            finalizer(
                &api,
                finalizers::EPHEMERAL_RUNNER,
                er.clone(),
                |event| async {
                    match event {
                        Finalizer::Apply(er) => pass.apply((*er).clone()).await,
                        // Not reached while the branch above takes every deleting runner.
                        Finalizer::Cleanup(er) => pass.cleanup(&er, Finish::Registration).await,
                    }
                },
            )
            .await
        };
        if result.is_ok() && deleting {
            state.released.insert(&er);
        }
        if state.released.contains(&er) {
            state.own_writes.forget(&er.metadata);
            state.made.forget(&er);
        }
        super::finalizer_result(result)
    })
    .await
}

/// The error for a JIT Secret without a usable registration, which the caller has deleted.
fn unusable_jit_secret(er: &EphemeralRunner, problem: &impl std::fmt::Display) -> Error {
    Error::Unusable {
        what: format!(
            "JIT Secret {}: {problem}; it was deleted and a new JIT config will be requested",
            er.name_any()
        ),
    }
}

/// One reconcile pass over one runner.
struct Pass<'a> {
    ctx: &'a Context,
    policy: &'a RetryPolicy,
    pod_store: &'a reflector::Store<Pod>,
    released: &'a deletion::Released,
    own_writes: &'a super::OwnWrites,
    made: &'a observe::Made,
    removed: &'a RemovedRegistrations,
    namespace: String,
    runners: Api<EphemeralRunner>,
    pods: Api<Pod>,
    secrets: Api<Secret>,
}

/// Whether the pass goes on observing or is finished.
enum Next {
    /// Observe again; `Some(secret)` when the step just wrote the JIT Secret and there is
    /// still no pod, so neither needs reading back.
    Again(Box<EphemeralRunner>, Option<Box<Secret>>),
    Done(Requeue),
}

/// What a pass observed of the runner's JIT Secret and pod.
struct Observed {
    secret: Option<Secret>,
    /// Whether the Secret was read; a runner with a pod does not need it to decide.
    secret_known: bool,
    pod: Option<Pod>,
}

impl<'a> Pass<'a> {
    fn new(state: &'a State, ns: &str) -> Self {
        let client = state.ctx.client.clone();
        Self {
            ctx: &state.ctx,
            policy: &state.settings.retry,
            pod_store: &state.pod_store,
            released: &state.released,
            own_writes: &state.own_writes,
            made: &state.made,
            removed: &state.removed,
            namespace: ns.to_owned(),
            runners: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
            secrets: Api::namespaced(client, ns),
        }
    }

    async fn apply(&self, mut er: EphemeralRunner) -> Result<Requeue, Error> {
        let terminal = matches!(
            er.status.as_ref().map(|s| s.phase.as_str()),
            Some("Succeeded" | "Failed" | "Outdated")
        );
        if !terminal
            && !er
                .finalizers()
                .iter()
                .any(|f| f == finalizers::RUNNER_REGISTRATION)
        {
            er = self.add_registration_finalizer(&er).await?;
        }
        // `checked`: the runner was read from the API server in this pass; `fresh`: so are the
        // pod and Secret observations.
        let (mut checked, mut fresh) = (false, false);
        let mut carried: Option<Box<Secret>> = None;
        for _ in 0..MAX_STEPS {
            let name = er.name_any();
            let seen = match carried.take() {
                Some(secret) => Observed {
                    secret: Some(*secret),
                    secret_known: true,
                    pod: None,
                },
                None => self.observe(&er, fresh).await?,
            };
            let jit_secret = seen.secret.is_some() || !seen.secret_known;
            let mut runner = observe::runner_state(&er, jit_secret, seen.pod.as_ref());
            runner.registration_removed = self.removed.age(&runner.runner_id);
            let observed = seen.pod.as_ref().map(observe::pod_observation);
            let action = decide(&runner, observed.as_ref(), observe::now(), self.policy);
            // A failure is judged on the runner and pod as the API server has them, not the
            // watch caches: a job the listener just assigned decides between a retry and a
            // deletion. A registration is requested only for a runner the API server still has
            // and is not deleting: after a watch gap the cache can show a runner whose cleanup
            // has just removed its registration and JIT Secret.
            // A runner this controller has known since its creation cannot be one whose cleanup
            // already ran (it would be among the released ones).
            let register = matches!(action, Action::RequestJitConfig);
            if register && self.made.untouched(&er) {
                checked = true;
            }
            // A runner that completed, or whose registration the set removed, is deleted
            // whatever the API server adds: no read.
            let failure = matches!(action, Action::RetryPod(_))
                || matches!(action, Action::DeleteRunner { cause, .. }
                    if !matches!(cause, DeleteCause::Completed | DeleteCause::RegistrationGone));
            if !checked && (register || failure) {
                checked = true;
                let Some(current) = self.runners.get_opt(&name).await? else {
                    return Ok(Requeue::await_change());
                };
                if register && current.metadata.deletion_timestamp.is_some() {
                    return Ok(Requeue::await_change());
                }
                // A cache that was current leaves the observation standing.
                if !register || current.metadata.resource_version != er.metadata.resource_version {
                    er = current;
                    fresh = true;
                    continue;
                }
            }
            tracing::debug!(runner = %name, ?action, "ephemeral runner step");
            match self.carry_out(action, er, seen.secret, seen.pod).await? {
                Next::Again(updated, secret) => {
                    er = *updated;
                    carried = secret;
                }
                Next::Done(requeue) => return Ok(requeue),
            }
        }
        Ok(Requeue::requeue(Duration::from_secs(1)))
    }

    /// The runner's pod as the pod watch last saw it.
    fn cached_pod(&self, name: &str) -> Option<Pod> {
        self.pod_store
            .get(&ObjectRef::new(name).within(&self.namespace))
            .map(|p| (*p).clone())
    }

    /// Reads the pod from the watch cache (from the API server when `fresh`, or when the cache
    /// has none but the JIT Secret exists, since the pod is created only after the Secret), and
    /// the JIT Secret only when the decision can depend on it: no pod, or a finished runner whose
    /// leftovers are cleaned up.
    async fn observe(&self, er: &EphemeralRunner, fresh: bool) -> Result<Observed, Error> {
        let name = er.name_any();
        let terminal = matches!(
            er.status.as_ref().map(|s| s.phase.as_str()),
            Some("Succeeded" | "Failed" | "Outdated")
        );
        let pod = if fresh {
            self.pods.get_opt(&name).await?
        } else {
            self.cached_pod(&name)
        };
        if pod.is_some() && !terminal {
            return Ok(Observed {
                secret: None,
                secret_known: false,
                pod,
            });
        }
        if pod.is_none() && !fresh && self.made.untouched(er) {
            return Ok(Observed {
                secret: None,
                secret_known: true,
                pod,
            });
        }
        let secret = self.secrets.get_opt(&name).await?;
        let pod = match pod {
            // The cache may not have a pod made from this Secret yet.
            None if !fresh && secret.is_some() => self.pods.get_opt(&name).await?,
            pod => pod,
        };
        Ok(Observed {
            secret,
            secret_known: true,
            pod,
        })
    }

    async fn carry_out(
        &self,
        action: Action,
        er: EphemeralRunner,
        secret: Option<Secret>,
        pod: Option<Pod>,
    ) -> Result<Next, Error> {
        let done = |r: Requeue| Ok(Next::Done(r));
        let registered = resources::registered_id(&er, pod.as_ref(), secret.as_ref());
        match action {
            Action::Wait(Some(after)) => done(Requeue::requeue(after)),
            Action::Wait(None) => done(Requeue::await_change()),
            Action::CleanupTerminal => {
                let name = er.name_any();
                if pod.is_some() {
                    delete_ignoring_missing(&self.pods, &name).await?;
                }
                if secret.is_some() {
                    delete_ignoring_missing(&self.secrets, &name).await?;
                }
                done(Requeue::await_change())
            }
            Action::RequestJitConfig => self.request_jit_config(er).await,
            Action::CreatePod => self.create_pod(er, secret).await,
            Action::MirrorStatus { phase, ready } => {
                let recorded = er.status.as_ref().is_some_and(|s| s.runner_id > 0);
                let registration = pod.as_ref().and_then(resources::pod_registration);
                let status = pod.and_then(|p| p.status).unwrap_or_default();
                let mut patch = json!({"status": {
                    "phase": phase.as_str(),
                    "ready": ready,
                    "reason": text_or_delete(status.reason),
                    "message": text_or_delete(status.message),
                }});
                if let (false, Some((id, name))) = (recorded, registration) {
                    patch["status"]["runnerId"] = json!(id);
                    patch["status"]["runnerName"] = json!(name);
                }
                self.patch_status(&er, patch).await?;
                done(Requeue::await_change())
            }
            Action::RetryPod(retry) => {
                let name = er.name_any();
                let service = if retry.fresh_registration {
                    Some(self.service(&er).await?)
                } else {
                    None
                };
                let mut status = json!({
                    "ready": false,
                    "reason": retry.reason,
                    "message": retry.message,
                });
                if let Some(service) = service {
                    let id = registered;
                    if id > 0 {
                        let removed = service::remove(&*service, id)
                            .await
                            .map_err(Error::Service)?;
                        match after_retry_removal(removed) {
                            RetryRemoval::Proceed => {}
                            RetryRemoval::Delete(action) => {
                                tracing::info!(runner = %name, id, "the registration of a failed runner was removed elsewhere; deleting the runner instead of retrying");
                                return Box::pin(self.carry_out(action, er, None, pod)).await;
                            }
                            RetryRemoval::Wait(after) => {
                                return Err(Error::Waiting {
                                    what: format!(
                                        "runner {name} (id {id}) removal before its pod is retried"
                                    ),
                                    retry_after: after,
                                });
                            }
                        }
                    }
                    delete_ignoring_missing(&self.secrets, &name).await?;
                    status["runnerId"] = serde_json::Value::Null;
                    status["runnerName"] = serde_json::Value::Null;
                    status["phase"] = serde_json::Value::Null;
                }
                let uid = pod.as_ref().and_then(|p| p.metadata.uid.clone());
                if let (true, Some(uid)) = (retry.charged, uid) {
                    status["failures"] = json!({ uid: observe::now_rfc3339() });
                }
                self.patch_status(&er, json!({ "status": status })).await?;
                if pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none()) {
                    delete_ignoring_missing(&self.pods, &name).await?;
                }
                self.event(
                    &er,
                    EventType::Warning,
                    "RunnerPodFailed",
                    &format!(
                        "pod {name} failed ({}): {}; {}",
                        retry.reason,
                        retry.message,
                        if retry.charged {
                            "charged to the retry budget"
                        } else {
                            "cluster fault, not charged"
                        }
                    ),
                )
                .await;
                done(Requeue::await_change())
            }
            Action::DeleteRunner { cause, removal } => {
                // The deletion goes on in this pass (registration, pod, Secret, both
                // finalizers) instead of waiting for the deletion event.
                if let Some(deleting) = self.delete_runner(&er, registered, cause, removal).await?
                    && deleting.metadata.deletion_timestamp.is_some()
                {
                    let registration_gone = removal == ServiceRemoval::DoneByService;
                    self.cleanup(&deleting, Finish::Both { registration_gone })
                        .await?;
                }
                done(Requeue::await_change())
            }
            Action::MarkOutdated => {
                let patch = json!({"status": {
                    "phase": "Outdated",
                    "reason": "Outdated",
                    "message": "Runner is deprecated",
                }});
                let er = self.patch_status(&er, patch).await?;
                self.remove_from_service(&er, registered).await?;
                done(Requeue::await_change())
            }
            Action::MarkFailed { reason, message } => {
                self.mark_failed(&er, registered, &reason, &message).await
            }
        }
    }

    async fn request_jit_config(&self, er: EphemeralRunner) -> Result<Next, Error> {
        let service = self.service(&er).await?;
        let name = er.name_any();
        let scale_set = er.spec.runner_scale_set_id;
        let work_folder = resources::work_folder(&er);
        match service
            .generate_jit_runner_config(scale_set, &name, &work_folder)
            .await
        {
            Ok(jit) => {
                let secret = resources::jit_secret(
                    &er,
                    &jit,
                    &self.ctx.options.exclude_label_propagation_prefixes,
                );
                // A Secret already there holds an older registration (this one took its
                // name): the new one replaces it.
                let stored = match self.secrets.create(&PostParams::default(), &secret).await {
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        self.secrets
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&secret))
                            .await
                    }
                    other => other,
                };
                match stored {
                    Ok(stored) => {
                        self.made.jit_secret(&er);
                        Ok(Next::Again(Box::new(er), Some(Box::new(stored))))
                    }
                    Err(e) => {
                        // The registration cannot be handed to a pod; do not leave it behind.
                        if let Err(remove) = service.remove_runner(jit.runner.id).await {
                            tracing::warn!(runner = %name, error = %remove, "removing an unused registration failed");
                        }
                        Err(e.into())
                    }
                }
            }
            Err(e) if e.is_runner_exists() => {
                let existing = service
                    .get_runner_by_name(&name)
                    .await
                    .map_err(Error::Service)?
                    .map(|r| ExistingRunner {
                        id: r.id,
                        scale_set_id: r.runner_scale_set_id,
                    });
                match on_runner_exists(existing, scale_set) {
                    JitConflict::Retry => Err(Error::Waiting {
                        what: format!("runner name {name} to be free on the service"),
                        retry_after: Duration::from_secs(1),
                    }),
                    JitConflict::RemoveThenRetry { runner_id } => {
                        service::remove_or_wait(&*service, runner_id).await?;
                        Ok(Next::Again(Box::new(er), None))
                    }
                    JitConflict::Delete => {
                        self.event(&er, EventType::Warning, "RunnerNameTaken", &format!(
                            "runner name {name} is registered in another scale set; deleting this EphemeralRunner"
                        ))
                        .await;
                        delete_ignoring_missing(&self.runners, &name).await?;
                        Ok(Next::Done(Requeue::await_change()))
                    }
                }
            }
            Err(e) => Err(Error::Service(e)),
        }
    }

    async fn create_pod(&self, er: EphemeralRunner, secret: Option<Secret>) -> Result<Next, Error> {
        let Some(secret) = secret else {
            return Ok(Next::Again(Box::new(er), None));
        };
        let registration = match resources::registration(&secret) {
            Ok(r) => r,
            Err(problem) => {
                delete_ignoring_missing(&self.secrets, &er.name_any()).await?;
                return Err(unusable_jit_secret(&er, &problem));
            }
        };
        let pod = match resources::runner_pod(&er, &registration, &self.ctx.options.build_version) {
            Ok(mut pod) => {
                if let Some(image) = &self.ctx.options.default_runner_image {
                    resources::fill_default_image(&mut pod, image);
                }
                pod
            }
            Err(problem) => {
                return self
                    .mark_failed(
                        &er,
                        registration.runner_id,
                        "InvalidPod",
                        &format!("Failed to create the pod: {problem}"),
                    )
                    .await;
            }
        };
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(_) => Ok(Next::Done(Requeue::await_change())),
            Err(kube::Error::Api(status)) => {
                let kind = PodCreateError::classify(status.code, &status.message);
                if kind == PodCreateError::Other {
                    return Err(kube::Error::Api(status).into());
                }
                let runner = observe::runner_state(&er, true, None);
                let action = on_pod_create_error(
                    kind,
                    &status.message,
                    &runner,
                    observe::now(),
                    self.policy,
                );
                if !matches!(action, Action::Wait(_)) {
                    self.event(
                        &er,
                        EventType::Warning,
                        "RunnerPodRejected",
                        &format!("creating pod {}: {}", er.name_any(), status.message),
                    )
                    .await;
                }
                Box::pin(self.carry_out(action, er, Some(secret), None)).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn mark_failed(
        &self,
        er: &EphemeralRunner,
        runner_id: i64,
        reason: &str,
        message: &str,
    ) -> Result<Next, Error> {
        let patch = json!({"status": {"phase": "Failed", "reason": reason, "message": message}});
        let er = self.patch_status(er, patch).await?;
        self.event(&er, EventType::Warning, reason, message).await;
        self.remove_from_service(&er, runner_id).await?;
        Ok(Next::Done(Requeue::await_change()))
    }

    /// Deletes runner `er`, whose registration is `runner_id` (0: not known), removing the
    /// registration from the service first or afterwards as `removal` says.
    async fn delete_runner(
        &self,
        er: &EphemeralRunner,
        runner_id: i64,
        cause: DeleteCause,
        removal: ServiceRemoval,
    ) -> Result<Option<EphemeralRunner>, Error> {
        if removal == ServiceRemoval::Before {
            self.remove_from_service(er, runner_id).await?;
        }
        // A runner that finished its job is the normal case and gets no Event: one write per
        // runner that nobody reads on an object about to be gone.
        let warning = match cause {
            DeleteCause::Completed => None,
            DeleteCause::JobLost => Some("RunnerJobLost"),
            DeleteCause::TooManyFailures => Some("TooManyPodFailures"),
            DeleteCause::CreateRejected => Some("PodCreateRejected"),
            DeleteCause::NameTaken => Some("RunnerNameTaken"),
            DeleteCause::RegistrationGone => None,
        };
        if let Some(reason) = warning {
            self.event(
                er,
                EventType::Warning,
                reason,
                &format!("deleting EphemeralRunner {} ({cause:?})", er.name_any()),
            )
            .await;
        }
        let deleting = match self
            .runners
            .delete(&er.name_any(), &kube::api::DeleteParams::background())
            .await
        {
            Ok(either) => either.left(),
            Err(e) if super::is_not_found(&e) => None,
            Err(e) => return Err(e.into()),
        };
        if removal == ServiceRemoval::BestEffortAfter && runner_id > 0 {
            match self.service(er).await {
                Ok(service) => {
                    if let Err(e) = service.remove_runner(runner_id).await {
                        tracing::info!(runner = %er.name_any(), error = %e, "best-effort runner removal failed; the finalizer retries");
                    }
                }
                Err(e) => {
                    tracing::info!(runner = %er.name_any(), error = %e, "no service client for a best-effort removal")
                }
            }
        }
        Ok(deleting)
    }

    /// `RemoveRunner(id)` when the runner is registered (`id` > 0); a missing registration
    /// counts as removed.
    async fn remove_from_service(&self, er: &EphemeralRunner, id: i64) -> Result<(), Error> {
        if id <= 0 {
            return Ok(());
        }
        let service = self.service(er).await?;
        service::remove_or_wait(&*service, id).await
    }

    async fn service(
        &self,
        er: &EphemeralRunner,
    ) -> Result<Arc<dyn crate::github::ActionsService>, Error> {
        service::for_runner(self.ctx, er).await
    }

    async fn patch_status(
        &self,
        er: &EphemeralRunner,
        patch: serde_json::Value,
    ) -> Result<EphemeralRunner, Error> {
        let patched = self
            .runners
            .patch_status(
                &er.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.own_writes.wrote(&er.metadata, &patched.metadata);
        Ok(patched)
    }

    async fn add_registration_finalizer(
        &self,
        er: &EphemeralRunner,
    ) -> Result<EphemeralRunner, Error> {
        let current = er.finalizers().to_vec();
        let ops = if er.metadata.finalizers.is_none() {
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [finalizers::RUNNER_REGISTRATION]},
            ])
        } else {
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": current},
                {"op": "add", "path": "/metadata/finalizers/-", "value": finalizers::RUNNER_REGISTRATION},
            ])
        };
        let patch = serde_json::from_value(ops).map_err(|source| Error::Serialize {
            what: "finalizer patch",
            source,
        })?;
        Ok(self
            .runners
            .patch(
                &er.name_any(),
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await?)
    }

    async fn event(&self, er: &EphemeralRunner, kind: EventType, reason: &str, note: &str) {
        self.ctx
            .publish(&er.object_ref(&()), kind, reason, note)
            .await;
    }
}

/// A merge-patch value for an optional status text: empty text deletes the key (the API
/// server's CRD validation refuses an empty string decoded as `null` by some versions).
fn text_or_delete(text: Option<String>) -> serde_json::Value {
    match text {
        Some(t) if !t.is_empty() => serde_json::Value::String(t),
        _ => serde_json::Value::Null,
    }
}

/// `RemoveRunner(id)` with not-found counted as removed and `JobStillRunning` reported as such.
pub(crate) async fn service_remove(
    service: &dyn crate::github::ActionsService,
    id: i64,
) -> Result<scaleset_core::ephemeral_runner::RemoveResult, crate::github::ServiceError> {
    service::remove(service, id).await
}
