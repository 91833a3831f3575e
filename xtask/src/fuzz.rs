//! `cargo xtask fuzz`, and the fuzz step of `cargo xtask test`: the coverage-guided targets of
//! actions-client/fuzz (cargo-fuzz, libFuzzer) on the client's decoding of service answers, each
//! for a bounded time (docs/architecture.md#fuzzing-and-the-bad-input-campaign).
//!
//! libFuzzer's instrumentation needs unstable compiler flags; the stable toolchain accepts them
//! with `RUSTC_BOOTSTRAP=1`. The targets build into their own target directory (other flags),
//! and each target's corpus is kept under the cache directory, so every run starts from what the
//! previous runs found: a standing campaign. A crash fails the step and names the input file.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;

use crate::test::cargo_bin;
use crate::workspace_root;

/// The cargo-fuzz release installed when it is missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Seconds per target in `cargo xtask test`.
pub const TEST_SECS_PER_TARGET: u64 = 4;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds to run each target.
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Run only this target (default: all).
    pub target: Option<String>,
}

/// `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let targets: Vec<String> = match &args.target {
        Some(t) => vec![t.clone()],
        None => target_names(),
    };
    run_targets(&targets, args.secs)
}

/// The names of every target.
pub fn target_names() -> Vec<String> {
    targets().into_iter().map(|(t, _)| t).collect()
}

/// Every target with the seed folders it starts from.
fn targets() -> Vec<(String, Vec<&'static str>)> {
    let mut out: Vec<(String, Vec<&'static str>)> = actions_client::fuzzing::TARGETS
        .iter()
        .map(|(name, answers)| {
            (
                (*name).to_owned(),
                answers.iter().map(|a| a.name()).collect(),
            )
        })
        .collect();
    out.push(("errors".to_owned(), vec!["errors"]));
    out
}

/// Runs `names` for `secs` seconds each; fails on the first crash.
pub fn run_targets(names: &[String], secs: u64) -> anyhow::Result<()> {
    ensure_cargo_fuzz()?;
    let fuzz_dir = workspace_root().join("actions-client/fuzz");
    let cache = testbed::cache_dir();
    let target_dir = cache.join("fuzz-target");
    let all = targets();
    println!("xtask fuzz: building the targets (RUSTC_BOOTSTRAP=1 cargo fuzz build -s none)");
    let status = fuzz_command(&fuzz_dir, &target_dir)
        .args(["build", "-s", "none", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .status()
        .context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    for name in names {
        let Some((_, seeds)) = all.iter().find(|(t, _)| t == name) else {
            bail!("no fuzz target {name:?}");
        };
        let corpus = cache.join("fuzz-corpus").join(name);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let artifacts = target_dir.join("fuzz-artifacts").join(name);
        std::fs::create_dir_all(&artifacts)?;
        let mut command = fuzz_command(&fuzz_dir, &target_dir);
        command
            .args(["run", name, "-s", "none", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(&corpus);
        for seed in seeds {
            command.arg(fuzz_dir.join("seeds").join(seed));
        }
        command.args([
            "--".to_owned(),
            format!("-max_total_time={secs}"),
            "-rss_limit_mb=2048".to_owned(),
            "-print_final_stats=1".to_owned(),
            format!("-artifact_prefix={}/", artifacts.display()),
        ]);
        println!(
            "xtask fuzz: {name} for {secs} s (corpus {})",
            corpus.display()
        );
        let output = command
            .output()
            .with_context(|| format!("running cargo fuzz run {name}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let runs = stderr
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(str::trim)
            .unwrap_or("?");
        if !output.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {name} failed ({}): the input is under {}\n{}",
                output.status,
                artifacts.display(),
                tail.join("\n")
            );
        }
        println!("xtask fuzz: {name}: {runs} inputs, no crash");
    }
    Ok(())
}

fn fuzz_command(fuzz_dir: &Path, target_dir: &PathBuf) -> Command {
    let mut command = Command::new(cargo_bin());
    command
        .arg("fuzz")
        .current_dir(fuzz_dir.parent().unwrap_or(fuzz_dir))
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir);
    command
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` is missing.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new(cargo_bin())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    println!("xtask fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    let status = Command::new(cargo_bin())
        .args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}
