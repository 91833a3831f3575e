//! Per-controller context: clients, options, metrics, Events, and the error policy with a
//! per-object exponential backoff (ARC's rate-limited requeue: 5 ms doubling up to 1000 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};

use crate::error::Error;
use crate::github::GithubClients;
use crate::metrics::{ControllerLabel, Metrics, ReconcileLabels};
use crate::options::ManagerOptions;

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(5);
/// Longest retry delay after repeated failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1000);
/// Longest retry delay for configuration errors: a fixed Secret or ConfigMap is not watched,
/// so it is picked up within this time.
pub const CONFIG_BACKOFF_MAX: Duration = Duration::from_secs(60);

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
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
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
        Arc::new(Self {
            controller,
            recorder: Recorder::new(client.clone(), reporter),
            client,
            options,
            github,
            metrics,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Runs one reconcile, records its duration and result, and resets the object's backoff
    /// on success.
    pub async fn instrumented<K, F>(&self, obj: &K, reconcile: F) -> Result<Action, Error>
    where
        K: Resource,
        F: Future<Output = Result<Action, Error>>,
    {
        let started = Instant::now();
        let result = reconcile.await;
        self.metrics
            .reconcile_duration
            .get_or_create(&ControllerLabel {
                controller: self.controller.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(_) => "success",
            Err(e) => e.metric_label(),
        };
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                controller: self.controller.to_owned(),
                result: label.to_owned(),
            })
            .inc();
        if result.is_ok() {
            self.lock().remove(&key(obj));
        }
        result
    }

    /// The error policy: waits requeue after their own delay; failures back off
    /// exponentially per object; configuration and service failures also become a Warning
    /// Event on the object.
    pub fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
    where
        K: Resource<DynamicType = ()> + Send + Sync + 'static,
    {
        if let Error::Waiting { retry_after, .. } = error {
            return Action::requeue(*retry_after);
        }
        let failures = {
            let mut map = ctx.lock();
            let n = map.entry(key(&*obj)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let cap = if matches!(error, Error::Config(_)) {
            CONFIG_BACKOFF_MAX
        } else {
            BACKOFF_MAX
        };
        let delay = backoff(failures, cap);
        tracing::warn!(
            controller = ctx.controller,
            object = %key(&*obj),
            failures,
            retry_in = ?delay,
            error = %error,
            "reconcile failed"
        );
        if failures == 1 || failures % 10 == 0 {
            let reason = match error {
                Error::Config(_) => Some("InvalidConfiguration"),
                Error::Service(_) => Some("ActionsServiceError"),
                _ => None,
            };
            if let Some(reason) = reason {
                let note = error.to_string();
                let reference = obj.object_ref(&());
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    ctx.publish(&reference, EventType::Warning, reason, &note)
                        .await;
                });
            }
        }
        Action::requeue(delay)
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
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Delay after the `failures`-th consecutive failure: 5 ms doubling, at most `cap`.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5ms_up_to_the_cap() {
        assert_eq!(backoff(1, BACKOFF_MAX), Duration::from_millis(5));
        assert_eq!(backoff(2, BACKOFF_MAX), Duration::from_millis(10));
        assert_eq!(backoff(5, BACKOFF_MAX), Duration::from_millis(80));
        assert_eq!(backoff(40, BACKOFF_MAX), BACKOFF_MAX);
        assert_eq!(backoff(40, CONFIG_BACKOFF_MAX), CONFIG_BACKOFF_MAX);
    }
}
