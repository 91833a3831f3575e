//! The listener loop: session, long poll, ack, acquire, desired count, patches. It survives
//! everything but permanent authentication failures and a scale set that no longer exists.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use actions_client::{Error, JobMessage, JobStarted, MessageSession, Statistics};

use crate::health::Health;
use crate::kube::{PatchError, RunnerSetPatcher, runner_status_patch};
use crate::metrics::{JobStages, Metrics};
use crate::scaler::{Bounds, Scaler, ers_patch};
use crate::service::{Message, Reaction, ScaleSetService, reaction};

/// Loop settings (from the config, plus timings tests may shorten).
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// `runner_scale_set_id`
    pub scale_set_id: i64,
    /// `min_runners` and `max_runners` (the latter is also sent as `X-ScaleSetMaxCapacity`).
    pub bounds: Bounds,
    /// Session owner name (the pod's hostname).
    pub owner: String,
    /// How long a 409 session conflict is retried before giving up.
    pub session_conflict_timeout: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
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
            session_conflict_timeout: Duration::from_secs(300),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(15),
            session_delete_timeout: Duration::from_secs(30),
        }
    }
}

/// Consecutive credential rejections (each after a fresh credential exchange) before the
/// listener gives up.
const MAX_AUTH_FAILURES: u32 = 3;

/// Attempts of one queue call (ack, acquire) before it is left to the service's redelivery.
const QUEUE_CALL_ATTEMPTS: u32 = 4;

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

struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            next: initial,
            initial,
            max,
        }
    }
    fn reset(&mut self) {
        self.next = self.initial;
    }
    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Sleeps unless cancelled; returns false when cancelled.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
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
    latest: Option<Statistics>,
    session: Option<MessageSession>,
    last_message_id: i64,
    auth_failures: u32,
}

enum Step {
    Continue,
    Stop,
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
            latest: None,
            session: None,
            last_message_id: 0,
            auth_failures: 0,
        }
    }

    /// Runs until `shutdown` (returns `Ok`) or a fatal error; the session is deleted either way.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ListenerError> {
        if let Some(m) = &self.metrics {
            m.record_bounds(
                self.settings.bounds.min_runners().into(),
                self.settings.bounds.max_runners().into(),
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
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
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
            let max_capacity = self.settings.bounds.max_runners().into();
            let poll = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                r = self.service.get_message(&session, self.last_message_id, max_capacity) => r,
            };
            match poll {
                Ok(None) => {
                    self.poll_done();
                    backoff.reset();
                    debug!(last_message_id = self.last_message_id, "no message");
                    if let Some(stats) = self.latest {
                        self.apply(stats.total_assigned_jobs, false).await;
                    }
                }
                Ok(Some(message)) => {
                    self.poll_done();
                    backoff.reset();
                    self.last_message_id = message.message_id;
                    self.handle_message(message).await?;
                }
                Err(e) => {
                    if let Step::Stop = self.recover(e, shutdown, &mut backoff).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn poll_done(&mut self) {
        self.auth_failures = 0;
        self.health.progress();
        if let Some(m) = &self.metrics {
            m.record_poll();
        }
    }

    /// Counts a credential rejection and forgets the admin token; fatal after
    /// [`MAX_AUTH_FAILURES`] in a row.
    fn auth_failed(&mut self, e: Error) -> Result<(), ListenerError> {
        self.auth_failures += 1;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            return Err(ListenerError::Unauthorized(e));
        }
        warn!(error = %e, attempt = self.auth_failures, "credentials rejected; exchanging them again");
        self.service.reauthenticate();
        Ok(())
    }

    /// Handles a failed poll. Fatal errors end the loop; everything else is retried.
    async fn recover(
        &mut self,
        e: Error,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<Step, ListenerError> {
        let retry_after = match reaction(&e) {
            Reaction::RefreshToken => {
                info!("message queue token expired; refreshing the session");
                !self.refresh_session().await?
            }
            Reaction::SessionGone | Reaction::Conflict => {
                warn!(error = %e, "the service dropped the message session; creating a new one");
                self.session = None;
                false
            }
            Reaction::Reauthenticate => {
                self.auth_failed(e)?;
                true
            }
            Reaction::Fatal => return Err(ListenerError::Fatal(e)),
            Reaction::Retry => {
                warn!(error = %e, "polling for messages failed; retrying");
                true
            }
        };
        if retry_after {
            let d = backoff.delay();
            debug!(
                retry_in_ms = d.as_millis() as u64,
                "waiting before the next poll"
            );
            if !pause(d, shutdown).await {
                return Ok(Step::Stop);
            }
        }
        Ok(Step::Continue)
    }

    /// Refreshes the session. `Ok(false)` means a transient failure (retry later); a session the
    /// service no longer knows is dropped so that the loop creates a new one.
    async fn refresh_session(&mut self) -> Result<bool, ListenerError> {
        let Some(session) = self.session.clone() else {
            return Ok(true);
        };
        match self.service.refresh_session(&session).await {
            Ok(fresh) => {
                info!(session_id = %fresh.session_id, "refreshed the message queue token");
                self.session = Some(fresh);
                Ok(true)
            }
            Err(e) => match reaction(&e) {
                Reaction::SessionGone | Reaction::RefreshToken | Reaction::Conflict => {
                    warn!(error = %e, "session refresh failed; creating a new session");
                    self.session = None;
                    Ok(true)
                }
                Reaction::Reauthenticate => {
                    self.auth_failed(e)?;
                    Ok(false)
                }
                Reaction::Fatal => Err(ListenerError::Fatal(e)),
                Reaction::Retry => {
                    warn!(error = %e, "session refresh failed; retrying");
                    Ok(false)
                }
            },
        }
    }

    /// Creates the session, retrying conflicts for a bounded time and transient errors for ever.
    /// `Ok(false)` when cancelled.
    async fn create_session(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<bool, ListenerError> {
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        let mut conflict_since: Option<Instant> = None;
        loop {
            let attempt = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(false),
                r = self.service.create_session(&self.settings.owner) => r,
            };
            let e = match attempt {
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
            match reaction(&e) {
                Reaction::Conflict => {
                    self.health.progress();
                    let since = *conflict_since.get_or_insert_with(Instant::now);
                    let waited = since.elapsed();
                    if waited >= self.settings.session_conflict_timeout {
                        return Err(ListenerError::SessionConflict {
                            scale_set_id: self.settings.scale_set_id,
                            waited_secs: waited.as_secs(),
                            last: e,
                        });
                    }
                    warn!(error = %e, waited_secs = waited.as_secs(),
                        "another session exists for this scale set; retrying");
                }
                Reaction::Reauthenticate => {
                    conflict_since = None;
                    self.auth_failed(e)?;
                }
                Reaction::Fatal => return Err(ListenerError::Fatal(e)),
                Reaction::SessionGone | Reaction::RefreshToken | Reaction::Retry => {
                    conflict_since = None;
                    warn!(error = %e, "creating the message session failed; retrying");
                }
            }
            let d = backoff.delay();
            debug!(
                retry_in_ms = d.as_millis() as u64,
                "waiting before creating the session again"
            );
            if !pause(d, shutdown).await {
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
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        for _ in 0..QUEUE_CALL_ATTEMPTS {
            let Some(session) = self.session.clone() else {
                return Ok(None);
            };
            let e = match op(self.service.clone(), session).await {
                Ok(v) => return Ok(Some(v)),
                Err(e) => e,
            };
            match reaction(&e) {
                Reaction::RefreshToken => {
                    if self.refresh_session().await? {
                        continue;
                    }
                }
                Reaction::SessionGone | Reaction::Conflict => {
                    warn!(error = %e, operation = what, "session gone; a new one will be created");
                    self.session = None;
                    return Ok(None);
                }
                Reaction::Reauthenticate => self.auth_failed(e)?,
                Reaction::Fatal => return Err(ListenerError::Fatal(e)),
                Reaction::Retry if matches!(e, Error::Rejected(_)) => {
                    error!(error = %e, operation = what, "the service rejected the call");
                    return Ok(None);
                }
                Reaction::Retry => warn!(error = %e, operation = what, "retrying"),
            }
            tokio::time::sleep(backoff.delay()).await;
        }
        error!(
            operation = what,
            attempts = QUEUE_CALL_ATTEMPTS,
            "giving up on this call"
        );
        Ok(None)
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
        for job in &message.jobs {
            if let JobMessage::Started(job) = job {
                self.job_started(message_id, job).await;
            }
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
            self.scaler.mark_dirty();
        }
        if let Some(stats) = self.latest {
            self.apply(stats.total_assigned_jobs, true).await;
        }
        Ok(())
    }

    async fn job_started(&mut self, message_id: i64, job: &JobStarted) {
        info!(message_id, runner_request_id = job.job.runner_request_id, job_id = %job.job.job_id,
            runner_name = %job.runner_name, "job started");
        if let Some(m) = &self.metrics {
            m.record_job_started(job);
            self.stages.started(m, &job.job, Utc::now());
        }
        self.scaler.mark_dirty();
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
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        for attempt in 1..=3 {
            match self
                .patcher
                .patch_runner_status(&job.runner_name, &patch)
                .await
            {
                Ok(()) => return,
                Err(PatchError::NotFound { .. }) => {
                    info!(runner_name = %job.runner_name, job_id = %job.job.job_id, "ephemeral runner not found, skipping the job status patch");
                    return;
                }
                Err(e) if attempt < 3 => {
                    warn!(error = %e, job_id = %job.job.job_id, "patching the ephemeral runner status failed; retrying");
                    tokio::time::sleep(backoff.delay()).await;
                }
                Err(e) => {
                    error!(error = %e, job_id = %job.job.job_id, "could not patch the ephemeral runner status")
                }
            }
        }
    }

    /// The desired-count step and the EphemeralRunnerSet patch. Patch failures are retried a few
    /// times, then left to the next poll (which re-applies the count).
    async fn apply(&mut self, assigned: i64, record: bool) {
        let decision = self.scaler.step(assigned.max(0).unsigned_abs());
        info!(
            assigned,
            target = decision.target,
            patch_id = decision.patch_id,
            "calculated target runner count"
        );
        if let (true, Some(m)) = (record, &self.metrics) {
            m.record_desired(decision.target.into());
        }
        let patch = match ers_patch(decision) {
            Ok(patch) => patch,
            Err(e) => {
                error!(error = %e, "could not build the ephemeral runner set patch");
                return;
            }
        };
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        for attempt in 1..=3 {
            match self.patcher.patch_runner_set(&patch).await {
                Ok(()) => {
                    debug!(
                        replicas = decision.target,
                        patch_id = decision.patch_id,
                        "patched the ephemeral runner set"
                    );
                    return;
                }
                Err(e) if attempt < 3 => {
                    warn!(error = %e, "patching the ephemeral runner set failed; retrying");
                    tokio::time::sleep(backoff.delay()).await;
                }
                Err(e) => {
                    error!(error = %e, "could not patch the ephemeral runner set; the next poll applies the count again")
                }
            }
        }
    }
}
