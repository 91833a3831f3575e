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

/// Runs the controllers until one of them stops (its watch streams end or it fails).
///
/// Each controller gets its own [`Context`]; they share the Actions client cache and metrics.
/// Stop them by dropping the returned future (e.g. on SIGTERM or lost leadership).
pub async fn run(client: kube::Client, options: ManagerOptions) -> anyhow::Result<()> {
    let options = Arc::new(options);
    let github = Arc::new(github::GithubClients::new(options.connector.clone()));
    let metrics = options.metrics.clone();
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
    tokio::select! {
        r = controllers::autoscaling_runner_set::run(ctx(controllers::autoscaling_runner_set::CONTROLLER)) => r,
        r = controllers::autoscaling_listener::run(ctx(controllers::autoscaling_listener::CONTROLLER)) => r,
    }
}
