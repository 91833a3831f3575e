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

/// Builds the static release binaries and the manager and listener images from them
/// ([`crate::images`]) once per process; a quick check when nothing changed.
pub fn build_images_once() -> anyhow::Result<crate::images::Images> {
    static IMAGES: OnceLock<Result<crate::images::Images, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            let build = || {
                crate::images::ensure_tools()?;
                let (manager, listener) = crate::images::build_static_binaries()?;
                crate::images::build_images(&manager, &listener)
            };
            build().map_err(|e: anyhow::Error| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

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
