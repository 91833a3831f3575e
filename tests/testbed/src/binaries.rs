//! Where the control-plane binaries live.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The Kubernetes version the test bed builds and runs.
pub const KUBERNETES_VERSION: &str = "v1.20.2";

/// The cache root: `$ARC_CACHE_DIR`, else `~/.cache/arc-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARC_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("arc-rs")
}

/// The directory holding kube-apiserver, kube-controller-manager and kube-scheduler:
/// `$ARC_K8S_BIN_DIR`, else `<cache_dir>/kubernetes/<version>/bin`.
pub fn kubernetes_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARC_K8S_BIN_DIR") {
        return PathBuf::from(dir);
    }
    cache_dir()
        .join("kubernetes")
        .join(KUBERNETES_VERSION)
        .join("bin")
}

/// Whether every binary a control plane needs is present.
pub fn binaries_installed() -> bool {
    [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .iter()
    .all(|b| kubernetes_bin_dir().join(b).is_file())
        && etcd_binary().is_ok()
}

/// The path of a Kubernetes binary, or an error that says how to get it.
pub(crate) fn kubernetes_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = kubernetes_bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "{name} not found at {}: run `cargo xtask controlplane install` to build it \
             (or set ARC_K8S_BIN_DIR, or ARC_TEST_KUBECONFIG to use an existing cluster)",
            path.display()
        );
    }
    Ok(path)
}

/// The etcd binary: `$ARC_ETCD`, else `etcd` on PATH.
pub(crate) fn etcd_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ARC_ETCD") {
        return Ok(PathBuf::from(path));
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join("etcd");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let debian = Path::new("/usr/bin/etcd");
    if debian.is_file() {
        return Ok(debian.to_path_buf());
    }
    bail!(
        "etcd not found on PATH: run `cargo xtask controlplane install` (installs Debian's \
         etcd-server), or set ARC_ETCD to its path"
    )
}
