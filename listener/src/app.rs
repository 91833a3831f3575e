//! Process wiring: config → logging → servers → Kubernetes and Actions clients → loop → exit code.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

use crate::config::ListenerConfig;
use crate::health::{self, Health};
use crate::kube::KubePatcher;
use crate::listener::{Listener, ListenerError, LoopSettings};
use crate::logging;
use crate::metrics::Metrics;
use crate::scaler::Bounds;
use crate::service::ActionsService;

/// Exit code after a clean shutdown (SIGTERM or SIGINT).
pub const EXIT_OK: i32 = 0;
/// Exit code for runtime failures (permanent auth errors, a lost scale set, a lasting conflict).
pub const EXIT_RUNTIME: i32 = 1;
/// Exit code for bad configuration (config file, environment, unusable addresses or certificates).
pub const EXIT_CONFIG: i32 = 2;

/// Runs the listener process and returns its exit code.
pub fn main_exit_code() -> i32 {
    let config = match ListenerConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("listener: failed to read config: {e}");
            return EXIT_CONFIG;
        }
    };
    // One thread: the listener is one poll loop plus two small HTTP servers, and every extra
    // worker costs memory in each of the cluster's listener pods.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("listener: cannot start the async runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    runtime.block_on(run(config))
}

/// Session owner: the pod's hostname, as ARC's listener uses.
pub fn owner_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("listener-{}", std::process::id()))
}

fn watch_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down");
        shutdown.cancel();
    });
    Ok(())
}

/// Runs with a loaded config; returns the exit code.
pub async fn run(config: ListenerConfig) -> i32 {
    logging::init(config.log_level, config.log_format);
    let span = info_span!(
        "listener",
        scale_set_id = config.runner_scale_set_id,
        scale_set = %config.runner_scale_set_name,
        namespace = %config.ephemeral_runner_set_namespace,
    );
    run_in_span(config).instrument(span).await
}

async fn run_in_span(config: ListenerConfig) -> i32 {
    let shutdown = CancellationToken::new();
    if let Err(e) = watch_signals(shutdown.clone()) {
        error!(error = %e, "cannot install signal handlers");
        return EXIT_RUNTIME;
    }
    let bounds = match Bounds::from_spec(Some(config.min_runners), Some(config.max_runners)) {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "invalid runner bounds");
            return EXIT_CONFIG;
        }
    };
    let servers = CancellationToken::new();
    let health = Health::new(config.liveness_stale_after);
    if let Some(addr) = &config.health_addr {
        if let Err(e) =
            health::serve(addr, health::health_router(health.clone()), servers.clone()).await
        {
            error!(error = %e, addr = %addr, "cannot listen on health_addr; fix: choose a free host:port");
            return EXIT_CONFIG;
        }
        info!(addr = %addr, "serving /healthz and /readyz");
    }
    let metrics = match &config.metrics_addr {
        None => None,
        Some(addr) => {
            let metrics = Arc::new(Metrics::new(
                config.metrics.as_ref(),
                config.url_parts(),
                &config.ephemeral_runner_set_name,
                &config.ephemeral_runner_set_namespace,
            ));
            let router = health::metrics_router(metrics.clone(), &config.metrics_endpoint);
            if let Err(e) = health::serve(addr, router, servers.clone()).await {
                error!(error = %e, addr = %addr, "cannot listen on metrics_addr; fix: choose a free host:port");
                return EXIT_CONFIG;
            }
            info!(addr = %addr, path = %config.metrics_endpoint, "serving metrics");
            Some(metrics)
        }
    };
    let kube_client = match ::kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot configure the Kubernetes client; fix: run in a pod with a service account, or set KUBECONFIG (with a kubeconfig, leave HTTPS_PROXY unset: the client does not support proxies)");
            return EXIT_CONFIG;
        }
    };
    let patcher = KubePatcher::new(
        kube_client,
        &config.ephemeral_runner_set_namespace,
        &config.ephemeral_runner_set_name,
    );
    let service = match ActionsService::connect(&config) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot build the Actions client");
            eprintln!("listener: cannot build the Actions client: {e}");
            return EXIT_CONFIG;
        }
    };
    let mut settings = LoopSettings::new(config.runner_scale_set_id, bounds, owner_name());
    settings.session_conflict_timeout = config.session_conflict_timeout;
    let listener = Listener::new(service, patcher, settings, metrics, health);
    let result = listener.run(shutdown).await;
    servers.cancel();
    match result {
        Ok(()) => {
            info!("listener stopped");
            EXIT_OK
        }
        Err(e) => {
            error!(error = %e, "listener failed");
            eprintln!("listener: {e}");
            match e {
                ListenerError::Fatal(actions_client::Error::Config { .. }) => EXIT_CONFIG,
                _ => EXIT_RUNTIME,
            }
        }
    }
}
