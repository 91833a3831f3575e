//! `cargo xtask crds`: refresh the Kubernetes list and map markers from the newest test-bed API
//! server, then regenerate the CRD YAML of the controller chart from the Rust types.

use std::process::Command;

use anyhow::{Context, bail};
use testbed::{ControlPlane, ControlPlaneOptions};

/// Chart folder (relative to the workspace root) that receives the CRD files.
pub(crate) const CRDS_DIR: &str = "charts/gha-runner-scale-set-controller/crds";

/// Where the markers live (relative to the workspace root).
const MARKERS_FILE: &str = "k8s-reconcilers/src/crd/kubernetes_markers.json";

/// Refreshes the markers, then runs the `crdgen` binary of k8s-reconcilers, which writes one
/// file per CRD into [`CRDS_DIR`] (built after the refresh, so it embeds the new markers).
pub(crate) fn generate() -> anyhow::Result<()> {
    refresh_markers()?;
    let root = crate::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "run",
            "--quiet",
            "-p",
            "k8s-reconcilers",
            "--bin",
            "crdgen",
            "--",
        ])
        .arg(root.join(CRDS_DIR))
        .status()
        .context("running cargo run -p k8s-reconcilers --bin crdgen")?;
    if !status.success() {
        bail!("crdgen failed ({status}); see its output above");
    }
    Ok(())
}

/// Writes the markers that kube-apiserver of the newest release declares into [`MARKERS_FILE`].
fn refresh_markers() -> anyhow::Result<()> {
    crate::controlplane::install_release(testbed::NEWEST)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let markers = runtime.block_on(async {
        let cp = ControlPlane::start(ControlPlaneOptions {
            release: Some(testbed::NEWEST),
            ..ControlPlaneOptions::default()
        })
        .await?;
        let markers = k8s_reconcilers::crd::markers::served(&cp.try_client()?).await;
        tokio::task::spawn_blocking(move || cp.stop())
            .await
            .context("stopping the control plane")?;
        markers
    })?;
    let path = crate::workspace_root().join(MARKERS_FILE);
    let text = serde_json::to_string_pretty(&markers).context("serialising the markers")? + "\n";
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("{}: markers from {}", path.display(), markers.source);
    Ok(())
}
