//! The listener's Kubernetes calls against the real kube-apiserver, made as a ServiceAccount
//! holding exactly the Role the AutoscalingListener reconciler grants: patches, and reading
//! its own AutoscalingRunnerSet for the runner bounds.

use std::time::Duration;

use actions_client::{JobInfo, JobStarted};
use anyhow::Context;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_reconcilers::controllers::autoscaling_listener::resources::{Owner, role};
use k8s_reconcilers::crd::{
    AutoscalingListener, AutoscalingListenerSpec, AutoscalingRunnerSet, EphemeralRunner,
    EphemeralRunnerSet, EphemeralRunnerSetSpec, EphemeralRunnerSpec,
};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::runtime::{conditions, wait::await_condition};
use kube::{Resource, ResourceExt};
use listener::kube::{KubePatcher, PatchError, RunnerSetPatcher, runner_status_patch};
use listener::scaler::{Bounds, Decision, ers_patch};
use scaleset_core::completions::COMPLETED_RUNNERS;
use serde_json::{Value, json};
use testbed::{ControlPlane, TestNamespace};

/// Kind and plural of the kinds the listener patches or reads.
fn kinds() -> [(String, String); 3] {
    [
        (
            EphemeralRunnerSet::kind(&()),
            EphemeralRunnerSet::plural(&()),
        ),
        (EphemeralRunner::kind(&()), EphemeralRunner::plural(&())),
        (
            AutoscalingRunnerSet::kind(&()),
            AutoscalingRunnerSet::plural(&()),
        ),
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

/// Open-schema CRDs for the three kinds (the real schemas are checked by the k8s-reconcilers
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

/// A namespace with the ServiceAccount `listener` bound to the Role the reconciler grants the
/// listener of the AutoscalingRunnerSet and EphemeralRunnerSet `set`; returns it with its name.
async fn listener_role(
    cp: &ControlPlane,
    admin: &kube::Client,
    prefix: &str,
) -> anyhow::Result<(TestNamespace, String)> {
    ensure_crds(admin).await?;
    let guard = cp.test_namespace(prefix).await?;
    let ns = guard.name().to_string();
    let listener = AutoscalingListener::new(
        "listener",
        AutoscalingListenerSpec {
            ephemeral_runner_set_name: Some("set".into()),
            ..Default::default()
        },
    );
    let granted = role(
        &listener,
        &Owner {
            namespace: &ns,
            name: "set",
        },
        &[],
    );
    Api::<Role>::namespaced(admin.clone(), &ns)
        .patch(
            "listener",
            &PatchParams::apply("listener-test").force(),
            &Patch::Apply(&granted),
        )
        .await?;
    let binding = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        "rolebindings",
    );
    apply(
        admin,
        &binding,
        Some(&ns),
        json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "listener", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "listener"},
        "subjects": [{"kind": "ServiceAccount", "name": "listener", "namespace": ns}]}),
    )
    .await?;
    Ok((guard, ns))
}

#[tokio::test]
async fn patches_work_with_only_the_listener_role() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    let (_guard, ns) = listener_role(cp, &admin, "listener-rbac").await?;
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

/// The listener follows `minRunners` and `maxRunners` of its AutoscalingRunnerSet under its
/// Role: each valid change arrives, in order; invalid bounds are skipped.
#[tokio::test]
async fn the_runner_bounds_are_followed_with_only_the_listener_role() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    let (_guard, ns) = listener_role(cp, &admin, "listener-bounds").await?;
    let resource = ApiResource::erase::<AutoscalingRunnerSet>(&());
    let set_bounds = |min: i64, max: i64| {
        json!({"apiVersion": resource.api_version, "kind": resource.kind,
            "metadata": {"name": "set", "namespace": ns},
            "spec": {"minRunners": min, "maxRunners": max}})
    };
    apply(&admin, &resource, Some(&ns), set_bounds(1, 5)).await?;

    let sa = cp.service_account_client(&ns, "listener").await?;
    let start = Bounds::new(0, 2)?;
    let (tx, mut updates) = tokio::sync::watch::channel(start);
    let follow = tokio::spawn({
        let (sa, ns) = (sa.clone(), ns.clone());
        async move { listener::bounds::follow(sa, &ns, "set", tx).await }
    });
    let mut next = async || -> anyhow::Result<Bounds> {
        tokio::time::timeout(Duration::from_secs(30), updates.changed()).await??;
        Ok(*updates.borrow_and_update())
    };
    assert_eq!(next().await?, Bounds::new(1, 5)?, "the bounds at the start");
    apply(&admin, &resource, Some(&ns), set_bounds(9, 5)).await?;
    apply(&admin, &resource, Some(&ns), set_bounds(3, 8)).await?;
    assert_eq!(
        next().await?,
        Bounds::new(3, 8)?,
        "minRunners above maxRunners was skipped; the next valid bounds arrive"
    );
    drop(updates);
    tokio::time::timeout(Duration::from_secs(30), follow).await??;

    let other = Api::<AutoscalingRunnerSet>::namespaced(sa, &ns)
        .get("other-set")
        .await;
    assert!(
        matches!(other, Err(kube::Error::Api(ref e)) if e.code == 403),
        "the listener reads only its own AutoscalingRunnerSet: {other:?}"
    );
    Ok(())
}
