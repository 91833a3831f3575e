//! Runner pods: the simulated runner reads its JIT config from the pod's Secret, presents it to
//! the Actions-service emulator's runner side over HTTP, takes the job the scale set acquired,
//! runs it for the job's duration, reports the result and exits 0; a used JIT config makes it
//! exit 1; deleting an idle runner pod disconnects it, deleting a busy one cancels its job.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use actions_client::{
    ActionsClient, Credentials, DEFAULT_RUNNER_GROUP_ID, JitSetting, JobMessage, MessageSession,
    NewRunnerScaleSet,
};
use actions_emulator::{Emulator, EmulatorConfig, JobPhase, JobResult, JobSpec};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use secrecy::ExposeSecret;
use serde_json::json;
use support::{container, create, phase, pod, simulator, wait_pod};
use testbed::ControlPlane;

const LABEL: &str = "nodesim-linux";

fn runner_pod(node: &str, name: &str) -> Pod {
    pod(
        node,
        name,
        json!({
            "containers": [{
                "name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
                "command": ["/home/runner/run.sh"],
                "env": [{ "name": "ACTIONS_RUNNER_INPUT_JITCONFIG",
                          "valueFrom": { "secretKeyRef": { "name": name, "key": "jitToken" } } }],
            }],
        }),
    )
}

async fn jit_secret(secrets: &Api<Secret>, name: &str, jit: &str) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": name }, "stringData": { "jitToken": jit },
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// Acquires job `id` for the scale set as a listener would.
async fn acquire(
    client: &ActionsClient,
    scale_set_id: i64,
    session: &MessageSession,
    id: i64,
) -> anyhow::Result<()> {
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} was never offered"
        );
        let Some(message) = client.get_message(session, last, 10).await? else {
            continue;
        };
        last = message.message_id;
        client.delete_message(session, message.message_id).await?;
        let offered = message
            .jobs
            .iter()
            .any(|j| matches!(j, JobMessage::Available(a) if a.job.runner_request_id == id));
        if offered {
            let acquired = client.acquire_jobs(scale_set_id, session, &[id]).await?;
            assert_eq!(acquired, vec![id]);
            return Ok(());
        }
    }
}

#[tokio::test]
async fn a_runner_pod_takes_its_job_runs_it_and_exits_zero() -> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-runner").await?;
    let client = cp.client();
    let sim = simulator(cp, ns.name(), |_| {}).await?;
    let node = sim.node_names()[0].clone();
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    emu.update_config(|c| c.long_poll_hold = Duration::from_secs(1));
    let actions =
        ActionsClient::builder(emu.org_url("octo-org"), Credentials::pat(emu.pat())?).build()?;
    let set = actions
        .create_runner_scale_set(
            &NewRunnerScaleSet::new("nodesim-set", DEFAULT_RUNNER_GROUP_ID).with_labels([LABEL]),
        )
        .await?;
    actions.set_scale_set_id(set.id);
    let jit = actions
        .generate_jit_config(
            set.id,
            &JitSetting {
                name: "runner-1".into(),
                work_folder: String::new(),
            },
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    jit_secret(&secrets, "runner-1", jit.encoded_jit_config.expose_secret()).await?;
    create(&pods, &runner_pod(&node, "runner-1")).await?;

    emu.wait_until(support::WAIT, |s| {
        s.runners
            .iter()
            .any(|r| r.name == "runner-1" && r.connected_at.is_some())
    })
    .await?;
    let running = wait_pod(&pods, "runner-1", "Running", |p| {
        p.filter(|p| phase(p) == "Running").cloned()
    })
    .await?;
    assert_eq!(container(&running, "runner")["ready"], json!(true));

    let session = actions
        .create_message_session(set.id, "nodesim-test")
        .await?;
    let job = emu.queue_job(JobSpec {
        labels: vec![LABEL.into()],
        duration: Duration::from_secs(2),
        result: JobResult::Failed,
        ..JobSpec::default()
    });
    acquire(&actions, set.id, &session, job).await?;

    let done = wait_pod(&pods, "runner-1", "Succeeded", |p| {
        p.filter(|p| phase(p) == "Succeeded").cloned()
    })
    .await?;
    let t = &container(&done, "runner")["state"]["terminated"];
    assert_eq!(
        t["exitCode"],
        json!(0),
        "a runner exits 0 whatever its job's result"
    );
    assert_eq!(t["reason"], json!("Completed"));
    let snap = emu.snapshot();
    let record = snap.job(job).unwrap();
    assert_eq!(record.phase, JobPhase::Completed);
    assert_eq!(record.result, Some(JobResult::Failed));
    assert_eq!(record.runner_name.as_deref(), Some("runner-1"));
    assert!(record.started_at.is_some());
    assert!(
        !snap.runners.iter().any(|r| r.name == "runner-1"),
        "the ephemeral runner is deregistered"
    );

    // The same JIT config again: refused, so the runner exits 1 and the pod fails.
    jit_secret(
        &secrets,
        "runner-again",
        jit.encoded_jit_config.expose_secret(),
    )
    .await?;
    create(&pods, &runner_pod(&node, "runner-again")).await?;
    let failed = wait_pod(&pods, "runner-again", "Failed", |p| {
        p.filter(|p| phase(p) == "Failed").cloned()
    })
    .await?;
    assert_eq!(
        container(&failed, "runner")["state"]["terminated"]["exitCode"],
        json!(1)
    );

    // An idle runner whose pod is deleted disconnects and its pod is removed.
    let idle = actions
        .generate_jit_config(
            set.id,
            &JitSetting {
                name: "runner-2".into(),
                work_folder: String::new(),
            },
        )
        .await?;
    jit_secret(
        &secrets,
        "runner-2",
        idle.encoded_jit_config.expose_secret(),
    )
    .await?;
    create(&pods, &runner_pod(&node, "runner-2")).await?;
    emu.wait_until(support::WAIT, |s| {
        s.runners
            .iter()
            .any(|r| r.name == "runner-2" && r.connected_at.is_some())
    })
    .await?;
    pods.delete("runner-2", &DeleteParams::default()).await?;
    wait_pod(&pods, "runner-2", "removed", |p| p.is_none().then_some(())).await?;
    emu.wait_until(support::WAIT, |s| {
        s.runners
            .iter()
            .any(|r| r.name == "runner-2" && r.connected_at.is_none())
    })
    .await?;

    // A busy runner whose pod is deleted reports its job canceled (SIGTERM) and exits.
    let busy = actions
        .generate_jit_config(
            set.id,
            &JitSetting {
                name: "runner-3".into(),
                work_folder: String::new(),
            },
        )
        .await?;
    jit_secret(
        &secrets,
        "runner-3",
        busy.encoded_jit_config.expose_secret(),
    )
    .await?;
    create(&pods, &runner_pod(&node, "runner-3")).await?;
    let long = emu.queue_job(JobSpec {
        labels: vec![LABEL.into()],
        duration: Duration::from_secs(600),
        ..JobSpec::default()
    });
    acquire(&actions, set.id, &session, long).await?;
    emu.wait_until(support::WAIT, |s| {
        s.job(long).is_some_and(|j| j.phase == JobPhase::Running)
    })
    .await?;
    pods.delete("runner-3", &DeleteParams::default()).await?;
    wait_pod(&pods, "runner-3", "removed", |p| p.is_none().then_some(())).await?;
    let canceled = emu
        .wait_until(support::WAIT, |s| {
            s.job(long).is_some_and(|j| j.phase == JobPhase::Completed)
        })
        .await?;
    assert_eq!(
        canceled.job(long).unwrap().result,
        Some(JobResult::Canceled)
    );

    actions
        .delete_message_session(set.id, &session.session_id)
        .await?;
    sim.shutdown().await;
    Ok(())
}
