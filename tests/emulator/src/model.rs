//! Public data model: jobs, scale sets, sessions, runners and the state snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a job ends when its runner completes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobResult {
    /// `succeeded`.
    #[default]
    Succeeded,
    /// `failed`.
    Failed,
    /// `canceled`.
    Canceled,
}

impl JobResult {
    /// The wire string used in `JobCompleted.result`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Succeeded => "succeeded",
            JobResult::Failed => "failed",
            JobResult::Canceled => "canceled",
        }
    }
}

/// A job to queue (`runs-on` labels plus what the simulated runner should do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobSpec {
    /// The job's `runs-on` labels; a scale set matches when all of them are among its labels
    /// (case-insensitive).
    pub labels: Vec<String>,
    /// How long the simulated runner should run the job.
    #[serde(with = "duration_ms", rename = "durationMs")]
    pub duration: Duration,
    /// The result the runner reports.
    pub result: JobResult,
    /// Repository owner.
    pub owner: String,
    /// Repository name (without owner).
    pub repository: String,
    /// Workflow file path inside the repository.
    pub workflow_path: String,
    /// Git ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// Job display name.
    pub display_name: String,
    /// Triggering event.
    pub event_name: String,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            labels: Vec::new(),
            duration: Duration::from_secs(1),
            result: JobResult::Succeeded,
            owner: "octo-org".to_owned(),
            repository: "app".to_owned(),
            workflow_path: ".github/workflows/ci.yml".to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            display_name: "build".to_owned(),
            event_name: "push".to_owned(),
        }
    }
}

impl JobSpec {
    /// A default job targeting `labels`.
    pub fn with_labels<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            labels: labels.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobPhase {
    /// Waiting for a matching scale set (or for capacity).
    Queued,
    /// Offered to a scale set with `JobAvailable`.
    Available,
    /// Acquired by the scale set (A10), not yet assigned.
    Acquired,
    /// Assigned to the scale set (`JobAssigned`), waiting for a runner.
    Assigned,
    /// A runner picked it up (it may not have reported start yet).
    PickedUp,
    /// Running on a runner (`JobStarted`).
    Running,
    /// Finished (`JobCompleted`); see `result`.
    Completed,
}

/// A job and its timestamps, as in [`StateSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// `runnerRequestId` on the wire.
    pub id: i64,
    /// `jobId` on the wire.
    pub job_id: String,
    /// `workflowRunId` on the wire.
    pub workflow_run_id: i64,
    /// What was queued.
    pub spec: JobSpec,
    /// Current phase.
    pub phase: JobPhase,
    /// The scale set it is offered or assigned to.
    pub scale_set_id: Option<i64>,
    /// The runner that picked it up.
    pub runner_id: Option<i64>,
    /// That runner's name.
    pub runner_name: Option<String>,
    /// How many times it went back to the queue after a pickup timeout.
    pub requeues: u32,
    /// Final result once completed.
    pub result: Option<JobResult>,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// When `JobAvailable` was emitted (latest attempt).
    pub available_at: Option<DateTime<Utc>>,
    /// When it was acquired (latest attempt).
    pub acquired_at: Option<DateTime<Utc>>,
    /// When `JobAssigned` was emitted (latest attempt).
    pub assigned_at: Option<DateTime<Utc>>,
    /// When a runner picked it up.
    pub runner_assigned_at: Option<DateTime<Utc>>,
    /// When the runner reported start.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The seven statistics counters of a scale set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    /// Jobs offered and not yet acquired.
    pub total_available_jobs: i64,
    /// Jobs acquired and not yet assigned.
    pub total_acquired_jobs: i64,
    /// Jobs assigned: waiting for a runner or running.
    pub total_assigned_jobs: i64,
    /// Jobs running on a runner.
    pub total_running_jobs: i64,
    /// Registered runners.
    pub total_registered_runners: i64,
    /// Runners with a job.
    pub total_busy_runners: i64,
    /// Runners without a job.
    pub total_idle_runners: i64,
}

/// A runner group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroupRecord {
    /// Group id; `Default` is 1.
    pub id: i64,
    /// Group name.
    pub name: String,
    /// Whether this is the default group.
    pub is_default_group: bool,
}

/// A scale set as the emulator stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetRecord {
    /// Server-assigned id.
    pub id: i64,
    /// Name, unique within the group.
    pub name: String,
    /// Runner group id.
    pub runner_group_id: i64,
    /// Job-targeting labels (type `System`).
    pub labels: Vec<String>,
    /// `runnerSetting.disableUpdate`.
    pub disable_update: bool,
    /// Creation time.
    pub created_on: DateTime<Utc>,
    /// Last `X-ScaleSetMaxCapacity` a poll sent, if any.
    pub max_capacity: Option<i64>,
    /// Current statistics.
    pub statistics: Statistics,
}

/// Why a session is no longer active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionState {
    /// Usable.
    Active,
    /// Deleted by its owner (A9) or because its scale set went away.
    Deleted,
    /// Expired (no activity, or forced through the control API).
    Expired,
}

/// A message session (secrets left out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// Session id.
    pub id: String,
    /// Scale set it belongs to.
    pub scale_set_id: i64,
    /// The owner name the client sent.
    pub owner_name: String,
    /// State.
    pub state: SessionState,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last poll, refresh or acquire.
    pub last_seen: DateTime<Utc>,
    /// Expiry of the current message-queue token.
    pub token_expires_at: DateTime<Utc>,
    /// Number of token refreshes (A8).
    pub refreshes: u64,
    /// Long polls currently held.
    pub polls_in_flight: u32,
}

/// A registered runner (secrets left out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerRecord {
    /// Runner (agent) id.
    pub id: i64,
    /// Runner name.
    pub name: String,
    /// Scale set it belongs to.
    pub scale_set_id: i64,
    /// `workFolder` from the JIT request.
    pub work_folder: String,
    /// When its JIT config was generated.
    pub registered_at: DateTime<Utc>,
    /// When a simulated runner presented the JIT config (it works once).
    pub connected_at: Option<DateTime<Utc>>,
    /// The job it picked up, if any.
    pub job: Option<i64>,
}

/// Everything the emulator knows, for tests and the control API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSnapshot {
    /// Current Actions service base URL `S`.
    pub actions_url: String,
    /// Runner groups.
    pub runner_groups: Vec<RunnerGroupRecord>,
    /// Scale sets by id.
    pub scale_sets: Vec<ScaleSetRecord>,
    /// Sessions, including ended ones.
    pub sessions: Vec<SessionRecord>,
    /// Registered runners.
    pub runners: Vec<RunnerRecord>,
    /// All jobs ever queued.
    pub jobs: Vec<JobRecord>,
    /// Calls per endpoint name (see [`crate::Endpoint`]).
    pub counters: BTreeMap<String, u64>,
}

impl StateSnapshot {
    /// The job with this id.
    pub fn job(&self, id: i64) -> Option<&JobRecord> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The scale set with this id.
    pub fn scale_set(&self, id: i64) -> Option<&ScaleSetRecord> {
        self.scale_sets.iter().find(|s| s.id == id)
    }

    /// The scale set with this name (any group).
    pub fn scale_set_by_name(&self, name: &str) -> Option<&ScaleSetRecord> {
        self.scale_sets.iter().find(|s| s.name == name)
    }

    /// The active session of a scale set.
    pub fn active_session(&self, scale_set_id: i64) -> Option<&SessionRecord> {
        self.sessions
            .iter()
            .find(|s| s.scale_set_id == scale_set_id && s.state == SessionState::Active)
    }

    /// Calls counted for one endpoint.
    pub fn count(&self, endpoint: &str) -> u64 {
        self.counters.get(endpoint).copied().unwrap_or(0)
    }
}

/// What a simulated runner gets after presenting its JIT config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerConnection {
    /// Runner id.
    pub runner_id: i64,
    /// Runner name.
    pub runner_name: String,
    /// Scale set id.
    pub scale_set_id: i64,
    /// Bearer token for the other runner-side calls (empty when `version_deprecated`).
    pub runner_token: String,
    /// The service refuses this runner version (docs/architecture.md#runner-version-deprecation):
    /// the runner must exit (code 7 when `ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1`);
    /// it never gets a job.
    #[serde(default)]
    pub version_deprecated: bool,
}

/// The job a simulated runner receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerJob {
    /// `runnerRequestId`.
    pub runner_request_id: i64,
    /// `jobId`.
    pub job_id: String,
    /// How long to run.
    #[serde(with = "duration_ms", rename = "durationMs")]
    pub duration: Duration,
    /// Result to report.
    pub result: JobResult,
    /// The job's labels.
    pub labels: Vec<String>,
}

/// (De)serializes a `Duration` as integer milliseconds.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Deserializes from milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
