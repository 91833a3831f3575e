//! A simulated ephemeral runner: presents its JIT config to the emulator's runner API, waits for
//! its job, reports start, "runs" it for the job's duration, reports completion and exits 0.
//! For runner pods of the node simulator and the demo.

use std::path::PathBuf;
use std::time::Duration;

use actions_emulator::{JobResult, RunnerClient};
use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// Run one job as an emulated ephemeral runner.
#[derive(Parser, Debug)]
#[command(name = "emulator-runner", version)]
struct Args {
    /// The encodedJITConfig (also `ACTIONS_RUNNER_INPUT_JITCONFIG`, as real runners read it).
    #[arg(long, env = "ACTIONS_RUNNER_INPUT_JITCONFIG", hide_env_values = true)]
    jitconfig: String,
    /// CA certificate (PEM file) of an HTTPS emulator.
    #[arg(long, env = "ACTIONS_EMULATOR_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Override the job's result.
    #[arg(long, value_parser = parse_result)]
    result: Option<JobResult>,
    /// Give up (exit 3) when no job arrives within this many seconds; 0 = wait forever.
    #[arg(long, default_value_t = 0)]
    job_timeout_secs: u64,
}

fn parse_result(s: &str) -> Result<JobResult, String> {
    match s {
        "succeeded" => Ok(JobResult::Succeeded),
        "failed" => Ok(JobResult::Failed),
        "canceled" => Ok(JobResult::Canceled),
        other => Err(format!("{other:?}: use succeeded, failed or canceled")),
    }
}

/// How long one job poll may wait: 30 s, or what is left before the deadline.
fn poll_wait(deadline: Option<tokio::time::Instant>) -> Duration {
    let max = Duration::from_secs(30);
    deadline.map_or(max, |d| {
        d.saturating_duration_since(tokio::time::Instant::now())
            .min(max)
    })
}

fn event(what: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({"event": what});
    if let (Some(o), serde_json::Value::Object(f)) = (line.as_object_mut(), fields) {
        o.extend(f);
    }
    println!("{line}");
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("emulator-runner: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<u8> {
    let ca = match &args.ca_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the CA file {}", p.display()))?,
        ),
        None => None,
    };
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let client = RunnerClient::for_jit_config(&args.jitconfig, ca.as_deref())?;
    let conn = client.connect(&args.jitconfig).await?;
    if conn.version_deprecated {
        event(
            "deprecated",
            serde_json::json!({"runnerId": conn.runner_id}),
        );
        let opted_in = std::env::var("ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE")
            .is_ok_and(|v| v == "1");
        return Ok(if opted_in { 7 } else { 1 });
    }
    event(
        "connected",
        serde_json::json!({"runnerId": conn.runner_id, "runnerName": conn.runner_name}),
    );
    let deadline = (args.job_timeout_secs > 0)
        .then(|| tokio::time::Instant::now() + Duration::from_secs(args.job_timeout_secs));
    let job = loop {
        tokio::select! {
            _ = term.recv() => { client.disconnect(&conn).await?; event("stopped", serde_json::json!({})); return Ok(0); }
            _ = int.recv() => { client.disconnect(&conn).await?; event("stopped", serde_json::json!({})); return Ok(0); }
            j = client.job(&conn, poll_wait(deadline)) => {
                if let Some(job) = j? {
                    break job;
                }
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            client.disconnect(&conn).await?;
            event("no-job", serde_json::json!({}));
            return Ok(3);
        }
    };
    event(
        "job",
        serde_json::json!({"runnerRequestId": job.runner_request_id, "durationMs": job.duration.as_millis()}),
    );
    client.started(&conn).await?;
    tokio::select! {
        _ = term.recv() => { client.disconnect(&conn).await?; event("stopped", serde_json::json!({})); return Ok(0); }
        _ = int.recv() => { client.disconnect(&conn).await?; event("stopped", serde_json::json!({})); return Ok(0); }
        () = tokio::time::sleep(job.duration) => {}
    }
    client.completed(&conn, args.result).await?;
    event(
        "completed",
        serde_json::json!({"result": args.result.unwrap_or(job.result)}),
    );
    Ok(0)
}
