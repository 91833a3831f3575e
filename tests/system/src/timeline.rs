//! When runner pods appeared and went away, and when EphemeralRunners did, as seen by watches
//! (millisecond precision, unlike `creationTimestamp`). Metadata watches: the names are all this
//! reads, and the API server then serializes a tenth of each object for the bench (a bench that
//! listed whole objects to count them spent the CPU it measured).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_reconcilers::crd::EphemeralRunner;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

#[derive(Default)]
struct Seen {
    pods_created: HashMap<String, DateTime<Utc>>,
    pods_deleted: HashMap<String, DateTime<Utc>>,
    runners_created: HashMap<String, DateTime<Utc>>,
    runners_deleted: HashMap<String, DateTime<Utc>>,
}

/// Watches one namespace's runner pods and EphemeralRunners until dropped.
pub struct Timeline {
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Timeline {
    /// Starts watching `namespace` and returns once both watches have listed.
    pub async fn start(client: kube::Client, namespace: &str) -> anyhow::Result<Timeline> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(2);
        let pods: Api<PartialObjectMeta<Pod>> = Api::namespaced(client.clone(), namespace);
        let runners: Api<PartialObjectMeta<EphemeralRunner>> = Api::namespaced(client, namespace);
        let pod_task = {
            let seen = seen.clone();
            let ready = ready_tx.clone();
            let config =
                watcher::Config::default().labels(k8s_reconcilers::names::labels::EPHEMERAL_RUNNER);
            tokio::spawn(async move {
                let mut stream = watcher(pods, config).boxed();
                while let Some(event) = stream.next().await {
                    let now = Utc::now();
                    match event {
                        Ok(watcher::Event::InitDone) => {
                            let _ = ready.try_send(());
                        }
                        Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                            let name = p.metadata.name.unwrap_or_default();
                            lock(&seen).pods_created.entry(name).or_insert(now);
                        }
                        Ok(watcher::Event::Delete(p)) => {
                            let name = p.metadata.name.unwrap_or_default();
                            lock(&seen).pods_deleted.entry(name).or_insert(now);
                        }
                        _ => {}
                    }
                }
            })
        };
        let runner_task = {
            let seen = seen.clone();
            let ready = ready_tx;
            tokio::spawn(async move {
                let mut stream = watcher(runners, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    let now = Utc::now();
                    match event {
                        Ok(watcher::Event::InitDone) => {
                            let _ = ready.try_send(());
                        }
                        Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                            let name = r.metadata.name.unwrap_or_default();
                            lock(&seen).runners_created.entry(name).or_insert(now);
                        }
                        Ok(watcher::Event::Delete(r)) => {
                            let name = r.metadata.name.unwrap_or_default();
                            lock(&seen).runners_deleted.entry(name).or_insert(now);
                        }
                        _ => {}
                    }
                }
            })
        };
        for _ in 0..2 {
            tokio::time::timeout(std::time::Duration::from_secs(30), ready_rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("the runner watches did not list within 30 s"))?;
        }
        Ok(Timeline {
            seen,
            tasks: vec![pod_task, runner_task],
        })
    }

    /// When each runner pod was first seen, by pod name.
    pub fn pods_created(&self) -> HashMap<String, DateTime<Utc>> {
        lock(&self.seen).pods_created.clone()
    }

    /// How many runner pods exist now (seen and not seen deleted).
    pub fn pods_present(&self) -> usize {
        let seen = lock(&self.seen);
        seen.pods_created
            .keys()
            .filter(|name| !seen.pods_deleted.contains_key(*name))
            .count()
    }

    /// How many EphemeralRunners exist now (seen and not seen deleted).
    pub fn runners_present(&self) -> usize {
        let seen = lock(&self.seen);
        seen.runners_created
            .keys()
            .filter(|name| !seen.runners_deleted.contains_key(*name))
            .count()
    }

    /// When each EphemeralRunner was first seen, by name.
    pub fn runners_created(&self) -> HashMap<String, DateTime<Utc>> {
        lock(&self.seen).runners_created.clone()
    }

    /// When each EphemeralRunner was seen deleted, by name.
    pub fn runners_deleted(&self) -> HashMap<String, DateTime<Utc>> {
        lock(&self.seen).runners_deleted.clone()
    }
}
