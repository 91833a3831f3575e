//! Per-controller context: clients, options, metrics, Events, and the error policy, which asks
//! `scaleset_core::failure::after_failure` what follows a failure: nothing until the object
//! changes (invalid input), a retry in minutes (a missing or unreachable dependency), or ARC's
//! rate-limited requeue (5 ms doubling up to 1000 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use scaleset_core::failure::{Remedy, after_cleanup_failure, after_failure};

use crate::error::Error;
use crate::github::GithubClients;
use crate::metrics::{ControllerLabel, Metrics, ReconcileLabels};
use crate::options::{ManagerOptions, RequeueLimiter};

/// One reconcile under way in `controller_runtime_active_workers`, also when the reconcile is
/// dropped before it ends.
struct ActiveWorker(prometheus_client::metrics::gauge::Gauge);

impl ActiveWorker {
    fn start(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for ActiveWorker {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Everything a controller's reconcile function needs; one per controller.
pub struct Context {
    /// Controller name (metrics label, Event source).
    pub controller: &'static str,
    /// Kubernetes client.
    pub client: kube::Client,
    /// Manager settings.
    pub options: Arc<ManagerOptions>,
    /// Actions service clients (shared by all controllers).
    pub github: Arc<GithubClients>,
    /// Metrics (shared by all controllers).
    pub metrics: Arc<Metrics>,
    /// This controller's model of its work queue (`workqueue_*` metrics).
    pub queue: Arc<crate::workqueue::WorkQueue>,
    /// Scale sets the AutoscalingRunnerSet controller last read from the service.
    pub(crate) verified_scale_sets:
        crate::controllers::autoscaling_runner_set::scale_set::VerifiedScaleSets,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    bucket: Option<Mutex<RequeueBucket>>,
}

impl Context {
    /// A context for `controller`.
    pub fn new(
        controller: &'static str,
        client: kube::Client,
        options: Arc<ManagerOptions>,
        github: Arc<GithubClients>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: options.event_reporter.clone(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        let bucket = (options.requeue_limiter == RequeueLimiter::Bucket)
            .then(|| Mutex::new(RequeueBucket::new(Instant::now())));
        // Zero from the start, as controller-runtime reports them, so rates are defined.
        let label = ControllerLabel {
            controller: controller.to_owned(),
        };
        drop(metrics.reconcile_errors.get_or_create(&label));
        drop(metrics.active_workers.get_or_create(&label));
        Arc::new(Self {
            controller,
            queue: metrics.workqueues.queue(controller),
            bucket,
            recorder: Recorder::new(client.clone(), reporter),
            client,
            options,
            github,
            metrics,
            failures: Mutex::new(HashMap::new()),
            verified_scale_sets: Default::default(),
        })
    }

    /// Runs one reconcile, records its duration and result, reports it in the object's `Ready`
    /// condition (`controllers::conditions::report`), and resets the object's backoff on
    /// success.
    pub async fn instrumented<K, F>(&self, obj: &K, reconcile: F) -> Result<Action, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        F: Future<Output = Result<Action, Error>>,
    {
        let controller = ControllerLabel {
            controller: self.controller.to_owned(),
        };
        let queued = key(obj);
        let processing = self.queue.start(&queued);
        let worker = ActiveWorker::start(&self.metrics.active_workers.get_or_create(&controller));
        let started = Instant::now();
        let result = reconcile.await;
        drop(worker);
        self.metrics
            .reconcile_duration
            .get_or_create(&controller)
            .observe(started.elapsed().as_secs_f64());
        // controller-runtime's result, and ours with the error class.
        let (runtime_result, class) = match &result {
            Ok(_) => ("success", "success"),
            Err(e @ Error::Waiting { .. }) => ("requeue_after", e.metric_label()),
            Err(e) => {
                self.metrics
                    .reconcile_errors
                    .get_or_create(&controller)
                    .inc();
                ("error", e.metric_label())
            }
        };
        for (family, result) in [
            (&self.metrics.runtime_reconciles, runtime_result),
            (&self.metrics.reconciles, class),
        ] {
            family
                .get_or_create(&ReconcileLabels {
                    controller: self.controller.to_owned(),
                    result: result.to_owned(),
                })
                .inc();
        }
        crate::controllers::conditions::report(self, obj, &result).await;
        drop(processing);
        if let Ok(action) = &result {
            self.lock().remove(&queued);
            self.queue.requeue(&queued, action);
        }
        result
    }

    /// The error policy: waits requeue after their own delay; for failures
    /// `scaleset_core::failure::after_failure` decides: invalid input waits for the object to
    /// change, a missing or unreachable dependency is retried in minutes, anything else backs
    /// off exponentially per object (a rate-limited service call at least as long as the service
    /// asked). Failures the user can act on also become a Warning Event on the object.
    pub fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
    where
        K: Resource<DynamicType = ()> + Send + Sync + 'static,
    {
        let action = Self::failure_action(&*obj, error, &ctx);
        ctx.queue.requeue(&key(&*obj), &action);
        action
    }

    /// What follows a failed reconcile of `obj` (see [`Context::error_policy`]).
    fn failure_action<K>(obj: &K, error: &Error, ctx: &Arc<Context>) -> Action
    where
        K: Resource<DynamicType = ()>,
    {
        if let Error::Waiting { retry_after, .. } = error {
            return Action::requeue(*retry_after);
        }
        let failures = {
            let mut map = ctx.lock();
            let n = map.entry(key(obj)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let remedy = if obj.meta().deletion_timestamp.is_some() {
            after_cleanup_failure(
                error.failure(),
                failures,
                crate::controllers::cleanup_bound::deleting_for(obj),
                ctx.options.deletion_grace,
            )
        } else {
            after_failure(error.failure(), failures)
        };
        let mut delay = match remedy {
            Remedy::AwaitChange => Duration::ZERO,
            Remedy::RetryAfter(d) => d,
        };
        if let (Remedy::RetryAfter(_), Some(bucket)) = (remedy, &ctx.bucket) {
            let wait = crate::lock(bucket).reserve(Instant::now());
            delay = delay.max(wait);
        }
        tracing::warn!(
            controller = ctx.controller,
            object = %key(obj),
            failures,
            retry = ?remedy,
            error = %error,
            "reconcile failed"
        );
        if (failures == 1 || failures % 10 == 0)
            && let Some(reason) = error.reason()
        {
            let note = error.to_string();
            let reference = obj.object_ref(&());
            let ctx = ctx.clone();
            tokio::spawn(async move {
                ctx.publish(&reference, EventType::Warning, reason, &note)
                    .await;
            });
        }
        match remedy {
            Remedy::AwaitChange => Action::await_change(),
            Remedy::RetryAfter(_) => Action::requeue(delay),
        }
    }

    /// Publishes an Event about `reference`; failures to publish are only logged.
    pub async fn publish(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let mut note = note.to_owned();
        note.truncate(1024);
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::debug!(error = %e, reason, "could not publish an Event");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        crate::lock(&self.failures)
    }
}

fn key<K: Resource>(obj: &K) -> String {
    crate::workqueue::key(obj.namespace().as_deref(), &obj.name_any())
}

/// controller-runtime's overall requeue limit for failures: a token bucket of 10 per second
/// with a burst of 100, shared by all objects of one controller; the wait it imposes is
/// combined with the per-object backoff by taking the longer one.
#[derive(Debug)]
pub struct RequeueBucket {
    tokens: f64,
    last: Instant,
}

impl RequeueBucket {
    /// Requeues per second.
    pub const RATE: f64 = 10.0;
    /// Burst.
    pub const BURST: f64 = 100.0;

    /// A full bucket at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: Self::BURST,
            last: now,
        }
    }

    /// Takes one token at `now` and returns how long the requeue must wait for it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * Self::RATE).min(Self::BURST);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / Self::RATE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_bucket_allows_a_burst_then_ten_per_second() {
        let start = Instant::now();
        let mut bucket = RequeueBucket::new(start);
        for _ in 0..100 {
            assert_eq!(bucket.reserve(start), Duration::ZERO);
        }
        let wait = bucket.reserve(start);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        let wait = bucket.reserve(start);
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-9, "{wait:?}");
        // A second later ten tokens came back; two were owed.
        let later = start + Duration::from_secs(1);
        for _ in 0..8 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert!(bucket.reserve(later) > Duration::ZERO);
    }

    #[test]
    fn failures_map_to_their_remedies() {
        use crate::github::{ServiceError, ServiceErrorKind};
        let remedy = |e: &Error, n| after_failure(e.failure(), n);
        assert_eq!(
            remedy(&Error::Config("spec.x".into()), 1),
            Remedy::AwaitChange
        );
        assert_eq!(
            remedy(&Error::Unavailable("Secret".into()), 1),
            Remedy::RetryAfter(Duration::from_secs(30))
        );
        let unreachable = Error::Service(ServiceError::new(
            ServiceErrorKind::Unreachable,
            "GetRunnerGroupByName",
            "connection refused",
        ));
        assert_eq!(
            remedy(&unreachable, 1),
            Remedy::RetryAfter(Duration::from_secs(30))
        );
        assert_eq!(unreachable.reason(), Some("ServiceUnreachable"));
        let mut limited = ServiceError::new(ServiceErrorKind::RateLimited, "ListScaleSets", "403");
        limited.retry_after = Some(Duration::from_secs(90));
        let limited = Error::Service(limited);
        assert_eq!(
            remedy(&limited, 1),
            Remedy::RetryAfter(Duration::from_secs(90))
        );
        assert_eq!(
            remedy(&limited, 40),
            Remedy::RetryAfter(Duration::from_secs(1000))
        );
        let transient = Error::Service(ServiceError::new(
            ServiceErrorKind::Transient,
            "ListScaleSets",
            "503",
        ));
        assert_eq!(
            remedy(&transient, 1),
            Remedy::RetryAfter(Duration::from_millis(5))
        );
    }
}
