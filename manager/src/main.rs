//! `manager`: the gha-runner-scale-set controller manager (see the `manager` library).

use std::process::ExitCode;
use std::sync::Arc;

use k8s_reconcilers::github::ActionsClientConnector;
use manager::cli::{BUILD_VERSION, Cli};

/// One thread runs every controller: the manager waits on the API server and the Actions
/// service, and each extra worker thread kept its own malloc arena of freed memory
/// (docs/architecture.md, "Memory").
fn main() -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(manage()),
        Err(e) => {
            eprintln!("manager: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn manage() -> ExitCode {
    let cli = match Cli::parse_from_args(std::env::args()) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let settings = match cli.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("manager: {e}");
            return ExitCode::from(2);
        }
    };
    manager::init_logging(&settings);
    tracing::info!(version = BUILD_VERSION, namespace = %settings.controller_namespace,
        watch = ?settings.watch_namespace, leader_election = settings.leader_election.is_some(),
        "starting the controller manager");
    let connector = Arc::new(ActionsClientConnector::new(BUILD_VERSION));
    match manager::run(settings, connector).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "manager failed");
            ExitCode::from(1)
        }
    }
}
