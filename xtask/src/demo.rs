//! `cargo xtask demo`: the whole system on one machine. Builds the manager and listener,
//! starts a control plane (with scheduler), the Actions-service emulator and the node
//! simulator, installs the controller chart (CRDs, RBAC, the manager Deployment, whose pod the
//! node simulator runs as a process) and the scale-set chart, queues a stream of jobs in bursts
//! and quiet periods, shows live progress, prints a summary, and stops everything.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use actions_emulator::{Emulator, EmulatorConfig, JobPhase, JobResult, JobSpec, StateSnapshot};
use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use nodesim::{ContainerMatcher, NodeSimulator, ProcessRule, SimulatorConfig};
use rand::{Rng, SeedableRng};
use serde_json::json;
use system::{Chart, Cluster, wait_for};
use testbed::{ControlPlane, ControlPlaneOptions};

use crate::helm;

const CONTROLLER_NAMESPACE: &str = "arc-systems";
const RUNNER_NAMESPACE: &str = "arc-runners";
const CONTROLLER_RELEASE: &str = "arc";
const SCALE_SET: &str = "arc-demo";
const ORG: &str = "octo-org";
/// The scale set's labels besides its name; jobs ask for subsets of these.
const EXTRA_LABELS: [&str; 2] = ["linux", "x64"];
const FIELD_MANAGER: &str = "xtask-demo";
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);

/// Flags of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How many jobs to queue.
    #[arg(long, default_value_t = 40)]
    jobs: usize,
    /// Average jobs per second while queuing (bursts run at 4x, quiet periods queue none).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Stop queuing after this many seconds even if fewer jobs were queued.
    #[arg(long)]
    duration: Option<u64>,
    /// How long each job runs, in seconds: MIN-MAX (uniform).
    #[arg(long, default_value = "3-12", value_parser = parse_range)]
    job_seconds: (u64, u64),
    /// minRunners of the scale set.
    #[arg(long, default_value_t = 0)]
    min_runners: u32,
    /// maxRunners of the scale set.
    #[arg(long, default_value_t = 10)]
    max_runners: u32,
    /// How many simulated Nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Seed of the job stream (same seed, same stream).
    #[arg(long, default_value_t = 9)]
    seed: u64,
    /// Build and run release binaries.
    #[arg(long)]
    release: bool,
    /// Leave everything up at the end, print the kubeconfig, stop on Ctrl-C.
    #[arg(long)]
    keep: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let parse = |v: &str| {
        v.trim().parse::<u64>().map_err(|_| {
            format!("--job-seconds {s:?}: {v:?} is not a whole number of seconds; fix: e.g. --job-seconds 3-12")
        })
    };
    let (min, max) = (parse(a)?, parse(b)?);
    if min > max {
        return Err(format!(
            "--job-seconds {s:?}: MIN is above MAX; fix: e.g. --job-seconds 3-12"
        ));
    }
    Ok((min, max))
}

impl DemoArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.jobs == 0 {
            bail!("--jobs 0: nothing to do; fix: --jobs 40");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!(
                "--rate {}: must be a positive number of jobs per second; fix: --rate 1.5",
                self.rate
            );
        }
        if self.max_runners == 0 || self.min_runners > self.max_runners {
            bail!(
                "--min-runners {} --max-runners {}: need 0 <= min <= max and max >= 1; fix: --min-runners 0 --max-runners 10",
                self.min_runners,
                self.max_runners
            );
        }
        if self.nodes == 0 {
            bail!("--nodes 0: runner pods need somewhere to run; fix: --nodes 2");
        }
        Ok(())
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    args.validate()?;
    // The images, or with ARC_TEST_HOST_PROCESSES=1 the binaries run as host processes.
    let binaries = match system::runtime_from_env() {
        system::ContainerRuntime::Podman => {
            println!("==> building the manager and listener images (cargo xtask images)");
            system::build_images_once()?;
            None
        }
        system::ContainerRuntime::HostProcesses => {
            println!(
                "==> building manager and listener ({})",
                if args.release { "release" } else { "debug" }
            );
            Some(system::build_binaries(args.release)?)
        }
    };
    crate::controlplane::install()?;
    helm::ensure_venv().context("preparing Helm for the charts")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(demo(args, binaries.as_ref()))
}

async fn demo(args: &DemoArgs, binaries: Option<&system::Binaries>) -> anyhow::Result<()> {
    let begin = Instant::now();
    println!(
        "==> starting the control plane (etcd, kube-apiserver, controller-manager, scheduler)"
    );
    let cp = ControlPlane::start(ControlPlaneOptions {
        scheduling: true,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    println!("==> Actions-service emulator at {} (org {ORG})", emu.url());
    let mut sim = SimulatorConfig::with_nodes("demo-node", args.nodes);
    sim.runtime = if binaries.is_some() {
        system::ContainerRuntime::HostProcesses
    } else {
        system::ContainerRuntime::Podman
    };
    sim.taint = false;
    sim.listener_binary = binaries.map(|b| b.listener.clone());
    sim.process_rules = vec![ProcessRule {
        matcher: ContainerMatcher {
            names: vec!["manager".to_owned()],
            image_contains: Vec::new(),
        },
        binary: binaries.map(|b| b.manager.clone()),
        env: vec![("RUST_LOG".to_owned(), "info".to_owned())],
    }];
    sim.workdir = Some(cp.workdir()?.join("nodes"));
    let sim = NodeSimulator::start(cp.config().clone(), sim).await?;
    sim.forward_host_port(emu.addr().port());
    println!("==> node simulator running {}", sim.node_names().join(", "));

    let work = async {
        install(&cp, &emu, args).await?;
        let scale_set_id = wait_for_listener(&cp, &emu, &sim).await?;
        println!(
            "==> scale set {SCALE_SET} (id {scale_set_id}) is listening; queuing {} jobs",
            args.jobs
        );
        let report = run_jobs(&cp, &emu, args).await?;
        report.print(&emu.snapshot());
        Ok::<_, anyhow::Error>(())
    };
    let outcome = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let interrupted = outcome
        .as_ref()
        .is_err_and(|e| e.to_string() == "interrupted");
    if let Err(e) = &outcome
        && !interrupted
    {
        eprintln!("error: {e:#}");
        if let Some(log) = manager_log(&cp, &sim).await {
            eprintln!("the end of the manager's log:\n{}", tail(&log, 30));
        }
    }
    if args.keep && !interrupted {
        println!();
        println!("everything is still running (Ctrl-C stops it):");
        println!("  export KUBECONFIG={}", cp.kubeconfig_path().display());
        println!(
            "  emulator: {} (state: curl {}/_emulator/state)",
            emu.url(),
            emu.url()
        );
        println!(
            "  queue a job: curl -X POST {}/_emulator/jobs -d '{{\"labels\":[\"{SCALE_SET}\"],\"durationMs\":5000}}'",
            emu.url()
        );
        println!("  pod logs: {}", sim.workdir().display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    } else if outcome.is_ok() {
        println!("==> removing the scale set");
        if let Err(e) = remove_scale_set(&cp, &emu).await {
            eprintln!("warning: {e:#}");
        }
    }
    println!("==> stopping everything");
    sim.shutdown().await;
    drop(emu);
    tokio::task::spawn_blocking(move || cp.stop())
        .await
        .context("stopping the control plane")?;
    println!(
        "==> done in {:.0?}; nothing is left running",
        begin.elapsed()
    );
    outcome
}

/// Renders a chart with real Helm and applies what it renders (CRDs first, then the rest) with
/// server-side apply.
async fn install(cp: &ControlPlane, emu: &Emulator, args: &DemoArgs) -> anyhow::Result<()> {
    let client = cp.client();
    for ns in [CONTROLLER_NAMESPACE, RUNNER_NAMESPACE] {
        let object = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        Api::<Namespace>::all(client.clone())
            .patch(
                ns,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
    }
    println!("==> installing the CRDs and the controller (chart gha-runner-scale-set-controller)");
    system::install_crds(&client).await?;
    let cluster = Cluster {
        kubeconfig: cp.kubeconfig_path().to_path_buf(),
        version: client
            .apiserver_version()
            .await
            .context("reading the API server's version")?
            .git_version,
    };
    let objects = system::render(
        Chart::Controller,
        CONTROLLER_RELEASE,
        CONTROLLER_NAMESPACE,
        &json!({ "flags": { "logLevel": "info" } }),
        Some(&cluster),
    )?;
    system::apply(&client, &objects).await?;
    wait_for(SETUP_TIMEOUT, "the manager pod to run", || async {
        let pods: Api<Pod> = Api::namespaced(client.clone(), CONTROLLER_NAMESPACE);
        let list = pods.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
    })
    .await?;

    println!("==> installing the scale set {SCALE_SET} (chart gha-runner-scale-set)");
    let values = json!({
        "githubConfigUrl": emu.org_url(ORG),
        "githubConfigSecret": { "github_token": secrecy::ExposeSecret::expose_secret(&emu.pat()) },
        "runnerScaleSetName": SCALE_SET,
        "scaleSetLabels": EXTRA_LABELS,
        "minRunners": args.min_runners,
        "maxRunners": args.max_runners,
        "controllerServiceAccount": {
            "namespace": CONTROLLER_NAMESPACE,
            "name": format!("{CONTROLLER_RELEASE}-gha-rs-controller"),
        },
    });
    let objects = system::render(
        Chart::ScaleSet,
        SCALE_SET,
        RUNNER_NAMESPACE,
        &values,
        Some(&cluster),
    )?;
    system::apply(&client, &objects).await?;
    Ok(())
}

async fn wait_for_listener(
    cp: &ControlPlane,
    emu: &Emulator,
    sim: &NodeSimulator,
) -> anyhow::Result<i64> {
    let waited = emu
        .wait_until(SETUP_TIMEOUT, |s| {
            s.scale_set_by_name(SCALE_SET)
                .is_some_and(|set| s.active_session(set.id).is_some())
        })
        .await;
    match waited {
        Ok(snap) => snap
            .scale_set_by_name(SCALE_SET)
            .map(|s| s.id)
            .context("the scale set vanished"),
        Err(e) => {
            if let Some(log) = manager_log(cp, sim).await {
                eprintln!("the end of the manager's log:\n{}", tail(&log, 30));
            }
            Err(e.context("the manager and listener did not bring the scale set up"))
        }
    }
}

async fn manager_log(cp: &ControlPlane, sim: &NodeSimulator) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(cp.try_client().ok()?, CONTROLLER_NAMESPACE);
    let list = pods.list(&ListParams::default()).await.ok()?;
    let name = list.items.first()?.metadata.name.clone()?;
    sim.container_log(CONTROLLER_NAMESPACE, &name, "manager")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One queued job of the stream.
struct Planned {
    at: Duration,
    spec: JobSpec,
}

/// The job stream: cycles of a burst (2 s at 4x the rate), a quiet period (5 s) and a steady
/// stretch (5 s at 0.8x), with exponential gaps, so the average is the rate.
fn plan(args: &DemoArgs) -> Vec<Planned> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let phases = [(2.0, 4.0), (5.0, 0.0), (5.0, 0.8)];
    let label_sets: [&[&str]; 4] = [
        &[SCALE_SET],
        &["linux", "x64"],
        &[SCALE_SET, "linux"],
        &["x64"],
    ];
    let limit = args.duration.map(|d| d as f64);
    let mut out = Vec::new();
    let mut t = 0.0_f64;
    'outer: loop {
        for (length, factor) in phases {
            let end = t + length;
            if factor > 0.0 {
                let rate = args.rate * factor;
                loop {
                    let u: f64 = rng.random_range(f64::EPSILON..1.0);
                    t += -u.ln() / rate;
                    if t >= end {
                        break;
                    }
                    if out.len() >= args.jobs || limit.is_some_and(|l| t > l) {
                        break 'outer;
                    }
                    let (lo, hi) = args.job_seconds;
                    let secs = rng.random_range(lo..=hi);
                    let labels = label_sets[rng.random_range(0..label_sets.len())];
                    out.push(Planned {
                        at: Duration::from_secs_f64(t),
                        spec: JobSpec {
                            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                            duration: Duration::from_secs(secs),
                            result: if rng.random_bool(0.1) {
                                JobResult::Failed
                            } else {
                                JobResult::Succeeded
                            },
                            display_name: format!("job-{}", out.len() + 1),
                            ..JobSpec::default()
                        },
                    });
                }
            }
            t = end;
            if limit.is_some_and(|l| t > l) {
                break 'outer;
            }
        }
    }
    out
}

/// What the demo measured.
struct Report {
    ids: Vec<i64>,
    elapsed: Duration,
    peak_runners: usize,
    pods: SharedTracker,
    settled: bool,
}

/// When each runner pod appeared, ran, finished, was asked to go, and went (from a watch).
#[derive(Default)]
struct PodTracker {
    pods: std::collections::HashMap<String, PodTimes>,
    seen: usize,
    /// Pod created → running (scheduler and node), seconds.
    to_running: Vec<f64>,
    /// Runner finished → deletion requested (the controllers' share), seconds.
    to_deletion: Vec<f64>,
    /// Deletion requested → pod gone (the node's share), seconds.
    to_removal: Vec<f64>,
}

#[derive(Default)]
struct PodTimes {
    created: Option<Instant>,
    running: Option<Instant>,
    finished: Option<Instant>,
    deleting: Option<Instant>,
    phase: String,
}

/// Runner pods by state: pending, running, finished (terminal, not yet removed).
#[derive(Default)]
struct PodCounts {
    pending: usize,
    running: usize,
    finished: usize,
}

impl PodTracker {
    fn apply(&mut self, pod: &Pod) {
        let now = Instant::now();
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if !self.pods.contains_key(&uid) {
            self.seen += 1;
        }
        let times = self.pods.entry(uid).or_default();
        times.created.get_or_insert(now);
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        match phase.as_str() {
            "Running" if times.running.is_none() => {
                times.running = Some(now);
                if let Some(c) = times.created {
                    self.to_running.push(now.duration_since(c).as_secs_f64());
                }
            }
            "Succeeded" | "Failed" => {
                times.finished.get_or_insert(now);
            }
            _ => {}
        }
        times.phase = phase;
        if pod.metadata.deletion_timestamp.is_some() && times.deleting.is_none() {
            times.deleting = Some(now);
            if let Some(f) = times.finished {
                self.to_deletion.push(now.duration_since(f).as_secs_f64());
            }
        }
    }

    fn delete(&mut self, pod: &Pod) {
        let now = Instant::now();
        if let Some(t) = pod.metadata.uid.as_ref().and_then(|u| self.pods.remove(u))
            && let Some(d) = t.deleting
        {
            self.to_removal.push(now.duration_since(d).as_secs_f64());
        }
    }

    fn counts(&self) -> PodCounts {
        let mut c = PodCounts::default();
        for t in self.pods.values() {
            match t.phase.as_str() {
                "Succeeded" | "Failed" => c.finished += 1,
                "Running" => c.running += 1,
                _ => c.pending += 1,
            }
        }
        c
    }

    fn present(&self) -> usize {
        self.pods.len()
    }
}

type SharedTracker = std::sync::Arc<std::sync::Mutex<PodTracker>>;

fn lock(t: &SharedTracker) -> std::sync::MutexGuard<'_, PodTracker> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Watches the runner pods and feeds the tracker until aborted.
async fn track_pods(pods: Api<Pod>, tracker: SharedTracker) {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let config = watcher::Config::default().labels("actions-ephemeral-runner");
    let mut stream = watcher(pods, config).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => lock(&tracker).apply(&p),
            Ok(watcher::Event::Delete(p)) => lock(&tracker).delete(&p),
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn latencies(
    snap: &StateSnapshot,
    ids: &[i64],
    from: impl Fn(&actions_emulator::JobRecord) -> Option<f64>,
) -> Vec<f64> {
    let mut v: Vec<f64> = ids
        .iter()
        .filter_map(|id| snap.job(*id))
        .filter_map(from)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

#[allow(clippy::cast_precision_loss)]
fn queued_to_started(j: &actions_emulator::JobRecord) -> Option<f64> {
    j.started_at
        .map(|s| (s - j.queued_at).num_milliseconds() as f64 / 1000.0)
}

#[allow(clippy::cast_precision_loss)]
fn acquired_to_started(j: &actions_emulator::JobRecord) -> Option<f64> {
    Some((j.started_at? - j.acquired_at?).num_milliseconds() as f64 / 1000.0)
}

fn summary_line(name: &str, v: &[f64]) -> String {
    if v.is_empty() {
        return format!("{name:<37} (no samples)");
    }
    format!(
        "{name:<37} p50 {:>5.1}s   p95 {:>5.1}s   max {:>5.1}s",
        percentile(v, 50.0),
        percentile(v, 95.0),
        percentile(v, 100.0)
    )
}

impl Report {
    fn print(&self, snap: &StateSnapshot) {
        let jobs: Vec<_> = self.ids.iter().filter_map(|id| snap.job(*id)).collect();
        let completed = jobs
            .iter()
            .filter(|j| j.phase == JobPhase::Completed)
            .count();
        let failed = jobs
            .iter()
            .filter(|j| j.result == Some(JobResult::Failed))
            .count();
        let requeued: u32 = jobs.iter().map(|j| j.requeues).sum();
        let calls: u64 = snap.counters.values().sum();
        println!();
        println!("==> summary");
        println!(
            "  {} jobs in {:.1?}: {completed} completed ({} succeeded, {failed} failed), {} unfinished, {requeued} requeued",
            self.ids.len(),
            self.elapsed,
            completed - failed.min(completed),
            self.ids.len() - completed
        );
        println!(
            "  {}",
            summary_line(
                "queued → started",
                &latencies(snap, &self.ids, queued_to_started)
            )
        );
        println!(
            "  {}",
            summary_line(
                "acquired → started",
                &latencies(snap, &self.ids, acquired_to_started)
            )
        );
        println!(
            "  runners: peak {} at once, {} runner pods in all; {}",
            self.peak_runners,
            lock(&self.pods).seen,
            if self.settled {
                "scaled back to minRunners"
            } else {
                "did NOT scale back to minRunners in time"
            }
        );
        let sorted = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v
        };
        let t = lock(&self.pods);
        for (name, samples) in [
            ("runner pod created → running", &t.to_running),
            ("runner done → pod deletion requested", &t.to_deletion),
            ("pod deletion → removed", &t.to_removal),
        ] {
            println!("  {}", summary_line(name, &sorted(samples)));
        }
        drop(t);
        #[allow(clippy::cast_precision_loss)]
        let per_job = calls as f64 / self.ids.len().max(1) as f64;
        println!("  Actions API calls: {calls} ({per_job:.1} per job)");
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for (k, v) in &snap.counters {
            by.insert(k.as_str(), *v);
        }
        let top: Vec<String> = by
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("    {}", top.join(", "));
    }
}

/// Live counts for the progress display.
struct Counts {
    queued: usize,
    acquired: usize,
    running: usize,
    done: usize,
    failed: usize,
    pending: usize,
    busy: usize,
    idle: usize,
    pods: PodCounts,
}

fn counts(snap: &StateSnapshot, ids: &[i64], pods: PodCounts) -> Counts {
    let mut c = Counts {
        queued: 0,
        acquired: 0,
        running: 0,
        done: 0,
        failed: 0,
        pending: 0,
        busy: 0,
        idle: 0,
        pods,
    };
    for j in ids.iter().filter_map(|id| snap.job(*id)) {
        match j.phase {
            JobPhase::Queued | JobPhase::Available => c.queued += 1,
            JobPhase::Acquired | JobPhase::Assigned | JobPhase::PickedUp => c.acquired += 1,
            JobPhase::Running => c.running += 1,
            JobPhase::Completed => {
                c.done += 1;
                if j.result == Some(JobResult::Failed) {
                    c.failed += 1;
                }
            }
        }
    }
    for r in &snap.runners {
        match (r.connected_at, r.job) {
            (None, _) => c.pending += 1,
            (Some(_), Some(_)) => c.busy += 1,
            (Some(_), None) => c.idle += 1,
        }
    }
    c
}

struct Display {
    tty: bool,
    drawn: bool,
    last_plain: Instant,
}

impl Display {
    fn draw(&mut self, elapsed: Duration, total: usize, planned: usize, c: &Counts, lat: &[f64]) {
        let lines = [
            format!(
                "t={:>6.1}s  jobs   queued {:>3}  acquired {:>3}  running {:>3}  done {:>3}/{total} ({} failed)  [{planned} queued so far]",
                elapsed.as_secs_f64(),
                c.queued,
                c.acquired,
                c.running,
                c.done,
                c.failed
            ),
            format!(
                "           runners pending {:>3}  running {:>3}  idle {:>3}   pods pending {:>3}  running {:>3}  finished {:>3}",
                c.pending, c.busy, c.idle, c.pods.pending, c.pods.running, c.pods.finished
            ),
            format!("           {}", summary_line("queued → started", lat)),
        ];
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.drawn {
                let _ = write!(out, "\x1b[{}A", lines.len());
            }
            for l in &lines {
                let _ = writeln!(out, "\x1b[2K{l}");
            }
            self.drawn = true;
        } else if self.last_plain.elapsed() >= Duration::from_secs(5) {
            let _ = writeln!(out, "{}", lines.join("\n"));
            self.last_plain = Instant::now();
        }
        let _ = out.flush();
    }
}

async fn run_jobs(cp: &ControlPlane, emu: &Emulator, args: &DemoArgs) -> anyhow::Result<Report> {
    let plan = plan(args);
    let total = plan.len();
    if total == 0 {
        bail!("the job stream is empty; fix: raise --duration or --rate");
    }
    let queued_by = next_last(&plan);
    let pods: Api<Pod> = Api::namespaced(cp.client(), RUNNER_NAMESPACE);
    let start = Instant::now();
    let mut ids = Vec::with_capacity(total);
    let mut next = plan.into_iter().peekable();
    let mut display = Display {
        tty: std::io::stdout().is_terminal(),
        drawn: false,
        last_plain: Instant::now() - Duration::from_secs(60),
    };
    let mut peak = 0;
    let tracker = SharedTracker::default();
    let watch = tokio::spawn(track_pods(pods, tracker.clone()));
    let give_up = queued_by + Duration::from_secs(args.job_seconds.1) + Duration::from_secs(300);
    let mut finished_at: Option<Instant> = None;
    let settle_limit = Duration::from_secs(120);
    let settled = loop {
        while let Some(p) = next.next_if(|p| start.elapsed() >= p.at) {
            ids.push(emu.queue_job(p.spec));
        }
        let snap = emu.snapshot();
        let (pod_counts, present) = {
            let t = lock(&tracker);
            (t.counts(), t.present())
        };
        let c = counts(&snap, &ids, pod_counts);
        peak = peak.max(c.pending + c.busy + c.idle);
        display.draw(
            start.elapsed(),
            total,
            ids.len(),
            &c,
            &latencies(&snap, &ids, queued_to_started),
        );
        let all_done = next.peek().is_none() && c.done == total;
        if all_done && finished_at.is_none() {
            finished_at = Some(Instant::now());
        }
        if let Some(done) = finished_at {
            let min = args.min_runners as usize;
            if c.pending + c.busy + c.idle == min && present == min {
                break true;
            }
            if done.elapsed() > settle_limit {
                break false;
            }
        } else if start.elapsed() > give_up {
            bail!(
                "jobs did not finish: {} of {total} done after {:.0?}",
                c.done,
                start.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    watch.abort();
    Ok(Report {
        elapsed: finished_at
            .map(|f| f.duration_since(start))
            .unwrap_or_else(|| start.elapsed()),
        ids,
        peak_runners: peak,
        pods: tracker,
        settled,
    })
}

fn next_last(plan: &[Planned]) -> Duration {
    plan.last().map(|p| p.at).unwrap_or_default()
}

/// Deletes the AutoscalingRunnerSet and waits for the manager to remove the scale set from
/// the service (its listener and runners go first).
async fn remove_scale_set(cp: &ControlPlane, emu: &Emulator) -> anyhow::Result<()> {
    let client = cp.client();
    let gvk = GroupVersionKind::gvk("actions.github.com", "v1alpha1", "AutoscalingRunnerSet");
    let (resource, _) = pinned_kind(&client, &gvk).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, RUNNER_NAMESPACE, &resource);
    api.delete(SCALE_SET, &DeleteParams::default())
        .await
        .context("deleting the AutoscalingRunnerSet")?;
    emu.wait_until(Duration::from_secs(90), |s| {
        s.scale_set_by_name(SCALE_SET).is_none()
    })
    .await
    .context("the manager did not remove the scale set from the service")?;
    Ok(())
}
