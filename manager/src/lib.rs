//! The controller manager: parses ARC-compatible flags ([`cli`]), sets up logging, the
//! Kubernetes client (with client-side QPS/burst), the metrics and health servers, leader
//! election ([`leader`]), and runs `k8s_reconcilers::run` until SIGTERM.
//!
//! Exit codes: 0 after a graceful shutdown, 1 on a runtime failure (lost leadership, a
//! controller stopped, the API server unreachable at start), 2 on bad flags or environment.

pub mod api_client;
pub mod cli;
pub mod leader;
pub mod pprof;
pub mod rate_limit;
pub mod request_metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_reconcilers::ManagerOptions;
use k8s_reconcilers::github::Connector;
use k8s_reconcilers::options::Shutdown;
use listener::health;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::{LogFormat, Settings};

/// How long in-flight reconciles may take after SIGTERM (the chart gives the pod 10 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set, overrides the level.
pub fn init_logging(settings: &Settings) {
    let level = &settings.log_filter;
    let deps = if matches!(level.as_str(), "trace" | "debug") {
        "info"
    } else {
        level.as_str()
    };
    let directive = format!(
        "{deps},manager={level},k8s_reconcilers={level},actions_client={level},scaleset_core={level},kube_runtime={deps}"
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directive));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// A Kubernetes client from the environment (in-cluster or `KUBECONFIG`), rate limited to
/// `qps` with bursts of `burst` requests, counting its requests in `metrics`.
pub async fn kube_client(
    qps: f64,
    burst: u64,
    metrics: &k8s_reconcilers::metrics::Metrics,
) -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes configuration (in-cluster or KUBECONFIG): {e}")
    })?;
    let host = config
        .cluster_url
        .authority()
        .map(ToString::to_string)
        .unwrap_or_default();
    let service = api_client::builder(config)?
        .with_layer(&rate_limit::TokenBucketLayer::new(qps, burst))
        .with_layer(&request_metrics::RequestMetricsLayer::new(
            metrics.rest_client_requests.clone(),
            host,
        ));
    Ok(service.build())
}

/// Completes on the first SIGTERM or SIGINT.
async fn termination() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; SIGTERM will kill the manager at once");
        return futures::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}

/// ManagerOptions for `settings`, served by `connector`.
pub fn manager_options(
    settings: &Settings,
    connector: Arc<dyn Connector>,
    shutdown: Shutdown,
) -> ManagerOptions {
    let mut o = ManagerOptions::new(
        settings.controller_namespace.clone(),
        settings.listener_image.clone(),
        connector,
    );
    o.listener_entrypoint = settings.listener_entrypoint.clone();
    o.listener_image_pull_secrets = settings.listener_image_pull_secrets.clone();
    o.watch_namespace = settings.watch_namespace.clone();
    o.listener_log_level = settings.listener_log_level.clone();
    o.listener_log_format = settings.listener_log_format.clone();
    o.listener_metrics_addr = settings.listener_metrics_addr.clone();
    o.listener_metrics_endpoint = if settings.listener_metrics_addr.is_empty() {
        String::new()
    } else {
        settings.listener_metrics_endpoint.clone()
    };
    o.publish_metrics = settings.metrics_addr.is_some();
    o.runner_max_concurrent_reconciles = settings.runner_concurrency;
    o.runner_set_max_concurrent_reconciles = settings.runner_set_concurrency;
    o.exclude_label_propagation_prefixes = settings.exclude_label_propagation_prefixes.clone();
    o.default_runner_image = settings.runner_image.clone();
    o.drift_policy = settings.drift_policy;
    o.requeue_limiter = settings.requeue_limiter;
    o.orphan_cleanup_interval = settings.orphan_cleanup_interval;
    o.build_version = cli::BUILD_VERSION.to_owned();
    o.shutdown = shutdown;
    o
}

/// Runs the manager with validated `settings` until SIGTERM; see the crate docs for the result.
pub async fn run(settings: Settings, connector: Arc<dyn Connector>) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = Shutdown::on({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    });
    let options = manager_options(&settings, connector, shutdown.clone());
    let client = kube_client(settings.qps, settings.burst, &options.metrics).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the Kubernetes API server: {e}"))?;
    tracing::info!(version = %version.git_version, "connected to the API server");

    let servers = CancellationToken::new();
    if let Some(addr) = settings.metrics_addr {
        let mut registry = Registry::default();
        options.metrics.register(&mut registry);
        let router = health::metrics_router(Arc::new(registry), "/metrics");
        serve("metrics", addr, router, &servers).await?;
    }
    if let Some(addr) = settings.health_addr {
        serve("health", addr, probes(), &servers).await?;
    }
    if let Some(addr) = settings.pprof_addr {
        serve("pprof", addr, pprof::router(), &servers).await?;
    }

    let mut elector = settings.leader_election.clone().map(|le| {
        leader::Elector::new(
            client.clone(),
            &settings.controller_namespace,
            leader::identity(),
            le,
        )
    });
    let term = termination();
    tokio::pin!(term);

    if let Some(elector) = elector.as_mut() {
        tokio::select! {
            () = elector.acquire() => {}
            () = &mut term => {
                servers.cancel();
                return Ok(());
            }
        }
    }

    let controllers = k8s_reconcilers::run(client, options);
    tokio::pin!(controllers);
    let lost = async {
        match elector.as_mut() {
            Some(e) => e.hold().await,
            None => futures::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = &mut controllers => r.and(Err(anyhow::anyhow!("the controllers stopped"))),
        () = lost => Err(anyhow::anyhow!("leader election lost")),
        () = &mut term => {
            let _ = stop_tx.send(true);
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut controllers).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("reconciles still running after {SHUTDOWN_GRACE:?}; stopping them");
                    Ok(())
                }
            }
        }
    };
    if result.is_ok()
        && let Some(elector) = elector.as_mut()
    {
        elector.release().await;
    }
    servers.cancel();
    result
}

/// `GET /healthz` and `GET /readyz`. They are served only once the API server answered, so both
/// mean "the process serves requests".
fn probes() -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
}

/// Binds `addr` now (so a bad or taken address fails start-up), then serves `router` until
/// `stop` is cancelled.
async fn serve(
    what: &str,
    addr: SocketAddr,
    router: axum::Router,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    health::serve(&addr.to_string(), router, stop.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the {what} server to {addr}: {e}"))?;
    tracing::info!(%addr, "{what} server listening");
    Ok(())
}
