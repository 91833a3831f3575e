//! EphemeralRunnerSet reconciler (docs/architecture.md#ephemeralrunnerset-reconciler): scales the
//! set's EphemeralRunners to `spec.replicas` under the patchID rules, never removes a runner with a
//! job, keeps the status counters, and empties the set before it goes.
//!
//! The decisions come from `scaleset_core::runner_set` ([`set_step`], [`plan`], [`cleanup`]);
//! this module observes the runners and carries the decisions out. It never writes the set's
//! spec (the listener owns `replicas` and `patchID`): only its finalizer, its
//! `integrity-hash` annotation and its status.

#[cfg(test)]
mod mock_tests;
pub mod proxy;
pub mod runners;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use scaleset_core::runner_set::{
    Candidate, CleanupPlan, ObservedRunner, RunnerPhase, SetObservation, SetPolicy, SetSpec,
    SetStatus, SetStep, StatusWrite, cleanup, plan, set_step, status, status_write,
};
use scaleset_core::time::Timestamp;
use serde_json::json;

use crate::Context;
use crate::controllers::delete_ignoring_missing;
use crate::controllers::ephemeral_runner::observe::now;
use crate::controllers::recent::RemovedRegistrations;
use crate::controllers::{finalizer_result, namespace_of, watched_api};
use crate::crd::{EphemeralRunner, EphemeralRunnerSet};
use crate::error::Error;
use crate::github::{ActionsService, ObjectSettings};
use crate::meta::integrity_hash;
use crate::metrics::ScaleSetLabels;
use crate::names::{annotations, finalizers};
use scaleset_core::ephemeral_runner::RemoveResult;

/// Controller name (metrics label, Event source).
pub const CONTROLLER: &str = "ephemeralrunnerset";

/// How often a deleting set looks at its runners when no runner event arrives.
const CLEANUP_POLL: Duration = Duration::from_secs(30);

/// Longest a reconcile waits for the runner watch's first list before it retries.
const RUNNER_CACHE_WAIT: Duration = Duration::from_secs(10);

/// Most runner creations one pass has in flight at once.
pub const CREATE_PARALLELISM: usize = 16;

/// Tunables of the EphemeralRunnerSet controller.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Failed-runner accounting.
    pub policy: SetPolicy,
}

struct State {
    ctx: Arc<Context>,
    settings: Settings,
    runners: runners::RunnerView,
    own_writes: super::OwnWrites,
    records: SetRecords,
    removed: Arc<RemovedRegistrations>,
}

/// What this controller remembers of each set, by the set's UID.
#[derive(Default)]
struct SetRecords(std::sync::Mutex<std::collections::HashMap<String, SetRecord>>);

#[derive(Clone, Copy, Default)]
struct SetRecord {
    /// Since when a routine change of the set's status waits to be written
    /// ([`status_write`]).
    status_unwritten_since: Option<Timestamp>,
    /// The `patchID` it last acted on, which the status records at its next write.
    applied_patch_id: Option<i64>,
}

impl SetRecords {
    fn get(&self, set: &EphemeralRunnerSet) -> SetRecord {
        self.lock()
            .get(set.uid().as_deref().unwrap_or_default())
            .copied()
            .unwrap_or_default()
    }

    fn update(&self, set: &EphemeralRunnerSet, change: impl FnOnce(&mut SetRecord)) {
        if let Some(uid) = set.uid() {
            change(self.lock().entry(uid).or_default());
        }
    }

    fn forget(&self, set: &EphemeralRunnerSet) {
        self.lock().remove(set.uid().as_deref().unwrap_or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, SetRecord>> {
        crate::lock(&self.0)
    }
}

/// Runs the EphemeralRunnerSet controller with `settings` on the shared runner watch: `runners`
/// its cache, `events` the runners it saw created, changed or deleted.
pub(super) async fn run_on(
    ctx: Arc<Context>,
    settings: Settings,
    runners: reflector::Store<EphemeralRunner>,
    events: impl futures::Stream<Item = Result<EphemeralRunner, watcher::Error>> + Send + 'static,
    removed: Arc<RemovedRegistrations>,
) -> anyhow::Result<()> {
    let sets: Api<EphemeralRunnerSet> = watched_api(&ctx);
    let shutdown = ctx.options.shutdown.signal();
    let concurrency = ctx.options.runner_set_max_concurrent_reconciles.max(1);
    let queue = ctx.queue.clone();
    let state = Arc::new(State {
        ctx,
        settings,
        runners: runners::RunnerView::new(runners),
        own_writes: super::OwnWrites::default(),
        records: SetRecords::default(),
        removed,
    });
    let seen = state.clone();
    let runner_events = events.map(move |event| {
        if let Ok(er) = &event {
            seen.runners.seen(er);
        }
        event
    });
    let (sets, set_store) = super::watch_own(sets, &queue);
    let results = Controller::for_stream(sets, set_store)
        .trigger_backoff(super::watch_backoff())
        .owns_stream(queue.watch_owners::<EphemeralRunnerSet, _, _, _>(runner_events))
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state);
    super::drain(queue, results).await;
    Ok(())
}

fn error_policy(set: Arc<EphemeralRunnerSet>, error: &Error, state: Arc<State>) -> Requeue {
    Context::error_policy(set, error, state.ctx.clone())
}

async fn reconcile(set: Arc<EphemeralRunnerSet>, state: Arc<State>) -> Result<Requeue, Error> {
    let ctx = state.ctx.clone();
    ctx.instrumented(&*set, async {
        let ns = namespace_of(&set.metadata)?;
        let ready =
            tokio::time::timeout(RUNNER_CACHE_WAIT, state.runners.store().wait_until_ready());
        if !matches!(ready.await, Ok(Ok(()))) {
            return Err(Error::Waiting {
                what: "the runner watch to list the EphemeralRunners".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        if state.own_writes.superseded(&set.metadata) {
            return Ok(Requeue::await_change());
        }
        let pass = Pass {
            ctx: &state.ctx,
            policy: &state.settings.policy,
            view: &state.runners,
            own_writes: &state.own_writes,
            records: &state.records,
            removed: &state.removed,
            sets: Api::namespaced(ctx.client.clone(), &ns),
            runners: Api::namespaced(ctx.client.clone(), &ns),
        };
        let result = finalizer(
            &pass.sets,
            finalizers::EPHEMERAL_RUNNER_SET,
            set.clone(),
            |event| async {
                match event {
                    Finalizer::Apply(set) => pass.apply(&set).await,
                    Finalizer::Cleanup(set) => match pass.finalize(&set).await {
                        // A failure (the service gone, say) is reported after the grace
                        // period; the runners left go by garbage collection, each bounded by
                        // its own deletion. Waiting for busy runners' jobs is not bounded.
                        Err(e) if !matches!(e, Error::Waiting { .. }) => {
                            let left = format!("runners of {}", set.name_any());
                            super::cleanup_bound::abandon_after_grace(&ctx, &*set, e, &left)
                                .await?;
                            pass.view.forget(&set);
                            Ok(Requeue::await_change())
                        }
                        other => other,
                    },
                }
            },
        )
        .await;
        finalizer_result(result)
    })
    .await
}

struct Pass<'a> {
    ctx: &'a Context,
    policy: &'a SetPolicy,
    view: &'a runners::RunnerView,
    own_writes: &'a super::OwnWrites,
    records: &'a SetRecords,
    removed: &'a RemovedRegistrations,
    sets: Api<EphemeralRunnerSet>,
    runners: Api<EphemeralRunner>,
}

impl Pass<'_> {
    async fn apply(&self, set: &EphemeralRunnerSet) -> Result<Requeue, Error> {
        let observed = self.view.of(set);
        let hash = integrity_hash(&set.spec.ephemeral_runner_spec);
        let observation = SetObservation {
            deleting: false,
            finalizer: true,
            spec_hash_current: set.annotations().get(annotations::INTEGRITY_HASH) == Some(&hash),
        };
        let current_phase = set
            .status
            .as_ref()
            .map(|s| s.phase.clone())
            .unwrap_or_default();
        let any_outdated = current_phase == "Outdated"
            || observed
                .iter()
                .any(|r| r.phase == RunnerPhase::Outdated && !r.deleting);
        match set_step(&observation, any_outdated) {
            SetStep::Finalize | SetStep::AddFinalizer => Ok(Requeue::await_change()),
            SetStep::ReplaceRunners => {
                tracing::info!(set = %set.name_any(), "runner spec changed: replacing idle runners");
                self.carry_out_cleanup(set, &cleanup(&observed)).await?;
                proxy::reconcile(&self.ctx.client, set).await?;
                let patch =
                    json!({"metadata": {"annotations": {annotations::INTEGRITY_HASH: hash}}});
                let patched = self
                    .sets
                    .patch(
                        &set.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                self.own_writes.wrote(&set.metadata, &patched.metadata);
                Ok(Requeue::await_change())
            }
            SetStep::CleanupOutdated => {
                let counts = SetStatus {
                    outdated: true,
                    ..status(&observed, self.policy)
                };
                let later = self.write_status(set, &counts, None).await?;
                self.carry_out_cleanup(set, &cleanup(&observed)).await?;
                Ok(later.map_or_else(Requeue::await_change, Requeue::requeue))
            }
            SetStep::Scale => self.scale(set, observed).await,
        }
    }

    async fn scale(
        &self,
        set: &EphemeralRunnerSet,
        mut observed: Vec<ObservedRunner>,
    ) -> Result<Requeue, Error> {
        if proxy::reconcile(&self.ctx.client, set).await? == proxy::ProxyOutcome::Updated {
            return Ok(Requeue::requeue(Duration::from_secs(1)));
        }
        let held = self.view.completions(set, &mut observed);
        let spec = SetSpec {
            replicas: u32::try_from(set.spec.replicas).unwrap_or(0),
            patch_id: i64::from(set.spec.patch_id),
            applied_patch_id: self.records.get(set).applied_patch_id.or(set
                .status
                .as_ref()
                .and_then(|s| s.observed_patch_id)
                .map(i64::from)),
            held: held.count,
        };
        let decision = plan(spec, &observed, now(), self.policy);
        tracing::debug!(set = %set.name_any(), ?decision, "scale plan");
        self.publish_gauges(set, &decision.status);
        let mut errors = Vec::new();
        for name in &decision.delete {
            if let Err(e) = self.delete_runner(set, name).await {
                tracing::warn!(set = %set.name_any(), runner = %name, error = %e, "deleting a finished runner");
            }
        }
        if decision.create > 0 {
            let runner = runners::new_runner(
                set,
                decision.stamp_patch_id,
                &self.ctx.options.exclude_label_propagation_prefixes,
            );
            let created = self
                .create_runners(
                    set,
                    &runner,
                    decision.stamp_patch_id,
                    decision.create,
                    &mut errors,
                )
                .await;
            tracing::debug!(set = %set.name_any(), wanted = decision.create, created, "created runners");
        }
        if decision.scale_down.count > 0 {
            let removed = self
                .remove_idle(
                    set,
                    &decision.scale_down.candidates,
                    decision.scale_down.count,
                    &mut errors,
                )
                .await?;
            tracing::info!(set = %set.name_any(), wanted = decision.scale_down.count, removed, "scaled down");
        }
        let applied = decision.applied_patch_id.filter(|_| errors.is_empty());
        if let Some(id) = applied {
            self.records.update(set, |r| r.applied_patch_id = Some(id));
        }
        let later = self.write_status(set, &decision.status, applied).await?;
        Error::partial(
            format!("scaling EphemeralRunnerSet {}", set.name_any()),
            errors,
        )?;
        // A pass that held runners back did not act on the patch in full: it looks again when
        // the first hold ends, if the listener's next patch has not come by then.
        let hold_ends = held
            .until
            .filter(|_| decision.applied_patch_id.is_none())
            .map(|until| until.saturating_duration_since(now()) + Duration::from_millis(10));
        if hold_ends.is_some() {
            tracing::debug!(set = %set.name_any(), held = held.count, "holding back runners for completed jobs");
        }
        let next = [later, hold_ends].into_iter().flatten().min();
        Ok(next.map_or_else(Requeue::await_change, Requeue::requeue))
    }

    /// Creates `count` copies of `runner` (generated names, stamped with `patch_id`), at most
    /// [`CREATE_PARALLELISM`] at a time, all in this pass; returns how many were created.
    async fn create_runners(
        &self,
        set: &EphemeralRunnerSet,
        runner: &EphemeralRunner,
        patch_id: i64,
        count: u32,
        errors: &mut Vec<String>,
    ) -> u32 {
        let params = PostParams::default();
        // Each created runner is dropped as it comes back: collected, a burst of 1000 held
        // 1000 whole runners at once, and the allocator kept that peak.
        let mut results = futures::stream::iter(0..count)
            .map(|_| self.runners.create(&params, runner))
            .buffer_unordered(CREATE_PARALLELISM);
        let mut created = 0;
        while let Some(result) = results.next().await {
            match result {
                Ok(er) => {
                    self.view.created(set, er.name_any(), patch_id);
                    created += 1;
                }
                Err(e) => errors.push(format!("creating a runner: {e}")),
            }
        }
        created
    }

    /// Removes `candidates` from the service and deletes them, in order, until `count` of them
    /// are gone; a runner whose job is running is skipped. At most [`CREATE_PARALLELISM`] are in
    /// flight, and never more than the removals still wanted: one at a time, 1,000 idle runners
    /// took 45 s to go.
    async fn remove_idle(
        &self,
        set: &EphemeralRunnerSet,
        candidates: &[Candidate],
        count: u32,
        errors: &mut Vec<String>,
    ) -> Result<u32, Error> {
        let service = if candidates.iter().any(|c| c.runner_id.is_some()) {
            Some(self.service(set).await?)
        } else {
            None
        };
        let mut waiting = candidates.iter();
        let mut running = futures::stream::FuturesUnordered::new();
        let mut removed = 0;
        loop {
            while running.len() < CREATE_PARALLELISM
                && removed + u32::try_from(running.len()).unwrap_or(u32::MAX) < count
            {
                let Some(candidate) = waiting.next() else {
                    break;
                };
                running.push(self.remove_one(set, service.as_deref(), candidate));
            }
            match running.next().await {
                None => break,
                Some(Ok(true)) => removed += 1,
                Some(Ok(false)) => {}
                Some(Err(e)) => errors.push(e),
            }
        }
        Ok(removed)
    }

    /// Removes one idle runner from the service (when it registered), then deletes it; `false`
    /// when the service would not remove it (its job is running), an error text when a call
    /// failed.
    async fn remove_one(
        &self,
        set: &EphemeralRunnerSet,
        service: Option<&dyn ActionsService>,
        candidate: &Candidate,
    ) -> Result<bool, String> {
        if let (Some(id), Some(service)) = (candidate.runner_id, service) {
            match crate::controllers::ephemeral_runner::service_remove(service, id).await {
                Ok(RemoveResult::Removed | RemoveResult::AlreadyGone) => self.removed.insert(id),
                Ok(RemoveResult::JobStillRunning | RemoveResult::Failed) => return Ok(false),
                Err(e) => return Err(format!("removing runner {} (id {id}): {e}", candidate.name)),
            }
        }
        self.delete_runner(set, &candidate.name)
            .await
            .map(|()| true)
            .map_err(|e| format!("deleting runner {}: {e}", candidate.name))
    }

    /// Runs one cleanup plan: terminal runners deleted, idle ones removed from the service and
    /// deleted, busy ones left to finish.
    async fn carry_out_cleanup(
        &self,
        set: &EphemeralRunnerSet,
        work: &CleanupPlan,
    ) -> Result<(), Error> {
        let mut errors = Vec::new();
        for name in &work.delete {
            if let Err(e) = self.delete_runner(set, name).await {
                errors.push(format!("deleting runner {name}: {e}"));
            }
        }
        let count = u32::try_from(work.remove_then_delete.len()).unwrap_or(u32::MAX);
        if count > 0 {
            self.remove_idle(set, &work.remove_then_delete, count, &mut errors)
                .await?;
        }
        Error::partial(
            format!("cleaning up EphemeralRunnerSet {}", set.name_any()),
            errors,
        )
    }

    async fn finalize(&self, set: &EphemeralRunnerSet) -> Result<Requeue, Error> {
        let observed = self.view.of(set);
        let work = cleanup(&observed);
        if !work.done {
            self.carry_out_cleanup(set, &work).await?;
            if !work.waiting_for_jobs.is_empty() {
                self.ctx
                    .publish(
                        &set.object_ref(&()),
                        EventType::Normal,
                        "WaitingForJobs",
                        &format!(
                            "deletion waits for {} runner(s) with a running job: {}",
                            work.waiting_for_jobs.len(),
                            work.waiting_for_jobs.join(", ")
                        ),
                    )
                    .await;
            }
            return Err(Error::Waiting {
                what: format!("{} runner(s) of {} to go", observed.len(), set.name_any()),
                retry_after: CLEANUP_POLL,
            });
        }
        if proxy::delete(&self.ctx.client, set).await? {
            return Err(Error::Waiting {
                what: format!("proxy Secret {} to go", proxy::secret_name(set)),
                retry_after: Duration::from_secs(1),
            });
        }
        self.view.forget(set);
        self.own_writes.forget(&set.metadata);
        self.records.forget(set);
        Ok(Requeue::await_change())
    }

    /// Deletes runner `name` of `set` and records the deletion for the view.
    async fn delete_runner(&self, set: &EphemeralRunnerSet, name: &str) -> Result<(), Error> {
        delete_ignoring_missing(&self.runners, name).await?;
        self.view.deleted(set, name);
        Ok(())
    }

    /// Writes the status for `counts` (and `applied_patch_id`), or returns when a later pass
    /// is to write it ([`status_write`]).
    async fn write_status(
        &self,
        set: &EphemeralRunnerSet,
        counts: &SetStatus,
        applied_patch_id: Option<i64>,
    ) -> Result<Option<Duration>, Error> {
        let current = set.status.clone().unwrap_or_default();
        let target = runners::set_status(counts, &current, applied_patch_id);
        let changes = runners::status_changes(set.status.as_ref(), &target);
        let since = self.records.get(set).status_unwritten_since;
        let now = now();
        match status_write(changes, since, now) {
            StatusWrite::Unchanged => {
                self.records
                    .update(set, |r| r.status_unwritten_since = None);
                return Ok(None);
            }
            StatusWrite::After(wait) => {
                self.records
                    .update(set, |r| r.status_unwritten_since = since.or(Some(now)));
                return Ok(Some(wait));
            }
            StatusWrite::Now => {}
        }
        let patch = json!({ "status": target });
        let patched = self
            .sets
            .patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.own_writes.wrote(&set.metadata, &patched.metadata);
        self.records
            .update(set, |r| r.status_unwritten_since = None);
        Ok(None)
    }

    fn publish_gauges(&self, set: &EphemeralRunnerSet, counts: &SetStatus) {
        if !self.ctx.options.publish_metrics {
            return;
        }
        let url = &set.spec.ephemeral_runner_spec.github_config_url;
        if scaleset_core::naming::ConfigUrl::parse(url).is_err() {
            return;
        }
        let labels =
            ScaleSetLabels::new(&set.name_any(), &set.namespace().unwrap_or_default(), url);
        let metrics = &self.ctx.metrics;
        metrics
            .pending_runners
            .get_or_create(&labels)
            .set(i64::from(counts.pending));
        metrics
            .running_runners
            .get_or_create(&labels)
            .set(i64::from(counts.running));
        metrics
            .failed_runners
            .get_or_create(&labels)
            .set(i64::from(counts.failed));
    }

    async fn service(&self, set: &EphemeralRunnerSet) -> Result<Arc<dyn ActionsService>, Error> {
        let namespace = set.namespace().unwrap_or_default();
        let spec = &set.spec.ephemeral_runner_spec;
        self.ctx
            .github
            .for_object(
                &self.ctx.client,
                ObjectSettings::for_runner_spec(&namespace, spec),
            )
            .await
    }
}
