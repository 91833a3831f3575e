//! A small stateful stand-in for GitHub's REST side and the Actions service (PAT auth, sessions,
//! long-poll queue, acquire, job messages with statistics) with fault switches. It exists only
//! until the shared emulator (tests/emulator) ships; it follows actions-protocol.md's paths,
//! statuses and JSON shapes for the calls the listener makes.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const GOOD_PAT: &str = "ghp_good_token_123";

#[derive(Default, Clone, Debug)]
pub struct SessionState {
    pub id: String,
    pub owner: String,
    pub token: String,
}

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    #[default]
    Available,
    Assigned,
    Running,
}

#[derive(Default)]
pub struct State0 {
    base: String,
    pub session: Option<SessionState>,
    pub sessions_created: Vec<String>,
    pub sessions_deleted: Vec<String>,
    pub refreshes: usize,
    pub foreign_session: bool,
    messages: VecDeque<(i64, Value)>,
    next_message: i64,
    jobs: BTreeMap<i64, JobState>,
    next_job: i64,
    pub acquired: Vec<i64>,
    pub acked: Vec<i64>,
    pub polls: usize,
    pub max_capacity_seen: Vec<String>,
    pub fail_polls: usize,
    pub stall_polls: bool,
    pub malformed_next: bool,
    token_seq: usize,
}

#[derive(Clone)]
pub struct FakeActions {
    pub state: Arc<Mutex<State0>>,
    notify: Arc<Notify>,
    pub url: String,
    pub hold: Duration,
}

fn jwt(exp: i64) -> String {
    let e = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        e(json!({"alg":"RS256","typ":"JWT"})),
        e(json!({"exp": exp}))
    )
}

fn exception(status: StatusCode, type_name: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"typeName": type_name, "message": message}).to_string(),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

impl State0 {
    fn stats(&self) -> Value {
        let count = |s: JobState| self.jobs.values().filter(|j| **j == s).count() as i64;
        let available = count(JobState::Available);
        let assigned = count(JobState::Assigned) + count(JobState::Running);
        let running = count(JobState::Running);
        json!({"totalAvailableJobs": available, "totalAcquiredJobs": assigned,
            "totalAssignedJobs": assigned, "totalRunningJobs": running,
            "totalRegisteredRunners": running, "totalBusyRunners": running, "totalIdleRunners": 0})
    }

    fn push(&mut self, jobs: Vec<Value>) {
        self.next_message += 1;
        let body = if self.malformed_next {
            self.malformed_next = false;
            "[{not json".to_string()
        } else {
            Value::Array(jobs).to_string()
        };
        let message = json!({"messageId": self.next_message, "messageType": "RunnerScaleSetJobMessages",
            "statistics": self.stats(), "body": body});
        self.messages.push_back((self.next_message, message));
    }

    fn new_token(&mut self) -> String {
        self.token_seq += 1;
        format!("mq-token-{}", self.token_seq)
    }
}

impl FakeActions {
    pub async fn start(hold: Duration) -> anyhow::Result<Self> {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", socket.local_addr()?);
        let fake = FakeActions {
            state: Arc::new(Mutex::new(State0 {
                base: url.clone(),
                ..Default::default()
            })),
            notify: Arc::new(Notify::new()),
            url,
            hold,
        };
        let app = Router::new()
            .route(
                "/api/v3/orgs/{org}/actions/runners/registration-token",
                post(registration_token),
            )
            .route(
                "/api/v3/actions/runner-registration",
                post(runner_registration),
            )
            .route(
                "/svc/_apis/runtime/runnerscalesets/{id}/sessions",
                post(create_session),
            )
            .route(
                "/svc/_apis/runtime/runnerscalesets/{id}/sessions/{sid}",
                delete(delete_session).patch(refresh_session),
            )
            .route(
                "/svc/_apis/runtime/runnerscalesets/{id}/acquirejobs",
                post(acquire),
            )
            .route("/queue/{sid}", get(poll))
            .route("/queue/{sid}/{mid}", delete(ack))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(socket, app).await;
        });
        Ok(fake)
    }

    pub fn config_url(&self) -> String {
        format!("{}/octo-org", self.url)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State0) -> R) -> R {
        let r = f(&mut self.state.lock().expect("fake lock"));
        self.notify.notify_waiters();
        r
    }

    /// Queues `n` jobs; the scale set sees them as JobAvailable.
    pub fn queue_jobs(&self, n: usize) -> Vec<i64> {
        self.with(|s| {
            let mut ids = Vec::new();
            let mut messages = Vec::new();
            for _ in 0..n {
                s.next_job += 1;
                let id = 1000 + s.next_job;
                s.jobs.insert(id, JobState::Available);
                ids.push(id);
                messages.push(json!({"messageType": "JobAvailable", "runnerRequestId": id,
                    "jobId": format!("job-{id}"), "ownerName": "octo-org", "repositoryName": "app",
                    "jobDisplayName": "build", "eventName": "push", "requestLabels": ["arc-set"],
                    "queueTime": "2026-01-01T10:00:00Z", "scaleSetAssignTime": "0001-01-01T00:00:00Z",
                    "runnerAssignTime": "0001-01-01T00:00:00Z", "finishTime": "0001-01-01T00:00:00Z"}));
            }
            s.push(messages);
            ids
        })
    }

    /// The job starts on `runner`.
    pub fn start_job(&self, id: i64, runner: &str) {
        self.with(|s| {
            s.jobs.insert(id, JobState::Running);
            let m = json!({"messageType": "JobStarted", "runnerRequestId": id, "runnerId": 5,
                "runnerName": runner, "jobId": format!("job-{id}"), "ownerName": "octo-org",
                "repositoryName": "app", "jobDisplayName": "build", "eventName": "push", "workflowRunId": 77,
                "jobWorkflowRef": "octo-org/app/.github/workflows/ci.yml@refs/heads/main",
                "scaleSetAssignTime": "2026-01-01T10:00:01Z", "runnerAssignTime": "2026-01-01T10:00:04Z"});
            s.push(vec![m]);
        });
    }

    /// The job finishes (it leaves the statistics).
    pub fn complete_job(&self, id: i64, runner: &str) {
        self.with(|s| {
            s.jobs.remove(&id);
            let m = json!({"messageType": "JobCompleted", "runnerRequestId": id, "runnerId": 5,
                "runnerName": runner, "result": "succeeded", "jobId": format!("job-{id}"),
                "ownerName": "octo-org", "repositoryName": "app", "jobDisplayName": "build", "eventName": "push",
                "runnerAssignTime": "2026-01-01T10:00:04Z", "finishTime": "2026-01-01T10:01:04Z"});
            s.push(vec![m]);
        });
    }

    /// Cancels every job still waiting (no message, only statistics on the next one).
    pub fn cancel_all(&self) {
        self.with(|s| {
            s.jobs.clear();
            s.push(Vec::new());
        });
    }
}

async fn registration_token(headers: HeaderMap) -> Response {
    if bearer(&headers) != GOOD_PAT {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials"}).to_string(),
        )
            .into_response();
    }
    (
        StatusCode::CREATED,
        json!({"token": "REGTOKEN", "expires_at": "2099-01-01T00:00:00Z"}).to_string(),
    )
        .into_response()
}

async fn runner_registration(
    State(f): State<FakeActions>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if auth != "RemoteAuth REGTOKEN" || body["runner_event"] != "register" {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let exp = chrono::Utc::now().timestamp() + 3600;
    (
        StatusCode::OK,
        json!({"url": format!("{}/svc/", f.url), "token": jwt(exp)}).to_string(),
    )
        .into_response()
}

async fn create_session(State(f): State<FakeActions>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let owner = body["ownerName"].as_str().unwrap_or_default().to_string();
    f.with(|s| {
        if s.session.is_some() || s.foreign_session {
            return exception(
                StatusCode::CONFLICT,
                "GitHub.DistributedTask.WebApi.TaskAgentSessionConflictException",
                "The scale set already has an active session.",
            );
        }
        let id = format!("5f0c3c43-0000-4000-8000-{:012}", s.sessions_created.len() + 1);
        let token = s.new_token();
        s.session = Some(SessionState { id: id.clone(), owner: owner.clone(), token: token.clone() });
        s.sessions_created.push(id.clone());
        s.messages.clear();
        let session = json!({"sessionId": id, "ownerName": owner, "runnerScaleSet": {"id": 1, "name": "arc-set"},
            "messageQueueUrl": format!("{}/queue/{id}?sessionId={id}", s.base),
            "messageQueueAccessToken": token, "statistics": s.stats()});
        (StatusCode::OK, session.to_string()).into_response()
    })
}

async fn refresh_session(
    State(f): State<FakeActions>,
    Path((_id, sid)): Path<(i64, String)>,
) -> Response {
    f.with(|s| {
        let base = s.base.clone();
        let token = s.new_token();
        let stats = s.stats();
        s.refreshes += 1;
        match s.session.as_mut().filter(|x| x.id == sid) {
            None => exception(
                StatusCode::NOT_FOUND,
                "TaskAgentSessionNotFoundException",
                "session not found",
            ),
            Some(session) => {
                session.token = token.clone();
                let body = json!({"sessionId": sid, "ownerName": session.owner,
                    "messageQueueUrl": format!("{base}/queue/{sid}?sessionId={sid}"),
                    "messageQueueAccessToken": token, "statistics": stats});
                (StatusCode::OK, body.to_string()).into_response()
            }
        }
    })
}

async fn delete_session(
    State(f): State<FakeActions>,
    Path((_id, sid)): Path<(i64, String)>,
) -> Response {
    f.with(|s| {
        if s.session.as_ref().is_some_and(|x| x.id == sid) {
            s.session = None;
            s.sessions_deleted.push(sid);
            StatusCode::NO_CONTENT.into_response()
        } else {
            exception(
                StatusCode::NOT_FOUND,
                "TaskAgentSessionNotFoundException",
                "session not found",
            )
        }
    })
}

fn check_queue(s: &State0, sid: &str, headers: &HeaderMap) -> Option<Response> {
    match &s.session {
        Some(session) if session.id == sid => {
            (bearer(headers) != session.token).then(|| StatusCode::UNAUTHORIZED.into_response())
        }
        _ => Some(exception(
            StatusCode::NOT_FOUND,
            "TaskAgentSessionExpiredException",
            "session expired",
        )),
    }
}

async fn poll(
    State(f): State<FakeActions>,
    Path(sid): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let last: i64 = q
        .get("lastMessageId")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + f.hold;
    loop {
        let notified = f.notify.notified();
        let outcome = f.with_quiet(|s| {
            if let Some(r) = check_queue(s, &sid, &headers) {
                return Some(r);
            }
            if s.stall_polls {
                return None;
            }
            if s.fail_polls > 0 {
                s.fail_polls -= 1;
                return Some(StatusCode::SERVICE_UNAVAILABLE.into_response());
            }
            s.polls += 1;
            if let Some(cap) = headers
                .get("x-scalesetmaxcapacity")
                .and_then(|v| v.to_str().ok())
            {
                s.max_capacity_seen.push(cap.to_string());
            }
            s.messages
                .iter()
                .find(|(id, _)| *id > last)
                .map(|(_, m)| (StatusCode::OK, m.to_string()).into_response())
        });
        if let Some(r) = outcome {
            return r;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            let stalled = f.with_quiet(|s| s.stall_polls);
            if stalled {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            return StatusCode::ACCEPTED.into_response();
        }
    }
}

impl FakeActions {
    fn with_quiet<R>(&self, f: impl FnOnce(&mut State0) -> R) -> R {
        f(&mut self.state.lock().expect("fake lock"))
    }
}

async fn ack(
    State(f): State<FakeActions>,
    Path((sid, mid)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Response {
    f.with_quiet(|s| {
        if let Some(r) = check_queue(s, &sid, &headers) {
            return r;
        }
        s.messages.retain(|(id, _)| *id != mid);
        s.acked.push(mid);
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn acquire(State(f): State<FakeActions>, headers: HeaderMap, body: Bytes) -> Response {
    let ids: Vec<i64> = serde_json::from_slice(&body).unwrap_or_default();
    f.with(|s| {
        if s.session.as_ref().is_none_or(|x| x.token != bearer(&headers)) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut acquired = Vec::new();
        for id in ids {
            if s.jobs.get(&id) == Some(&JobState::Available) {
                s.jobs.insert(id, JobState::Assigned);
                acquired.push(id);
            }
        }
        s.acquired.extend(&acquired);
        let assigned: Vec<Value> = acquired
            .iter()
            .map(|id| json!({"messageType": "JobAssigned", "runnerRequestId": id, "jobId": format!("job-{id}")}))
            .collect();
        if !assigned.is_empty() {
            s.push(assigned);
        }
        (StatusCode::OK, json!({"count": acquired.len(), "value": acquired}).to_string()).into_response()
    })
}

impl FakeActions {
    /// The service rotates the queue token: the listener's next queue call gets a 401.
    pub fn expire_token(&self) {
        self.with(|s| {
            let token = s.new_token();
            if let Some(session) = s.session.as_mut() {
                session.token = token;
            }
        });
    }

    /// The service forgets the session (as after a broker restart).
    pub fn drop_session(&self) {
        self.with(|s| s.session = None);
    }
}

impl State0 {
    pub fn messages_len(&self) -> usize {
        self.messages.len()
    }
}
