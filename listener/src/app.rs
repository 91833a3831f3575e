//! Process wiring: config → logging → servers → Kubernetes and Actions clients → loop → exit code.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

use crate::bounds;
use crate::config::ListenerConfig;
use crate::health::{self, Health};
use crate::kube::KubePatcher;
use crate::listener::{Listener, ListenerError, LoopSettings};
use crate::logging;
use crate::metrics::Metrics;
use crate::scaler::Bounds;
use crate::service::ActionsService;
use scaleset_core::listener_lifecycle::ExitClass;

/// Exit code after a clean shutdown (SIGTERM or SIGINT).
pub const EXIT_OK: i32 = 0;
/// Exit code for runtime failures (permanent auth errors, a lost scale set, a lasting conflict).
pub const EXIT_RUNTIME: i32 = 1;
/// Exit code for bad configuration (config file, environment, unusable addresses or certificates).
pub const EXIT_CONFIG: i32 = 2;

/// Where the listener writes why it ended, for the controller to read from the pod status: the
/// container's `terminationMessagePath` (the kubelet's default unless `LISTENER_TERMINATION_LOG`
/// names another file). Nothing is written when the file does not exist (not in a container).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// How the process ends: its exit code, and the class and detail of its termination message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code.
    pub code: i32,
    /// Why, for the controller's restart policy.
    pub class: ExitClass,
    /// What happened, without secrets.
    pub detail: String,
}

impl Exit {
    fn config(detail: impl std::fmt::Display) -> Self {
        Self {
            code: EXIT_CONFIG,
            class: ExitClass::Config,
            detail: detail.to_string(),
        }
    }

    fn runtime(class: ExitClass, detail: impl std::fmt::Display) -> Self {
        Self {
            code: EXIT_RUNTIME,
            class,
            detail: detail.to_string(),
        }
    }

    /// The exit of a loop that ended with `result`.
    pub fn of(result: Result<(), ListenerError>) -> Self {
        use actions_client::Error as E;
        match result {
            Ok(()) => Self {
                code: EXIT_OK,
                class: ExitClass::Shutdown,
                detail: "stopped on a signal".to_owned(),
            },
            Err(e) => {
                let class = match &e {
                    ListenerError::Unauthorized(_) => ExitClass::Auth,
                    ListenerError::Fatal(E::ScaleSetNotFound(_)) => ExitClass::ScaleSetMissing,
                    ListenerError::Fatal(_) => ExitClass::Config,
                    ListenerError::SessionConflict { .. } => ExitClass::Conflict,
                };
                let code = match &e {
                    ListenerError::Fatal(E::Config { .. }) => EXIT_CONFIG,
                    _ => EXIT_RUNTIME,
                };
                Self {
                    code,
                    class,
                    detail: e.to_string(),
                }
            }
        }
    }

    /// Writes the termination message to `path` if that file exists; a failure is only logged.
    pub fn write_termination_message(&self, path: &std::path::Path) {
        if !path.exists() {
            return;
        }
        let message = self.class.termination_message(&self.detail);
        if let Err(e) = std::fs::write(path, message) {
            eprintln!(
                "listener: cannot write the termination message to {}: {e}",
                path.display()
            );
        }
    }
}

/// Runs the listener process and returns its exit code, after writing its termination message.
pub fn main_exit_code() -> i32 {
    let exit = main_exit();
    let path = std::env::var_os("LISTENER_TERMINATION_LOG")
        .map_or_else(|| std::path::PathBuf::from(TERMINATION_LOG), Into::into);
    exit.write_termination_message(&path);
    exit.code
}

fn main_exit() -> Exit {
    let config = match ListenerConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("listener: failed to read config: {e}");
            return Exit::config(format!("failed to read config: {e}"));
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
            return Exit::runtime(
                ExitClass::Transient,
                format!("cannot start the async runtime: {e}"),
            );
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

/// Runs with a loaded config; returns how the process ends.
pub async fn run(config: ListenerConfig) -> Exit {
    logging::init(config.log_level, config.log_format);
    let span = info_span!(
        "listener",
        scale_set_id = config.runner_scale_set_id,
        scale_set = %config.runner_scale_set_name,
        namespace = %config.ephemeral_runner_set_namespace,
    );
    run_in_span(config).instrument(span).await
}

async fn run_in_span(mut config: ListenerConfig) -> Exit {
    let shutdown = CancellationToken::new();
    if let Err(e) = watch_signals(shutdown.clone()) {
        error!(error = %e, "cannot install signal handlers");
        return Exit::runtime(
            ExitClass::Transient,
            format!("cannot install signal handlers: {e}"),
        );
    }
    let bounds = match Bounds::from_spec(Some(config.min_runners), Some(config.max_runners)) {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "invalid runner bounds");
            return Exit::config(format!("invalid runner bounds: {e}"));
        }
    };
    let servers = CancellationToken::new();
    let health = Health::new(config.liveness_stale_after);
    if let Some(addr) = &config.health_addr {
        if let Err(e) =
            health::serve(addr, health::health_router(health.clone()), servers.clone()).await
        {
            error!(error = %e, addr = %addr, "cannot listen on health_addr; fix: choose a free host:port");
            return Exit::config(format!("cannot listen on health_addr {addr}: {e}"));
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
                return Exit::config(format!("cannot listen on metrics_addr {addr}: {e}"));
            }
            info!(addr = %addr, path = %config.metrics_endpoint, "serving metrics");
            Some(metrics)
        }
    };
    let kube_client = match ::kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot configure the Kubernetes client; fix: run in a pod with a service account, or set KUBECONFIG (with a kubeconfig, leave HTTPS_PROXY unset: the client does not support proxies)");
            return Exit::config(format!("cannot configure the Kubernetes client: {e}"));
        }
    };
    let (bounds_tx, bounds_updates) = tokio::sync::watch::channel(bounds);
    if config.runner_scale_set_name.is_empty() {
        info!("runner_scale_set_name is empty: the runner bounds stay those of the config");
    } else {
        let (client, namespace, name) = (
            kube_client.clone(),
            config.ephemeral_runner_set_namespace.clone(),
            config.runner_scale_set_name.clone(),
        );
        tokio::spawn(
            async move { bounds::follow(client, &namespace, &name, bounds_tx).await }
                .in_current_span(),
        );
    }
    let patcher = KubePatcher::new(
        kube_client,
        &config.ephemeral_runner_set_namespace,
        &config.ephemeral_runner_set_name,
    );
    if let Err(e) = config.resolve_vault().await {
        error!(error = %e, "cannot read the GitHub credentials from Azure Key Vault");
        eprintln!("listener: cannot read the GitHub credentials from Azure Key Vault: {e}");
        return match e {
            actions_client::Error::Config { .. } => Exit::config(format!(
                "cannot read the GitHub credentials from Azure Key Vault: {e}"
            )),
            _ => Exit::runtime(
                ExitClass::Transient,
                format!("cannot read the GitHub credentials from Azure Key Vault: {e}"),
            ),
        };
    }
    let service = match ActionsService::connect(&config) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot build the Actions client");
            eprintln!("listener: cannot build the Actions client: {e}");
            return Exit::config(format!("cannot build the Actions client: {e}"));
        }
    };
    let mut settings = LoopSettings::new(config.runner_scale_set_id, bounds, owner_name());
    settings.policy.conflict_timeout = config.session_conflict_timeout;
    let listener =
        Listener::new(service, patcher, settings, metrics, health).follow_bounds(bounds_updates);
    let result = listener.run(shutdown).await;
    servers.cancel();
    match &result {
        Ok(()) => info!("listener stopped"),
        Err(e) => {
            error!(error = %e, "listener failed");
            eprintln!("listener: {e}");
        }
    }
    Exit::of(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_names_its_class_and_the_termination_message_round_trips() {
        let stopped = Exit::of(Ok(()));
        assert_eq!(
            (stopped.code, stopped.class),
            (EXIT_OK, ExitClass::Shutdown)
        );
        let config = Exit::of(Err(ListenerError::Fatal(actions_client::Error::Config {
            field: "github_configure_url",
            value: "ftp://x".to_owned(),
            reason: "must be https; fix: use the URL of the organization".to_owned(),
        })));
        assert_eq!(
            (config.code, config.class),
            (EXIT_CONFIG, ExitClass::Config)
        );

        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("absent");
        config.write_termination_message(&missing);
        assert!(!missing.exists(), "no file is created outside a container");
        let log = dir.path().join("termination-log");
        std::fs::write(&log, "").expect("create");
        config.write_termination_message(&log);
        let message = std::fs::read_to_string(&log).expect("read");
        assert!(message.contains("ftp://x"), "{message}");
        assert_eq!(
            ExitClass::from_termination_message(&message),
            ExitClass::Config
        );
    }
}
