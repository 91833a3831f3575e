//! Every EphemeralRunner state reachable through the lifecycle decisions can still reach "deleted":
//! there are no dead ends (pain points 7-9 of
//! docs/architecture.md#arc-pain-points-and-our-answers).

use scaleset_core::ephemeral_runner::{
    Action, ContainerState, PodObservation, PodPhase, RetryPolicy, RunnerState, decide,
};
use scaleset_core::runner_set::{self, ObservedRunner, RunnerPhase, SetPolicy, SetSpec};
use scaleset_core::time::Timestamp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

type Key = (RunnerPhase, bool, bool, bool, bool, u32);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Node {
    Live(Key),
    Deleted,
}

fn key(r: &RunnerState) -> Key {
    (
        r.phase,
        r.ready,
        r.jit_secret,
        r.runner_id > 0,
        r.has_job,
        r.failures,
    )
}

fn state(k: Key) -> RunnerState {
    RunnerState {
        phase: k.0,
        ready: k.1,
        jit_secret: k.2,
        runner_id: if k.3 { 42 } else { 0 },
        has_job: k.4,
        failures: k.5,
        last_failure: None,
        created_at: Timestamp::from_unix_seconds(0),
        registration_removed: None,
    }
}

fn observations() -> Vec<Option<PodObservation>> {
    let term = |code: i32, reason: &str| PodObservation {
        phase: PodPhase::Failed,
        runner: ContainerState::Terminated {
            exit_code: code,
            reason: reason.into(),
        },
        ..PodObservation::default()
    };
    vec![
        None,
        Some(PodObservation::default()),
        Some(PodObservation {
            phase: PodPhase::Running,
            runner: ContainerState::Running,
            ready: true,
            ..PodObservation::default()
        }),
        Some(PodObservation {
            phase: PodPhase::Failed,
            reason: "Evicted".into(),
            ..PodObservation::default()
        }),
        Some(PodObservation {
            phase: PodPhase::Failed,
            reason: "OutOfcpu".into(),
            ..PodObservation::default()
        }),
        Some(term(0, "Completed")),
        Some(term(1, "Error")),
        Some(term(137, "OOMKilled")),
        Some(term(7, "Error")),
        Some(PodObservation {
            failed_init: Some(("init".into(), 2)),
            ..PodObservation::default()
        }),
        Some(PodObservation {
            runner: ContainerState::Waiting {
                reason: "InvalidImageName".into(),
            },
            ..PodObservation::default()
        }),
    ]
}

/// A terminal runner is removed by its set: finished ones by the scale plan, failed ones after
/// their TTL or by a cleanup, outdated ones by the cleanup the Outdated phase triggers.
fn set_removes_terminal(phase: RunnerPhase) -> bool {
    let r = ObservedRunner::new("r", phase, Timestamp::from_unix_seconds(0));
    let later = Timestamp::from_unix_seconds(86_400);
    let plan = runner_set::plan(
        SetSpec {
            replicas: 1,
            patch_id: 3,
            applied_patch_id: None,
            held: 0,
        },
        std::slice::from_ref(&r),
        later,
        &SetPolicy::default(),
    );
    let cleanup = runner_set::cleanup(&[r]);
    plan.delete.contains(&"r".to_string()) || cleanup.delete.contains(&"r".to_string())
}

fn step(k: Key, obs: &Option<PodObservation>, policy: &RetryPolicy) -> Node {
    let mut r = state(k);
    let now = Timestamp::from_unix_seconds(1_000_000);
    match decide(&r, obs.as_ref(), now, policy) {
        Action::DeleteRunner { .. } => return Node::Deleted,
        Action::CleanupTerminal => {
            assert!(
                set_removes_terminal(r.phase),
                "terminal {:?} is never removed",
                r.phase
            );
            return Node::Deleted;
        }
        Action::Wait(_) | Action::CreatePod => {}
        Action::RequestJitConfig => r.jit_secret = true,
        Action::MirrorStatus { phase, ready } => {
            r.phase = phase;
            r.ready = ready;
        }
        Action::RetryPod(retry) => {
            if retry.charged {
                r.failures += 1;
            }
            if retry.fresh_registration {
                r.jit_secret = false;
                r.runner_id = 0;
                r.phase = RunnerPhase::Pending;
                r.ready = false;
            }
        }
        Action::MarkOutdated => r.phase = RunnerPhase::Outdated,
        Action::MarkFailed { .. } => r.phase = RunnerPhase::Failed,
    }
    Node::Live(key(&r))
}

#[test]
fn every_reachable_runner_state_can_be_deleted() {
    let policy = RetryPolicy {
        max_failures: 3,
        backoff: vec![Duration::ZERO],
        ..RetryPolicy::default()
    };
    let start = key(&RunnerState::default());
    let mut edges: HashMap<Node, HashSet<Node>> = HashMap::new();
    let mut seen = HashSet::from([Node::Live(start)]);
    let mut queue = VecDeque::from([start]);
    while let Some(k) = queue.pop_front() {
        // the listener may mark the runner busy at any time once it runs
        let mut successors: Vec<Node> =
            observations().iter().map(|o| step(k, o, &policy)).collect();
        if k.0 == RunnerPhase::Running && !k.4 {
            successors.push(Node::Live((k.0, k.1, k.2, k.3, true, k.5)));
        }
        for next in successors {
            edges.entry(Node::Live(k)).or_default().insert(next);
            if let Node::Live(nk) = next
                && seen.insert(next)
            {
                queue.push_back(nk);
            }
        }
    }
    assert!(
        seen.len() > 10,
        "the exploration covered only {} states",
        seen.len()
    );
    // reverse reachability from Deleted
    let mut can_finish = HashSet::from([Node::Deleted]);
    loop {
        let before = can_finish.len();
        for (from, tos) in &edges {
            if tos.iter().any(|t| can_finish.contains(t)) {
                can_finish.insert(*from);
            }
        }
        if can_finish.len() == before {
            break;
        }
    }
    let stuck: Vec<_> = seen.iter().filter(|n| !can_finish.contains(n)).collect();
    assert!(stuck.is_empty(), "dead-end runner states: {stuck:?}");
}
