//! `cargo xtask crds`: regenerate the CRD YAML of the controller chart from the Rust types.

use std::process::Command;

use anyhow::{Context, bail};

/// Chart folder (relative to the workspace root) that receives the CRD files.
pub(crate) const CRDS_DIR: &str = "charts/gha-runner-scale-set-controller/crds";

/// Runs the `crdgen` binary of k8s-reconcilers, which writes one file per CRD into [`CRDS_DIR`].
pub(crate) fn generate() -> anyhow::Result<()> {
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
