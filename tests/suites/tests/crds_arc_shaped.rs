//! ARC-shaped manifests of every kind, applied with server-side apply on the test-bed API server
//! and reconciled by the controllers against the Actions-service emulator over HTTPS: with every
//! optional field omitted (ARC's CRDs accept them, so ours must) and with every field set.

#![recursion_limit = "256"]

#[path = "reconciler_ars_support/mod.rs"]
mod support;

use std::collections::BTreeMap;

use actions_emulator::{Emulator, EmulatorConfig};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_reconcilers::crd::{
    AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet,
};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use support::{Harness, wait_for};

const KINDS: [&str; 4] = [
    "AutoscalingRunnerSet",
    "EphemeralRunnerSet",
    "EphemeralRunner",
    "AutoscalingListener",
];

fn dynamic(h: &Harness, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("actions.github.com", "v1alpha1", kind);
    Api::namespaced_with(h.client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Server-side apply, as `kubectl apply --server-side` does.
async fn apply(h: &Harness, ns: &str, manifest: Value) -> anyhow::Result<DynamicObject> {
    let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
    let name = manifest["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let params = PatchParams::apply("kubectl").force();
    dynamic(h, ns, &kind)
        .patch(&name, &params, &Patch::Apply(&manifest))
        .await
        .map_err(|e| anyhow::anyhow!("applying {kind} {name}: {e}"))
}

/// The `Ready=False` message of an object's status, once it has one.
/// How many objects of kind `K` the typed API lists in `ns`.
async fn count<K>(h: &Harness, ns: &str) -> anyhow::Result<usize>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(h.api::<K>(ns).list(&Default::default()).await?.items.len())
}

async fn not_ready(h: &Harness, ns: &str, kind: &str, name: &str) -> anyhow::Result<String> {
    let api = dynamic(h, ns, kind);
    wait_for(&format!("{kind} {name} Ready=False"), || async {
        let obj = api.get(name).await?;
        let conditions = obj.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(conditions
            .into_iter()
            .find(|c| c["type"] == "Ready" && c["status"] == "False")
            .map(|c| c["message"].as_str().unwrap_or_default().to_owned()))
    })
    .await
}

#[tokio::test]
async fn arc_manifests_without_optional_fields_apply_and_are_reported() -> anyhow::Result<()> {
    let h = Harness::start_with("arcmin", |o| {
        o.connector =
            std::sync::Arc::new(k8s_reconcilers::github::ActionsClientConnector::new("test"));
    })
    .await?;
    for kind in KINDS {
        let name = format!("min-{}", kind.to_lowercase());
        // ARC's CRDs require nothing at the top: no spec at all. Listeners live in the
        // controller's namespace.
        let stored = apply(
            &h,
            if kind == "AutoscalingListener" {
                h.ctrl()
            } else {
                h.ns()
            },
            json!({"apiVersion": "actions.github.com/v1alpha1", "kind": kind,
                   "metadata": {"name": name}}),
        )
        .await?;
        assert_eq!(
            stored.data["spec"],
            json!({}),
            "{kind}: stored with an empty spec"
        );
    }
    // Each typed API reads them (the controllers' watches would fail on an undecodable one).
    assert_eq!(count::<AutoscalingRunnerSet>(&h, h.ns()).await?, 1);
    assert_eq!(count::<EphemeralRunnerSet>(&h, h.ns()).await?, 1);
    assert_eq!(count::<EphemeralRunner>(&h, h.ns()).await?, 1);
    assert_eq!(count::<AutoscalingListener>(&h, h.ctrl()).await?, 1);

    let message = not_ready(
        &h,
        h.ns(),
        "AutoscalingRunnerSet",
        "min-autoscalingrunnerset",
    )
    .await?;
    assert!(
        message.contains("spec."),
        "the message names the field: {message}"
    );
    let message = not_ready(&h, h.ns(), "EphemeralRunner", "min-ephemeralrunner").await?;
    assert!(
        message.contains("spec."),
        "the message names the field: {message}"
    );
    // A listener with an empty spec names no AutoscalingRunnerSet to serve: reported, kept.
    let message = not_ready(
        &h,
        h.ctrl(),
        "AutoscalingListener",
        "min-autoscalinglistener",
    )
    .await?;
    assert!(
        message.starts_with("spec.autoscalingRunnerSetNamespace is missing"),
        "the message names the field: {message}"
    );
    // A runner set with an empty spec has nothing to do; it is taken in (the finalizer) and
    // left alone.
    for (ns, kind, name) in [
        (h.ctrl(), "AutoscalingListener", "min-autoscalinglistener"),
        (h.ns(), "EphemeralRunnerSet", "min-ephemeralrunnerset"),
    ] {
        let api = dynamic(&h, ns, kind);
        wait_for(&format!("{kind} {name} reconciled"), || async {
            let obj = api.get(name).await?;
            Ok((!obj.metadata.finalizers.unwrap_or_default().is_empty()).then_some(()))
        })
        .await?;
    }
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// Every field of ARC's AutoscalingRunnerSet but vaultConfig (its Key Vault is another suite's),
/// pointing at the emulator over HTTPS through githubServerTLS.
fn full_ars(url: &str) -> Value {
    let meta = json!({"labels": {"walk": "yes"}, "annotations": {"walk": "yes"}});
    json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": "full", "labels": {"app.kubernetes.io/version": "0.14.2"},
            "annotations": {"actions.github.com/cleanup-github-secret-name": "gh"}},
        "spec": {
            "githubConfigUrl": url,
            "githubConfigSecret": "gh",
            "runnerGroup": "default",
            "runnerScaleSetName": "full-set",
            "runnerScaleSetLabels": ["linux", "x64"],
            "minRunners": 1,
            "maxRunners": 3,
            "proxy": {"http": {"url": "http://proxy.invalid:3128", "credentialSecretRef": "proxy-creds"},
                      "https": {"url": "http://proxy.invalid:3128", "credentialSecretRef": "proxy-creds"},
                      "noProxy": ["127.0.0.1", "localhost"]},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}},
            "listenerMetrics": {
                "counters": {"gha_started_jobs_total": {"labels": ["repository"]}},
                "gauges": {"gha_busy_runners": {"labels": ["name", "namespace"]}},
                "histograms": {"gha_job_startup_duration_seconds": {"labels": ["repository"], "buckets": [0.5, 2.5]}}},
            "listenerTemplate": {"metadata": {"labels": {"l": "1"}},
                "spec": {"containers": [{"name": "listener", "resources": {"limits": {"cpu": "500m"}}}]}},
            "autoscalingListener": meta,
            "ephemeralRunnerMetadata": meta,
            "ephemeralRunnerSetMetadata": meta,
            "ephemeralRunnerConfigSecretMetadata": meta,
            "listenerConfigSecretMetadata": meta,
            "listenerRoleMetadata": meta,
            "listenerRoleBindingMetadata": meta,
            "listenerServiceAccountMetadata": meta,
            "template": {
                "metadata": {"labels": {"runner": "yes"}, "annotations": {"a": "b"}},
                "spec": {
                    "restartPolicy": "Never",
                    "imagePullSecrets": [{"name": "pull"}],
                    "containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
                        "command": ["/home/runner/run.sh"],
                        "env": [{"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "github_token"}}}],
                        "envFrom": [{"configMapRef": {"name": "ca", "optional": true}}],
                        "ports": [{"containerPort": 8080}],
                        "volumeMounts": [{"name": "work", "mountPath": "/home/runner/_work"}]}],
                    "volumes": [{"name": "work", "emptyDir": {}},
                                {"name": "cfg", "configMap": {"name": "ca", "optional": true}}]
                }
            }
        }
    })
}

#[tokio::test]
async fn arc_manifests_with_every_field_apply_and_reconcile() -> anyhow::Result<()> {
    let emulator = Emulator::start_tls(EmulatorConfig::default()).await?;
    let h = Harness::start_with("arcfull", |o| {
        o.connector =
            std::sync::Arc::new(k8s_reconcilers::github::ActionsClientConnector::new("test"));
    })
    .await?;
    let ca = emulator.ca_pem().expect("TLS emulator CA").to_owned();
    h.api::<ConfigMap>(h.ns())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "ca"}, "data": {"ca.crt": ca}}))?,
        )
        .await?;
    h.pat_secret("gh", emulator.pat().expose_secret()).await?;
    h.api::<Secret>(h.ns())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "proxy-creds"},
                "stringData": {"username": "u", "password": "p"}}))?,
        )
        .await?;

    apply(&h, h.ns(), full_ars(&emulator.org_url("org"))).await?;
    // The controllers make the listener and the runner set, and the set its minimum runner.
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    let listeners = h.api::<AutoscalingListener>(h.ctrl());
    let listener = wait_for("the listener of the full ARS", || async {
        Ok(listeners
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    let sets = h.api::<EphemeralRunnerSet>(h.ns());
    let set = wait_for("the runner set of the full ARS", || async {
        Ok(sets
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    let ars = ars_api.get("full").await?;
    let conditions = ars.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        !conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False"),
        "{conditions:?}"
    );

    // What the controllers made from it, applied by another field manager as ARC-shaped
    // manifests with every field: the API server stores them as applied. (A runner's spec is
    // the set's ephemeralRunnerSpec.)
    let set = serde_json::to_value(&set)?;
    for (ns, kind, spec) in [
        (h.ns(), "EphemeralRunnerSet", set["spec"].clone()),
        (
            h.ns(),
            "EphemeralRunner",
            set["spec"]["ephemeralRunnerSpec"].clone(),
        ),
        (
            h.ctrl(),
            "AutoscalingListener",
            serde_json::to_value(&listener)?["spec"].clone(),
        ),
    ] {
        let fields: BTreeMap<String, Value> = serde_json::from_value(spec.clone())?;
        assert!(
            fields.len() >= 3,
            "{kind}: the controllers set its fields: {fields:?}"
        );
        let manifest = json!({"apiVersion": "actions.github.com/v1alpha1", "kind": kind,
            "metadata": {"name": format!("copy-{}", kind.to_lowercase())}, "spec": spec});
        let stored = apply(&h, ns, manifest.clone()).await?;
        assert_eq!(
            stored.data["spec"], manifest["spec"],
            "{kind}: stored as applied"
        );
    }
    // The copied runner is taken in by the controller (its finalizers).
    let runners = h.api::<EphemeralRunner>(h.ns());
    wait_for("the copied runner taken in", || async {
        let runner = runners.get("copy-ephemeralrunner").await?;
        Ok((!runner.finalizers().is_empty()).then_some(()))
    })
    .await?;
    // One runner, as the listener asks for it: the set makes it from the full spec, and the
    // runner registers with the emulator (its JIT config Secret).
    let patch = json!({"spec": {"replicas": 1, "patchID": 1}});
    sets.patch(
        set["metadata"]["name"].as_str().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    let secrets = h.api::<Secret>(h.ns());
    wait_for("the runner's JIT config Secret", || async {
        for runner in runners.list(&Default::default()).await?.items {
            let name = runner.name_any();
            if name != "copy-ephemeralrunner" && secrets.get_opt(&name).await?.is_some() {
                return Ok(Some(()));
            }
        }
        Ok(None)
    })
    .await?;
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}
