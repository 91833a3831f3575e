//! Listener pods: the simulator runs the real listener binary as a child process, with its
//! config.json materialised from the pod's Secret volume, LISTENER_CONFIG_PATH pointing at it,
//! and a kubeconfig for the pod's ServiceAccount (TokenRequest), so the listener patches the
//! EphemeralRunnerSet with exactly its Role. Deleting the pod sends SIGTERM: the listener
//! deletes its message session and exits 0 before the pod is removed.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use actions_client::{ActionsClient, Credentials, DEFAULT_RUNNER_GROUP_ID, NewRunnerScaleSet};
use actions_emulator::{Emulator, EmulatorConfig, JobSpec, SessionState};
use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::{conditions, wait::await_condition};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use support::{create, phase, pod, simulator, wait_pod};
use testbed::ControlPlane;

const SET: &str = "arc-set";
const SA: &str = "arc-set-listener";
const LABEL: &str = "nodesim-listener";

fn ers() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.github.com", "v1alpha1", "EphemeralRunnerSet"),
        "ephemeralrunnersets",
    )
}

async fn ensure_crd(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "ephemeralrunnersets.actions.github.com";
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": name },
        "spec": { "group": "actions.github.com", "scope": "Namespaced",
            "names": { "kind": "EphemeralRunnerSet", "plural": "ephemeralrunnersets",
                       "singular": "ephemeralrunnerset", "listKind": "EphemeralRunnerSetList" },
            "versions": [{ "name": "v1alpha1", "served": true, "storage": true, "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }] },
    }))?;
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .context("the CRD was not established")??;
    Ok(())
}

async fn apply(
    client: &kube::Client,
    res: &ApiResource,
    ns: &str,
    obj: Value,
) -> anyhow::Result<()> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, res)
        .patch(
            &name,
            &PatchParams::apply("nodesim-test").force(),
            &Patch::Apply(obj),
        )
        .await
        .with_context(|| format!("applying {} {name}", res.kind))?;
    Ok(())
}

fn rbac(kind: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
        &format!("{}s", kind.to_lowercase()),
    )
}

#[tokio::test]
async fn a_listener_pod_runs_the_listener_binary_with_its_service_account() -> anyhow::Result<()> {
    let listener = support::listener_binary()?;
    let cp = ControlPlane::shared_with_scheduling().await?;
    let admin = cp.client();
    ensure_crd(&admin).await?;
    let ns = cp.test_namespace("nodesim-listener").await?;
    let name = ns.name().to_owned();
    let sim = simulator(cp, &name, |c| {
        c.listener_binary = Some(listener);
    })
    .await?;
    let node = sim.node_names()[0].clone();

    let emu = Emulator::start(EmulatorConfig::default()).await?;
    emu.update_config(|c| c.long_poll_hold = Duration::from_secs(1));
    let actions =
        ActionsClient::builder(emu.org_url("octo-org"), Credentials::pat(emu.pat())?).build()?;
    let set = actions
        .create_runner_scale_set(
            &NewRunnerScaleSet::new(SET, DEFAULT_RUNNER_GROUP_ID).with_labels([LABEL]),
        )
        .await?;

    apply(
        &admin,
        &ers(),
        &name,
        json!({
        "apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunnerSet",
        "metadata": { "name": SET, "namespace": name }, "spec": { "replicas": 0, "patchID": 0 } }),
    )
    .await?;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(admin.clone(), &name);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": SA } }))?,
        )
        .await?;
    apply(&admin, &rbac("Role"), &name, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": SA, "namespace": name },
        "rules": [
            { "apiGroups": ["actions.github.com"], "resources": ["ephemeralrunnersets"], "resourceNames": [SET], "verbs": ["patch"] },
            { "apiGroups": ["actions.github.com"], "resources": ["ephemeralrunners", "ephemeralrunners/status"], "verbs": ["patch"] },
        ] })).await?;
    apply(&admin, &rbac("RoleBinding"), &name, json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": SA, "namespace": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA },
        "subjects": [{ "kind": "ServiceAccount", "name": SA, "namespace": name }] })).await?;

    let config = json!({
        "configure_url": emu.org_url("octo-org"), "github_token": emu.pat().expose_secret(),
        "ephemeral_runner_set_namespace": name, "ephemeral_runner_set_name": SET,
        "max_runners": 5, "min_runners": 0, "runner_scale_set_id": set.id, "runner_scale_set_name": SET,
        "log_level": "debug", "log_format": "text",
    });
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "listener-config" }, "stringData": { "config.json": config.to_string() },
    }))?;
    Api::<Secret>::namespaced(admin.clone(), &name)
        .create(&PostParams::default(), &secret)
        .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &name);
    create(&pods, &pod(&node, "arc-set-listener", json!({
        "serviceAccountName": SA,
        "terminationGracePeriodSeconds": 60,
        "containers": [{
            "name": "listener", "image": "ghcr.io/actions/gha-runner-scale-set-controller:0.13.0",
            "command": ["/ghalistener"],
            "env": [{ "name": "LISTENER_CONFIG_PATH", "value": "/etc/gha-listener/config.json" }],
            "volumeMounts": [{ "name": "listener-config", "mountPath": "/etc/gha-listener", "readOnly": true }],
        }],
        "volumes": [{ "name": "listener-config", "secret": { "secretName": "listener-config" } }],
    }))).await?;

    let log = || {
        sim.container_log(&name, "arc-set-listener", "listener")
            .unwrap_or_default()
    };
    let session = emu
        .wait_until(support::WAIT, |s| s.active_session(set.id).is_some())
        .await
        .with_context(|| {
            format!(
                "the listener never opened a session; its output:\n{}",
                log()
            )
        })?;
    assert!(session.active_session(set.id).is_some());
    let running = pods.get("arc-set-listener").await?;
    assert_eq!(phase(&running), "Running", "{:?}", running.status);

    emu.queue_job(JobSpec::with_labels([LABEL]));
    let sets = Api::<DynamicObject>::namespaced_with(admin.clone(), &name, &ers());
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let replicas = sets
            .get(SET)
            .await?
            .data
            .pointer("/spec/replicas")
            .and_then(Value::as_i64);
        if replicas == Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never scaled the EphemeralRunnerSet (replicas {replicas:?}); its output:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    pods.delete("arc-set-listener", &DeleteParams::default())
        .await?;
    wait_pod(&pods, "arc-set-listener", "removed", |p| {
        p.is_none().then_some(())
    })
    .await?;
    let snap = emu.snapshot();
    assert!(
        snap.sessions
            .iter()
            .filter(|s| s.scale_set_id == set.id)
            .all(|s| s.state == SessionState::Deleted),
        "SIGTERM made the listener delete its session: {:?}; its output:\n{}",
        snap.sessions,
        log()
    );
    sim.shutdown().await;
    Ok(())
}
