//! The committed CRD YAML matches the Rust types, carries the list and map markers the test-bed
//! API server declares for the Kubernetes types it embeds, installs on that server, and accepts
//! an ARC user's AutoscalingRunnerSet manifest unchanged.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_reconcilers::crd::{
    self, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet, markers,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use testbed::ControlPlane;

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn committed_crd_yaml_is_up_to_date() -> anyhow::Result<()> {
    let dir = suites::helm::workspace_root().join("charts/gha-runner-scale-set-controller/crds");
    let rendered = crd::render_yaml()?;
    let mut expected_names = BTreeSet::new();
    for (name, yaml) in &rendered {
        expected_names.insert(name.clone());
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == *yaml,
            "{}/{name} is stale or missing: run `cargo xtask crds` and commit the result",
            dir.display()
        );
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present,
        expected_names,
        "unexpected files in {}",
        dir.display()
    );
    assert_eq!(
        expected_names,
        BTreeSet::from([
            "actions.github.com_autoscalinglisteners.yaml".to_owned(),
            "actions.github.com_autoscalingrunnersets.yaml".to_owned(),
            "actions.github.com_ephemeralrunners.yaml".to_owned(),
            "actions.github.com_ephemeralrunnersets.yaml".to_owned(),
        ])
    );
    Ok(())
}

#[test]
fn crds_have_arc_names_columns_and_only_a_status_subresource() {
    for def in crd::all() {
        assert_eq!(def.spec.group, "actions.github.com");
        assert_eq!(def.spec.scope, "Namespaced");
        assert!(
            def.spec
                .names
                .short_names
                .as_ref()
                .is_none_or(Vec::is_empty)
        );
        assert_eq!(def.spec.versions.len(), 1);
        let v = &def.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        assert!(
            sub.scale.is_none(),
            "{} must not have a scale subresource",
            def.spec.names.kind
        );
    }
    let ars = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == "AutoscalingRunnerSet")
        .expect("ARS");
    let cols: Vec<(String, String)> = ars.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.json_path))
        .collect();
    assert_eq!(
        cols,
        [
            ("Minimum Runners", ".spec.minRunners"),
            ("Maximum Runners", ".spec.maxRunners"),
            ("Current Runners", ".status.currentRunners"),
            ("Phase", ".status.phase"),
            ("Pending Runners", ".status.pendingEphemeralRunners"),
            ("Running Runners", ".status.runningEphemeralRunners"),
            ("Finished Runners", ".status.finishedEphemeralRunners"),
            ("Deleting Runners", ".status.deletingEphemeralRunners"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

/// Where each CRD embeds a Kubernetes type, and which.
const EMBEDDINGS: [(&str, &str, &str); 9] = [
    (
        "AutoscalingRunnerSet",
        "spec.template",
        markers::POD_TEMPLATE_SPEC,
    ),
    (
        "AutoscalingRunnerSet",
        "spec.listenerTemplate",
        markers::POD_TEMPLATE_SPEC,
    ),
    (
        "AutoscalingRunnerSet",
        "spec.githubServerTLS.certificateFrom.configMapKeyRef",
        markers::CONFIG_MAP_KEY_SELECTOR,
    ),
    (
        "AutoscalingListener",
        "spec.template",
        markers::POD_TEMPLATE_SPEC,
    ),
    (
        "AutoscalingListener",
        "spec.imagePullSecrets[]",
        markers::LOCAL_OBJECT_REFERENCE,
    ),
    (
        "EphemeralRunnerSet",
        "spec.ephemeralRunnerSpec",
        markers::POD_TEMPLATE_SPEC,
    ),
    ("EphemeralRunner", "spec", markers::POD_TEMPLATE_SPEC),
    (
        "EphemeralRunner",
        "spec.githubServerTLS.certificateFrom.configMapKeyRef",
        markers::CONFIG_MAP_KEY_SELECTOR,
    ),
    (
        "EphemeralRunnerSet",
        "spec.ephemeralRunnerSpec.githubServerTLS.certificateFrom.configMapKeyRef",
        markers::CONFIG_MAP_KEY_SELECTOR,
    ),
];

#[test]
fn every_embedded_kubernetes_type_carries_its_list_and_map_markers() {
    let committed = markers::committed();
    for (kind, at, embedded) in EMBEDDINGS {
        let def = crd::all()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .expect("kind");
        let mut schema =
            serde_json::to_value(&def.spec.versions[0].schema).expect("json")["openAPIV3Schema"]
                .clone();
        let expected = &committed.types[embedded];
        assert!(!expected.is_empty(), "no markers committed for {embedded}");
        for marker in expected {
            let path = marker.path_under(at);
            let node = markers::node_at(&mut schema, &path)
                .unwrap_or_else(|| panic!("{kind}: no schema at {path}"));
            let get = |key: &str| node.get(key).cloned();
            assert_eq!(
                get("x-kubernetes-list-type"),
                marker.list_type.clone().map(Into::into),
                "{kind} {path}"
            );
            assert_eq!(
                get("x-kubernetes-list-map-keys"),
                marker.list_map_keys.clone().map(Into::into),
                "{kind} {path}"
            );
            assert_eq!(
                get("x-kubernetes-map-type"),
                marker.map_type.clone().map(Into::into),
                "{kind} {path}"
            );
            // The root spec's default ({}) is crd::all's, checked by crds_arc::spec_is_optional_as_in_arc.
            if path != "spec" {
                assert_eq!(get("default"), marker.default.clone(), "{kind} {path}");
            }
            for name in marker.optional.iter().flatten() {
                let required = get("required").unwrap_or_default();
                assert!(
                    !required
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r == name.as_str())),
                    "{kind} {path}: {name} is defaulted by Kubernetes and must not be required"
                );
            }
        }
    }
}

#[tokio::test]
async fn committed_markers_are_what_the_newest_api_server_declares() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    if cp.release() != Some(testbed::NEWEST) {
        println!(
            "skipped: the markers are read from Kubernetes {}",
            testbed::NEWEST.version
        );
        return Ok(());
    }
    let served = markers::served(&cp.client()).await?;
    assert!(
        served == *markers::committed(),
        "k8s-reconcilers/src/crd/kubernetes_markers.json differs from what {} declares: run \
         `cargo xtask crds` and commit the result",
        served.source
    );
    Ok(())
}

/// An AutoscalingRunnerSet as ARC's scale-set chart renders it (fields from ARC's docs).
fn arc_manifest(ns: &str) -> serde_json::Value {
    json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": "arc-runner-set", "namespace": ns,
            "labels": {"app.kubernetes.io/version": "0.14.2"},
            "annotations": {"actions.github.com/cleanup-github-secret-name": "arc-runner-set-gha-rs-github-secret"}},
        "spec": {
            "githubConfigUrl": "https://github.com/my-org/my-repo",
            "githubConfigSecret": "arc-runner-set-gha-rs-github-secret",
            "runnerGroup": "my-group",
            "runnerScaleSetName": "my-set",
            "runnerScaleSetLabels": ["linux", "x64"],
            "minRunners": 1,
            "maxRunners": 5,
            "proxy": {"http": {"url": "http://proxy:3128", "credentialSecretRef": "proxy-creds"},
                      "https": {"url": "http://proxy:3128"}, "noProxy": ["example.com"]},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}},
            "listenerMetrics": {"counters": {"gha_started_jobs_total": {"labels": ["repository"]}},
                                "histograms": {"gha_job_startup_duration_seconds": {"labels": ["repository"], "buckets": [0.5, 2.5]}}},
            "listenerTemplate": {"spec": {"containers": [{"name": "listener", "resources": {"limits": {"cpu": "500m"}}}],
                                          "nodeSelector": {}}},
            "autoscalingListener": {"labels": {"team": "ci"}},
            "ephemeralRunnerMetadata": {"annotations": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"runner": "yes"}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "arc-runner-set-gha-rs-no-permission",
                    "initContainers": [{"name": "init-dind-externals", "image": "ghcr.io/actions/actions-runner:latest",
                        "command": ["cp", "-r", "/home/runner/externals/.", "/home/runner/tmpDir/"],
                        "volumeMounts": [{"name": "dind-externals", "mountPath": "/home/runner/tmpDir"}]}],
                    "containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
                        "command": ["/home/runner/run.sh"],
                        "env": [{"name": "DOCKER_HOST", "value": "unix:///var/run/docker.sock"}],
                        "resources": {"requests": {"memory": "1Gi", "cpu": 1}},
                        "securityContext": {"privileged": true}}],
                    "volumes": [{"name": "dind-externals", "emptyDir": {}},
                                {"name": "work", "ephemeral": {"volumeClaimTemplate": {"spec": {
                                    "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                                    "resources": {"requests": {"storage": "1Gi"}}}}}}]
                }
            }
        }
    })
}

#[tokio::test]
async fn crds_install_on_the_test_bed_and_accept_an_arc_manifest() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client();
    crd::install(&client, TIMEOUT).await?;
    // Installing twice (an upgrade with unchanged CRDs) is accepted.
    crd::install(&client, TIMEOUT).await?;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for def in crd::all() {
        let name = def.metadata.name.clone().unwrap_or_default();
        let live = crds.get(&name).await?;
        assert_eq!(live.spec.names.kind, def.spec.names.kind);
    }

    let ns = cp.test_namespace("crds").await?;
    let manifest = arc_manifest(ns.name());
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(client.clone(), ns.name());
    let created: AutoscalingRunnerSet = ars_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(manifest.clone())?,
        )
        .await?;
    let spec = &created.spec;
    assert_eq!(
        spec.github_config_url.as_deref(),
        Some("https://github.com/my-org/my-repo")
    );
    assert_eq!(spec.min_runners, Some(1));
    assert_eq!(spec.max_runners, Some(5));
    let template = spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .expect("template kept");
    assert_eq!(template.containers[0].name, "runner");
    assert!(
        template.volumes.as_ref().is_some_and(|v| v.len() == 2),
        "volumes survive pruning"
    );
    let tls = spec
        .github_server_tls
        .as_ref()
        .and_then(|t| t.certificate_from.as_ref());
    assert_eq!(
        tls.and_then(|c| c.config_map_key_ref.as_ref())
            .map(|r| r.key.as_str()),
        Some("ca.crt")
    );
    assert_eq!(
        spec.listener_template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.node_selector.clone()),
        Some(Default::default()),
        "an explicitly empty nodeSelector is kept"
    );

    // The same manifest as untyped JSON reads back field for field (nothing pruned).
    let gvk =
        kube::api::GroupVersionKind::gvk("actions.github.com", "v1alpha1", "AutoscalingRunnerSet");
    let ar = kube::api::ApiResource::from_gvk(&gvk);
    let dyn_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &ar);
    let raw = dyn_api.get("arc-runner-set").await?;
    let mut expected_spec = manifest["spec"].clone();
    // The API server normalises the quantity `1` to "1".
    expected_spec["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("1");
    assert_eq!(raw.data["spec"], expected_spec);

    // minRunners must not be negative.
    let mut bad = manifest.clone();
    bad["metadata"]["name"] = json!("negative");
    bad["spec"]["minRunners"] = json!(-1);
    let err = dyn_api
        .create(&PostParams::default(), &serde_json::from_value(bad)?)
        .await
        .expect_err("minRunners=-1 must be refused");
    assert!(err.to_string().contains("minRunners"), "{err}");

    // Status subresource: counters are always serialised.
    let status = json!({"status": {"currentRunners": 0, "phase": "Running", "pendingEphemeralRunners": 0,
        "runningEphemeralRunners": 0, "failedEphemeralRunners": 0}});
    let patched = ars_api
        .patch_status(
            "arc-runner-set",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    assert_eq!(patched.status.map(|s| s.phase), Some("Running".to_owned()));

    // EphemeralRunnerSet and EphemeralRunner round-trip the listener contract fields.
    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(client.clone(), ns.name());
    let ers: EphemeralRunnerSet = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunnerSet",
        "metadata": {"name": "arc-runner-set"},
        "spec": {"replicas": 3, "patchID": 0, "ephemeralRunnerSpec": {
            "githubConfigUrl": "https://github.com/my-org", "githubConfigSecret": "s", "runnerScaleSetId": 7,
            "metadata": {"labels": {"x": "y"}},
            "spec": {"containers": [{"name": "runner", "image": "img"}]}}}
    }))?;
    let ers = ers_api.create(&PostParams::default(), &ers).await?;
    assert_eq!((ers.spec.replicas, ers.spec.patch_id), (3, 0));
    assert_eq!(ers.spec.ephemeral_runner_spec.runner_scale_set_id, 7);
    let pod = ers
        .spec
        .ephemeral_runner_spec
        .pod_template
        .spec
        .as_ref()
        .expect("inlined pod spec");
    assert_eq!(pod.containers[0].image.as_deref(), Some("img"));

    let er_api: Api<EphemeralRunner> = Api::namespaced(client.clone(), ns.name());
    let mut er = EphemeralRunner::new("r1", ers.spec.ephemeral_runner_spec.clone());
    er.metadata.namespace = Some(ns.name().to_owned());
    er_api.create(&PostParams::default(), &er).await?;
    let job =
        json!({"status": {"jobId": "42", "jobRequestId": 9, "workflowRunId": 11, "ready": false}});
    let er = er_api
        .patch_status("r1", &PatchParams::default(), &Patch::Merge(&job))
        .await?;
    let st = er.status.expect("status");
    assert_eq!(
        (st.job_id.as_str(), st.job_request_id, st.workflow_run_id),
        ("42", 9, 11)
    );
    Ok(())
}

/// Two appliers of one runner template each own their own container: server-side apply merges
/// `containers` by name (the list-map marker), as it does on a Pod, instead of the second
/// replacing the first's list.
#[tokio::test]
async fn server_side_apply_merges_template_containers_by_name() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client();
    crd::install(&client, TIMEOUT).await?;
    let ns = cp.test_namespace("crds-ssa").await?;
    let api: Api<AutoscalingRunnerSet> = Api::namespaced(client, ns.name());
    let apply = |container: &str, image: &str| {
        json!({
            "apiVersion": "actions.github.com/v1alpha1", "kind": "AutoscalingRunnerSet",
            "metadata": {"name": "merge"},
            "spec": {"githubConfigUrl": "https://github.com/my-org", "githubConfigSecret": "s",
                "template": {"spec": {"containers": [{"name": container, "image": image}]}}}
        })
    };
    api.patch(
        "merge",
        &PatchParams::apply("platform-team"),
        &Patch::Apply(apply("runner", "runner:1")),
    )
    .await?;
    let merged = api
        .patch(
            "merge",
            &PatchParams::apply("sidecar-injector").force(),
            &Patch::Apply(apply("sidecar", "sidecar:1")),
        )
        .await?;
    let containers: Vec<(String, Option<String>)> = merged
        .spec
        .template
        .and_then(|t| t.spec)
        .map(|s| s.containers)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.image))
        .collect();
    assert_eq!(
        containers,
        [
            ("runner".to_owned(), Some("runner:1".to_owned())),
            ("sidecar".to_owned(), Some("sidecar:1".to_owned())),
        ]
    );
    Ok(())
}
