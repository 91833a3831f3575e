//! A runner's life costs the manager the requests docs/architecture.md#a-runners-life-request-by-request
//! lists, counted from the API server's audit log: per runner, one create each of the
//! EphemeralRunner, its JIT Secret and its pod, at most one status patch, one patch of the
//! finalizers and one delete; no reads, neither of the runners nor of the set and its listener.
//! A request someone adds to the usual path fails this test.
//! Counts, not times, are asserted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use system::{ScaleSetSpec, System, SystemOptions};
use testbed::{AuditEvent, AuditLog, AuditPolicy};

/// The manager's requests on one runner's objects (the EphemeralRunner, and its pod and JIT
/// Secret, which share its name), as "verb resource[/subresource]" counts.
type Requests = BTreeMap<String, u32>;

/// Each runner's requests, by runner name. A runner is known by its pod (the EphemeralRunner is
/// created with `generateName`, so its create request carries no name): creates of
/// EphemeralRunners are counted under the empty name.
fn per_runner(events: &[AuditEvent], manager: &str, namespace: &str) -> BTreeMap<String, Requests> {
    let runners: Vec<String> = events
        .iter()
        .filter(|e| e.user == manager && e.verb == "create" && e.resource == "pods")
        .filter_map(|e| e.name.clone())
        .chain([String::new()])
        .collect();
    let mut by: BTreeMap<String, Requests> = runners
        .iter()
        .map(|r| (r.clone(), Requests::new()))
        .collect();
    for e in events.iter().filter(|e| e.user == manager) {
        if e.namespace.as_deref() != Some(namespace) {
            continue;
        }
        if !matches!(e.resource.as_str(), "ephemeralrunners" | "pods" | "secrets") {
            continue;
        }
        if let Some(requests) = by.get_mut(e.name.as_deref().unwrap_or_default()) {
            *requests.entry(e.request()).or_insert(0) += 1;
        }
    }
    by
}

/// The floor of docs/architecture.md, request by request.
fn floor() -> Requests {
    [
        ("create secrets", 1),
        ("create pods", 1),
        ("patch ephemeralrunners/status", 1),
        ("patch ephemeralrunners", 1),
        ("delete ephemeralrunners", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect()
}

#[tokio::test]
async fn a_runner_costs_the_manager_six_writes_and_no_reads() {
    let audit = AuditLog::new(AuditPolicy::ServiceAccounts).expect("audit log");
    let sys = System::start_audited(&audit, &[], SystemOptions::new("writes"))
        .await
        .expect("system");
    let outcome = lifecycle(&sys, &audit).await;
    if let Err(e) = sys.finish(outcome).await {
        panic!("{e:#}");
    }
}

async fn lifecycle(sys: &System, audit: &AuditLog) -> anyhow::Result<()> {
    const JOBS: usize = 12;
    let set = sys
        .install_scale_set(
            ScaleSetSpec::new("writes").values(json!({"minRunners": 0, "maxRunners": JOBS})),
        )
        .await?;
    sys.wait_listening(&set.name, Duration::from_secs(120))
        .await?;
    // Runners made in the manager's first seconds take the restart path (read before the JIT
    // call, as the controller cannot know it saw them from their creation): a first round of
    // jobs, not counted, puts the measured ones after it.
    sys.run_jobs(&set, 2, Duration::from_secs(1), 0).await?;
    let start = audit.len();
    sys.run_jobs(&set, JOBS, Duration::from_secs(2), 0).await?;
    let manager = format!(
        "system:serviceaccount:{}:{}",
        sys.controller_namespace(),
        sys.controller_service_account()
    );
    let events = audit.events_between(start, audit.len())?;
    let mut runners = per_runner(&events, &manager, &set.namespace);
    let created = runners.remove("").unwrap_or_default();
    let one_each = Requests::from([("create ephemeralrunners".to_owned(), JOBS as u32)]);
    anyhow::ensure!(
        runners.len() == JOBS && created == one_each,
        "one runner per job: {} runner pods and {created:?} for {JOBS} jobs",
        runners.len()
    );
    let floor = floor();
    let over: Vec<String> = runners
        .iter()
        .filter(|(_, requests)| {
            requests
                .iter()
                .any(|(k, n)| floor.get(k).is_none_or(|most| n > most))
        })
        .map(|(name, requests)| format!("{name}: {requests:?}"))
        .collect();
    if let Some(first) = over.first() {
        let name = first.split(':').next().unwrap_or_default();
        let trace: Vec<String> = events
            .iter()
            .filter(|e| e.user == manager && e.name.as_deref() == Some(name))
            .map(|e| format!("{} {}", e.at.format("%H:%M:%S%.3f"), e.request()))
            .collect();
        anyhow::bail!(
            "runners whose life costs more than the floor {floor:?}:\n{}\nthe first one's requests:\n{}",
            over.join("\n"),
            trace.join("\n")
        );
    }
    // Every listener patch and set status write starts a pass of the AutoscalingRunnerSet
    // controller, which reads the set and the listeners from its watch caches.
    let child_reads: Vec<String> = events
        .iter()
        .filter(|e| e.user == manager && matches!(e.verb.as_str(), "get" | "list"))
        .filter(|e| {
            matches!(
                e.resource.as_str(),
                "ephemeralrunnersets" | "autoscalinglisteners"
            )
        })
        .map(|e| format!("{} {}", e.at.format("%H:%M:%S%.3f"), e.request()))
        .collect();
    anyhow::ensure!(
        child_reads.is_empty(),
        "the scale set's passes read their children from the API server:\n{}",
        child_reads.join("\n")
    );
    sys.uninstall_scale_set(&set).await
}
