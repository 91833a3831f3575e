//! CRD types and the four reconcilers of the runner scale set controller.
//!
//! | Module | Holds |
//! |---|---|
//! | [`crd`] | the four `actions.github.com/v1alpha1` kinds |
//! | [`names`] | annotation, label and finalizer keys; derived object names |
//! | [`github`] | Actions service access: credentials, proxy, CA, client cache |
//! | [`context`] | per-controller context and error policy |
//! | [`controllers`] | one reconciler per kind |
//! | [`metrics`] | controller metrics |
//! | [`meta`] | label/annotation merging and the integrity hash |

pub mod context;
pub mod controllers;
pub mod crd;
pub mod error;
pub mod github;
pub mod meta;
pub mod metrics;
pub mod names;
pub mod options;

pub use context::Context;
pub use error::Error;
pub use options::ManagerOptions;

use std::sync::Arc;

/// Runs the four controllers and the orphaned-registration sweep.
///
/// They share the Actions client cache and metrics; each controller gets its own [`Context`].
/// When `options.shutdown` fires, the controllers stop taking work, finish the reconciles in
/// flight and this returns `Ok`. If one of them stops before that, this returns an error (the
/// manager then exits and is restarted). Dropping the future stops everything at once (lost
/// leadership).
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
            controllers::ephemeral_runner_set::CONTROLLER,
            Box::pin(controllers::ephemeral_runner_set::run(ctx(
                controllers::ephemeral_runner_set::CONTROLLER,
            ))),
        ),
        (
            controllers::ephemeral_runner::CONTROLLER,
            Box::pin(controllers::ephemeral_runner::run(ctx(
                controllers::ephemeral_runner::CONTROLLER,
            ))),
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
