//! The scale series of `cargo xtask bench`: idle runners (`minRunners`) spread over several
//! scale sets, raised level by level, with the manager's memory, CPU time and reconcile latency
//! at each level.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_reconcilers::crd::AutoscalingRunnerSet;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use system::{ScaleSet, ScaleSetSpec, System, Timeline, wait_for};

use super::{MIB, rss};

/// How long one level may take to have all its pods.
const LEVEL_TIMEOUT: Duration = Duration::from_secs(900);

/// The manager's metrics port, as the bench's controller values set it.
pub(super) const METRICS_PORT: u16 = 8080;

/// The controllers whose reconcile latency the series reports.
const CONTROLLERS: [&str; 2] = ["ephemeralrunner", "ephemeralrunnerset"];

/// One level of the series.
#[derive(Debug, Clone)]
pub(super) struct Point {
    sets: usize,
    runners: usize,
    /// From raising `minRunners` to the last pod.
    up: f64,
    /// From lowering `minRunners` to 0 until no EphemeralRunner is left, and until no runner
    /// pod is left (the manager deletes each scaled-down runner's pod with it).
    runners_gone: f64,
    pods_gone: f64,
    /// Manager RSS at this level, and before the first idle level (every set installed, no
    /// runner).
    rss: Option<u64>,
    rss_base: Option<u64>,
    /// Manager CPU seconds (user + system) spent reaching this level.
    cpu: f64,
    /// Reconcile latency p95 by controller (upper bucket bound, seconds) while reaching it.
    reconcile_p95: BTreeMap<&'static str, f64>,
}

/// A job-driven level: jobs queued at once, spread evenly over the sets, in one or more runs.
#[derive(Debug, Clone)]
pub(super) struct JobsPoint {
    sets: usize,
    jobs: usize,
    /// From queuing the jobs to the last runner pod, one per run.
    ups: Vec<f64>,
    /// Each job's acquisition to a runner pod (milliseconds, sorted) over all runs, paired in
    /// order within each run as in the burst.
    acquired_to_pod: Vec<f64>,
}

impl JobsPoint {
    /// The median run's time to the last pod.
    fn up(&self) -> f64 {
        super::median(self.ups.clone())
    }

    /// Adds another run of the same level.
    fn merge(&mut self, run: JobsPoint) {
        self.ups.extend(run.ups);
        self.acquired_to_pod.extend(run.acquired_to_pod);
        self.acquired_to_pod.sort_by(f64::total_cmp);
    }
}

/// What the series measured.
#[derive(Debug, Default)]
pub(super) struct Series {
    pub(super) levels: Vec<Point>,
    pub(super) jobs: Vec<JobsPoint>,
}

/// What the series runs: `jobs` jobs over each count of scale sets (`job_runs` rounds), then
/// each of `runners` idle runners in total over each count.
pub(super) struct Levels<'a> {
    pub(super) jobs: usize,
    pub(super) job_runs: usize,
    pub(super) runners: &'a [usize],
    pub(super) set_counts: &'a [usize],
}

/// How long each job of a job-driven level runs.
const JOB: Duration = Duration::from_secs(5);

/// Runs the series on one cluster that holds every set count's scale sets at once, so that the
/// set counts differ in nothing else: installs them all, runs the job levels round by round with
/// the set counts in a rotated order each round (run times wander: in one bench the same 200
/// jobs on one set took 4.6–8.1 s over eight bursts and 5.4–14.0 s over eight series runs after
/// them; one set count after the other mixed that into the comparison), then for each total of
/// idle runners raises each set count's
/// `minRunners` in turn, rotated the same way, and lowers it to 0 again. The levels measured
/// before a failure stay in `series`.
pub(super) async fn run(
    sys: &System,
    levels: &Levels<'_>,
    series: &mut Series,
) -> anyhow::Result<()> {
    let top = levels
        .runners
        .iter()
        .copied()
        .chain([levels.jobs])
        .max()
        .unwrap_or(0);
    let mut groups = Vec::new();
    for &sets in levels.set_counts {
        println!("==> scale series: installing {sets} scale set(s)");
        let mut installed = Vec::new();
        for i in 0..sets {
            installed.push(
                sys.install_scale_set(
                    ScaleSetSpec::new(&format!("series-{sets}-{i}"))
                        .values(json!({ "maxRunners": top, "minRunners": 0 })),
                )
                .await?,
            );
        }
        groups.push(installed);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let measured = measure(sys, levels, &groups, series).await;
    // All at once: one after the other, removing 50 sets of 100 runners took over an hour.
    futures::future::try_join_all(
        groups
            .iter()
            .flatten()
            .map(|set| sys.uninstall_scale_set_within(set, LEVEL_TIMEOUT)),
    )
    .await?;
    measured
}

/// The levels of [`run`], over the installed groups of scale sets (one group per set count).
async fn measure(
    sys: &System,
    levels: &Levels<'_>,
    groups: &[Vec<ScaleSet>],
    series: &mut Series,
) -> anyhow::Result<()> {
    let mut jobs: Vec<Option<JobsPoint>> = vec![None; groups.len()];
    for round in 0..levels.job_runs.max(1) {
        for g in rotated(groups.len(), round) {
            let sets = &groups[g];
            if levels.jobs == 0 || levels.jobs < sets.len() {
                continue;
            }
            let run = jobs_level(sys, sets, levels.jobs).await?;
            println!(
                "    round {}: {} jobs over {} set(s): all pods in {:.1} s, acquired→pod p95 {:.0} ms",
                round + 1,
                run.jobs,
                sets.len(),
                run.up(),
                super::percentile(&run.acquired_to_pod, 95.0)
            );
            match &mut jobs[g] {
                Some(point) => point.merge(run),
                None => jobs[g] = Some(run),
            }
        }
    }
    series.jobs.extend(jobs.into_iter().flatten());
    // One base for every idle level: measured just before each level, after the runners of the
    // last one went, the allocator's retained memory made the growth of most levels 0 or below.
    let rss_base = rss(&sys.manager_pids().await);
    for (i, &runners) in levels.runners.iter().enumerate() {
        for g in rotated(groups.len(), i) {
            let sets = &groups[g];
            if runners < sets.len() {
                continue;
            }
            let point = level(sys, sets, runners, rss_base).await?;
            println!(
                "    {runners} runners over {} set(s): up in {:.1} s, runners gone in {:.1} s, pods in {:.1} s, manager RSS {}, {:.1} CPU s",
                sets.len(),
                point.up,
                point.runners_gone,
                point.pods_gone,
                point
                    .rss
                    .map_or("?".to_owned(), |b| format!("{:.1} MiB", b as f64 / MIB)),
                point.cpu
            );
            series.levels.push(point);
        }
    }
    series.levels.sort_by_key(|p| (p.sets, p.runners));
    Ok(())
}

/// The indices `0..n` starting at `round % n`: over `n` rounds each comes once at each place.
fn rotated(n: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (i + round) % n)
}

/// Sets `minRunners` of every set, all at once as a single set is raised: one after the other,
/// the last of 50 sets was raised 5.6 s after the first on a loaded machine.
async fn set_min_runners(sys: &System, sets: &[ScaleSet], per_set: usize) -> anyhow::Result<()> {
    futures::future::try_join_all(sets.iter().map(|set| async move {
        let api: Api<AutoscalingRunnerSet> = Api::namespaced(sys.client(), &set.namespace);
        api.patch(
            &set.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "minRunners": per_set } })),
        )
        .await
        .with_context(|| format!("setting minRunners of {} to {per_set}", set.name))
    }))
    .await?;
    Ok(())
}

/// Waits until the runner namespace holds `want` runner pods or more (`0`: none at all), as a
/// watch sees them.
async fn wait_for_pods(sys: &System, want: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let timeline = Timeline::start(sys.client(), sys.runner_namespace()).await?;
    loop {
        let have = timeline.pods_present();
        if (want == 0 && have == 0) || (want > 0 && have >= want) {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < LEVEL_TIMEOUT,
            "{have} runner pods (waiting for {want}) after {LEVEL_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Queues `jobs` jobs spread evenly over the sets (`minRunners` 0) and measures until each has
/// its runner pod; then waits until they all ran and their runners are gone.
async fn jobs_level(sys: &System, sets: &[ScaleSet], jobs: usize) -> anyhow::Result<JobsPoint> {
    let timeline = Timeline::start(sys.client(), sys.runner_namespace()).await?;
    let per_set = jobs.div_ceil(sets.len());
    let want = per_set * sets.len();
    let queued_at = chrono::Utc::now();
    let ids: Vec<i64> = sets
        .iter()
        .flat_map(|set| sys.queue_jobs(set, per_set, JOB))
        .collect();
    wait_for(LEVEL_TIMEOUT, "a runner pod for every job", || async {
        Ok(timeline.pods_created().len() >= want)
    })
    .await?;
    let mut created: Vec<_> = timeline.pods_created().values().copied().collect();
    created.sort();
    let snap = sys.emulator().snapshot();
    let mut acquired: Vec<_> = ids
        .iter()
        .filter_map(|id| snap.job(*id)?.acquired_at)
        .collect();
    acquired.sort();
    let mut acquired_to_pod: Vec<f64> = acquired
        .iter()
        .zip(&created)
        .map(|(a, p)| super::millis(*p - *a))
        .collect();
    acquired_to_pod.sort_by(f64::total_cmp);
    let up = created
        .get(want - 1)
        .map_or(f64::NAN, |t| super::millis(*t - queued_at) / 1000.0);
    sys.wait_jobs_completed(&ids, LEVEL_TIMEOUT).await?;
    wait_for_pods(sys, 0).await?;
    Ok(JobsPoint {
        sets: sets.len(),
        jobs: want,
        ups: vec![up],
        acquired_to_pod,
    })
}

/// Raises the sets' `minRunners` to hold `runners` in total and measures the manager until
/// every runner pod exists, then lowers it to 0 and measures until no runner pod is left.
async fn level(
    sys: &System,
    sets: &[ScaleSet],
    runners: usize,
    rss_base: Option<u64>,
) -> anyhow::Result<Point> {
    let pids = sys.manager_pids().await;
    let cpu_before = cpu_seconds(&pids);
    let histograms_before = reconcile_histograms(sys).await?;
    let started = Instant::now();
    let per_set = runners.div_ceil(sets.len());
    set_min_runners(sys, sets, per_set).await?;
    let want = per_set * sets.len();
    wait_for_pods(sys, want).await?;
    let up = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pids) - cpu_before;
    let histograms_after = reconcile_histograms(sys).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut samples = Vec::new();
    for _ in 0..3 {
        samples.extend(rss(&sys.manager_pids().await));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The next level counts runner pods: none of these may linger.
    let timeline = Timeline::start(sys.client(), sys.runner_namespace()).await?;
    let lowered = Instant::now();
    set_min_runners(sys, sets, 0).await?;
    wait_for(LEVEL_TIMEOUT, "no EphemeralRunner", || async {
        Ok(timeline.runners_present() == 0)
    })
    .await?;
    let runners_gone = lowered.elapsed().as_secs_f64();
    wait_for_pods(sys, 0).await?;
    let pods_gone = lowered.elapsed().as_secs_f64();
    let reconcile_p95 = CONTROLLERS
        .iter()
        .filter_map(|c| {
            let after = histograms_after.get(*c)?;
            let before = histograms_before.get(*c).cloned().unwrap_or_default();
            Some((*c, p95_bound(&before, after)?))
        })
        .collect();
    Ok(Point {
        sets: sets.len(),
        runners: want,
        up,
        runners_gone,
        pods_gone,
        rss: samples.into_iter().max(),
        rss_base,
        cpu,
        reconcile_p95,
    })
}

/// User plus system CPU seconds of the processes (`/proc/<pid>/stat`, 100 ticks a second).
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command's closing parenthesis; utime and stime are 14th and 15th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .sum()
}

/// Cumulative `(upper bound, count)` buckets of `controller_runtime_reconcile_time_seconds`
/// by controller, scraped from the manager's metrics endpoint.
type Buckets = Vec<(f64, f64)>;

async fn reconcile_histograms(sys: &System) -> anyhow::Result<BTreeMap<String, Buckets>> {
    let pods = sys.manager_pods().await?;
    let ip = pods
        .iter()
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .context("the manager pod has no podIP")?;
    let ip: std::net::IpAddr = ip.parse().context("the manager's podIP")?;
    let (status, body) = testbed::http_get((ip, METRICS_PORT).into(), "/metrics").await?;
    anyhow::ensure!(
        status == 200,
        "GET /metrics of the manager answered {status}"
    );
    let mut out: BTreeMap<String, Buckets> = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("controller_runtime_reconcile_time_seconds_bucket{")
        else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_owned())
            })
        };
        let (Some(controller), Some(le)) = (label("controller"), label("le")) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let count: f64 = value
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0.0);
        out.entry(controller).or_default().push((bound, count));
    }
    Ok(out)
}

/// The upper bound of the bucket holding the 95th percentile of the reconciles between two
/// scrapes.
fn p95_bound(before: &Buckets, after: &Buckets) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, c)| *c);
            (*bound, count - earlier)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, count)| *count >= 0.95 * total)
        .map(|(bound, _)| *bound)
}

/// The series as a Markdown section.
pub(super) fn render(series: &Series, stopped: Option<&str>, out: &mut String) {
    if series.levels.is_empty() && series.jobs.is_empty() && stopped.is_none() {
        return;
    }
    let _ = writeln!(out, "## Scale series\n");
    if let Some(why) = stopped {
        let _ = writeln!(out, "The series stopped after the levels below: {why}\n");
    }
    render_jobs(&series.jobs, out);
    let points = &series.levels;
    let _ = writeln!(
        out,
        "Idle runners (`minRunners`, spread evenly) over 1 to 50 scale sets, one run per row: for each total, each set count in a rotated order (all its sets raised at once, then lowered to 0 until no runner pod is left). *Growth* is the manager's RSS over its RSS before the first idle level (every set installed, no runner), per runner (goal ≤ 20 KiB). *Provisioning* is runners per second from raising `minRunners` to the last pod (goal: as fast with many sets as with one); *Gone* is from lowering it to 0 until no EphemeralRunner is left (each removed from the service and deleted), then until no runner pod is left (the manager deletes a scaled-down runner's pod with the runner; left to Kubernetes' garbage collector, they went at the rate of its client). Reconcile p95 is the upper bound of the histogram bucket (`controller_runtime_reconcile_time_seconds`) over the reconciles of that level.\n"
    );
    let _ = writeln!(
        out,
        "| Scale sets | Runners | All pods (s) | Provisioning (runners/s) | Gone: runners / pods (s) | Manager RSS (MiB) | Growth (KiB/runner) | Manager CPU (s) | Reconcile p95, runner / set (s) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for p in points {
        let mib = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / MIB);
        let growth = match (p.rss, p.rss_base) {
            (Some(now), Some(base)) if p.runners > 0 => {
                (now as f64 - base as f64) / 1024.0 / p.runners as f64
            }
            _ => f64::NAN,
        };
        let p95 = |c: &str| {
            p.reconcile_p95
                .get(c)
                .map_or("—".to_owned(), |s| format!("{s:.3}"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} | {growth:.1} | {:.1} | {} / {} |",
            p.sets,
            p.runners,
            p.up,
            p.runners as f64 / p.up,
            p.runners_gone,
            p.pods_gone,
            mib(p.rss),
            p.cpu,
            p95(CONTROLLERS[0]),
            p95(CONTROLLERS[1]),
        );
    }
    let _ = writeln!(out);
}

/// The job-driven levels: how soon each job has its runner over many sets against one.
fn render_jobs(points: &[JobsPoint], out: &mut String) {
    if points.is_empty() {
        return;
    }
    let runs = points.iter().map(|p| p.ups.len()).max().unwrap_or(1);
    let _ = writeln!(
        out,
        "Jobs queued at once, spread evenly over the scale sets (`minRunners` 0, jobs of {} s), before the idle levels (`--series-jobs`), {runs} round(s); every set count's sets are installed for the whole series, and each round runs the set counts in a rotated order, so that each comes first, middle and last equally often (run times wander over a bench by half and more). *All pods* is from queuing to the last runner pod (median, then each run); *acquired → pod* pairs the k-th acquisition with the k-th pod within each run, as in the burst, over all runs. Goal: as fast per job with many sets as with one (*per job vs 1 set*: the 1-set row's median all-pods time over this row's, 100 % or more meets it; in brackets, this row's slowest and fastest run against the same median).\n",
        JOB.as_secs()
    );
    let _ = writeln!(
        out,
        "| Scale sets | Jobs | All pods (s) | Jobs/s | Acquired → pod p50 / p95 (ms) | Per job vs 1 set |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let one = points
        .iter()
        .find(|p| p.sets == 1)
        .map(|p| p.up() / p.jobs as f64);
    for p in points {
        let ratio = |one: f64, up: f64| 100.0 * one / (up / p.jobs as f64);
        let slowest = p.ups.iter().copied().fold(f64::NAN, f64::max);
        let fastest = p.ups.iter().copied().fold(f64::NAN, f64::min);
        let versus = one.map_or("—".to_owned(), |one| {
            format!(
                "{:.0} % ({:.0}–{:.0} %)",
                ratio(one, p.up()),
                ratio(one, slowest),
                ratio(one, fastest)
            )
        });
        let each: Vec<String> = p.ups.iter().map(|u| format!("{u:.1}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} ({}) | {:.1} | {:.0} / {:.0} | {versus} |",
            p.sets,
            p.jobs,
            p.up(),
            each.join(" / "),
            p.jobs as f64 / p.up(),
            super::percentile(&p.acquired_to_pod, 50.0),
            super::percentile(&p.acquired_to_pod, 95.0),
        );
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_bound_of_the_bucket_that_holds_it() {
        let before = vec![(0.01, 10.0), (0.1, 10.0), (f64::INFINITY, 10.0)];
        let after = vec![(0.01, 20.0), (0.1, 110.0), (f64::INFINITY, 110.0)];
        assert_eq!(p95_bound(&before, &after), Some(0.1));
        assert_eq!(p95_bound(&after, &after), None);
    }
}
