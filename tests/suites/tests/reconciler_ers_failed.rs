//! Failed runners on a real kube-apiserver: they stay listed in ARC's `Failed` state (phase,
//! reason and message, `failedEphemeralRunners`, `gha_controller_failed_ephemeral_runners`), but
//! they do not hold a slot of `replicas`, and a broken template does not spin (creation pauses at
//! five failed runners). Fixing the template replaces them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "reconciler_ers_support.rs"]
mod support;

use k8s_reconcilers::crd::{EphemeralRunner, EphemeralRunnerSet};
use k8s_reconcilers::metrics::ScaleSetLabels;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// Live runners of the namespace in phase `Failed`, and all live runners.
async fn failed_and_all(h: &Harness) -> anyhow::Result<(Vec<EphemeralRunner>, usize)> {
    let live: Vec<EphemeralRunner> = h
        .runners()
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect();
    let all = live.len();
    let failed = live
        .into_iter()
        .filter(|r| r.status.as_ref().is_some_and(|s| s.phase == "Failed"))
        .collect();
    Ok((failed, all))
}

/// The value of `gha_controller_failed_ephemeral_runners` for set `name`.
fn failed_gauge(h: &Harness, name: &str) -> i64 {
    let url = h.runner_spec()["githubConfigUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let labels = ScaleSetLabels::new(name, h.ns.name(), &url);
    h.metrics.failed_runners.get_or_create(&labels).get()
}

#[tokio::test]
async fn failed_runners_stay_failed_without_holding_capacity_until_the_template_is_fixed()
-> anyhow::Result<()> {
    const REPLICAS: usize = 3;
    const PAUSE_AT: usize = 5;
    let h = Harness::start("ers-failed", 2).await?;
    let mut broken = h.runner_spec();
    // Valid for the CRD, refused by pod validation: a mount of a volume that does not exist.
    broken["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "missing", "mountPath": "/x"}]);
    let set: EphemeralRunnerSet = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunnerSet",
        "metadata": {"name": "failing"},
        "spec": {"replicas": REPLICAS, "patchID": 0, "ephemeralRunnerSpec": broken}
    }))?;
    h.sets().create(&PostParams::default(), &set).await?;

    // Failed runners do not count toward `replicas`: the set creates replacements until five
    // are failed, then pauses (ARC counts them, so three failed runners would be all it ever had).
    let failed = eventually("five failed runners", WAIT, || async {
        let (failed, all) = failed_and_all(&h).await?;
        Ok((failed.len() >= PAUSE_AT && failed.len() == all).then_some(failed))
    })
    .await?;
    for r in &failed {
        let s = r.status.as_ref().unwrap();
        assert_eq!(
            s.reason,
            "InvalidPod",
            "ARC's reason on {}",
            r.metadata.name.as_deref().unwrap_or("")
        );
        assert!(
            s.message.starts_with("Failed to create the pod: "),
            "{}",
            s.message
        );
    }
    let status = eventually("the set's status to count them", WAIT, || async {
        let s = h.sets().get("failing").await?.status.unwrap_or_default();
        Ok((s.failed_ephemeral_runners as usize == failed.len()).then_some(s))
    })
    .await?;
    assert_eq!(
        status.current_replicas, 0,
        "failed runners hold no slot: {status:?}"
    );
    eventually("the failed-runner gauge", WAIT, || async {
        Ok((failed_gauge(&h, "failing") == failed.len() as i64).then_some(()))
    })
    .await?;

    // Paused: a later pass creates nothing more. Each pass of a set with a failed runner is
    // triggered by the runner's status write, so a quiet namespace is the proof; a spin would
    // add runners within seconds.
    h.sets()
        .patch(
            "failing",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await?;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (still_failed, all) = failed_and_all(&h).await?;
    assert!(
        all == failed.len() && still_failed.len() == failed.len(),
        "creation paused at {} failed runners, found {all} runners",
        failed.len()
    );
    assert!(
        failed.len() < PAUSE_AT + REPLICAS,
        "at most one round past the pause threshold: {}",
        failed.len()
    );
    assert!(
        h.service.runners().is_empty(),
        "failed runners keep no registration"
    );

    // Fixing the template replaces the failed runners with working ones.
    let patch = json!({"spec": {"ephemeralRunnerSpec": h.runner_spec()}});
    h.sets()
        .patch("failing", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    eventually("three working runners and no failed one", WAIT, || async {
        let (failed, all) = failed_and_all(&h).await?;
        let registered = h.service.runners().len();
        Ok((failed.is_empty() && all == REPLICAS && registered == REPLICAS).then_some(()))
    })
    .await?;
    Ok(())
}
