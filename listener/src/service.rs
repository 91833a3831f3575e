//! What the loop needs from the Actions service, as a trait, with the listener's error taxonomy.
//!
//! [`crate::actions::ActionsService`] implements it over `actions_client`; unit tests use fakes.

use std::future::Future;

use chrono::{DateTime, Datelike, Utc};
use secrecy::SecretString;
use serde::Deserialize;

/// Scale-set statistics (`RunnerScaleSetStatistic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Statistics {
    /// `totalAvailableJobs`
    pub total_available_jobs: i64,
    /// `totalAcquiredJobs`
    pub total_acquired_jobs: i64,
    /// `totalAssignedJobs`: the scaling signal.
    pub total_assigned_jobs: i64,
    /// `totalRunningJobs`
    pub total_running_jobs: i64,
    /// `totalRegisteredRunners`
    pub total_registered_runners: i64,
    /// `totalBusyRunners`
    pub total_busy_runners: i64,
    /// `totalIdleRunners`
    pub total_idle_runners: i64,
}

/// A message session.
#[derive(Debug, Clone)]
pub struct Session {
    /// `sessionId`
    pub id: String,
    /// `messageQueueUrl`
    pub message_queue_url: String,
    /// `messageQueueAccessToken`
    pub message_queue_token: SecretString,
    /// Initial statistics, when the service sent them.
    pub statistics: Option<Statistics>,
}

/// One long-poll result with a message.
#[derive(Debug, Clone)]
pub struct Message {
    /// `messageId`
    pub id: i64,
    /// `statistics`, when present.
    pub statistics: Option<Statistics>,
    /// The `body` string (a JSON array of job messages, double-encoded), or empty.
    pub body: String,
}

/// Kind of a job message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One element of a message body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobMessage {
    /// `messageType`
    pub message_type: String,
    /// `runnerRequestId`
    pub runner_request_id: i64,
    /// `repositoryName`
    pub repository_name: String,
    /// `ownerName`
    pub owner_name: String,
    /// `jobId`
    pub job_id: String,
    /// `jobWorkflowRef`
    pub job_workflow_ref: String,
    /// `jobDisplayName`
    pub job_display_name: String,
    /// `workflowRunId`
    pub workflow_run_id: i64,
    /// `eventName`
    pub event_name: String,
    /// `requestLabels`
    pub request_labels: Vec<String>,
    /// `queueTime`
    #[serde(deserialize_with = "time")]
    pub queue_time: Option<DateTime<Utc>>,
    /// `scaleSetAssignTime`
    #[serde(deserialize_with = "time")]
    pub scale_set_assign_time: Option<DateTime<Utc>>,
    /// `runnerAssignTime`
    #[serde(deserialize_with = "time")]
    pub runner_assign_time: Option<DateTime<Utc>>,
    /// `finishTime`
    #[serde(deserialize_with = "time")]
    pub finish_time: Option<DateTime<Utc>>,
    /// `runnerId` (JobStarted, JobCompleted)
    pub runner_id: i64,
    /// `runnerName` (JobStarted, JobCompleted)
    pub runner_name: String,
    /// `result` (JobCompleted)
    pub result: String,
}

impl JobMessage {
    /// The kind, or `None` for types the listener ignores.
    pub fn kind(&self) -> Option<JobMessageKind> {
        match self.message_type.as_str() {
            "JobAvailable" => Some(JobMessageKind::Available),
            "JobAssigned" => Some(JobMessageKind::Assigned),
            "JobStarted" => Some(JobMessageKind::Started),
            "JobCompleted" => Some(JobMessageKind::Completed),
            _ => None,
        }
    }
}

/// Go's zero time (`0001-01-01T00:00:00Z`) and null mean "not set".
fn time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let parsed = DateTime::parse_from_rfc3339(&raw)
        .map_err(|e| serde::de::Error::custom(format!("time {raw:?}: {e}")))?;
    let utc = parsed.with_timezone(&Utc);
    Ok((utc.year() > 1).then_some(utc))
}

/// Parses a message body: the job messages that could be read, and a description of the parts
/// that could not (so that one bad element does not hide the others).
pub fn parse_body(body: &str) -> (Vec<JobMessage>, Vec<String>) {
    let body = body.trim_start_matches('\u{feff}').trim();
    if body.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let items: Vec<serde_json::Value> = match serde_json::from_str(body) {
        Ok(items) => items,
        Err(e) => return (Vec::new(), vec![format!("body is not a JSON array: {e}")]),
    };
    let mut jobs = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match JobMessage::deserialize(item) {
            Ok(job) => jobs.push(job),
            Err(e) => problems.push(format!("job message #{index}: {e}")),
        }
    }
    (jobs, problems)
}

/// How a failed call to the Actions service should be treated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// 409: another session exists for this scale set.
    #[error("session conflict: {0}")]
    SessionConflict(String),
    /// The session is gone (deleted or expired on the service side).
    #[error("session gone: {0}")]
    SessionGone(String),
    /// 401 on a queue call: refresh the session and retry.
    #[error("message queue token expired: {0}")]
    QueueTokenExpired(String),
    /// Credentials rejected for good (revoked PAT, uninstalled app, missing permission).
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The scale set does not exist on the service.
    #[error("scale set not found: {0}")]
    ScaleSetNotFound(String),
    /// 5xx, 429, transport failure or timeout: retry.
    #[error("transient: {0}")]
    Transient(String),
    /// A response that could not be understood.
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl ServiceError {
    /// Whether the listener must stop (only permanent authentication failures).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ServiceError::Unauthorized(_))
    }
}

/// The Actions-service operations the listener uses.
pub trait ScaleSetService: Send + Sync + 'static {
    /// POST …/sessions with `ownerName`.
    fn create_session(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Session, ServiceError>> + Send;
    /// PATCH …/sessions/{id}: a new queue token.
    fn refresh_session(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Session, ServiceError>> + Send;
    /// DELETE …/sessions/{id}.
    fn delete_session(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
    /// Long poll: `Ok(None)` is a 202 (no message).
    fn get_message(
        &self,
        session: &Session,
        last_message_id: i64,
        max_capacity: i64,
    ) -> impl Future<Output = Result<Option<Message>, ServiceError>> + Send;
    /// Ack (DELETE) one message.
    fn delete_message(
        &self,
        session: &Session,
        message_id: i64,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;
    /// Acquire jobs by `runnerRequestId`; returns the ids actually acquired.
    fn acquire_jobs(
        &self,
        session: &Session,
        request_ids: &[i64],
    ) -> impl Future<Output = Result<Vec<i64>, ServiceError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_body_and_zero_times() {
        let body = r#"[{"messageType":"JobAvailable","runnerRequestId":1001,"queueTime":"2026-01-01T10:00:00Z","runnerAssignTime":"0001-01-01T00:00:00Z"},
                      {"messageType":"JobStarted","runnerRequestId":"bad"},
                      {"messageType":"Other"}]"#;
        let (jobs, problems) = parse_body(body);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].kind(), Some(JobMessageKind::Available));
        assert!(jobs[0].queue_time.is_some());
        assert!(jobs[0].runner_assign_time.is_none());
        assert_eq!(jobs[1].kind(), None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("#1"));
    }

    #[test]
    fn unparseable_body_is_reported() {
        let (jobs, problems) = parse_body("{not json");
        assert!(jobs.is_empty());
        assert_eq!(problems.len(), 1);
        assert_eq!(parse_body("").1.len(), 0);
    }
}
