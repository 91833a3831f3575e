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

    for (i, values) in helm::scale_set_value_sets().into_iter().enumerate() {
        // One release per value set, so names never collide.
        let release = format!("set-{i}");
        let extra = values.clone();
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
