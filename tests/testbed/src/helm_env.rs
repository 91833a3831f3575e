//! Real Helm's environment: a Python virtual environment with helm-python-sdk (Helm v4's engine),
//! made by `xtask/scripts/helm-venv.py` under [`crate::cache_dir`]`/helm-venv`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};

/// The workspace root (two levels above this crate), whichever crate asks.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Where the environment lives.
pub fn helm_venv_dir() -> PathBuf {
    crate::cache_dir().join("helm-venv")
}

/// The python executable of the Helm environment, which is created on first use (idempotent;
/// concurrent processes wait on the script's lock) and then remembered for this process.
pub fn helm_python() -> anyhow::Result<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| ensure_venv().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn ensure_venv() -> anyhow::Result<PathBuf> {
    let dir = helm_venv_dir();
    let script = workspace_root().join("xtask/scripts/helm-venv.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .output()
        .with_context(|| {
            format!(
                "running python3 {} failed; fix: install Python 3 (Debian: apt-get install python3 python3-venv)",
                script.display()
            )
        })?;
    if !output.status.success() {
        bail!(
            "creating the Helm environment in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let python = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !python.is_file() {
        bail!(
            "{} reported python at {:?}, which does not exist; fix: delete {} and run again",
            script.display(),
            python,
            dir.display()
        );
    }
    Ok(python)
}
