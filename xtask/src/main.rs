//! Project automation: `cargo xtask <command>`.
//!
//! Each command lives in its own module; a module adds one variant to [`Command`] and one arm
//! to `main`.

mod bench;
mod controlplane;
mod crds;
mod demo;
mod fuzz;
mod helm;
mod images;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "arc-rs project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The local Kubernetes control plane.
    Controlplane {
        #[command(subcommand)]
        command: controlplane::ControlPlaneCommand,
    },
    /// Install what is missing, then cargo fmt --check, clippy -D warnings and every test.
    Test(test::TestArgs),
    /// Lint the Helm charts with real Helm.
    HelmLint,
    /// Refresh the Kubernetes list/map markers from a v1.37 API server, then regenerate the
    /// controller chart's CRD YAML from the Rust types.
    Crds,
    /// The whole system on one machine with live progress (control plane, emulator, nodes).
    Demo(demo::DemoArgs),
    /// Measure the whole system and write docs/benchmarks.md (takes about 10 minutes).
    Bench(bench::BenchArgs),
    /// Run the coverage-guided fuzz targets on actions-client's decoding (cargo-fuzz), each for
    /// a bounded time, growing their corpus under the cache directory.
    Fuzz(fuzz::FuzzArgs),
    /// Build the manager and listener images FROM scratch with podman (static release
    /// binaries) and save them as OCI archives under <target dir>/images/.
    Images,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Controlplane { command } => controlplane::run(command),
        Command::Test(args) => return exit(test::run(&args)),
        Command::HelmLint => helm::lint_charts(),
        Command::Crds => crds::generate(),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Images => images::run(),
        Command::Fuzz(args) => fuzz::run(&args),
    };
    exit(result.map(|()| ExitCode::SUCCESS))
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) use testbed::workspace_root;
