//! The real manager binary against the real kube-apiserver and the Actions-service emulator over
//! HTTP: a scale set from creation to deletion (behaviours 1, 2, 13 and 15 of
//! docs/architecture.md#integration-behaviours), its metrics and health endpoints, and a graceful
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "manager_support.rs"]
mod support;

use std::collections::BTreeSet;

use actions_emulator::{Emulator, EmulatorConfig};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_reconcilers::crd::{
    AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet,
};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::*;
use testbed::ControlPlane;

#[tokio::test]
async fn a_scale_set_from_creation_to_deletion() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    k8s_reconcilers::crd::install(&admin, std::time::Duration::from_secs(60)).await?;
    let ctrl = cp.test_namespace("mgr-ctrl").await?;
    let run = cp.test_namespace("mgr-run").await?;
    let (c, r) = (ctrl.name(), run.name());
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    pat_secret(&admin, r, "gh", &emu).await?;

    let mut manager = Manager::start(cp.kubeconfig_path(), c, r, &[])?;
    eventually("readyz", WAIT, || async {
        Ok((manager.health("/readyz").await.ok() == Some(200)).then_some(()))
    })
    .await?;
    assert_eq!(manager.health("/healthz").await?, 200);

    let url = emu.org_url("octo-org");
    create_ars(&admin, r, "arc", &url, "gh").await?;
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(admin.clone(), r);
    let id = scale_set_id(&ars_api, "arc").await?;
    let set = emu
        .snapshot()
        .scale_set(id)
        .cloned()
        .expect("scale set on the emulator");
    assert_eq!(set.name, "arc");
    assert!(set.disable_update, "created with disableUpdate");
    assert!(set.labels.contains(&"arc".to_owned()));

    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(admin.clone(), r);
    eventually("the EphemeralRunnerSet", WAIT, || async {
        ers_api.get_opt("arc").await.map_err(Into::into)
    })
    .await?;
    let al_api: Api<AutoscalingListener> = Api::namespaced(admin.clone(), c);
    let listener = eventually("the AutoscalingListener", WAIT, || async {
        Ok(al_api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    assert_eq!(listener.spec.runner_scale_set_id, Some(id));
    let pods_c: Api<Pod> = Api::namespaced(admin.clone(), c);
    eventually("the listener pod", WAIT, || async {
        pods_c
            .get_opt(&listener.name_any())
            .await
            .map_err(Into::into)
    })
    .await?;

    // Play the listener: two runners wanted.
    ers_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 2, "patchID": 1}})),
        )
        .await?;
    let er_api: Api<EphemeralRunner> = Api::namespaced(admin.clone(), r);
    let pods_r: Api<Pod> = Api::namespaced(admin.clone(), r);
    let runners = suites::registered_runners(&er_api, &pods_r, 2, WAIT).await?;
    let names: BTreeSet<String> = runners.iter().map(|(r, _)| r.name_any()).collect();
    let snapshot = emu.snapshot();
    let registered: BTreeSet<String> = snapshot
        .runners
        .iter()
        .filter(|r| r.scale_set_id == id)
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(
        registered, names,
        "one registration per EphemeralRunner, named after it"
    );

    // The JIT config in the runner's Secret is one the service accepts.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), r);
    let first = runners[0].0.name_any();
    let jit = secrets.get(&first).await?.data.unwrap()["jitToken"]
        .0
        .clone();
    let conn = emu
        .runner_connect(std::str::from_utf8(&jit)?)
        .map_err(|e| anyhow::anyhow!("JIT config refused: {e:?}"))?;
    assert_eq!(conn.runner_id, runners[0].1);

    // Play the kubelet: both pods run.
    for name in &names {
        eventually("the runner pod", WAIT, || async {
            pods_r.get_opt(name).await.map_err(Into::into)
        })
        .await?;
        let status = json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
            "containerStatuses": [{"name": "runner", "image": "x", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]
        }});
        pods_r
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    let metrics = eventually("runner gauges and service call counters", WAIT, || async {
        let m = manager.metrics().await?;
        let running = sample(
            &m,
            "gha_controller_running_ephemeral_runners",
            &[("name", "arc"), ("organization", "octo-org")],
        );
        Ok((running == Some(2.0)).then_some(m))
    })
    .await?;
    assert_eq!(
        sample(
            &metrics,
            "arc_actions_service_calls_total",
            &[("operation", "GenerateJitRunnerConfig"), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert!(
        sample(
            &metrics,
            "arc_controller_reconciles_total",
            &[("controller", "ephemeralrunner"), ("result", "success")]
        )
        .is_some_and(|n| n > 0.0)
    );
    // The controller-runtime metrics ARC's sample Grafana dashboard queries.
    let ephemeral_runner = [("controller", "ephemeralrunner")];
    assert!(
        sample(
            &metrics,
            "controller_runtime_reconcile_total",
            &[("controller", "ephemeralrunner"), ("result", "success")]
        )
        .is_some_and(|n| n > 0.0)
    );
    for name in [
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_active_workers",
    ] {
        for controller in [
            "autoscalingrunnerset",
            "autoscalinglistener",
            "ephemeralrunnerset",
            "ephemeralrunner",
        ] {
            assert!(
                sample(&metrics, name, &[("controller", controller)]).is_some(),
                "{name} for {controller}"
            );
        }
    }
    assert!(
        sample(
            &metrics,
            "controller_runtime_reconcile_time_seconds_sum",
            &ephemeral_runner
        )
        .is_some_and(|n| n > 0.0)
    );
    assert!(
        sample(
            &metrics,
            "rest_client_requests_total",
            &[("method", "POST"), ("code", "201")]
        )
        .is_some_and(|n| n >= 2.0),
        "the runners' creates are counted"
    );

    // The first runner's job ends: it exits 0, is removed from the service, and goes.
    let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"name": "runner", "image": "x",
        "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    pods_r
        .patch_status(&first, &PatchParams::default(), &Patch::Merge(&done))
        .await?;
    eventually("the finished runner gone everywhere", WAIT, || async {
        let gone = er_api.get_opt(&first).await?.is_none();
        let unregistered = !emu.snapshot().runners.iter().any(|r| r.name == first);
        Ok((gone && unregistered).then_some(()))
    })
    .await?;

    // Deletion: listener, runners, scale set, then the ARS itself.
    ars_api.delete("arc", &DeleteParams::default()).await?;
    eventually("the AutoscalingRunnerSet gone", WAIT, || async {
        Ok(ars_api.get_opt("arc").await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        al_api.list(&Default::default()).await?.items.is_empty(),
        "listener gone"
    );
    assert!(ers_api.get_opt("arc").await?.is_none(), "runner set gone");
    assert!(
        er_api.list(&Default::default()).await?.items.is_empty(),
        "runners gone"
    );
    let snapshot = emu.snapshot();
    assert!(
        snapshot.scale_set(id).is_none(),
        "scale set deleted on the service"
    );
    assert!(
        !snapshot.runners.iter().any(|r| r.scale_set_id == id),
        "no registration left: {:?}",
        snapshot.runners
    );

    manager.signal("TERM")?;
    let status = manager
        .wait_exit(std::time::Duration::from_secs(30))
        .await?;
    assert_eq!(
        status.code(),
        Some(0),
        "graceful exit; log:\n{}",
        manager.logs()
    );
    let logs = manager.logs();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(
        !logs.contains(secrecy::ExposeSecret::expose_secret(&emu.pat())),
        "the PAT never reaches the logs"
    );
    Ok(())
}

#[tokio::test]
async fn bad_flags_exit_2_naming_the_flag_and_the_fix() -> anyhow::Result<()> {
    let binary = manager_binary()?;
    let run = |args: &[&str]| {
        std::process::Command::new(&binary)
            .args(args)
            .env("CONTROLLER_MANAGER_POD_NAMESPACE", "arc-systems")
            .env("CONTROLLER_MANAGER_CONTAINER_IMAGE", "img")
            .output()
    };
    let cases: &[(&[&str], &str)] = &[
        (
            &["--auto-scaling-runner-set-only", "--log-format=yaml"],
            "--log-format: unknown format \"yaml\"; use text or json",
        ),
        (
            &[
                "--auto-scaling-runner-set-only",
                "--workqueue-rate-limiter=x",
            ],
            "--workqueue-rate-limiter",
        ),
        (
            &["--auto-scaling-runner-set-only", "--metrics-addr=nope"],
            "--metrics-addr",
        ),
        (&["--log-level=info"], "pass --auto-scaling-runner-set-only"),
    ];
    for (args, needle) in cases {
        let out = run(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let out = std::process::Command::new(&binary)
        .arg("--auto-scaling-runner-set-only")
        .env_remove("CONTROLLER_MANAGER_POD_NAMESPACE")
        .env("CONTROLLER_MANAGER_CONTAINER_IMAGE", "img")
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONTROLLER_MANAGER_POD_NAMESPACE"));
    Ok(())
}

#[tokio::test]
async fn a_custom_root_ca_from_a_config_map_reaches_the_service_over_tls() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    k8s_reconcilers::crd::install(&admin, std::time::Duration::from_secs(60)).await?;
    let ctrl = cp.test_namespace("tls-ctrl").await?;
    let run = cp.test_namespace("tls-run").await?;
    let (c, r) = (ctrl.name(), run.name());
    let emu = Emulator::start_tls(EmulatorConfig::default()).await?;
    let ca = emu.ca_pem().expect("TLS emulator CA").to_owned();
    pat_secret(&admin, r, "gh", &emu).await?;
    let config_map: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "github-ca"},
        "data": {"ca.crt": ca}
    }))?;
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), r)
        .create(&Default::default(), &config_map)
        .await?;

    let _manager = Manager::start(cp.kubeconfig_path(), c, r, &[])?;
    create_ars_with(
        &admin,
        r,
        "tls",
        &emu.org_url("octo-org"),
        "gh",
        json!({"githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.crt"}}}}),
    )
    .await?;
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(admin.clone(), r);
    let id = scale_set_id(&ars_api, "tls").await?;
    assert!(emu.snapshot().scale_set(id).is_some());

    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(admin.clone(), r);
    eventually("the EphemeralRunnerSet", WAIT, || async {
        ers_api.get_opt("tls").await.map_err(Into::into)
    })
    .await?;
    ers_api
        .patch(
            "tls",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 1, "patchID": 1}})),
        )
        .await?;
    let er_api: Api<EphemeralRunner> = Api::namespaced(admin.clone(), r);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), r);
    let runner = eventually("a runner registered over HTTPS", WAIT, || async {
        let list = suites::runners_with_registration(&er_api, &pods).await?;
        Ok(list.into_iter().find(|(_, id)| *id > 0).map(|(er, _)| er))
    })
    .await?;
    assert!(
        emu.snapshot()
            .runners
            .iter()
            .any(|x| x.name == runner.name_any())
    );

    // The listener is handed the same CA.
    let al_api: Api<AutoscalingListener> = Api::namespaced(admin.clone(), c);
    let listener = eventually("the AutoscalingListener", WAIT, || async {
        Ok(al_api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), c);
    let config = eventually("the listener config", WAIT, || async {
        Ok(secrets
            .get_opt(&format!("{}-config", listener.name_any()))
            .await?
            .and_then(|s| s.data)
            .and_then(|d| d.get("config.json").cloned()))
    })
    .await?;
    let config: serde_json::Value = serde_json::from_slice(&config.0)?;
    assert_eq!(config["server_root_ca"].as_str(), Some(ca.as_str()));
    Ok(())
}
