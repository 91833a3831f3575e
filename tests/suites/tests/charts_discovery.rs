//! Real Helm against the real API server: `helm install` of the controller chart, then the
//! scale-set chart finding the controller's ServiceAccount with `lookup`
//! (docs/architecture.md#charts), and capabilities taken from the cluster.
//!
//! One test per binary: discovery lists every Deployment in the cluster, so no other test may
//! create controller Deployments while it runs.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use suites::helm::{self, Chart, Render};
use testbed::ControlPlane;

fn scale_set_values() -> Value {
    json!({
        "githubConfigUrl": "https://github.com/actions",
        "githubConfigSecret": {"github_token": "gh_token12345"}
    })
}

fn subject(rendered: &helm::Rendered, release: &str) -> Value {
    rendered
        .get("RoleBinding", &format!("{release}-gha-rs-manager"))
        .expect("manager role binding")["subjects"][0]
        .clone()
}

async fn delete_deployment(client: &kube::Client, ns: &str, name: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete deployment");
    for _ in 0..100 {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment {ns}/{name} not gone");
}

#[tokio::test]
async fn helm_install_and_controller_discovery() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let client = cp.client();
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    let controller_ns = cp.test_namespace("arc-system").await.expect("ns");
    let runners_ns = cp.test_namespace("arc-runners").await.expect("ns");
    let watched_ns = cp.test_namespace("arc-watched").await.expect("ns");

    // No controller yet: discovery fails and names the value to set.
    let err = Render::new(Chart::ScaleSet, "runners", runners_ns.name())
        .values(scale_set_values())
        .kubeconfig(&kubeconfig)
        .render_err()
        .expect("fails without a controller");
    assert!(
        err.contains("No gha-rs-controller deployment found"),
        "{err}"
    );
    assert!(err.contains("controllerServiceAccount.name"), "{err}");

    // helm install of the controller chart, for real.
    let release = helm::install(
        Chart::Controller,
        "arc",
        controller_ns.name(),
        &json!({}),
        &kubeconfig,
    )
    .expect("helm install");
    assert_eq!(release["name"], "arc", "{release}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), controller_ns.name());
    let d = deployments
        .get("arc-gha-rs-controller")
        .await
        .expect("installed deployment");
    let labels = d.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("actions.github.com/controller-service-account-name")
            .map(String::as_str),
        Some("arc-gha-rs-controller")
    );

    // One cluster-wide controller: the scale set binds its manager Role to it.
    let r = Render::new(Chart::ScaleSet, "runners", runners_ns.name())
        .values(scale_set_values())
        .kubeconfig(&kubeconfig)
        .render()
        .expect("render with discovery");
    assert_eq!(
        subject(&r, "runners"),
        json!({"kind": "ServiceAccount", "name": "arc-gha-rs-controller", "namespace": controller_ns.name()})
    );

    // Explicit values win field by field over discovery.
    let r = Render::new(Chart::ScaleSet, "runners", runners_ns.name())
        .values(scale_set_values())
        .set("controllerServiceAccount.name", "explicit")
        .kubeconfig(&kubeconfig)
        .render()
        .expect("render");
    assert_eq!(
        subject(&r, "runners"),
        json!({"kind": "ServiceAccount", "name": "explicit", "namespace": controller_ns.name()})
    );

    // Install the scale set for real: discovery, and the dind layout chosen from the
    // cluster's Kubernetes version.
    helm::ensure_crds(&client).await.expect("CRDs");
    {
        helm::install(
            Chart::ScaleSet,
            "runners",
            runners_ns.name(),
            &json!({
                "githubConfigUrl": "https://github.com/actions",
                "githubConfigSecret": {"github_token": "gh_token12345"},
                "containerMode": {"type": "dind"}
            }),
            &kubeconfig,
        )
        .expect("helm install of the scale set");
        let gvk = kube::core::GroupVersionKind::gvk(
            "actions.github.com",
            "v1alpha1",
            "AutoscalingRunnerSet",
        );
        let (res, _) = kube::discovery::pinned_kind(&client, &gvk)
            .await
            .expect("ARS served");
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), runners_ns.name(), &res);
        let stored =
            serde_json::to_value(api.get("runners").await.expect("installed ARS")).expect("json");
        let minor: u32 = client
            .apiserver_version()
            .await
            .expect("version")
            .minor
            .trim_end_matches('+')
            .parse()
            .expect("numeric minor");
        let spec = &stored["spec"]["template"]["spec"];
        let containers: Vec<&str> = spec["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        if minor < 29 {
            assert_eq!(containers, ["runner", "dind"], "{stored}");
        } else {
            assert_eq!(containers, ["runner"], "{stored}");
            assert_eq!(spec["initContainers"][1]["restartPolicy"], "Always");
        }
        let binding: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
            Api::namespaced(client.clone(), runners_ns.name());
        let rb = binding
            .get("runners-gha-rs-manager")
            .await
            .expect("installed manager RoleBinding");
        let subject = &rb.subjects.expect("subjects")[0];
        assert_eq!(subject.name, "arc-gha-rs-controller");
        assert_eq!(subject.namespace.as_deref(), Some(controller_ns.name()));
    }

    // A second cluster-wide controller makes discovery ambiguous.
    let second = Render::new(Chart::Controller, "arc2", controller_ns.name())
        .render()
        .expect("render second controller");
    helm::apply(&client, &[second.single("Deployment").expect("d").clone()])
        .await
        .expect("apply second controller");
    let err = Render::new(Chart::ScaleSet, "runners", runners_ns.name())
        .values(scale_set_values())
        .kubeconfig(&kubeconfig)
        .render_err()
        .expect("ambiguous");
    assert!(
        err.contains("More than one gha-rs-controller deployment found"),
        "{err}"
    );
    delete_deployment(&client, controller_ns.name(), "arc2-gha-rs-controller").await;

    // Mixed single-namespace and cluster-wide controllers are refused.
    let single = Render::new(Chart::Controller, "arc-single", controller_ns.name())
        .values(json!({"flags": {"watchSingleNamespace": watched_ns.name()}}))
        .render()
        .expect("render single-namespace controller");
    let single_deployment = single.single("Deployment").expect("d").clone();
    helm::apply(&client, std::slice::from_ref(&single_deployment))
        .await
        .expect("apply single-namespace controller");
    let err = Render::new(Chart::ScaleSet, "runners", watched_ns.name())
        .values(scale_set_values())
        .kubeconfig(&kubeconfig)
        .render_err()
        .expect("mixed");
    assert!(
        err.contains("Found both gha-rs-controller installed"),
        "{err}"
    );

    // Only single-namespace controllers: the one watching the chart's namespace is chosen.
    delete_deployment(&client, controller_ns.name(), "arc-gha-rs-controller").await;
    let r = Render::new(Chart::ScaleSet, "runners", watched_ns.name())
        .values(scale_set_values())
        .kubeconfig(&kubeconfig)
        .render()
        .expect("render in the watched namespace");
    assert_eq!(
        subject(&r, "runners"),
        json!({"kind": "ServiceAccount", "name": "arc-single-gha-rs-controller", "namespace": controller_ns.name()})
    );
    let err = Render::new(Chart::ScaleSet, "runners", runners_ns.name())
        .values(scale_set_values())
        .kubeconfig(&kubeconfig)
        .render_err()
        .expect("namespace not watched");
    assert!(
        err.contains("No gha-rs-controller deployment that watch this namespace found"),
        "{err}"
    );
    delete_deployment(
        &client,
        controller_ns.name(),
        "arc-single-gha-rs-controller",
    )
    .await;
}
