//! `cargo xtask test`: install what is missing, then fmt, clippy and the whole test suite.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::Args;

use testbed::KubernetesRelease;

use crate::{controlplane, fuzz, helm, workspace_root};

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    pub no_lint: bool,
    /// Skip the coverage-guided fuzz targets (`cargo xtask fuzz`).
    #[arg(long)]
    pub no_fuzz: bool,
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
    /// Adds another run's counts.
    pub fn add(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

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

/// The test targets run again on the oldest supported Kubernetes: the control plane, CRD install
/// and ARC-shaped manifests, chart render and apply under the chart RBAC, the manager from its
/// chart, and one whole end-to-end scenario.
pub const COMPATIBILITY_SUBSET: [&str; 9] = [
    "lifecycle",
    "controlplane_api",
    "controlplane_rbac",
    "controlplane_scheduling",
    "crds",
    "charts_apply",
    "charts_rbac",
    "manager_chart",
    "e2e_default",
];

/// Runs the whole check. The last line printed is the summary; the exit code is a failure if
/// any step failed.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let existing_cluster =
        std::env::var_os(testbed::EXISTING_CLUSTER_ENV).is_some_and(|v| !v.is_empty());
    let release = testbed::kubernetes_release()?;
    // Every suite on the selected release (the newest unless ARC_K8S_VERSION says otherwise),
    // then the compatibility subset on the oldest supported one.
    let compatibility =
        (!existing_cluster && release == testbed::NEWEST).then_some(testbed::OLDEST_SUPPORTED);
    install_prerequisites(existing_cluster, release, compatibility)?;
    let mut failures = Vec::new();
    if !args.no_lint {
        if !cargo(&["fmt", "--all", "--", "--check"])? {
            failures.push("cargo fmt --all -- --check (fix: cargo fmt --all)".to_owned());
        }
        if !cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])? {
            failures.push("cargo clippy --workspace --all-targets -- -D warnings".to_owned());
        }
    }
    let label = if existing_cluster {
        format!("the cluster of {}", testbed::EXISTING_CLUSTER_ENV)
    } else {
        format!("Kubernetes {}", release.version)
    };
    println!("xtask test: every suite on {label}");
    let mut selection = vec!["--workspace".to_owned()];
    let (ok, mut totals) = cargo_test(release, &selection, &args.cargo_test_args)?;
    let mut summaries = vec![format!("{label}: {totals}")];
    if !ok {
        failures.push(format!("cargo test --workspace on {label}"));
    }
    if !args.no_fuzz {
        println!(
            "xtask test: the fuzz targets, {} s each",
            fuzz::TEST_SECS_PER_TARGET
        );
        let names: Vec<String> = fuzz::target_names();
        if let Err(e) = fuzz::run_targets(&names, fuzz::TEST_SECS_PER_TARGET) {
            println!("xtask test: {e:#}");
            failures.push("the fuzz targets (cargo xtask fuzz)".to_owned());
        }
    }
    if let Some(old) = compatibility {
        println!(
            "xtask test: the compatibility subset on Kubernetes {}",
            old.version
        );
        selection = vec!["-p".into(), "testbed".into(), "-p".into(), "suites".into()];
        for target in COMPATIBILITY_SUBSET {
            selection.extend(["--test".to_owned(), target.to_owned()]);
        }
        let (ok, subset) = cargo_test(old, &selection, &args.cargo_test_args)?;
        summaries.push(format!(
            "Kubernetes {} (compatibility subset): {subset}",
            old.version
        ));
        if !ok {
            failures.push(format!(
                "the compatibility subset on Kubernetes {}",
                old.version
            ));
        }
        totals.add(subset);
    }
    for summary in &summaries {
        println!("xtask test: {summary}");
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

fn install_prerequisites(
    existing_cluster: bool,
    release: KubernetesRelease,
    compatibility: Option<KubernetesRelease>,
) -> anyhow::Result<()> {
    if existing_cluster {
        println!(
            "xtask test: using the cluster of {}; not installing a local control plane",
            testbed::EXISTING_CLUSTER_ENV
        );
    } else {
        for release in std::iter::once(release).chain(compatibility) {
            controlplane::install_release(release)?;
        }
    }
    let python = helm::ensure_venv().context("installing the Helm environment")?;
    println!("xtask test: Helm environment ready ({})", python.display());
    // The images suite builds and runs the container images with podman.
    system::images::ensure_tools().context("installing podman, buildah, skopeo and runc")?;
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

/// `cargo test <selection> --no-fail-fast [-- extra]` on `release`; whether it passed, and its
/// totals.
fn cargo_test(
    release: KubernetesRelease,
    selection: &[String],
    extra: &[String],
) -> anyhow::Result<(bool, Totals)> {
    let mut args: Vec<&str> = vec!["test"];
    args.extend(selection.iter().map(String::as_str));
    args.push("--no-fail-fast");
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    println!(
        "xtask test: {}={} cargo {}",
        testbed::KUBERNETES_VERSION_ENV,
        release.minor,
        args.join(" ")
    );
    let mut child = Command::new(cargo_bin())
        .args(&args)
        .env(testbed::KUBERNETES_VERSION_ENV, release.minor)
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

/// The cargo that runs xtask (`$CARGO`), else `cargo`.
pub(crate) fn cargo_bin() -> std::ffi::OsString {
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
