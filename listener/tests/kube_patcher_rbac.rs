//! The listener's Kubernetes writes against the real kube-apiserver, made as a ServiceAccount
//! holding exactly the Role the AutoscalingListener reconciler grants (patch, nothing else).

use std::time::Duration;

use actions_client::{JobInfo, JobStarted};
use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_reconcilers::crd::{
    EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerSetSpec, EphemeralRunnerSpec,
};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Resource, ResourceExt};
use listener::kube::{KubePatcher, PatchError, RunnerSetPatcher, runner_status_patch};
use listener::scaler::{Decision, ers_patch};
use scaleset_core::completions::COMPLETED_RUNNERS;
use serde_json::{Value, json};
use testbed::ControlPlane;

/// Kind and plural of the two kinds the listener patches.
fn kinds() -> [(String, String); 2] {
    [
        (
            EphemeralRunnerSet::kind(&()),
            EphemeralRunnerSet::plural(&()),
        ),
        (EphemeralRunner::kind(&()), EphemeralRunner::plural(&())),
    ]
    .map(|(kind, plural)| (kind.into_owned(), plural.into_owned()))
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
    for (kind, plural) in kinds() {
        let name = format!("{plural}.actions.github.com");
        if crds.get_opt(&name).await?.is_none() {
            let crd: CustomResourceDefinition = serde_json::from_value(json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {"group": EphemeralRunner::group(&()), "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": EphemeralRunner::version(&()), "served": true, "storage": true,
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
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    let sets: Api<EphemeralRunnerSet> = Api::namespaced(admin.clone(), &ns);
    let set = EphemeralRunnerSet {
        metadata: meta("set"),
        spec: EphemeralRunnerSetSpec {
            replicas: 2,
            ..Default::default()
        },
        status: None,
    };
    sets.create(&PostParams::default(), &set).await?;
    let runners: Api<EphemeralRunner> = Api::namespaced(admin.clone(), &ns);
    let runner = EphemeralRunner {
        metadata: meta("runner-1"),
        spec: EphemeralRunnerSpec::default(),
        status: None,
    };
    runners.create(&PostParams::default(), &runner).await?;

    let sa = cp.service_account_client(&ns, "listener").await?;
    let patcher = KubePatcher::new(sa.clone(), &ns, "set");
    let observed = patcher
        .patch_runner_set(&ers_patch(
            Decision {
                target: 5,
                patch_id: 3,
            },
            "runner-9",
        )?)
        .await?;
    assert_eq!(observed, None, "the set controller recorded no patch yet");
    let stored = sets.get("set").await?;
    assert_eq!((stored.spec.replicas, stored.spec.patch_id), (5, 3));
    assert_eq!(
        stored
            .annotations()
            .get(COMPLETED_RUNNERS)
            .map(String::as_str),
        Some("runner-9")
    );
    sets.patch_status(
        "set",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"currentReplicas": 0, "observedPatchID": 3}})),
    )
    .await?;
    let observed = patcher
        .patch_runner_set(&ers_patch(
            Decision {
                target: 0,
                patch_id: 4,
            },
            "",
        )?)
        .await?;
    assert_eq!(
        observed,
        Some(3),
        "the answer carries status.observedPatchID"
    );
    let stored = sets.get("set").await?;
    assert_eq!((stored.spec.replicas, stored.spec.patch_id), (0, 4));
    assert_eq!(
        stored
            .annotations()
            .get(COMPLETED_RUNNERS)
            .map(String::as_str),
        Some("")
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
    let status = runner_status_patch(&job)?;
    patcher.patch_runner_status("runner-1", &status).await?;
    let status_of_runner = runners.get("runner-1").await?.status.unwrap_or_default();
    assert_eq!(status_of_runner.job_request_id, 77);
    assert_eq!(status_of_runner.job_repository_name, "octo/app");
    assert_eq!(status_of_runner.job_display_name, "build");

    match patcher.patch_runner_status("runner-gone", &status).await {
        Err(PatchError::NotFound { name, .. }) => assert_eq!(name, "runner-gone"),
        other => panic!("expected NotFound for a missing runner, got {other:?}"),
    }
    let other_set = KubePatcher::new(sa.clone(), &ns, "other-set");
    match other_set
        .patch_runner_set(&ers_patch(
            Decision {
                target: 1,
                patch_id: 1,
            },
            "",
        )?)
        .await
    {
        Err(PatchError::Failed { message, .. }) => {
            assert!(message.contains("forbidden"), "{message}")
        }
        other => panic!("patching another runner set must be forbidden, got {other:?}"),
    }
    let read = Api::<EphemeralRunnerSet>::namespaced(sa, &ns)
        .get("set")
        .await;
    assert!(
        matches!(read, Err(kube::Error::Api(ref e)) if e.code == 403),
        "the listener must not read: {read:?}"
    );
    Ok(())
}
