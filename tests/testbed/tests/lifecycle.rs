//! The test bed's own guarantees: start-up, identities, sharing across test runtimes, cleanup.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use testbed::{ControlPlane, ControlPlaneOptions};

#[tokio::test]
async fn shared_control_plane_serves_every_test_runtime() -> anyhow::Result<()> {
    let begin = Instant::now();
    let cp = ControlPlane::shared().await?;
    println!(
        "shared control plane: start-up {:?}, this test waited {:?}",
        cp.startup_time(),
        begin.elapsed()
    );
    let ns = cp.test_namespace("lifecycle-a").await?;
    let namespaces: Api<Namespace> = Api::all(cp.client());
    assert!(namespaces.get_opt(ns.name()).await?.is_some());
    if let Some(release) = cp.release() {
        let served = cp.client().apiserver_version().await?.git_version;
        assert_eq!(
            release,
            testbed::kubernetes_release()?,
            "ARC_K8S_VERSION picks the release"
        );
        assert_eq!(
            served, release.version,
            "the API server reports the release it was built as"
        );
    }
    Ok(())
}

#[tokio::test]
async fn shared_control_plane_is_reused_by_a_second_runtime() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let begin = Instant::now();
    let again = ControlPlane::shared().await?;
    println!("warm shared control plane: {:?}", begin.elapsed());
    assert!(std::ptr::eq(cp, again));
    let ns = cp.test_namespace("lifecycle-b").await?;
    let maps: Api<ConfigMap> = Api::namespaced(cp.client(), ns.name());
    let map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("probe".to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    maps.create(&PostParams::default(), &map).await?;
    assert!(maps.get_opt("probe").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn user_identities_are_authenticated_and_authorized_by_rbac() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    if cp.is_existing_cluster() {
        return Ok(());
    }
    let ns = cp.test_namespace("lifecycle-user").await?;
    let user = cp
        .user_client("testbed-user", Some("testbed-group"))
        .await?;
    let maps: Api<ConfigMap> = Api::namespaced(user, ns.name());
    match maps.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("testbed-user"),
                "{}",
                status.message
            );
        }
        other => panic!("an unprivileged user listed config maps: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn an_owned_control_plane_leaves_no_process_or_directory() -> anyhow::Result<()> {
    if std::env::var_os(testbed::EXISTING_CLUSTER_ENV).is_some() {
        return Ok(());
    }
    let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
    println!("owned control plane start-up: {:?}", cp.startup_time());
    let dir = cp.workdir()?.to_path_buf();
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    assert!(kubeconfig.starts_with(&dir));
    let namespaces: Api<Namespace> = Api::all(cp.client());
    namespaces.get("default").await?;
    let before = processes_mentioning(&dir);
    assert_eq!(before.len(), 2, "etcd and kube-apiserver: {before:?}");
    tokio::task::spawn_blocking(move || cp.stop()).await?;
    assert!(!dir.exists(), "{} was left behind", dir.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            processes_mentioning(&dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Processes (other than the janitor) whose command line mentions `dir`.
fn processes_mentioning(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && !cmdline.contains("testbed-janitor") {
            found.push(cmdline);
        }
    }
    found
}

const CHILD_ENV: &str = "TESTBED_LIFECYCLE_CHILD";

/// Run by [`a_killed_test_process_leaves_no_process_or_directory`] in a child test process:
/// starts the shared control plane, says where it lives, and waits to be killed.
#[tokio::test]
#[ignore = "helper: runs only as the child of a_killed_test_process_leaves_no_process_or_directory"]
async fn child_holding_a_shared_control_plane() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    let cp = ControlPlane::shared_with_scheduling().await?;
    println!("WORKDIR={}", cp.workdir()?.display());
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

#[tokio::test]
async fn a_killed_test_process_leaves_no_process_or_directory() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    if std::env::var_os(testbed::EXISTING_CLUSTER_ENV).is_some() {
        return Ok(());
    }
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_holding_a_shared_control_plane",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let dir = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("WORKDIR=").map(std::path::PathBuf::from))
    })
    .await?
    .ok_or_else(|| anyhow::anyhow!("the child test never reported its control plane"))?;
    let running = processes_mentioning(&dir);
    assert_eq!(
        running.len(),
        4,
        "etcd, apiserver, controller-manager, scheduler: {running:?}"
    );
    child.kill()?;
    child.wait()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !processes_mentioning(&dir).is_empty() || dir.exists() {
        assert!(
            Instant::now() < deadline,
            "left behind after SIGKILL: dir exists {}, processes {:?}",
            dir.exists(),
            processes_mentioning(&dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
