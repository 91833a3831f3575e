//! Actions service access for the controllers: the service operations they use, credentials,
//! proxy and CA resolution from Kubernetes objects (docs/architecture.md#credentials-proxy-and-ca),
//! and a client cache keyed by everything that went into a client, so that a rotated Secret yields
//! a new client.
//!
//! The reconcilers talk to [`ActionsService`]; a [`Connector`] builds one from a
//! [`ServiceConfig`]. [`ActionsClientConnector`] is the production connector over
//! `actions_client::ActionsClient`.

mod actions;
mod instrumented;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod resolve;
mod service;
pub mod vault;

pub use actions::ActionsClientConnector;
pub use resolve::{Credentials, ProxySettings, ServiceConfig, resolve_service_config};
pub use service::{
    ActionsService, Connector, JitConfig, NewScaleSet, RunnerGroup, RunnerInfo, ScaleSet,
    ScaleSetPatch, ServiceError, ServiceErrorKind,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How long an object's resolved [`ServiceConfig`] (its Secret's credentials, proxy and CA)
/// is reused before those objects are read again: a rotated Secret takes effect within this
/// time, and a burst of runners reads the Secret once instead of twice per runner.
pub const RESOLVED_CONFIG_TTL: Duration = Duration::from_secs(5);

/// Cache of service clients, keyed by [`ServiceConfig::cache_key`].
pub struct GithubClients {
    connector: Arc<dyn Connector>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    cache: Mutex<HashMap<String, Arc<dyn ActionsService>>>,
    resolved: Mutex<HashMap<String, (Instant, ServiceConfig)>>,
    /// One gate per settings key: passes that miss `resolved` together wait for one of them to
    /// read the objects, rather than each reading them (ten passes of a scale set's first
    /// runners read its Secret ten times).
    resolving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl GithubClients {
    /// A cache that builds clients with `connector`.
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self {
            connector,
            metrics: None,
            cache: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            resolving: Mutex::new(HashMap::new()),
        }
    }

    /// A cache whose clients count their calls in `metrics`.
    pub fn with_metrics(
        connector: Arc<dyn Connector>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            metrics: Some(metrics),
            ..Self::new(connector)
        }
    }

    /// The client for `config`, reused while nothing that went into it changed.
    pub async fn client(&self, config: &ServiceConfig) -> Result<Arc<dyn ActionsService>, Error> {
        let key = config.cache_key();
        if let Some(found) = self.lock().get(&key).cloned() {
            return Ok(found);
        }
        let client = self
            .connector
            .connect(config.clone())
            .await
            .map_err(Error::Service)?;
        let client: Arc<dyn ActionsService> = match &self.metrics {
            Some(metrics) => Arc::new(instrumented::Instrumented::new(client, metrics.clone())),
            None => client,
        };
        self.lock().insert(key, client.clone());
        Ok(client)
    }

    /// Resolves the service config of an object (its namespace, URL, secret, proxy, TLS,
    /// vault) and returns the matching client.
    pub async fn for_object(
        &self,
        kube: &kube::Client,
        object: resolve::ObjectSettings<'_>,
    ) -> Result<Arc<dyn ActionsService>, Error> {
        let key = object.cache_key();
        if let Some(config) = self.resolved(&key) {
            return self.client(&config).await;
        }
        let gate = crate::lock(&self.resolving)
            .entry(key.clone())
            .or_default()
            .clone();
        let turn = gate.lock().await;
        let config = match self.resolved(&key) {
            Some(config) => config,
            None => {
                let config = resolve_service_config(kube, object).await?;
                let now = Instant::now();
                let mut resolved = crate::lock(&self.resolved);
                resolved.retain(|_, (at, _)| now.duration_since(*at) < RESOLVED_CONFIG_TTL);
                resolved.insert(key, (now, config.clone()));
                crate::lock(&self.resolving)
                    .retain(|k, g| Arc::strong_count(g) > 1 || resolved.contains_key(k));
                config
            }
        };
        drop(turn);
        self.client(&config).await
    }

    /// The resolved config of settings `key`, while it is younger than [`RESOLVED_CONFIG_TTL`].
    fn resolved(&self, key: &str) -> Option<ServiceConfig> {
        let now = Instant::now();
        crate::lock(&self.resolved)
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < RESOLVED_CONFIG_TTL)
            .map(|(_, config)| config.clone())
    }

    /// Number of cached clients.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn ActionsService>>> {
        crate::lock(&self.cache)
    }
}

pub use resolve::ObjectSettings;

#[cfg(test)]
mod tests {
    use crate::testing_api::{Harness, RUNNER_NS, read_credentials, runner_set};

    use super::resolve::ObjectSettings;

    #[tokio::test]
    async fn passes_that_miss_together_read_the_secret_once() {
        let mut h = Harness::new("ephemeralrunnerset");
        let set = runner_set(7, 1, 1);
        let settings =
            || ObjectSettings::for_runner_spec(RUNNER_NS, &set.spec.ephemeral_runner_spec);
        let (ctx, api) = (&h.ctx, &mut h.api);
        let resolved = api
            .run(
                vec![read_credentials()],
                futures::future::join_all(
                    (0..5).map(|_| ctx.github.for_object(&ctx.client, settings())),
                ),
            )
            .await;
        assert!(resolved.iter().all(Result::is_ok));
        assert_eq!(ctx.github.cached(), 1);
    }
}
