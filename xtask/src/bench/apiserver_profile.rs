//! What kube-apiserver spent its CPU on during a phase: a CPU profile from its pprof endpoint
//! (the bench starts it with `--profiling=true`), its samples summed by the activity their stacks
//! show. It tells a floor set by the requests themselves (handlers, storage, watches) from one
//! set by the test bed (the audit log).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;

use anyhow::Context as _;
use pprof::protos::Message as _;

/// Activities, first match wins, each named by substrings of its stack's function names.
const ACTIVITIES: &[(&str, &[&str])] = &[
    (
        "garbage collection",
        &[
            "runtime.gcBgMarkWorker",
            "runtime.gcAssistAlloc",
            "runtime.bgsweep",
            "runtime.bgscavenge",
        ],
    ),
    ("audit log (test bed)", &["pkg/audit"]),
    (
        "watches: the watch cache and events to watchers",
        &["storage/cacher", "handlers.serveWatch", "(*WatchServer)"],
    ),
    (
        "etcd: storage reads and writes",
        &["storage/etcd3", "go.etcd.io/etcd"],
    ),
    ("admission", &["pkg/admission"]),
    (
        "managed fields",
        &["managedfields", "structured-merge-diff"],
    ),
    (
        "authentication and authorization",
        &["pkg/authentication", "pkg/authorization", "plugin/pkg/auth"],
    ),
    (
        "request handlers: decode, validate, encode",
        &["endpoints/handlers"],
    ),
    (
        "HTTP/2, HTTP and TLS",
        &["net/http", "crypto/", "golang.org/x/net/http2"],
    ),
];

/// A CPU profile of kube-apiserver, summed.
#[derive(Debug, Clone, Default)]
pub(super) struct Profile {
    /// Seconds the profile ran.
    pub seconds: u64,
    /// CPU seconds sampled.
    pub cpu: f64,
    /// CPU seconds by activity, largest first.
    pub by_activity: Vec<(String, f64)>,
    /// CPU seconds of the functions that were running (leaf frames), largest first.
    pub top_functions: Vec<(String, f64)>,
}

/// Profiles kube-apiserver's CPU for `seconds` (Go's `/debug/pprof/profile`).
pub(super) async fn capture(client: kube::Client, seconds: u64) -> anyhow::Result<Profile> {
    let request = http::Request::get(format!("/debug/pprof/profile?seconds={seconds}"))
        .body(Vec::new())
        .context("building the profile request")?;
    let mut body = client
        .request_stream(request)
        .await
        .context("reading kube-apiserver's CPU profile (is it started with --profiling=true?)")?;
    let mut raw = Vec::new();
    futures::AsyncReadExt::read_to_end(&mut body, &mut raw).await?;
    summarize(&raw, seconds)
}

/// Sums a gzipped pprof CPU profile by activity and by running function.
fn summarize(gzipped: &[u8], seconds: u64) -> anyhow::Result<Profile> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut bytes)
        .context("the CPU profile is not gzip")?;
    let profile = pprof::protos::Profile::decode(bytes.as_slice())
        .context("the CPU profile is not a pprof protobuf")?;
    let text = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .map_or("", String::as_str)
    };
    let value = profile
        .sample_type
        .iter()
        .position(|t| text(t.unit) == "nanoseconds")
        .context("the profile has no CPU time (nanoseconds) per sample")?;
    let functions: HashMap<u64, &str> = profile
        .function
        .iter()
        .map(|f| (f.id, text(f.name)))
        .collect();
    // Leaf first: a location's lines list the inlined functions innermost first.
    let locations: HashMap<u64, Vec<&str>> = profile
        .location
        .iter()
        .map(|l| {
            let names = l
                .line
                .iter()
                .map(|line| functions.get(&line.function_id).copied().unwrap_or("?"))
                .collect();
            (l.id, names)
        })
        .collect();
    let mut by_activity: HashMap<&str, f64> = HashMap::new();
    let mut by_function: HashMap<&str, f64> = HashMap::new();
    let mut cpu = 0.0;
    for sample in &profile.sample {
        let seconds = sample.value.get(value).copied().unwrap_or(0) as f64 / 1e9;
        let frames: Vec<&str> = sample
            .location_id
            .iter()
            .filter_map(|id| locations.get(id))
            .flatten()
            .copied()
            .collect();
        cpu += seconds;
        *by_activity.entry(activity(&frames)).or_default() += seconds;
        *by_function
            .entry(frames.first().copied().unwrap_or("?"))
            .or_default() += seconds;
    }
    Ok(Profile {
        seconds,
        cpu,
        by_activity: largest_first(by_activity),
        top_functions: largest_first(by_function).into_iter().take(8).collect(),
    })
}

fn activity(frames: &[&str]) -> &'static str {
    ACTIVITIES
        .iter()
        .find(|(_, marks)| {
            frames
                .iter()
                .any(|frame| marks.iter().any(|mark| frame.contains(mark)))
        })
        .map_or("other", |(name, _)| name)
}

fn largest_first(sums: HashMap<&str, f64>) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = sums.into_iter().map(|(k, s)| (k.to_owned(), s)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// The profile as a Markdown section: activities with their share, then the busiest functions.
pub(super) fn render(phase: &str, profile: &Profile, out: &mut String) {
    let share = |s: f64| 100.0 * s / profile.cpu.max(f64::MIN_POSITIVE);
    let _ = writeln!(
        out,
        "\n## Where kube-apiserver's CPU went\n\nA CPU profile of kube-apiserver over the first {} s of *{phase}* ({:.1} CPU s sampled), its samples summed by the activity their stack shows (the first that matches, in this order). What the requests cost the API server itself (handlers, storage, watches, admission) is the floor every controller pays for the same objects; the audit log is the test bed's.\n\n| Activity | CPU s | Share |\n|---|---|---|",
        profile.seconds, profile.cpu
    );
    for (name, s) in &profile.by_activity {
        let _ = writeln!(out, "| {name} | {s:.1} | {:.0} % |", share(*s));
    }
    let _ = writeln!(
        out,
        "\nThe functions that were running (leaf frames), largest first: {}.",
        profile
            .top_functions
            .iter()
            .map(|(f, s)| format!("`{f}` {:.0} %", share(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_counts_for_the_first_activity_it_shows() {
        let gc_in_a_handler = [
            "runtime.gcAssistAlloc",
            "runtime.mallocgc",
            "k8s.io/apiserver/pkg/endpoints/handlers.createHandler",
        ];
        assert_eq!(activity(&gc_in_a_handler), "garbage collection");
        let encode_for_a_watcher = [
            "encoding/json.Marshal",
            "k8s.io/apiserver/pkg/endpoints/handlers.(*WatchServer).HandleHTTP",
        ];
        assert_eq!(
            activity(&encode_for_a_watcher),
            "watches: the watch cache and events to watchers"
        );
        assert_eq!(activity(&["main.main"]), "other");
    }
}
