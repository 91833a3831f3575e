//! Shared helpers of the node simulator's tests: a scheduling control plane, a simulator with
//! one Node of its own, pods pinned to it, and waiting on conditions.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use nodesim::{NodeSimulator, SIMULATED_NODE_TAINT, SimulatorConfig};
use serde_json::{Value, json};
use testbed::ControlPlane;

pub const WAIT: Duration = Duration::from_secs(120);

/// A simulator with one Node named after the namespace.
pub async fn simulator(
    cp: &ControlPlane,
    ns: &str,
    tweak: impl FnOnce(&mut SimulatorConfig),
) -> anyhow::Result<NodeSimulator> {
    let mut config = SimulatorConfig::with_nodes(&format!("sim-{ns}"), 1);
    tweak(&mut config);
    NodeSimulator::start(cp.config().clone(), config).await
}

/// A pod pinned to `node` (nodeSelector + toleration of the simulated-node taint).
pub fn pod(node: &str, name: &str, mut spec: Value) -> Pod {
    spec["nodeSelector"] = json!({ "kubernetes.io/hostname": node });
    spec["tolerations"] =
        json!([{ "key": SIMULATED_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule" }]);
    if spec.get("restartPolicy").is_none() {
        spec["restartPolicy"] = json!("Never");
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

pub async fn create(pods: &Api<Pod>, pod: &Pod) -> anyhow::Result<()> {
    pods.create(&PostParams::default(), pod)
        .await
        .context("creating a pod")?;
    Ok(())
}

/// Waits until `check` returns `Some` for the pod (`None` pod: it does not exist).
pub async fn wait_pod<T>(
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    mut check: impl FnMut(Option<&Pod>) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pod = pods.get_opt(name).await?;
        if let Some(v) = check(pod.as_ref()) {
            return Ok(v);
        }
        let last = pod.map(|p| serde_json::to_string(&p.status).unwrap_or_default());
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for pod {name}: {what}; last status {last:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

/// `containerStatuses[name]` as JSON.
pub fn container(pod: &Pod, name: &str) -> Value {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == name))
        .map(|c| serde_json::to_value(c).unwrap())
        .unwrap_or(Value::Null)
}

pub fn init_container(pod: &Pod, name: &str) -> Value {
    pod.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == name))
        .map(|c| serde_json::to_value(c).unwrap())
        .unwrap_or(Value::Null)
}

fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// The listener binary, built once per test binary if missing or older than its sources.
pub fn listener_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_listener().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_listener() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not in target/<profile>/deps")?;
    let binary = profile_dir.join("listener");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fresh = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_source(&root.join("listener/src")));
    if !fresh {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "listener", "--bin", "listener"])
            .current_dir(&root)
            .status()
            .context("running cargo build -p listener")?;
        if !status.success() {
            bail!("cargo build -p listener failed");
        }
    }
    Ok(binary)
}
