//! EphemeralRunnerSet reconciler against a real kube-apiserver (behaviours 11 and 12 of
//! docs/architecture.md#integration-behaviours): scale 0→N→0 with busy runners protected, the
//! patchID rules, status counters, spec rollout that leaves busy runners alone, and the sweep that
//! removes registrations without an EphemeralRunner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "reconciler_ers_support.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_reconcilers::controllers::orphaned_registrations;
use k8s_reconcilers::crd::{EphemeralRunner, EphemeralRunnerSet};
use k8s_reconcilers::names::annotations;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use scaleset_core::completions::{COMPLETED_RUNNERS, HOLD};
use serde_json::json;
use support::*;

async fn create_set(h: &Harness, name: &str, replicas: i32, patch_id: i32) -> anyhow::Result<()> {
    let set: EphemeralRunnerSet = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunnerSet",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "patchID": patch_id, "ephemeralRunnerSpec": h.runner_spec()}
    }))?;
    h.sets().create(&PostParams::default(), &set).await?;
    Ok(())
}

async fn scale(h: &Harness, name: &str, replicas: i32, patch_id: i32) -> anyhow::Result<()> {
    let patch = json!({"spec": {"replicas": replicas, "patchID": patch_id}});
    h.sets()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Live (not deleting) runners of the namespace.
async fn live(h: &Harness) -> anyhow::Result<Vec<EphemeralRunner>> {
    Ok(h.runners()
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Waits until exactly `n` live runners exist, each registered.
async fn registered_runners(h: &Harness, n: usize) -> anyhow::Result<Vec<EphemeralRunner>> {
    let runners = suites::registered_runners(&h.runners(), &h.pods(), n, WAIT).await?;
    Ok(runners.into_iter().map(|(er, _)| er).collect())
}

fn names(runners: &[EphemeralRunner]) -> BTreeSet<String> {
    runners.iter().map(|r| r.name_any()).collect()
}

#[tokio::test]
async fn scale_up_then_to_zero_keeps_the_busy_runner_until_its_job_ends() -> anyhow::Result<()> {
    let h = Harness::start("ers-scale", 5).await?;
    create_set(&h, "set", 3, 0).await?;
    let runners = registered_runners(&h, 3).await?;
    assert_eq!(h.service.runners().len(), 3, "one registration per runner");
    for r in &runners {
        assert_eq!(r.owner_references()[0].name, "set");
        h.set_pod_status(&r.name_any(), running_status()).await?;
    }
    let busy = runners[0].name_any();
    let busy_id = suites::registration_id(&h.pods(), &runners[0]).await?;
    h.assign_job(&busy).await?;
    h.service.set_busy(busy_id, true);

    eventually("status with 3 running", WAIT, || async {
        let s = h.sets().get("set").await?.status.unwrap_or_default();
        Ok((s.running_ephemeral_runners == 3 && s.current_replicas == 3).then_some(()))
    })
    .await?;

    scale(&h, "set", 0, 0).await?;
    let left = eventually("only the busy runner left", WAIT, || async {
        let runners = live(&h).await?;
        Ok((h.service.runners().len() == 1 && runners.len() == 1).then_some(runners))
    })
    .await?;
    assert_eq!(left[0].name_any(), busy, "the busy runner is never chosen");
    assert_eq!(h.service.runners().get(&busy), Some(&busy_id));

    // The job ends (the service drops the ephemeral registration): the runner exits 0 and
    // goes, with no RemoveRunner call for the registration the service already dropped.
    h.service.job_finished(busy_id);
    h.set_pod_status(&busy, exited_status(0)).await?;
    eventually("no runner and no registration", WAIT, || async {
        let empty = h
            .runners()
            .list(&Default::default())
            .await?
            .items
            .is_empty();
        Ok((empty && h.service.runners().is_empty()).then_some(()))
    })
    .await?;
    assert!(
        !h.service.removed().contains(&busy_id),
        "the finished runner's registration was not removed again"
    );
    let s = eventually("status back to 0", WAIT, || async {
        let s = h.sets().get("set").await?.status.unwrap_or_default();
        Ok((s.current_replicas == 0).then_some(s))
    })
    .await?;
    assert_eq!(s.running_ephemeral_runners, 0);
    Ok(())
}

/// Patches `spec` as the listener does, with the runners whose completions the count reflects.
async fn listener_patch(
    h: &Harness,
    replicas: i32,
    patch_id: i32,
    completed: &str,
) -> anyhow::Result<()> {
    let patch = json!({
        "metadata": {"annotations": {COMPLETED_RUNNERS: completed}},
        "spec": {"replicas": replicas, "patchID": patch_id}
    });
    h.sets()
        .patch("set", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Waits until the runner's job is done at the service, its pod exited and it is gone.
async fn finish_job(h: &Harness, runner: &EphemeralRunner) -> anyhow::Result<()> {
    let id = suites::registration_id(&h.pods(), runner).await?;
    h.service.job_finished(id);
    h.set_pod_status(&runner.name_any(), exited_status(0))
        .await?;
    let name = runner.name_any();
    eventually("the finished runner gone", WAIT, || async {
        Ok(h.runners().get_opt(&name).await?.is_none().then_some(()))
    })
    .await
}

/// docs/architecture.md#the-patchid-protocol: a runner whose job completed and which is gone
/// before the listener's patch for the completion is not replaced when the set acts on a
/// patch that still counts the job; the patch that lists it settles the count. A completion
/// the listener never lists holds a runner back only for the hold's few seconds.
#[tokio::test]
async fn a_runner_gone_before_the_patch_for_its_completion_is_not_replaced() -> anyhow::Result<()> {
    let h = Harness::start("ers-held", 5).await?;
    create_set(&h, "set", 2, 1).await?;
    listener_patch(&h, 2, 1, "").await?;
    let runners = registered_runners(&h, 2).await?;
    for r in &runners {
        h.set_pod_status(&r.name_any(), running_status()).await?;
        h.assign_job(&r.name_any()).await?;
    }
    let (first, second) = (&runners[0], &runners[1]);
    listener_patch(&h, 2, 2, "").await?;

    // The first job completes and its runner goes; the listener's patch 3 was written before it
    // handled the completion, so it still counts the job.
    finish_job(&h, first).await?;
    listener_patch(&h, 2, 3, "").await?;
    eventually("the status counts one runner", WAIT, || async {
        let s = h.sets().get("set").await?.status.unwrap_or_default();
        Ok((s.current_replicas == 1).then_some(()))
    })
    .await?;
    listener_patch(&h, 1, 4, &first.name_any()).await?;
    eventually("the set acted on patch 4", WAIT, || async {
        let s = h.sets().get("set").await?.status.unwrap_or_default();
        Ok((s.observed_patch_id == Some(4)).then_some(()))
    })
    .await?;
    tokio::time::sleep(HOLD + std::time::Duration::from_secs(2)).await;
    assert_eq!(
        names(&live(&h).await?),
        BTreeSet::from([second.name_any()]),
        "no runner was created for the completed job"
    );

    // The second job completes and its runner goes, but no patch lists it: once the hold ends
    // the set creates the runner its count asks for.
    finish_job(&h, second).await?;
    listener_patch(&h, 1, 5, "").await?;
    let replacement = registered_runners(&h, 1).await?;
    assert_ne!(replacement[0].name_any(), second.name_any());
    Ok(())
}

/// docs/architecture.md#the-patchid-protocol: the listener's patch lists a runner whose job
/// completed while that runner still runs (its pod has not exited). Its count asks for a runner
/// for the next job (`maxRunners` 1: the job waited for the first one's runner), and the set
/// creates it at once: counting the listed runner, it would see its count met, record the patch
/// as acted on, and create nothing until the listener's next patch.
#[tokio::test]
async fn a_listed_runner_that_still_runs_is_replaced_at_once() -> anyhow::Result<()> {
    let h = Harness::start("ers-done", 5).await?;
    create_set(&h, "set", 1, 1).await?;
    listener_patch(&h, 1, 1, "").await?;
    let first = registered_runners(&h, 1).await?.remove(0);
    h.set_pod_status(&first.name_any(), running_status())
        .await?;
    h.assign_job(&first.name_any()).await?;
    listener_patch(&h, 1, 2, &first.name_any()).await?;
    let both = registered_runners(&h, 2).await?;
    assert!(
        names(&both).contains(&first.name_any()),
        "the first runner is left to exit on its own"
    );
    Ok(())
}

#[tokio::test]
async fn patch_id_rules_for_scale_up_and_down() -> anyhow::Result<()> {
    let h = Harness::start("ers-patch", 5).await?;
    create_set(&h, "set", 1, 0).await?;
    let first = registered_runners(&h, 1).await?;

    // A new patchID scales up; runners carry the stamp.
    scale(&h, "set", 3, 1).await?;
    let three = registered_runners(&h, 3).await?;
    assert!(names(&first).is_subset(&names(&three)));
    let stamped = three
        .iter()
        .filter(|r| {
            r.annotations()
                .get(annotations::PATCH_ID)
                .map(String::as_str)
                == Some("1")
        })
        .count();
    assert_eq!(stamped, 2, "the two new runners carry patch id 1");

    // A lower replicas with patchID > 0 removes nothing.
    scale(&h, "set", 1, 2).await?;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        live(&h).await?.len(),
        3,
        "patchID > 0 never deletes live runners"
    );

    // With patchID 0 the surplus idle registered runners go.
    scale(&h, "set", 1, 0).await?;
    let one = registered_runners(&h, 1).await?;
    eventually("registrations follow", WAIT, || async {
        Ok((h.service.runners().len() == 1).then_some(()))
    })
    .await?;
    assert_eq!(
        h.service.runners().keys().cloned().collect::<BTreeSet<_>>(),
        names(&one)
    );
    Ok(())
}

#[tokio::test]
async fn spec_change_replaces_idle_runners_and_leaves_busy_ones() -> anyhow::Result<()> {
    let h = Harness::start("ers-spec", 5).await?;
    create_set(&h, "set", 2, 0).await?;
    let before = registered_runners(&h, 2).await?;
    let busy = before[0].name_any();
    let idle = before[1].name_any();
    h.set_pod_status(&busy, running_status()).await?;
    h.assign_job(&busy).await?;
    h.service
        .set_busy(suites::registration_id(&h.pods(), &before[0]).await?, true);

    let mut spec = h.runner_spec();
    spec["spec"]["containers"][0]["image"] = json!("ghcr.io/actions/actions-runner:2.330.0");
    let patch = json!({"spec": {"ephemeralRunnerSpec": spec}});
    h.sets()
        .patch("set", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;

    let after = eventually("the idle runner replaced", WAIT, || async {
        let runners = live(&h).await?;
        let n = names(&runners);
        Ok((runners.len() == 2 && n.contains(&busy) && !n.contains(&idle)).then_some(runners))
    })
    .await?;
    for r in after {
        let image = r.spec.pod_template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default();
        if r.name_any() == busy {
            assert_eq!(
                image, "ghcr.io/actions/actions-runner:latest",
                "busy runner keeps its spec"
            );
        } else {
            assert_eq!(
                image, "ghcr.io/actions/actions-runner:2.330.0",
                "new runner gets the new spec"
            );
        }
    }
    assert!(
        !h.service.runners().contains_key(&idle),
        "the replaced runner's registration was removed"
    );
    Ok(())
}

#[tokio::test]
async fn sweep_removes_registrations_without_a_runner_and_keeps_busy_ones() -> anyhow::Result<()> {
    let h = Harness::start("ers-sweep", 5).await?;
    create_set(&h, "set", 1, 0).await?;
    let runners = registered_runners(&h, 1).await?;
    let kept = runners[0].name_any();
    let ghost = h.service.register("set-runner-ghost", SCALE_SET_ID);
    let busy_ghost = h.service.register("set-runner-busy-ghost", SCALE_SET_ID);
    h.service.set_busy(busy_ghost, true);
    let other_set = h.service.register("elsewhere", SCALE_SET_ID + 1);

    let ctx = h.context(orphaned_registrations::CONTROLLER);
    let report = orphaned_registrations::sweep(&ctx).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.removed, vec![ghost]);
    assert_eq!(report.busy, vec![busy_ghost]);
    let left = h.service.runners();
    assert!(
        left.contains_key(&kept),
        "a runner's own registration stays"
    );
    assert_eq!(left.get("set-runner-busy-ghost"), Some(&busy_ghost));
    assert_eq!(
        left.get("elsewhere"),
        Some(&other_set),
        "other scale sets are not touched"
    );
    assert!(!left.contains_key("set-runner-ghost"));

    // Once its job ends, the next sweep removes the busy one too.
    h.service.set_busy(busy_ghost, false);
    let report = orphaned_registrations::sweep(&Arc::clone(&ctx)).await;
    assert_eq!(report.removed, vec![busy_ghost]);
    assert_eq!(
        live(&h).await?.len(),
        1,
        "the sweep never touches EphemeralRunners"
    );
    Ok(())
}

#[tokio::test]
async fn a_proxy_gets_a_runner_proxy_secret_that_goes_with_the_set() -> anyhow::Result<()> {
    let h = Harness::start("ers-proxy", 5).await?;
    let creds: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "proxy-creds"},
        "stringData": {"username": "test", "password": "password"}
    }))?;
    h.secrets().create(&PostParams::default(), &creds).await?;
    let mut spec = h.runner_spec();
    spec["proxy"] = json!({
        "http": {"url": "http://proxy.example:3128", "credentialSecretRef": "proxy-creds"},
        "https": {"url": "http://proxy.example:3129"},
        "noProxy": ["example.com", "10.0.0.0/8"]
    });
    let set: EphemeralRunnerSet = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunnerSet",
        "metadata": {"name": "proxied"},
        "spec": {"replicas": 1, "ephemeralRunnerSpec": spec}
    }))?;
    h.sets().create(&PostParams::default(), &set).await?;
    let name = k8s_reconcilers::names::runner_proxy_secret_name("proxied", h.ns.name());
    let secret = eventually("the runner proxy Secret", WAIT, || async {
        Ok(h.secrets().get_opt(&name).await?)
    })
    .await?;
    let data = secret.data.unwrap();
    let text = |k: &str| String::from_utf8_lossy(&data[k].0).into_owned();
    assert_eq!(
        text("http_proxy"),
        "http://test:password@proxy.example:3128"
    );
    assert_eq!(text("https_proxy"), "http://proxy.example:3129");
    assert_eq!(text("no_proxy"), "example.com,10.0.0.0/8");
    let runners = registered_runners(&h, 1).await?;
    assert_eq!(
        runners[0].spec.proxy_secret_ref.as_deref(),
        Some(name.as_str())
    );

    h.sets()
        .delete("proxied", &kube::api::DeleteParams::default())
        .await?;
    eventually(
        "the set, its runner and the proxy Secret gone",
        WAIT,
        || async {
            let set = h.sets().get_opt("proxied").await?;
            let secret = h.secrets().get_opt(&name).await?;
            let runners = h.runners().list(&Default::default()).await?.items;
            Ok((set.is_none() && secret.is_none() && runners.is_empty()).then_some(()))
        },
    )
    .await?;
    assert!(
        h.service.runners().is_empty(),
        "the runner was unregistered"
    );
    Ok(())
}

#[tokio::test]
async fn new_runners_carry_the_current_metadata_and_old_ones_keep_theirs() -> anyhow::Result<()> {
    let h = Harness::start("ers-meta", 5).await?;
    let set: EphemeralRunnerSet = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunnerSet",
        "metadata": {"name": "set", "annotations": {"team": "a"}},
        "spec": {
            "replicas": 1,
            "ephemeralRunnerSpec": h.runner_spec(),
            "ephemeralRunnerMetadata": {"labels": {"tier": "one"}, "annotations": {"note": "first"}}
        }
    }))?;
    h.sets().create(&PostParams::default(), &set).await?;
    let first = registered_runners(&h, 1).await?.remove(0);
    assert_eq!(
        first.annotations().get("team").map(String::as_str),
        Some("a")
    );
    assert_eq!(
        first.annotations().get("note").map(String::as_str),
        Some("first")
    );
    assert_eq!(first.labels().get("tier").map(String::as_str), Some("one"));

    let patch = json!({
        "metadata": {"annotations": {"team": "b"}},
        "spec": {"replicas": 2, "patchID": 1,
            "ephemeralRunnerMetadata": {"labels": {"tier": "two"}, "annotations": {"note": "second"}}}
    });
    h.sets()
        .patch("set", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let both = registered_runners(&h, 2).await?;
    let old = both
        .iter()
        .find(|r| r.name_any() == first.name_any())
        .unwrap();
    let new = both
        .iter()
        .find(|r| r.name_any() != first.name_any())
        .unwrap();
    assert_eq!(
        old.annotations().get("team").map(String::as_str),
        Some("a"),
        "existing runners keep theirs"
    );
    assert_eq!(
        old.annotations().get("note").map(String::as_str),
        Some("first")
    );
    assert_eq!(new.annotations().get("team").map(String::as_str), Some("b"));
    assert_eq!(
        new.annotations().get("note").map(String::as_str),
        Some("second")
    );
    assert_eq!(new.labels().get("tier").map(String::as_str), Some("two"));
    Ok(())
}

#[tokio::test]
async fn a_burst_creates_every_runner_once_in_parallel() -> anyhow::Result<()> {
    let h = Harness::start("ers-burst", 5).await?;
    let burst = 3 * k8s_reconcilers::controllers::ephemeral_runner_set::CREATE_PARALLELISM;
    let burst_i32 = i32::try_from(burst)?;
    create_set(&h, "set", burst_i32, 4).await?;
    let runners = registered_runners(&h, burst).await?;
    for r in &runners {
        assert_eq!(
            r.annotations()
                .get(annotations::PATCH_ID)
                .map(String::as_str),
            Some("4")
        );
    }
    assert_eq!(
        h.service.runners().len(),
        burst,
        "one registration per runner"
    );
    let s = eventually("the status counts the burst", WAIT, || async {
        let s = h.sets().get("set").await?.status.unwrap_or_default();
        Ok((s.current_replicas == burst_i32).then_some(s))
    })
    .await?;
    assert_eq!(s.current_replicas, burst_i32);
    // Runner events keep reconciling the set; none of those passes adds a runner.
    scale(&h, "set", burst_i32, 5).await?;
    eventually("the set sees patch ID 5", WAIT, || async {
        let set = h.sets().get("set").await?;
        Ok((set.spec.patch_id == 5).then_some(()))
    })
    .await?;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(live(&h).await?.len(), burst, "no runner beyond replicas");
    }
    Ok(())
}

/// A forced scale-down removes its runners side by side, never more than asked, and each
/// registration once: the runner controller does not remove again what the set removed.
#[tokio::test]
async fn a_scale_down_removes_each_runner_once_and_no_more() -> anyhow::Result<()> {
    let h = Harness::start("ers-down", 5).await?;
    let keep = k8s_reconcilers::controllers::ephemeral_runner_set::CREATE_PARALLELISM;
    let keep_i32 = i32::try_from(keep)?;
    create_set(&h, "set", 3 * keep_i32, 1).await?;
    for r in registered_runners(&h, 3 * keep).await? {
        h.set_pod_status(&r.name_any(), running_status()).await?;
    }
    // The set removes the registrations it knows of: a running runner's, from its status.
    eventually("every runner running", WAIT, || async {
        let s = h.sets().get("set").await?.status.unwrap_or_default();
        Ok((s.running_ephemeral_runners == 3 * keep_i32).then_some(()))
    })
    .await?;
    let calls_before = h.service.remove_calls();
    scale(&h, "set", keep_i32, 0).await?;
    let kept = eventually("the surplus runners gone", WAIT, || async {
        let all = h.runners().list(&Default::default()).await?.items;
        Ok((all.len() == keep).then_some(all))
    })
    .await?;
    assert_eq!(
        h.service.runners().keys().cloned().collect::<BTreeSet<_>>(),
        names(&kept)
    );
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(
            live(&h).await?.len(),
            keep,
            "no runner beyond the surplus goes"
        );
    }
    assert_eq!(
        h.service.remove_calls() - calls_before,
        2 * keep,
        "one RemoveRunner per runner removed"
    );
    Ok(())
}

/// Issue #20 item 2, EphemeralRunnerSet: its idle runner cannot be removed from the service (the
/// credentials Secret is gone). After the grace period the set's finalizer goes and the runners
/// left are reported (a Warning Event and the metric); they follow by garbage collection, each
/// bounded by its own deletion, so nothing is left hanging.
#[tokio::test]
async fn deletion_completes_when_runners_cannot_be_removed_from_the_service() -> anyhow::Result<()>
{
    let h = Harness::start_with("ers-delbound", 5, |o| {
        o.deletion_grace = std::time::Duration::from_secs(5);
    })
    .await?;
    create_set(&h, "set", 1, 1).await?;
    let runners = registered_runners(&h, 1).await?;
    let runner = runners[0].name_any();
    // A running runner: its status records the registration, which the set removes first.
    h.set_pod_status(&runner, running_status()).await?;
    eventually("the runner's recorded registration", WAIT, || async {
        let er = h.runners().get(&runner).await?;
        Ok(er.status.is_some_and(|s| s.runner_id > 0).then_some(()))
    })
    .await?;
    h.secrets()
        .delete("creds", &kube::api::DeleteParams::default())
        .await?;
    // Past the reuse of the resolved credentials.
    tokio::time::sleep(k8s_reconcilers::github::RESOLVED_CONFIG_TTL).await;
    h.sets()
        .delete("set", &kube::api::DeleteParams::default())
        .await?;
    eventually("the set and its runner to be gone", WAIT, || async {
        let set = h.sets().get_opt("set").await?;
        let er = h.runners().get_opt(&runner).await?;
        Ok((set.is_none() && er.is_none()).then_some(()))
    })
    .await?;
    suites::warning_event(
        &h.client,
        h.ns.name(),
        "set",
        Some("CleanupAbandoned"),
        "runners of set",
        WAIT,
    )
    .await?;
    assert_eq!(
        suites::abandoned_cleanups(&h.metrics, "ephemeralrunnerset"),
        1
    );
    assert_eq!(
        suites::abandoned_cleanups(&h.metrics, "ephemeralrunner"),
        1,
        "the runner's own deletion was bounded too"
    );
    assert!(
        h.service.runners().contains_key(&runner),
        "the registration stays for the sweep"
    );
    Ok(())
}

/// The sweep on the emulator over HTTP: registrations come from GitHub's REST runner list (two
/// pages: 117 runners in the organization), never from the Actions service's runner list; only
/// this set's idle orphan is deleted. Kept: the set's runner that has an EphemeralRunner, a busy
/// orphan, a registration with the set's name prefix in a scale set of the same name and labels
/// in another runner group, one with the prefix in another scale set (other labels), one of the
/// set without the prefix, and one whose delete is refused as busy (422) until the next sweep.
#[tokio::test]
async fn sweep_over_rest_removes_only_this_sets_orphans() -> anyhow::Result<()> {
    use actions_client::{ActionsClient, Credentials, JitSetting, NewRunnerScaleSet};
    use actions_emulator::{Emulator, EmulatorConfig, Endpoint, Fault, FaultKind, JobSpec};
    use k8s_reconcilers::github::{ActionsClientConnector, Connector, GithubClients};
    use k8s_reconcilers::{Context, ManagerOptions, metrics::Metrics};
    use secrecy::ExposeSecret;
    use std::time::Duration;

    let emu = Emulator::start(EmulatorConfig {
        runner_groups: vec!["other-group".into()],
        auto_acquire_after: Some(Duration::ZERO),
        assign_delay: Duration::ZERO,
        ..EmulatorConfig::default()
    })
    .await?;
    let url = emu.org_url("org");
    let client = ActionsClient::builder(url.clone(), Credentials::pat(emu.pat())?).build()?;
    let labelled =
        |group: i64| NewRunnerScaleSet::new("sweep-set", group).with_labels(["sweep-set", "gpu"]);
    let ours = client.create_runner_scale_set(&labelled(1)).await?;
    let twin = client.create_runner_scale_set(&labelled(2)).await?;
    assert_eq!(twin.runner_group_id, 2);
    let other = client
        .create_runner_scale_set(&NewRunnerScaleSet::new("other-set", 1))
        .await?;
    let register = |set: i64, name: String| {
        let client = &client;
        async move {
            let setting = JitSetting {
                name,
                work_folder: String::new(),
            };
            client.generate_jit_config(set, &setting).await
        }
    };
    for i in 0..110 {
        register(other.id, format!("other-runner-{i:05}")).await?;
    }
    let kept = register(ours.id, "set-runner-kept".into()).await?.runner.id;
    let busy = register(ours.id, "set-runner-busy".into()).await?;
    let twin_runner = register(twin.id, "set-runner-twin".into()).await?.runner.id;
    let foreign = register(other.id, "set-runner-foreign".into())
        .await?
        .runner
        .id;
    let stranger = register(ours.id, "stranger".into()).await?.runner.id;
    let refused = register(ours.id, "set-runner-refused".into())
        .await?
        .runner
        .id;
    // Registered last, so the REST list has it on its second page.
    let orphan = register(ours.id, "set-runner-orphan".into())
        .await?
        .runner
        .id;
    assert!(orphan > 100);

    // The busy orphan runs a job.
    emu.queue_job(JobSpec::with_labels(["sweep-set", "gpu"]));
    let conn = emu
        .runner_connect(busy.encoded_jit_config.expose_secret())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let job = emu
        .runner_job(&conn, WAIT)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert!(job.is_some(), "the busy runner got its job");
    emu.runner_started(&conn)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let busy = busy.runner.id;

    // The set and the one runner it has, on the API server; no controller runs.
    let cp = testbed::ControlPlane::shared().await?;
    let kube = cp.client();
    k8s_reconcilers::crd::install(&kube, Duration::from_secs(60)).await?;
    let ns = cp.test_namespace("ers-sweep-rest").await?;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube.clone(), ns.name());
    let creds = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"github_token": emu.pat().expose_secret()}
    }))?;
    secrets.create(&PostParams::default(), &creds).await?;
    let runner_spec = json!({
        "githubConfigUrl": url,
        "githubConfigSecret": "creds",
        "runnerScaleSetId": ours.id,
        "spec": {"containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest"}]}
    });
    let set: EphemeralRunnerSet = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunnerSet",
        "metadata": {"name": "set"},
        "spec": {"replicas": 0, "patchID": 0, "ephemeralRunnerSpec": runner_spec}
    }))?;
    kube::Api::<EphemeralRunnerSet>::namespaced(kube.clone(), ns.name())
        .create(&PostParams::default(), &set)
        .await?;
    let runner: EphemeralRunner = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunner",
        "metadata": {"name": "set-runner-kept"},
        "spec": runner_spec
    }))?;
    kube::Api::<EphemeralRunner>::namespaced(kube.clone(), ns.name())
        .create(&PostParams::default(), &runner)
        .await?;

    let connector: Arc<dyn Connector> = Arc::new(ActionsClientConnector::new("test"));
    let mut options = ManagerOptions::new(ns.name(), "listener:test", connector.clone());
    options.watch_namespace = Some(ns.name().to_owned());
    let ctx = Context::new(
        orphaned_registrations::CONTROLLER,
        kube.clone(),
        Arc::new(options),
        Arc::new(GithubClients::new(connector)),
        Arc::new(Metrics::default()),
    );
    // The first delete is refused as if the runner had taken a job since the list.
    emu.inject(Fault::on(
        Endpoint::DeleteSelfHostedRunner,
        FaultKind::status(422),
        1,
    ));
    emu.reset_counters();
    let report = orphaned_registrations::sweep(&ctx).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.removed, vec![orphan]);
    assert_eq!(report.busy, vec![busy, refused]);
    assert_eq!(
        emu.count(Endpoint::ListSelfHostedRunners),
        2,
        "both REST pages"
    );
    assert_eq!(emu.count(Endpoint::DeleteSelfHostedRunner), 2);
    for unused in [
        Endpoint::RunnersByName,
        Endpoint::GetRunner,
        Endpoint::RemoveRunner,
    ] {
        assert_eq!(emu.count(unused), 0, "{unused} called by the sweep");
    }
    let left: BTreeSet<i64> = emu.snapshot().runners.iter().map(|r| r.id).collect();
    assert_eq!(left.len(), 116);
    for id in [kept, busy, twin_runner, foreign, stranger, refused] {
        assert!(left.contains(&id), "registration {id} kept");
    }
    assert!(!left.contains(&orphan));

    // The next sweep takes the refused one; the busy one stays while its job runs.
    let report = orphaned_registrations::sweep(&ctx).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.removed, vec![refused]);
    assert_eq!(report.busy, vec![busy]);
    assert_eq!(emu.count(Endpoint::RunnersByName), 0);
    Ok(())
}
