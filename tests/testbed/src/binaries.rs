//! Which Kubernetes the test bed runs, and where its binaries live.
//!
//! kube-apiserver, kube-controller-manager and kube-scheduler are built by
//! `cargo xtask controlplane install` with Go from the Go module proxy: the module in
//! `xtask/go/kubernetes-<minor>/` requires `k8s.io/kubernetes` at the version pinned here, and its
//! committed go.sum makes the build reproducible. etcd is built the same way from
//! `xtask/go/etcd/`.

use std::path::PathBuf;

use anyhow::bail;

/// The environment variable that selects the Kubernetes minor version (`1.37` or `1.35`).
pub const KUBERNETES_VERSION_ENV: &str = "ARC_K8S_VERSION";

/// A Kubernetes release the test bed can build and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesRelease {
    /// The minor version as users name it, e.g. `1.37`; also the Go module's directory suffix.
    pub minor: &'static str,
    /// The exact release, e.g. `v1.37.2`.
    pub version: &'static str,
}

/// The newest release: what every suite runs on.
pub const NEWEST: KubernetesRelease = KubernetesRelease {
    minor: "1.37",
    version: "v1.37.2",
};

/// The oldest minor upstream still supports: the compatibility subset runs on it.
pub const OLDEST_SUPPORTED: KubernetesRelease = KubernetesRelease {
    minor: "1.35",
    version: "v1.35.4",
};

/// Every release the test bed knows, newest first.
pub const RELEASES: [KubernetesRelease; 2] = [NEWEST, OLDEST_SUPPORTED];

/// The etcd release built for the control plane (a 3.6 release, which both Kubernetes releases
/// support).
pub const ETCD_VERSION: &str = "v3.6.16";

/// The release selected by `ARC_K8S_VERSION` (`1.37`, `v1.37.2`, `1.35`, ...), else [`NEWEST`].
pub fn kubernetes_release() -> anyhow::Result<KubernetesRelease> {
    let Some(wanted) = std::env::var_os(KUBERNETES_VERSION_ENV) else {
        return Ok(NEWEST);
    };
    let wanted = wanted.to_string_lossy();
    let wanted = wanted.trim();
    if wanted.is_empty() {
        return Ok(NEWEST);
    }
    let bare = wanted.trim_start_matches('v');
    if let Some(release) = RELEASES
        .iter()
        .find(|r| r.minor == bare || r.version.trim_start_matches('v') == bare)
    {
        return Ok(*release);
    }
    let known: Vec<&str> = RELEASES.iter().map(|r| r.minor).collect();
    bail!(
        "{KUBERNETES_VERSION_ENV}={wanted:?} is not a Kubernetes version the test bed builds; \
         set it to one of {} (or unset it for {})",
        known.join(", "),
        NEWEST.minor
    )
}

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
pub fn kubernetes_bin_dir(release: KubernetesRelease) -> PathBuf {
    if let Some(dir) = std::env::var_os("ARC_K8S_BIN_DIR") {
        return PathBuf::from(dir);
    }
    cache_dir()
        .join("kubernetes")
        .join(release.version)
        .join("bin")
}

/// Where the etcd build is cached: `<cache_dir>/etcd/<version>/etcd`.
pub fn etcd_cached_binary() -> PathBuf {
    cache_dir().join("etcd").join(ETCD_VERSION).join("etcd")
}

/// The names of the Kubernetes binaries the test bed runs.
pub const KUBERNETES_BINARIES: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// Whether every binary a control plane of `release` needs is present.
pub fn binaries_installed(release: KubernetesRelease) -> bool {
    KUBERNETES_BINARIES
        .iter()
        .all(|b| kubernetes_bin_dir(release).join(b).is_file())
        && etcd_binary().is_ok()
}

/// The path of a Kubernetes binary, or an error that says how to get it.
pub(crate) fn kubernetes_binary(release: KubernetesRelease, name: &str) -> anyhow::Result<PathBuf> {
    let path = kubernetes_bin_dir(release).join(name);
    if !path.is_file() {
        bail!(
            "{name} {} not found at {}: run `{KUBERNETES_VERSION_ENV}={} cargo xtask controlplane \
             install` to build it (or set ARC_K8S_BIN_DIR, or ARC_TEST_KUBECONFIG to use an \
             existing cluster)",
            release.version,
            path.display(),
            release.minor,
        );
    }
    Ok(path)
}

/// The etcd binary: `$ARC_ETCD`, else the cached build.
pub(crate) fn etcd_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ARC_ETCD") {
        return Ok(PathBuf::from(path));
    }
    let cached = etcd_cached_binary();
    if cached.is_file() {
        return Ok(cached);
    }
    bail!(
        "etcd {ETCD_VERSION} not found at {}: run `cargo xtask controlplane install` to build it, \
         or set ARC_ETCD to an etcd binary",
        cached.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_is_pinned_by_its_go_module() {
        let root = crate::workspace_root();
        for release in RELEASES {
            let go_mod = root.join(format!("xtask/go/kubernetes-{}/go.mod", release.minor));
            let text = std::fs::read_to_string(&go_mod).expect("read go.mod");
            let staging = format!("v0.{}", release.version.trim_start_matches("v1."));
            assert!(
                text.lines().any(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.ends_with(&["k8s.io/kubernetes", release.version])
                        || words.starts_with(&["k8s.io/kubernetes", release.version])
                }),
                "{} does not require k8s.io/kubernetes {}",
                go_mod.display(),
                release.version
            );
            let replaces: Vec<&str> = text.lines().filter(|l| l.contains(" => ")).collect();
            assert!(
                !replaces.is_empty(),
                "{} pins no staging module",
                go_mod.display()
            );
            for line in replaces {
                assert!(
                    line.trim_end().ends_with(&staging),
                    "{}: {line:?} does not pin {staging}",
                    go_mod.display()
                );
            }
        }
        let etcd = std::fs::read_to_string(root.join("xtask/go/etcd/go.mod")).expect("etcd go.mod");
        assert!(
            etcd.contains(&format!("go.etcd.io/etcd/server/v3 {ETCD_VERSION}")),
            "xtask/go/etcd/go.mod does not require etcd {ETCD_VERSION}"
        );
    }
}
