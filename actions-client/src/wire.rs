//! Request bodies as the Go client serializes them, and decoding of the composite responses.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json;
use crate::types::{
    JobAssigned, JobAvailable, JobCompleted, JobInfo, JobMessage, JobStarted, Label,
    MessageSession, NewRunnerScaleSet, RunnerReference, RunnerScaleSet, RunnerScaleSetUpdate,
    ScaleSetMessage, Statistics,
};

/// Go's zero time, always sent as `createdOn`.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The nil UUID sent as `sessionId` on create.
pub const NIL_SESSION_ID: &str = "00000000-0000-0000-0000-000000000000";

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

#[derive(Serialize)]
struct SettingBody {
    #[serde(rename = "disableUpdate", skip_serializing_if = "is_false")]
    disable_update: bool,
}

#[derive(Serialize)]
struct ScaleSetBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(rename = "runnerGroupId", skip_serializing_if = "is_zero")]
    runner_group_id: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<Label>,
    #[serde(rename = "RunnerSetting")]
    runner_setting: SettingBody,
    #[serde(rename = "createdOn")]
    created_on: &'static str,
}

fn default_types(labels: &[Label]) -> Vec<Label> {
    labels
        .iter()
        .map(|l| Label {
            label_type: if l.label_type.is_empty() {
                "System".to_owned()
            } else {
                l.label_type.clone()
            },
            name: l.name.clone(),
        })
        .collect()
}

/// The create body; `None` when there is neither a name nor a label (rejected locally).
pub fn create_body(new: &NewRunnerScaleSet) -> Option<Vec<u8>> {
    let labels = if new.labels.is_empty() {
        if new.name.is_empty() {
            return None;
        }
        vec![Label::system(new.name.clone())]
    } else {
        default_types(&new.labels)
    };
    serde_json::to_vec(&ScaleSetBody {
        name: &new.name,
        runner_group_id: new.runner_group_id,
        labels,
        runner_setting: SettingBody {
            disable_update: new.disable_update,
        },
        created_on: ZERO_TIME,
    })
    .ok()
}

/// The PATCH body: zero values omitted, `RunnerSetting` and `createdOn` always sent.
pub fn update_body(update: &RunnerScaleSetUpdate) -> Vec<u8> {
    serde_json::to_vec(&ScaleSetBody {
        name: update.name.as_deref().unwrap_or_default(),
        runner_group_id: update.runner_group_id.unwrap_or_default(),
        labels: update
            .labels
            .as_deref()
            .map(default_types)
            .unwrap_or_default(),
        runner_setting: SettingBody {
            disable_update: update.disable_update,
        },
        created_on: ZERO_TIME,
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct SessionBody<'a> {
    #[serde(rename = "sessionId")]
    session_id: &'static str,
    #[serde(rename = "ownerName")]
    owner_name: &'a str,
}

/// The session-create body.
pub fn session_body(owner: &str) -> Vec<u8> {
    serde_json::to_vec(&SessionBody {
        session_id: NIL_SESSION_ID,
        owner_name: owner,
    })
    .unwrap_or_default()
}

/// The runner-registration body: no HTML escaping (serde_json never escapes), trailing newline.
pub fn registration_body(config_url: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Registration<'a> {
        url: &'a str,
        runner_event: &'static str,
    }
    let mut body = serde_json::to_vec(&Registration {
        url: config_url,
        runner_event: "register",
    })
    .unwrap_or_default();
    body.push(b'\n');
    body
}

/// `{"count": n, "value": [...]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct List {
    /// `count` (what clients decide on).
    pub count: i64,
    /// `value`.
    pub value: Vec<Value>,
}

/// Outcome of a "by name" list.
pub enum Found<T> {
    /// `count == 0`.
    None,
    /// `count == 1`.
    One(T),
    /// `count > 1`.
    Many(i64),
}

/// Applies the `count` rule (edge case 8 of docs/architecture.md#protocol-edge-cases); `count 1`
/// with no item is an error. Every decodable element of `list`; the others are logged (as a `what`)
/// and skipped.
pub fn each<T: serde::de::DeserializeOwned>(list: List, what: &str) -> Vec<T> {
    list.value
        .into_iter()
        .filter_map(|v| match json::from_value::<T>(v) {
            Ok(item) => Some(item),
            Err(e) => {
                tracing::warn!(problem = %e, "undecodable {what} in a list skipped");
                None
            }
        })
        .collect()
}

pub fn one<T: serde::de::DeserializeOwned>(list: List, what: &str) -> Result<Found<T>, String> {
    if list.count as usize != list.value.len() {
        tracing::warn!(
            what,
            count = list.count,
            items = list.value.len(),
            "list count and value disagree; deciding on count"
        );
    }
    match list.count {
        c if c <= 0 => Ok(Found::None),
        1 => {
            let first = list
                .value
                .into_iter()
                .next()
                .ok_or_else(|| format!("{what}: count is 1 but value is empty"))?;
            json::from_value(first).map(Found::One)
        }
        c => Ok(Found::Many(c)),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SessionWire {
    session_id: String,
    owner_name: String,
    runner_scale_set: Option<RunnerScaleSet>,
    message_queue_url: String,
    message_queue_access_token: String,
    statistics: Option<Statistics>,
}

/// Decodes a session; `previous` fills fields a partial refresh object left out.
pub fn session(value: Value, previous: Option<&MessageSession>) -> Result<MessageSession, String> {
    let w: SessionWire = json::from_value(value)?;
    let keep = |new: String, old: Option<&str>| {
        if new.is_empty() {
            old.unwrap_or_default().to_owned()
        } else {
            new
        }
    };
    let token = if w.message_queue_access_token.is_empty() {
        match previous {
            Some(p) => p.message_queue_access_token.clone(),
            None => SecretString::from(String::new()),
        }
    } else {
        SecretString::from(w.message_queue_access_token)
    };
    let session = MessageSession {
        session_id: keep(w.session_id, previous.map(|p| p.session_id.as_str())),
        owner_name: keep(w.owner_name, previous.map(|p| p.owner_name.as_str())),
        runner_scale_set: w
            .runner_scale_set
            .or_else(|| previous.and_then(|p| p.runner_scale_set.clone())),
        message_queue_url: keep(
            w.message_queue_url,
            previous.map(|p| p.message_queue_url.as_str()),
        ),
        message_queue_access_token: token,
        statistics: w.statistics.or_else(|| previous.and_then(|p| p.statistics)),
    };
    if session.session_id.is_empty() {
        return Err("session has no sessionId".to_owned());
    }
    if session.message_queue_url.is_empty() {
        return Err("session has no messageQueueUrl".to_owned());
    }
    if secrecy::ExposeSecret::expose_secret(&session.message_queue_access_token).is_empty() {
        return Err("session has no messageQueueAccessToken".to_owned());
    }
    Ok(session)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JitWire {
    runner: RunnerReference,
    #[serde(rename = "encodedJITConfig")]
    encoded_jit_config: String,
}

/// Decodes a JIT config; the encoded config must be present.
pub fn jit(value: Value) -> Result<crate::types::JitConfig, String> {
    let w: JitWire = json::from_value(value)?;
    if w.encoded_jit_config.is_empty() {
        return Err("encodedJITConfig is missing".to_owned());
    }
    Ok(crate::types::JitConfig {
        runner: w.runner,
        encoded_jit_config: SecretString::from(w.encoded_jit_config),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct EnvelopeWire {
    message_id: i64,
    message_type: String,
    statistics: Option<Statistics>,
    body: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Extras {
    message_type: String,
    acquire_job_url: String,
    runner_id: i64,
    runner_name: String,
    result: String,
}

/// Decodes a GET-message envelope (docs/architecture.md#message-session-and-long-poll). Unknown
/// envelope and element types are tolerated: they are logged and yield no jobs.
pub fn message(value: Value) -> Result<ScaleSetMessage, String> {
    let w: EnvelopeWire = json::from_value(value)?;
    let mut message = ScaleSetMessage {
        message_id: w.message_id,
        message_type: w.message_type,
        statistics: w.statistics,
        jobs: Vec::new(),
        skipped: Vec::new(),
    };
    if message.message_type != crate::types::JOB_MESSAGES_TYPE {
        tracing::warn!(
            message_id = message.message_id,
            message_type = %message.message_type,
            "message of an unknown type carries no jobs"
        );
        return Ok(message);
    }
    let items = match body_items(w.body, message.message_id) {
        Ok(items) => items,
        Err(problem) => {
            tracing::warn!(message_id = message.message_id, %problem, "message body skipped");
            message.skipped.push(problem);
            return Ok(message);
        }
    };
    for (index, item) in items.into_iter().enumerate() {
        match job(item) {
            Ok(Some(job)) => message.jobs.push(job),
            Ok(None) => {}
            Err(problem) => {
                let problem = format!("job message #{index}: {problem}");
                tracing::warn!(message_id = message.message_id, %problem, "job message skipped");
                message.skipped.push(problem);
            }
        }
    }
    Ok(message)
}

/// The job-message elements of an envelope's `body`. An undecodable body is an `Err` describing
/// it, so that the caller can still acknowledge the message by its id.
fn body_items(body: Option<Value>, message_id: i64) -> Result<Vec<Value>, String> {
    match body {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => match json::first_value(s.as_bytes())? {
            Value::Array(items) => Ok(items),
            other => Err(format!("message body is not a JSON array but {other}")),
        },
        Some(Value::Array(items)) => {
            tracing::warn!(
                message_id,
                "message body is an array, not a JSON string; accepted"
            );
            Ok(items)
        }
        Some(other) => Err(format!(
            "message body is neither a JSON string nor an array: {other}"
        )),
    }
}

fn job(item: Value) -> Result<Option<JobMessage>, String> {
    let extras: Extras = json::from_value(item.clone())?;
    let info: JobInfo = json::from_value(item)?;
    Ok(Some(match extras.message_type.as_str() {
        "JobAvailable" => JobMessage::Available(JobAvailable {
            job: info,
            acquire_job_url: extras.acquire_job_url,
        }),
        "JobAssigned" => JobMessage::Assigned(JobAssigned { job: info }),
        "JobStarted" => JobMessage::Started(JobStarted {
            job: info,
            runner_id: extras.runner_id,
            runner_name: extras.runner_name,
        }),
        "JobCompleted" => JobMessage::Completed(JobCompleted {
            job: info,
            result: extras.result,
            runner_id: extras.runner_id,
            runner_name: extras.runner_name,
        }),
        other => {
            tracing::info!(message_type = %other, "unknown job message type skipped");
            return Ok(None);
        }
    }))
}

/// An Actions service exception or GitHub REST error body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Exception {
    /// `typeName`.
    pub type_name: String,
    /// `message`.
    pub message: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::types::{JobMessageKind, RunnerScaleSetUpdate};
    use secrecy::ExposeSecret;

    fn value(text: &str) -> Value {
        json::first_value(text.as_bytes()).unwrap()
    }

    #[test]
    fn message_fixture() {
        let m = message(value(include_str!("../tests/fixtures/message.json"))).unwrap();
        assert_eq!(m.message_id, 17);
        assert_eq!(m.statistics.unwrap().total_assigned_jobs, 2);
        let kinds: Vec<_> = m.jobs.iter().map(JobMessage::kind).collect();
        assert_eq!(
            kinds,
            [
                JobMessageKind::Available,
                JobMessageKind::Started,
                JobMessageKind::Assigned,
                JobMessageKind::Completed
            ]
        );
        assert_eq!(m.available_request_ids(), [1001]);
        let JobMessage::Available(a) = &m.jobs[0] else {
            panic!()
        };
        assert_eq!(a.job.request_labels, ["linux-x64"]);
        assert!(a.job.queue_time.is_some());
        assert_eq!(a.job.runner_assign_time, None, "zero date is unset");
        assert!(a.acquire_job_url.ends_with("/1001"));
        let started: Vec<_> = m.started().collect();
        assert_eq!(started[0].runner_id, 314);
        assert_eq!(started[0].runner_name, "runner-1a2b3c4d");
        let completed: Vec<_> = m.completed().collect();
        assert_eq!(completed[0].result, "canceled");
        assert_eq!(
            completed[0].job.runner_request_id, 997,
            "keys are case-insensitive"
        );
        assert_eq!(completed[0].job.runner_assign_time, None);
        assert_eq!(
            completed[0].job.finish_time.unwrap().to_rfc3339(),
            "2026-01-01T09:01:00.500+00:00"
        );
        assert_eq!(m.skipped.len(), 1, "{:?}", m.skipped);
        assert!(m.skipped[0].contains("#5"), "{:?}", m.skipped);
    }

    #[test]
    fn message_quirks() {
        let m = message(value(
            r#"{"messageId":3,"messageType":"RunnerScaleSetJobMessages"}"#,
        ))
        .unwrap();
        assert!(m.jobs.is_empty());
        assert!(m.statistics.is_none(), "missing statistics does not fail");
        let m = message(value(
            r#"{"messageId":3,"messageType":"RunnerScaleSetJobMessages","body":""}"#,
        ))
        .unwrap();
        assert!(m.jobs.is_empty());
        let m = message(value(
            r#"{"messageId":4,"messageType":"SomethingNew","body":"[{}]"}"#,
        ))
        .unwrap();
        assert_eq!(m.message_type, "SomethingNew");
        assert!(m.jobs.is_empty());
        let m = message(value(r#"{"messageId":5,"messageType":"RunnerScaleSetJobMessages","body":[{"messageType":"JobAssigned","runnerRequestId":9}]}"#)).unwrap();
        assert_eq!(m.jobs.len(), 1);
        for body in [r#"{"a":1}"#, r#""{not json""#, r#""{\"a\":1}""#] {
            let text = format!(
                r#"{{"messageId":6,"messageType":"RunnerScaleSetJobMessages","body":{body}}}"#
            );
            let m = message(value(&text)).unwrap();
            assert_eq!(
                m.message_id, 6,
                "an undecodable body keeps the id, so it can be acked"
            );
            assert!(m.jobs.is_empty());
            assert_eq!(m.skipped.len(), 1, "{body}: {:?}", m.skipped);
        }
    }

    #[test]
    fn session_fixture_and_partial_refresh() {
        let s = session(value(include_str!("../tests/fixtures/session.json")), None).unwrap();
        assert_eq!(s.session_id, "5f0c3c43-3a77-4a53-9d55-6f4b1a2d9c10");
        assert!(s.message_queue_url.contains("?sessionId="));
        assert_eq!(
            s.message_queue_access_token.expose_secret(),
            "eyJ0eXAiOi-queue-token"
        );
        assert_eq!(s.statistics.unwrap().total_assigned_jobs, 3);
        assert_eq!(s.runner_scale_set.as_ref().unwrap().id, 42);
        assert!(!format!("{s:?}").contains("queue-token"));
        let refreshed = session(
            value(r#"{"messageQueueAccessToken":"new-token"}"#),
            Some(&s),
        )
        .unwrap();
        assert_eq!(refreshed.message_queue_url, s.message_queue_url);
        assert_eq!(refreshed.session_id, s.session_id);
        assert_eq!(
            refreshed.message_queue_access_token.expose_secret(),
            "new-token"
        );
        assert!(session(value(r#"{"sessionId":"x"}"#), None).is_err());
    }

    #[test]
    fn scale_set_fixtures() {
        let s: RunnerScaleSet =
            json::from_value(value(include_str!("../tests/fixtures/scale_set.json"))).unwrap();
        assert_eq!(s.id, 42);
        assert_eq!(s.label_names(), ["linux-x64", "gpu"]);
        assert!(s.runner_setting.disable_update);
        assert!(s.created_on.is_some());
        assert!(s.statistics.is_none());
        let odd: RunnerScaleSet =
            json::decode(include_bytes!("../tests/fixtures/scale_set_odd.json")).unwrap();
        assert_eq!(odd.id, 7);
        assert_eq!(odd.name, "odd");
        assert_eq!(odd.runner_group_id, 3);
        assert_eq!(odd.runner_group_name, "");
        assert!(odd.labels.is_empty());
        assert!(odd.runner_setting.disable_update);
        assert_eq!(odd.created_on, None);
        assert_eq!(odd.statistics.unwrap().total_assigned_jobs, 4);
    }

    #[test]
    fn jit_and_lists() {
        let j = jit(value(include_str!("../tests/fixtures/jit.json"))).unwrap();
        assert_eq!(j.runner.id, 314);
        assert_eq!(j.runner.runner_scale_set_id, 42);
        assert!(!format!("{j:?}").contains("jit-secret"));
        assert!(jit(value(r#"{"runner":{"id":1}}"#)).is_err());
        let list: List =
            json::from_value(value(include_str!("../tests/fixtures/runner_list.json"))).unwrap();
        assert!(
            matches!(one::<RunnerReference>(list, "runners").unwrap(), Found::One(r) if r.id == 314)
        );
        let zero_with_items: List =
            json::from_value(value(r#"{"count":0,"value":[{"id":1}]}"#)).unwrap();
        assert!(matches!(
            one::<RunnerReference>(zero_with_items, "runners").unwrap(),
            Found::None
        ));
        let two: List =
            json::from_value(value(r#"{"count":2,"value":[{"id":1},{"id":2}]}"#)).unwrap();
        assert!(matches!(
            one::<RunnerReference>(two, "runners").unwrap(),
            Found::Many(2)
        ));
        let lying: List = json::from_value(value(r#"{"count":1,"value":[]}"#)).unwrap();
        assert!(one::<RunnerReference>(lying, "runners").is_err());
        let null_value: List = json::from_value(value(r#"{"count":0,"value":null}"#)).unwrap();
        assert!(matches!(
            one::<RunnerReference>(null_value, "runners").unwrap(),
            Found::None
        ));
    }

    #[test]
    fn request_bodies_match_go() {
        let new = NewRunnerScaleSet::new("linux-x64", 1).with_labels(["linux-x64", "gpu"]);
        assert_eq!(
            String::from_utf8(create_body(&new).unwrap()).unwrap(),
            r#"{"name":"linux-x64","runnerGroupId":1,"labels":[{"type":"System","name":"linux-x64"},{"type":"System","name":"gpu"}],"RunnerSetting":{"disableUpdate":true},"createdOn":"0001-01-01T00:00:00Z"}"#
        );
        let bare = NewRunnerScaleSet {
            disable_update: false,
            ..NewRunnerScaleSet::new("n", 0)
        };
        assert_eq!(
            String::from_utf8(create_body(&bare).unwrap()).unwrap(),
            r#"{"name":"n","labels":[{"type":"System","name":"n"}],"RunnerSetting":{},"createdOn":"0001-01-01T00:00:00Z"}"#
        );
        assert!(create_body(&NewRunnerScaleSet::default()).is_none());
        let rename = RunnerScaleSetUpdate {
            name: Some("linux-x64-v2".into()),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(update_body(&rename)).unwrap(),
            r#"{"name":"linux-x64-v2","RunnerSetting":{},"createdOn":"0001-01-01T00:00:00Z"}"#
        );
        let regroup = RunnerScaleSetUpdate {
            runner_group_id: Some(7),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(update_body(&regroup)).unwrap(),
            r#"{"runnerGroupId":7,"RunnerSetting":{},"createdOn":"0001-01-01T00:00:00Z"}"#
        );
        assert_eq!(
            String::from_utf8(session_body("arc-listener")).unwrap(),
            r#"{"sessionId":"00000000-0000-0000-0000-000000000000","ownerName":"arc-listener"}"#
        );
        assert_eq!(
            String::from_utf8(registration_body("https://github.com/a&b<c>")).unwrap(),
            "{\"url\":\"https://github.com/a&b<c>\",\"runner_event\":\"register\"}\n"
        );
    }
}
