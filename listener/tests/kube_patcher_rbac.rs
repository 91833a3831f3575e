//! The listener's Kubernetes writes against the real kube-apiserver, made as a ServiceAccount
//! holding exactly the Role the AutoscalingListener reconciler grants (patch, nothing else).

use std::time::Duration;

use actions_client::{JobInfo, JobStarted};
use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{conditions, wait::await_condition};
use listener::kube::{KubePatcher, PatchError, RunnerSetPatcher, runner_status_patch};
use listener::scaler::{Decision, ers_patch_body};
use serde_json::{Value, json};
use testbed::ControlPlane;

const KINDS: [(&str, &str); 2] = [
    ("EphemeralRunnerSet", "ephemeralrunnersets"),
    ("EphemeralRunner", "ephemeralrunners"),
];

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.github.com", "v1alpha1", kind),
        plural,
    )
}

async fn apply(
    client: &kube::Client,
    res: &ApiResource,
    ns: Option<&str>,
    obj: Value,
) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, res),
        None => Api::all_with(client.clone(), res),
    };
    let name = obj["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply("listener-test").force(),
        &Patch::Apply(obj),
    )
    .await
    .with_context(|| format!("applying {} {name}", res.kind))?;
    Ok(())
}

/// Open-schema CRDs for the two kinds (the real schemas are checked by the k8s-reconcilers
/// suites; here only names, plurals and the status subresource matter). Existing CRDs are kept.
async fn ensure_crds(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (kind, plural) in KINDS {
        let name = format!("{plural}.actions.github.com");
        if crds.get_opt(&name).await?.is_none() {
            let crd: CustomResourceDefinition = serde_json::from_value(json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {"group": "actions.github.com", "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
            }))?;
            match crds.create(&Default::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established"))??;
    }
    Ok(())
}

#[tokio::test]
async fn patches_work_with_only_the_listener_role() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    ensure_crds(&admin).await?;
    let ns = cp.test_namespace("listener-rbac").await?;
    let ns = ns.name().to_string();
    let rbac = |kind: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
            &format!("{}s", kind.to_lowercase()),
        )
    };
    apply(&admin, &rbac("Role"), Some(&ns), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "listener", "namespace": ns},
        "rules": [
            {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunnersets"], "resourceNames": ["set"], "verbs": ["patch"]},
            {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunners", "ephemeralrunners/status"], "verbs": ["patch"]}
        ]})).await?;
    apply(
        &admin,
        &rbac("RoleBinding"),
        Some(&ns),
        json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "listener", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "listener"},
        "subjects": [{"kind": "ServiceAccount", "name": "listener", "namespace": ns}]}),
    )
    .await?;
    let ers = resource("EphemeralRunnerSet", "ephemeralrunnersets");
    let er = resource("EphemeralRunner", "ephemeralrunners");
    apply(
        &admin,
        &ers,
        Some(&ns),
        json!({"apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunnerSet",
        "metadata": {"name": "set", "namespace": ns}, "spec": {"replicas": 2, "patchID": 0}}),
    )
    .await?;
    apply(
        &admin,
        &er,
        Some(&ns),
        json!({"apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunner",
        "metadata": {"name": "runner-1", "namespace": ns}, "spec": {}}),
    )
    .await?;

    let sa = cp.service_account_client(&ns, "listener").await?;
    let patcher = KubePatcher::new(sa.clone(), &ns, "set");
    let replicas = patcher
        .patch_runner_set(ers_patch_body(Decision {
            target: 5,
            patch_id: 3,
        }))
        .await?;
    assert_eq!(replicas, 5);
    let replicas = patcher
        .patch_runner_set(ers_patch_body(Decision {
            target: 0,
            patch_id: 4,
        }))
        .await?;
    assert_eq!(replicas, 0);
    let stored = Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &ers)
        .get("set")
        .await?;
    assert_eq!(stored.data["spec"]["patchID"], json!(4));
    assert!(
        stored.data["spec"].get("replicas").is_none(),
        "{:?}",
        stored.data
    );

    let job = JobStarted {
        job: JobInfo {
            runner_request_id: 77,
            job_id: "job-77".into(),
            owner_name: "octo".into(),
            repository_name: "app".into(),
            job_workflow_ref: "octo/app/.github/workflows/ci.yml@refs/heads/main".into(),
            job_display_name: "build".into(),
            workflow_run_id: 9,
            ..Default::default()
        },
        runner_id: 1,
        runner_name: "runner-1".into(),
    };
    patcher
        .patch_runner_status("runner-1", runner_status_patch(&job))
        .await?;
    let runner = Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &er)
        .get("runner-1")
        .await?;
    assert_eq!(runner.data["status"]["jobRequestId"], json!(77));
    assert_eq!(
        runner.data["status"]["jobRepositoryName"],
        json!("octo/app")
    );
    assert_eq!(runner.data["status"]["jobDisplayName"], json!("build"));

    match patcher
        .patch_runner_status("runner-gone", runner_status_patch(&job))
        .await
    {
        Err(PatchError::NotFound { name, .. }) => assert_eq!(name, "runner-gone"),
        other => panic!("expected NotFound for a missing runner, got {other:?}"),
    }
    let other_set = KubePatcher::new(sa.clone(), &ns, "other-set");
    match other_set
        .patch_runner_set(ers_patch_body(Decision {
            target: 1,
            patch_id: 1,
        }))
        .await
    {
        Err(PatchError::Failed { message, .. }) => {
            assert!(message.contains("forbidden"), "{message}")
        }
        other => panic!("patching another runner set must be forbidden, got {other:?}"),
    }
    let read = Api::<DynamicObject>::namespaced_with(sa, &ns, &ers)
        .get("set")
        .await;
    assert!(
        matches!(read, Err(kube::Error::Api(ref e)) if e.code == 403),
        "the listener must not read: {read:?}"
    );
    Ok(())
}
