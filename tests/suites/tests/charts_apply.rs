//! Every rendered manifest of both charts, for ARC's test value sets, is accepted by a real API
//! server (server-side apply), together with the CRDs the controller chart ships.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde_json::{Value, json};
use suites::helm::{self, Chart, Render};
use testbed::ControlPlane;

#[tokio::test]
async fn controller_chart_manifests_are_accepted() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let ns = cp.test_namespace("arc-ctrl").await.expect("ns");
    let watched = cp.test_namespace("arc-watch").await.expect("ns");
    let release = ns.name().to_string();

    let value_sets = [
        json!({}),
        json!({
            "replicaCount": 2,
            "labels": {"team": "ci"},
            "imagePullSecrets": [{"name": "dockerhub"}],
            "env": [{"name": "EXTRA", "value": "1"}],
            "podAnnotations": {"a": "b"},
            "podLabels": {"c": "d"},
            "podSecurityContext": {"fsGroup": 1000},
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "x"}}}],
            "volumes": [{"name": "extra", "emptyDir": {}}],
            "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
            "priorityClassName": "system-cluster-critical",
            "metrics": {"controllerManagerAddr": ":8080", "listenerAddr": ":8080", "listenerEndpoint": "/metrics"},
            "pprof": {"addr": ":6060"},
            "flags": {"logLevel": "info", "logFormat": "json", "healthProbeBindAddress": ":8081",
                      "excludeLabelPropagationPrefixes": ["argocd.argoproj.io/"], "rateLimiter": {"name": "typed_rate_limiter"},
                      "k8sClientRateLimiterQPS": 40, "k8sClientRateLimiterBurst": 60}
        }),
        json!({"flags": {"watchSingleNamespace": watched.name()}, "fullnameOverride": format!("{release}-single")}),
    ];
    for values in value_sets {
        let r = Render::new(Chart::Controller, &release, ns.name())
            .values(values.clone())
            .render()
            .expect("render");
        let objects: Vec<Value> = r.objects().cloned().collect();
        assert!(objects.len() >= 5, "{values}");
        helm::apply(&client, &objects)
            .await
            .unwrap_or_else(|e| panic!("{values}: {e:#}"));
        let d = r.single("Deployment").expect("deployment");
        let name = d["metadata"]["name"].as_str().expect("name");
        let stored = Api::<Deployment>::namespaced(client.clone(), ns.name())
            .get(name)
            .await
            .expect("stored deployment");
        let stored = serde_json::to_value(&stored).expect("json");
        assert_eq!(
            stored["spec"]["template"]["spec"]["containers"][0]["args"],
            d["spec"]["template"]["spec"]["containers"][0]["args"],
            "the API server keeps every flag"
        );
    }
}

#[tokio::test]
async fn scale_set_chart_manifests_are_accepted() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let crds = helm::ensure_crds(&client).await.expect("CRDs");
    if crds == helm::Crds::Chart {
        let names: Vec<String> = helm::chart_crds(Chart::Controller)
            .expect("chart CRDs")
            .iter()
            .map(|c| c["metadata"]["name"].as_str().expect("name").to_string())
            .collect();
        for (_, plural) in helm::KINDS {
            let expected = format!("{plural}.actions.github.com");
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
    }
    let ns = cp.test_namespace("arc-runners").await.expect("ns");

    let base = json!({
        "githubConfigUrl": "https://github.com/actions/",
        "githubConfigSecret": {"github_token": "gh_token12345"},
        "controllerServiceAccount": {"name": "arc", "namespace": "arc-system"}
    });
    let tls = json!({"certificateFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}, "runnerMountPath": "/usr/local/share/ca-certificates/"});
    let mut value_sets = Vec::new();
    for mode in ["", "dind", "kubernetes", "kubernetes-novolume"] {
        value_sets.push(json!({"containerMode": {"type": mode}}));
        value_sets.push(json!({"containerMode": {"type": mode}, "githubServerTLS": tls}));
    }
    value_sets.extend([
        json!({"githubConfigSecret": {"github_token": "", "github_app_id": "123", "github_app_installation_id": "456", "github_app_private_key": "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"}}),
        json!({"githubConfigSecret": "pre-defined-secret"}),
        json!({"minRunners": 1, "maxRunners": 5, "runnerGroup": "group", "runnerScaleSetName": "named-set", "scaleSetLabels": ["linux", "x64"]}),
        json!({"proxy": {"http": {"url": "http://proxy:3128", "credentialSecretRef": "proxy-auth"}, "https": {"url": "http://proxy:3128"}, "noProxy": ["example.com"]}}),
        json!({"listenerTemplate": {"metadata": {"labels": {"l": "1"}}, "spec": {"containers": [{"name": "listener", "securityContext": {"runAsUser": 1000}}, {"name": "side-car", "image": "busybox"}]}}}),
        json!({"listenerMetrics": {"counters": {"gha_started_jobs_total": {"labels": ["repository"]}}, "histograms": {"gha_job_startup_duration_seconds": {"labels": ["repository"], "buckets": [1.0, 5.0, 10.0]}}}}),
        json!({"template": {"metadata": {"labels": {"t": "1"}}, "spec": {"serviceAccountName": "custom", "nodeSelector": {"kubernetes.io/os": "linux"},
               "containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest", "command": ["/home/runner/run.sh"], "resources": {"limits": {"cpu": "2"}}}, {"name": "other", "image": "busybox"}]}}}),
        json!({"containerMode": {"type": "kubernetes", "kubernetesModeWorkVolumeClaim": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "2Gi"}}},
               "kubernetesModeAdditionalRoleRules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}}),
        json!({"labels": {"team": "ci"}, "annotations": {"note": "x"}, "resourceMeta": {
            "autoscalingRunnerSet": {"labels": {"a": "1"}}, "githubConfigSecret": {"annotations": {"b": "2"}},
            "managerRole": {"labels": {"c": "3"}}, "managerRoleBinding": {"labels": {"d": "4"}},
            "noPermissionServiceAccount": {"labels": {"e": "5"}}, "ephemeralRunner": {"labels": {"f": "6"}},
            "autoscalingListener": {"annotations": {"g": "7"}}}}),
    ]);

    for (i, extra) in value_sets.into_iter().enumerate() {
        // One release per value set, so names never collide.
        let release = format!("set-{i}");
        let mut values = base.clone();
        if let (Some(b), Some(e)) = (values.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = Render::new(Chart::ScaleSet, &release, ns.name())
            .values(values)
            .render()
            .unwrap_or_else(|e| panic!("{extra}: {e:#}"));
        let objects: Vec<Value> = r.objects().cloned().collect();
        assert!(objects.len() >= 3, "{extra}");
        helm::apply(&client, &objects)
            .await
            .unwrap_or_else(|e| panic!("{extra}: {e:#}"));
        {
            let ars = r.single("AutoscalingRunnerSet").expect("ars");
            let name = ars["metadata"]["name"].as_str().expect("name");
            let stored: Value = {
                let gvk = kube::core::GroupVersionKind::gvk(
                    "actions.github.com",
                    "v1alpha1",
                    "AutoscalingRunnerSet",
                );
                let (res, _) = kube::discovery::pinned_kind(&client, &gvk)
                    .await
                    .expect("discover ARS");
                let api: Api<kube::api::DynamicObject> =
                    Api::namespaced_with(client.clone(), ns.name(), &res);
                serde_json::to_value(api.get(name).await.expect("stored ARS")).expect("json")
            };
            assert_eq!(
                stored["spec"]["template"]["spec"]["containers"],
                ars["spec"]["template"]["spec"]["containers"],
                "{extra}: the CRD keeps the runner containers as rendered"
            );
            assert_eq!(
                stored["spec"]["githubConfigUrl"], ars["spec"]["githubConfigUrl"],
                "{extra}"
            );
        }
    }
}
