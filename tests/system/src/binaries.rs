//! The manager and listener binaries, built once per process with `cargo build`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};

/// Paths of the two binaries the system runs as pod processes.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The controller manager.
    pub manager: PathBuf,
    /// The listener.
    pub listener: PathBuf,
}

pub(crate) use testbed::workspace_root;

/// Builds `manager` and `listener` (`--release` when asked) once per process and returns their
/// paths. A no-op build when they are up to date.
pub fn build_binaries(release: bool) -> anyhow::Result<Binaries> {
    static DEBUG: OnceLock<Result<Binaries, String>> = OnceLock::new();
    static RELEASE: OnceLock<Result<Binaries, String>> = OnceLock::new();
    let cell = if release { &RELEASE } else { &DEBUG };
    cell.get_or_init(|| build(release).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build(release: bool) -> anyhow::Result<Binaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build", "--quiet", "-p", "manager", "--bin", "manager", "-p", "listener", "--bin",
            "listener",
        ])
        .current_dir(workspace_root());
    if release {
        command.arg("--release");
    }
    let status = command
        .status()
        .context("running cargo build -p manager -p listener")?;
    if !status.success() {
        bail!("cargo build of the manager and listener failed ({status}); the errors are above");
    }
    let profile = if release { "release" } else { "debug" };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join(profile);
    let binaries = Binaries {
        manager: target.join("manager"),
        listener: target.join("listener"),
    };
    for b in [&binaries.manager, &binaries.listener] {
        if !b.is_file() {
            bail!("cargo build succeeded but {} is missing", b.display());
        }
    }
    Ok(binaries)
}
