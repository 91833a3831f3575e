//! Two real manager processes with leader election against the real kube-apiserver and the
//! emulator over HTTP: only the Lease holder reconciles; when it is killed the other takes
//! over and carries on without duplicating the scale set; a graceful stop releases the Lease.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "manager_support.rs"]
mod support;

use actions_emulator::{Emulator, EmulatorConfig, Endpoint};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_reconcilers::crd::{AutoscalingRunnerSet, EphemeralRunner};
use kube::ResourceExt;
use kube::api::Api;
use support::*;
use testbed::ControlPlane;

const LEADING: &str = "acquired leadership";

/// Reconciles the manager has run, from its metrics.
async fn reconciles(m: &Manager) -> anyhow::Result<f64> {
    let metrics = m.metrics().await?;
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("arc_controller_reconciles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[tokio::test]
async fn only_the_leader_acts_and_the_other_takes_over_when_it_dies() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client();
    k8s_reconcilers::crd::install(&admin, std::time::Duration::from_secs(60)).await?;
    let ctrl = cp.test_namespace("le-ctrl").await?;
    let run = cp.test_namespace("le-run").await?;
    let (c, r) = (ctrl.name(), run.name());
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    pat_secret(&admin, r, "gh", &emu).await?;

    let lease_name = format!("arc-{c}");
    let flags: Vec<String> = [
        "--enable-leader-election".to_owned(),
        format!("--leader-election-id={lease_name}"),
        "--leader-election-lease-duration=6s".to_owned(),
        "--leader-election-renew-deadline=4s".to_owned(),
        "--leader-election-retry-period=1s".to_owned(),
    ]
    .into();
    let mut managers = vec![
        Manager::start(cp.kubeconfig_path(), c, r, &flags)?,
        Manager::start(cp.kubeconfig_path(), c, r, &flags)?,
    ];
    let leases: Api<Lease> = Api::namespaced(admin.clone(), c);
    let holder = eventually("a Lease holder", WAIT, || async {
        Ok(leases
            .get_opt(&lease_name)
            .await?
            .and_then(|l| l.spec?.holder_identity)
            .filter(|h| !h.is_empty()))
    })
    .await?;
    let leader = eventually("one manager logging leadership", WAIT, || async {
        let leading: Vec<usize> = (0..2)
            .filter(|i| managers[*i].logs().contains(LEADING))
            .collect();
        Ok((leading.len() == 1).then(|| leading[0]))
    })
    .await?;
    let follower = 1 - leader;
    assert!(
        managers[leader].logs().contains(&holder),
        "the Lease names the leader"
    );
    for m in &managers {
        eventually("readyz on both", WAIT, || async {
            Ok((m.health("/readyz").await.ok() == Some(200)).then_some(()))
        })
        .await?;
    }

    create_ars(&admin, r, "arc", &emu.org_url("octo-org"), "gh").await?;
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(admin.clone(), r);
    let id = scale_set_id(&ars_api, "arc").await?;
    scale_runner_set(&admin, r, "arc", 1, 1).await?;
    let er_api: Api<EphemeralRunner> = Api::namespaced(admin.clone(), r);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), r);
    suites::registered_runners(&er_api, &pods, 1, WAIT).await?;

    assert!(
        reconciles(&managers[leader]).await? > 0.0,
        "the leader reconciles"
    );
    assert_eq!(
        reconciles(&managers[follower]).await?,
        0.0,
        "the follower never reconciled"
    );
    assert_eq!(emu.count(Endpoint::CreateScaleSet), 1);
    assert_eq!(
        emu.count(Endpoint::GenerateJitConfig),
        1,
        "one JIT config for one runner"
    );
    assert!(!managers[follower].logs().contains(LEADING));

    // The leader dies without releasing the Lease; the follower takes over after it expires.
    managers[leader].signal("KILL")?;
    managers[leader]
        .wait_exit(std::time::Duration::from_secs(10))
        .await?;
    eventually("the follower to lead", WAIT, || async {
        Ok(managers[follower].logs().contains(LEADING).then_some(()))
    })
    .await?;
    let new_holder = leases
        .get(&lease_name)
        .await?
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_ne!(new_holder, holder);
    assert!(managers[follower].logs().contains(&new_holder));

    scale_runner_set(&admin, r, "arc", 2, 2).await?;
    let runners = suites::registered_runners(&er_api, &pods, 2, WAIT).await?;
    assert!(
        reconciles(&managers[follower]).await? > 0.0,
        "the new leader reconciles"
    );
    let snapshot = emu.snapshot();
    assert_eq!(
        snapshot
            .scale_sets
            .iter()
            .filter(|s| s.name == "arc")
            .count(),
        1,
        "the scale set was adopted, not created again"
    );
    assert!(snapshot.scale_set(id).is_some());
    let mut registered: Vec<String> = snapshot
        .runners
        .iter()
        .filter(|r| r.scale_set_id == id)
        .map(|r| r.name.clone())
        .collect();
    registered.sort();
    let mut names: Vec<String> = runners.iter().map(|(r, _)| r.name_any()).collect();
    names.sort();
    assert_eq!(
        registered, names,
        "no duplicate and no orphaned registration"
    );

    // A graceful stop releases the Lease.
    managers[follower].signal("TERM")?;
    let status = managers[follower]
        .wait_exit(std::time::Duration::from_secs(30))
        .await?;
    assert_eq!(status.code(), Some(0), "{}", managers[follower].logs());
    let released = leases.get(&lease_name).await?.spec.unwrap();
    assert!(
        released.holder_identity.is_none_or(|h| h.is_empty()),
        "the Lease is released"
    );
    managers.clear();
    Ok(())
}
