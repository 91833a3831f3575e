//! Controller metrics (docs/architecture.md#controller-metrics): reconcile counts, errors and
//! durations per controller, runner gauges per scale set, listener gauge, and the
//! controller-runtime metrics that ARC's controller exposes and its sample Grafana dashboard
//! queries (`controller_runtime_reconcile_*`, `controller_runtime_active_workers`,
//! `rest_client_requests_total`, and the `workqueue_*` metrics of [`crate::workqueue`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Controller name.
    pub controller: String,
    /// `success` or an error class.
    pub result: String,
}

/// Labels of a reconcile duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// Controller name.
    pub controller: String,
}

/// Labels of `rest_client_requests_total`, as client-go sets them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestClientLabels {
    /// Status code, or `<error>` when no response came.
    pub code: String,
    /// The API server's host (and port).
    pub host: String,
    /// HTTP method.
    pub method: String,
}

/// ARC's scale-set labels of the `gha_controller_*` gauges.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleSetLabels {
    /// Scale set (or listener) name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Repository from the config URL.
    pub repository: String,
    /// Organization from the config URL.
    pub organization: String,
    /// Enterprise from the config URL.
    pub enterprise: String,
}

impl ScaleSetLabels {
    /// Labels for `name`/`namespace` with the parts of `config_url` (empty when it does not parse).
    pub fn new(name: &str, namespace: &str, config_url: &str) -> Self {
        use scaleset_core::naming::{ConfigUrl, Scope};
        let mut labels = ScaleSetLabels {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            ..Default::default()
        };
        if let Ok(url) = ConfigUrl::parse(config_url) {
            match url.scope {
                Scope::Enterprise(e) => labels.enterprise = e,
                Scope::Organization(o) => labels.organization = o,
                Scope::Repository {
                    organization,
                    repository,
                } => {
                    labels.organization = organization;
                    labels.repository = repository;
                }
            }
        }
        labels
    }
}

/// Labels of an Actions service call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceCallLabels {
    /// Operation name.
    pub operation: String,
    /// `ok` or an error class.
    pub outcome: String,
}

/// All controller metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Reconciles by controller and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// `controller_runtime_reconcile_time_seconds`: reconcile durations by controller.
    pub reconcile_duration: Family<ControllerLabel, Histogram>,
    /// `controller_runtime_reconcile_total`: reconciles by controller and controller-runtime's
    /// result (`success`, `error`, `requeue_after`).
    pub runtime_reconciles: Family<ReconcileLabels, Counter>,
    /// `controller_runtime_reconcile_errors_total`.
    pub reconcile_errors: Family<ControllerLabel, Counter>,
    /// `controller_runtime_active_workers`: reconciles under way.
    pub active_workers: Family<ControllerLabel, Gauge>,
    /// `rest_client_requests_total`: the manager's Kubernetes API requests.
    pub rest_client_requests: Family<RestClientLabels, Counter>,
    /// `gha_controller_pending_ephemeral_runners`.
    pub pending_runners: Family<ScaleSetLabels, Gauge>,
    /// `gha_controller_running_ephemeral_runners`.
    pub running_runners: Family<ScaleSetLabels, Gauge>,
    /// `gha_controller_failed_ephemeral_runners`.
    pub failed_runners: Family<ScaleSetLabels, Gauge>,
    /// `gha_controller_running_listeners`.
    pub running_listeners: Family<ScaleSetLabels, Gauge>,
    /// Actions service calls by operation and outcome.
    pub service_calls: Family<ServiceCallLabels, Counter>,
    /// `arc_controller_abandoned_cleanups_total`: deletions whose finalizer was removed after
    /// the grace period although part of their cleanup failed, by controller.
    pub abandoned_cleanups: Family<ControllerLabel, Counter>,
    /// client-go's `workqueue_*` metrics, one queue per controller.
    pub workqueues: std::sync::Arc<crate::workqueue::WorkQueues>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            runtime_reconciles: Family::default(),
            reconcile_errors: Family::default(),
            active_workers: Family::default(),
            rest_client_requests: Family::default(),
            pending_runners: Family::default(),
            running_runners: Family::default(),
            failed_runners: Family::default(),
            running_listeners: Family::default(),
            service_calls: Family::default(),
            abandoned_cleanups: Family::default(),
            workqueues: Default::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "arc_controller_reconciles",
            "Reconciles by controller and result",
            self.reconciles.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            self.reconcile_duration.clone(),
        );
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            self.runtime_reconciles.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            self.active_workers.clone(),
        );
        registry.register(
            "rest_client_requests",
            "Number of HTTP requests to the Kubernetes API, partitioned by status code, method, and host",
            self.rest_client_requests.clone(),
        );
        registry.register(
            "gha_controller_pending_ephemeral_runners",
            "Number of ephemeral runners in a pending state",
            self.pending_runners.clone(),
        );
        registry.register(
            "gha_controller_running_ephemeral_runners",
            "Number of ephemeral runners in a running state",
            self.running_runners.clone(),
        );
        registry.register(
            "gha_controller_failed_ephemeral_runners",
            "Number of ephemeral runners in a failed state",
            self.failed_runners.clone(),
        );
        registry.register(
            "gha_controller_running_listeners",
            "Number of listeners in a running state",
            self.running_listeners.clone(),
        );
        registry.register(
            "arc_actions_service_calls",
            "Actions service calls by operation and outcome",
            self.service_calls.clone(),
        );
        registry.register(
            "arc_controller_abandoned_cleanups",
            "Deletions whose finalizer was removed after the grace period with part of their cleanup left undone",
            self.abandoned_cleanups.clone(),
        );
        registry.register_collector(Box::new(self.workqueues.clone()));
    }
}
