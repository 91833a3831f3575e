//! Actions service access for the controllers: the service operations they use, credentials,
//! proxy and CA resolution from Kubernetes objects (controllers.md 3.4, 9), and a client cache
//! keyed by everything that went into a client, so that a rotated Secret yields a new client.
//!
//! The reconcilers talk to [`ActionsService`]; a [`Connector`] builds one from a
//! [`ServiceConfig`]. [`ActionsClientConnector`] is the production connector over
//! `actions_client::ActionsClient`.

mod actions;
mod instrumented;
pub mod memory;
pub mod resolve;
mod service;

pub use actions::ActionsClientConnector;
pub use resolve::{Credentials, ProxySettings, ServiceConfig, resolve_service_config};
pub use service::{
    ActionsService, Connector, JitConfig, NewScaleSet, RunnerGroup, RunnerInfo, ScaleSet,
    ScaleSetPatch, ServiceError, ServiceErrorKind,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Error;

/// Cache of service clients, keyed by [`ServiceConfig::cache_key`].
pub struct GithubClients {
    connector: Arc<dyn Connector>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    cache: Mutex<HashMap<String, Arc<dyn ActionsService>>>,
}

impl GithubClients {
    /// A cache that builds clients with `connector`.
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Self {
            connector,
            metrics: None,
            cache: Mutex::new(HashMap::new()),
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
        let config = resolve_service_config(kube, object).await?;
        self.client(&config).await
    }

    /// Number of cached clients.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn ActionsService>>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub use resolve::ObjectSettings;
