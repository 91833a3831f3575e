//! EphemeralRunnerSet scaling: which runners to create and which to delete
//! (docs/architecture.md#ephemeralrunnerset-reconciler).
//!
//! The reconciler lists the set's EphemeralRunners, turns each into an [`ObservedRunner`], and
//! calls [`plan`] with the set's `spec.replicas` and `spec.patchID`. It then carries out the plan:
//! create [`ScalePlan::create`] runners stamped with [`ScalePlan::stamp_patch_id`], delete the
//! runners in [`ScalePlan::delete`], and walk [`ScaleDown::candidates`] in order, removing each
//! from the service (when it has a runner id) and deleting it, until [`ScaleDown::count`]
//! removals succeeded. A `JobStillRunning` answer means "skip this one, it is busy".
//!
//! Rules kept from ARC:
//! * the `patchID` protocol: act only when `patchID == 0` or it differs from the one last acted
//!   on;
//! * live runners are deleted for scale-down only when `patchID == 0` (authoritative); with a
//!   positive `patchID` surplus runners drain as their jobs finish;
//! * a runner with a job is never chosen.
//!
//! Differences (pain points 8 and 10 of docs/architecture.md#arc-pain-points-and-our-answers):
//! * failed runners do not count against `replicas` (and so not against `maxRunners`) unless
//!   [`SetPolicy::count_failed`] asks for ARC's behaviour (the unit tests keep ARC's policy as a
//!   reference); they are deleted after
//!   [`SetPolicy::failed_ttl`], and creation pauses while [`SetPolicy::pause_after_failed`] or
//!   more are failed, so a broken pod template does not spin;
//! * never-registered runners are preferred for scale-down (no service call is needed);
//! * a `patchID` lower than the newest runner stamp is acted on like any other (the listener
//!   restarted and its sequence began again at 0);
//! * the `patchID` last acted on is recorded in the set's status ([`SetSpec::applied_patch_id`]),
//!   not inferred from the runners' stamps alone: ARC infers it, so when the last runner stamped
//!   with the current `patchID` completes and is deleted before the listener's next patch, ARC
//!   creates a runner for the stale `replicas` (one more than there are jobs);
//!
//! [`cleanup`] serves the set's deletion, an `Outdated` runner, and a change of
//! `spec.ephemeralRunnerSpec` (integrity hash differs): run it once, then store the new hash;
//! idle and pending runners are replaced on the new spec and busy ones finish on the old one.
//!
//! ```
//! use scaleset_core::runner_set::{plan, ObservedRunner, Outcome, RunnerPhase, SetPolicy, SetSpec};
//! use scaleset_core::time::Timestamp;
//! let now = Timestamp::from_unix_seconds(1_000);
//! let mut idle = ObservedRunner::new("rs-runner-a", RunnerPhase::Running, Timestamp::from_unix_seconds(10));
//! idle.runner_id = 11;
//! idle.patch_id = Some(3);
//! let mut busy = ObservedRunner::new("rs-runner-b", RunnerPhase::Running, Timestamp::from_unix_seconds(5));
//! busy.runner_id = 12;
//! busy.patch_id = Some(3);
//! busy.has_job = true;
//! let spec = SetSpec { replicas: 0, patch_id: 0, applied_patch_id: None, held: 0 };
//! let p = plan(spec, &[idle, busy], now, &SetPolicy::default());
//! assert_eq!(p.outcome, Outcome::ScaleDown);
//! assert_eq!(p.scale_down.count, 2);
//! // only the idle runner is a candidate; the busy one keeps its job
//! assert_eq!(p.scale_down.candidates.len(), 1);
//! assert_eq!(p.scale_down.candidates[0].name, "rs-runner-a");
//! ```

mod unseen_writes;
pub use unseen_writes::{UNSEEN_WRITE_TTL, UnseenWrites};

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `EphemeralRunner.status.phase` as the set controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunnerPhase {
    /// Empty, `Pending`, or any unknown value.
    Pending,
    /// `Running`.
    Running,
    /// `Succeeded` (finished).
    Succeeded,
    /// `Failed` (terminal).
    Failed,
    /// `Outdated`: the runner version is deprecated (exit code 7).
    Outdated,
}

impl RunnerPhase {
    /// Parses the status string; unknown values and `""` are [`RunnerPhase::Pending`] as in ARC.
    ///
    /// ```
    /// use scaleset_core::runner_set::RunnerPhase;
    /// assert_eq!(RunnerPhase::parse("Running"), RunnerPhase::Running);
    /// assert_eq!(RunnerPhase::parse("Unknown"), RunnerPhase::Pending);
    /// assert_eq!(RunnerPhase::parse(""), RunnerPhase::Pending);
    /// ```
    pub fn parse(phase: &str) -> Self {
        match phase {
            "Running" => RunnerPhase::Running,
            "Succeeded" => RunnerPhase::Succeeded,
            "Failed" => RunnerPhase::Failed,
            "Outdated" => RunnerPhase::Outdated,
            _ => RunnerPhase::Pending,
        }
    }

    /// The status string.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerPhase::Pending => "Pending",
            RunnerPhase::Running => "Running",
            RunnerPhase::Succeeded => "Succeeded",
            RunnerPhase::Failed => "Failed",
            RunnerPhase::Outdated => "Outdated",
        }
    }
}

/// One EphemeralRunner as observed by the set controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRunner {
    /// `metadata.name` (also the runner name registered with the service).
    pub name: String,
    /// `status.phase`.
    pub phase: RunnerPhase,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// The parsed `actions.github.com/patch-id` annotation; `None` if missing or unparsable.
    pub patch_id: Option<i64>,
    /// `status.runnerId`; 0 or less means the runner never registered.
    pub runner_id: i64,
    /// `status.jobId` (or `jobRequestId`) is set: the runner has a job.
    pub has_job: bool,
    /// `metadata.creationTimestamp`.
    pub created_at: Timestamp,
    /// When the runner entered `Failed`, if known; `created_at` is used otherwise.
    pub failed_at: Option<Timestamp>,
    /// The runner's job is over though the runner may still look live: the listener's count
    /// no longer asks for it ([`crate::completions::Completions::mark_done`]).
    pub job_done: bool,
}

impl ObservedRunner {
    /// A live, unregistered runner without job or patch id.
    pub fn new(name: impl Into<String>, phase: RunnerPhase, created_at: Timestamp) -> Self {
        ObservedRunner {
            name: name.into(),
            phase,
            deleting: false,
            patch_id: None,
            runner_id: 0,
            has_job: false,
            created_at,
            failed_at: None,
            job_done: false,
        }
    }

    /// Sets `runner_id`.
    #[cfg(test)]
    pub(crate) fn with_runner_id(mut self, id: i64) -> Self {
        self.runner_id = id;
        self
    }

    /// Sets `patch_id`.
    #[cfg(test)]
    pub(crate) fn with_patch_id(mut self, id: i64) -> Self {
        self.patch_id = Some(id);
        self
    }

    /// Sets `has_job`.
    #[cfg(test)]
    pub(crate) fn with_job(mut self, has_job: bool) -> Self {
        self.has_job = has_job;
        self
    }

    /// Sets `deleting`.
    pub fn deleting(mut self) -> Self {
        self.deleting = true;
        self
    }

    /// Whether the runner is done: it succeeded, failed or is being deleted.
    pub fn finished(&self) -> bool {
        matches!(
            self.bucket(),
            Bucket::Finished | Bucket::Failed | Bucket::Deleting
        )
    }

    fn bucket(&self) -> Bucket {
        if self.deleting {
            return Bucket::Deleting;
        }
        match self.phase {
            RunnerPhase::Pending => Bucket::Pending,
            RunnerPhase::Running => Bucket::Running,
            RunnerPhase::Succeeded => Bucket::Finished,
            RunnerPhase::Failed => Bucket::Failed,
            RunnerPhase::Outdated => Bucket::Outdated,
        }
    }

    fn is_idle_candidate(&self) -> bool {
        !self.has_job && matches!(self.bucket(), Bucket::Pending | Bucket::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Deleting,
    Pending,
    Running,
    Finished,
    Failed,
    Outdated,
}

/// The set's `spec.replicas` (missing = 0) and `spec.patchID`, and the `patchID` its status
/// records as acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSpec {
    /// Desired runners.
    pub replicas: u32,
    /// The listener's patch id; 0 = authoritative.
    pub patch_id: i64,
    /// `status.observedPatchID`: the `patchID` a pass last acted on. `None` when the status
    /// does not carry it (a new set, or ARC's CRD, which prunes the field): then the newest
    /// runner stamp ([`latest_patch_id`]) stands in, as in ARC.
    pub applied_patch_id: Option<i64>,
    /// Runners that finished with a job that `replicas` still counts
    /// ([`crate::completions::Completions::held`]): as many creations are held back.
    pub held: u32,
}

/// Tunables of the set controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPolicy {
    /// Count failed runners toward `replicas` as ARC does (ARC#3700). Default `false`.
    pub count_failed: bool,
    /// Delete failed runners this long after they failed. `None` keeps them (ARC).
    pub failed_ttl: Option<Duration>,
    /// Pause creating runners while this many or more are failed (a broken template).
    /// `None` never pauses. Only used when `count_failed` is `false`.
    pub pause_after_failed: Option<u32>,
}

impl Default for SetPolicy {
    fn default() -> Self {
        SetPolicy {
            count_failed: false,
            failed_ttl: Some(Duration::from_secs(15 * 60)),
            pause_after_failed: Some(5),
        }
    }
}

/// What the pass decided, for logs and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The spec's `patchID` was already acted on; wait for the next patch.
    AlreadyApplied,
    /// Create runners.
    ScaleUp,
    /// Delete surplus idle runners (only with `patchID` 0).
    ScaleDown,
    /// Surplus runners, but `patchID > 0`: they drain as their jobs complete.
    Draining,
    /// Creation paused because too many runners failed.
    CreationPaused,
    /// Every runner `replicas` asks for more is for a job that is already over
    /// ([`SetSpec::held`]): wait for the listener's next patch.
    Held,
    /// The count matches.
    Steady,
}

/// A runner picked for scale-down or cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// EphemeralRunner name.
    pub name: String,
    /// Runner id to remove from the service first; `None` when it never registered (delete the
    /// EphemeralRunner only; its finalizer handles a registration minted meanwhile).
    pub runner_id: Option<i64>,
}

/// Scale-down work: remove candidates in order until `count` removals succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleDown {
    /// How many runners to remove.
    pub count: u32,
    /// Idle runners in preference order: never registered, then pending, then running; oldest
    /// first within each group. Never contains a runner with a job.
    pub candidates: Vec<Candidate>,
}

/// Status counters written to `EphemeralRunnerSet.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetStatus {
    /// `currentReplicas`: pending + running (+ failed with [`SetPolicy::count_failed`]).
    pub current_replicas: u32,
    /// `pendingEphemeralRunners`.
    pub pending: u32,
    /// `runningEphemeralRunners`.
    pub running: u32,
    /// `failedEphemeralRunners`.
    pub failed: u32,
    /// Any runner is `Outdated`: the set phase becomes `Outdated`.
    pub outdated: bool,
}

/// Everything one set reconcile should do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalePlan {
    /// Why.
    pub outcome: Outcome,
    /// The `patchID` acted on, to record in `status.observedPatchID` (= `spec.patchID`);
    /// `None` while creations are held back, so that a later pass acts on it again.
    pub applied_patch_id: Option<i64>,
    /// Runners to create.
    pub create: u32,
    /// `actions.github.com/patch-id` for the new runners (= `spec.patchID`).
    pub stamp_patch_id: i64,
    /// Runners to delete without a service call: finished, and failed past their TTL.
    pub delete: Vec<String>,
    /// Idle runners to remove for scale-down.
    pub scale_down: ScaleDown,
    /// Status counters over the runners this pass keeps (as observed at its start, without
    /// the expired failed runners it deletes).
    pub status: SetStatus,
}

/// How long a change of a set's counters or `observedPatchID` waits before it is written,
/// together with every such change that follows it in that time. A burst changes them with
/// nearly every runner and every listener patch. Nothing acts on the counters at once (the
/// metrics are published from every pass's own counts), and the set controller acts on the
/// `patchID` it remembers; the status is its record across restarts and what users read.
pub const ROUTINE_DELAY: Duration = Duration::from_secs(5);

/// Whether a pass writes the set's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWrite {
    /// The status is current.
    Unchanged,
    /// Write it now.
    Now,
    /// A routine change, not yet [`ROUTINE_DELAY`] old: write it in a later pass, after this.
    /// The caller records the time of the first pass that returned it as `unwritten_since`.
    After(Duration),
}

/// When to write a status that differs from the current one in `changes`; `unwritten_since` is
/// when a pass first held back a routine change that is still unwritten.
pub fn status_write(
    changes: StatusChanges,
    unwritten_since: Option<Timestamp>,
    now: Timestamp,
) -> StatusWrite {
    match changes {
        StatusChanges::None => StatusWrite::Unchanged,
        StatusChanges::Phase => StatusWrite::Now,
        StatusChanges::Routine => {
            let waited =
                unwritten_since.map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
            if waited < ROUTINE_DELAY {
                StatusWrite::After(ROUTINE_DELAY - waited)
            } else {
                StatusWrite::Now
            }
        }
    }
}

/// How a set's target status differs from its current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChanges {
    /// Not at all.
    None,
    /// In the runner counters or the `patchID` acted on.
    Routine,
    /// In the phase (or there is no status yet).
    Phase,
}

/// Counts the runners into the status buckets.
pub fn status(runners: &[ObservedRunner], policy: &SetPolicy) -> SetStatus {
    let mut s = SetStatus::default();
    for r in runners {
        let bucket = r.bucket();
        match bucket {
            Bucket::Pending => s.pending += 1,
            Bucket::Running => s.running += 1,
            Bucket::Failed => s.failed += 1,
            Bucket::Outdated => s.outdated = true,
            Bucket::Deleting | Bucket::Finished => {}
        }
        if in_replicas(bucket, policy) {
            s.current_replicas += 1;
        }
    }
    s
}

/// Whether a runner in `bucket` counts in `currentReplicas`: pending and running, and failed
/// with [`SetPolicy::count_failed`].
fn in_replicas(bucket: Bucket, policy: &SetPolicy) -> bool {
    match bucket {
        Bucket::Pending | Bucket::Running => true,
        Bucket::Failed => policy.count_failed,
        Bucket::Deleting | Bucket::Finished | Bucket::Outdated => false,
    }
}

/// Highest parsed `patch-id` among all runners, including deleting ones; 0 with none.
pub fn latest_patch_id(runners: &[ObservedRunner]) -> i64 {
    runners
        .iter()
        .filter_map(|r| r.patch_id)
        .max()
        .unwrap_or(0)
        .max(0)
}

/// Decides creates and deletes for one pass. See the module docs.
pub fn plan(
    spec: SetSpec,
    runners: &[ObservedRunner],
    now: Timestamp,
    policy: &SetPolicy,
) -> ScalePlan {
    let applied = spec
        .applied_patch_id
        .unwrap_or_else(|| latest_patch_id(runners));
    let expired = expired_failed(runners, now, policy);
    let kept: Vec<ObservedRunner> = runners
        .iter()
        .filter(|r| !expired.contains(&r.name))
        .cloned()
        .collect();
    let status = status(&kept, policy);
    let mut plan = ScalePlan {
        outcome: Outcome::Steady,
        applied_patch_id: Some(spec.patch_id),
        create: 0,
        stamp_patch_id: spec.patch_id,
        delete: expired,
        scale_down: ScaleDown::default(),
        status,
    };
    if spec.patch_id != 0 && spec.patch_id == applied {
        plan.outcome = Outcome::AlreadyApplied;
        return plan;
    }
    plan.delete.extend(
        kept.iter()
            .filter(|r| r.bucket() == Bucket::Finished)
            .map(|r| r.name.clone()),
    );
    // A runner whose job is over is not one of the runners the count asks for. Counted, it
    // stands in for a queued job until it exits, and then nothing replaces it before the
    // listener's next patch (an empty poll, up to 50 s later); or, seen live only through the
    // set's own creation, it makes a forced patch scale down a real idle runner instead.
    let done = kept
        .iter()
        .filter(|r| r.job_done && in_replicas(r.bucket(), policy))
        .count();
    let total = status
        .current_replicas
        .saturating_sub(u32::try_from(done).unwrap_or(u32::MAX));
    if total < spec.replicas {
        let paused = !policy.count_failed
            && policy
                .pause_after_failed
                .is_some_and(|limit| status.failed >= limit);
        if paused {
            plan.outcome = Outcome::CreationPaused;
        } else {
            plan.create = (spec.replicas - total).saturating_sub(spec.held);
            plan.outcome = if plan.create == 0 {
                Outcome::Held
            } else {
                Outcome::ScaleUp
            };
            if spec.held > 0 {
                plan.applied_patch_id = None;
            }
        }
    } else if total > spec.replicas {
        if spec.patch_id == 0 {
            plan.scale_down = ScaleDown {
                count: total - spec.replicas,
                candidates: idle_candidates(&kept),
            };
            plan.outcome = Outcome::ScaleDown;
        } else {
            plan.outcome = Outcome::Draining;
        }
    }
    plan
}

fn expired_failed(runners: &[ObservedRunner], now: Timestamp, policy: &SetPolicy) -> Vec<String> {
    let Some(ttl) = policy.failed_ttl else {
        return Vec::new();
    };
    runners
        .iter()
        .filter(|r| r.bucket() == Bucket::Failed)
        .filter(|r| now.saturating_duration_since(r.failed_at.unwrap_or(r.created_at)) >= ttl)
        .map(|r| r.name.clone())
        .collect()
}

/// Idle, live runners in scale-down preference order.
fn idle_candidates(runners: &[ObservedRunner]) -> Vec<Candidate> {
    let mut idle: Vec<&ObservedRunner> = runners.iter().filter(|r| r.is_idle_candidate()).collect();
    idle.sort_by_key(|r| {
        let group = match (r.runner_id, r.bucket()) {
            (id, _) if id <= 0 => 0,
            (_, Bucket::Pending) => 1,
            _ => 2,
        };
        (group, r.created_at, r.name.clone())
    });
    idle.into_iter().map(candidate).collect()
}

fn candidate(r: &ObservedRunner) -> Candidate {
    Candidate {
        name: r.name.clone(),
        runner_id: (r.runner_id > 0).then_some(r.runner_id),
    }
}

/// Work for emptying the set (deletion, spec change, outdated runners;
/// docs/architecture.md#runner-set-cleanup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupPlan {
    /// Finished, failed and outdated runners: delete them (they are already off the service or
    /// their controller removed them).
    pub delete: Vec<String>,
    /// Pending and idle running runners: remove from the service (when registered), then delete.
    /// `JobStillRunning` means skip.
    pub remove_then_delete: Vec<Candidate>,
    /// Runners with a job: left alone until the job ends.
    pub waiting_for_jobs: Vec<String>,
    /// No runners remain at all: the set may drop its finalizer.
    pub done: bool,
}

/// Plans the cleanup of every runner of the set. Busy runners are never interrupted.
///
/// ```
/// use scaleset_core::runner_set::{cleanup, ObservedRunner, RunnerPhase};
/// use scaleset_core::time::Timestamp;
/// let t = Timestamp::from_unix_seconds(0);
/// let mut busy = ObservedRunner::new("b", RunnerPhase::Running, t);
/// busy.runner_id = 5;
/// busy.has_job = true;
/// let runners = [
///     ObservedRunner::new("a", RunnerPhase::Failed, t),
///     busy,
///     ObservedRunner::new("c", RunnerPhase::Pending, t),
/// ];
/// let c = cleanup(&runners);
/// assert_eq!(c.delete, vec!["a".to_string()]);
/// assert_eq!(c.waiting_for_jobs, vec!["b".to_string()]);
/// assert_eq!(c.remove_then_delete[0].name, "c");
/// assert!(!c.done);
/// assert!(cleanup(&[]).done);
/// ```
pub fn cleanup(runners: &[ObservedRunner]) -> CleanupPlan {
    let mut plan = CleanupPlan {
        done: runners.is_empty(),
        ..CleanupPlan::default()
    };
    for r in runners {
        match r.bucket() {
            Bucket::Deleting => {}
            Bucket::Finished | Bucket::Failed | Bucket::Outdated => {
                plan.delete.push(r.name.clone())
            }
            Bucket::Pending | Bucket::Running if r.has_job => {
                plan.waiting_for_jobs.push(r.name.clone())
            }
            Bucket::Pending | Bucket::Running => plan.remove_then_delete.push(candidate(r)),
        }
    }
    plan
}

/// What the EphemeralRunnerSet reconciler observed about the set itself
/// (docs/architecture.md#ephemeralrunnerset-reconciler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetObservation {
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// The set finalizer is present.
    pub finalizer: bool,
    /// The `integrity-hash` annotation equals hash(`spec.ephemeralRunnerSpec`).
    pub spec_hash_current: bool,
}

/// The kind of work one EphemeralRunnerSet pass does; the runner-level work comes from
/// [`cleanup`] or [`plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetStep {
    /// Deleting: carry out [`cleanup`]; when it reports `done`, delete the proxy Secret, then
    /// remove the finalizer.
    Finalize,
    /// Add the set finalizer.
    AddFinalizer,
    /// The runner spec changed: carry out [`cleanup`] once, reconcile the proxy Secret, then
    /// store the new hash.
    ReplaceRunners,
    /// Some runner is outdated: carry out [`cleanup`] (status phase `Outdated`).
    CleanupOutdated,
    /// Normal pass: reconcile the proxy Secret, carry out [`plan`], write its status.
    Scale,
}

/// Orders the EphemeralRunnerSet reconcile.
///
/// ```
/// use scaleset_core::runner_set::{set_step, SetObservation, SetStep};
/// let o = SetObservation { deleting: false, finalizer: true, spec_hash_current: true };
/// assert_eq!(set_step(&o, false), SetStep::Scale);
/// assert_eq!(set_step(&o, true), SetStep::CleanupOutdated);
/// ```
pub fn set_step(o: &SetObservation, any_runner_outdated: bool) -> SetStep {
    if o.deleting {
        SetStep::Finalize
    } else if !o.finalizer {
        SetStep::AddFinalizer
    } else if !o.spec_hash_current {
        SetStep::ReplaceRunners
    } else if any_runner_outdated {
        SetStep::CleanupOutdated
    } else {
        SetStep::Scale
    }
}

#[cfg(test)]
mod tests;
