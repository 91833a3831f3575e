//! Real Helm for the project: a Python virtual environment with helm-python-sdk (Helm v4's engine)
//! and the `helm-render.py` entry point that templates, lints and installs the charts.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::workspace_root;

/// `xtask/scripts/helm-render.py`: `template`, `lint`, `install`, `uninstall` with real Helm.
pub fn render_script() -> PathBuf {
    workspace_root().join("xtask/scripts/helm-render.py")
}

/// The charts shipped by the project.
pub fn charts() -> [PathBuf; 2] {
    let root = workspace_root().join("charts");
    [
        root.join("gha-runner-scale-set-controller"),
        root.join("gha-runner-scale-set"),
    ]
}

/// Creates the Helm virtual environment if needed and returns the path of its python.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    testbed::helm_python()
}

/// Runs `helm-render.py <args>` with the environment's python and returns its stdout.
/// Helm failures (a `fail` in a template, a schema violation, a lint error) come back as errors
/// carrying Helm's message.
pub fn run(args: &[&str]) -> anyhow::Result<String> {
    let python = ensure_venv()?;
    let script = render_script();
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("running {} {} failed", python.display(), script.display()))?;
    if !output.status.success() {
        bail!(
            "helm {} failed: {}{}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `helm lint --strict` on both charts.
pub fn lint_charts() -> anyhow::Result<()> {
    for chart in charts() {
        let path = chart.to_string_lossy().into_owned();
        let report = run(&["lint", &path, "--strict"])?;
        print!("{report}");
    }
    Ok(())
}
