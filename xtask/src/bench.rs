//! `cargo xtask bench`: measures the whole system (control plane with an audit log, emulator,
//! node simulator, manager and listener binaries from the charts) and writes
//! docs/benchmarks.md with the machine, the commit, our figures (median of several runs), ARC's
//! published figures and our goals. Never run by tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actions_emulator::{JobPhase, StateSnapshot};
use anyhow::{Context, bail};
use serde_json::json;
use system::{ScaleSet, ScaleSetSpec, System, SystemOptions, Timeline, wait_for};
use testbed::{AuditEvent, AuditLog, AuditPolicy};

use crate::workspace_root;

mod apiserver_profile;
mod cpu;
mod series;

/// EphemeralRunner workers the bench gives the manager.
const RUNNER_WORKERS: u32 = 20;
const MIB: f64 = 1024.0 * 1024.0;
/// How long the Actions service holds a long poll without messages.
const GITHUB_LONG_POLL: Duration = Duration::from_secs(50);
/// How long kube-apiserver's CPU is profiled from the start of the idle-runner phase: shorter than
/// the phase with 1,000 runners.
const PROFILE_SECONDS: u64 = 10;

/// Flags of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Runs of the burst and turnover phases and of each job level of the scale series (the
    /// tables show medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Jobs queued at once in the burst phase (maxRunners is the same).
    #[arg(long, default_value_t = 200)]
    burst: usize,
    /// Jobs of the sustained-turnover phase.
    #[arg(long, default_value_t = 300)]
    turnover_jobs: usize,
    /// maxRunners of the sustained-turnover phase.
    #[arg(long, default_value_t = 50)]
    turnover_runners: usize,
    /// EphemeralRunners (minRunners) while the manager's memory is measured.
    #[arg(long, default_value_t = 1000)]
    idle_runners: usize,
    /// Total runners of each level of the scale series (idle runners over several sets).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 5000])]
    series_runners: Vec<usize>,
    /// Jobs queued at once over the sets of each set count of the scale series, before its idle
    /// levels (`0` skips them).
    #[arg(long, default_value_t = 200)]
    series_jobs: usize,
    /// Scale-set counts of the scale series; `0` alone skips the series.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 50])]
    series_sets: Vec<usize>,
    /// Run the manager and listener from debug builds (host processes) instead of release
    /// builds; the bench itself, with the emulator and the node simulator, is always optimised.
    #[arg(long)]
    debug: bool,
    /// The manager's client-side Kubernetes rate limit (`k8sClientRateLimiterQPS`). With four
    /// manager requests per runner started, it bounds how fast runners start
    /// (docs/architecture.md#benchmarks-and-the-machines-floor).
    #[arg(long, default_value_t = 200)]
    client_qps: u32,
    /// The manager's client-side Kubernetes burst (`k8sClientRateLimiterBurst`).
    #[arg(long, default_value_t = 400)]
    client_burst: u32,
    /// Where to write the report.
    #[arg(long, default_value = "docs/benchmarks.md")]
    output: PathBuf,
}

/// Runs the bench and writes the report, from an optimised build of xtask (see
/// [`run_optimised`]).
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 || args.burst == 0 || args.turnover_jobs < 10 || args.turnover_runners == 0 {
        bail!(
            "--runs, --burst and --turnover-runners must be at least 1 and --turnover-jobs at least 10; fix: drop the flags to use the defaults"
        );
    }
    if args.client_qps == 0 || args.client_burst == 0 {
        bail!(
            "--client-qps {} and --client-burst {} must be at least 1; fix: drop the flags to use the defaults (200 and 400)",
            args.client_qps,
            args.client_burst
        );
    }
    if cfg!(debug_assertions) {
        return run_optimised();
    }
    crate::controlplane::install()?;
    crate::helm::ensure_venv().context("preparing Helm for the charts")?;
    if system::runtime_from_env() == system::ContainerRuntime::HostProcesses {
        println!(
            "==> building manager and listener ({})",
            if args.debug { "debug" } else { "release" }
        );
        system::build_binaries(!args.debug)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let results = runtime.block_on(bench(args))?;
    let report = render(args, &results);
    let path = workspace_root().join(&args.output);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    println!("==> wrote {}", path.display());
    Ok(())
}

/// Runs this command again from a release build of xtask. The test bed's own parts (the
/// emulator, the node simulator and its port relays into the pods) run in this process, and the
/// bench shares the machine's cores with them: unoptimised, they spent four times the manager's
/// CPU while 1,000 runners started (23 CPU seconds against 5.6 optimised), and every figure
/// measured the test bed as much as the controllers.
fn run_optimised() -> anyhow::Result<()> {
    println!("==> building xtask (release): the emulator and the node simulator run inside it");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(workspace_root())
        .args(["run", "--release", "--quiet", "--package", "xtask", "--"])
        .args(std::env::args_os().skip(1))
        .status()
        .context("running cargo for the release build of xtask")?;
    if !status.success() {
        bail!("the bench failed ({status})");
    }
    Ok(())
}

/// One burst run.
#[derive(Debug, Default)]
struct Burst {
    all_pods: f64,
    acquired_to_pod: Vec<f64>,
    done_to_removed: Vec<f64>,
    /// The manager's requests by verb and resource, reads and writes.
    manager_requests: BTreeMap<String, u64>,
    listener_writes: u64,
    other_writes: u64,
    runners: usize,
    actions_calls: BTreeMap<String, u64>,
    /// CPU from queuing the burst to the last runner pod.
    creation_cpu: cpu::CpuUse,
    /// CPU from queuing the burst to every runner removed.
    cpu: cpu::CpuUse,
}

impl Burst {
    /// The manager's requests whose "verb resource" key satisfies `keep`.
    fn manager_count(&self, keep: impl Fn(&str) -> bool) -> u64 {
        self.manager_requests
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(_, v)| v)
            .sum()
    }

    fn manager_writes_total(&self) -> u64 {
        self.manager_count(|k| !is_read(k))
    }

    /// The manager's writes to each runner's own objects: its EphemeralRunner, JIT Secret and
    /// pod. The rest (the sets' and AutoscalingRunnerSets' status) is shared by the runners.
    fn manager_runner_writes(&self) -> u64 {
        self.manager_count(|k| !is_read(k) && is_runner_object(k))
    }

    fn manager_reads_total(&self) -> u64 {
        self.manager_count(is_read)
    }
}

/// Whether a "verb resource" key of the audit counts names one of a runner's own objects.
fn is_runner_object(key: &str) -> bool {
    let resource = key.split_once(' ').map_or(key, |(_, r)| r);
    let resource = resource.split_once('/').map_or(resource, |(r, _)| r);
    matches!(resource, "ephemeralrunners" | "secrets" | "pods")
}

/// Whether a "verb resource" key of the audit counts is a read.
fn is_read(key: &str) -> bool {
    key.starts_with("get ") || key.starts_with("list ")
}

#[derive(Debug, Default)]
struct Results {
    bursts: Vec<Burst>,
    turnovers: Vec<f64>,
    listener_rss: Option<u64>,
    manager_rss_idle: Option<u64>,
    manager_rss_loaded: Option<u64>,
    idle_runners_up: Option<f64>,
    /// CPU from applying the idle scale set to its last pod.
    idle_cpu: Option<cpu::CpuUse>,
    /// The manager's requests (reads and writes) over the same phase, from the audit log.
    idle_manager_requests: Option<u64>,
    /// kube-apiserver's CPU profile over the start of the same phase.
    idle_profile: Option<apiserver_profile::Profile>,
    idle_runners: usize,
    series: series::Series,
    /// Why the scale series stopped before its last level.
    series_stopped: Option<String>,
    jobs_per_burst: usize,
    load_start: String,
    load_end: String,
    kubernetes: String,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

async fn bench(args: &BenchArgs) -> anyhow::Result<Results> {
    let audit_log = AuditLog::new(AuditPolicy::WritesAndServiceAccountReads)?;
    let mut options = SystemOptions::new("bench");
    options.release = !args.debug;
    options.nodes = 4;
    // GitHub's: an idle listener polls, and patches its set, every 50 s. The tests' 5 s made 50
    // idle sets cost the API server 10 patches a second that no real cluster sees.
    options.emulator.long_poll_hold = GITHUB_LONG_POLL;
    let most_runners = args
        .series_runners
        .iter()
        .copied()
        .chain([args.idle_runners, args.burst])
        .max()
        .unwrap_or(args.burst);
    options.node_pods = u32::try_from(most_runners / 4 + 100).unwrap_or(500);
    options.controller_values = json!({
        "flags": {
            "k8sClientRateLimiterQPS": args.client_qps,
            "k8sClientRateLimiterBurst": args.client_burst,
            "runnerMaxConcurrentReconciles": RUNNER_WORKERS,
        },
        "metrics": {
            "controllerManagerAddr": format!(":{}", series::METRICS_PORT),
            "listenerAddr": "0",
            "listenerEndpoint": "",
        },
    });
    println!("==> starting the control plane with an audit log of writes");
    // The CPU profile of the idle phase (apiserver_profile) needs the API server's pprof endpoint.
    let sys = System::start_audited(&audit_log, &["--profiling=true"], options).await?;
    let kubernetes = sys
        .client()
        .apiserver_version()
        .await
        .context("reading the API server's version")?
        .git_version;
    let outcome = measure(&sys, args, &audit_log)
        .await
        .map(|results| Results {
            kubernetes,
            ..results
        });
    if outcome.is_err() {
        eprintln!("{}", sys.diagnostics().await);
    }
    sys.save_logs().await;
    println!("==> stopping everything");
    sys.shutdown().await;
    outcome
}

async fn measure(sys: &System, args: &BenchArgs, audit_log: &AuditLog) -> anyhow::Result<Results> {
    let mut results = Results {
        idle_runners: args.idle_runners,
        jobs_per_burst: args.burst,
        load_start: load_average(),
        ..Results::default()
    };
    for run in 1..=args.runs {
        println!("==> run {run}/{}: burst of {} jobs", args.runs, args.burst);
        let burst = burst(sys, args, run, audit_log, &mut results).await?;
        println!(
            "    all {} pods in {:.2} s; acquired→pod p95 {:.0} ms; done→removed p50 {:.0} ms; {:.1} manager writes/runner",
            burst.runners,
            burst.all_pods,
            percentile(&burst.acquired_to_pod, 95.0),
            percentile(&burst.done_to_removed, 50.0),
            ratio(burst.manager_writes_total(), burst.runners),
        );
        results.bursts.push(burst);
        println!(
            "==> run {run}/{}: {} jobs through {} runners",
            args.runs, args.turnover_jobs, args.turnover_runners
        );
        let rate = turnover(sys, args, run).await?;
        println!("    {rate:.1} runner turnovers/s");
        results.turnovers.push(rate);
    }
    println!(
        "==> manager memory with {} EphemeralRunners",
        args.idle_runners
    );
    idle(sys, args, audit_log, &mut results).await?;
    let set_counts: Vec<usize> = args
        .series_sets
        .iter()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    let levels = series::Levels {
        jobs: args.series_jobs,
        job_runs: args.runs,
        runners: &args.series_runners,
        set_counts: &set_counts,
    };
    if let Err(e) = series::run(sys, &levels, &mut results.series).await {
        println!("    the scale series stopped: {e:#}");
        results.series_stopped = Some(format!("{e:#}"));
    }
    results.load_end = load_average();
    Ok(results)
}

/// The manager's and listeners' processes, which run outside the bench's process tree when they
/// are containers.
async fn named_processes(sys: &System) -> Vec<(u32, &'static str)> {
    let managers = sys.manager_pids().await.into_iter().map(|p| (p, "manager"));
    let listeners = sys
        .listener_pids()
        .await
        .into_iter()
        .map(|p| (p, "listener"));
    managers.chain(listeners).collect()
}

fn rss(pids: &[u32]) -> Option<u64> {
    let values: Vec<u64> = pids.iter().filter_map(|p| system::rss_bytes(*p)).collect();
    values.into_iter().max()
}

fn millis(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds()
        .map_or(f64::NAN, |us| us as f64 / 1000.0)
}

async fn burst(
    sys: &System,
    args: &BenchArgs,
    run: usize,
    audit_log: &AuditLog,
    results: &mut Results,
) -> anyhow::Result<Burst> {
    let name = format!("burst-{run}");
    let set = sys
        .install_scale_set(
            ScaleSetSpec::new(&name).values(json!({ "maxRunners": args.burst, "minRunners": 0 })),
        )
        .await?;
    let timeline = Timeline::start(sys.client(), &set.namespace).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if results.listener_rss.is_none() {
        results.listener_rss = rss(&sys.listener_pids().await);
        results.manager_rss_idle = rss(&sys.manager_pids().await);
    }
    let audit_start = audit_log.len();
    sys.emulator().reset_counters();
    let processes = named_processes(sys).await;
    let clock = cpu::CpuClock::start(&processes);
    let queued_at = chrono::Utc::now();
    let jobs = sys.queue_jobs(&set, args.burst, Duration::from_secs(5));
    wait_for(Duration::from_secs(180), "every runner pod", || async {
        Ok(timeline.pods_created().len() >= args.burst)
    })
    .await?;
    let creation_cpu = clock.stop(&processes);
    sys.wait_jobs_completed(&jobs, Duration::from_secs(300))
        .await?;
    sys.wait_runners(&set, 0, Duration::from_secs(180)).await?;
    let cpu = clock.stop(&processes);
    let snap = sys.emulator().snapshot();
    let audit_end = audit_log.len();
    let pods = timeline.pods_created();
    let mut created: Vec<_> = pods.values().copied().collect();
    created.sort();
    let mut acquired: Vec<_> = jobs
        .iter()
        .filter_map(|id| snap.job(*id)?.acquired_at)
        .collect();
    acquired.sort();
    let all_pods = created
        .get(args.burst - 1)
        .map_or(f64::NAN, |t| millis(*t - queued_at) / 1000.0);
    let mut acquired_to_pod: Vec<f64> = acquired
        .iter()
        .zip(&created)
        .map(|(a, p)| millis(*p - *a))
        .collect();
    acquired_to_pod.sort_by(f64::total_cmp);
    let deleted = timeline.runners_deleted();
    let mut done_to_removed: Vec<f64> = jobs
        .iter()
        .filter_map(|id| {
            let j = snap.job(*id)?;
            let gone = deleted.get(j.runner_name.as_deref()?)?;
            Some(millis(*gone - j.completed_at?))
        })
        .collect();
    done_to_removed.sort_by(f64::total_cmp);
    let (manager_requests, listener_writes, other_writes) =
        audit_requests(&audit_log.events_between(audit_start, audit_end)?, sys);
    let burst = Burst {
        all_pods,
        acquired_to_pod,
        done_to_removed,
        manager_requests,
        listener_writes,
        other_writes,
        runners: timeline.runners_created().len(),
        actions_calls: counters(&snap),
        creation_cpu,
        cpu,
    };
    drop(timeline);
    sys.uninstall_scale_set(&set).await?;
    Ok(burst)
}

/// The simulated runners' own calls (`/_runner/…`), which a real runner makes to the service
/// and not the controllers; left out of the per-job count.
const RUNNER_SIDE: [&str; 5] = [
    "runner_connect",
    "runner_job",
    "runner_started",
    "runner_completed",
    "runner_disconnect",
];

fn counters(snap: &StateSnapshot) -> BTreeMap<String, u64> {
    snap.counters
        .iter()
        .filter(|(k, v)| **v > 0 && !RUNNER_SIDE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The manager's reads and writes by verb and resource, the listeners' writes, and everyone
/// else's writes (node simulator, scheduler, controller-manager).
fn audit_requests(events: &[AuditEvent], sys: &System) -> (BTreeMap<String, u64>, u64, u64) {
    let manager = format!(
        "system:serviceaccount:{}:{}",
        sys.controller_namespace(),
        sys.controller_service_account()
    );
    let listeners = format!("system:serviceaccount:{}:", sys.controller_namespace());
    let mut by = BTreeMap::new();
    let (mut listener, mut other) = (0, 0);
    for e in events {
        if e.user == manager {
            *by.entry(e.request()).or_insert(0) += 1;
        } else if matches!(e.verb.as_str(), "get" | "list") {
        } else if e.user.starts_with(&listeners) {
            listener += 1;
        } else {
            other += 1;
        }
    }
    (by, listener, other)
}

async fn turnover(sys: &System, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let name = format!("turn-{run}");
    let set = sys
        .install_scale_set(
            ScaleSetSpec::new(&name)
                .values(json!({ "maxRunners": args.turnover_runners, "minRunners": 0 })),
        )
        .await?;
    let jobs = sys.queue_jobs(&set, args.turnover_jobs, Duration::from_millis(100));
    sys.wait_jobs_completed(&jobs, Duration::from_secs(300))
        .await?;
    let snap = sys.emulator().snapshot();
    let mut done: Vec<_> = jobs
        .iter()
        .filter_map(|id| snap.job(*id))
        .filter(|j| j.phase == JobPhase::Completed)
        .filter_map(|j| j.completed_at)
        .collect();
    done.sort();
    let n = done.len();
    let (lo, hi) = (n / 10, n * 9 / 10);
    let rate = if hi > lo {
        (hi - lo) as f64 / (millis(done[hi - 1] - done[lo]) / 1000.0)
    } else {
        f64::NAN
    };
    sys.wait_runners(&set, 0, Duration::from_secs(180)).await?;
    sys.uninstall_scale_set(&set).await?;
    Ok(rate)
}

async fn idle(
    sys: &System,
    args: &BenchArgs,
    audit_log: &AuditLog,
    results: &mut Results,
) -> anyhow::Result<()> {
    let n = args.idle_runners;
    sys.emulator().reset_counters();
    let processes = named_processes(sys).await;
    let clock = cpu::CpuClock::start(&processes);
    let timeline = Timeline::start(sys.client(), sys.runner_namespace()).await?;
    let profile = tokio::spawn(apiserver_profile::capture(sys.client(), PROFILE_SECONDS));
    let audit_start = audit_log.len();
    let started = Instant::now();
    let set: ScaleSet = sys
        .install_scale_set(
            ScaleSetSpec::new("idle").values(json!({ "maxRunners": n, "minRunners": n })),
        )
        .await?;
    wait_for(
        Duration::from_secs(300),
        &format!("{n} runner pods"),
        || async { Ok(timeline.pods_present() >= n) },
    )
    .await?;
    results.idle_runners_up = Some(started.elapsed().as_secs_f64());
    results.idle_cpu = Some(clock.stop(&named_processes(sys).await));
    let events = audit_log.events_between(audit_start, audit_log.len())?;
    let (manager_requests, _, _) = audit_requests(&events, sys);
    results.idle_manager_requests = Some(manager_requests.values().sum());
    match profile.await? {
        Ok(p) => results.idle_profile = Some(p),
        Err(e) => println!("    no CPU profile of kube-apiserver: {e:#}"),
    }
    let mut refused: std::collections::BTreeMap<(String, u16), u64> = Default::default();
    for call in sys
        .emulator()
        .calls()
        .into_iter()
        .filter(|c| c.status >= 400)
    {
        *refused.entry((call.endpoint, call.status)).or_default() += 1;
    }
    println!("    Actions calls refused while the idle runners started: {refused:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        if let Some(v) = rss(&sys.manager_pids().await) {
            samples.push(v);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    results.manager_rss_loaded = samples.into_iter().max();
    println!(
        "    {n} runners up in {:.1} s; manager RSS {}",
        results.idle_runners_up.unwrap_or(f64::NAN),
        results
            .manager_rss_loaded
            .map_or("?".to_owned(), |b| format!("{:.1} MiB", b as f64 / MIB))
    );
    sys.uninstall_scale_set_within(&set, Duration::from_secs(300))
        .await
}

fn list(values: &[usize]) -> String {
    let text: Vec<String> = values.iter().map(usize::to_string).collect();
    text.join(", ")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// What bounds the idle phase from below: the manager's requests at its client budget (after
/// the burst the budget allows at once, `QPS` a second) and the test bed's CPU over the cores.
fn idle_floors(args: &BenchArgs, r: &Results) -> String {
    let mut floors = Vec::new();
    if let Some(requests) = r.idle_manager_requests {
        let budget = requests.saturating_sub(u64::from(args.client_burst)) as f64
            / f64::from(args.client_qps);
        floors.push(format!(
            "client-budget floor {budget:.1} s ({requests} manager requests: ({requests} − {}) / {} a second)",
            args.client_burst, args.client_qps
        ));
    }
    if let Some(cpu) = &r.idle_cpu {
        floors.push(format!("CPU floor {:.1} s", cpu.floor()));
    }
    if floors.is_empty() {
        String::new()
    } else {
        format!("; {}", floors.join(", "))
    }
}

/// The median over the burst runs of `figure`.
fn burst_median(r: &Results, figure: impl Fn(&Burst) -> f64) -> f64 {
    median(r.bursts.iter().map(figure).collect())
}

fn ratio(a: u64, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?", |(_, v)| v.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "?".to_owned());
    format!(
        "{cores} cores ({model}), {mem} RAM, Linux {}",
        command_line("uname", &["-r"])
    )
}

fn render(args: &BenchArgs, r: &Results) -> String {
    let runs = r.bursts.len();
    let all_pods = burst_median(r, |b| b.all_pods);
    let p = |q: f64| burst_median(r, |b| percentile(&b.acquired_to_pod, q));
    let (p50, p95, max) = (p(50.0), p(95.0), p(100.0));
    let turn = median(r.turnovers.clone());
    let creation_floor = burst_median(r, |b| b.creation_cpu.floor());
    let creation_busy = burst_median(r, |b| b.creation_cpu.busy_percent());
    let removed = burst_median(r, |b| percentile(&b.done_to_removed, 50.0));
    let writes = burst_median(r, |b| ratio(b.manager_writes_total(), b.runners));
    let runner_writes = burst_median(r, |b| ratio(b.manager_runner_writes(), b.runners));
    let shared_writes = burst_median(r, |b| {
        ratio(
            b.manager_writes_total() - b.manager_runner_writes(),
            b.runners,
        )
    });
    let reads = burst_median(r, |b| ratio(b.manager_reads_total(), b.runners));
    let listener_writes = burst_median(r, |b| ratio(b.listener_writes, b.runners));
    let other_writes = burst_median(r, |b| ratio(b.other_writes, b.runners));
    let calls = burst_median(r, |b| {
        ratio(b.actions_calls.values().sum(), r.jobs_per_burst)
    });
    let mib = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / MIB);
    let manager = mib(r.manager_rss_loaded);
    let listener = mib(r.listener_rss);
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !command_line("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `cargo xtask bench` (xtask/src/bench.rs); do not edit by hand. Re-run it to refresh.\n"
    );
    let _ = writeln!(
        out,
        "- Date: {}",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    let _ = writeln!(
        out,
        "- Commit: `{commit}`{}",
        if dirty {
            " (with uncommitted changes in the work tree)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(
        out,
        "- Load average at the start and the end: {} / {} (the machine is shared; other work runs beside the bench)",
        r.load_start, r.load_end
    );
    let _ = writeln!(
        out,
        "- Set-up: Kubernetes {} control plane (etcd, kube-apiserver with an audit log of writes and of ServiceAccounts' reads, controller-manager, scheduler) on loopback, the Actions-service emulator over HTTP (long polls held {} s without messages, as GitHub's) and the node simulator with 4 Nodes (both in the bench's own process, a release build); both charts rendered with real Helm and applied; the manager and listener {} under the charts' ServiceAccounts. Manager flags from the chart: `k8sClientRateLimiterQPS: {}`, `k8sClientRateLimiterBurst: {}` (`--client-qps`, `--client-burst`), `runnerMaxConcurrentReconciles: {RUNNER_WORKERS}`, and the manager's metrics on port {}. Everything shares the machine's cores.",
        r.kubernetes,
        GITHUB_LONG_POLL.as_secs(),
        match system::runtime_from_env() {
            system::ContainerRuntime::Podman =>
                "run from the images (static builds of the `image` profile, `cargo xtask images`) in podman, each pod in its own network namespace, by the node simulator".to_owned(),
            system::ContainerRuntime::HostProcesses => format!(
                "are {} builds run as host processes by the node simulator",
                if args.debug { "debug" } else { "release" }
            ),
        },
        args.client_qps,
        args.client_burst,
        series::METRICS_PORT
    );
    let _ = writeln!(
        out,
        "- Runs: {runs} (medians below); burst {} jobs of 5 s (maxRunners {}), turnover {} jobs of 100 ms through maxRunners {}, memory with minRunners {}; scale series of {} jobs ({runs} runs each), then {} idle runners, over {} scale sets (`--series-jobs`, `--series-runners`, `--series-sets`).\n",
        args.burst,
        args.burst,
        args.turnover_jobs,
        args.turnover_runners,
        r.idle_runners,
        args.series_jobs,
        list(&args.series_runners),
        list(&args.series_sets),
    );
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "| Figure | arc-rs | Goal | Goal met? | ARC, published |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| Burst of {} queued jobs → all runner pods created | {all_pods:.2} s | ≤ 5 s | {} | 0→30 runners \"took 15s to create\", 0→100 and 0→400 much slower (ARC#3276, v0.8.2) |",
        args.burst,
        met(all_pods <= 5.0)
    );
    let created: Vec<String> = r.bursts.iter().map(|b| b.runners.to_string()).collect();
    let most_created = r.bursts.iter().map(|b| b.runners).max().unwrap_or_default();
    let _ = writeln!(
        out,
        "| Runners created for a burst of {} jobs (minRunners 0) | {most_created} at most (runs: {}) | {}, one per job | {} | not published |",
        args.burst,
        created.join(", "),
        args.burst,
        met(most_created <= args.burst)
    );
    let _ = writeln!(
        out,
        "| Job acquired → pod created | p50 {p50:.0} ms, p95 {p95:.0} ms, max {max:.0} ms | p95 ≤ 1 s | {}; the burst's CPU floor to the last pod {creation_floor:.1} s, cores {creation_busy:.0} % busy | single job on an idle cluster, listener → pod 20–30 s (ARC#3534, v0.9.x); queue → runner online 30–90 s typical (ARC#3704, #3953) |",
        met(p95 <= 1000.0)
    );
    let _ = writeln!(
        out,
        "| Sustained runner turnovers | {turn:.1} /s | ≥ 25 /s | {} | 2.81 → 3.26 jobs completed/s after raising concurrency, at QPS 20 / burst 30 (ARC#4670) |",
        met(turn >= 25.0)
    );
    let _ = writeln!(
        out,
        "| Job done → runner removed | p50 {removed:.0} ms | p50 ≤ 1 s | {} | p50 14,291 → 10,842 ms, p95 21,354 → 17,596 ms (ARC#4670) |",
        met(removed <= 1000.0)
    );
    let _ = writeln!(
        out,
        "| Kubernetes API writes per runner lifecycle (manager) | {writes:.2}: {runner_writes:.2} to the runner's own EphemeralRunner, Secret and pod, {shared_writes:.2} shared (the sets' and AutoscalingRunnerSets' status) | ≤ 6 on the runner's own objects | {} | \"roughly ten API calls per runner\" (ARC#4673) |",
        met(runner_writes <= 6.0)
    );
    let _ = writeln!(
        out,
        "| Kubernetes API reads per runner lifecycle (manager; watches left out) | {reads:.1} | — | — | not published; ARC reads from its informer caches |"
    );
    let _ = writeln!(
        out,
        "| Actions API calls per job (manager + listener; the runners' own calls left out) | {calls:.1} | — | — | not published; one JIT call per runner is the floor |"
    );
    let _ = writeln!(
        out,
        "| Manager RSS with {} EphemeralRunners | {manager:.1} MiB | ≤ 40 MiB | {} | not published (the chart sets `resources: {{}}`) |",
        r.idle_runners,
        met(manager <= 40.0)
    );
    let idle_up = r.idle_runners_up.unwrap_or(f64::NAN);
    let _ = writeln!(
        out,
        "| {} idle runners (minRunners {}) all up | {idle_up:.1} s | ≤ 15 s | {}{} | not published |",
        r.idle_runners,
        r.idle_runners,
        met(idle_up <= 15.0),
        idle_floors(args, r)
    );
    let _ = writeln!(
        out,
        "| Listener RSS when idle | {listener:.1} MiB | ≤ 10 MiB | {} | not published |",
        met(listener <= 10.0)
    );
    let _ = writeln!(out, "\n## Details\n");
    let _ = writeln!(
        out,
        "| Run | all pods (s) | acquired→pod p50 / p95 / max (ms) | done→removed p50 / p95 (ms) | turnovers/s | manager writes/runner | manager reads/runner | listener writes/runner | other writes/runner | Actions calls/job |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (i, b) in r.bursts.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            i + 1,
            b.all_pods,
            percentile(&b.acquired_to_pod, 50.0),
            percentile(&b.acquired_to_pod, 95.0),
            percentile(&b.acquired_to_pod, 100.0),
            percentile(&b.done_to_removed, 50.0),
            percentile(&b.done_to_removed, 95.0),
            r.turnovers.get(i).copied().unwrap_or(f64::NAN),
            ratio(b.manager_writes_total(), b.runners),
            ratio(b.manager_reads_total(), b.runners),
            ratio(b.listener_writes, b.runners),
            ratio(b.other_writes, b.runners),
            ratio(b.actions_calls.values().sum(), r.jobs_per_burst),
        );
    }
    if let Some(b) = r.bursts.first() {
        let _ = writeln!(
            out,
            "\nManager requests in run 1 by verb and resource ({} runners): {}.\n",
            b.runners,
            b.manager_requests
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            out,
            "Actions API calls in run 1 by endpoint ({} jobs): {}.\n",
            r.jobs_per_burst,
            b.actions_calls
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        out,
        "Other writes per runner: {other_writes:.1} (node simulator as kubelet: pod status; scheduler: bindings; controller-manager: events and garbage collection). Listener writes per runner: {listener_writes:.2}.\n"
    );
    let _ = writeln!(
        out,
        "Memory: manager RSS {:.1} MiB with one idle scale set, {manager:.1} MiB with {} EphemeralRunners (their pods up {:.1} s after the scale set was applied); listener {listener:.1} MiB idle.\n",
        mib(r.manager_rss_idle),
        r.idle_runners,
        r.idle_runners_up.unwrap_or(f64::NAN)
    );
    cpu_section(r, &mut out);
    if let Some(p) = &r.idle_profile {
        let phase = format!("{} idle runners up", r.idle_runners);
        apiserver_profile::render(&phase, p, &mut out);
    }
    series::render(&r.series, r.series_stopped.as_deref(), &mut out);
    let _ = writeln!(out, "## How each figure is measured\n");
    let _ = writeln!(
        out,
        "- *All runner pods created*: from queuing the burst in the emulator to the watch event of the last runner pod (pods are seen by a watch, not by the one-second `creationTimestamp`)."
    );
    let _ = writeln!(
        out,
        "- *Job acquired → pod created*: the k-th job acquisition (emulator timestamp) paired with the k-th runner pod creation; jobs are not bound to pods until a runner picks one up, so this is the scale set's provisioning delay per job."
    );
    let _ = writeln!(
        out,
        "- *Turnovers*: jobs completed per second between the 10th and 90th percentile of completion times, each job on a fresh ephemeral runner (created, registered, run, removed)."
    );
    let _ = writeln!(
        out,
        "- *Done → removed*: the emulator's completion time of a job to the watch event deleting the EphemeralRunner that ran it."
    );
    let _ = writeln!(
        out,
        "- *Kubernetes writes and reads*: create/update/patch/delete (writes) and get/list (reads) events (stage ResponseComplete) in the API server's audit log, by the manager's ServiceAccount, during the burst (from queuing to every runner removed), divided by the runners created. Watches are long-running requests and left out; the manager's client spends its rate limit (QPS, burst) on reads and writes alike."
    );
    let _ = writeln!(
        out,
        "- *Actions API calls*: the emulator's counters over the same window (the listener's long polls included, the simulated runners' `/_runner/…` calls left out) divided by the jobs."
    );
    let _ = writeln!(
        out,
        "- *RSS*: `VmRSS` of the manager and listener processes (their containers' main processes, found through podman; as host processes, by executable and by the node simulator's work directory in their environment)."
    );
    images_section(&mut out);
    out
}

/// The sizes of the images `cargo xtask images` saved (the bench runs them), goal beside each.
/// Where the CPU went in each burst and while the idle runners started: whether the machine's
/// cores or a process's waiting bound the phase.
fn cpu_section(r: &Results, out: &mut String) {
    let _ = writeln!(out, "## Where the CPU went\n");
    let _ = writeln!(
        out,
        "CPU seconds of each process of the test bed over the phase, and how busy the machine's cores were (every process on the machine counted, the bench's or not). The *CPU floor* is the test bed's CPU seconds over the cores: the least wall time the phase could take on this machine, whatever the controllers did, unless the control plane and the simulators cost less. A phase whose wall time is near its floor was bound by the cores.\n"
    );
    let _ = writeln!(
        out,
        "| Phase | wall (s) | cores busy | test bed CPU (s) | CPU floor (s) | CPU seconds by process, largest first |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let phases = r
        .bursts
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            [
                (
                    format!("burst run {}: queued → last pod", i + 1),
                    &b.creation_cpu,
                ),
                (
                    format!("burst run {}: queued → every runner removed", i + 1),
                    &b.cpu,
                ),
            ]
        })
        .chain(
            r.idle_cpu
                .iter()
                .map(|c| (format!("{} idle runners up", r.idle_runners), c)),
        );
    for (phase, c) in phases {
        let _ = writeln!(
            out,
            "| {phase} | {:.1} | {:.0} % of {} | {:.1} | {:.1} | {} |",
            c.wall,
            c.busy_percent(),
            c.cores,
            c.test_bed(),
            c.floor(),
            c.top(8)
        );
    }
    let _ = writeln!(out);
}

fn images_section(out: &mut String) {
    let _ = writeln!(out, "\n## Images\n");
    let _ = writeln!(
        out,
        "| Image | Uncompressed | Compressed (gzip layers) | Goal |\n|---|---|---|---|"
    );
    for kind in system::images::Kind::ALL {
        let archive = system::images::archive_path(kind);
        match system::images::describe(&archive) {
            Ok(info) => {
                let goal = match kind {
                    system::images::Kind::Manager => "≤ 20 MB uncompressed",
                    system::images::Kind::Listener => "-",
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {goal} |",
                    info.name,
                    system::images::human_size(info.uncompressed_bytes),
                    system::images::human_size(info.compressed_bytes),
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {} | not built: {e:#} | | |", archive.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_writes_leave_out_the_shared_status_writes() {
        let burst = Burst {
            manager_requests: [
                ("create ephemeralrunners", 2),
                ("patch ephemeralrunners/status", 2),
                ("create secrets", 2),
                ("delete pods", 2),
                ("patch ephemeralrunnersets/status", 1),
                ("patch autoscalingrunnersets/status", 1),
                ("get secrets", 1),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            ..Burst::default()
        };
        assert_eq!(burst.manager_runner_writes(), 8);
        assert_eq!(burst.manager_writes_total(), 10);
    }
}
