//! ARC's `gha_*` listener metrics (docs/architecture.md#listener-metrics-and-health),
//! configurable as ARC's are, plus our per-stage job latency histograms and a last-poll
//! timestamp.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use k8s_reconcilers::crd::{CounterMetric, GaugeMetric, HistogramMetric};

use crate::config::{ConfigUrlParts, MetricsConfig};
use actions_client::{JobCompleted, JobInfo, JobStarted, Statistics};

type Labels = Vec<(String, String)>;

/// ARC's default histogram buckets, in seconds.
pub const DEFAULT_BUCKETS: [f64; 45] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 18.0,
    20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 150.0, 180.0, 210.0,
    240.0, 300.0, 360.0, 420.0, 480.0, 540.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0,
];

const GAUGE_LABELS: [&str; 5] = [
    "enterprise",
    "organization",
    "repository",
    "name",
    "namespace",
];
const JOB_LABELS: [&str; 5] = [
    "enterprise",
    "organization",
    "repository",
    "job_name",
    "event_name",
];

const GAUGES: [(&str, &str); 8] = [
    (
        "gha_assigned_jobs",
        "Number of jobs assigned to this scale set",
    ),
    (
        "gha_running_jobs",
        "Number of jobs running (or about to be run)",
    ),
    (
        "gha_registered_runners",
        "Number of runners registered by the scale set",
    ),
    (
        "gha_busy_runners",
        "Number of registered runners running a job",
    ),
    (
        "gha_idle_runners",
        "Number of registered runners not running a job",
    ),
    ("gha_min_runners", "Minimum number of runners"),
    ("gha_max_runners", "Maximum number of runners"),
    (
        "gha_desired_runners",
        "Number of runners desired by the scale set",
    ),
];
const COUNTERS: [(&str, &str); 2] = [
    ("gha_started_jobs_total", "Total number of jobs started"),
    ("gha_completed_jobs_total", "Total number of jobs completed"),
];
const HISTOGRAMS: [(&str, &str); 2] = [
    (
        "gha_job_startup_duration_seconds",
        "Time spent waiting for workflow job to get started on the runner owned by the scale set (in seconds)",
    ),
    (
        "gha_job_execution_duration_seconds",
        "Time spent executing workflow jobs by the scale set (in seconds)",
    ),
];

/// Stages of a job's life measured by [`Metrics::record_stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Queued on the service → offered to the scale set (JobAvailable seen).
    QueuedToAvailable,
    /// JobAvailable seen → acquired.
    AvailableToAcquired,
    /// Acquired → assigned to a runner (JobAssigned seen).
    AcquiredToAssigned,
    /// Assigned → started on a runner (JobStarted seen).
    AssignedToStarted,
    /// Started → completed.
    StartedToCompleted,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::QueuedToAvailable => "queued_to_available",
            Stage::AvailableToAcquired => "available_to_acquired",
            Stage::AcquiredToAssigned => "acquired_to_assigned",
            Stage::AssignedToStarted => "assigned_to_started",
            Stage::StartedToCompleted => "started_to_completed",
        }
    }
}

#[derive(Clone)]
struct Buckets(Vec<f64>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

struct Registered<M> {
    labels: Vec<String>,
    family: M,
}

/// The label values known for one recording.
#[derive(Default)]
struct LabelValues<'a> {
    enterprise: &'a str,
    organization: &'a str,
    repository: &'a str,
    name: &'a str,
    namespace: &'a str,
    job: Option<&'a JobInfo>,
    result: &'a str,
}

impl LabelValues<'_> {
    fn get(&self, label: &str) -> String {
        let job = self.job;
        let field = |f: fn(&JobInfo) -> &str| job.map(f).unwrap_or_default().to_string();
        match label {
            "enterprise" => self.enterprise.into(),
            "organization" => job
                .map_or(self.organization, |j| j.owner_name.as_str())
                .into(),
            "repository" => job
                .map_or(self.repository, |j| j.repository_name.as_str())
                .into(),
            "name" => self.name.into(),
            "namespace" => self.namespace.into(),
            "job_name" => field(|j| &j.job_display_name),
            "job_workflow_ref" => field(|j| &j.job_workflow_ref),
            "event_name" => field(|j| &j.event_name),
            "job_result" => self.result.into(),
            "job_workflow_name" => job
                .map(|j| workflow_ref_parts(&j.job_workflow_ref).0)
                .unwrap_or_default(),
            "job_workflow_target" => job
                .map(|j| workflow_ref_parts(&j.job_workflow_ref).1)
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn labels(&self, names: &[String]) -> Labels {
        names.iter().map(|n| (n.clone(), self.get(n))).collect()
    }
}

/// `(workflow name, target)` from `owner/repo/.github/workflows/ci-cd.yml@refs/heads/main`.
pub fn workflow_ref_parts(workflow_ref: &str) -> (String, String) {
    let parts: Vec<&str> = workflow_ref.split('@').collect();
    let [path, git_ref] = parts.as_slice() else {
        return (String::new(), String::new());
    };
    let file = path.rsplit('/').next().unwrap_or_default();
    let name = file
        .strip_suffix(".yml")
        .or_else(|| file.strip_suffix(".yaml"))
        .unwrap_or(file)
        .to_string();
    let target = if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        format!("heads/{branch}")
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        format!("tags/{tag}")
    } else if let Some(pr) = git_ref
        .strip_prefix("refs/pull/")
        .and_then(|r| r.strip_suffix("/merge"))
    {
        format!("pull/{pr}")
    } else {
        String::new()
    };
    (name, target)
}

/// The listener's metrics registry and recorders.
pub struct Metrics {
    registry: Registry,
    url: ConfigUrlParts,
    name: String,
    namespace: String,
    gauges: HashMap<&'static str, Registered<Family<Labels, Gauge>>>,
    counters: HashMap<&'static str, Registered<Family<Labels, Counter>>>,
    histograms: HashMap<&'static str, Registered<Family<Labels, Histogram, Buckets>>>,
    stages: Family<Labels, Histogram, Buckets>,
    last_poll: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Registers the metrics chosen by `config` (`None`: ARC's default set). Unknown names are
    /// logged and skipped, as ARC does.
    pub fn new(
        config: Option<&MetricsConfig>,
        url: ConfigUrlParts,
        name: &str,
        namespace: &str,
    ) -> Self {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let default_config = || {
            let mut completed = owned(&JOB_LABELS);
            completed.push("job_result".into());
            let gauges = GAUGES.iter().map(|(n, _)| {
                let labels = owned(&GAUGE_LABELS);
                ((*n).to_owned(), GaugeMetric { labels })
            });
            let counters = [
                ("gha_started_jobs_total", owned(&JOB_LABELS)),
                ("gha_completed_jobs_total", completed.clone()),
            ]
            .map(|(n, labels)| (n.to_owned(), CounterMetric { labels }));
            let histograms = [
                ("gha_job_startup_duration_seconds", owned(&JOB_LABELS)),
                ("gha_job_execution_duration_seconds", completed),
            ]
            .map(|(n, labels)| {
                let buckets = None;
                (n.to_owned(), HistogramMetric { labels, buckets })
            });
            MetricsConfig {
                counters: Some(counters.into_iter().collect()),
                gauges: Some(gauges.collect()),
                histograms: Some(histograms.into_iter().collect()),
            }
        };
        let config = config.cloned().unwrap_or_else(default_config);
        let mut registry = Registry::default();
        let mut gauges = HashMap::new();
        let mut counters = HashMap::new();
        let mut histograms = HashMap::new();
        for (metric, spec) in config.gauges.iter().flatten() {
            let Some((n, help)) = GAUGES.iter().find(|(n, _)| n == metric) else {
                tracing::error!(kind = "gauge", name = %metric, "unknown metric name");
                continue;
            };
            let family = Family::<Labels, Gauge>::default();
            registry.register(*n, *help, family.clone());
            gauges.insert(
                *n,
                Registered {
                    labels: spec.labels.clone(),
                    family,
                },
            );
        }
        for (metric, spec) in config.counters.iter().flatten() {
            let Some((n, help)) = COUNTERS.iter().find(|(n, _)| n == metric) else {
                tracing::error!(kind = "counter", name = %metric, "unknown metric name");
                continue;
            };
            let family = Family::<Labels, Counter>::default();
            registry.register(n.trim_end_matches("_total"), *help, family.clone());
            counters.insert(
                *n,
                Registered {
                    labels: spec.labels.clone(),
                    family,
                },
            );
        }
        for (metric, spec) in config.histograms.iter().flatten() {
            let Some((n, help)) = HISTOGRAMS.iter().find(|(n, _)| n == metric) else {
                tracing::error!(kind = "histogram", name = %metric, "unknown metric name");
                continue;
            };
            let buckets = match spec.buckets.as_deref() {
                None | Some([]) => DEFAULT_BUCKETS.to_vec(),
                Some(buckets) => buckets.to_vec(),
            };
            let family = Family::new_with_constructor(Buckets(buckets));
            registry.register(*n, *help, family.clone());
            histograms.insert(
                *n,
                Registered {
                    labels: spec.labels.clone(),
                    family,
                },
            );
        }
        let stages = Family::new_with_constructor(Buckets(DEFAULT_BUCKETS.to_vec()));
        registry.register(
            "arcrs_job_stage_duration_seconds",
            "Time a job spent in each stage, as seen by the listener: queued_to_available, available_to_acquired, acquired_to_assigned, assigned_to_started, started_to_completed",
            stages.clone(),
        );
        let last_poll = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "arcrs_listener_last_poll_timestamp_seconds",
            "Unix time of the last completed long poll",
            last_poll.clone(),
        );
        Metrics {
            registry,
            url,
            name: name.into(),
            namespace: namespace.into(),
            gauges,
            counters,
            histograms,
            stages,
            last_poll,
        }
    }

    fn values<'a>(&'a self, job: Option<&'a JobInfo>, result: &'a str) -> LabelValues<'a> {
        LabelValues {
            enterprise: &self.url.enterprise,
            organization: &self.url.organization,
            repository: &self.url.repository,
            name: if job.is_some() { "" } else { &self.name },
            namespace: if job.is_some() { "" } else { &self.namespace },
            job,
            result,
        }
    }

    fn set_gauge(&self, name: &str, value: i64) {
        if let Some(g) = self.gauges.get(name) {
            g.family
                .get_or_create(&self.values(None, "").labels(&g.labels))
                .set(value);
        }
    }

    /// Statistics gauges (startup and each message).
    pub fn record_statistics(&self, stats: &Statistics) {
        self.set_gauge("gha_assigned_jobs", stats.total_assigned_jobs);
        self.set_gauge("gha_running_jobs", stats.total_running_jobs);
        self.set_gauge("gha_registered_runners", stats.total_registered_runners);
        self.set_gauge("gha_busy_runners", stats.total_busy_runners);
        self.set_gauge("gha_idle_runners", stats.total_idle_runners);
    }

    /// `gha_min_runners` / `gha_max_runners`, at startup and when the bounds change.
    pub fn record_bounds(&self, min: i64, max: i64) {
        self.set_gauge("gha_min_runners", min);
        self.set_gauge("gha_max_runners", max);
    }

    /// `gha_desired_runners`.
    pub fn record_desired(&self, desired: i64) {
        self.set_gauge("gha_desired_runners", desired);
    }

    fn observe(&self, name: &str, job: &JobInfo, result: &str, seconds: f64) {
        if let Some(h) = self.histograms.get(name) {
            h.family
                .get_or_create(&self.values(Some(job), result).labels(&h.labels))
                .observe(seconds);
        }
    }

    fn inc(&self, name: &str, job: &JobInfo, result: &str) {
        if let Some(c) = self.counters.get(name) {
            c.family
                .get_or_create(&self.values(Some(job), result).labels(&c.labels))
                .inc();
        }
    }

    /// A JobStarted: counter and startup duration (whole seconds, as ARC).
    pub fn record_job_started(&self, started: &JobStarted) {
        let job = &started.job;
        self.inc("gha_started_jobs_total", job, "");
        if let (Some(assigned), Some(started)) = (job.scale_set_assign_time, job.runner_assign_time)
        {
            let secs = started.timestamp() - assigned.timestamp();
            self.observe("gha_job_startup_duration_seconds", job, "", secs as f64);
        }
    }

    /// A JobCompleted: counted only when a runner was assigned, as ARC.
    pub fn record_job_completed(&self, completed: &JobCompleted) {
        let job = &completed.job;
        let Some(started) = job.runner_assign_time else {
            return;
        };
        self.inc("gha_completed_jobs_total", job, &completed.result);
        if let Some(finished) = job.finish_time {
            let secs = finished.timestamp() - started.timestamp();
            self.observe(
                "gha_job_execution_duration_seconds",
                job,
                &completed.result,
                secs as f64,
            );
        }
    }

    /// One stage duration.
    pub fn record_stage(&self, stage: Stage, seconds: f64) {
        let labels = vec![
            ("stage".to_string(), stage.label().to_string()),
            ("name".to_string(), self.name.clone()),
            ("namespace".to_string(), self.namespace.clone()),
        ];
        self.stages.get_or_create(&labels).observe(seconds.max(0.0));
    }

    /// A long poll completed now.
    pub fn record_poll(&self) {
        self.last_poll
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        crate::health::OpenMetrics::encode(&self.registry)
    }
}

/// Per-job timestamps for the stage histograms, keyed by `runnerRequestId`.
#[derive(Default)]
pub struct JobStages {
    jobs: Mutex<BTreeMap<i64, StageTimes>>,
}

#[derive(Default, Clone, Copy)]
struct StageTimes {
    available: Option<DateTime<Utc>>,
    acquired: Option<DateTime<Utc>>,
    assigned: Option<DateTime<Utc>>,
    started: Option<DateTime<Utc>>,
}

const MAX_TRACKED_JOBS: usize = 20_000;

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

impl JobStages {
    fn with<R>(&self, id: i64, f: impl FnOnce(&mut StageTimes) -> R) -> R {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= MAX_TRACKED_JOBS && !jobs.contains_key(&id) {
            jobs.pop_first();
        }
        f(jobs.entry(id).or_default())
    }

    /// A JobAvailable was seen now.
    pub fn available(&self, metrics: &Metrics, job: &JobInfo, now: DateTime<Utc>) {
        self.with(job.runner_request_id, |t| t.available = Some(now));
        if let Some(queued) = job.queue_time {
            metrics.record_stage(Stage::QueuedToAvailable, seconds(queued, now));
        }
    }

    /// These ids were acquired now.
    pub fn acquired(&self, metrics: &Metrics, ids: &[i64], now: DateTime<Utc>) {
        for id in ids {
            if let Some(available) = self.with(*id, |t| {
                t.acquired = Some(now);
                t.available
            }) {
                metrics.record_stage(Stage::AvailableToAcquired, seconds(available, now));
            }
        }
    }

    /// A JobAssigned was seen now.
    pub fn assigned(&self, metrics: &Metrics, job: &JobInfo, now: DateTime<Utc>) {
        if let Some(acquired) = self.with(job.runner_request_id, |t| {
            t.assigned = Some(now);
            t.acquired
        }) {
            metrics.record_stage(Stage::AcquiredToAssigned, seconds(acquired, now));
        }
    }

    /// A JobStarted was seen now.
    pub fn started(&self, metrics: &Metrics, job: &JobInfo, now: DateTime<Utc>) {
        let assigned = self.with(job.runner_request_id, |t| {
            t.started = Some(now);
            t.assigned
        });
        match (assigned, job.scale_set_assign_time, job.runner_assign_time) {
            (Some(assigned), _, _) => {
                metrics.record_stage(Stage::AssignedToStarted, seconds(assigned, now))
            }
            (None, Some(a), Some(s)) => {
                metrics.record_stage(Stage::AssignedToStarted, seconds(a, s))
            }
            _ => {}
        }
    }

    /// A JobCompleted was seen now; the job is forgotten.
    pub fn completed(&self, metrics: &Metrics, completed: &JobCompleted, now: DateTime<Utc>) {
        let job = &completed.job;
        let times = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.remove(&job.runner_request_id).unwrap_or_default()
        };
        match (job.runner_assign_time, job.finish_time, times.started) {
            (Some(s), Some(f), _) => metrics.record_stage(Stage::StartedToCompleted, seconds(s, f)),
            (_, _, Some(started)) => {
                metrics.record_stage(Stage::StartedToCompleted, seconds(started, now))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> ConfigUrlParts {
        ConfigUrlParts {
            organization: "octo".into(),
            ..Default::default()
        }
    }

    #[test]
    fn default_set_has_arc_names() {
        let m = Metrics::new(None, parts(), "set", "ns");
        m.record_statistics(&Statistics {
            total_assigned_jobs: 3,
            ..Default::default()
        });
        m.record_bounds(0, 10);
        let job = JobInfo {
            job_display_name: "build".into(),
            event_name: "push".into(),
            owner_name: "octo".into(),
            repository_name: "app".into(),
            ..Default::default()
        };
        m.record_job_started(&JobStarted {
            job: job.clone(),
            ..Default::default()
        });
        let completed = JobCompleted {
            job: JobInfo {
                runner_assign_time: DateTime::from_timestamp(100, 0),
                finish_time: DateTime::from_timestamp(160, 0),
                ..job.clone()
            },
            result: "succeeded".into(),
            ..Default::default()
        };
        m.record_job_completed(&completed);
        m.record_job_completed(&JobCompleted {
            job,
            result: "succeeded".into(),
            ..Default::default()
        });
        let text = m.encode().expect("encode");
        assert!(text.contains("# TYPE gha_assigned_jobs gauge"), "{text}");
        assert!(text.contains(r#"gha_completed_jobs_total{enterprise="",organization="octo",repository="app",job_name="build",event_name="push",job_result="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"gha_job_execution_duration_seconds_bucket{le="60.0",enterprise="",organization="octo",repository="app",job_name="build",event_name="push",job_result="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"gha_assigned_jobs{enterprise="",organization="octo",repository="",name="set",namespace="ns"} 3"#), "{text}");
        assert!(text.contains("# TYPE gha_started_jobs counter"), "{text}");
        assert!(text.contains(r#"gha_started_jobs_total{enterprise="",organization="octo",repository="app",job_name="build",event_name="push"} 1"#), "{text}");
        assert!(
            text.contains("# HELP gha_max_runners Maximum number of runners."),
            "{text}"
        );
        assert!(
            text.contains("# TYPE gha_job_execution_duration_seconds histogram"),
            "{text}"
        );
    }

    #[test]
    fn configured_set_only_registers_listed_metrics() {
        let config: MetricsConfig = serde_json::from_str(
            r#"{"gauges":{"gha_desired_runners":{"labels":["name"]},"gha_bogus":{"labels":[]}},
                "histograms":{"gha_job_startup_duration_seconds":{"labels":["job_workflow_name","job_workflow_target"],"buckets":[1,5]}}}"#,
        )
        .expect("config");
        let m = Metrics::new(Some(&config), parts(), "set", "ns");
        m.record_desired(4);
        m.record_statistics(&Statistics::default());
        let job = JobStarted {
            job: JobInfo {
                job_workflow_ref: "octo/app/.github/workflows/ci-cd.yml@refs/pull/12/merge".into(),
                scale_set_assign_time: DateTime::from_timestamp(100, 0),
                runner_assign_time: DateTime::from_timestamp(103, 0),
                ..Default::default()
            },
            ..Default::default()
        };
        m.record_job_started(&job);
        let text = m.encode().expect("encode");
        assert!(
            text.contains(r#"gha_desired_runners{name="set"} 4"#),
            "{text}"
        );
        assert!(!text.contains("gha_assigned_jobs"), "{text}");
        assert!(!text.contains("gha_started_jobs"), "{text}");
        assert!(text.contains(r#"gha_job_startup_duration_seconds_bucket{le="5.0",job_workflow_name="ci-cd",job_workflow_target="pull/12"} 1"#), "{text}");
    }

    #[test]
    fn workflow_refs() {
        assert_eq!(
            workflow_ref_parts("o/r/.github/workflows/ci.yaml@refs/tags/v1"),
            ("ci".to_string(), "tags/v1".to_string())
        );
        assert_eq!(
            workflow_ref_parts("no-at-sign"),
            (String::new(), String::new())
        );
    }
}
