//! The service's data types (docs/architecture.md#wire-protocol), decoded leniently.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::json::opt_time;

/// The default runner group's id; it is never looked up by name.
pub const DEFAULT_RUNNER_GROUP_ID: i64 = 1;
/// The default runner group's name.
pub const DEFAULT_RUNNER_GROUP_NAME: &str = "Default";
/// `X-ScaleSetMaxCapacity` for "unbounded".
pub const UNBOUNDED_CAPACITY: i64 = i32::MAX as i64;

/// `RunnerScaleSetStatistic`: the scaling signal is [`Statistics::total_assigned_jobs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Statistics {
    /// Jobs matched to the scale set and not yet acquired.
    pub total_available_jobs: i64,
    /// Jobs acquired by the scale set.
    pub total_acquired_jobs: i64,
    /// Jobs assigned to the scale set, waiting for a runner or running: scale on this.
    pub total_assigned_jobs: i64,
    /// Jobs executing on a runner of the set.
    pub total_running_jobs: i64,
    /// Runners registered in the set.
    pub total_registered_runners: i64,
    /// Registered runners running a job.
    pub total_busy_runners: i64,
    /// Registered runners that are idle.
    pub total_idle_runners: i64,
}

/// A runner group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunnerGroup {
    /// Id (the default group is 1).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Number of runners.
    pub size: i64,
    /// Whether this is the default group.
    pub is_default_group: bool,
}

/// A scale-set label (`runs-on` target).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Label {
    /// Label type; only `System` is used.
    #[serde(rename = "type")]
    pub label_type: String,
    /// Label name.
    pub name: String,
}

impl Label {
    /// A `System` label.
    pub fn system(name: impl Into<String>) -> Self {
        Self {
            label_type: "System".to_owned(),
            name: name.into(),
        }
    }
}

/// `RunnerSetting` of a scale set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunnerSetting {
    /// Runners do not self-update.
    pub disable_update: bool,
    /// Legacy: ephemeral runners.
    pub ephemeral: bool,
    /// Legacy: elastic scale set.
    pub is_elastic: bool,
}

/// A runner scale set as the service returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunnerScaleSet {
    /// Id (server-assigned).
    pub id: i64,
    /// Name (unique in its runner group; also the default label).
    pub name: String,
    /// Runner group id.
    pub runner_group_id: i64,
    /// Runner group name.
    pub runner_group_name: String,
    /// Labels.
    pub labels: Vec<Label>,
    /// Runner settings.
    pub runner_setting: RunnerSetting,
    /// Creation time (`None` for Go's zero time).
    #[serde(deserialize_with = "opt_time")]
    pub created_on: Option<DateTime<Utc>>,
    /// JIT URL (unused by clients).
    pub runner_jit_config_url: String,
    /// Statistics, when the service sent them.
    pub statistics: Option<Statistics>,
}

impl RunnerScaleSet {
    /// The label names, in order.
    pub fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(|l| l.name.clone()).collect()
    }
}

/// Input of [`crate::ActionsClient::create_runner_scale_set`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewRunnerScaleSet {
    /// Name.
    pub name: String,
    /// Runner group id ([`DEFAULT_RUNNER_GROUP_ID`] for the default group).
    pub runner_group_id: i64,
    /// Labels; when empty the name is the only label. An empty type becomes `System`.
    pub labels: Vec<Label>,
    /// `RunnerSetting.disableUpdate` (ARC sends `true`).
    pub disable_update: bool,
}

impl NewRunnerScaleSet {
    /// A scale set in `runner_group_id` with `disableUpdate: true` and the name as its label.
    pub fn new(name: impl Into<String>, runner_group_id: i64) -> Self {
        Self {
            name: name.into(),
            runner_group_id,
            labels: Vec::new(),
            disable_update: true,
        }
    }

    /// Sets the labels from names (all `System`), in order.
    pub fn with_labels<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.labels = names.into_iter().map(Label::system).collect();
        self
    }
}

/// Input of [`crate::ActionsClient::update_runner_scale_set`]: `None` fields are not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunnerScaleSetUpdate {
    /// New name.
    pub name: Option<String>,
    /// New runner group id.
    pub runner_group_id: Option<i64>,
    /// New labels.
    pub labels: Option<Vec<Label>>,
    /// `disableUpdate: true` (a PATCH cannot set it back to false).
    pub disable_update: bool,
}

/// A registered runner (`RunnerReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunnerReference {
    /// Runner id.
    pub id: i64,
    /// Runner name.
    pub name: String,
    /// Scale set it belongs to.
    pub runner_scale_set_id: i64,
}

/// Input of [`crate::ActionsClient::generate_jit_config`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JitSetting {
    /// Runner name.
    pub name: String,
    /// Work folder; empty means the runner's default.
    pub work_folder: String,
}

/// A just-in-time runner configuration.
#[derive(Clone, Debug)]
pub struct JitConfig {
    /// The registered runner.
    pub runner: RunnerReference,
    /// `encodedJITConfig`: a credential; hand it to the runner only.
    pub encoded_jit_config: SecretString,
}

/// A message session (`RunnerScaleSetSession`).
#[derive(Clone, Debug)]
pub struct MessageSession {
    /// `sessionId`.
    pub session_id: String,
    /// `ownerName`.
    pub owner_name: String,
    /// The scale set (at least id and name).
    pub runner_scale_set: Option<RunnerScaleSet>,
    /// Absolute message-queue URL, query included.
    pub message_queue_url: String,
    /// Bearer token for the queue and acquire jobs.
    pub message_queue_access_token: SecretString,
    /// Statistics at creation or refresh.
    pub statistics: Option<Statistics>,
}

/// Kind of a job message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobMessageKind {
    /// `JobAvailable`
    Available,
    /// `JobAssigned`
    Assigned,
    /// `JobStarted`
    Started,
    /// `JobCompleted`
    Completed,
}

impl JobMessageKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobMessageKind::Available => "JobAvailable",
            JobMessageKind::Assigned => "JobAssigned",
            JobMessageKind::Started => "JobStarted",
            JobMessageKind::Completed => "JobCompleted",
        }
    }
}

/// The fields every job message has ("JobMessageBase").
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobInfo {
    /// Job request id: what acquire jobs takes.
    pub runner_request_id: i64,
    /// Repository name without the owner.
    pub repository_name: String,
    /// Repository owner.
    pub owner_name: String,
    /// Job id.
    pub job_id: String,
    /// Workflow ref, e.g. `octo-org/app/.github/workflows/ci.yml@refs/heads/main`.
    pub job_workflow_ref: String,
    /// Display name.
    pub job_display_name: String,
    /// Workflow run id.
    pub workflow_run_id: i64,
    /// Triggering event.
    pub event_name: String,
    /// `runs-on` labels.
    pub request_labels: Vec<String>,
    /// Queued at.
    #[serde(deserialize_with = "opt_time")]
    pub queue_time: Option<DateTime<Utc>>,
    /// Assigned to the scale set at.
    #[serde(deserialize_with = "opt_time")]
    pub scale_set_assign_time: Option<DateTime<Utc>>,
    /// Assigned to a runner at (`None` when none was, e.g. canceled).
    #[serde(deserialize_with = "opt_time")]
    pub runner_assign_time: Option<DateTime<Utc>>,
    /// Finished at.
    #[serde(deserialize_with = "opt_time")]
    pub finish_time: Option<DateTime<Utc>>,
}

/// `JobAvailable`: acquire it with its `runner_request_id`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobAvailable {
    /// Common fields.
    pub job: JobInfo,
    /// `acquireJobUrl` (unused by clients).
    pub acquire_job_url: String,
}

/// `JobAssigned`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobAssigned {
    /// Common fields.
    pub job: JobInfo,
}

/// `JobStarted`: the named runner is busy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobStarted {
    /// Common fields.
    pub job: JobInfo,
    /// Runner id.
    pub runner_id: i64,
    /// Runner name.
    pub runner_name: String,
}

/// `JobCompleted`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobCompleted {
    /// Common fields.
    pub job: JobInfo,
    /// `succeeded`, `failed`, `canceled`, …
    pub result: String,
    /// Runner id (0 when none ran it).
    pub runner_id: i64,
    /// Runner name.
    pub runner_name: String,
}

/// One element of a message's `body`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobMessage {
    /// `JobAvailable`
    Available(JobAvailable),
    /// `JobAssigned`
    Assigned(JobAssigned),
    /// `JobStarted`
    Started(JobStarted),
    /// `JobCompleted`
    Completed(JobCompleted),
}

impl JobMessage {
    /// Kind.
    pub fn kind(&self) -> JobMessageKind {
        match self {
            JobMessage::Available(_) => JobMessageKind::Available,
            JobMessage::Assigned(_) => JobMessageKind::Assigned,
            JobMessage::Started(_) => JobMessageKind::Started,
            JobMessage::Completed(_) => JobMessageKind::Completed,
        }
    }

    /// Common fields.
    pub fn job(&self) -> &JobInfo {
        match self {
            JobMessage::Available(m) => &m.job,
            JobMessage::Assigned(m) => &m.job,
            JobMessage::Started(m) => &m.job,
            JobMessage::Completed(m) => &m.job,
        }
    }
}

/// The envelope message type of job messages.
pub const JOB_MESSAGES_TYPE: &str = "RunnerScaleSetJobMessages";

/// A message from the queue (GET message, status 200).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScaleSetMessage {
    /// `messageId`: ack it with delete message, pass it as `lastMessageId` next.
    pub message_id: i64,
    /// `messageType`; [`JOB_MESSAGES_TYPE`] for job messages (others carry no jobs).
    pub message_type: String,
    /// Statistics (`None` when the service left them out).
    pub statistics: Option<Statistics>,
    /// Job messages in order; unknown element types are skipped.
    pub jobs: Vec<JobMessage>,
    /// Body elements that were skipped (unknown type or undecodable), described.
    pub skipped: Vec<String>,
}

impl ScaleSetMessage {
    /// `runnerRequestId`s of the `JobAvailable` elements, in order.
    pub fn available_request_ids(&self) -> Vec<i64> {
        self.jobs
            .iter()
            .filter_map(|j| match j {
                JobMessage::Available(a) => Some(a.job.runner_request_id),
                _ => None,
            })
            .collect()
    }

    /// The `JobStarted` elements, in order.
    pub fn started(&self) -> impl Iterator<Item = &JobStarted> {
        self.jobs.iter().filter_map(|j| match j {
            JobMessage::Started(s) => Some(s),
            _ => None,
        })
    }

    /// The `JobCompleted` elements, in order.
    pub fn completed(&self) -> impl Iterator<Item = &JobCompleted> {
        self.jobs.iter().filter_map(|j| match j {
            JobMessage::Completed(c) => Some(c),
            _ => None,
        })
    }
}
