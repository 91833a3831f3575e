//! The listener loop: session, long poll, ack, acquire, desired count, patches. It survives
//! everything but permanent authentication failures and a scale set that no longer exists.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn, warn_span};

use actions_client::{Error, JobMessage, JobStarted, MessageSession, Statistics};
use scaleset_core::listener_lifecycle::ExitClass;
use scaleset_core::listener_policy::{
    Call, ErrorClass, Failure, ListenerPolicy, Reaction, on_error,
};

use crate::health::Health;
use crate::kube::{PatchError, RunnerSetPatcher, runner_status_patch};
use crate::metrics::{JobStages, Metrics};
use crate::scaler::{Bounds, Decision, Scaler, ers_patch};
use crate::service::{Message, ScaleSetService, classify};
use scaleset_core::completions::CompletionLog;
use scaleset_core::time::Timestamp;

/// Most runner status patches for JobStarted in flight at once.
const JOB_PATCH_PARALLELISM: usize = 16;

/// Loop settings (from the config, plus timings tests may shorten).
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// `runner_scale_set_id`
    pub scale_set_id: i64,
    /// `min_runners` and `max_runners` at the start (the latter is also sent as
    /// `X-ScaleSetMaxCapacity`); [`Listener::follow_bounds`] changes them on the way.
    pub bounds: Bounds,
    /// Session owner name (the pod's hostname).
    pub owner: String,
    /// What to do about failed calls: backoff, attempts, auth-failure limit, conflict timeout.
    pub policy: ListenerPolicy,
    /// Deadline for deleting the session on shutdown.
    pub session_delete_timeout: Duration,
}

impl LoopSettings {
    /// Settings with the default timings.
    pub fn new(scale_set_id: i64, bounds: Bounds, owner: String) -> Self {
        LoopSettings {
            scale_set_id,
            bounds,
            owner,
            policy: ListenerPolicy::default(),
            session_delete_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the loop stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The credentials were rejected, also after a fresh credential exchange.
    #[error(
        "{0}; fix: check the GitHub credentials in the config secret (token scopes, app installation)"
    )]
    Unauthorized(Error),
    /// Something only a new configuration can fix (unknown scale set, unusable settings).
    #[error(
        "{0}; fix: the controller must re-create the scale set and update runner_scale_set_id, or correct the config"
    )]
    Fatal(Error),
    /// Another session held the scale set for longer than allowed.
    #[error(
        "another message session for scale set {scale_set_id} stayed active for {waited_secs}s ({last}); fix: stop the other listener for this scale set (another cluster or a duplicate AutoscalingListener), or wait for its session to expire"
    )]
    SessionConflict {
        /// The scale set.
        scale_set_id: i64,
        /// How long it was retried.
        waited_secs: u64,
        /// The last conflict error.
        last: Error,
    },
}

/// Sleeps unless cancelled; returns false when cancelled. Without `shutdown` the sleep is not
/// interrupted.
async fn pause(d: Duration, shutdown: Option<&CancellationToken>) -> bool {
    let Some(shutdown) = shutdown else {
        tokio::time::sleep(d).await;
        return true;
    };
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// A draw from `[0, 1)` for the backoff's jitter.
fn random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The next bounds from `updates`; `None` when the sender is gone. Without updates it never
/// completes.
async fn next_bounds(updates: Option<&mut watch::Receiver<Bounds>>) -> Option<Bounds> {
    let Some(updates) = updates else {
        return std::future::pending().await;
    };
    updates.changed().await.ok()?;
    Some(*updates.borrow_and_update())
}

/// What is left for the caller after [`Listener::react`] carried out the policy's reaction.
enum Next {
    /// Make the call again (after the wait, if any).
    Again,
    /// Refresh the session, then make the call again.
    Refresh,
    /// The session was dropped; the loop creates a new one.
    Recreate,
    /// Leave the call undone.
    Skip,
    /// Shutdown interrupted the wait.
    Cancelled,
}

fn describe(call: Call) -> &'static str {
    match call {
        Call::CreateSession => "creating the message session",
        Call::RefreshSession => "refreshing the message session",
        Call::Poll => "polling for messages",
        Call::Queue => "a message queue call",
        Call::Patch => "a Kubernetes patch",
    }
}

fn timestamp_now() -> Timestamp {
    Timestamp::from_unix_millis(Utc::now().timestamp_millis())
}

/// The loop state for one scale set.
pub struct Listener<S, P> {
    service: S,
    patcher: P,
    settings: LoopSettings,
    metrics: Option<Arc<Metrics>>,
    stages: JobStages,
    health: Health,
    scaler: Scaler,
    /// The completions the count reflects, for the set's holds.
    completions: CompletionLog,
    /// `status.observedPatchID` as the last EphemeralRunnerSet patch returned it.
    observed_patch_id: Option<i64>,
    latest: Option<Statistics>,
    /// Changes of the bounds, from the AutoscalingRunnerSet ([`crate::bounds::follow`]).
    bounds_updates: Option<watch::Receiver<Bounds>>,
    session: Option<MessageSession>,
    last_message_id: i64,
    auth_failures: u32,
}

impl<S: ScaleSetService + Clone, P: RunnerSetPatcher> Listener<S, P> {
    /// A listener; nothing happens until [`Listener::run`].
    pub fn new(
        service: S,
        patcher: P,
        settings: LoopSettings,
        metrics: Option<Arc<Metrics>>,
        health: Health,
    ) -> Self {
        let scaler = Scaler::new(settings.bounds);
        Listener {
            service,
            patcher,
            settings,
            metrics,
            stages: JobStages::default(),
            health,
            scaler,
            completions: CompletionLog::default(),
            observed_patch_id: None,
            latest: None,
            bounds_updates: None,
            session: None,
            last_message_id: 0,
            auth_failures: 0,
        }
    }

    /// Takes new bounds from `updates` as they come, without a new session.
    pub fn follow_bounds(mut self, updates: watch::Receiver<Bounds>) -> Self {
        self.bounds_updates = Some(updates);
        self
    }

    /// Runs until `shutdown` (returns `Ok`) or a fatal error; the session is deleted either way.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ListenerError> {
        if let Some(m) = &self.metrics {
            m.record_bounds(
                self.scaler.bounds().min_runners().into(),
                self.scaler.bounds().max_runners().into(),
            );
        }
        let result = self.run_loop(&shutdown).await;
        self.health.set_ready(false);
        if let Some(session) = self.session.take() {
            let id = session.session_id.clone();
            let deadline = self.settings.session_delete_timeout;
            match tokio::time::timeout(deadline, self.service.delete_session(&session)).await {
                Ok(Ok(())) => info!(session_id = %id, "deleted message session"),
                Ok(Err(e)) => {
                    warn!(session_id = %id, error = %e, "could not delete message session")
                }
                Err(_) => {
                    warn!(session_id = %id, timeout_secs = deadline.as_secs(), "deleting the message session timed out")
                }
            }
        }
        result
    }

    async fn run_loop(&mut self, shutdown: &CancellationToken) -> Result<(), ListenerError> {
        let mut failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let Some(session) = self.session.clone() else {
                if self.create_session(shutdown).await? {
                    continue;
                }
                return Ok(());
            };
            let max_capacity = self.scaler.bounds().max_runners().into();
            // New bounds cut the long poll short: the service keeps undeleted messages for the
            // next one, and the new maximum goes with it.
            let poll = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                bounds = next_bounds(self.bounds_updates.as_mut()) => {
                    match bounds {
                        Some(bounds) => self.set_bounds(bounds).await,
                        None => self.bounds_updates = None,
                    }
                    continue;
                }
                r = self.service.get_message(&session, self.last_message_id, max_capacity) => r,
            };
            match poll {
                Ok(None) => {
                    self.poll_done();
                    failures = 0;
                    debug!(last_message_id = self.last_message_id, "no message");
                    if let Some(stats) = self.latest {
                        self.apply(stats.total_assigned_jobs, false).await;
                    }
                }
                Ok(Some(message)) => {
                    self.poll_done();
                    failures = 0;
                    self.last_message_id = message.message_id;
                    self.handle_message(message).await?;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let mut next = self
                        .react(Call::Poll, e, failures, Duration::ZERO, Some(shutdown))
                        .await?;
                    if let Next::Refresh = next {
                        next = self.refresh_session(failures, Some(shutdown)).await?;
                    }
                    if let Next::Cancelled = next {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Scales to new bounds at once, with the last statistics (before the first ones, the
    /// session start applies them).
    async fn set_bounds(&mut self, bounds: Bounds) {
        self.scaler.set_bounds(bounds);
        if let Some(m) = &self.metrics {
            m.record_bounds(bounds.min_runners().into(), bounds.max_runners().into());
        }
        if let Some(stats) = self.latest {
            self.apply(stats.total_assigned_jobs, true).await;
        }
    }

    fn poll_done(&mut self) {
        self.auth_failures = 0;
        self.health.progress();
        if let Some(m) = &self.metrics {
            m.record_poll();
        }
    }

    /// Asks the policy what to do about `error` from `call` (its `attempt`-th failure in a row)
    /// and carries out what it can here: exits, waits, re-authentication, dropping the session.
    async fn react(
        &mut self,
        call: Call,
        error: Error,
        attempt: u32,
        conflicting_for: Duration,
        shutdown: Option<&CancellationToken>,
    ) -> Result<Next, ListenerError> {
        let class = classify(&error);
        if class == ErrorClass::Unauthorized {
            self.auth_failures = self.auth_failures.saturating_add(1);
        }
        let failure = Failure {
            call,
            class,
            attempt,
            auth_failures: self.auth_failures,
            conflicting_for,
        };
        let what = describe(call);
        match on_error(&failure, &self.settings.policy, random()) {
            Reaction::Exit(exit) => Err(match exit {
                ExitClass::Auth => ListenerError::Unauthorized(error),
                ExitClass::Conflict => ListenerError::SessionConflict {
                    scale_set_id: self.settings.scale_set_id,
                    waited_secs: conflicting_for.as_secs(),
                    last: error,
                },
                ExitClass::Config
                | ExitClass::ScaleSetMissing
                | ExitClass::Transient
                | ExitClass::Shutdown => ListenerError::Fatal(error),
            }),
            Reaction::Retry {
                after,
                reauthenticate,
            } => {
                let retry_in_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                if reauthenticate {
                    warn!(error = %error, attempt = self.auth_failures, retry_in_ms, "credentials rejected; exchanging them again");
                    self.service.reauthenticate();
                } else if class == ErrorClass::SessionConflict {
                    warn!(error = %error, waited_secs = conflicting_for.as_secs(), retry_in_ms,
                        "another session exists for this scale set; retrying");
                } else {
                    warn!(error = %error, attempt, retry_in_ms, "{what} failed; retrying");
                }
                Ok(if pause(after, shutdown).await {
                    Next::Again
                } else {
                    Next::Cancelled
                })
            }
            Reaction::RefreshSession => {
                info!("message queue token expired; refreshing the session");
                Ok(Next::Refresh)
            }
            Reaction::RecreateSession => {
                warn!(error = %error, "the service dropped the message session; creating a new one");
                self.session = None;
                Ok(Next::Recreate)
            }
            Reaction::Skip => {
                error!(error = %error, attempt, "{what} failed; giving up on it");
                Ok(Next::Skip)
            }
        }
    }

    /// Refreshes the session after the `attempt`-th failure of the call that needed it; the
    /// result tells the caller what is left to do.
    async fn refresh_session(
        &mut self,
        attempt: u32,
        shutdown: Option<&CancellationToken>,
    ) -> Result<Next, ListenerError> {
        let Some(session) = self.session.clone() else {
            return Ok(Next::Recreate);
        };
        match self.service.refresh_session(&session).await {
            Ok(fresh) => {
                info!(session_id = %fresh.session_id, "refreshed the message queue token");
                self.session = Some(fresh);
                Ok(Next::Again)
            }
            Err(e) => {
                self.react(Call::RefreshSession, e, attempt, Duration::ZERO, shutdown)
                    .await
            }
        }
    }

    /// Creates the session, retrying conflicts for a bounded time and transient errors for ever.
    /// `Ok(false)` when cancelled.
    async fn create_session(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<bool, ListenerError> {
        let mut attempt = 0u32;
        let mut conflict_since: Option<Instant> = None;
        loop {
            let created = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(false),
                r = self.service.create_session(&self.settings.owner) => r,
            };
            let e = match created {
                Ok(session) => {
                    info!(session_id = %session.session_id, owner = %self.settings.owner, "created message session");
                    self.auth_failures = 0;
                    self.health.progress();
                    self.health.set_ready(true);
                    self.last_message_id = 0;
                    let stats = session.statistics;
                    self.session = Some(session);
                    match stats {
                        Some(stats) => {
                            self.record_statistics(stats);
                            self.apply(stats.total_assigned_jobs, true).await;
                        }
                        None => warn!(
                            "the new session carries no statistics; waiting for the first message"
                        ),
                    }
                    return Ok(true);
                }
                Err(e) => e,
            };
            attempt = attempt.saturating_add(1);
            let conflicting_for = if classify(&e) == ErrorClass::SessionConflict {
                self.health.progress();
                conflict_since.get_or_insert_with(Instant::now).elapsed()
            } else {
                conflict_since = None;
                Duration::ZERO
            };
            let next = self
                .react(
                    Call::CreateSession,
                    e,
                    attempt,
                    conflicting_for,
                    Some(shutdown),
                )
                .await?;
            if let Next::Cancelled = next {
                return Ok(false);
            }
        }
    }

    fn record_statistics(&mut self, stats: Statistics) {
        self.latest = Some(stats);
        if let Some(m) = &self.metrics {
            m.record_statistics(&stats);
        }
    }

    /// A queue-token call (ack, acquire) with refresh-on-401 and a few transient retries. `None`
    /// when it could not be done; the caller logs and carries on.
    async fn queue_call<T, F, Fut>(
        &mut self,
        what: &'static str,
        op: F,
    ) -> Result<Option<T>, ListenerError>
    where
        F: Fn(S, MessageSession) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0u32;
        loop {
            let Some(session) = self.session.clone() else {
                return Ok(None);
            };
            let e = match op(self.service.clone(), session).await {
                Ok(v) => return Ok(Some(v)),
                Err(e) => e,
            };
            attempt = attempt.saturating_add(1);
            let span = warn_span!("queue_call", operation = what);
            let mut next = self
                .react(Call::Queue, e, attempt, Duration::ZERO, None)
                .instrument(span.clone())
                .await?;
            if let Next::Refresh = next {
                next = self.refresh_session(attempt, None).instrument(span).await?;
            }
            match next {
                Next::Again => {}
                Next::Refresh | Next::Recreate | Next::Skip | Next::Cancelled => return Ok(None),
            }
        }
    }

    /// One message, in ARC's order: statistics, ack, acquire, started, completed, desired count.
    /// It is not interrupted by shutdown.
    async fn handle_message(&mut self, message: Message) -> Result<(), ListenerError> {
        let message_id = message.message_id;
        for problem in &message.skipped {
            error!(message_id, %problem, "skipping unreadable part of a message");
        }
        match message.statistics {
            Some(stats) => self.record_statistics(stats),
            None => warn!(
                message_id,
                "message without statistics; keeping the previous ones"
            ),
        }
        debug!(message_id, jobs = message.jobs.len(), "handling message");

        self.queue_call("delete message", |svc, s| async move {
            svc.delete_message(&s, message_id).await
        })
        .await?;

        let now = Utc::now();
        for job in &message.jobs {
            let info = job.job();
            match job {
                JobMessage::Available(_) => {
                    info!(message_id, runner_request_id = info.runner_request_id, job_id = %info.job_id, "job available");
                    if let Some(m) = &self.metrics {
                        self.stages.available(m, info, now);
                    }
                }
                JobMessage::Assigned(_) => {
                    info!(message_id, runner_request_id = info.runner_request_id, job_id = %info.job_id, "job assigned");
                    if let Some(m) = &self.metrics {
                        self.stages.assigned(m, info, now);
                    }
                }
                JobMessage::Started(_) | JobMessage::Completed(_) => {}
            }
        }
        let available: Vec<i64> = message
            .jobs
            .iter()
            .filter_map(|j| match j {
                JobMessage::Available(a) => Some(a.job.runner_request_id),
                _ => None,
            })
            .collect();
        if !available.is_empty() {
            let ids = available.clone();
            let acquired = self
                .queue_call("acquire jobs", move |svc, s| {
                    let ids = ids.clone();
                    async move { svc.acquire_jobs(&s, &ids).await }
                })
                .await?;
            match acquired {
                Some(acquired) => {
                    info!(message_id, requested = available.len(), acquired = acquired.len(), ids = ?acquired, "acquired jobs");
                    if let Some(m) = &self.metrics {
                        self.stages.acquired(m, &acquired, Utc::now());
                    }
                }
                None => {
                    error!(message_id, ids = ?available, "could not acquire jobs; the service offers them again")
                }
            }
        }
        let started: Vec<&JobStarted> = message
            .jobs
            .iter()
            .filter_map(|j| match j {
                JobMessage::Started(s) => Some(s),
                _ => None,
            })
            .collect();
        for job in &started {
            self.job_started(message_id, job);
        }
        for job in message.jobs.iter().filter_map(|j| match j {
            JobMessage::Completed(c) => Some(c),
            _ => None,
        }) {
            info!(message_id, runner_request_id = job.job.runner_request_id, job_id = %job.job.job_id,
                runner_name = %job.runner_name, result = %job.result, "job completed");
            if let Some(m) = &self.metrics {
                m.record_job_completed(job);
                self.stages.completed(m, job, Utc::now());
            }
            self.completions
                .completed(&job.runner_name, timestamp_now());
            self.scaler.mark_completed();
        }
        // The count goes first: a completion it reflects must reach the set before the set can see
        // the finished runner gone, or the set replaces a runner whose job is done. The runners'
        // job patches follow, several at a time.
        if let Some(stats) = self.latest {
            let assigned = stats.total_assigned_jobs.max(0).unsigned_abs();
            match self.scaler.message_step(assigned) {
                Some(decision) => self.write(assigned, decision, true).await,
                None => debug!(message_id, "the set already has this count; no patch"),
            }
        }
        futures::stream::iter(started)
            .for_each_concurrent(JOB_PATCH_PARALLELISM, |job| self.patch_job_started(job))
            .await;
        Ok(())
    }

    /// Logs and counts a JobStarted.
    fn job_started(&mut self, message_id: i64, job: &JobStarted) {
        info!(message_id, runner_request_id = job.job.runner_request_id, job_id = %job.job.job_id,
            runner_name = %job.runner_name, "job started");
        if let Some(m) = &self.metrics {
            m.record_job_started(job);
            self.stages.started(m, &job.job, Utc::now());
        }
        self.scaler.mark_dirty();
    }

    /// Records the job in its runner's status (the runner then counts as busy).
    async fn patch_job_started(&self, job: &JobStarted) {
        if job.runner_name.is_empty() {
            warn!(runner_request_id = job.job.runner_request_id, job_id = %job.job.job_id, "JobStarted without runnerName; no status patch");
            return;
        }
        let patch = match runner_status_patch(job) {
            Ok(patch) => patch,
            Err(e) => {
                error!(error = %e, job_id = %job.job.job_id, "could not build the ephemeral runner status patch");
                return;
            }
        };
        let mut attempt = 0u32;
        loop {
            let e = match self
                .patcher
                .patch_runner_status(&job.runner_name, &patch)
                .await
            {
                Ok(()) => return,
                Err(e) => e,
            };
            attempt = attempt.saturating_add(1);
            match self.patch_failed(&e, attempt) {
                Some(after) => {
                    warn!(error = %e, job_id = %job.job.job_id, "patching the ephemeral runner status failed; retrying");
                    tokio::time::sleep(after).await;
                }
                None if matches!(e, PatchError::NotFound { .. }) => {
                    info!(runner_name = %job.runner_name, job_id = %job.job.job_id, "ephemeral runner not found, skipping the job status patch");
                    return;
                }
                None => {
                    error!(error = %e, job_id = %job.job.job_id, "could not patch the ephemeral runner status");
                    return;
                }
            }
        }
    }

    /// The policy's wait before retrying the `attempt`-th failed Kubernetes patch in a row;
    /// `None` leaves the patch undone.
    fn patch_failed(&self, error: &PatchError, attempt: u32) -> Option<Duration> {
        let class = match error {
            PatchError::NotFound { .. } => ErrorClass::Rejected,
            PatchError::Failed { .. } => ErrorClass::Transient,
        };
        let failure = Failure {
            call: Call::Patch,
            class,
            attempt,
            auth_failures: 0,
            conflicting_for: Duration::ZERO,
        };
        match on_error(&failure, &self.settings.policy, random()) {
            Reaction::Retry { after, .. } => Some(after),
            Reaction::RefreshSession
            | Reaction::RecreateSession
            | Reaction::Skip
            | Reaction::Exit(_) => None,
        }
    }

    /// The desired-count step and the EphemeralRunnerSet patch.
    async fn apply(&mut self, assigned: i64, record: bool) {
        let assigned = assigned.max(0).unsigned_abs();
        let decision = self.scaler.step(assigned);
        self.write(assigned, decision, record).await;
    }

    /// The EphemeralRunnerSet patch of `decision`, the step for `assigned` jobs. Patch failures
    /// are retried a few times, then left to the next poll (which re-applies the count).
    async fn write(&mut self, assigned: u64, decision: Decision, record: bool) {
        info!(
            assigned,
            target = decision.target,
            patch_id = decision.patch_id,
            "calculated target runner count"
        );
        if let (true, Some(m)) = (record, &self.metrics) {
            m.record_desired(decision.target.into());
        }
        let completed =
            self.completions
                .listed(decision.patch_id, self.observed_patch_id, timestamp_now());
        let patch = match ers_patch(decision, &completed) {
            Ok(patch) => patch,
            Err(e) => {
                error!(error = %e, "could not build the ephemeral runner set patch");
                return;
            }
        };
        let mut attempt = 0u32;
        loop {
            let e = match self.patcher.patch_runner_set(&patch).await {
                Ok(observed) => {
                    self.observed_patch_id = observed;
                    self.scaler.written(decision);
                    debug!(
                        replicas = decision.target,
                        patch_id = decision.patch_id,
                        "patched the ephemeral runner set"
                    );
                    return;
                }
                Err(e) => e,
            };
            attempt = attempt.saturating_add(1);
            match self.patch_failed(&e, attempt) {
                Some(after) => {
                    warn!(error = %e, "patching the ephemeral runner set failed; retrying");
                    tokio::time::sleep(after).await;
                }
                None => {
                    error!(error = %e, "could not patch the ephemeral runner set; the next poll applies the count again");
                    return;
                }
            }
        }
    }
}
