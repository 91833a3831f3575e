//! AutoscalingListener reconciler against the real API server (behaviours 9 and 10 of
//! docs/architecture.md#integration-behaviours): RBAC, config Secret, pod and template merge,
//! restarts by cause, proxy Secret, credential rotation, deletion.

#[path = "reconciler_ars_support/mod.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_reconcilers::crd::{AutoscalingListener, AutoscalingRunnerSet};
use k8s_reconcilers::names::{finalizers, labels, listener_name};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::{Harness, spec, wait_for};

const URL: &str = "https://github.example.com/org/repo";

async fn listener_pod(h: &Harness, name: &str) -> anyhow::Result<Pod> {
    let pods = h.api::<Pod>(h.ctrl());
    wait_for("the listener pod", || async {
        Ok(pods.get_opt(name).await?)
    })
    .await
}

async fn config_json(h: &Harness, al: &str) -> anyhow::Result<Value> {
    let secret = h
        .api::<Secret>(h.ctrl())
        .get(&format!("{al}-config"))
        .await?;
    let data = secret.data.unwrap_or_default();
    let bytes = &data
        .get("config.json")
        .ok_or_else(|| anyhow::anyhow!("no config.json"))?
        .0;
    assert!(bytes.ends_with(b"\n"));
    Ok(serde_json::from_slice(bytes)?)
}

#[tokio::test]
async fn listener_gets_rbac_config_and_pod() -> anyhow::Result<()> {
    let h = Harness::start("al-create").await?;
    h.pat_secret("gh", "ghp_first").await?;
    let mut s = spec(URL, "gh");
    s["minRunners"] = json!(1);
    s["listenerTemplate"] = json!({"metadata": {"labels": {"extra": "yes"}},
        "spec": {"containers": [{"name": "listener", "env": [{"name": "FOO", "value": "bar"}]},
                                {"name": "sidecar", "image": "busybox"}],
                 "nodeSelector": {}}});
    h.create_ars("arc", s).await?;
    let name = listener_name("arc", h.ns(), "", URL);
    let pod = listener_pod(&h, &name).await?;

    let al = h.api::<AutoscalingListener>(h.ctrl()).get(&name).await?;
    assert!(
        al.finalizers()
            .iter()
            .any(|f| f == finalizers::AUTOSCALING_LISTENER)
    );
    let sa = h.api::<ServiceAccount>(h.ctrl()).get(&name).await?;
    assert_eq!(sa.owner_references()[0].name, name);
    let role = h.api::<Role>(h.ns()).get(&name).await?;
    let rules = role.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["ephemeralrunnersets".to_owned()][..])
    );
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["arc".to_owned()][..])
    );
    assert_eq!(rules[0].verbs, ["patch"]);
    assert_eq!(
        rules[1].resources.as_deref(),
        Some(
            &[
                "ephemeralrunners".to_owned(),
                "ephemeralrunners/status".to_owned()
            ][..]
        )
    );
    assert_eq!(
        (
            rules[2].resources.as_deref(),
            rules[2].resource_names.as_deref(),
            rules[2].verbs.as_slice()
        ),
        (
            Some(&["autoscalingrunnersets".to_owned()][..]),
            Some(&["arc".to_owned()][..]),
            &["get".to_owned(), "list".to_owned(), "watch".to_owned()][..]
        ),
        "the listener reads and watches its own AutoscalingRunnerSet, for the runner bounds"
    );
    assert_eq!(role.labels()[labels::LISTENER_NAME], name);
    let rb = h.api::<RoleBinding>(h.ns()).get(&name).await?;
    let subject = &rb.subjects.unwrap_or_default()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (name.as_str(), Some(h.ctrl()))
    );

    let config = config_json(&h, &name).await?;
    assert_eq!(config["configure_url"], URL);
    assert_eq!(config["github_token"], "ghp_first");
    assert_eq!(config["ephemeral_runner_set_namespace"], h.ns());
    assert_eq!(config["ephemeral_runner_set_name"], "arc");
    assert_eq!(config["min_runners"], 1);
    assert_eq!(config["max_runners"], 5);
    assert!(
        config["runner_scale_set_id"]
            .as_i64()
            .is_some_and(|id| id > 0)
    );
    assert_eq!(config["metrics_addr"], ":8080");
    assert_eq!(config["health_addr"], "0.0.0.0:8081");

    let spec = pod.spec.clone().unwrap_or_default();
    assert_eq!(spec.service_account_name.as_deref(), Some(name.as_str()));
    assert!(
        spec.node_selector.clone().unwrap_or_default().is_empty(),
        "the template's empty nodeSelector removes the linux default"
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let listener = &spec.containers[0];
    assert_eq!(listener.name, "listener");
    assert_eq!(
        listener.image.as_deref(),
        Some("ghcr.io/arc-rs/controller:test")
    );
    let env: Vec<&str> = listener
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["LISTENER_CONFIG_PATH", "FOO"]);
    assert_eq!(
        listener.ports.as_ref().map(|p| p[0].container_port),
        Some(8080)
    );
    assert_eq!(
        probe_target(listener.liveness_probe.as_ref()),
        Some(("/healthz".to_owned(), 8081))
    );
    assert_eq!(
        probe_target(listener.readiness_probe.as_ref()),
        Some(("/readyz".to_owned(), 8081))
    );
    assert_eq!(spec.containers[1].name, "sidecar");
    assert_eq!(pod.labels().get("extra").map(String::as_str), Some("yes"));
    Ok(())
}

/// Path and port of an httpGet probe.
fn probe_target(probe: Option<&k8s_openapi::api::core::v1::Probe>) -> Option<(String, i32)> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let get = probe?.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(_) => return None,
    };
    Some((get.path.clone().unwrap_or_default(), port))
}

#[tokio::test]
async fn template_probes_replace_the_health_endpoint() -> anyhow::Result<()> {
    let h = Harness::start("al-probes").await?;
    h.pat_secret("gh", "ghp_first").await?;
    let mut s = spec(URL, "gh");
    s["listenerTemplate"] = json!({"spec": {"containers": [{"name": "listener",
        "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 30}}]}});
    h.create_ars("arc", s).await?;
    let name = listener_name("arc", h.ns(), "", URL);
    let pod = listener_pod(&h, &name).await?;
    let config = config_json(&h, &name).await?;
    assert_eq!(
        config["health_addr"], "",
        "the user's probes own the listener's health"
    );
    let spec = pod.spec.clone().unwrap_or_default();
    let listener = &spec.containers[0];
    let liveness = listener.liveness_probe.clone().unwrap_or_default();
    assert_eq!(liveness.period_seconds, Some(30));
    assert!(liveness.exec.is_some() && liveness.http_get.is_none());
    assert!(listener.readiness_probe.is_none());
    let ports: Vec<i32> = listener
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert!(!ports.contains(&8081), "no health port: {ports:?}");
    Ok(())
}

async fn set_pod_status(h: &Harness, name: &str, status: Value) -> anyhow::Result<()> {
    h.api::<Pod>(h.ctrl())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    Ok(())
}

async fn replaced(h: &Harness, name: &str, old_uid: &str) -> anyhow::Result<Pod> {
    let pods = h.api::<Pod>(h.ctrl());
    wait_for("a new listener pod", || async {
        Ok(pods
            .get_opt(name)
            .await?
            .filter(|p| p.uid().as_deref() != Some(old_uid)))
    })
    .await
}

#[tokio::test]
async fn listener_pod_is_recreated_after_exit_eviction_and_deletion() -> anyhow::Result<()> {
    let h = Harness::start("al-restart").await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("arc", spec(URL, "gh")).await?;
    let name = listener_name("arc", h.ns(), "", URL);
    let pod = listener_pod(&h, &name).await?;
    let config_uid = h
        .api::<Secret>(h.ctrl())
        .get(&format!("{name}-config"))
        .await?
        .uid();

    // The listener container exits (transient): replaced at once.
    let uid = pod.uid().unwrap_or_default();
    set_pod_status(
        &h,
        &name,
        json!({"phase": "Failed", "containerStatuses": [{
        "name": "listener", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "message": "arc-listener-exit=transient: boom",
            "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"}}}]}),
    )
    .await?;
    let pod = replaced(&h, &name, &uid).await?;
    let al = h.api::<AutoscalingListener>(h.ctrl()).get(&name).await?;
    let history: Value = serde_json::from_str(
        al.annotations()
            .get(k8s_reconcilers::controllers::autoscaling_listener::RESTART_HISTORY_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("{}"),
    )?;
    assert_eq!(history["consecutive_failures"], 1);

    // Evicted by the cluster: replaced, not charged as a listener failure.
    let uid = pod.uid().unwrap_or_default();
    set_pod_status(
        &h,
        &name,
        json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}),
    )
    .await?;
    let pod = replaced(&h, &name, &uid).await?;
    let al = h.api::<AutoscalingListener>(h.ctrl()).get(&name).await?;
    let history: Value = serde_json::from_str(
        al.annotations()
            .get(k8s_reconcilers::controllers::autoscaling_listener::RESTART_HISTORY_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("{}"),
    )?;
    assert_eq!(
        history["consecutive_failures"], 1,
        "eviction is not a listener failure"
    );

    // Deleted by someone: recreated.
    let uid = pod.uid().unwrap_or_default();
    h.api::<Pod>(h.ctrl())
        .delete(&name, &DeleteParams::default())
        .await?;
    replaced(&h, &name, &uid).await?;
    let config = h
        .api::<Secret>(h.ctrl())
        .get(&format!("{name}-config"))
        .await?;
    assert_eq!(config.uid(), config_uid, "the config Secret is kept");
    Ok(())
}

#[tokio::test]
async fn bad_credentials_exit_backs_off_and_rotation_restarts_at_once() -> anyhow::Result<()> {
    let h = Harness::start("al-auth").await?;
    h.pat_secret("gh", "old-token").await?;
    h.create_ars("arc", spec(URL, "gh")).await?;
    let name = listener_name("arc", h.ns(), "", URL);
    let pod = listener_pod(&h, &name).await?;
    let uid = pod.uid().unwrap_or_default();
    set_pod_status(
        &h,
        &name,
        json!({"phase": "Failed", "containerStatuses": [{
        "name": "listener", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "message": "arc-listener-exit=auth: 401"}}}]}),
    )
    .await?;
    let pods = h.api::<Pod>(h.ctrl());
    wait_for("the failed pod to be removed", || async {
        Ok(pods
            .get_opt(&name)
            .await?
            .filter(|p| p.uid().as_deref() == Some(uid.as_str()))
            .is_none()
            .then_some(()))
    })
    .await?;
    // Deterministic failure: no new pod for a while (backoff 60 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        pods.get_opt(&name).await?.is_none(),
        "no tight restart loop after an auth failure"
    );

    // Rotating the credentials changes the config and restarts the listener at once.
    h.api::<Secret>(h.ns())
        .patch(
            "gh",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"github_token": "new-token"}})),
        )
        .await?;
    // Secrets are not watched: poke the listener so that it reconciles (the ARS re-check or
    // any event does this in production).
    h.api::<AutoscalingListener>(h.ctrl())
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await?;
    listener_pod(&h, &name).await?;
    assert_eq!(config_json(&h, &name).await?["github_token"], "new-token");
    Ok(())
}

/// New runner bounds reach the config Secret, for a listener that starts later, and leave the
/// running listener pod alone: it follows them on the AutoscalingRunnerSet.
#[tokio::test]
async fn new_bounds_update_the_config_and_keep_the_pod() -> anyhow::Result<()> {
    let h = Harness::start("al-bounds").await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("arc", spec(URL, "gh")).await?;
    let name = listener_name("arc", h.ns(), "", URL);
    let uid = listener_pod(&h, &name).await?.uid();
    h.api::<AutoscalingRunnerSet>(h.ns())
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minRunners": 3, "maxRunners": 7}})),
        )
        .await?;
    wait_for("config.json with the new bounds", || async {
        let config = config_json(&h, &name).await?;
        Ok((config["min_runners"] == 3 && config["max_runners"] == 7).then_some(()))
    })
    .await?;
    // A pass that would replace the pod has run by now; give a late one time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.api::<Pod>(h.ctrl()).get(&name).await?.uid(),
        uid,
        "the listener pod was kept"
    );
    Ok(())
}

#[tokio::test]
async fn proxy_secret_and_env_then_full_cleanup() -> anyhow::Result<()> {
    let h = Harness::start("al-proxy").await?;
    h.pat_secret("gh", "t").await?;
    let creds = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("proxy-creds".into()),
            ..Default::default()
        },
        string_data: Some(
            [
                ("username".to_owned(), "test".to_owned()),
                ("password".to_owned(), "password".to_owned()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    h.api::<Secret>(h.ns())
        .create(&Default::default(), &creds)
        .await?;
    let mut s = spec(URL, "gh");
    s["proxy"] = json!({"http": {"url": "http://proxy:3128", "credentialSecretRef": "proxy-creds"},
                        "noProxy": ["example.com", "10.0.0.1"]});
    h.create_ars("arc", s).await?;
    let name = listener_name("arc", h.ns(), "", URL);
    let pod = listener_pod(&h, &name).await?;
    let proxy = h
        .api::<Secret>(h.ctrl())
        .get(&format!("{name}-proxy"))
        .await?;
    let data = proxy.data.unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&data["http_proxy"].0),
        "http://test:password@proxy:3128/"
    );
    assert_eq!(
        String::from_utf8_lossy(&data["no_proxy"].0),
        "example.com,10.0.0.1"
    );
    let env: Vec<String> = pod.spec.unwrap_or_default().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(env, ["LISTENER_CONFIG_PATH", "http_proxy", "no_proxy"]);

    // Deleting the ARS deletes the listener and every child.
    h.api::<AutoscalingRunnerSet>(h.ns())
        .delete("arc", &DeleteParams::default())
        .await?;
    let als = h.api::<AutoscalingListener>(h.ctrl());
    wait_for("the listener to be gone", || async {
        Ok(als.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    let secrets = h.api::<Secret>(h.ctrl());
    for n in [format!("{name}-proxy"), format!("{name}-config")] {
        let s = secrets.get_opt(&n).await?;
        assert!(
            s.is_none_or(|s| s.metadata.deletion_timestamp.is_some()),
            "{n} left behind"
        );
    }
    assert!(h.api::<Role>(h.ns()).get_opt(&name).await?.is_none());
    assert!(h.api::<RoleBinding>(h.ns()).get_opt(&name).await?.is_none());
    Ok(())
}

/// Issue #20 item 2, AutoscalingListener: a child that never goes (here the config Secret, held
/// by another controller's finalizer; a pod on a lost node is the same) does not hold the
/// deletion. After the grace period the listener's finalizer goes, the ARS deletion completes,
/// and the child left behind is reported: a Warning Event naming it and the metric.
#[tokio::test]
async fn a_child_that_never_goes_does_not_hold_the_listener_deletion() -> anyhow::Result<()> {
    use k8s_reconcilers::metrics::Metrics;
    use std::sync::Arc;
    let metrics = Arc::new(Metrics::default());
    let shared = metrics.clone();
    let h = Harness::start_with("al-delbound", move |o| {
        o.deletion_grace = Duration::from_secs(5);
        o.metrics = shared;
    })
    .await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("arc", spec(URL, "gh")).await?;
    let name = listener_name("arc", h.ns(), "", URL);
    listener_pod(&h, &name).await?;
    let secrets = h.api::<Secret>(h.ctrl());
    let config = format!("{name}-config");
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    secrets
        .patch(&config, &PatchParams::default(), &Patch::Merge(&hold))
        .await?;

    let ars = h.api::<AutoscalingRunnerSet>(h.ns());
    ars.delete("arc", &DeleteParams::default()).await?;
    wait_for("the ARS and its listener to be gone", || async {
        let al = h
            .api::<AutoscalingListener>(h.ctrl())
            .get_opt(&name)
            .await?;
        Ok((al.is_none() && ars.get_opt("arc").await?.is_none()).then_some(()))
    })
    .await?;
    suites::warning_event(
        &h.client,
        h.ctrl(),
        &name,
        Some("CleanupAbandoned"),
        "ConfigSecret",
        support::TIMEOUT,
    )
    .await?;
    assert_eq!(
        suites::abandoned_cleanups(&metrics, "autoscalinglistener"),
        1
    );
    let held = secrets.get(&config).await?;
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "the Secret was deleted; only the foreign finalizer holds it"
    );
    let release = json!({"metadata": {"finalizers": null}});
    secrets
        .patch(&config, &PatchParams::default(), &Patch::Merge(&release))
        .await?;
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// The `Ready=False` reason and message of a listener, once it has them.
async fn listener_not_ready(h: &Harness, name: &str) -> anyhow::Result<(String, String)> {
    let api = h.api::<AutoscalingListener>(h.ctrl());
    wait_for(&format!("listener {name} Ready=False"), || async {
        let al = api.get(name).await?;
        Ok(al
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .map(|c| (c.reason, c.message)))
    })
    .await
}

/// Issue #19: a listener whose `spec.autoscalingRunnerSetName` is missing or empty serves
/// nothing. It is reported (`Ready=False` and a Warning Event naming the field, the value and
/// the fix), gets no children and no pod, and can still be deleted. One that names an
/// AutoscalingRunnerSet that does not exist is a leftover: it is deleted, with a Warning Event
/// naming the AutoscalingRunnerSet.
#[tokio::test]
async fn a_listener_naming_no_runner_set_is_reported_and_still_deletable() -> anyhow::Result<()> {
    let h = Harness::start("al-unnamed").await?;
    h.pat_secret("gh", "t").await?;
    let api = h.api::<AutoscalingListener>(h.ctrl());
    let create = |name: &'static str, ars_name: Option<&'static str>| {
        let mut spec = json!({"githubConfigUrl": URL, "githubConfigSecret": "gh",
            "runnerScaleSetId": 1, "autoscalingRunnerSetNamespace": h.ns(),
            "ephemeralRunnerSetName": "arc", "maxRunners": 5, "minRunners": 0});
        if let Some(ars_name) = ars_name {
            spec["autoscalingRunnerSetName"] = json!(ars_name);
        }
        let api = api.clone();
        async move {
            let al: AutoscalingListener = serde_json::from_value(json!({
                "apiVersion": "actions.github.com/v1alpha1", "kind": "AutoscalingListener",
                "metadata": {"name": name}, "spec": spec}))?;
            api.create(&Default::default(), &al).await?;
            anyhow::Ok(())
        }
    };
    for (name, ars_name, value) in [
        ("no-name", None, "is missing"),
        ("empty-name", Some(""), "is \"\", not an object name"),
    ] {
        create(name, ars_name).await?;
        let fix = "set both to its namespace and name, or delete this AutoscalingListener";
        let (reason, message) = listener_not_ready(&h, name).await?;
        assert_eq!(reason, "InvalidConfiguration", "{message}");
        assert!(
            message.starts_with(&format!("spec.autoscalingRunnerSetName {value}:"))
                && message.contains(fix),
            "the field, the value and the fix: {message}"
        );
        suites::warning_event(
            &h.client,
            h.ctrl(),
            name,
            Some("InvalidConfiguration"),
            fix,
            support::TIMEOUT,
        )
        .await?;
        // The pass that reported it made nothing, and nothing retries it until it changes.
        assert!(h.api::<Pod>(h.ctrl()).get_opt(name).await?.is_none());
        assert!(
            h.api::<ServiceAccount>(h.ctrl())
                .get_opt(name)
                .await?
                .is_none()
        );
        let al = api.get(name).await?;
        assert!(
            al.finalizers()
                .iter()
                .any(|f| f == finalizers::AUTOSCALING_LISTENER),
            "taken in, not deleted"
        );
        api.delete(name, &DeleteParams::default()).await?;
        wait_for(&format!("listener {name} to be gone"), || async {
            Ok(api.get_opt(name).await?.is_none().then_some(()))
        })
        .await?;
    }

    create("ghost", Some("no-such-set")).await?;
    suites::warning_event(
        &h.client,
        h.ctrl(),
        "ghost",
        Some("AutoscalingRunnerSetNotFound"),
        "spec.autoscalingRunnerSetName \"no-such-set\" name no AutoscalingRunnerSet",
        support::TIMEOUT,
    )
    .await?;
    wait_for("the leftover listener to be gone", || async {
        Ok(api.get_opt("ghost").await?.is_none().then_some(()))
    })
    .await?;
    assert!(h.api::<Pod>(h.ctrl()).get_opt("ghost").await?.is_none());
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// Issue #19: ARC's CRDs leave `spec` optional and give it no default (its facts digest names
/// no required field at the top, and controller-gen writes no defaults), so with ARC's CRDs
/// still installed (Helm does not upgrade CRDs) an object can be stored without `spec`. The
/// typed watch reads it (a decode error would fail every list of the kind and stall the
/// controller) and the listener is reported like any other that names no AutoscalingRunnerSet.
/// Runs on a control plane of its own, whose AutoscalingListener CRD has ARC's top level.
#[tokio::test]
async fn a_listener_stored_without_spec_under_arcs_crd_is_read_and_reported() -> anyhow::Result<()>
{
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DynamicObject, PostParams};
    use kube::core::{ApiResource, GroupVersionKind};
    use kube::runtime::wait::{await_condition, conditions};
    use testbed::{ControlPlane, ControlPlaneOptions};

    let facts = std::fs::read_to_string(
        suites::helm::workspace_root().join("tests/suites/data/arc-0.14.2/crd-facts.tsv"),
    )?;
    let top_level_required: Vec<&str> = facts
        .lines()
        .filter(|l| {
            l.starts_with("AutoscalingListener\t\t") || l.starts_with("AutoscalingListener\t.\t")
        })
        .collect();
    assert!(
        top_level_required.is_empty(),
        "ARC's AutoscalingListener requires nothing at the top: {top_level_required:?}"
    );

    let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let client = cp.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for mut crd in k8s_reconcilers::crd::all() {
        if crd.spec.names.kind == "AutoscalingListener" {
            for version in &mut crd.spec.versions {
                let spec = version
                    .schema
                    .as_mut()
                    .and_then(|s| s.open_api_v3_schema.as_mut())
                    .and_then(|s| s.properties.as_mut())
                    .and_then(|p| p.get_mut("spec"));
                if let Some(spec) = spec {
                    spec.default = None;
                }
            }
        }
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.create(&PostParams::default(), &crd).await?;
        tokio::time::timeout(
            support::TIMEOUT,
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await??;
    }
    let ctrl = cp.test_namespace("al-nospec-ctrl").await?;
    let runners = cp.test_namespace("al-nospec-run").await?;
    let service = k8s_reconcilers::github::memory::MemoryService::new();
    let mut options = k8s_reconcilers::ManagerOptions::new(
        ctrl.name(),
        "ghcr.io/arc-rs/controller:test",
        service.connector(),
    );
    options.watch_namespace = Some(runners.name().to_owned());
    let controllers = tokio::spawn(k8s_reconcilers::run(client.clone(), options));

    let gvk = GroupVersionKind::gvk("actions.github.com", "v1alpha1", "AutoscalingListener");
    let raw: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ctrl.name(), &ApiResource::from_gvk(&gvk));
    let stored = raw
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "actions.github.com/v1alpha1",
                "kind": "AutoscalingListener", "metadata": {"name": "no-spec"}}))?,
        )
        .await?;
    assert!(
        stored.data.get("spec").is_none(),
        "stored without spec, as under ARC's CRD: {:?}",
        stored.data
    );
    // Read untyped: what the controller did, not whether this test can decode it.
    let message = wait_for("the spec-less listener Ready=False", || async {
        let listener = raw.get("no-spec").await?;
        Ok(listener.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "False")
            .map(|c| c["message"].as_str().unwrap_or_default().to_owned()))
    })
    .await?;
    assert!(
        message.starts_with("spec.autoscalingRunnerSetNamespace is missing:"),
        "{message}"
    );
    raw.delete("no-spec", &DeleteParams::default()).await?;
    wait_for("the spec-less listener to be gone", || async {
        Ok(raw.get_opt("no-spec").await?.is_none().then_some(()))
    })
    .await?;
    assert!(!controllers.is_finished(), "the controllers never stopped");
    controllers.abort();
    Ok(())
}
