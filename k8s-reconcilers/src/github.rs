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
/// time, and a burst of runners reads the Secret a few times instead of twice per runner.
pub const RESOLVED_CONFIG_TTL: Duration = Duration::from_secs(5);

/// Cache of service clients, keyed by [`ServiceConfig::cache_key`].
pub struct GithubClients {
    connector: Arc<dyn Connector>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    cache: Mutex<HashMap<String, Arc<dyn ActionsService>>>,
    resolved: Mutex<HashMap<String, (Instant, ServiceConfig)>>,
}

impl GithubClients {
    /// A cache that builds clients with `connector`.
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self {
            connector,
            metrics: None,
            cache: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
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
        let now = Instant::now();
        let cached = crate::lock(&self.resolved)
            .get(&key)
            .filter(|(at, _)| now.duration_since(*at) < RESOLVED_CONFIG_TTL)
            .map(|(_, config)| config.clone());
        let config = match cached {
            Some(config) => config,
            None => {
                let config = resolve_service_config(kube, object).await?;
                let mut resolved = crate::lock(&self.resolved);
                resolved.retain(|_, (at, _)| now.duration_since(*at) < RESOLVED_CONFIG_TTL);
                resolved.insert(key, (now, config.clone()));
                config
            }
        };
        self.client(&config).await
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
