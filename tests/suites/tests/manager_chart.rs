//! The real manager binary started exactly as the controller chart's Deployment starts it (its
//! args and env, two replicas so leader election is on), authenticated as the chart's
//! ServiceAccount with only the RBAC both charts render, against the emulator over HTTP: a scale
//! set installed by the scale-set chart comes up, gets a runner, and `helm uninstall`-style
//! deletion of every chart object completes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "manager_support.rs"]
mod support;

use actions_emulator::{Emulator, EmulatorConfig};
use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_reconcilers::crd::{
    AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet,
};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use suites::helm::{self, Chart, Render};
use support::*;
use testbed::ControlPlane;

/// The manager's args and env from the rendered Deployment (the downward-API namespace
/// resolved to `namespace`).
fn from_deployment(deployment: &Value, namespace: &str) -> (Vec<String>, Vec<(String, String)>) {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"], json!(["/manager"]));
    let args = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect();
    let env = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_owned();
            let value = match e["value"].as_str() {
                Some(v) => v.to_owned(),
                None => {
                    assert_eq!(
                        e["valueFrom"]["fieldRef"]["fieldPath"],
                        "metadata.namespace"
                    );
                    namespace.to_owned()
                }
            };
            (name, value)
        })
        .collect();
    (args, env)
}

#[tokio::test]
async fn the_chart_deployment_runs_the_binary_under_the_chart_rbac() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    assert_eq!(helm::ensure_crds(&admin).await?, helm::Crds::Chart);
    let c_ns = cp.test_namespace("mc-systems").await?;
    let r_ns = cp.test_namespace("mc-runners").await?;
    let (c, r) = (c_ns.name(), r_ns.name());
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    let health = free_port()?;

    let controller = Render::new(Chart::Controller, "arc", c)
        .values(json!({
            "replicaCount": 2,
            "flags": {"logLevel": "info", "logFormat": "json", "healthProbeBindAddress": format!("127.0.0.1:{health}")}
        }))
        .render()?;
    let objects: Vec<Value> = controller
        .objects()
        .filter(|o| o["kind"] != "Deployment")
        .cloned()
        .collect();
    helm::apply(&admin, &objects).await?;
    let (args, env) = from_deployment(controller.single("Deployment")?, c);
    assert!(
        args.iter().any(|a| a == "--enable-leader-election"),
        "{args:?}"
    );

    let scale_set = Render::new(Chart::ScaleSet, "runners", r)
        .values(json!({
            "githubConfigUrl": emu.org_url("octo-org"),
            "githubConfigSecret": {"github_token": emu.pat().expose_secret()},
            "controllerServiceAccount": {"name": "arc-gha-rs-controller", "namespace": c},
            "minRunners": 0,
            "maxRunners": 5
        }))
        .render()?;
    let chart_objects: Vec<Value> = scale_set.objects().cloned().collect();

    let kubeconfig = cp
        .service_account_kubeconfig(c, "arc-gha-rs-controller")
        .await?;
    let mut manager = Manager::start_raw(&kubeconfig, &args, &env, health)?;
    eventually("readyz", WAIT, || async {
        Ok((manager.health("/readyz").await.ok() == Some(200)).then_some(()))
    })
    .await?;
    eventually("leadership", WAIT, || async {
        Ok(manager.logs().contains("acquired leadership").then_some(()))
    })
    .await?;
    // The AutoscalingRunnerSet goes in once the chart's RoleBinding is in force: the API
    // server's authorizer sees a new binding a moment after it is created, and a manager that
    // reconciles within that moment is refused once and retries, which the final "nothing was
    // forbidden" check would take for missing RBAC.
    let (sets, rest): (Vec<Value>, Vec<Value>) = chart_objects
        .iter()
        .cloned()
        .partition(|o| o["kind"] == "AutoscalingRunnerSet");
    helm::apply(&admin, &rest).await?;
    let secret = rest
        .iter()
        .find(|o| o["kind"] == "Secret")
        .and_then(|o| o["metadata"]["name"].as_str())
        .context("the scale-set chart renders the GitHub Secret")?
        .to_owned();
    let as_manager = cp
        .service_account_client(c, "arc-gha-rs-controller")
        .await?;
    let secrets: Api<Secret> = Api::namespaced(as_manager, r);
    eventually("the chart's RoleBinding in force", WAIT, || async {
        Ok(secrets.get_opt(&secret).await.ok().flatten().map(|_| ()))
    })
    .await?;
    helm::apply(&admin, &sets).await?;

    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(admin.clone(), r);
    let id = scale_set_id(&ars_api, "runners").await?;
    assert_eq!(
        emu.snapshot().scale_set(id).map(|s| s.name.clone()),
        Some("runners".into())
    );
    let al_api: Api<AutoscalingListener> = Api::namespaced(admin.clone(), c);
    eventually("the AutoscalingListener", WAIT, || async {
        Ok(al_api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(admin.clone(), r);
    eventually("the EphemeralRunnerSet", WAIT, || async {
        ers_api.get_opt("runners").await.map_err(Into::into)
    })
    .await?;
    ers_api
        .patch(
            "runners",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1, "patchID": 1}})),
        )
        .await?;
    let er_api: Api<EphemeralRunner> = Api::namespaced(admin.clone(), r);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), r);
    let runner = eventually("a registered runner", WAIT, || async {
        let list = suites::runners_with_registration(&er_api, &pods).await?;
        Ok(list.into_iter().find(|(_, id)| *id > 0).map(|(er, _)| er))
    })
    .await?;
    assert!(
        emu.snapshot()
            .runners
            .iter()
            .any(|x| x.name == runner.name_any() && x.scale_set_id == id)
    );

    // `helm uninstall`: every scale-set chart object at once.
    for object in &chart_objects {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let dp = DeleteParams::default();
        match kind {
            "AutoscalingRunnerSet" => drop(ars_api.delete(name, &dp).await?),
            "Secret" => drop(
                Api::<Secret>::namespaced(admin.clone(), r)
                    .delete(name, &dp)
                    .await?,
            ),
            "ServiceAccount" => drop(
                Api::<ServiceAccount>::namespaced(admin.clone(), r)
                    .delete(name, &dp)
                    .await?,
            ),
            "Role" => drop(
                Api::<Role>::namespaced(admin.clone(), r)
                    .delete(name, &dp)
                    .await?,
            ),
            "RoleBinding" => drop(
                Api::<RoleBinding>::namespaced(admin.clone(), r)
                    .delete(name, &dp)
                    .await?,
            ),
            other => panic!("unexpected chart object kind {other}"),
        }
    }
    eventually("the AutoscalingRunnerSet gone", WAIT, || async {
        Ok(ars_api.get_opt("runners").await?.is_none().then_some(()))
    })
    .await?;
    eventually("every chart object released and gone", WAIT, || async {
        let roles = Api::<Role>::namespaced(admin.clone(), r)
            .list(&Default::default())
            .await?
            .items;
        let bindings = Api::<RoleBinding>::namespaced(admin.clone(), r)
            .list(&Default::default())
            .await?
            .items;
        Ok((roles.is_empty() && bindings.is_empty()).then_some(()))
    })
    .await?;
    let snapshot = emu.snapshot();
    assert!(
        snapshot.scale_set(id).is_none(),
        "scale set deleted on the service"
    );
    assert!(
        !snapshot.runners.iter().any(|x| x.scale_set_id == id),
        "no registration left"
    );
    assert!(er_api.list(&Default::default()).await?.items.is_empty());

    manager.signal("TERM")?;
    let status = manager
        .wait_exit(std::time::Duration::from_secs(30))
        .await?;
    assert_eq!(status.code(), Some(0), "{}", manager.logs());
    let logs = manager.logs();
    assert!(
        !logs.lines().any(|l| l.contains("forbidden")),
        "nothing was forbidden under the chart RBAC:\n{logs}"
    );
    Ok(())
}
