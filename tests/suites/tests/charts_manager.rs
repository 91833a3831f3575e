//! The reconcilers run under the controller chart's ServiceAccount with exactly the RBAC both
//! charts render (a TokenRequest token, no admin): a scale set installed by the scale-set chart
//! comes up (service-side scale set, EphemeralRunnerSet, AutoscalingListener and the listener's
//! ServiceAccount, Role, RoleBinding, config Secret and pod), and deleting it runs the cleanup
//! contract (the chart objects' `cleanup-protection` finalizers are removed by the controller).
//!
//! The Actions service here is the reconcilers' in-process service; the Kubernetes side is real.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_reconcilers::ManagerOptions;
use k8s_reconcilers::crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunnerSet};
use k8s_reconcilers::github::memory::MemoryService;
use kube::api::{Api, DeleteParams, ListParams};
use scaleset_core::autoscaling_runner_set::DriftPolicy;
use serde_json::{Value, json};
use suites::helm::{self, Chart, Render};
use testbed::ControlPlane;

const WAIT: Duration = Duration::from_secs(120);

/// [`testbed::eventually`] with this suite's timeout, for checks that cannot fail.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polled = testbed::eventually(what, WAIT, || {
        let next = check();
        async move { Ok(next.await) }
    });
    polled.await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// ManagerOptions from the chart's Deployment: its env and every flag it passes (the same
/// meaning as ARC's manager flags, docs/architecture.md#manager-flags). An unmapped flag fails the
/// test.
fn options_from_deployment(
    deployment: &Value,
    namespace: &str,
    service: &MemoryService,
) -> ManagerOptions {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().expect("env");
    let image = env
        .iter()
        .find(|e| e["name"] == "CONTROLLER_MANAGER_CONTAINER_IMAGE")
        .and_then(|e| e["value"].as_str())
        .expect("CONTROLLER_MANAGER_CONTAINER_IMAGE");
    assert!(
        env.iter()
            .any(|e| e["name"] == "CONTROLLER_MANAGER_POD_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace")
    );
    let mut options = ManagerOptions::new(namespace, image, service.connector());
    for arg in container["args"].as_array().expect("args") {
        let arg = arg.as_str().expect("string arg");
        let (flag, value) = arg.split_once('=').unwrap_or((arg, ""));
        match flag {
            "--auto-scaling-runner-set-only" => {}
            "--log-level" => options.listener_log_level = value.into(),
            "--log-format" => options.listener_log_format = value.into(),
            "--watch-single-namespace" => options.watch_namespace = Some(value.into()),
            "--runner-max-concurrent-reconciles" => {
                options.runner_max_concurrent_reconciles = value.parse().expect("number")
            }
            "--listener-metrics-addr" => {
                options.listener_metrics_addr = if value == "0" { "" } else { value }.into()
            }
            "--listener-metrics-endpoint" => options.listener_metrics_endpoint = value.into(),
            "--update-strategy" => {
                options.drift_policy = match value {
                    "immediate" => DriftPolicy::Replace,
                    "eventual" => DriftPolicy::Drain,
                    other => panic!("the chart passes --update-strategy={other}"),
                }
            }
            "--metrics-addr" => options.publish_metrics = value != "0",
            "--auto-scaler-image-pull-secrets" => {
                options.listener_image_pull_secrets.push(value.into())
            }
            "--exclude-label-propagation-prefix" => options
                .exclude_label_propagation_prefixes
                .push(value.into()),
            other => panic!("the chart passes {other}, which this test does not map"),
        }
    }
    options
}

async fn apply_chart(client: &kube::Client, render: Render) -> helm::Rendered {
    let rendered = render.render().expect("render");
    let objects: Vec<Value> = rendered.objects().cloned().collect();
    helm::apply(client, &objects).await.expect("apply chart");
    rendered
}

#[tokio::test]
async fn a_scale_set_comes_up_and_is_cleaned_up_under_the_chart_rbac() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let admin = cp.client();
    assert_eq!(
        helm::ensure_crds(&admin).await.expect("CRDs"),
        helm::Crds::Chart,
        "the chart ships the CRDs the reconcilers use"
    );
    let c_ns = cp.test_namespace("arc-systems").await.expect("ns");
    let r_ns = cp.test_namespace("arc-runners").await.expect("ns");
    let (c, r) = (c_ns.name(), r_ns.name());

    let controller = apply_chart(
        &admin,
        Render::new(Chart::Controller, "arc", c).values(json!({"flags": {"logLevel": "info"}})),
    )
    .await;
    let scale_set = apply_chart(
        &admin,
        Render::new(Chart::ScaleSet, "runners", r).values(json!({
            "githubConfigUrl": "https://github.com/org",
            "githubConfigSecret": {"github_token": "chart-token"},
            "controllerServiceAccount": {"name": "arc-gha-rs-controller", "namespace": c},
            "minRunners": 0,
            "maxRunners": 5
        })),
    )
    .await;

    let service = MemoryService::new();
    let options = options_from_deployment(
        controller.single("Deployment").expect("deployment"),
        c,
        &service,
    );
    assert_eq!(options.listener_log_level, "info");
    let identity = cp
        .service_account_client(c, "arc-gha-rs-controller")
        .await
        .expect("controller identity");
    let manager = tokio::spawn(k8s_reconcilers::run(identity, options));

    // The scale set comes up.
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(admin.clone(), r);
    let id = eventually("the scale set id annotation", || async {
        let ars = ars_api.get("runners").await.ok()?;
        ars.metadata
            .annotations?
            .get(k8s_reconcilers::names::annotations::RUNNER_SCALE_SET_ID)
            .cloned()
    })
    .await;
    assert!(
        service.with(|s| s
            .scale_sets
            .values()
            .any(|set| set.id.to_string() == id && set.name == "runners")),
        "the service has scale set {id}"
    );
    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(admin.clone(), r);
    eventually("the EphemeralRunnerSet", || async {
        let list = ers_api.list(&ListParams::default()).await.ok()?;
        (!list.items.is_empty()).then_some(())
    })
    .await;
    let al_api: Api<AutoscalingListener> = Api::namespaced(admin.clone(), c);
    let listener = eventually("the AutoscalingListener", || async {
        let list = al_api.list(&ListParams::default()).await.ok()?;
        list.items.first().and_then(|al| al.metadata.name.clone())
    })
    .await;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), c);
    let roles: Api<Role> = Api::namespaced(admin.clone(), r);
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), r);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), c);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), c);
    eventually("the listener ServiceAccount", || async {
        accounts.get_opt(&listener).await.ok().flatten()
    })
    .await;
    eventually("the listener Role", || async {
        roles.get_opt(&listener).await.ok().flatten()
    })
    .await;
    eventually("the listener RoleBinding", || async {
        bindings.get_opt(&listener).await.ok().flatten()
    })
    .await;
    let config = eventually("the listener config Secret", || async {
        secrets
            .get_opt(&format!("{listener}-config"))
            .await
            .ok()
            .flatten()
    })
    .await;
    assert!(
        config.data.is_some_and(|d| d.contains_key("config.json")),
        "config.json in the listener config Secret"
    );
    let pod = eventually("the listener pod", || async {
        pods.get_opt(&listener).await.ok().flatten()
    })
    .await;
    let spec = pod.spec.expect("pod spec");
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some(listener.as_str())
    );
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("ghcr.io/arc-rs/gha-runner-scale-set-controller:0.14.2"),
        "listener pods run the chart's image"
    );

    // Deletion, as `helm uninstall` does it: every chart object at once. The chart's objects
    // wait behind their finalizer until the controller has cleaned up, then all are gone.
    for object in scale_set.objects() {
        let kind = object["kind"].as_str().expect("kind");
        let name = object["metadata"]["name"].as_str().expect("name");
        let dp = DeleteParams::default();
        let result = match kind {
            "AutoscalingRunnerSet" => ars_api.delete(name, &dp).await.map(|_| ()),
            "Secret" => Api::<Secret>::namespaced(admin.clone(), r)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "ServiceAccount" => Api::<ServiceAccount>::namespaced(admin.clone(), r)
                .delete(name, &dp)
                .await
                .map(|_| ()),
            "Role" => roles.delete(name, &dp).await.map(|_| ()),
            "RoleBinding" => bindings.delete(name, &dp).await.map(|_| ()),
            other => panic!("unexpected chart object kind {other}"),
        };
        result.unwrap_or_else(|e| panic!("delete {kind}/{name}: {e}"));
    }
    eventually("the AutoscalingRunnerSet to be gone", || async {
        ars_api
            .get_opt("runners")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    for object in scale_set.objects() {
        let kind = object["kind"].as_str().expect("kind").to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        eventually(&format!("{kind}/{name} to be released and gone"), || {
            let (kind, name, admin) = (kind.clone(), name.clone(), admin.clone());
            async move {
                let gone = match kind.as_str() {
                    "Secret" => Api::<Secret>::namespaced(admin, r).get_opt(&name).await,
                    "ServiceAccount" => {
                        return Api::<ServiceAccount>::namespaced(admin, r)
                            .get_opt(&name)
                            .await
                            .ok()?
                            .is_none()
                            .then_some(());
                    }
                    "Role" => {
                        return Api::<Role>::namespaced(admin, r)
                            .get_opt(&name)
                            .await
                            .ok()?
                            .is_none()
                            .then_some(());
                    }
                    "RoleBinding" => {
                        return Api::<RoleBinding>::namespaced(admin, r)
                            .get_opt(&name)
                            .await
                            .ok()?
                            .is_none()
                            .then_some(());
                    }
                    _ => return Some(()),
                };
                gone.ok()?.is_none().then_some(())
            }
        })
        .await;
    }
    eventually("the listener to be gone", || async {
        al_api
            .get_opt(&listener)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    eventually("the service-side scale set to be deleted", || async {
        service
            .with(|s| s.scale_sets.values().all(|set| set.id.to_string() != id))
            .then_some(())
    })
    .await;
    assert!(!manager.is_finished(), "the reconcilers are still running");
    manager.abort();
}
