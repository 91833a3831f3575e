//! EphemeralRunner lifecycle: what each observation of the runner and its pod means and what to do
//! next (docs/architecture.md#ephemeralrunner-lifecycle; pain points 8, 9 and 25 of
//! docs/architecture.md#arc-pain-points-and-our-answers).
//!
//! The reconciler builds a [`RunnerState`] from the EphemeralRunner status (and whether the JIT
//! Secret exists), a [`PodObservation`] from the pod (or `None` when there is no pod), and calls
//! [`decide`]. It carries out the returned [`Action`] and reconciles again on the next event or
//! after the returned delay.
//!
//! Rules:
//! * Retry budget ([`RetryPolicy`], ARC default 5 retries with backoff 0/5/10/20/40/80 s): only
//!   failures that are the runner's fault (non-zero exit, failed init container, OOMKilled, an
//!   image name that can never work) are charged. Cluster faults (eviction, `OutOf*`, node
//!   shutdown or loss, preemption, a pod that vanished) reschedule without charging.
//! * A JIT config is single-use: once the runner container has started, any pod loss means the
//!   registration is spent, so the old runner is removed from the service and a new JIT config is
//!   minted ([`Retry::fresh_registration`]). Before start, the same config is reused.
//! * A runner that had a job when its pod was lost is deleted (the job is gone with it); ARC
//!   does the same.
//! * Exit code 0 is success (the EphemeralRunner is deleted), exit code 7 means the runner
//!   version is deprecated (`Outdated`).
//!
//! ```
//! use scaleset_core::ephemeral_runner::*;
//! use scaleset_core::runner_set::RunnerPhase;
//! use scaleset_core::time::Timestamp;
//! let runner = RunnerState { jit_secret: true, runner_id: 7, ..RunnerState::default() };
//! let now = Timestamp::from_unix_seconds(100);
//! let policy = RetryPolicy::default();
//! assert_eq!(decide(&runner, None, now, &policy), Action::CreatePod);
//! let evicted = PodObservation { phase: PodPhase::Failed, reason: "Evicted".into(), ..PodObservation::default() };
//! match decide(&runner, Some(&evicted), now, &policy) {
//!     Action::RetryPod(r) => assert!(!r.charged && !r.fresh_registration),
//!     other => panic!("{other:?}"),
//! }
//! ```

pub use crate::pod::{ContainerState, Fault, PodPhase, pod_reason_fault};
use crate::pod::{cannot_start, terminated_fault};
use crate::runner_set::RunnerPhase;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a runner whose registration the set removed waits for the set to delete it before
/// its own controller does.
pub const SET_DELETION_GRACE: Duration = Duration::from_secs(10);

/// Pod-failure retry budget and backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Charged failures allowed before the runner is deleted (ARC: 5, i.e. 6 pod attempts).
    pub max_failures: u32,
    /// Wait after the n-th charged failure, indexed by the number of failures recorded; the last
    /// entry repeats (ARC: 0, 5, 10, 20, 40, 80 s).
    pub backoff: Vec<Duration>,
    /// A pod-create rejection by quota or admission is retried this long, then the runner is
    /// deleted so that it is recreated fresh (ARC: 10 min).
    pub create_retry_window: Duration,
    /// How long a deletion waits on `JobStillRunning` once the pod is gone before it gives up
    /// on the registration (the service expires the orphaned job itself).
    pub orphaned_job_grace: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_failures: 5,
            backoff: [0, 5, 10, 20, 40, 80]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            create_retry_window: Duration::from_secs(600),
            orphaned_job_grace: crate::failure::DELETION_GRACE,
        }
    }
}

impl RetryPolicy {
    /// Wait after `failures` charged failures.
    ///
    /// ```
    /// use scaleset_core::ephemeral_runner::RetryPolicy;
    /// use std::time::Duration;
    /// let p = RetryPolicy::default();
    /// assert_eq!(p.backoff_for(0), Duration::ZERO);
    /// assert_eq!(p.backoff_for(3), Duration::from_secs(20));
    /// assert_eq!(p.backoff_for(99), Duration::from_secs(80));
    /// ```
    pub fn backoff_for(&self, failures: u32) -> Duration {
        let idx = usize::try_from(failures).unwrap_or(usize::MAX);
        self.backoff
            .get(idx)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::ZERO)
    }
}

/// What the EphemeralRunner controller knows about the runner itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerState {
    /// `status.phase`.
    pub phase: RunnerPhase,
    /// `status.ready`.
    pub ready: bool,
    /// The JIT Secret exists.
    pub jit_secret: bool,
    /// The runner's registration id: `status.runnerId`, or the one its pod carries (0 or less =
    /// not known).
    pub runner_id: i64,
    /// `status.jobId` / `jobRequestId` is set.
    pub has_job: bool,
    /// Number of charged failures (`len(status.failures)`).
    pub failures: u32,
    /// The latest charged failure.
    pub last_failure: Option<Timestamp>,
    /// `metadata.creationTimestamp`.
    pub created_at: Timestamp,
    /// How long ago the set removed this runner's registration from the service to scale
    /// down; the set deletes the runner next.
    pub registration_removed: Option<Duration>,
}

impl Default for RunnerState {
    fn default() -> Self {
        RunnerState {
            phase: RunnerPhase::Pending,
            ready: false,
            jit_secret: false,
            runner_id: 0,
            has_job: false,
            failures: 0,
            last_failure: None,
            created_at: Timestamp::default(),
            registration_removed: None,
        }
    }
}

/// What the reconciler observed of the runner pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodObservation {
    /// `status.phase`.
    pub phase: PodPhase,
    /// `status.reason` (`Evicted`, `OutOfcpu`, `NodeShutdown`…).
    pub reason: String,
    /// `status.message`.
    pub message: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The `runner` container.
    pub runner: ContainerState,
    /// The first init container that terminated with a non-zero exit code, if any:
    /// `(name, exit code)`.
    pub failed_init: Option<(String, i32)>,
    /// The `Ready` condition with the latest transition is true.
    pub ready: bool,
}

/// How to reach the service when a runner goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceRemoval {
    /// `RemoveRunner(runnerId)` before the Kubernetes change; an error is returned.
    Before,
    /// Delete first, then `RemoveRunner` best effort (errors only logged); the finalizer
    /// retries anyway.
    BestEffortAfter,
    /// Nothing to remove (never registered, or the finalizer will do it).
    None,
    /// The registration is gone already: the service removed it after the job the runner
    /// started, or the set or a user removed it. The deletion skips `RemoveRunner`, which could
    /// only answer 404 (a finalizer that runs again later still calls it).
    DoneByService,
}

/// Why a runner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteCause {
    /// The runner container exited 0: its job is done.
    Completed,
    /// The pod was lost or failed while the runner had a job.
    JobLost,
    /// The retry budget is spent.
    TooManyFailures,
    /// Pod creation was rejected by quota or admission for longer than the retry window.
    CreateRejected,
    /// The JIT name is registered by another scale set.
    NameTaken,
    /// The runner's registration was removed by someone else: the set's scale-down (which
    /// deletes the runner next) or a user on GitHub.
    RegistrationGone,
}

/// A pod retry (the pod is deleted, then recreated on a later pass).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Record `failures[<pod uid>] = now` (runner's fault). Cluster faults are not recorded.
    pub charged: bool,
    /// The JIT config was used: `RemoveRunner(runnerId)` (tolerating not-found), delete the JIT
    /// Secret, reset `runnerId`, `runnerName` and `phase`, so that a new config is minted.
    pub fresh_registration: bool,
    /// `status.reason`.
    pub reason: String,
    /// `status.message`.
    pub message: String,
}

/// What the EphemeralRunner reconciler does next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Nothing now; reconcile again after the delay, or on the next event when `None`.
    Wait(Option<Duration>),
    /// Terminal phase (`Failed`, `Outdated`, `Succeeded`): delete the pod and the JIT Secret if
    /// present; the set deletes the runner.
    CleanupTerminal,
    /// No JIT Secret: generate a JIT config (see [`on_runner_exists`] for a name conflict).
    RequestJitConfig,
    /// Create the runner pod (the JIT Secret exists).
    CreatePod,
    /// Copy phase, ready, reason and message from the pod into the status, with the runner id
    /// and name the pod carries when the status does not have them yet: the status is written
    /// once the pod runs, not also when the runner registers.
    MirrorStatus {
        /// New `status.phase`.
        phase: RunnerPhase,
        /// New `status.ready`.
        ready: bool,
    },
    /// Delete the pod and retry.
    RetryPod(Retry),
    /// Delete the EphemeralRunner.
    DeleteRunner {
        /// Why.
        cause: DeleteCause,
        /// Service removal ordering.
        removal: ServiceRemoval,
    },
    /// `phase=Outdated, reason=Outdated, message="Runner is deprecated"`, then `RemoveRunner`.
    MarkOutdated,
    /// `phase=Failed` with the reason and message, then `RemoveRunner`.
    MarkFailed {
        /// `status.reason` (e.g. `InvalidPod`).
        reason: String,
        /// `status.message`.
        message: String,
    },
}

/// The JIT config has been used: the runner container started at some point.
fn jit_used(runner: &RunnerState, pod: Option<&PodObservation>) -> bool {
    runner.phase == RunnerPhase::Running
        || pod.is_some_and(|p| {
            matches!(
                p.runner,
                ContainerState::Running | ContainerState::Terminated { .. }
            )
        })
}

/// Decides the next step for a runner that is not being deleted.
pub fn decide(
    runner: &RunnerState,
    pod: Option<&PodObservation>,
    now: Timestamp,
    policy: &RetryPolicy,
) -> Action {
    if matches!(
        runner.phase,
        RunnerPhase::Succeeded | RunnerPhase::Failed | RunnerPhase::Outdated
    ) {
        return Action::CleanupTerminal;
    }
    if let Some(ago) = runner.registration_removed {
        // The set deletes the runner itself just after the removal: a deletion from here too
        // would be a second request for one runner, at the time the manager's request budget
        // is tightest (a scale-down of many runners). It is the fallback.
        return match SET_DELETION_GRACE.checked_sub(ago) {
            Some(left) if !left.is_zero() => Action::Wait(Some(left)),
            _ => delete(DeleteCause::RegistrationGone, ServiceRemoval::DoneByService),
        };
    }
    let Some(pod) = pod else {
        return without_pod(runner, now, policy);
    };
    if pod.deleting {
        return Action::Wait(None);
    }
    let used = jit_used(runner, Some(pod));
    if let ContainerState::Terminated { exit_code, reason } = &pod.runner {
        return match exit_code {
            0 if runner.has_job => delete(DeleteCause::Completed, ServiceRemoval::DoneByService),
            0 => delete(DeleteCause::Completed, ServiceRemoval::None),
            7 => Action::MarkOutdated,
            code => {
                let fault = terminated_fault(pod.phase, &pod.reason);
                let why = format!("runner container exited with code {code} ({reason})");
                failure(
                    runner,
                    fault,
                    used,
                    reason_or(&pod.reason, reason),
                    why,
                    policy,
                )
            }
        };
    }
    if pod.phase == PodPhase::Failed {
        let why = if pod.message.is_empty() {
            "pod failed before the runner container terminated".to_string()
        } else {
            pod.message.clone()
        };
        let reason = reason_or(&pod.reason, "PodFailed");
        return failure(
            runner,
            pod_reason_fault(&pod.reason),
            used,
            reason,
            why,
            policy,
        );
    }
    if let Some((name, code)) = &pod.failed_init {
        let why = format!("init container {name} exited with code {code}");
        return failure(
            runner,
            Fault::Runner,
            used,
            "InitContainerFailed".into(),
            why,
            policy,
        );
    }
    match &pod.runner {
        ContainerState::Absent => Action::Wait(None),
        ContainerState::Waiting { reason } if cannot_start(reason) => {
            let why = format!("runner container cannot start: {reason}");
            failure(runner, Fault::Runner, used, reason.clone(), why, policy)
        }
        _ => mirror(runner, pod),
    }
}

fn reason_or(reason: &str, fallback: &str) -> String {
    if reason.is_empty() { fallback } else { reason }.to_string()
}

fn delete(cause: DeleteCause, removal: ServiceRemoval) -> Action {
    Action::DeleteRunner { cause, removal }
}

fn without_pod(runner: &RunnerState, now: Timestamp, policy: &RetryPolicy) -> Action {
    // Checked only between pods, so that a lowered budget never interrupts a running job.
    if runner.failures > policy.max_failures {
        return delete(DeleteCause::TooManyFailures, ServiceRemoval::Before);
    }
    if !runner.jit_secret {
        return Action::RequestJitConfig;
    }
    if jit_used(runner, None) {
        // The pod vanished after the runner started (node loss, manual delete).
        return failure(
            runner,
            Fault::Cluster,
            true,
            "PodVanished".into(),
            "the runner pod disappeared after the runner started".into(),
            policy,
        );
    }
    if let Some(last) = runner.last_failure {
        let ready_at = last + policy.backoff_for(runner.failures);
        if now < ready_at {
            return Action::Wait(Some(ready_at.saturating_duration_since(now)));
        }
    }
    Action::CreatePod
}

fn failure(
    runner: &RunnerState,
    fault: Fault,
    jit_used: bool,
    reason: String,
    message: String,
    policy: &RetryPolicy,
) -> Action {
    if runner.has_job {
        return delete(DeleteCause::JobLost, ServiceRemoval::BestEffortAfter);
    }
    let charged = fault == Fault::Runner;
    if charged && runner.failures >= policy.max_failures {
        return delete(DeleteCause::TooManyFailures, ServiceRemoval::Before);
    }
    Action::RetryPod(Retry {
        charged,
        fresh_registration: jit_used,
        reason,
        message,
    })
}

fn mirror(runner: &RunnerState, pod: &PodObservation) -> Action {
    let phase = match pod.phase {
        PodPhase::Running => RunnerPhase::Running,
        PodPhase::Pending | PodPhase::Unknown => RunnerPhase::Pending,
        PodPhase::Succeeded | PodPhase::Failed => return Action::Wait(None),
    };
    if phase == runner.phase && pod.ready == runner.ready {
        Action::Wait(None)
    } else {
        Action::MirrorStatus {
            phase,
            ready: pod.ready,
        }
    }
}

/// Kinds of pod-create rejection, classified from the API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodCreateError {
    /// 409 AlreadyExists.
    AlreadyExists,
    /// 422 Invalid: the template is wrong.
    Invalid,
    /// 403 with `exceeded quota:`.
    QuotaExceeded,
    /// Rejected by an admission webhook (`admission webhook … denied the request`).
    AdmissionDenied,
    /// Any other 403 (e.g. unknown PriorityClass).
    Forbidden,
    /// Anything else (transport, 5xx).
    Other,
}

impl PodCreateError {
    /// Classifies an API error by HTTP status code and message.
    ///
    /// ```
    /// use scaleset_core::ephemeral_runner::PodCreateError;
    /// assert_eq!(PodCreateError::classify(403, "pods \"x\" is forbidden: exceeded quota: q"), PodCreateError::QuotaExceeded);
    /// assert_eq!(PodCreateError::classify(422, "spec.containers: Required value"), PodCreateError::Invalid);
    /// ```
    pub fn classify(code: u16, message: &str) -> Self {
        match code {
            409 => PodCreateError::AlreadyExists,
            422 => PodCreateError::Invalid,
            403 if message.contains("exceeded quota:") => PodCreateError::QuotaExceeded,
            400 | 403 if message.contains("admission webhook") => PodCreateError::AdmissionDenied,
            403 => PodCreateError::Forbidden,
            _ => PodCreateError::Other,
        }
    }
}

/// What to do when creating the pod failed. `Other` errors are returned by the reconciler
/// (rate-limited requeue); this yields `Wait(None)` for them.
pub fn on_pod_create_error(
    error: PodCreateError,
    message: &str,
    runner: &RunnerState,
    now: Timestamp,
    policy: &RetryPolicy,
) -> Action {
    match error {
        PodCreateError::AlreadyExists => Action::Wait(Some(Duration::from_secs(5))),
        PodCreateError::Invalid | PodCreateError::Forbidden => Action::MarkFailed {
            reason: "InvalidPod".into(),
            message: format!("Failed to create the pod: {message}"),
        },
        PodCreateError::QuotaExceeded | PodCreateError::AdmissionDenied => {
            if now.saturating_duration_since(runner.created_at) >= policy.create_retry_window {
                delete(DeleteCause::CreateRejected, ServiceRemoval::None)
            } else {
                Action::Wait(Some(Duration::from_secs(30)))
            }
        }
        PodCreateError::Other => Action::Wait(None),
    }
}

/// The JIT request's `workFolder`: the `workingDir` of the container named `runner`, or empty.
///
/// The work folder is not a property of the service-side scale set; a change to it is a runner
/// template change, which reaches new runners through the EphemeralRunnerSet spec
/// (see `autoscaling_runner_set::on_spec_drift`).
///
/// ```
/// use scaleset_core::ephemeral_runner::jit_work_folder;
/// assert_eq!(jit_work_folder(Some(" /home/runner/_work ")), "/home/runner/_work");
/// assert_eq!(jit_work_folder(None), "");
/// ```
pub fn jit_work_folder(runner_working_dir: Option<&str>) -> String {
    runner_working_dir
        .map(str::trim)
        .unwrap_or_default()
        .to_string()
}

/// A runner of the same name found after `RunnerExists` from the JIT request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingRunner {
    /// Its runner id.
    pub id: i64,
    /// The scale set it belongs to.
    pub scale_set_id: i64,
}

/// What to do about a JIT name conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JitConflict {
    /// Retry the JIT request later (rate-limited).
    Retry,
    /// Remove the stale registration (ours), then retry.
    RemoveThenRetry {
        /// Runner id to remove.
        runner_id: i64,
    },
    /// The name belongs to another scale set: delete this EphemeralRunner.
    Delete,
}

/// Decides on `RunnerExists` from `generatejitconfig` after looking the name up.
///
/// ```
/// use scaleset_core::ephemeral_runner::{on_runner_exists, ExistingRunner, JitConflict};
/// let mine = ExistingRunner { id: 4, scale_set_id: 9 };
/// assert_eq!(on_runner_exists(Some(mine), 9), JitConflict::RemoveThenRetry { runner_id: 4 });
/// assert_eq!(on_runner_exists(Some(mine), 8), JitConflict::Delete);
/// assert_eq!(on_runner_exists(None, 9), JitConflict::Retry);
/// ```
pub fn on_runner_exists(existing: Option<ExistingRunner>, own_scale_set_id: i64) -> JitConflict {
    match existing {
        None => JitConflict::Retry,
        Some(r) if r.scale_set_id == own_scale_set_id => {
            JitConflict::RemoveThenRetry { runner_id: r.id }
        }
        Some(_) => JitConflict::Delete,
    }
}

/// Result of `RemoveRunner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoveResult {
    /// 204: this call removed the registration.
    Removed,
    /// 404: the registration was already gone.
    AlreadyGone,
    /// `JobStillRunning`.
    JobStillRunning,
    /// Any other error.
    Failed,
}

/// The next step of the deletion finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinalizerStep {
    /// Call `RemoveRunner(runner_id)` and feed the result to [`after_remove`].
    RemoveFromService {
        /// The runner id.
        runner_id: i64,
    },
    /// Drop the registration finalizer, delete pod, JIT Secret and hook resources, then drop the
    /// main finalizer.
    Release,
    /// Try again after the delay.
    RetryAfter(Duration),
    /// Return the error (rate-limited requeue).
    Error,
}

/// First finalizer step: a runner id of 0 (never registered) has nothing to remove.
///
/// `runner_id` should be `status.runnerId`, or the id in the JIT Secret when the status was not
/// written yet.
pub fn finalizer_start(registration_finalizer: bool, runner_id: i64) -> FinalizerStep {
    if registration_finalizer && runner_id > 0 {
        FinalizerStep::RemoveFromService { runner_id }
    } else {
        FinalizerStep::Release
    }
}

/// Handles the `RemoveRunner` result during deletion.
///
/// `JobStillRunning` waits 30 s while the runner container is alive (a real job). Once the pod
/// is gone nothing can finish the job, so the wait is bounded by
/// [`RetryPolicy::orphaned_job_grace`] counted from the deletion request.
///
/// ```
/// use scaleset_core::ephemeral_runner::*;
/// use std::time::Duration;
/// let p = RetryPolicy::default();
/// let busy = after_remove(RemoveResult::JobStillRunning, true, Duration::from_secs(3600), &p);
/// assert_eq!(busy, FinalizerStep::RetryAfter(Duration::from_secs(30)));
/// let orphan = after_remove(RemoveResult::JobStillRunning, false, Duration::from_secs(3600), &p);
/// assert_eq!(orphan, FinalizerStep::Release);
/// ```
pub fn after_remove(
    result: RemoveResult,
    runner_alive: bool,
    deleting_for: Duration,
    policy: &RetryPolicy,
) -> FinalizerStep {
    match result {
        RemoveResult::Removed | RemoveResult::AlreadyGone => FinalizerStep::Release,
        RemoveResult::Failed => FinalizerStep::Error,
        RemoveResult::JobStillRunning
            if !runner_alive
                && crate::failure::on_cleanup_failure(deleting_for, policy.orphaned_job_grace)
                    == crate::failure::CleanupFailure::Abandon =>
        {
            FinalizerStep::Release
        }
        RemoveResult::JobStillRunning => FinalizerStep::RetryAfter(JOB_STILL_RUNNING_RETRY),
    }
}

/// How long to wait before asking the service again to remove a runner whose job still runs (or
/// whose removal failed).
pub const JOB_STILL_RUNNING_RETRY: Duration = Duration::from_secs(30);

/// What a pod retry with a fresh registration ([`Retry::fresh_registration`]) does after
/// `RemoveRunner` of the used registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryRemoval {
    /// Removed: go on with the retry (new JIT config, new pod).
    Proceed,
    /// Someone else removed the registration: the pod most likely failed *because* of that
    /// (a runner exits 1 when its registration disappears), so retrying would only register a
    /// runner the set is scaling down. Delete the runner instead, with no Event.
    Delete(Action),
    /// The job still runs, or the call failed: wait and look again.
    Wait(Duration),
}

/// Decides the rest of a pod retry from the `RemoveRunner` result.
///
/// ```
/// use scaleset_core::ephemeral_runner::*;
/// assert_eq!(after_retry_removal(RemoveResult::Removed), RetryRemoval::Proceed);
/// assert!(matches!(after_retry_removal(RemoveResult::AlreadyGone), RetryRemoval::Delete(_)));
/// ```
pub fn after_retry_removal(result: RemoveResult) -> RetryRemoval {
    match result {
        RemoveResult::Removed => RetryRemoval::Proceed,
        RemoveResult::AlreadyGone => RetryRemoval::Delete(delete(
            DeleteCause::RegistrationGone,
            ServiceRemoval::DoneByService,
        )),
        RemoveResult::JobStillRunning | RemoveResult::Failed => {
            RetryRemoval::Wait(JOB_STILL_RUNNING_RETRY)
        }
    }
}

#[cfg(test)]
mod tests;
