//! `cargo xtask test`: install what is missing, then fmt, clippy and the whole test suite.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::Args;

use crate::{controlplane, helm, workspace_root};

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    pub no_lint: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

/// Totals from the test harness's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests that were ignored (reported as skipped).
    pub ignored: u64,
}

impl Totals {
    /// Adds the counts of one `test result: ...` line; other lines are ignored.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        )
    }
}

/// Runs the whole check. The last line printed is the summary; the exit code is a failure if
/// any step failed.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    install_prerequisites()?;
    let mut failures = Vec::new();
    if !args.no_lint {
        if !cargo(&["fmt", "--all", "--", "--check"])? {
            failures.push("cargo fmt --all -- --check (fix: cargo fmt --all)");
        }
        if !cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])? {
            failures.push("cargo clippy --workspace --all-targets -- -D warnings");
        }
    }
    let (tests_ok, totals) = cargo_test(&args.cargo_test_args)?;
    if !tests_ok {
        failures.push("cargo test --workspace");
    }
    for failure in &failures {
        println!("xtask test: FAILED: {failure}");
    }
    println!("{totals}");
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn install_prerequisites() -> anyhow::Result<()> {
    if std::env::var_os(testbed::EXISTING_CLUSTER_ENV).is_some_and(|v| !v.is_empty()) {
        println!(
            "xtask test: using the cluster of {}; not installing a local control plane",
            testbed::EXISTING_CLUSTER_ENV
        );
    } else {
        controlplane::install()?;
    }
    let python = helm::ensure_venv().context("installing the Helm environment")?;
    println!("xtask test: Helm environment ready ({})", python.display());
    Ok(())
}

fn cargo(args: &[&str]) -> anyhow::Result<bool> {
    println!("xtask test: cargo {}", args.join(" "));
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    Ok(status.success())
}

fn cargo_test(extra: &[String]) -> anyhow::Result<(bool, Totals)> {
    let mut args = vec!["test", "--workspace", "--no-fail-fast"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    println!("xtask test: cargo {}", args.join(" "));
    let mut child = Command::new(cargo_bin())
        .args(&args)
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child
        .stdout
        .take()
        .context("capturing cargo test's output")?;
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    Ok((status.success() && totals.failed == 0, totals))
}

fn cargo_bin() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn totals_sum_every_result_line() {
        let mut totals = Totals::default();
        for line in [
            "running 3 tests",
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.10s",
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 4 filtered out; finished in 1.00s",
            "test something ... ok",
        ] {
            totals.add_line(line);
        }
        assert_eq!(
            totals,
            Totals {
                passed: 5,
                failed: 1,
                ignored: 1
            }
        );
        assert_eq!(totals.to_string(), "5 passed, 1 failed, 1 skipped");
    }
}
