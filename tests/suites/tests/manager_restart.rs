//! The real manager binary killed between the JIT call and recording its result, then
//! restarted: no duplicate and no orphaned registration on the emulator.
//!
//! The window is made deterministic instead of hoping a SIGKILL lands in it: the manager runs
//! as a ServiceAccount that may not create Secrets in the runner namespace, and the emulator
//! refuses `RemoveRunner`, so every JIT registration it obtains stays on the service while
//! nothing about it reaches Kubernetes (no JIT Secret, no `status.runnerId`). The manager is
//! killed in that state, the permission is granted, the fault cleared, and a new manager
//! process started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "manager_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use actions_emulator::{Emulator, EmulatorConfig, Endpoint, Fault, FaultKind};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_reconcilers::crd::{AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;
use testbed::ControlPlane;

/// Everything the manager needs, except creating Secrets (granted per namespace below).
fn manager_cluster_role(name: &str) -> anyhow::Result<ClusterRole> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["actions.github.com"], "resources": ["*"], "verbs": ["*"]},
            {"apiGroups": [""], "resources": ["pods", "pods/status", "serviceaccounts", "configmaps", "events"], "verbs": ["*"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["*"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["*"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "update", "patch", "delete"]}
        ]
    }))?)
}

async fn grant_secret_create(admin: &kube::Client, ns: &str, sa_ns: &str) -> anyhow::Result<()> {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "create-secrets"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    }))?;
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "create-secrets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "create-secrets"},
        "subjects": [{"kind": "ServiceAccount", "name": "manager", "namespace": sa_ns}]
    }))?;
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// Registrations on the emulator for scale set `id`: name to runner id.
fn registrations(emu: &Emulator, id: i64) -> BTreeMap<String, i64> {
    emu.snapshot()
        .runners
        .iter()
        .filter(|r| r.scale_set_id == id)
        .map(|r| (r.name.clone(), r.id))
        .collect()
}

#[tokio::test]
async fn killed_between_the_jit_call_and_the_status_write_then_restarted() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    k8s_reconcilers::crd::install(&admin, Duration::from_secs(60)).await?;
    let ctrl = cp.test_namespace("rs-ctrl").await?;
    let run = cp.test_namespace("rs-run").await?;
    let (c, r) = (ctrl.name(), run.name());
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    pat_secret(&admin, r, "gh", &emu).await?;

    let role_name = format!("arc-restart-{c}");
    let _role = cp.delete_on_drop::<ClusterRole>(&role_name);
    let _binding = cp.delete_on_drop::<ClusterRoleBinding>(&role_name);
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &manager_cluster_role(&role_name)?)
        .await?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "manager", "namespace": c}]
    }))?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    grant_secret_create(&admin, c, c).await?;
    let kubeconfig = cp.service_account_kubeconfig(c, "manager").await?;

    let mut first = Manager::start(&kubeconfig, c, r, &[])?;
    create_ars(&admin, r, "arc", &emu.org_url("octo-org"), "gh").await?;
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(admin.clone(), r);
    let id = scale_set_id(&ars_api, "arc").await?;
    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(admin.clone(), r);
    eventually("the EphemeralRunnerSet", WAIT, || async {
        ers_api.get_opt("arc").await.map_err(Into::into)
    })
    .await?;

    emu.inject(Fault::always(
        Endpoint::RemoveRunner,
        FaultKind::Status {
            status: 400,
            retry_after: None,
            type_key: Some("ArgumentException".into()),
            message: Some("injected: removal refused".into()),
        },
    ));
    ers_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 2, "patchID": 1}})),
        )
        .await?;

    // Both runners registered on the service, nothing recorded in Kubernetes.
    let er_api: Api<EphemeralRunner> = Api::namespaced(admin.clone(), r);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), r);
    eventually("registrations without any record", WAIT, || async {
        let ers = er_api.list(&Default::default()).await?.items;
        let registered = registrations(&emu, id);
        if ers.len() != 2 {
            return Ok(None);
        }
        for er in &ers {
            let recorded = er.status.as_ref().is_some_and(|s| s.runner_id > 0);
            let secret = secrets.get_opt(&er.name_any()).await?.is_some();
            if recorded || secret || !registered.contains_key(&er.name_any()) {
                return Ok(None);
            }
        }
        Ok(Some(registered))
    })
    .await?;
    assert!(
        emu.count(Endpoint::GenerateJitConfig) >= 2,
        "the JIT calls were made"
    );
    first.signal("KILL")?;
    first.wait_exit(Duration::from_secs(10)).await?;
    let at_kill = registrations(&emu, id);
    assert_eq!(at_kill.len(), 2, "the registrations outlive the manager");
    for er in er_api.list(&Default::default()).await?.items {
        assert!(
            er.status.as_ref().is_none_or(|s| s.runner_id <= 0),
            "nothing recorded for {}",
            er.name_any()
        );
        assert!(secrets.get_opt(&er.name_any()).await?.is_none());
    }

    // Restart with the permission granted and the service healthy again.
    grant_secret_create(&admin, r, c).await?;
    emu.clear_faults();
    let mut second = Manager::start(&kubeconfig, c, r, &[])?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), r);
    let runners = eventually(
        "both runners recorded and registered once",
        WAIT,
        || async {
            let ers = suites::runners_with_registration(&er_api, &pods).await?;
            let registered = registrations(&emu, id);
            let recorded: BTreeMap<String, i64> = ers
                .iter()
                .filter(|(_, id)| *id > 0)
                .map(|(e, id)| (e.name_any(), *id))
                .collect();
            Ok(
                (ers.len() == 2 && recorded.len() == 2 && recorded == registered)
                    .then_some(recorded),
            )
        },
    )
    .await?;
    for (name, runner_id) in &runners {
        assert_ne!(
            at_kill.get(name),
            Some(runner_id),
            "the unrecorded registration of {name} was replaced, not reused blindly"
        );
        let secret = secrets.get(name).await?;
        let data = secret.data.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&data["runnerId"].0),
            runner_id.to_string()
        );
    }
    let snapshot = emu.snapshot();
    for stale_id in at_kill.values() {
        assert!(
            !snapshot.runners.iter().any(|r| r.id == *stale_id),
            "registration {stale_id} from before the kill is gone"
        );
    }
    assert_eq!(
        snapshot
            .runners
            .iter()
            .filter(|r| r.scale_set_id == id)
            .count(),
        2,
        "exactly one registration per runner"
    );

    // And the scale set still deletes cleanly.
    ars_api.delete("arc", &DeleteParams::default()).await?;
    eventually("the AutoscalingRunnerSet gone", WAIT, || async {
        Ok(ars_api.get_opt("arc").await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        registrations(&emu, id).is_empty(),
        "no orphaned registration"
    );
    assert!(emu.snapshot().scale_set(id).is_none());
    second.signal("TERM")?;
    assert_eq!(
        second.wait_exit(Duration::from_secs(30)).await?.code(),
        Some(0)
    );
    Ok(())
}

#[tokio::test]
async fn registrations_without_a_runner_are_swept_at_start_up() -> anyhow::Result<()> {
    use actions_client::{ActionsClient, Credentials, JitSetting};
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    k8s_reconcilers::crd::install(&admin, Duration::from_secs(60)).await?;
    let ctrl = cp.test_namespace("sw-ctrl").await?;
    let run = cp.test_namespace("sw-run").await?;
    let (c, r) = (ctrl.name(), run.name());
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    pat_secret(&admin, r, "gh", &emu).await?;
    let url = emu.org_url("octo-org");

    let mut first = Manager::start(cp.kubeconfig_path(), c, r, &[])?;
    create_ars(&admin, r, "arc", &url, "gh").await?;
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(admin.clone(), r);
    let id = scale_set_id(&ars_api, "arc").await?;
    scale_runner_set(&admin, r, "arc", 1, 1).await?;
    let er_api: Api<EphemeralRunner> = Api::namespaced(admin.clone(), r);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), r);
    let (runner, runner_id) = eventually("a registered runner", WAIT, || async {
        let list = suites::runners_with_registration(&er_api, &pods).await?;
        Ok(list.into_iter().find(|(_, id)| *id > 0))
    })
    .await?;
    first.signal("TERM")?;
    first.wait_exit(Duration::from_secs(30)).await?;

    // While no manager runs, a registration appears that no EphemeralRunner stands for.
    let client = ActionsClient::builder(url.clone(), Credentials::pat(emu.pat())?).build()?;
    let ghost = client
        .generate_jit_config(
            id,
            &JitSetting {
                name: "arc-runner-ghost".into(),
                work_folder: "_work".into(),
            },
        )
        .await?;
    assert!(registrations(&emu, id).contains_key("arc-runner-ghost"));

    let _second = Manager::start(cp.kubeconfig_path(), c, r, &[])?;
    eventually("the ghost registration removed", WAIT, || async {
        Ok((!registrations(&emu, id).contains_key("arc-runner-ghost")).then_some(()))
    })
    .await?;
    let left = registrations(&emu, id);
    assert_eq!(
        left.get(&runner.name_any()),
        Some(&runner_id),
        "the runner's own registration stays"
    );
    assert!(
        !emu.snapshot()
            .runners
            .iter()
            .any(|x| x.id == ghost.runner.id)
    );
    Ok(())
}
