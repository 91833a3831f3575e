//! `nodesim`: plays the kubelet for simulated Nodes of the cluster in `--kubeconfig` until
//! SIGINT or SIGTERM, then stops its pods' processes and deletes its Nodes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use nodesim::{NodeSimulator, SimulatorConfig};

#[derive(Debug, Parser)]
#[command(
    name = "nodesim",
    about = "Node simulator: plays the kubelet for simulated Nodes"
)]
struct Args {
    /// Kubeconfig of the cluster (its current context).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// How many Nodes to register.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Node name prefix (`<prefix>-0`, …).
    #[arg(long, default_value = "nodesim")]
    prefix: String,
    /// Pods per Node.
    #[arg(long, default_value_t = 250)]
    pods_per_node: u32,
    /// Register the Nodes without the testbed.arc-rs.dev/simulated-node:NoSchedule taint.
    #[arg(long)]
    no_taint: bool,
    /// The listener binary run for listener containers.
    #[arg(long)]
    listener_binary: Option<PathBuf>,
    /// Where pod files and logs go (default: a temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the Nodes registered on exit.
    #[arg(long)]
    keep_nodes: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig).with_context(|| {
        format!(
            "--kubeconfig {} must name a readable kubeconfig",
            args.kubeconfig.display()
        )
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("using the current context of {}", args.kubeconfig.display()))?;
    let mut sim = SimulatorConfig::with_nodes(&args.prefix, args.nodes);
    for n in &mut sim.nodes {
        n.pods = args.pods_per_node;
    }
    sim.taint = !args.no_taint;
    sim.listener_binary = args.listener_binary;
    sim.workdir = args.workdir;
    sim.delete_nodes_on_shutdown = !args.keep_nodes;
    let simulator = NodeSimulator::start(config, sim).await?;
    println!(
        "nodesim: simulating {} (pod files in {})",
        simulator.node_names().join(", "),
        simulator.workdir().display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    simulator.shutdown().await;
    Ok(())
}
