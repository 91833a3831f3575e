//! Narrow tests of the loop's decisions against scripted fakes (the real-service suites live in
//! tests/suites/tests/listener_*.rs).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actions_client::{
    Error, ErrorInfo, JobAvailable, JobCompleted, JobInfo, JobMessage, JobStarted, MessageSession,
    Statistics,
};
use k8s_reconcilers::crd::{EphemeralRunner, EphemeralRunnerSet};
use listener::health::Health;
use listener::kube::{MergePatch, PatchError, RunnerSetPatcher};
use listener::scaler::Bounds;
use listener::service::{Message, ScaleSetService};
use listener::{Listener, ListenerError, LoopSettings};
use scaleset_core::backoff::Backoff;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

type Reply<T> = Result<T, Error>;
type Session = MessageSession;

fn info(text: &str) -> Box<ErrorInfo> {
    Box::new(ErrorInfo::new("fake", text))
}

#[derive(Default)]
struct Script {
    create: VecDeque<Reply<Session>>,
    refresh: VecDeque<Reply<Session>>,
    poll: VecDeque<Reply<Option<Message>>>,
    calls: Vec<String>,
    /// Polls that found no scripted reply and wait forever.
    waiting: usize,
}

#[derive(Clone, Default)]
struct FakeService(Arc<Mutex<Script>>);

impl FakeService {
    fn with(f: impl FnOnce(&mut Script)) -> Self {
        let s = FakeService::default();
        f(&mut s.0.lock().expect("lock"));
        s
    }
    fn calls(&self) -> Vec<String> {
        self.0.lock().expect("lock").calls.clone()
    }
    fn log(&self, call: String) {
        self.0.lock().expect("lock").calls.push(call);
    }
}

fn session(id: &str, assigned: i64) -> Session {
    Session {
        session_id: id.into(),
        owner_name: "pod-a".into(),
        runner_scale_set: None,
        message_queue_url: format!("http://queue/{id}"),
        message_queue_access_token: SecretString::from("t"),
        statistics: Some(Statistics {
            total_assigned_jobs: assigned,
            ..Default::default()
        }),
    }
}

fn message(id: i64, assigned: i64, jobs: Vec<JobMessage>) -> Message {
    Message {
        message_id: id,
        statistics: Some(Statistics {
            total_assigned_jobs: assigned,
            ..Default::default()
        }),
        jobs,
        ..Default::default()
    }
}

/// A JobStarted of request `id` on runner `runner` (id 3), in repository `o/r`.
fn started(id: i64, runner: &str) -> JobMessage {
    JobMessage::Started(JobStarted {
        job: JobInfo {
            runner_request_id: id,
            job_id: format!("j{id}"),
            owner_name: "o".into(),
            repository_name: "r".into(),
            ..Default::default()
        },
        runner_id: 3,
        runner_name: runner.into(),
    })
}

/// The recorded status patch of [`started`]`(id, runner)`.
fn job_patch(id: i64, runner: &str) -> String {
    format!(
        r#"er {runner} {{"status":{{"jobId":"j{id}","jobRepositoryName":"o/r","jobRequestId":{id}}}}}"#
    )
}

fn available(id: i64) -> JobMessage {
    JobMessage::Available(JobAvailable {
        job: JobInfo {
            runner_request_id: id,
            ..Default::default()
        },
        acquire_job_url: String::new(),
    })
}

impl ScaleSetService for FakeService {
    async fn create_session(&self, owner: &str) -> Reply<Session> {
        self.log(format!("create {owner}"));
        let next = self.0.lock().expect("lock").create.pop_front();
        next.unwrap_or_else(|| Ok(session("s-default", 0)))
    }
    async fn refresh_session(&self, s: &Session) -> Reply<Session> {
        self.log(format!("refresh {}", s.session_id));
        let next = self.0.lock().expect("lock").refresh.pop_front();
        next.unwrap_or_else(|| Ok(session(&s.session_id, 0)))
    }
    async fn delete_session(&self, s: &Session) -> Reply<()> {
        self.log(format!("delete-session {}", s.session_id));
        Ok(())
    }
    async fn get_message(&self, s: &Session, last: i64, max: i64) -> Reply<Option<Message>> {
        let next = self.0.lock().expect("lock").poll.pop_front();
        match next {
            Some(r) => {
                self.log(format!("poll {} last={last} max={max}", s.session_id));
                r
            }
            None => {
                self.0.lock().expect("lock").waiting += 1;
                std::future::pending().await
            }
        }
    }
    async fn delete_message(&self, s: &Session, id: i64) -> Reply<()> {
        self.log(format!("ack {} {id}", s.session_id));
        Ok(())
    }
    async fn acquire_jobs(&self, s: &Session, ids: &[i64]) -> Reply<Vec<i64>> {
        self.log(format!("acquire {} {ids:?}", s.session_id));
        Ok(ids.to_vec())
    }
    fn reauthenticate(&self) {
        self.log("reauthenticate".into());
    }
}

#[derive(Clone, Default)]
struct FakePatcher(Arc<Mutex<Vec<String>>>);

impl FakePatcher {
    fn patches(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

impl RunnerSetPatcher for FakePatcher {
    async fn patch_runner_set(
        &self,
        patch: &MergePatch<EphemeralRunnerSet>,
    ) -> Result<Option<i64>, PatchError> {
        self.0.lock().expect("lock").push(format!("ers {patch}"));
        Ok(None)
    }
    async fn patch_runner_status(
        &self,
        name: &str,
        patch: &MergePatch<EphemeralRunner>,
    ) -> Result<(), PatchError> {
        self.0
            .lock()
            .expect("lock")
            .push(format!("er {name} {patch}"));
        Ok(())
    }
}

/// The recorded EphemeralRunnerSet patch with `patchID`, `replicas` (`None`: null) and the
/// completed-runners annotation.
fn ers(patch_id: i64, replicas: Option<u32>, completed: &str) -> String {
    let replicas = replicas.map_or("null".to_owned(), |r| r.to_string());
    format!(
        r#"ers {{"metadata":{{"annotations":{{"actions.github.com/completed-runners":"{completed}"}}}},"spec":{{"patchID":{patch_id},"replicas":{replicas}}}}}"#
    )
}

fn settings(min: u32, max: u32) -> LoopSettings {
    let bounds = Bounds::new(min, max).expect("bounds");
    let mut s = LoopSettings::new(7, bounds, "pod-a".into());
    s.policy.backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(20));
    s.policy.conflict_timeout = Duration::from_millis(200);
    s
}

/// Runs the loop until `done` holds on the fakes (or 20 s pass), then shuts it down.
async fn run_until(
    service: FakeService,
    patcher: FakePatcher,
    settings: LoopSettings,
    done: impl Fn(&FakeService, &FakePatcher) -> bool,
) -> Result<(), ListenerError> {
    let shutdown = CancellationToken::new();
    let listener = Listener::new(
        service.clone(),
        patcher.clone(),
        settings,
        None,
        Health::new(Duration::from_secs(60)),
    );
    let task = tokio::spawn(listener.run(shutdown.clone()));
    for _ in 0..2000 {
        if done(&service, &patcher) || task.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.expect("listener task")
}

#[tokio::test]
async fn message_is_acked_then_acquired_then_scaled() {
    let body = vec![available(11), available(12), started(9, "r-1")];
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 1)));
        s.poll.push_back(Ok(Some(message(5, 3, body))));
        s.poll.push_back(Ok(None));
    });
    let patcher = FakePatcher::default();
    run_until(service.clone(), patcher.clone(), settings(1, 10), |_, p| {
        p.patches().len() >= 4
    })
    .await
    .expect("clean stop");
    let calls = service.calls();
    assert_eq!(
        calls,
        vec![
            "create pod-a",
            "poll s1 last=0 max=10",
            "ack s1 5",
            "acquire s1 [11, 12]",
            "poll s1 last=5 max=10",
            "delete-session s1",
        ]
    );
    assert_eq!(
        patcher.patches(),
        // The count of a batch goes before its runners' job patches.
        vec![
            ers(0, Some(2), ""),
            ers(1, Some(4), ""),
            job_patch(9, "r-1"),
            ers(2, Some(4), ""),
        ]
    );
}

/// A batch that leaves the count as the set has it (JobStarted only) patches the runner's status
/// and not the set; the next empty poll patches the set under the next `patchID`.
#[tokio::test]
async fn a_batch_without_a_new_count_does_not_patch_the_set() {
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 1)));
        s.poll
            .push_back(Ok(Some(message(5, 2, vec![available(11)]))));
        s.poll
            .push_back(Ok(Some(message(6, 2, vec![started(11, "r-1")]))));
        s.poll.push_back(Ok(None));
    });
    let patcher = FakePatcher::default();
    run_until(service, patcher.clone(), settings(1, 10), |_, p| {
        p.patches().len() >= 4
    })
    .await
    .expect("clean stop");
    assert_eq!(
        patcher.patches(),
        vec![
            ers(0, Some(2), ""),
            ers(1, Some(3), ""),
            job_patch(11, "r-1"),
            ers(2, Some(3), ""),
        ]
    );
}

/// An idle listener's first batch of a burst (JobAvailable only, nothing assigned yet) would
/// repeat the forced patch of its session start; it writes only the count of the next batch.
#[tokio::test]
async fn the_first_batch_of_a_burst_does_not_repeat_the_forced_patch() {
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 0)));
        s.poll
            .push_back(Ok(Some(message(5, 0, vec![available(11), available(12)]))));
        s.poll.push_back(Ok(Some(message(6, 2, vec![]))));
    });
    let patcher = FakePatcher::default();
    run_until(service.clone(), patcher.clone(), settings(0, 10), |s, _| {
        s.calls().contains(&"poll s1 last=6 max=10".to_owned())
    })
    .await
    .expect("clean stop");
    assert_eq!(
        patcher.patches(),
        vec![ers(0, None, ""), ers(1, Some(2), "")]
    );
}

/// New bounds end the long poll, scale at once with the last statistics in a forced patch (idle
/// runners above a lower bound go at once), and the next poll carries the new maximum.
#[tokio::test]
async fn new_bounds_scale_at_once_and_reach_the_next_poll() {
    let service = FakeService::with(|s| s.create.push_back(Ok(session("s1", 2))));
    let patcher = FakePatcher::default();
    let (bounds, updates) = tokio::sync::watch::channel(Bounds::new(0, 10).expect("bounds"));
    let shutdown = CancellationToken::new();
    let listener = Listener::new(
        service.clone(),
        patcher.clone(),
        settings(0, 10),
        None,
        Health::new(Duration::from_secs(60)),
    )
    .follow_bounds(updates);
    let task = tokio::spawn(listener.run(shutdown.clone()));
    let until = async |what: &str, done: &dyn Fn() -> bool| {
        for _ in 0..2000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    };
    until("the first poll", &|| {
        service.0.lock().expect("lock").waiting == 1
    })
    .await;
    service.0.lock().expect("lock").poll.push_back(Ok(None));
    bounds
        .send(Bounds::new(3, 4).expect("bounds"))
        .expect("the listener receives");
    until("a poll with the new maximum", &|| {
        service.calls().iter().any(|c| c == "poll s1 last=0 max=4")
    })
    .await;
    shutdown.cancel();
    task.await.expect("listener task").expect("clean stop");
    assert_eq!(
        patcher.patches()[..2],
        [
            ers(0, Some(2), ""),
            // min 3 + 2 assigned, at most 4
            ers(0, Some(4), ""),
        ]
    );
    assert_eq!(
        service.calls()[..2],
        ["create pod-a", "poll s1 last=0 max=4"],
        "the poll cut short is not counted (its reply was never scripted)"
    );
}

/// The patch that reflects a completion lists its runner, so that the set does not replace a
/// runner that is gone before this patch arrives (docs/architecture.md#the-patchid-protocol).
#[tokio::test]
async fn a_completion_is_listed_with_the_count_that_reflects_it() {
    let job = JobInfo {
        runner_request_id: 9,
        job_id: "j9".into(),
        ..Default::default()
    };
    let started = JobMessage::Started(JobStarted {
        job: job.clone(),
        runner_id: 3,
        runner_name: "r-1".into(),
    });
    let completed = JobMessage::Completed(JobCompleted {
        job,
        result: "succeeded".into(),
        runner_id: 3,
        runner_name: "r-1".into(),
    });
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 0)));
        s.poll.push_back(Ok(Some(message(5, 1, vec![started]))));
        s.poll.push_back(Ok(Some(message(6, 0, vec![completed]))));
        s.poll.push_back(Ok(None));
    });
    let patcher = FakePatcher::default();
    run_until(service, patcher.clone(), settings(0, 10), |_, p| {
        p.patches().iter().filter(|p| p.starts_with("ers")).count() >= 3
    })
    .await
    .expect("clean stop");
    let sets: Vec<String> = patcher
        .patches()
        .into_iter()
        .filter(|p| p.starts_with("ers"))
        .collect();
    assert_eq!(
        sets[..3],
        [ers(0, None, ""), ers(1, Some(1), ""), ers(2, None, "r-1")]
    );
}

#[tokio::test]
async fn session_conflict_is_retried_then_succeeds() {
    let service = FakeService::with(|s| {
        for _ in 0..3 {
            s.create.push_back(Err(Error::SessionConflict(info("409"))));
        }
        s.create.push_back(Ok(session("s2", 0)));
    });
    let patcher = FakePatcher::default();
    run_until(service.clone(), patcher.clone(), settings(0, 5), |_, p| {
        !p.patches().is_empty()
    })
    .await
    .expect("clean stop");
    assert_eq!(
        service
            .calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count(),
        4
    );
    assert_eq!(patcher.patches(), vec![ers(0, None, "")]);
}

#[tokio::test]
async fn session_conflict_gives_up_after_the_bound() {
    let service = FakeService::with(|s| {
        for _ in 0..10_000 {
            s.create.push_back(Err(Error::SessionConflict(info("409"))));
        }
    });
    let result = run_until(service, FakePatcher::default(), settings(0, 5), |_, _| {
        false
    })
    .await;
    match result {
        Err(ListenerError::SessionConflict { scale_set_id, .. }) => assert_eq!(scale_set_id, 7),
        other => panic!("expected a session conflict error, got {other:?}"),
    }
}

#[tokio::test]
async fn dropped_session_is_recreated_and_expired_token_refreshed() {
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 0)));
        s.create.push_back(Ok(session("s2", 2)));
        s.poll.push_back(Err(Error::TokenExpired(info("401"))));
        s.poll.push_back(Err(Error::Server(info("503"))));
        s.poll.push_back(Err(Error::SessionNotFound(info("404"))));
        s.poll.push_back(Ok(None));
    });
    let patcher = FakePatcher::default();
    run_until(service.clone(), patcher.clone(), settings(0, 5), |s, _| {
        s.calls().iter().any(|c| c.starts_with("poll s2"))
    })
    .await
    .expect("clean stop");
    let calls = service.calls();
    assert_eq!(
        calls,
        vec![
            "create pod-a",
            "poll s1 last=0 max=5",
            "refresh s1",
            "poll s1 last=0 max=5",
            "poll s1 last=0 max=5",
            "create pod-a",
            "poll s2 last=0 max=5",
            "delete-session s2",
        ]
    );
    assert!(patcher.patches().contains(&ers(1, Some(2), "")));
}

#[tokio::test]
async fn permanent_auth_failure_exits_and_deletes_the_session() {
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 0)));
        for _ in 0..3 {
            s.poll
                .push_back(Err(Error::AuthFailed(info("403 bad credentials"))));
        }
    });
    let result = run_until(
        service.clone(),
        FakePatcher::default(),
        settings(0, 5),
        |_, _| false,
    )
    .await;
    assert!(
        matches!(result, Err(ListenerError::Unauthorized(_))),
        "{result:?}"
    );
    let calls = service.calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "reauthenticate").count(),
        2,
        "a fresh credential exchange before each retry: {calls:?}"
    );
    assert_eq!(calls.last().map(String::as_str), Some("delete-session s1"));
}

#[tokio::test]
async fn one_rejected_admin_token_is_survived() {
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 0)));
        s.poll.push_back(Err(Error::AuthFailed(info("401"))));
        s.poll.push_back(Err(Error::AuthFailed(info("401"))));
        s.poll.push_back(Ok(None));
        s.poll.push_back(Err(Error::AuthFailed(info("401"))));
        s.poll.push_back(Err(Error::AuthFailed(info("401"))));
        s.poll.push_back(Ok(Some(message(1, 1, Vec::new()))));
    });
    let patcher = FakePatcher::default();
    run_until(service.clone(), patcher.clone(), settings(0, 5), |_, p| {
        p.patches().len() >= 3
    })
    .await
    .expect("two rejections in a row are retried, and a completed poll resets the count");
}

#[tokio::test]
async fn unreadable_parts_are_acked_and_statistics_still_scale() {
    let mut broken = message(3, 2, Vec::new());
    broken.skipped.push("job message #0: invalid type".into());
    let service = FakeService::with(|s| {
        s.create.push_back(Ok(session("s1", 0)));
        s.poll.push_back(Err(Error::BadResponse(info("not JSON"))));
        s.poll.push_back(Ok(Some(broken)));
    });
    let patcher = FakePatcher::default();
    run_until(service.clone(), patcher.clone(), settings(0, 5), |_, p| {
        p.patches().len() >= 2
    })
    .await
    .expect("clean stop");
    assert!(service.calls().contains(&"ack s1 3".to_string()));
    assert_eq!(patcher.patches()[1], ers(1, Some(2), ""));
}
