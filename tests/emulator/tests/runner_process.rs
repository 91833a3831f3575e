//! The `emulator-runner` binary and `RunnerClient`: a simulated runner process takes its JIT
//! config from `ACTIONS_RUNNER_INPUT_JITCONFIG`, runs its job and exits 0.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;

use actions_emulator::{Emulator, EmulatorConfig, JobPhase, JobResult, JobSpec, RunnerClient};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Admin, Client, WAIT};
use tokio::io::AsyncReadExt;

async fn prepared(emu: &Emulator, client: &Client, name: &str) -> (i64, String) {
    let admin = Admin::login(emu, client).await;
    let ss = admin.create_scale_set(name, &[name]).await;
    let session = admin.create_session(ss, "l").await;
    let job = emu.queue_job(JobSpec {
        duration: std::time::Duration::from_millis(50),
        result: JobResult::Failed,
        ..JobSpec::with_labels([name])
    });
    session.next_message(client, 0).await;
    session.acquire(client, &admin.s, &format!("[{job}]")).await;
    let (_, jit) = admin.jit(ss, &format!("{name}-runner")).await;
    (job, jit)
}

async fn run_runner(jit: &str, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_emulator-runner"))
        .env("ACTIONS_RUNNER_INPUT_JITCONFIG", jit)
        .args(extra)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    (status, out)
}

#[tokio::test]
async fn runner_process_runs_its_job_over_http() {
    let emu = support::emulator().await;
    let (job, jit) = prepared(&emu, &Client::http(), "proc").await;
    let (status, out) = run_runner(&jit, &[]).await;
    assert!(status.success(), "{status:?} {out}");
    assert!(out.contains(r#""event":"connected""#), "{out}");
    assert!(out.contains(r#""result":"failed""#), "{out}");
    let snap = emu.snapshot();
    let rec = snap.job(job).unwrap();
    assert_eq!(rec.phase, JobPhase::Completed);
    assert_eq!(rec.result, Some(JobResult::Failed));
    assert!(snap.runners.is_empty(), "ephemeral runner deregistered");
    // the JIT config is spent
    let (status, _) = run_runner(&jit, &[]).await;
    assert_eq!(status.code(), Some(1));
}

#[tokio::test]
async fn runner_process_over_https_with_the_ca_and_a_result_override() {
    let emu = Emulator::start_tls(EmulatorConfig::default())
        .await
        .unwrap();
    let ca = emu.ca_pem().unwrap().to_owned();
    let (job, jit) = prepared(&emu, &Client::https(&ca), "tlsproc").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let (status, out) = run_runner(
        &jit,
        &[
            "--ca-file",
            ca_file.to_str().unwrap(),
            "--result",
            "succeeded",
        ],
    )
    .await;
    assert!(status.success(), "{status:?} {out}");
    assert_eq!(
        emu.snapshot().job(job).unwrap().result,
        Some(JobResult::Succeeded)
    );
}

#[tokio::test]
async fn runner_process_without_a_job_stops_on_sigterm_and_times_out() {
    let emu = support::emulator().await;
    let admin = Admin::login(&emu, &Client::http()).await;
    let ss = admin.create_scale_set("idle", &["idle"]).await;
    let (rid, jit) = admin.jit(ss, "idle-runner").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_emulator-runner"))
        .env("ACTIONS_RUNNER_INPUT_JITCONFIG", &jit)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    emu.wait_until(WAIT, |s| {
        s.runners
            .iter()
            .any(|r| r.id == rid && r.connected_at.is_some())
    })
    .await
    .unwrap();
    kill(
        Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let snap = emu.snapshot();
    let r = snap.runners.iter().find(|r| r.id == rid).unwrap();
    assert!(r.connected_at.is_none(), "disconnected on SIGTERM");

    let (_, jit2) = admin.jit(ss, "idle-runner-2").await;
    let (status, out) = run_runner(&jit2, &["--job-timeout-secs", "1"]).await;
    assert_eq!(status.code(), Some(3), "{out}");
    assert!(out.contains("no-job"));
}

#[tokio::test]
async fn runner_client_in_process() {
    let emu = support::emulator().await;
    let (job, jit) = prepared(&emu, &Client::http(), "rc").await;
    let client = RunnerClient::for_jit_config(&jit, None).unwrap();
    let conn = client.connect(&jit).await.unwrap();
    let got = client.job(&conn, WAIT).await.unwrap().unwrap();
    assert_eq!(got.runner_request_id, job);
    client.started(&conn).await.unwrap();
    client
        .completed(&conn, Some(JobResult::Canceled))
        .await
        .unwrap();
    assert_eq!(
        emu.snapshot().job(job).unwrap().result,
        Some(JobResult::Canceled)
    );
    let err = client.started(&conn).await.unwrap_err();
    assert!(format!("{err:#}").contains("404"), "{err:#}");
    assert!(RunnerClient::new("https://127.0.0.1:1/_runner/", None).is_err());
    assert!(RunnerClient::for_jit_config("garbage", None).is_err());
}

#[tokio::test]
async fn deprecated_runner_version_exits_7_when_opted_in() {
    let emu = support::emulator().await;
    emu.update_config(|c| c.runner_version_deprecated = true);
    let admin = Admin::login(&emu, &Client::http()).await;
    let ss = admin.create_scale_set("old", &["old"]).await;
    let (rid, jit) = admin.jit(ss, "old-1").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_emulator-runner"))
        .env("ACTIONS_RUNNER_INPUT_JITCONFIG", &jit)
        .env("ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let r = emu.snapshot();
    let runner = r.runners.iter().find(|r| r.id == rid).unwrap();
    assert!(
        runner.connected_at.is_none(),
        "a deprecated runner never comes online"
    );
    let (_, jit2) = admin.jit(ss, "old-2").await;
    let (status, out) = run_runner(&jit2, &[]).await;
    assert_eq!(status.code(), Some(1), "without the opt-in: {out}");
}
