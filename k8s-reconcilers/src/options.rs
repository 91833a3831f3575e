//! Settings of a manager run, shared by the four controllers.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::github::Connector;

/// The listener's command in the manager image: a link to the manager binary, which runs the
/// listener when started under this name.
pub const LISTENER_ENTRYPOINT: &str = "/ghalistener";

pub use scaleset_core::autoscaling_runner_set::DriftPolicy;

/// How failed reconciles are requeued (`--workqueue-rate-limiter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequeueLimiter {
    /// Per-object exponential backoff and an overall bucket of 10/s, burst 100
    /// (`bucket_rate_limiter`, and ARC's default).
    #[default]
    Bucket,
    /// Per-object exponential backoff only (`typed_rate_limiter`).
    Typed,
}

/// A shutdown trigger shared by the controllers: once it fires they stop taking work, finish
/// the reconciles in flight and return.
#[derive(Clone)]
pub struct Shutdown(Shared<BoxFuture<'static, ()>>);

impl Shutdown {
    /// A trigger that never fires.
    pub fn never() -> Self {
        Self::on(futures::future::pending())
    }

    /// Fires when `signal` completes.
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(signal.boxed().shared())
    }

    /// A future that completes when the trigger fires.
    pub fn signal(&self) -> Shared<BoxFuture<'static, ()>> {
        self.0.clone()
    }

    /// Whether the trigger has fired.
    pub fn triggered(&self) -> bool {
        self.0.peek().is_some()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::never()
    }
}

/// What [`crate::run`] needs besides a Kubernetes client. The manager binary builds it from
/// ARC-compatible flags and env vars (docs/architecture.md#manager-flags).
#[derive(Clone)]
pub struct ManagerOptions {
    /// Controller namespace (`CONTROLLER_MANAGER_POD_NAMESPACE`): listeners live here.
    pub controller_namespace: String,
    /// Listener image (`CONTROLLER_MANAGER_CONTAINER_IMAGE`).
    pub listener_image: String,
    /// Listener container command (`LISTENER_ENTRYPOINT`, default `/ghalistener`).
    pub listener_entrypoint: String,
    /// `--auto-scaler-image-pull-secrets`.
    pub listener_image_pull_secrets: Vec<String>,
    /// `--watch-single-namespace`: only AutoscalingRunnerSets (and runners) of this namespace.
    pub watch_namespace: Option<String>,
    /// Log level written into listener configs (`debug`, `info`, `warn`, `error`).
    pub listener_log_level: String,
    /// Log format written into listener configs (`text`, `json`).
    pub listener_log_format: String,
    /// `--listener-metrics-addr`; empty disables listener metrics.
    pub listener_metrics_addr: String,
    /// `--listener-metrics-endpoint`.
    pub listener_metrics_endpoint: String,
    /// Whether the controller publishes its runner gauges (`--metrics-addr` not `0`).
    pub publish_metrics: bool,
    /// `--runner-max-concurrent-reconciles` (EphemeralRunner workers).
    pub runner_max_concurrent_reconciles: u16,
    /// EphemeralRunnerSet workers.
    pub runner_set_max_concurrent_reconciles: u16,
    /// Image for a `runner` container whose template leaves `image` empty.
    pub default_runner_image: Option<String>,
    /// Interval of the sweep that removes registrations without an EphemeralRunner (it also
    /// runs at start-up).
    pub orphan_cleanup_interval: Duration,
    /// Stops the controllers gracefully.
    pub shutdown: Shutdown,
    /// How failed reconciles are requeued.
    pub requeue_limiter: RequeueLimiter,
    /// `--exclude-label-propagation-prefix`.
    pub exclude_label_propagation_prefixes: Vec<String>,
    /// Build version for the version gate (`dev` accepts every ARS).
    pub build_version: String,
    /// Builds Actions service clients.
    pub connector: Arc<dyn Connector>,
    /// Name reported on Kubernetes Events.
    pub event_reporter: String,
    /// How a runner spec change reaches existing runners (`--update-strategy`).
    pub drift_policy: DriftPolicy,
    /// Metrics the controllers update; register them with [`crate::metrics::Metrics::register`].
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long a deletion retries cleanup that fails before its finalizer goes anyway and
    /// what was left is reported (`scaleset_core::failure::on_cleanup_failure`).
    pub deletion_grace: Duration,
}

impl std::fmt::Debug for ManagerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerOptions")
            .field("controller_namespace", &self.controller_namespace)
            .field("listener_image", &self.listener_image)
            .field("watch_namespace", &self.watch_namespace)
            .field("build_version", &self.build_version)
            .finish_non_exhaustive()
    }
}

impl ManagerOptions {
    /// Options with ARC's defaults for everything but the namespace, image and connector.
    pub fn new(
        controller_namespace: impl Into<String>,
        listener_image: impl Into<String>,
        connector: Arc<dyn Connector>,
    ) -> Self {
        Self {
            controller_namespace: controller_namespace.into(),
            listener_image: listener_image.into(),
            listener_entrypoint: LISTENER_ENTRYPOINT.into(),
            listener_image_pull_secrets: Vec::new(),
            watch_namespace: None,
            listener_log_level: "debug".into(),
            listener_log_format: "text".into(),
            listener_metrics_addr: String::new(),
            listener_metrics_endpoint: String::new(),
            publish_metrics: true,
            runner_max_concurrent_reconciles: 2,
            runner_set_max_concurrent_reconciles: 2,
            default_runner_image: None,
            orphan_cleanup_interval: Duration::from_secs(600),
            shutdown: Shutdown::never(),
            requeue_limiter: RequeueLimiter::Bucket,
            exclude_label_propagation_prefixes: Vec::new(),
            build_version: "dev".into(),
            connector,
            event_reporter: "gha-runner-scale-set-controller".into(),
            drift_policy: Default::default(),
            metrics: Arc::default(),
            deletion_grace: scaleset_core::failure::DELETION_GRACE,
        }
    }
}
