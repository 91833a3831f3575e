//! Deleting cluster-scoped test objects (CRDs, Nodes, ClusterRoles) however a test ends.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::Duration;

use anyhow::Context;
use kube::api::{Api, DeleteParams};
use kube::core::ClusterResourceScope;
use serde::de::DeserializeOwned;

/// A cluster-scoped kind that [`DeleteOnDrop`] can delete.
pub trait ClusterObject:
    kube::Resource<Scope = ClusterResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + 'static
{
}

impl<K> ClusterObject for K where
    K: kube::Resource<Scope = ClusterResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + 'static
{
}

/// Deletes the cluster-scoped object `K` named `name` when dropped.
///
/// Drop runs on a thread and runtime of its own, with a client of its own, so it neither needs
/// nor blocks the test's runtime.
#[derive(Debug)]
pub struct DeleteOnDrop<K: ClusterObject> {
    config: kube::Config,
    name: String,
    kind: PhantomData<fn() -> K>,
}

impl<K: ClusterObject> DeleteOnDrop<K> {
    /// Guards `name`, deleting it with the client configuration `config`.
    pub fn new(config: kube::Config, name: impl Into<String>) -> Self {
        Self {
            config,
            name: name.into(),
            kind: PhantomData,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<K: ClusterObject> Drop for DeleteOnDrop<K> {
    fn drop(&mut self) {
        let config = self.config.clone();
        let name = self.name.clone();
        let worker = std::thread::Builder::new()
            .name("testbed-cleanup".to_owned())
            .spawn(move || delete_now::<K>(config, &name));
        let outcome = match worker.map(std::thread::JoinHandle::join) {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(anyhow::anyhow!("the clean-up thread failed")),
        };
        if let Err(e) = outcome {
            tracing::warn!(name = %self.name, error = %format!("{e:#}"), "could not delete a test object");
        }
    }
}

fn delete_now<K: ClusterObject>(config: kube::Config, name: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kube::Client::try_from(config).context("building a kube client")?;
        let api: Api<K> = Api::all(client);
        match tokio::time::timeout(
            Duration::from_secs(30),
            api.delete(name, &DeleteParams::background()),
        )
        .await
        .context("deleting a test object timed out")?
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {name}")),
        }
    })
}
