//! EphemeralRunner reconciler against a real kube-apiserver: JIT Secret and pod in one pass, status
//! mirrored from the pod, the retry budget, and removal from the service before the runner's
//! resources go (behaviours 13-15 of docs/architecture.md#integration-behaviours).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "reconciler_ers_support.rs"]
mod support;

use std::collections::BTreeSet;

use k8s_reconcilers::crd::EphemeralRunner;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use support::*;

async fn create_runner(
    h: &Harness,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<EphemeralRunner> {
    let er: EphemeralRunner = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunner",
        "metadata": {
            "name": name,
            "labels": {"from-runner": "yes"},
            "finalizers": [
                "ephemeralrunner.actions.github.com/finalizer",
                "ephemeralrunner.actions.github.com/runner-registration-finalizer"
            ]
        },
        "spec": spec
    }))?;
    Ok(h.runners().create(&PostParams::default(), &er).await?)
}

/// The runner's registration id once its pod (or its status) carries one.
async fn registered_id(h: &Harness, name: &str) -> anyhow::Result<i64> {
    eventually("the registration id", WAIT, || async {
        let er = h.runners().get(name).await?;
        let id = suites::registration_id(&h.pods(), &er).await?;
        Ok((id > 0).then_some(id))
    })
    .await
}

/// Waits up to `timeout` for the EphemeralRunner `name` to be gone from the API server.
async fn runner_gone(h: &Harness, name: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    eventually("the runner to be gone", timeout, || async {
        Ok(h.runners().get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// Waits for the runner's pod and JIT Secret to be gone (the garbage collector deletes them after
/// the runner).
async fn dependents_gone(h: &Harness, name: &str) -> anyhow::Result<()> {
    eventually(
        "the runner's pod and JIT Secret to be gone",
        WAIT,
        || async {
            let pod = h.pods().get_opt(name).await?;
            let secret = h.secrets().get_opt(name).await?;
            Ok((pod.is_none() && secret.is_none()).then_some(()))
        },
    )
    .await
}

async fn runner_with_pod(h: &Harness, name: &str) -> anyhow::Result<(EphemeralRunner, String)> {
    let uid = eventually("the runner pod", WAIT, || async {
        Ok(h.pods().get_opt(name).await?.and_then(|p| p.metadata.uid))
    })
    .await?;
    Ok((h.runners().get(name).await?, uid))
}

#[tokio::test]
async fn creates_secret_and_pod_with_jit_env_and_mirrors_pod_status() -> anyhow::Result<()> {
    let h = Harness::start("er-create", 5).await?;
    create_runner(&h, "r-create", h.runner_spec()).await?;
    let (er, _) = runner_with_pod(&h, "r-create").await?;
    let runner_id = registered_id(&h, "r-create").await?;
    assert_eq!(h.service.runners().get("r-create"), Some(&runner_id));

    let secret = h.secrets().get("r-create").await?;
    let data = secret.data.clone().unwrap();
    let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["jitToken", "runnerId", "runnerName", "scaleSetId"])
    );
    assert_eq!(
        String::from_utf8_lossy(&data["runnerId"].0),
        runner_id.to_string()
    );
    assert_eq!(
        String::from_utf8_lossy(&data["scaleSetId"].0),
        SCALE_SET_ID.to_string()
    );
    assert_eq!(secret.owner_references()[0].uid, er.uid().unwrap());

    let pod = h.pods().get("r-create").await?;
    assert_eq!(pod.owner_references()[0].uid, er.uid().unwrap());
    let labels = pod.labels();
    assert_eq!(
        labels.get("actions-ephemeral-runner").map(String::as_str),
        Some("True")
    );
    assert_eq!(labels.get("from-template").map(String::as_str), Some("yes"));
    assert_eq!(labels.get("from-runner").map(String::as_str), Some("yes"));
    let runner = &pod.spec.clone().unwrap().containers[0];
    let env = runner.env.clone().unwrap();
    let jit = env
        .iter()
        .find(|e| e.name == "ACTIONS_RUNNER_INPUT_JITCONFIG")
        .expect("JIT env");
    let key = jit
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.clone())
        .expect("secretKeyRef");
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("r-create", "jitToken")
    );
    assert!(
        env.iter()
            .any(|e| e.name == "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE")
    );

    // No runner container status yet: no status is written, the pod carries the registration.
    let status = h
        .runners()
        .get("r-create")
        .await?
        .status
        .unwrap_or_default();
    assert!(
        status.phase.is_empty() && status.runner_id == 0,
        "{status:?}"
    );
    h.set_pod_status("r-create", running_status()).await?;
    // One write: phase, ready and the registration.
    eventually("phase Running and ready", WAIT, || async {
        let s = h
            .runners()
            .get("r-create")
            .await?
            .status
            .unwrap_or_default();
        let recorded = (s.runner_id, s.runner_name.as_str()) == (runner_id, "r-create");
        Ok((s.phase == "Running" && s.ready && recorded).then_some(()))
    })
    .await?;

    // A pod-level Succeeded without a terminated runner container does not change the phase.
    h.set_pod_status("r-create", json!({"phase": "Succeeded"}))
        .await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        h.runners().get("r-create").await?.status.unwrap().phase,
        "Running"
    );
    assert_eq!(h.service.runners().len(), 1, "exactly one registration");
    Ok(())
}

#[tokio::test]
async fn runner_failures_are_retried_with_fresh_registrations_until_the_budget_is_spent()
-> anyhow::Result<()> {
    let h = Harness::start("er-retry", 2).await?;
    create_runner(&h, "r-retry", h.runner_spec()).await?;
    let mut seen_pods = BTreeSet::new();
    let mut seen_ids = BTreeSet::new();
    for attempt in 0..3u32 {
        let (id, uid, pod) = eventually("a new runner pod", WAIT, || async {
            let pod = h.pods().get_opt("r-retry").await?;
            let er = h.runners().get("r-retry").await?;
            let id = suites::registration_id(&h.pods(), &er).await?;
            Ok(pod
                .filter(|p| {
                    p.metadata
                        .uid
                        .as_ref()
                        .is_some_and(|u| !seen_pods.contains(u))
                })
                .filter(|_| id > 0)
                .map(|p| (id, p.metadata.uid.clone().unwrap_or_default(), p)))
        })
        .await?;
        let runner = pod.spec.unwrap_or_default().containers.remove(0);
        assert_eq!(
            (
                runner.image.as_deref(),
                runner.command,
                pod.metadata.labels.unwrap_or_default().get("from-template")
            ),
            (
                Some("ghcr.io/actions/actions-runner:latest"),
                Some(vec!["/home/runner/run.sh".to_owned()]),
                Some(&"yes".to_owned())
            ),
            "every pod is built from the whole template"
        );
        seen_pods.insert(uid.clone());
        let er = h.runners().get("r-retry").await?;
        let status = er.status.unwrap_or_default();
        assert_eq!(
            status.failures.len(),
            attempt as usize,
            "one charged failure per failed pod"
        );
        assert!(seen_ids.insert(id), "a used JIT config is never reused");
        // The runner ran (its status says Running) and exited non-zero.
        h.set_pod_status("r-retry", running_status()).await?;
        eventually("the runner Running", WAIT, || async {
            let er = h.runners().get("r-retry").await?;
            Ok((er.status.unwrap_or_default().phase == "Running").then_some(()))
        })
        .await?;
        h.set_pod_status("r-retry", exited_status(1)).await?;
    }
    // The third failure exceeds the budget of 2: the runner is deleted and unregistered.
    runner_gone(&h, "r-retry", WAIT).await?;
    eventually("pod and Secret to be gone", WAIT, || async {
        let pod = h.pods().get_opt("r-retry").await?;
        let secret = h.secrets().get_opt("r-retry").await?;
        Ok((pod.is_none() && secret.is_none()).then_some(()))
    })
    .await?;
    assert!(
        h.service.runners().is_empty(),
        "no registration left: {:?}",
        h.service.runners()
    );
    let removed: BTreeSet<i64> = h.service.removed().into_iter().collect();
    assert_eq!(removed, seen_ids, "every registration was removed");
    Ok(())
}

#[tokio::test]
async fn eviction_reschedules_without_charging_the_budget() -> anyhow::Result<()> {
    let h = Harness::start("er-evict", 1).await?;
    create_runner(&h, "r-evict", h.runner_spec()).await?;
    let (_, first) = runner_with_pod(&h, "r-evict").await?;
    let id = registered_id(&h, "r-evict").await?;
    // Evicted before the runner container ever started.
    h.set_pod_status(
        "r-evict",
        json!({"phase": "Failed", "reason": "Evicted", "message": "node pressure"}),
    )
    .await?;
    let second = eventually("a replacement pod", WAIT, || async {
        Ok(h.pods()
            .get_opt("r-evict")
            .await?
            .and_then(|p| p.metadata.uid)
            .filter(|u| *u != first))
    })
    .await?;
    assert_ne!(first, second);
    let status = h.runners().get("r-evict").await?.status.unwrap();
    assert!(
        status.failures.is_empty(),
        "evictions are not charged: {:?}",
        status.failures
    );
    assert_eq!(
        registered_id(&h, "r-evict").await?,
        id,
        "the unused JIT config is kept"
    );
    assert_eq!(status.reason, "Evicted");
    Ok(())
}

#[tokio::test]
async fn invalid_pod_marks_the_runner_failed() -> anyhow::Result<()> {
    let h = Harness::start("er-invalid", 5).await?;
    let mut spec = h.runner_spec();
    // Valid for the CRD, refused by pod validation: a mount of a volume that does not exist.
    spec["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "missing", "mountPath": "/x"}]);
    create_runner(&h, "r-invalid", spec).await?;
    let status = eventually("phase Failed", WAIT, || async {
        Ok(h.runners()
            .get("r-invalid")
            .await?
            .status
            .filter(|s| s.phase == "Failed"))
    })
    .await?;
    assert_eq!(status.reason, "InvalidPod");
    assert!(
        status.message.starts_with("Failed to create the pod: "),
        "{}",
        status.message
    );
    eventually("registration and JIT Secret removed", WAIT, || async {
        let secret = h.secrets().get_opt("r-invalid").await?;
        Ok((h.service.runners().is_empty() && secret.is_none()).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn deletion_waits_for_the_job_then_removes_registration_secret_and_pod() -> anyhow::Result<()>
{
    let h = Harness::start("er-delete", 5).await?;
    let mut spec = h.runner_spec();
    spec["spec"]["containers"][0]["env"] =
        json!([{"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/home/runner/k8s/index.js"}]);
    create_runner(&h, "r-delete", spec).await?;
    runner_with_pod(&h, "r-delete").await?;
    let id = registered_id(&h, "r-delete").await?;
    h.set_pod_status("r-delete", running_status()).await?;
    h.assign_job("r-delete").await?;
    h.service.set_busy(id, true);
    // A job pod made by the container hooks.
    let hook_pod = serde_json::from_value(json!({
        "metadata": {"name": "r-delete-workflow", "labels": {"runner-pod": "r-delete"}},
        "spec": {"containers": [{"name": "job", "image": "alpine"}]}
    }))?;
    h.pods().create(&PostParams::default(), &hook_pod).await?;

    h.runners()
        .delete("r-delete", &DeleteParams::default())
        .await?;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let er = h.runners().get("r-delete").await?;
    assert!(er.metadata.deletion_timestamp.is_some());
    assert!(
        h.pods().get_opt("r-delete").await?.is_some(),
        "a busy runner keeps its pod"
    );
    assert_eq!(h.service.runners().get("r-delete"), Some(&id));

    h.service.set_busy(id, false);
    // The finalizer retries after JobStillRunning on its own schedule (30 s).
    runner_gone(&h, "r-delete", WAIT * 2).await?;
    assert!(h.service.runners().is_empty());
    dependents_gone(&h, "r-delete").await?;
    assert!(
        h.pods().get_opt("r-delete-workflow").await?.is_none(),
        "hook pods are cleaned up"
    );
    Ok(())
}

#[tokio::test]
async fn unrecorded_registration_is_adopted_on_retry_and_removed_on_deletion() -> anyhow::Result<()>
{
    let h = Harness::start("er-orphan", 5).await?;
    // A JIT config was issued under this name but the manager died before writing the Secret.
    let stale = h.service.register("r-orphan", SCALE_SET_ID);
    create_runner(&h, "r-orphan", h.runner_spec()).await?;
    runner_with_pod(&h, "r-orphan").await?;
    let id = registered_id(&h, "r-orphan").await?;
    assert_ne!(id, stale);
    assert_eq!(
        h.service.removed(),
        vec![stale],
        "the stale registration was removed"
    );
    assert_eq!(h.service.runners().len(), 1, "no duplicate registration");

    // A runner deleted before it recorded anything still takes its registration along.
    let early = h.service.register("r-early", SCALE_SET_ID);
    let mut spec = h.runner_spec();
    spec["githubConfigSecret"] = json!("missing-until-later");
    create_runner(&h, "r-early", spec).await?;
    h.runners()
        .delete("r-early", &DeleteParams::default())
        .await?;
    // Without credentials nothing can be removed: the runner waits in deletion.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(h.runners().get_opt("r-early").await?.is_some());
    let creds: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "missing-until-later"},
        "stringData": {"github_token": "ghp_fake"}
    }))?;
    h.secrets().create(&PostParams::default(), &creds).await?;
    runner_gone(&h, "r-early", WAIT * 2).await?;
    assert!(h.service.removed().contains(&early));
    Ok(())
}

/// `kubectl delete --cascade=orphan` would leave the pod and the JIT Secret to the garbage
/// collector's orphaning; the cleanup deletes them itself.
#[tokio::test]
async fn an_orphaning_deletion_still_removes_the_pod_and_the_secret() -> anyhow::Result<()> {
    let h = Harness::start("er-orphaning", 5).await?;
    create_runner(&h, "r-orphaning", h.runner_spec()).await?;
    runner_with_pod(&h, "r-orphaning").await?;
    registered_id(&h, "r-orphaning").await?;
    assert!(h.secrets().get_opt("r-orphaning").await?.is_some());
    h.runners()
        .delete("r-orphaning", &DeleteParams::orphan())
        .await?;
    runner_gone(&h, "r-orphaning", WAIT).await?;
    dependents_gone(&h, "r-orphaning").await?;
    assert!(h.service.runners().is_empty());
    Ok(())
}

#[tokio::test]
async fn exit_zero_deletes_the_runner() -> anyhow::Result<()> {
    let h = Harness::start("er-done", 5).await?;
    create_runner(&h, "r-done", h.runner_spec()).await?;
    runner_with_pod(&h, "r-done").await?;
    registered_id(&h, "r-done").await?;
    h.set_pod_status("r-done", exited_status(0)).await?;
    runner_gone(&h, "r-done", WAIT).await?;
    assert!(h.service.runners().is_empty());
    dependents_gone(&h, "r-done").await?;
    Ok(())
}

#[tokio::test]
async fn a_failure_with_a_job_assigned_deletes_the_runner() -> anyhow::Result<()> {
    let h = Harness::start("er-jobfail", 5).await?;
    create_runner(&h, "r-jobfail", h.runner_spec()).await?;
    runner_with_pod(&h, "r-jobfail").await?;
    registered_id(&h, "r-jobfail").await?;
    h.set_pod_status("r-jobfail", running_status()).await?;
    h.assign_job("r-jobfail").await?;
    // The runner dies under the job: no retry, the job is lost with its runner.
    h.set_pod_status("r-jobfail", exited_status(137)).await?;
    runner_gone(&h, "r-jobfail", WAIT).await?;
    dependents_gone(&h, "r-jobfail").await?;
    assert!(
        h.service.runners().is_empty(),
        "its registration is removed too"
    );
    Ok(())
}

/// The set's scale-down removes an idle runner's registration, and the runner exits 1 before the
/// set deletes it (a runner whose registration disappears exits at once). The failure is not
/// retried with a fresh registration: the runner goes, with no Event and no new JIT config.
#[tokio::test]
async fn a_failure_after_the_registration_was_removed_elsewhere_deletes_the_runner()
-> anyhow::Result<()> {
    use k8s_openapi::api::events::v1::Event;
    use k8s_reconcilers::github::ActionsService;
    let h = Harness::start("er-regone", 5).await?;
    create_runner(&h, "r-regone", h.runner_spec()).await?;
    runner_with_pod(&h, "r-regone").await?;
    let id = registered_id(&h, "r-regone").await?;
    h.set_pod_status("r-regone", running_status()).await?;
    h.service.remove_runner(id).await?;
    h.set_pod_status("r-regone", exited_status(1)).await?;
    runner_gone(&h, "r-regone", WAIT).await?;
    assert!(
        h.service.runners().is_empty(),
        "no new registration: {:?}",
        h.service.runners()
    );
    let events: kube::Api<Event> = kube::Api::namespaced(h.client.clone(), h.ns.name());
    let failed: Vec<_> = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RunnerPodFailed"))
        .collect();
    assert!(failed.is_empty(), "no retry Event: {failed:?}");
    Ok(())
}

/// Issue #20 item 2, EphemeralRunner: the registration cannot be removed (the credentials
/// Secret is gone, so the service cannot be called). After the grace period both finalizers go
/// and the registration left on the service is reported (a Warning Event naming it and the
/// metric) for the orphaned-registration sweep, instead of the runner hanging in deletion.
#[tokio::test]
async fn deletion_completes_when_the_registration_cannot_be_removed() -> anyhow::Result<()> {
    let h = Harness::start_with("er-delbound", 5, |o| {
        o.deletion_grace = std::time::Duration::from_secs(5);
    })
    .await?;
    create_runner(&h, "r1", h.runner_spec()).await?;
    let id = registered_id(&h, "r1").await?;
    h.secrets()
        .delete("creds", &DeleteParams::default())
        .await?;
    // Past the reuse of the resolved credentials.
    tokio::time::sleep(k8s_reconcilers::github::RESOLVED_CONFIG_TTL).await;
    h.runners().delete("r1", &DeleteParams::default()).await?;
    runner_gone(&h, "r1", WAIT).await?;
    let message = suites::warning_event(
        &h.client,
        h.ns.name(),
        "r1",
        Some("CleanupAbandoned"),
        "the registration of runner r1 on the service",
        WAIT,
    )
    .await?;
    assert!(message.contains("creds"), "the Event says why: {message}");
    assert_eq!(
        h.service.runners().get("r1"),
        Some(&id),
        "the registration stays for the sweep"
    );
    assert_eq!(suites::abandoned_cleanups(&h.metrics, "ephemeralrunner"), 1);
    Ok(())
}

/// Issue #20 item 1 on an internal kind: a runner whose credentials Secret is missing reports it
/// in its own `Ready=False` condition (reason, and a message naming the Secret and the fix) and a
/// Warning Event; once the Secret exists the runner registers and the condition turns `True`.
#[tokio::test]
async fn a_missing_secret_is_a_condition_on_the_runner_until_it_exists() -> anyhow::Result<()> {
    use kube::api::{Patch, PatchParams};
    let h = Harness::start("er-condition", 5).await?;
    let mut spec = h.runner_spec();
    spec["githubConfigSecret"] = json!("later");
    create_runner(&h, "r1", spec).await?;
    let ready = |status: &'static str| {
        let h = &h;
        async move {
            eventually(&format!("Ready={status}"), WAIT, || async {
                let er = h.runners().get("r1").await?;
                Ok(er
                    .status
                    .and_then(|s| s.conditions)
                    .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
                    .filter(|c| c.status == status))
            })
            .await
        }
    };
    let condition = ready("False").await?;
    assert_eq!(condition.reason, "InvalidConfiguration");
    assert!(
        condition.message.contains("later") && condition.message.contains("create it"),
        "{}",
        condition.message
    );
    suites::warning_event(
        &h.client,
        h.ns.name(),
        "r1",
        Some("InvalidConfiguration"),
        "later",
        WAIT,
    )
    .await?;
    let creds: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "later"},
        "stringData": {"github_token": "ghp_fake"}
    }))?;
    h.secrets().create(&PostParams::default(), &creds).await?;
    // Secrets are not watched: the retry comes within minutes, or at once on a change.
    let poke = json!({"metadata": {"annotations": {"test/poke": "1"}}});
    h.runners()
        .patch("r1", &PatchParams::default(), &Patch::Merge(&poke))
        .await?;
    registered_id(&h, "r1").await?;
    let fixed = ready("True").await?;
    assert_eq!(fixed.reason, "Reconciled");
    Ok(())
}
