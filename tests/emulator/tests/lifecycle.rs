//! A job's whole life over raw HTTP: queue → JobAvailable → acquire → JobAssigned → JIT →
//! runner connects (HTTP runner API) → JobStarted → JobCompleted → runner removed, with the
//! statistics a listener sees at each step.
#![allow(clippy::unwrap_used)]

mod support;

use actions_emulator::{Emulator, JobPhase, JobSpec};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use support::{Admin, Client, Session, WAIT, emulator};

fn stat(s: &Value, key: &str) -> i64 {
    s[key]
        .as_i64()
        .unwrap_or_else(|| panic!("statistics lack {key}: {s}"))
}

fn assert_stats(s: &Value, expect: [i64; 7]) {
    let keys = [
        "totalAvailableJobs",
        "totalAcquiredJobs",
        "totalAssignedJobs",
        "totalRunningJobs",
        "totalRegisteredRunners",
        "totalBusyRunners",
        "totalIdleRunners",
    ];
    let got: Vec<i64> = keys.iter().map(|k| stat(s, k)).collect();
    assert_eq!(got, expect.to_vec(), "statistics {s}");
}

#[tokio::test]
async fn job_lifecycle_over_http() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin
        .create_scale_set("linux-x64", &["linux-x64", "gpu"])
        .await;
    let session = admin.create_session(ss, "listener-0").await;
    assert_stats(&session.json["statistics"], [0, 0, 0, 0, 0, 0, 0]);

    // queued through the control API over HTTP
    let r = http
        .send(
            Method::POST,
            &format!("{}/_emulator/jobs", emu.url()),
            &[("content-type", "application/json")],
            json!({"labels": ["gpu"], "durationMs": 10, "result": "failed"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let job_id = r.json()["id"].as_i64().unwrap();

    // JobAvailable, counted as available
    let (m1, items, stats) = session.next_message(&http, 0).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["messageType"], "JobAvailable");
    assert_eq!(items[0]["runnerRequestId"], job_id);
    assert_eq!(items[0]["requestLabels"], json!(["gpu"]));
    assert!(items[0]["acquireJobUrl"].is_string());
    assert_eq!(items[0]["runnerAssignTime"], "0001-01-01T00:00:00Z");
    assert_stats(&stats, [1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(session.delete_message(&http, m1).await.status, 204);

    // acquire: assigned (the default assign delay is zero)
    let r = session
        .acquire(&http, &admin.s, &format!("[{job_id}]"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"count": 1, "value": [job_id]}));
    let (m2, items, stats) = session.next_message(&http, m1).await;
    assert_eq!(items[0]["messageType"], "JobAssigned");
    assert_ne!(items[0]["scaleSetAssignTime"], "0001-01-01T00:00:00Z");
    assert_stats(&stats, [0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(session.delete_message(&http, m2).await.status, 204);

    // JIT: a registered, idle runner
    let (runner_id, jit) = admin.jit(ss, "runner-1a2b3c4d").await;
    let snap = emu.snapshot();
    assert_eq!(snap.scale_set(ss).unwrap().statistics.total_idle_runners, 1);

    // the runner connects with its JIT config over HTTP and receives the job
    let connect = |jit: String| {
        let http = http.clone();
        let url = format!("{}/_runner/connect", emu.url());
        async move {
            http.send(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                json!({"encodedJITConfig": jit}).to_string(),
            )
            .await
        }
    };
    let r = connect(jit.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let conn = r.json();
    assert_eq!(conn["runnerId"], runner_id);
    assert_eq!(conn["scaleSetId"], ss);
    let token = conn["runnerToken"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    // a JIT config works once
    let again = connect(jit).await;
    assert_eq!(again.status, 401, "{}", again.text());

    let r = http
        .send(
            Method::GET,
            &format!("{}/_runner/job?waitMs=30000", emu.url()),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let job = r.json();
    assert_eq!(job["runnerRequestId"], job_id);
    assert_eq!(job["result"], "failed");
    assert_eq!(job["durationMs"], 10);

    // a busy runner cannot be removed
    let r = admin
        .call(
            Method::DELETE,
            &format!("_apis/distributedtask/pools/0/agents/{runner_id}"),
            "",
        )
        .await;
    r.assert_vss(400, "JobStillRunningException");

    // started
    let r = http
        .send(
            Method::POST,
            &format!("{}/_runner/started", emu.url()),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let (m3, items, stats) = session.next_message(&http, m2).await;
    assert_eq!(items[0]["messageType"], "JobStarted");
    assert_eq!(items[0]["runnerId"], runner_id);
    assert_eq!(items[0]["runnerName"], "runner-1a2b3c4d");
    assert_stats(&stats, [0, 0, 1, 1, 1, 1, 0]);
    assert_eq!(session.delete_message(&http, m3).await.status, 204);

    // completed with the job's configured result; the ephemeral runner is gone
    let r = http
        .send(
            Method::POST,
            &format!("{}/_runner/completed", emu.url()),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let (m4, items, stats) = session.next_message(&http, m3).await;
    assert_eq!(items[0]["messageType"], "JobCompleted");
    assert_eq!(items[0]["result"], "failed");
    assert_eq!(items[0]["runnerId"], runner_id);
    assert_ne!(items[0]["finishTime"], "0001-01-01T00:00:00Z");
    assert_stats(&stats, [0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(session.delete_message(&http, m4).await.status, 204);

    let r = admin
        .call(
            Method::GET,
            &format!("_apis/distributedtask/pools/0/agents/{runner_id}"),
            "",
        )
        .await;
    r.assert_vss(404, "AgentNotFoundException");
    let r = admin
        .call(
            Method::DELETE,
            &format!("_apis/distributedtask/pools/0/agents/{runner_id}"),
            "",
        )
        .await;
    r.assert_empty(204);

    // the full record has every timestamp
    let snap = emu.snapshot();
    let record = snap.job(job_id).unwrap();
    assert_eq!(record.phase, JobPhase::Completed);
    assert!(record.available_at.is_some() && record.acquired_at.is_some());
    assert!(record.assigned_at.is_some() && record.runner_assigned_at.is_some());
    assert!(record.started_at.is_some() && record.completed_at.is_some());
    assert!(snap.runners.is_empty());

    // and the runner side is closed for that runner
    let r = http
        .send(
            Method::GET,
            &format!("{}/_runner/job", emu.url()),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
}

/// Queues a job for the set `lib-set`, waits until the service offers it, and acquires it.
async fn queue_and_acquire(emu: &Emulator, session: &Session, http: &Client, admin: &Admin) -> i64 {
    let job = emu.queue_job(JobSpec::with_labels(["lib-set"]));
    emu.wait_until(WAIT, |s| {
        s.job(job).is_some_and(|j| j.phase == JobPhase::Available)
    })
    .await
    .unwrap();
    session.acquire(http, &admin.s, &format!("[{job}]")).await;
    job
}

#[tokio::test]
async fn library_runner_api_and_wait_until() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("lib-set", &["lib-set"]).await;
    let session = admin.create_session(ss, "listener-lib").await;
    let job_id = emu.queue_job(JobSpec::with_labels(["lib-set"]));
    let (m1, items, _) = session.next_message(&http, 0).await;
    assert_eq!(items[0]["runnerRequestId"], job_id);
    session
        .acquire(&http, &admin.s, &format!("[{job_id}]"))
        .await;
    let (_, jit) = admin.jit(ss, "lib-runner").await;

    let conn = emu.runner_connect(&jit).unwrap();
    let job = emu.runner_job(&conn, WAIT).await.unwrap().unwrap();
    assert_eq!(job.runner_request_id, job_id);
    emu.runner_started(&conn).unwrap();
    let short = std::time::Duration::from_millis(50);
    assert_eq!(
        emu.wait_jobs_completed(&[job_id, 999_999], short).await,
        Err(vec![(job_id, Some(JobPhase::Running)), (999_999, None)]),
        "the open jobs with their phase"
    );
    emu.runner_completed(&conn, Some(actions_emulator::JobResult::Canceled))
        .unwrap();
    let snap = emu
        .wait_until(WAIT, |s| {
            s.job(job_id)
                .is_some_and(|j| j.phase == JobPhase::Completed)
        })
        .await
        .unwrap();
    assert_eq!(
        snap.job(job_id).unwrap().result,
        Some(actions_emulator::JobResult::Canceled)
    );
    assert_eq!(emu.wait_jobs_completed(&[job_id], WAIT).await, Ok(()));
    assert!(emu.runner_connect(&jit).is_err(), "JIT config reused");
    let _ = m1;

    // a runner that waits before there is a job wakes when it gets one, not when its wait ends
    let (_, jit3) = admin.jit(ss, "lib-runner-3").await;
    let conn3 = emu.runner_connect(&jit3).unwrap();
    let woken = tokio::time::timeout(WAIT, emu.runner_job(&conn3, 10 * WAIT));
    let (got, job3) = tokio::join!(woken, queue_and_acquire(&emu, &session, &http, &admin));
    let got = got.expect("woken within WAIT").unwrap().unwrap();
    assert_eq!(got.runner_request_id, job3);
    emu.runner_completed(&conn3, None).unwrap();

    // a runner lost mid-job fails the job and stays registered (offline) until removed
    let job2 = queue_and_acquire(&emu, &session, &http, &admin).await;
    let (rid2, jit2) = admin.jit(ss, "lib-runner-2").await;
    let conn2 = emu.runner_connect(&jit2).unwrap();
    emu.runner_job(&conn2, WAIT).await.unwrap().unwrap();
    emu.runner_started(&conn2).unwrap();
    emu.runner_disconnect(&conn2).unwrap();
    let snap = emu.snapshot();
    let rec = snap.job(job2).unwrap();
    assert_eq!(rec.phase, JobPhase::Completed);
    assert_eq!(rec.result, Some(actions_emulator::JobResult::Failed));
    let runner = snap.runners.iter().find(|r| r.id == rid2).unwrap();
    assert!(runner.job.is_none() && runner.connected_at.is_none());
    assert!(
        emu.runner_started(&conn2).is_err(),
        "the runner token died with the runner"
    );
}

/// A detached emulator serves tests on other runtimes, one after another.
#[test]
fn detached_emulator_outlives_test_runtimes() {
    let emu =
        actions_emulator::Emulator::start_detached(actions_emulator::EmulatorConfig::default())
            .unwrap();
    for round in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let admin = Admin::login(&emu, &Client::http()).await;
            admin
                .create_scale_set(&format!("detached-{round}"), &["d"])
                .await;
        });
    }
    assert_eq!(emu.snapshot().scale_sets.len(), 2);
    drop(emu);
}

/// A runner killed mid-job (no completion ever) is declared lost after the job's duration plus
/// `lost_runner_timeout`: the job fails and the runner becomes removable.
#[tokio::test]
async fn a_silent_runner_is_declared_lost() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("lost", &["lost"]).await;
    let session = admin.create_session(ss, "l").await;
    let job = emu.queue_job(JobSpec::with_labels(["lost"]));
    session.next_message(&http, 0).await;
    session.acquire(&http, &admin.s, &format!("[{job}]")).await;
    let (rid, jit) = admin.jit(ss, "lost-runner").await;
    let conn = emu.runner_connect(&jit).unwrap();
    emu.runner_job(&conn, WAIT).await.unwrap().unwrap();
    emu.runner_started(&conn).unwrap();
    let remove = format!("_apis/distributedtask/pools/0/agents/{rid}");
    admin
        .call(Method::DELETE, &remove, "")
        .await
        .assert_vss(400, "JobStillRunningException");
    emu.advance_clock(std::time::Duration::from_secs(601 + 1));
    let snap = emu
        .wait_until(WAIT, |s| {
            s.job(job).is_some_and(|j| j.phase == JobPhase::Completed)
        })
        .await
        .unwrap();
    assert_eq!(
        snap.job(job).unwrap().result,
        Some(actions_emulator::JobResult::Failed)
    );
    admin
        .call(Method::DELETE, &remove, "")
        .await
        .assert_empty(204);
    assert!(emu.runner_completed(&conn, None).is_err());
}
