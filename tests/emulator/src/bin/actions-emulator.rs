//! The Actions-service emulator as a process, for people, the demo and other languages.

use std::path::PathBuf;
use std::time::Duration;

use actions_emulator::{DEFAULT_PAT, Emulator, EmulatorConfig};
use anyhow::Context;
use clap::Parser;
use secrecy::SecretString;
use tokio::signal::unix::{SignalKind, signal};

/// Serve an emulated GitHub + Actions service on 127.0.0.1 until SIGINT or SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "actions-emulator", version)]
struct Args {
    /// Port to bind on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0, env = "EMULATOR_PORT")]
    port: u16,
    /// Accepted personal access tokens (repeatable). The default test PAT is always accepted
    /// unless --no-default-pat is given.
    #[arg(
        long = "pat",
        env = "EMULATOR_PATS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pats: Vec<String>,
    /// Do not accept the built-in default PAT.
    #[arg(long)]
    no_default_pat: bool,
    /// How long GET message holds before answering 202, in seconds.
    #[arg(long, default_value_t = 50)]
    hold_secs: u64,
    /// Admin token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    admin_token_secs: u64,
    /// Extra runner groups besides Default (repeatable; ids 2, 3, ...).
    #[arg(long = "runner-group", value_delimiter = ',')]
    runner_groups: Vec<String>,
    /// Serve HTTPS with a generated CA.
    #[arg(long)]
    tls: bool,
    /// With --tls: write the root CA certificate (PEM) to this file.
    #[arg(long, requires = "tls")]
    ca_out: Option<PathBuf>,
    /// Write the base URL to this file once listening (for scripts).
    #[arg(long)]
    url_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut cfg = EmulatorConfig {
        port: args.port,
        long_poll_hold: Duration::from_secs(args.hold_secs),
        admin_token_lifetime: Duration::from_secs(args.admin_token_secs),
        runner_groups: args.runner_groups.clone(),
        ..EmulatorConfig::default()
    };
    if args.no_default_pat {
        cfg.pats.clear();
    }
    cfg.pats.extend(
        args.pats
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| SecretString::from(p.clone())),
    );
    if cfg.pats.is_empty() && cfg.apps.is_empty() {
        anyhow::bail!("no credentials accepted: pass --pat <token> or drop --no-default-pat");
    }
    let emulator = if args.tls {
        Emulator::start_tls(cfg).await?
    } else {
        Emulator::start(cfg).await?
    };
    if let (Some(path), Some(pem)) = (&args.ca_out, emulator.ca_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("writing the CA certificate to {}", path.display()))?;
        println!("ca: {}", path.display());
    }
    if let Some(path) = &args.url_out {
        std::fs::write(path, emulator.url())
            .with_context(|| format!("writing the URL to {}", path.display()))?;
    }
    println!("url: {}", emulator.url());
    println!("actions-url: {}", emulator.actions_url());
    println!("config-url example: {}", emulator.org_url("octo-org"));
    if !args.no_default_pat {
        println!("default PAT: {DEFAULT_PAT}");
    }
    println!("control API: {}/_emulator/state", emulator.url());
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    emulator.shutdown();
    println!("stopped");
    Ok(())
}
