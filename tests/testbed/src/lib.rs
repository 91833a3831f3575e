//! Test bed: a real local Kubernetes control plane for tests.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let cp = testbed::ControlPlane::shared().await?;
//! let ns = cp.test_namespace("my-test").await?;
//! let client = cp.client();
//! let limited = cp.service_account_client(ns.name(), "limited").await?;
//! # let _ = (client, limited);
//! # Ok(())
//! # }
//! ```
//!
//! A control plane is etcd and kube-apiserver of Kubernetes v1.37 (or v1.35 with
//! `ARC_K8S_VERSION=1.35`; both built by `cargo xtask controlplane install`) on free loopback
//! ports, plus kube-controller-manager and kube-scheduler when asked for. Set
//! `ARC_TEST_KUBECONFIG` to run against an existing cluster instead.

mod audit;
mod binaries;
mod cleanup;
mod control_plane;
mod helm_env;
mod http;
mod kubeconfig;
mod namespace;
mod pki;
mod process;
mod wait;
mod watch;

pub use audit::{AuditEvent, AuditLog, AuditPolicy};
pub use binaries::{
    ETCD_VERSION, KUBERNETES_BINARIES, KUBERNETES_VERSION_ENV, KubernetesRelease, NEWEST,
    OLDEST_SUPPORTED, RELEASES, binaries_installed, cache_dir, etcd_cached_binary,
    kubernetes_bin_dir, kubernetes_release,
};
pub use cleanup::{ClusterObject, DeleteOnDrop};
pub use control_plane::{
    ControlPlane, ControlPlaneOptions, EXISTING_CLUSTER_ENV, client_from_kubeconfig, free_port,
};
pub use helm_env::{helm_python, helm_venv_dir, workspace_root};
pub use http::http_get;
pub use namespace::{TEST_NAMESPACE_LABEL, TestNamespace};
pub use wait::{POLL, eventually};
pub use watch::{Recorded, WatchRecorder};
