//! The whole system on one machine, as one wiring shared by the end-to-end tests, `cargo xtask
//! bench` and the demo.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use system::{ScaleSetSpec, System, SystemOptions};
//! let cp = testbed::ControlPlane::shared_with_scheduling().await?;
//! let sys = System::start(cp.into(), SystemOptions::new("e2e-default")).await?;
//! let set = sys.install_scale_set(ScaleSetSpec::new("default")).await?;
//! let jobs = sys.queue_jobs(&set, 3, std::time::Duration::from_secs(1));
//! sys.wait_jobs_completed(&jobs, system::WAIT).await?;
//! sys.uninstall_scale_set(&set).await?;
//! sys.leak_check(&set, &jobs).await?;
//! sys.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`System::start`] starts the Actions-service emulator (HTTP or HTTPS), a node simulator
//! (Nodes whose pods run on this machine: the manager and listener as their real binaries,
//! runners as simulated runners), renders the `gha-runner-scale-set-controller` chart with real
//! Helm and applies it: CRDs, ServiceAccount, RBAC and the manager Deployment, whose pod the node
//! simulator runs as the manager binary with a token of the chart's ServiceAccount, so the
//! manager has exactly the chart's permissions. [`System::install_scale_set`] renders and
//! applies the `gha-runner-scale-set` chart (its manager Role, secret, AutoscalingRunnerSet) and
//! waits until the listener holds a session. [`System::leak_check`] proves a run left nothing
//! behind.
//!
//! Systems of one process run one at a time ([`System::start`] waits for the previous one to
//! shut down), so a cluster-wide manager never sees another test's scale sets.

mod binaries;
mod cluster;
mod helm;
pub mod images;
mod leak;
mod process;
mod system;
mod timeline;

pub use actions_emulator::proxy::{Proxy, ProxyRecord};
pub use binaries::{Binaries, build_binaries, build_images_once};
pub use cluster::{apply, wait_for};
pub use helm::{Chart, Cluster, render};
pub use leak::LeakReport;
pub use nodesim::{ContainerRuntime, POD_SUBNET};
pub use process::{find_processes, rss_bytes};
pub use system::{
    CA_CONFIG_MAP, HOST_PROCESSES_ENV, Plane, ScaleSet, ScaleSetSpec, System, SystemOptions,
    install_crds, runtime_from_env,
};
pub use timeline::Timeline;

use std::time::Duration;

/// A generous timeout for conditions in tests.
pub const WAIT: Duration = Duration::from_secs(120);
/// The organization the emulator's config URLs name.
pub const ORG: &str = "octo-org";
