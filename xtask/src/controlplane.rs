//! `cargo xtask controlplane install|up`: the local Kubernetes control plane.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use testbed::{ControlPlane, ControlPlaneOptions, KubernetesRelease};

use crate::workspace_root;

/// What to do with the control plane.
#[derive(Debug, Subcommand)]
pub enum ControlPlaneCommand {
    /// Build etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the Go module
    /// proxy (Kubernetes v1.37, or ARC_K8S_VERSION=1.35; cached under ~/.cache/arc-rs, so a
    /// second run takes seconds).
    Install,
    /// Start a control plane in the foreground, print its kubeconfig, stop on Ctrl-C.
    Up {
        /// Run only etcd and kube-apiserver (no controller-manager, no scheduler).
        #[arg(long)]
        apiserver_only: bool,
        /// Also copy the admin kubeconfig to this path (it is removed on stop).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

/// Runs a control-plane subcommand.
pub fn run(command: ControlPlaneCommand) -> anyhow::Result<()> {
    match command {
        ControlPlaneCommand::Install => install(),
        ControlPlaneCommand::Up {
            apiserver_only,
            kubeconfig,
        } => up(!apiserver_only, kubeconfig),
    }
}

/// The install script: `xtask/scripts/controlplane-install.sh`.
pub fn install_script() -> PathBuf {
    workspace_root().join("xtask/scripts/controlplane-install.sh")
}

/// Installs the control-plane binaries of the release `ARC_K8S_VERSION` selects unless they are
/// already cached.
pub fn install() -> anyhow::Result<()> {
    install_release(testbed::kubernetes_release()?)
}

/// Builds kube-apiserver, kube-controller-manager and kube-scheduler of `release` and etcd from
/// the Go module proxy, unless they are already cached.
pub fn install_release(release: KubernetesRelease) -> anyhow::Result<()> {
    let script = install_script();
    let status = Command::new("bash")
        .arg(&script)
        .env("ARC_CACHE_DIR", testbed::cache_dir())
        .env("K8S_MINOR", release.minor)
        .env("K8S_VERSION", release.version)
        .env("ETCD_VERSION", testbed::ETCD_VERSION)
        .status()
        .with_context(|| format!("running bash {}", script.display()))?;
    if !status.success() {
        bail!("controlplane install failed ({status}); the message above names the failing step");
    }
    if !testbed::binaries_installed(release) {
        bail!(
            "controlplane install finished but the binaries are not in {}; \
             delete that directory and run `cargo xtask controlplane install` again",
            testbed::kubernetes_bin_dir(release).display()
        );
    }
    Ok(())
}

fn up(scheduling: bool, copy_to: Option<PathBuf>) -> anyhow::Result<()> {
    let release = testbed::kubernetes_release()?;
    if !testbed::binaries_installed(release) {
        install_release(release)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let cp = ControlPlane::start(ControlPlaneOptions {
            scheduling,
            release: Some(release),
            ..ControlPlaneOptions::default()
        })
        .await?;
        let version = cp
            .try_client()?
            .apiserver_version()
            .await
            .context("reading the API server's version")?;
        let mut kubeconfig = cp.kubeconfig_path().to_path_buf();
        if let Some(path) = &copy_to {
            std::fs::copy(cp.kubeconfig_path(), path)
                .with_context(|| format!("copying the kubeconfig to {}", path.display()))?;
            kubeconfig.clone_from(path);
        }
        println!(
            "control plane {} up in {:.1?} at {}{}",
            version.git_version,
            cp.startup_time(),
            cp.apiserver_url(),
            if scheduling {
                " (with controller-manager and scheduler)"
            } else {
                ""
            }
        );
        println!("kubeconfig: {}", kubeconfig.display());
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!("press Ctrl-C to stop");
        let outcome = loop {
            tokio::select! {
                signal = tokio::signal::ctrl_c() => {
                    break signal.context("waiting for Ctrl-C");
                }
                () = tokio::time::sleep(Duration::from_secs(2)) => {
                    if let Err(e) = cp.ensure_running() {
                        break Err(e);
                    }
                }
            }
        };
        println!("stopping the control plane");
        tokio::task::spawn_blocking(move || cp.stop())
            .await
            .context("stopping the control plane")?;
        if let Some(path) = &copy_to {
            let _ = std::fs::remove_file(path);
        }
        println!("stopped");
        outcome
    })
}
