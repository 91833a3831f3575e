//! The listener loop: session, long poll, ack, acquire, desired count, patches. It survives
//! everything but permanent authentication failures and a scale set that no longer exists.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::health::Health;
use crate::kube::{PatchError, RunnerSetPatcher, runner_status_patch};
use crate::metrics::{JobStages, Metrics};
use crate::scaler::{Bounds, Scaler, ers_patch_body};
use crate::service::{
    JobMessage, JobMessageKind, Message, ScaleSetService, ServiceError, Session, Statistics,
    parse_body,
};

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

/// Why the loop stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The credentials were rejected.
    #[error(
        "{0}; fix: check the GitHub credentials in the config secret (token scopes, app installation)"
    )]
    Unauthorized(ServiceError),
    /// The scale set does not exist on the service.
    #[error("{0}; fix: the controller must re-create the scale set and update runner_scale_set_id")]
    ScaleSetNotFound(ServiceError),
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
        last: ServiceError,
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
    session: Option<Session>,
    last_message_id: i64,
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
            let deadline = self.settings.session_delete_timeout;
            match tokio::time::timeout(deadline, self.service.delete_session(&session)).await {
                Ok(Ok(())) => info!(session_id = %session.id, "deleted message session"),
                Ok(Err(e)) => {
                    warn!(session_id = %session.id, error = %e, "could not delete message session")
                }
                Err(_) => {
                    warn!(session_id = %session.id, timeout_secs = deadline.as_secs(), "deleting the message session timed out")
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
            let poll = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                r = self.service.get_message(&session, self.last_message_id, self.settings.bounds.max_runners().into()) => r,
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
                    self.last_message_id = message.id;
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

    fn poll_done(&self) {
        self.health.progress();
        if let Some(m) = &self.metrics {
            m.record_poll();
        }
    }

    /// Handles a failed poll. Fatal errors end the loop; everything else is retried.
    async fn recover(
        &mut self,
        e: ServiceError,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<Step, ListenerError> {
        match e {
            ServiceError::QueueTokenExpired(_) => {
                info!("message queue token expired; refreshing the session");
                if !self.refresh_session().await? {
                    let d = backoff.delay();
                    if !pause(d, shutdown).await {
                        return Ok(Step::Stop);
                    }
                }
            }
            ServiceError::SessionGone(reason) => {
                warn!(%reason, "the service dropped the message session; creating a new one");
                self.session = None;
            }
            ServiceError::Unauthorized(_) => return Err(ListenerError::Unauthorized(e)),
            ServiceError::ScaleSetNotFound(_) => return Err(ListenerError::ScaleSetNotFound(e)),
            other => {
                let d = backoff.delay();
                warn!(error = %other, retry_in_ms = d.as_millis() as u64, "polling for messages failed; retrying");
                if !pause(d, shutdown).await {
                    return Ok(Step::Stop);
                }
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
                self.session = Some(fresh);
                Ok(true)
            }
            Err(ServiceError::SessionGone(reason))
            | Err(ServiceError::QueueTokenExpired(reason)) => {
                warn!(%reason, "session refresh failed; creating a new session");
                self.session = None;
                Ok(true)
            }
            Err(e @ ServiceError::Unauthorized(_)) => Err(ListenerError::Unauthorized(e)),
            Err(e @ ServiceError::ScaleSetNotFound(_)) => Err(ListenerError::ScaleSetNotFound(e)),
            Err(e) => {
                warn!(error = %e, "session refresh failed; retrying");
                Ok(false)
            }
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
            match attempt {
                Ok(session) => {
                    info!(session_id = %session.id, owner = %self.settings.owner, "created message session");
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
                Err(e @ ServiceError::SessionConflict(_)) => {
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
                    let d = backoff.delay();
                    warn!(error = %e, waited_secs = waited.as_secs(), retry_in_ms = d.as_millis() as u64,
                        "another session exists for this scale set; retrying");
                    if !pause(d, shutdown).await {
                        return Ok(false);
                    }
                }
                Err(e @ ServiceError::Unauthorized(_)) => {
                    return Err(ListenerError::Unauthorized(e));
                }
                Err(e @ ServiceError::ScaleSetNotFound(_)) => {
                    return Err(ListenerError::ScaleSetNotFound(e));
                }
                Err(e) => {
                    conflict_since = None;
                    let d = backoff.delay();
                    warn!(error = %e, retry_in_ms = d.as_millis() as u64, "creating the message session failed; retrying");
                    if !pause(d, shutdown).await {
                        return Ok(false);
                    }
                }
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
        F: Fn(S, Session) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        for _ in 0..4 {
            let Some(session) = self.session.clone() else {
                return Ok(None);
            };
            match op(self.service.clone(), session).await {
                Ok(v) => return Ok(Some(v)),
                Err(ServiceError::QueueTokenExpired(_)) => {
                    if !self.refresh_session().await? {
                        tokio::time::sleep(backoff.delay()).await;
                    }
                }
                Err(ServiceError::SessionGone(reason)) => {
                    warn!(%reason, operation = what, "session gone; a new one will be created");
                    self.session = None;
                    return Ok(None);
                }
                Err(e @ ServiceError::Unauthorized(_)) => {
                    return Err(ListenerError::Unauthorized(e));
                }
                Err(e) => {
                    let d = backoff.delay();
                    warn!(error = %e, operation = what, retry_in_ms = d.as_millis() as u64, "retrying");
                    tokio::time::sleep(d).await;
                }
            }
        }
        error!(operation = what, "giving up after 4 attempts");
        Ok(None)
    }

    /// One message, in ARC's order: statistics, ack, acquire, started, completed, desired count.
    /// It is not interrupted by shutdown.
    async fn handle_message(&mut self, message: Message) -> Result<(), ListenerError> {
        let message_id = message.id;
        let (jobs, problems) = parse_body(&message.body);
        for problem in &problems {
            error!(message_id, %problem, "skipping unreadable part of a message");
        }
        match message.statistics {
            Some(stats) => self.record_statistics(stats),
            None => warn!(
                message_id,
                "message without statistics; keeping the previous ones"
            ),
        }
        debug!(message_id, jobs = jobs.len(), "handling message");

        self.queue_call("delete message", |svc, s| async move {
            svc.delete_message(&s, message_id).await
        })
        .await?;

        let now = Utc::now();
        let available: Vec<i64> = jobs
            .iter()
            .filter(|j| j.kind() == Some(JobMessageKind::Available))
            .map(|j| j.runner_request_id)
            .collect();
        for job in jobs.iter() {
            match job.kind() {
                Some(JobMessageKind::Available) => {
                    info!(message_id, runner_request_id = job.runner_request_id, job_id = %job.job_id, "job available");
                    if let Some(m) = &self.metrics {
                        self.stages.available(m, job, now);
                    }
                }
                Some(JobMessageKind::Assigned) => {
                    info!(message_id, runner_request_id = job.runner_request_id, job_id = %job.job_id, "job assigned");
                    if let Some(m) = &self.metrics {
                        self.stages.assigned(m, job, now);
                    }
                }
                _ => {}
            }
        }
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
        for job in jobs
            .iter()
            .filter(|j| j.kind() == Some(JobMessageKind::Started))
        {
            self.job_started(message_id, job).await;
        }
        for job in jobs
            .iter()
            .filter(|j| j.kind() == Some(JobMessageKind::Completed))
        {
            info!(message_id, runner_request_id = job.runner_request_id, job_id = %job.job_id,
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

    async fn job_started(&mut self, message_id: i64, job: &JobMessage) {
        info!(message_id, runner_request_id = job.runner_request_id, job_id = %job.job_id,
            runner_name = %job.runner_name, "job started");
        if let Some(m) = &self.metrics {
            m.record_job_started(job);
            self.stages.started(m, job, Utc::now());
        }
        self.scaler.mark_dirty();
        if job.runner_name.is_empty() {
            warn!(runner_request_id = job.runner_request_id, job_id = %job.job_id, "JobStarted without runnerName; no status patch");
            return;
        }
        let body = runner_status_patch(job);
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        for attempt in 1..=3 {
            match self
                .patcher
                .patch_runner_status(&job.runner_name, body.clone())
                .await
            {
                Ok(()) => return,
                Err(PatchError::NotFound { .. }) => {
                    info!(runner_name = %job.runner_name, job_id = %job.job_id, "ephemeral runner not found, skipping the job status patch");
                    return;
                }
                Err(e) if attempt < 3 => {
                    warn!(error = %e, job_id = %job.job_id, "patching the ephemeral runner status failed; retrying");
                    tokio::time::sleep(backoff.delay()).await;
                }
                Err(e) => {
                    error!(error = %e, job_id = %job.job_id, "could not patch the ephemeral runner status")
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
        let body = ers_patch_body(decision);
        let mut backoff = Backoff::new(self.settings.retry_initial, self.settings.retry_max);
        for attempt in 1..=3 {
            match self.patcher.patch_runner_set(body.clone()).await {
                Ok(replicas) => {
                    debug!(
                        replicas,
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
