//! CRD types and the four reconcilers of the runner scale set controller.
//!
//! | Module | Holds |
//! |---|---|
//! | [`crd`] | the four `actions.github.com/v1alpha1` kinds |
//! | [`listener_config`] | the listener's `config.json`, written by the manager, read by the listener |
//! | [`names`] | annotation, label and finalizer keys; derived object names |
//! | [`github`] | Actions service access: credentials, proxy, CA, client cache |
//! | [`context`] | per-controller context and error policy |
//! | [`controllers`] | one reconciler per kind |
//! | [`metrics`] | controller metrics |
//! | [`meta`] | label/annotation merging and the integrity hash |
//!
//! Everything but [`crd`] and [`listener_config`] is behind the default feature `controllers`;
//! the listener depends on the crate without it.

#[cfg(feature = "controllers")]
pub mod context;
#[cfg(feature = "controllers")]
pub mod controllers;
pub mod crd;
#[cfg(feature = "controllers")]
pub mod error;
#[cfg(feature = "controllers")]
pub mod github;
pub mod listener_config;
#[cfg(feature = "controllers")]
pub mod meta;
#[cfg(feature = "controllers")]
pub mod metrics;
#[cfg(feature = "controllers")]
pub mod names;
#[cfg(feature = "controllers")]
pub mod options;
#[cfg(all(test, feature = "controllers"))]
mod testing_api;
/// Work-queue metrics (`workqueue_*`) measured around kube-runtime's scheduler.
#[cfg(feature = "controllers")]
pub mod workqueue;

#[cfg(feature = "controllers")]
pub use context::Context;
#[cfg(feature = "controllers")]
pub use error::Error;
#[cfg(feature = "controllers")]
pub use options::ManagerOptions;

#[cfg(feature = "controllers")]
use std::sync::Arc;

/// Runs the four controllers and the orphaned-registration sweep.
///
/// They share the Actions client cache and metrics; each controller gets its own [`Context`].
/// When `options.shutdown` fires, the controllers stop taking work, finish the reconciles in
/// flight and this returns `Ok`. If one of them stops before that, this returns an error (the
/// manager then exits and is restarted). Dropping the future stops everything at once (lost
/// leadership).
#[cfg(feature = "controllers")]
pub async fn run(client: kube::Client, options: ManagerOptions) -> anyhow::Result<()> {
    use futures::StreamExt;
    use futures::future::BoxFuture;
    use futures::stream::FuturesUnordered;

    let options = Arc::new(options);
    let metrics = options.metrics.clone();
    let github = Arc::new(github::GithubClients::with_metrics(
        options.connector.clone(),
        metrics.clone(),
    ));
    let ctx = |name: &'static str| {
        Context::new(
            name,
            client.clone(),
            options.clone(),
            github.clone(),
            metrics.clone(),
        )
    };
    tracing::info!(namespace = %options.controller_namespace, watch = ?options.watch_namespace, "starting controllers");
    let tasks: Vec<(&str, BoxFuture<'static, anyhow::Result<()>>)> = vec![
        (
            controllers::autoscaling_runner_set::CONTROLLER,
            Box::pin(controllers::autoscaling_runner_set::run(ctx(
                controllers::autoscaling_runner_set::CONTROLLER,
            ))),
        ),
        (
            controllers::autoscaling_listener::CONTROLLER,
            Box::pin(controllers::autoscaling_listener::run(ctx(
                controllers::autoscaling_listener::CONTROLLER,
            ))),
        ),
        (
            "ephemeralrunnerset and ephemeralrunner",
            Box::pin(controllers::runner_watch::run(
                ctx(controllers::ephemeral_runner_set::CONTROLLER),
                Default::default(),
                ctx(controllers::ephemeral_runner::CONTROLLER),
                Default::default(),
            )),
        ),
        (
            controllers::orphaned_registrations::CONTROLLER,
            Box::pin(controllers::orphaned_registrations::run(ctx(
                controllers::orphaned_registrations::CONTROLLER,
            ))),
        ),
    ];
    let mut running: FuturesUnordered<_> = tasks
        .into_iter()
        .map(|(name, task)| async move { (name, task.await) })
        .collect();
    while let Some((name, result)) = running.next().await {
        if !options.shutdown.triggered() {
            return match result {
                Ok(()) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
                Err(e) => Err(e.context(format!("{name} failed"))),
            };
        }
        if let Err(e) = result {
            tracing::warn!(controller = name, error = %e, "controller failed while stopping");
        }
        tracing::info!(controller = name, "stopped");
    }
    Ok(())
}

/// Locks `mutex`; a lock poisoned by a panicking holder is taken as it is (every value guarded
/// here stays consistent between statements).
#[cfg(feature = "controllers")]
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
