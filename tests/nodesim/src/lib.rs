//! Node simulator: plays the kubelet for Nodes it registers, so that pods the real scheduler
//! binds to them run on this machine.
//!
//! ```no_run
//! # async fn example(kube_config: kube::Config) -> anyhow::Result<()> {
//! use nodesim::{NodeSimulator, SimulatorConfig};
//! let sim = NodeSimulator::start(kube_config, SimulatorConfig {
//!     listener_binary: Some("target/debug/listener".into()),
//!     ..SimulatorConfig::with_nodes("sim", 2)
//! })
//! .await?;
//! sim.evict_pod("ns", "some-pod").await?;
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! * Nodes are Ready, with capacity, a Lease renewed like a kubelet's and periodic status
//!   heartbeats; the API server's `node.kubernetes.io/not-ready` taint is removed once Ready.
//!   By default they carry the testbed's `testbed.arc-rs.dev/simulated-node:NoSchedule` taint,
//!   so only pods tolerating it land there ([`SimulatorConfig::taint`]).
//! * Pods bound to them: volumes (Secret, ConfigMap, others as empty directories) are written
//!   to files, the environment is resolved (`env`, `envFrom`, `secretKeyRef`,
//!   `configMapKeyRef`, `fieldRef`), and paths under mount points point to those files.
//! * Listener containers ([`ContainerMatcher`]) run the real listener binary as a child
//!   process with a kubeconfig for the pod's ServiceAccount (TokenRequest, bound to the pod).
//!   Containers named `runner` run a simulated runner against the emulator's runner side.
//!   Other containers idle until stopped; init containers complete at once.
//! * Pod status is written as a kubelet writes it; deletion stops the containers within the
//!   grace period, then removes the pod (grace 0).
//! * Volumes claimed from the default StorageClass [`STORAGE_CLASS`] (persistent or generic
//!   ephemeral) are provisioned at once and deleted when released, as a CSI driver would.
//! * Failure injection: [`NodeSimulator::evict_pod`], [`NodeSimulator::oom_kill`],
//!   [`NodeSimulator::kill_container`], [`NodeSimulator::fail_init_container`] (or the
//!   [`FAIL_INIT_ANNOTATION`] on a pod template), [`NodeSimulator::lose_node`].
//!
//! A pod that runs real containers gets a network namespace and an address of its own
//! ([`POD_SUBNET`], in `status.podIP` and the `status.podIP` fieldRef), reachable from the host,
//! with the host's forwarded loopback ports inside; other pods (simulated runners, host
//! processes) share the host network, and `podIP` is 127.0.0.1. `hostIP` is 127.0.0.1.

mod container;
mod kubelet;
mod netns;
mod node;
mod pod;
mod provisioner;
mod resolve;
mod runner;
mod status;
mod token;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

pub use container::{PODMAN_ARGS, PODMAN_RUN_ARGS, podman_name_prefix};
pub use kubelet::NodeSimulator;
pub use netns::POD_SUBNET;
pub use provisioner::STORAGE_CLASS;
pub use runner::JIT_ENV;

/// The testbed's taint for simulated Nodes.
pub const SIMULATED_NODE_TAINT: &str = "testbed.arc-rs.dev/simulated-node";
/// Label on every Node the simulator registers.
pub const SIMULATED_NODE_LABEL: &str = "testbed.arc-rs.dev/simulated-node";
/// Pod annotation `<init container>[=<exit code>]`: that init container fails (default exit 1).
pub const FAIL_INIT_ANNOTATION: &str = "nodesim.arc-rs.dev/fail-init-container";
/// The container that runs the simulated runner.
pub const RUNNER_CONTAINER: &str = "runner";

/// One Node to register.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Node name (also its `kubernetes.io/hostname` label).
    pub name: String,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// CPU capacity (a quantity, e.g. `"8"`).
    pub cpu: String,
    /// Memory capacity (e.g. `"32Gi"`).
    pub memory: String,
    /// How many pods fit.
    pub pods: u32,
}

impl NodeConfig {
    /// A Node with 8 CPUs, 32 GiB and room for 250 pods.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: Vec::new(),
            cpu: "8".to_owned(),
            memory: "32Gi".to_owned(),
            pods: 250,
        }
    }
}

/// Which containers are listeners (run as the listener binary).
#[derive(Clone, Debug)]
pub struct ContainerMatcher {
    /// Container names that match.
    pub names: Vec<String>,
    /// Substrings of the image that match.
    pub image_contains: Vec<String>,
}

impl Default for ContainerMatcher {
    /// ARC's listener container is named `listener`; images named like a listener match too.
    fn default() -> Self {
        Self {
            names: vec!["listener".to_owned()],
            image_contains: vec!["listener".to_owned()],
        }
    }
}

impl ContainerMatcher {
    /// Whether a container with this name and image matches.
    pub fn matches(&self, name: &str, image: &str) -> bool {
        self.names.iter().any(|n| n == name)
            || self.image_contains.iter().any(|s| image.contains(s))
    }
}

/// Containers that really run (besides the listener), e.g. the manager pod of the controller
/// chart (container `manager`): from their image in podman, or as host processes of `binary`
/// (the container's `args` are passed; its `command`, the image's entrypoint, is replaced).
#[derive(Clone, Debug)]
pub struct ProcessRule {
    /// Which containers.
    pub matcher: ContainerMatcher,
    /// The program to run as a host process; required for [`ContainerRuntime::HostProcesses`].
    pub binary: Option<PathBuf>,
    /// Extra environment, after the pod's.
    pub env: Vec<(String, String)>,
}

/// How listener and process containers ([`SimulatorConfig::listener_matcher`],
/// [`SimulatorConfig::process_rules`]) run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerRuntime {
    /// As host processes of the configured binaries, with a kubeconfig and paths under mount
    /// points rewritten: quick, for local work.
    HostProcesses,
    /// As real containers from the pod's image with podman, as a kubelet runs them (the image
    /// must be in podman's local store: nothing is pulled).
    Podman,
}

/// What the simulator does.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// How listener and process containers run.
    pub runtime: ContainerRuntime,
    /// The Nodes to register (at least one).
    pub nodes: Vec<NodeConfig>,
    /// Give the Nodes the [`SIMULATED_NODE_TAINT`] (`NoSchedule`); pods must tolerate it.
    pub taint: bool,
    /// The listener binary; without it, listener containers wait with `ErrImagePull`.
    pub listener_binary: Option<PathBuf>,
    /// Which containers are listeners.
    pub listener_matcher: ContainerMatcher,
    /// Extra environment for listener processes (e.g. `RUST_LOG`), after the pod's.
    pub listener_env: Vec<(String, String)>,
    /// Other containers run as processes, checked in order after the listener matcher.
    pub process_rules: Vec<ProcessRule>,
    /// Where pod files live (volumes, tokens, logs); a temporary directory when `None`.
    pub workdir: Option<PathBuf>,
    /// How often the Node Lease is renewed (a kubelet: 10 s).
    pub lease_interval: Duration,
    /// How often the Node status heartbeat is written (a kubelet with leases: 1 min).
    pub status_interval: Duration,
    /// Delete the Nodes on [`NodeSimulator::shutdown`].
    pub delete_nodes_on_shutdown: bool,
}

impl SimulatorConfig {
    /// `count` Nodes named `<prefix>-0` … with defaults for everything else.
    pub fn with_nodes(prefix: &str, count: usize) -> Self {
        Self {
            nodes: (0..count)
                .map(|i| NodeConfig::new(format!("{prefix}-{i}")))
                .collect(),
            taint: true,
            runtime: ContainerRuntime::HostProcesses,
            listener_binary: None,
            listener_matcher: ContainerMatcher::default(),
            listener_env: Vec::new(),
            process_rules: Vec::new(),
            workdir: None,
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
            delete_nodes_on_shutdown: true,
        }
    }
}

/// Why a failure could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The simulator runs no such pod.
    #[error(
        "pod {namespace}/{name} does not run on a simulated node; fix: wait until it is bound and started"
    )]
    NoSuchPod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pod has no such container.
    #[error("pod {namespace}/{name} has no running container {container:?}")]
    NoSuchContainer {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Container.
        container: String,
    },
    /// The simulator registered no such node.
    #[error("node {0:?} is not simulated here")]
    NoSuchNode(String),
    /// Writing to the API server failed.
    #[error("{0}")]
    Api(String),
}
