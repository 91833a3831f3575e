//! Proof that RBAC is real on the local control plane: a ServiceAccount identity is refused what
//! its Role does not grant, and allowed what it does.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use testbed::{ControlPlane, client_from_kubeconfig};

const TIMEOUT: Duration = Duration::from_secs(60);

fn is_forbidden<T: std::fmt::Debug>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
async fn service_account_is_refused_until_a_role_grants_it() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let ns = cp.test_namespace("cp-rbac").await?;
    let other = cp.test_namespace("cp-rbac-other").await?;
    let admin = cp.client();

    let kubeconfig = cp.service_account_kubeconfig(ns.name(), "limited").await?;
    assert!(kubeconfig.is_file());
    let limited = client_from_kubeconfig(&kubeconfig).await?;
    let maps: Api<ConfigMap> = Api::namespaced(limited.clone(), ns.name());

    match maps.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            let user = format!("system:serviceaccount:{}:limited", ns.name());
            assert!(status.message.contains(&user), "{}", status.message);
        }
        other => panic!("a ServiceAccount without a Role listed config maps: {other:?}"),
    }

    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": "read-config-maps" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"] }],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": "limited-reads-config-maps" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config-maps" },
        "subjects": [{ "kind": "ServiceAccount", "name": "limited", "namespace": ns.name() }],
    });
    let apply = PatchParams::apply("testbed-suite");
    Api::<Role>::namespaced(admin.clone(), ns.name())
        .patch("read-config-maps", &apply, &Patch::Apply(&role))
        .await?;
    Api::<RoleBinding>::namespaced(admin.clone(), ns.name())
        .patch("limited-reads-config-maps", &apply, &Patch::Apply(&binding))
        .await?;

    let deadline = Instant::now() + TIMEOUT;
    loop {
        let listed = maps.list(&ListParams::default()).await;
        if listed.is_ok() {
            break;
        }
        assert!(is_forbidden(&listed), "unexpected error: {listed:?}");
        assert!(
            Instant::now() < deadline,
            "the RoleBinding never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let create = maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some("not-allowed".to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    assert!(is_forbidden(&create), "create was not granted: {create:?}");

    let elsewhere: Api<ConfigMap> = Api::namespaced(limited, other.name());
    let listed_elsewhere = elsewhere.list(&ListParams::default()).await;
    assert!(
        is_forbidden(&listed_elsewhere),
        "the Role grants nothing in another namespace: {listed_elsewhere:?}"
    );
    Ok(())
}
