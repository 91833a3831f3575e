//! Recording what a watch sees, for tests that assert on watch events.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// One event seen by a [`WatchRecorder`].
#[derive(Debug, Clone)]
pub enum Recorded<K> {
    /// The object was listed, added or modified.
    Applied(K),
    /// The object was deleted.
    Deleted(K),
}

impl<K> Recorded<K> {
    /// The object of the event.
    pub fn object(&self) -> &K {
        match self {
            Self::Applied(k) | Self::Deleted(k) => k,
        }
    }
}

/// Runs kube-runtime's default watcher (list, then watch) on an `Api` in the background and
/// keeps every event. Stops when dropped.
pub struct WatchRecorder<K> {
    events: Arc<Mutex<Vec<Recorded<K>>>>,
    errors: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl<K> WatchRecorder<K>
where
    K: kube::Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts watching `api` with `config` (e.g. `watcher::Config::default()`) and returns once
    /// the initial list is done, so that every later change is seen.
    pub async fn start(api: Api<K>, config: watcher::Config) -> anyhow::Result<Self> {
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let mut listed_tx = Some(listed_tx);
        let events = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn({
            let events = Arc::clone(&events);
            let errors = Arc::clone(&errors);
            let changed = Arc::clone(&changed);
            async move {
                let mut stream = std::pin::pin!(watcher(api, config));
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(watcher::Event::Apply(k) | watcher::Event::InitApply(k)) => {
                            lock(&events).push(Recorded::Applied(k));
                        }
                        Ok(watcher::Event::Delete(k)) => lock(&events).push(Recorded::Deleted(k)),
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = listed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(watcher::Event::Init) => {}
                        Err(e) => lock(&errors).push(e.to_string()),
                    }
                    changed.notify_waiters();
                }
            }
        });
        let recorder = Self {
            events,
            errors,
            changed,
            task,
        };
        match tokio::time::timeout(LIST_TIMEOUT, listed_rx).await {
            Ok(Ok(())) => Ok(recorder),
            Ok(Err(_)) => bail!("the watch ended before its initial list"),
            Err(_) => bail!(
                "the watch's initial list did not finish within {LIST_TIMEOUT:?}; errors: {:?}",
                lock(&recorder.errors)
            ),
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Recorded<K>> {
        lock(&self.events).clone()
    }

    /// Waits until `done` holds for the events so far; fails after `timeout` with what was seen.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Recorded<K>]) -> bool,
    ) -> anyhow::Result<Vec<Recorded<K>>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            {
                let events = lock(&self.events);
                if done(&events) {
                    return Ok(events.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = lock(&self.events)
                    .iter()
                    .map(|e| match e {
                        Recorded::Applied(k) => format!("applied {}", name_of(k)),
                        Recorded::Deleted(k) => format!("deleted {}", name_of(k)),
                    })
                    .collect();
                let errors = lock(&self.errors).clone();
                bail!(
                    "the watch did not see the expected events within {timeout:?}; saw {seen:?}; \
                     watch errors: {errors:?}"
                );
            }
        }
    }
}

impl<K> Drop for WatchRecorder<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn name_of<K: kube::Resource>(k: &K) -> String {
    k.meta().name.clone().unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
