//! Real Helm: the project's charts rendered by Helm v4's engine (helm-python-sdk in the virtual
//! environment that `xtask/scripts/helm-venv.py` makes).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::binaries::workspace_root;

/// The project's two charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chart {
    /// `charts/gha-runner-scale-set-controller`.
    Controller,
    /// `charts/gha-runner-scale-set`.
    ScaleSet,
}

impl Chart {
    fn path(self) -> PathBuf {
        let name = match self {
            Chart::Controller => "gha-runner-scale-set-controller",
            Chart::ScaleSet => "gha-runner-scale-set",
        };
        workspace_root().join("charts").join(name)
    }
}

fn run(args: &[String]) -> anyhow::Result<Value> {
    let script = workspace_root().join("xtask/scripts/helm-render.py");
    let out = Command::new(testbed::helm_python()?)
        .arg(&script)
        .args(args)
        .output()
        .context("running helm-render.py")?;
    if !out.status.success() {
        bail!(
            "helm {} failed: {}",
            args.first().map(String::as_str).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading helm-render.py's JSON output")
}

/// Helm's install order of kinds (kinds not listed go last, as Helm does).
const INSTALL_ORDER: [&str; 21] = [
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
    "APIService",
    "PodDisruptionBudget",
    "PriorityClass",
];

/// The rendered objects in the order `helm install` applies them.
fn objects(doc: &Value) -> Vec<Value> {
    let mut objects: Vec<Value> = doc["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["object"].clone())
                .filter(Value::is_object)
                .collect()
        })
        .unwrap_or_default();
    objects.sort_by_key(|o| {
        let kind = o["kind"].as_str().unwrap_or_default();
        INSTALL_ORDER
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(INSTALL_ORDER.len())
    });
    objects
}

/// The cluster a chart is rendered for.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Kubeconfig that Helm's `lookup` reads the cluster with.
    pub kubeconfig: std::path::PathBuf,
    /// The API server's version (`.Capabilities.KubeVersion`), e.g. `v1.37.2`.
    pub version: String,
}

/// `helm template` of `chart` as `release` into `namespace` with `values`: the rendered objects.
/// With a cluster, `lookup` and the capabilities' Kubernetes version come from it.
pub fn render(
    chart: Chart,
    release: &str,
    namespace: &str,
    values: &Value,
    cluster: Option<&Cluster>,
) -> anyhow::Result<Vec<Value>> {
    let mut args = vec![
        "template".to_owned(),
        chart.path().display().to_string(),
        "--release".to_owned(),
        release.to_owned(),
        "--namespace".to_owned(),
        namespace.to_owned(),
        "--output".to_owned(),
        "json".to_owned(),
        "--values-json".to_owned(),
        values.to_string(),
    ];
    if let Some(cluster) = cluster {
        args.push("--kubeconfig".to_owned());
        args.push(cluster.kubeconfig.display().to_string());
        args.push("--kube-version".to_owned());
        args.push(cluster.version.clone());
    }
    Ok(objects(&run(&args)?))
}

/// The CRDs the controller chart ships (`crds/`), as Helm installs them.
pub(crate) fn controller_crds() -> anyhow::Result<Vec<Value>> {
    let args = [
        "crds".to_owned(),
        Chart::Controller.path().display().to_string(),
        "--output".to_owned(),
        "json".to_owned(),
    ];
    let crds = objects(&run(&args)?);
    if crds.is_empty() {
        bail!("the controller chart renders no CRDs; fix: run cargo xtask crds");
    }
    Ok(crds)
}
