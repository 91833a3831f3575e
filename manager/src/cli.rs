//! Command line and environment of the manager, compatible with what ARC's controller chart
//! passes (docs/architecture.md#manager-flags), and their validation into [`Settings`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use k8s_reconcilers::options::RequeueLimiter;
use scaleset_core::autoscaling_runner_set::DriftPolicy;

/// Build version compared with an AutoscalingRunnerSet's `app.kubernetes.io/version` label
/// (major.minor must match). Override at build time with `ARC_RS_VERSION`.
pub const BUILD_VERSION: &str = match option_env!("ARC_RS_VERSION") {
    Some(v) => v,
    None => "0.14.2",
};

/// The gha-runner-scale-set controller manager.
///
/// Flags and environment variables are those of ARC's manager in scale-set mode, so the
/// `gha-runner-scale-set-controller` chart works unchanged.
#[derive(Debug, Clone, Parser)]
#[command(name = "manager", version = BUILD_VERSION)]
pub struct Cli {
    /// Run the four scale-set controllers (required: the legacy controllers are not implemented).
    #[arg(long)]
    pub auto_scaling_runner_set_only: bool,

    /// Controller namespace: listeners, their pods and Secrets live here.
    #[arg(long, env = "CONTROLLER_MANAGER_POD_NAMESPACE", hide_env_values = true)]
    pub controller_namespace: Option<String>,

    /// Image of the listener pods.
    #[arg(long, env = "CONTROLLER_MANAGER_CONTAINER_IMAGE")]
    pub listener_image: Option<String>,

    /// Command of the listener container.
    #[arg(long, env = "LISTENER_ENTRYPOINT", default_value = k8s_reconcilers::options::LISTENER_ENTRYPOINT)]
    pub listener_entrypoint: String,

    /// Elect a leader through a Lease in the controller namespace; only the leader reconciles.
    #[arg(long)]
    pub enable_leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "actions-runner-controller")]
    pub leader_election_id: String,

    /// Leader-election Lease duration.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives up leadership.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,

    /// Interval between leader-election attempts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,

    /// Watch AutoscalingRunnerSets and runners only in this namespace.
    #[arg(long, default_value = "")]
    pub watch_single_namespace: String,

    /// Legacy form of --watch-single-namespace.
    #[arg(long, default_value = "")]
    pub watch_namespace: String,

    /// `debug`, `info`, `warn`, `error`, or a numeric zap level (-1 debug … 2 error).
    #[arg(long, default_value = "debug")]
    pub log_level: String,

    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    pub log_format: String,

    /// Address of the controller metrics server (`0` disables it).
    #[arg(long, default_value = ":8080")]
    pub metrics_addr: String,

    /// Metrics address written into listener configs (`0` disables listener metrics).
    #[arg(long, default_value = ":8080")]
    pub listener_metrics_addr: String,

    /// Metrics path written into listener configs.
    #[arg(long, default_value = "/metrics")]
    pub listener_metrics_endpoint: String,

    /// Address serving `/healthz` and `/readyz` (empty disables it).
    #[arg(long, default_value = "")]
    pub health_probe_bind_address: String,

    /// Address serving CPU profiles in Go's pprof format at `/debug/pprof/profile` (empty or
    /// `0` disables it).
    #[arg(long, default_value = "")]
    pub pprof_addr: String,

    /// EphemeralRunner controller workers.
    #[arg(long, default_value_t = 2)]
    pub runner_max_concurrent_reconciles: u16,

    /// EphemeralRunnerSet controller workers (arc-rs addition); as many as
    /// `--runner-max-concurrent-reconciles` when not given.
    #[arg(long)]
    pub runner_set_max_concurrent_reconciles: Option<u16>,

    /// `""`, `bucket_rate_limiter` or `typed_rate_limiter`.
    #[arg(long, default_value = "")]
    pub workqueue_rate_limiter: String,

    /// Kubernetes client requests per second.
    #[arg(long, default_value_t = 20.0)]
    pub k8s_client_rate_limiter_qps: f64,

    /// Kubernetes client burst.
    #[arg(long, default_value_t = 30)]
    pub k8s_client_rate_limiter_burst: u64,

    /// Label key prefix never propagated to child objects (repeatable).
    #[arg(long)]
    pub exclude_label_propagation_prefix: Vec<String>,

    /// imagePullSecrets of listener pods (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub auto_scaler_image_pull_secrets: Vec<String>,

    /// Image of a runner container whose template leaves `image` empty.
    #[arg(long, default_value = "")]
    pub runner_image: String,

    /// How a runner spec change reaches existing runners: `replace` (default: idle runners are
    /// replaced at once, the listener keeps running) or `drain` (ARC: stop the listener until
    /// no runner is pending or running). `immediate` and `eventual` are aliases.
    #[arg(long, default_value = "replace")]
    pub update_strategy: String,

    /// How often runner registrations without an EphemeralRunner are removed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub orphan_cleanup_interval: Duration,

    /// Accepted for compatibility (informer resync; no effect).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub sync_period: Duration,

    /// Accepted for compatibility (webhook port; no webhooks in scale-set mode).
    #[arg(long, default_value_t = 9443)]
    pub port: u16,

    /// Legacy-mode flags, accepted and ignored.
    #[command(flatten)]
    pub legacy: LegacyFlags,
}

/// Flags of ARC's legacy mode: parsed so that old command lines keep working, then ignored.
/// `--github-*` flags are dropped before parsing (see [`strip_legacy_github_flags`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LegacyFlags {
    #[arg(long, hide = true)]
    docker_image: Option<String>,
    #[arg(long, hide = true)]
    docker_gid: Option<String>,
    #[arg(long, hide = true)]
    runner_image_pull_secret: Vec<String>,
    #[arg(long, hide = true)]
    docker_registry_mirror: Option<String>,
    #[arg(long, hide = true)]
    runner_github_url: Option<String>,
    #[arg(long, hide = true)]
    runner_status_update_hook: Option<String>,
    #[arg(long, hide = true)]
    default_scale_down_delay: Option<String>,
    #[arg(long, hide = true)]
    common_runner_labels: Vec<String>,
}

/// A rejected flag or environment variable: what, why, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}; {fix}")]
pub struct CliError {
    /// The flag or variable.
    pub flag: &'static str,
    /// What is wrong, including the value.
    pub problem: String,
    /// How to fix it.
    pub fix: &'static str,
}

fn bad(flag: &'static str, problem: impl Into<String>, fix: &'static str) -> CliError {
    CliError {
        flag,
        problem: problem.into(),
        fix,
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Leader-election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// Lease name.
    pub lease_name: String,
    /// Lease duration.
    pub lease_duration: Duration,
    /// Renew deadline.
    pub renew_deadline: Duration,
    /// Retry period.
    pub retry_period: Duration,
}

/// Validated settings of one manager run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Controller namespace.
    pub controller_namespace: String,
    /// Listener image.
    pub listener_image: String,
    /// Listener command.
    pub listener_entrypoint: String,
    /// Listener imagePullSecrets.
    pub listener_image_pull_secrets: Vec<String>,
    /// Single watched namespace.
    pub watch_namespace: Option<String>,
    /// `tracing` filter directive for the manager's own logs.
    pub log_filter: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Level written into listener configs.
    pub listener_log_level: String,
    /// Format written into listener configs.
    pub listener_log_format: String,
    /// Metrics server address.
    pub metrics_addr: Option<SocketAddr>,
    /// Listener metrics address (empty = none).
    pub listener_metrics_addr: String,
    /// Listener metrics path.
    pub listener_metrics_endpoint: String,
    /// Health server address.
    pub health_addr: Option<SocketAddr>,
    /// Leader election, when enabled.
    pub leader_election: Option<LeaderElection>,
    /// EphemeralRunner workers.
    pub runner_concurrency: u16,
    /// EphemeralRunnerSet workers.
    pub runner_set_concurrency: u16,
    /// Client QPS.
    pub qps: f64,
    /// Client burst.
    pub burst: u64,
    /// Label prefixes not propagated.
    pub exclude_label_propagation_prefixes: Vec<String>,
    /// Default runner image.
    pub runner_image: Option<String>,
    /// Spec drift policy.
    pub drift_policy: DriftPolicy,
    /// Requeue limiter of failed reconciles.
    pub requeue_limiter: RequeueLimiter,
    /// Orphaned registration sweep interval.
    pub orphan_cleanup_interval: Duration,
    /// Where CPU profiles are served (`--pprof-addr`), if anywhere.
    pub pprof_addr: Option<SocketAddr>,
}

impl Cli {
    /// Parses `args` (the first is the program name) after dropping legacy `--github-*` flags.
    pub fn parse_from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        Self::try_parse_from(strip_legacy_github_flags(&args))
    }

    /// Validates the flags into [`Settings`].
    pub fn settings(&self) -> Result<Settings, CliError> {
        if !self.auto_scaling_runner_set_only {
            return Err(bad(
                "--auto-scaling-runner-set-only",
                "not set, and ARC's legacy (summerwind) controllers are not implemented",
                "pass --auto-scaling-runner-set-only, as the gha-runner-scale-set-controller chart does",
            ));
        }
        let controller_namespace = required(
            self.controller_namespace.as_deref(),
            "CONTROLLER_MANAGER_POD_NAMESPACE",
            "set it to the manager's namespace (the chart uses the downward API metadata.namespace)",
        )?;
        let listener_image = required(
            self.listener_image.as_deref(),
            "CONTROLLER_MANAGER_CONTAINER_IMAGE",
            "set it to the image the listener pods run (the chart sets the controller image)",
        )?;
        let log_format = match self.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "--log-format",
                    format!("unknown format {other:?}"),
                    "use text or json",
                ));
            }
        };
        let (log_filter, named_level) = log_filter(&self.log_level)?;
        let (listener_log_level, listener_log_format) = if named_level {
            (self.log_level.clone(), self.log_format.clone())
        } else {
            ("debug".to_owned(), "text".to_owned())
        };
        let watch_namespace = self.watch_namespace()?;
        let requeue_limiter = match self.workqueue_rate_limiter.as_str() {
            "" | "bucket_rate_limiter" => RequeueLimiter::Bucket,
            "typed_rate_limiter" => RequeueLimiter::Typed,
            other => {
                return Err(bad(
                    "--workqueue-rate-limiter",
                    format!("unknown rate limiter {other:?}"),
                    "use bucket_rate_limiter, typed_rate_limiter or leave it empty",
                ));
            }
        };
        if !(self.k8s_client_rate_limiter_qps.is_finite() && self.k8s_client_rate_limiter_qps > 0.0)
        {
            return Err(bad(
                "--k8s-client-rate-limiter-qps",
                format!(
                    "{} is not a positive rate",
                    self.k8s_client_rate_limiter_qps
                ),
                "use a number above 0 (default 20)",
            ));
        }
        if self.k8s_client_rate_limiter_burst == 0 {
            return Err(bad(
                "--k8s-client-rate-limiter-burst",
                "0 would block every request",
                "use a number of at least 1 (default 30)",
            ));
        }
        let drift_policy = match self.update_strategy.as_str() {
            "replace" | "immediate" => DriftPolicy::Replace,
            "drain" | "eventual" => DriftPolicy::Drain,
            other => {
                return Err(bad(
                    "--update-strategy",
                    format!("unknown strategy {other:?}"),
                    "use replace or drain",
                ));
            }
        };
        let leader_election = self.leader_election()?;
        Ok(Settings {
            controller_namespace,
            listener_image,
            listener_entrypoint: self.listener_entrypoint.clone(),
            listener_image_pull_secrets: self
                .auto_scaler_image_pull_secrets
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            watch_namespace,
            log_filter,
            log_format,
            listener_log_level,
            listener_log_format,
            metrics_addr: bind_address("--metrics-addr", &self.metrics_addr, true)?,
            listener_metrics_addr: if self.listener_metrics_addr == "0" {
                String::new()
            } else {
                self.listener_metrics_addr.clone()
            },
            listener_metrics_endpoint: self.listener_metrics_endpoint.clone(),
            health_addr: bind_address(
                "--health-probe-bind-address",
                &self.health_probe_bind_address,
                false,
            )?,
            leader_election,
            runner_concurrency: positive(
                "--runner-max-concurrent-reconciles",
                self.runner_max_concurrent_reconciles,
            )?,
            runner_set_concurrency: positive(
                "--runner-set-max-concurrent-reconciles",
                self.runner_set_max_concurrent_reconciles
                    .unwrap_or(self.runner_max_concurrent_reconciles),
            )?,
            qps: self.k8s_client_rate_limiter_qps,
            burst: self.k8s_client_rate_limiter_burst,
            exclude_label_propagation_prefixes: self
                .exclude_label_propagation_prefix
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect(),
            runner_image: (!self.runner_image.is_empty()).then(|| self.runner_image.clone()),
            drift_policy,
            requeue_limiter,
            orphan_cleanup_interval: self.orphan_cleanup_interval,
            pprof_addr: bind_address("--pprof-addr", &self.pprof_addr, true)?,
        })
    }

    fn watch_namespace(&self) -> Result<Option<String>, CliError> {
        match (
            self.watch_single_namespace.as_str(),
            self.watch_namespace.as_str(),
        ) {
            ("", "") => Ok(None),
            (ns, "") | ("", ns) => {
                if is_dns_label(ns) {
                    Ok(Some(ns.to_owned()))
                } else {
                    Err(bad(
                        "--watch-single-namespace",
                        format!("{ns:?} is not a namespace name"),
                        "use a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)",
                    ))
                }
            }
            (a, b) if a == b => Ok(Some(a.to_owned())),
            (a, b) => Err(bad(
                "--watch-namespace",
                format!("{b:?} differs from --watch-single-namespace={a:?}"),
                "set only --watch-single-namespace; one manager watches one namespace or all",
            )),
        }
    }

    fn leader_election(&self) -> Result<Option<LeaderElection>, CliError> {
        if !self.enable_leader_election {
            return Ok(None);
        }
        if !is_dns_subdomain(&self.leader_election_id) {
            return Err(bad(
                "--leader-election-id",
                format!("{:?} is not a valid Lease name", self.leader_election_id),
                "use a lowercase DNS subdomain name, e.g. the release's fullname",
            ));
        }
        let (duration, deadline, retry) = (
            self.leader_election_lease_duration,
            self.leader_election_renew_deadline,
            self.leader_election_retry_period,
        );
        if retry.is_zero() || deadline <= retry || duration <= deadline || duration.as_secs() < 1 {
            return Err(bad(
                "--leader-election-lease-duration",
                format!(
                    "lease duration {duration:?}, renew deadline {deadline:?} and retry period {retry:?} are not ordered"
                ),
                "use lease duration > renew deadline > retry period > 0 (defaults 15s, 10s, 2s)",
            ));
        }
        Ok(Some(LeaderElection {
            lease_name: self.leader_election_id.clone(),
            lease_duration: duration,
            renew_deadline: deadline,
            retry_period: retry,
        }))
    }
}

fn required(
    value: Option<&str>,
    name: &'static str,
    fix: &'static str,
) -> Result<String, CliError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(bad(name, "is not set", fix)),
    }
}

fn positive(flag: &'static str, value: u16) -> Result<u16, CliError> {
    if value == 0 {
        return Err(bad(
            flag,
            "0 workers would never reconcile",
            "use 1 or more",
        ));
    }
    Ok(value)
}

/// `tracing` filter for an ARC log level, and whether it was one of the four names.
fn log_filter(level: &str) -> Result<(String, bool), CliError> {
    let named = match level {
        "debug" | "info" | "warn" | "error" => return Ok((level.to_owned(), true)),
        _ => level.parse::<i64>().ok(),
    };
    let Some(n) = named else {
        return Err(bad(
            "--log-level",
            format!("unknown level {level:?}"),
            "use debug, info, warn, error or a zap level number (-1 debug, 0 info, 1 warn, 2 error)",
        ));
    };
    let filter = match n {
        i64::MIN..=-2 => "trace",
        -1 => "debug",
        0 => "info",
        1 => "warn",
        _ => "error",
    };
    Ok((filter.to_owned(), false))
}

/// Parses a Go-style bind address (`:8080`, `0.0.0.0:8080`, `127.0.0.1:0`, `[::]:80`).
/// `0` disables when `zero_disables`; an empty value disables always.
fn bind_address(
    flag: &'static str,
    value: &str,
    zero_disables: bool,
) -> Result<Option<SocketAddr>, CliError> {
    if value.is_empty() || (zero_disables && value == "0") {
        return Ok(None);
    }
    let full = match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => value.to_owned(),
    };
    full.parse().map(Some).map_err(|_| {
        bad(
            flag,
            format!("{value:?} is not a bind address"),
            "use host:port or :port, e.g. :8080 (empty or 0 disables it)",
        )
    })
}

/// Parses `500ms`, `15s`, `10m`, `1h`, or combinations like `1m30s` (Go durations).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let err = || format!("{value:?} is not a duration; use e.g. 15s, 500ms, 10m or 1h");
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().map_err(|_| err())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(err()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| err())?;
        rest = tail;
    }
    Ok(total)
}

/// Drops ARC's legacy `--github-*` flags (and a separate value after them), which configure the
/// legacy controllers only.
pub fn strip_legacy_github_flags(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        if arg.starts_with("--github-") {
            if !arg.contains('=') && iter.peek().is_some_and(|next| !next.starts_with("--")) {
                iter.next();
            }
            continue;
        }
        out.push(arg.clone());
    }
    out
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec![
            "manager",
            "--auto-scaling-runner-set-only",
            "--controller-namespace=arc-systems",
            "--listener-image=ghcr.io/arc-rs/controller:1",
        ];
        all.extend_from_slice(args);
        Cli::parse_from_args(all).expect("parses")
    }

    #[test]
    fn chart_arguments_parse_into_settings() {
        let s = cli(&[
            "--enable-leader-election",
            "--leader-election-id=arc-gha-rs-controller",
            "--auto-scaler-image-pull-secrets=a",
            "--auto-scaler-image-pull-secrets=b,c",
            "--log-level=info",
            "--log-format=json",
            "--watch-single-namespace=runners",
            "--runner-max-concurrent-reconciles=4",
            "--listener-metrics-addr=0",
            "--listener-metrics-endpoint=",
            "--metrics-addr=0",
            "--exclude-label-propagation-prefix=argocd.argoproj.io/",
            "--k8s-client-rate-limiter-qps=50",
            "--k8s-client-rate-limiter-burst=100",
            "--workqueue-rate-limiter=typed_rate_limiter",
            "--health-probe-bind-address=:8081",
        ])
        .settings()
        .expect("valid");
        assert_eq!(s.controller_namespace, "arc-systems");
        assert_eq!(s.listener_image_pull_secrets, ["a", "b", "c"]);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(
            (
                s.listener_log_level.as_str(),
                s.listener_log_format.as_str()
            ),
            ("info", "json")
        );
        assert_eq!(s.watch_namespace.as_deref(), Some("runners"));
        assert_eq!(s.runner_concurrency, 4);
        assert_eq!(
            s.runner_set_concurrency, 4,
            "set workers follow runner workers"
        );
        assert_eq!(s.listener_metrics_addr, "");
        assert_eq!(s.metrics_addr, None);
        assert_eq!(s.health_addr, Some("0.0.0.0:8081".parse().unwrap()));
        assert_eq!(s.qps, 50.0);
        assert_eq!(s.burst, 100);
        assert_eq!(s.requeue_limiter, RequeueLimiter::Typed);
        assert_eq!(
            s.leader_election.unwrap().lease_name,
            "arc-gha-rs-controller"
        );
    }

    #[test]
    fn defaults_match_arc() {
        let s = cli(&[]).settings().unwrap();
        assert_eq!(s.metrics_addr, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(s.listener_metrics_addr, ":8080");
        assert_eq!(s.listener_metrics_endpoint, "/metrics");
        assert_eq!(s.log_filter, "debug");
        assert_eq!((s.runner_concurrency, s.runner_set_concurrency), (2, 2));
        let own = cli(&["--runner-set-max-concurrent-reconciles=3"])
            .settings()
            .unwrap();
        assert_eq!(own.runner_set_concurrency, 3);
        assert_eq!((s.qps, s.burst), (20.0, 30));
        assert!(s.leader_election.is_none());
        assert_eq!(s.listener_entrypoint, "/ghalistener");
        assert_eq!(s.requeue_limiter, RequeueLimiter::Bucket);
    }

    #[test]
    fn numeric_levels_map_and_give_listeners_debug_text() {
        let s = cli(&["--log-level=1", "--log-format=json"])
            .settings()
            .unwrap();
        assert_eq!(s.log_filter, "warn");
        assert_eq!(
            (
                s.listener_log_level.as_str(),
                s.listener_log_format.as_str()
            ),
            ("debug", "text")
        );
    }

    #[test]
    fn legacy_flags_are_accepted() {
        let args = [
            "manager",
            "--auto-scaling-runner-set-only",
            "--controller-namespace=x",
            "--listener-image=i",
            "--github-token",
            "ghp_secret",
            "--github-app-id=1",
            "--docker-image=docker:dind",
            "--sync-period=10m",
            "--port=9443",
            "--pprof-addr=:6060",
        ];
        let s = Cli::parse_from_args(args).unwrap().settings().unwrap();
        assert_eq!(s.pprof_addr, Some("0.0.0.0:6060".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_the_flag_and_the_fix() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["--log-format=xml"], "--log-format", "text or json"),
            (&["--log-level=loud"], "--log-level", "debug, info"),
            (
                &["--workqueue-rate-limiter=fast"],
                "--workqueue-rate-limiter",
                "bucket_rate_limiter",
            ),
            (&["--metrics-addr=localhost"], "--metrics-addr", ":8080"),
            (
                &["--watch-single-namespace=Bad_NS"],
                "--watch-single-namespace",
                "DNS label",
            ),
            (
                &["--runner-max-concurrent-reconciles=0"],
                "--runner-max-concurrent-reconciles",
                "1 or more",
            ),
            (
                &["--k8s-client-rate-limiter-qps=0"],
                "--k8s-client-rate-limiter-qps",
                "above 0",
            ),
            (
                &["--update-strategy=yolo"],
                "--update-strategy",
                "replace or drain",
            ),
            (
                &[
                    "--enable-leader-election",
                    "--leader-election-renew-deadline=30s",
                ],
                "--leader-election-lease-duration",
                "lease duration >",
            ),
        ];
        for (args, flag, fix) in cases {
            let err = cli(args).settings().expect_err("rejected");
            assert_eq!(err.flag, *flag, "{args:?}");
            let text = err.to_string();
            assert!(text.starts_with(flag) && text.contains(fix), "{text}");
        }
    }

    #[test]
    fn scale_set_mode_and_env_are_required() {
        let err =
            Cli::parse_from_args(["manager", "--controller-namespace=x", "--listener-image=i"])
                .unwrap()
                .settings()
                .unwrap_err();
        assert_eq!(err.flag, "--auto-scaling-runner-set-only");
        let mut c = cli(&[]);
        c.listener_image = Some(" ".into());
        assert_eq!(
            c.settings().unwrap_err().flag,
            "CONTROLLER_MANAGER_CONTAINER_IMAGE"
        );
        c.controller_namespace = None;
        assert_eq!(
            c.settings().unwrap_err().flag,
            "CONTROLLER_MANAGER_POD_NAMESPACE"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }
}
