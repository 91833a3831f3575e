//! A scale-set release's life with real Helm against the real API server: install (with
//! controller discovery), upgrade, uninstall — and the cleanup contract: after `helm uninstall`
//! the chart's credentials and RBAC stay (finalizer `actions.github.com/cleanup-protection`)
//! until the controller, with only the chart's RBAC, removes the finalizers in ARC's order.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use suites::helm::{self, Chart};
use testbed::ControlPlane;

fn ars_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.github.com", "v1alpha1", "AutoscalingRunnerSet"),
        "autoscalingrunnersets",
    )
}

async fn stored_ars(client: &kube::Client, ns: &str, name: &str) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ars_resource());
    serde_json::to_value(api.get(name).await.expect("stored ARS")).expect("json")
}

/// Waits until `get` reports the object gone.
async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..200 {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} still exists");
}

async fn terminating<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let obj = api
        .get_opt(name)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{name} was deleted although it carries a finalizer"));
    assert!(
        obj.meta().deletion_timestamp.is_some(),
        "{name} is not being deleted"
    );
    assert_eq!(
        obj.meta().finalizers.as_deref(),
        Some(&["actions.github.com/cleanup-protection".to_string()][..])
    );
}

#[tokio::test]
async fn install_upgrade_uninstall_and_cleanup() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let admin = cp.client();
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    helm::ensure_crds(&admin).await.expect("CRDs");
    let c_ns = cp.test_namespace("arc-systems").await.expect("ns");
    let r_ns = cp.test_namespace("arc-runners").await.expect("ns");
    let (c, r) = (c_ns.name(), r_ns.name());

    helm::install(Chart::Controller, "arc", c, &json!({}), &kubeconfig)
        .expect("helm install controller");
    let values = json!({
        "githubConfigUrl": "https://github.com/org",
        "githubConfigSecret": {"github_token": "secret-token"},
        "containerMode": {"type": "kubernetes"},
        "minRunners": 0,
        "maxRunners": 3
    });
    let release = helm::install(Chart::ScaleSet, "runners", r, &values, &kubeconfig)
        .expect("helm install scale set");
    assert_eq!(release["name"], "runners", "{release}");

    let first = stored_ars(&admin, r, "runners").await;
    assert_eq!(first["spec"]["maxRunners"], 3);
    let hash = first["metadata"]["annotations"]["actions.github.com/values-hash"].clone();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), r);
    let manager_binding = bindings
        .get("runners-gha-rs-manager")
        .await
        .expect("manager binding");
    let subject = &manager_binding.subjects.expect("subjects")[0];
    assert_eq!(subject.name, "arc-gha-rs-controller", "discovered");
    assert_eq!(subject.namespace.as_deref(), Some(c));

    // helm upgrade changes the ARS spec and its values hash.
    let mut upgraded = values.clone();
    upgraded["maxRunners"] = json!(7);
    upgraded["minRunners"] = json!(1);
    helm::upgrade(Chart::ScaleSet, "runners", r, &upgraded, &kubeconfig).expect("helm upgrade");
    let second = stored_ars(&admin, r, "runners").await;
    assert_eq!(second["spec"]["maxRunners"], 7);
    assert_eq!(second["spec"]["minRunners"], 1);
    assert_ne!(
        second["metadata"]["annotations"]["actions.github.com/values-hash"],
        hash
    );
    let annotations = second["metadata"]["annotations"].clone();

    // helm uninstall: the ARS goes, the finalized objects stay until the controller lets go.
    helm::uninstall("runners", r, &kubeconfig).expect("helm uninstall");
    let ars_api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), r, &ars_resource());
    gone(&ars_api, "runners").await;
    let roles: Api<Role> = Api::namespaced(admin.clone(), r);
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), r);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), r);
    let name = |key: &str| -> String {
        annotations[format!("actions.github.com/{key}")]
            .as_str()
            .unwrap_or_else(|| panic!("annotation {key}"))
            .to_string()
    };
    terminating(
        &bindings,
        &name("cleanup-kubernetes-mode-role-binding-name"),
    )
    .await;
    terminating(&roles, &name("cleanup-kubernetes-mode-role-name")).await;
    terminating(
        &accounts,
        &name("cleanup-kubernetes-mode-service-account-name"),
    )
    .await;
    terminating(&secrets, &name("cleanup-github-secret-name")).await;
    terminating(&bindings, &name("cleanup-manager-role-binding")).await;
    terminating(&roles, &name("cleanup-manager-role-name")).await;

    // The controller's cleanup, as the controller ServiceAccount, in ARC's order. The manager
    // RoleBinding and Role go last: they are what allows the controller to do the rest.
    let ctl = cp
        .service_account_client(c, "arc-gha-rs-controller")
        .await
        .expect("controller identity");
    let unfinalize = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    let params = PatchParams::default();
    let ctl_bindings: Api<RoleBinding> = Api::namespaced(ctl.clone(), r);
    let ctl_roles: Api<Role> = Api::namespaced(ctl.clone(), r);
    let ctl_accounts: Api<ServiceAccount> = Api::namespaced(ctl.clone(), r);
    let ctl_secrets: Api<Secret> = Api::namespaced(ctl.clone(), r);
    let kube_binding = name("cleanup-kubernetes-mode-role-binding-name");
    ctl_bindings
        .patch(&kube_binding, &params, &unfinalize)
        .await
        .expect("kube-mode binding");
    gone(&bindings, &kube_binding).await;
    let kube_role = name("cleanup-kubernetes-mode-role-name");
    ctl_roles
        .patch(&kube_role, &params, &unfinalize)
        .await
        .expect("kube-mode role");
    gone(&roles, &kube_role).await;
    let kube_sa = name("cleanup-kubernetes-mode-service-account-name");
    ctl_accounts
        .patch(&kube_sa, &params, &unfinalize)
        .await
        .expect("kube-mode SA");
    gone(&accounts, &kube_sa).await;
    let secret = name("cleanup-github-secret-name");
    ctl_secrets
        .patch(&secret, &params, &unfinalize)
        .await
        .expect("github secret");
    gone(&secrets, &secret).await;
    let manager_binding = name("cleanup-manager-role-binding");
    ctl_bindings
        .patch(&manager_binding, &params, &unfinalize)
        .await
        .expect("manager binding");
    gone(&bindings, &manager_binding).await;
    // The binding that granted access to the manager Role is gone: the controller keeps
    // `roles: patch` cluster-wide (ClusterRole) for exactly this last step.
    let manager_role = name("cleanup-manager-role-name");
    ctl_roles
        .patch(&manager_role, &params, &unfinalize)
        .await
        .expect("manager role, through the ClusterRole");
    gone(&roles, &manager_role).await;
}
