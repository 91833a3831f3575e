//! `manager`: the gha-runner-scale-set controller manager (see the `manager` library).
//!
//! Started under the name `ghalistener` (the manager image links `/ghalistener` to `/manager`,
//! and the controller starts listener pods from its own image), it is the listener instead:
//! one binary serves both, so the image carries the shared code once.

use std::process::ExitCode;
use std::sync::Arc;

use k8s_reconcilers::github::ActionsClientConnector;
use k8s_reconcilers::options::LISTENER_ENTRYPOINT;
use manager::cli::{BUILD_VERSION, Cli};

fn main() -> ExitCode {
    let listener_name = std::path::Path::new(LISTENER_ENTRYPOINT).file_name();
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    if invoked_as.is_some_and(|path| path.file_name() == listener_name) {
        std::process::exit(listener::app::main_exit_code());
    }
    run_manager()
}

/// One thread runs every controller: the manager waits on the API server and the Actions
/// service, and each extra worker thread kept its own malloc arena of freed memory
/// (docs/architecture.md, "Memory").
fn run_manager() -> ExitCode {
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
