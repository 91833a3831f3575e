//! A burst of N jobs creates N runners (plus `minRunners`), and every job gets one, whatever the
//! interleaving of listener patches, set passes, a lagging watch cache, job assignments and
//! completing runners (docs/architecture.md#the-patchid-protocol).
//!
//! The model runs the listener's [`Scaler`] and [`CompletionLog`] and the set controller's
//! [`plan`] and [`Completions`] against a simulated service and API server. Its assumptions,
//! each a matter of milliseconds against the seconds a runner needs to start, run a job and
//! exit:
//! - the listener handles a JobStarted before that job completes; it may handle a JobCompleted
//!   at any time later (also after the runner is gone), and then patches `spec` with
//!   `totalAssignedJobs` = the jobs the service has not completed, and the completions it
//!   handled that the set's `status.observedPatchID` does not cover;
//! - a set pass reads the set from a watch cache that may lack the newest listener patch, but
//!   holds every patch written before a job completed by the time that job's runner is
//!   deleted; it sees its own status writes;
//! - a set pass reads the runners from a watch cache that may lag behind the API server, with
//!   the set's own unseen creations and deletions laid over it ([`UnseenWrites`]);
//!   the cache shows every change older than a long poll (so before an empty poll ends), and
//!   the set notes a runner that leaves it with a job ([`Completions::finished`]);
//! - a runner whose job completed exits and deletes itself (the EphemeralRunner controller's
//!   rule), at any time after the completion, but before the listener's next empty long poll
//!   ends (50 s).
//!
//! The clock stands still, so a hold never ends on its own: a job left waiting for a runner
//! the set holds back fails the run.

use proptest::prelude::*;
use scaleset_core::completions::{CompletionLog, Completions};
use scaleset_core::desired::{Bounds, Decision, Scaler};
use scaleset_core::runner_set::{
    ObservedRunner, RunnerPhase, SetPolicy, SetSpec, UnseenWrites, plan,
};
use scaleset_core::time::Timestamp;

/// Which of the set's safeguards a run uses.
#[derive(Clone, Copy)]
struct Safeguards {
    /// `status.observedPatchID`; without it ARC's inference from the runner stamps.
    record_applied: bool,
    /// [`UnseenWrites`] over the runner cache; without it the cache alone.
    overlay: bool,
    /// The listener's completion list and the set's holds.
    completions: bool,
}

const ALL: Safeguards = Safeguards {
    record_applied: true,
    overlay: true,
    completions: true,
};

/// One simulated system: the service's queue, the set object's versions and its runners.
struct World {
    jobs: u32,
    queued: u32,
    completed: u32,
    /// Job events the listener has not handled yet: starts, and completions by runner.
    unhandled_starts: Vec<String>,
    unhandled_completions: Vec<String>,
    scaler: Scaler,
    log: CompletionLog,
    /// `status.observedPatchID` as the listener's last patch returned it.
    observed_by_listener: Option<i64>,
    /// `(spec.replicas, spec.patchID, completed-runners)` after each listener patch; the
    /// first is the empty set.
    spec_versions: Vec<(u32, i64, String)>,
    /// Index of the version the set controller's cache holds.
    cached: usize,
    /// `status.observedPatchID`, or `None` to run ARC's inference from the runner stamps.
    observed_patch_id: Option<i64>,
    safeguards: Safeguards,
    /// The runners in the API server.
    runners: Vec<ObservedRunner>,
    /// The runners in the set controller's watch cache.
    runner_cache: Vec<ObservedRunner>,
    /// The set's own writes laid over the cache, or `None` to read the cache alone.
    unseen: Option<UnseenWrites>,
    completions: Completions,
    /// Runners that left the API server with a job since the runner cache last caught up.
    left_with_job: Vec<String>,
    /// Runners whose job completed, with the newest spec version at that moment.
    done: Vec<(String, usize)>,
    created: u32,
    next_id: u64,
}

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_000_000)
}

impl World {
    fn new(jobs: u32, bounds: Bounds, safeguards: Safeguards) -> Self {
        let mut world = World {
            jobs,
            queued: jobs,
            completed: 0,
            unhandled_starts: Vec::new(),
            unhandled_completions: Vec::new(),
            scaler: Scaler::new(bounds),
            log: CompletionLog::default(),
            observed_by_listener: None,
            spec_versions: vec![(0, 0, String::new())],
            cached: 0,
            observed_patch_id: None,
            safeguards,
            runners: Vec::new(),
            runner_cache: Vec::new(),
            unseen: safeguards.overlay.then(UnseenWrites::default),
            completions: Completions::default(),
            left_with_job: Vec::new(),
            done: Vec::new(),
            created: 0,
            next_id: 0,
        };
        world.listener_patch();
        world
    }

    /// The listener's step after an empty poll (and at session start): it always patches.
    fn listener_patch(&mut self) {
        let d = self.scaler.step(u64::from(self.jobs - self.completed));
        self.write(d);
    }

    /// The listener's patch of decision `d`, which reaches the set.
    fn write(&mut self, d: Decision) {
        self.scaler.written(d);
        let listed = self
            .log
            .listed(d.patch_id, self.observed_by_listener, now());
        self.cached = self.spec_versions.len() - 1;
        self.spec_versions.push((d.target, d.patch_id, listed));
        self.observed_by_listener = self.observed_patch_id;
    }

    fn catch_up(&mut self) {
        self.cached = self.spec_versions.len() - 1;
    }

    /// The runner cache shows the API server. Its watch delivers every change, so the set
    /// notes each runner that left with a job, also one whose job the cache never showed.
    fn runner_cache_catches_up(&mut self) {
        for name in std::mem::take(&mut self.left_with_job) {
            self.completions.finished(&name, now());
        }
        self.runner_cache = self.runners.clone();
    }

    /// Runner `name` leaves the API server.
    fn remove(&mut self, name: &str) {
        if self.runners.iter().any(|r| r.name == name && r.has_job) {
            self.left_with_job.push(name.to_owned());
        }
        self.runners.retain(|r| r.name != name);
    }

    fn set_deletes(&mut self, name: &str) {
        self.remove(name);
        if let Some(unseen) = &mut self.unseen {
            unseen.deleted(name, now());
        }
    }

    fn set_pass(&mut self) {
        let (replicas, patch_id, listed) = &self.spec_versions[self.cached];
        let held = self.completions.held(
            self.safeguards.completions.then_some(listed),
            *patch_id,
            now(),
        );
        let spec = SetSpec {
            replicas: *replicas,
            patch_id: *patch_id,
            applied_patch_id: self.observed_patch_id,
            held: held.count,
        };
        let cached = self.runner_cache.clone();
        let mut observed = match &mut self.unseen {
            Some(unseen) => unseen.overlay(cached, now()),
            None => cached,
        };
        self.completions.mark_done(&mut observed);
        let p = plan(spec, &observed, now(), &SetPolicy::default());
        for name in &p.delete {
            self.set_deletes(name);
        }
        for _ in 0..p.create {
            self.next_id += 1;
            let mut r = ObservedRunner::new(
                format!("runner-{}", self.next_id),
                RunnerPhase::Pending,
                now(),
            );
            r.patch_id = Some(p.stamp_patch_id);
            if let Some(unseen) = &mut self.unseen {
                unseen.created(r.name.clone(), p.stamp_patch_id, now());
            }
            self.runners.push(r);
            self.created += 1;
        }
        // The service removes every candidate that has no job (the cache may not show it).
        let remove: Vec<String> = p
            .scale_down
            .candidates
            .iter()
            .filter(|c| !self.runners.iter().any(|r| r.name == c.name && r.has_job))
            .take(p.scale_down.count as usize)
            .map(|c| c.name.clone())
            .collect();
        for name in &remove {
            self.set_deletes(name);
        }
        if let (true, Some(applied)) = (self.safeguards.record_applied, p.applied_patch_id) {
            self.observed_patch_id = Some(applied);
        }
    }

    /// The service assigns a queued job to an idle runner, which starts it.
    fn assign(&mut self, pick: usize) {
        let idle: Vec<usize> = (0..self.runners.len())
            .filter(|i| !self.runners[*i].has_job)
            .collect();
        if self.queued == 0 || idle.is_empty() {
            return;
        }
        let r = &mut self.runners[idle[pick % idle.len()]];
        r.has_job = true;
        r.phase = RunnerPhase::Running;
        self.unhandled_starts.push(r.name.clone());
        self.queued -= 1;
    }

    /// The listener handles the job events it received and patches the set.
    fn listener_handles(&mut self) {
        if self.unhandled_starts.is_empty() && self.unhandled_completions.is_empty() {
            return;
        }
        if !std::mem::take(&mut self.unhandled_starts).is_empty() {
            self.scaler.mark_dirty();
        }
        for runner in std::mem::take(&mut self.unhandled_completions) {
            self.log.completed(&runner, now());
            self.scaler.mark_completed();
        }
        if let Some(d) = self
            .scaler
            .message_step(u64::from(self.jobs - self.completed))
        {
            self.write(d);
        }
    }

    /// A job whose start the listener handled completes at the service.
    fn complete(&mut self, pick: usize) {
        let busy: Vec<String> = self
            .runners
            .iter()
            .filter(|r| r.has_job && !self.unhandled_starts.contains(&r.name))
            .filter(|r| self.done.iter().all(|(d, _)| *d != r.name))
            .map(|r| r.name.clone())
            .collect();
        if busy.is_empty() {
            return;
        }
        let name = busy[pick % busy.len()].clone();
        self.done.push((name.clone(), self.spec_versions.len() - 1));
        self.completed += 1;
        self.unhandled_completions.push(name);
    }

    /// A long poll ends without messages: the listener steps its scaler with the statistics.
    fn empty_poll(&mut self) {
        if self.done.is_empty() {
            self.runner_cache_catches_up();
            self.listener_patch();
        }
    }

    /// A runner whose job completed exits and is deleted; by then the set's cache holds every
    /// patch written before the completion.
    fn runner_goes(&mut self, pick: usize) {
        if self.done.is_empty() {
            return;
        }
        let (name, newest_then) = self.done.remove(pick % self.done.len());
        self.cached = self.cached.max(newest_then);
        self.remove(&name);
    }

    fn step(&mut self, event: u8, pick: usize) {
        match event % 8 {
            0 => self.set_pass(),
            1 => self.catch_up(),
            2 => self.assign(pick),
            3 => self.complete(pick),
            4 => self.runner_goes(pick),
            5 => self.listener_handles(),
            6 => self.empty_poll(),
            _ => self.runner_cache_catches_up(),
        }
    }

    /// After the random prefix: a fair schedule until every job completed (bounded). It has no
    /// empty long poll: every job gets its runner through the job events alone, none waits
    /// for the listener's next empty poll (50 s).
    fn finish(&mut self) -> bool {
        for _ in 0..10 * (self.jobs + 10) {
            if self.completed == self.jobs {
                return true;
            }
            self.catch_up();
            self.runner_cache_catches_up();
            self.set_pass();
            self.assign(0);
            self.listener_handles();
            self.complete(0);
            self.runner_goes(0);
            self.listener_handles();
        }
        self.completed == self.jobs
    }
}

/// `minRunners` 0, `maxRunners` 1,000.
fn unbounded() -> Bounds {
    Bounds::new(0, 1_000).expect("valid bounds")
}

fn run(jobs: u32, bounds: Bounds, events: &[(u8, usize)], safeguards: Safeguards) -> World {
    let mut world = World::new(jobs, bounds, safeguards);
    for (event, pick) in events {
        world.step(*event, *pick);
    }
    assert!(world.finish(), "a job was left without a runner");
    world
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]
    #[test]
    fn a_burst_creates_one_runner_per_job(
        jobs in 1u32..40,
        min_runners in 0u32..4,
        // Up to 1,000: more jobs than `maxRunners` wait for a runner to finish.
        extra in prop_oneof![1u32..8, Just(1_000)],
        events in proptest::collection::vec((any::<u8>(), any::<usize>()), 0..300),
    ) {
        let bounds = Bounds::new(min_runners, min_runners + extra).expect("valid bounds");
        let world = run(jobs, bounds, &events, ALL);
        prop_assert!(
            world.created <= jobs + min_runners,
            "{} runners created for {jobs} jobs and minRunners {min_runners}",
            world.created,
        );
    }
}

/// The completion list is what closes the last window: a job that completes, and whose runner
/// is gone, while the set has not yet acted on a patch written before the completion.
#[test]
fn a_runner_gone_before_the_patch_for_its_completion_is_not_replaced() {
    // One job: a pass creates its runner, and a pass sees it; it starts the job; the listener
    // handles the start (patch 1); the job completes and the runner goes before the set acted on patch 1 and
    // before the listener handled the completion; then a pass on patch 1.
    let events = [
        (1u8, 0usize),
        (0, 0),
        (7, 0),
        (0, 0),
        (2, 0),
        (5, 0),
        (3, 0),
        (4, 0),
        (7, 0),
        (0, 0),
    ];
    let without = run(
        1,
        unbounded(),
        &events,
        Safeguards {
            completions: false,
            ..ALL
        },
    );
    assert_eq!(
        without.created, 2,
        "the patch's replicas still count the job"
    );
    let with = run(1, unbounded(), &events, ALL);
    assert_eq!(with.created, 1);
}

/// Without the completion list, the record is what stops most over-provisioning: with ARC's
/// inference from the runners' stamps, a runner completing before the listener's next patch
/// lands makes the set scale up again even after it acted on that patch.
#[test]
fn inferring_the_applied_patch_from_the_runners_over_provisions() {
    // One job: a pass on patch 0 creates its runner, which starts the job; the listener
    // handles the start (patch 1) and a pass acts on it (nothing to create); the job completes
    // and the runner goes before the listener handles the completion; a pass on patch 1 then
    // finds no runner stamped with it.
    let events = [
        (1u8, 0usize),
        (7, 0),
        (0, 0),
        (7, 0),
        (2, 0),
        (5, 0),
        (1, 0),
        (7, 0),
        (0, 0),
        (3, 0),
        (4, 0),
        (7, 0),
        (0, 0),
    ];
    let record_only = Safeguards {
        completions: false,
        ..ALL
    };
    let inferred = run(
        1,
        unbounded(),
        &events,
        Safeguards {
            record_applied: false,
            ..record_only
        },
    );
    assert_eq!(
        inferred.created, 2,
        "ARC's inference creates a second runner"
    );
    let recorded = run(1, unbounded(), &events, record_only);
    assert_eq!(recorded.created, 1);
}

/// The overlay is what makes a watch cache safe to plan from: a pass on a new patch that
/// follows the set's own creations before the cache shows them creates the runners again.
#[test]
fn planning_from_a_lagging_runner_cache_alone_over_provisions() {
    // Two jobs: a pass creates two runners; one starts its job and the listener patches again;
    // a pass on that patch runs before the runner cache shows the two runners.
    let events = [(1u8, 0usize), (0, 0), (2, 0), (5, 0), (1, 0), (0, 0)];
    let cache_alone = run(
        2,
        unbounded(),
        &events,
        Safeguards {
            overlay: false,
            ..ALL
        },
    );
    assert!(
        cache_alone.created > 2,
        "{} runners for 2 jobs",
        cache_alone.created
    );
    let overlaid = run(2, unbounded(), &events, ALL);
    assert_eq!(overlaid.created, 2);
}

/// More jobs than `maxRunners`: the second job waits for the first one's runner. The listener
/// handles the first completion and its patch lists the runner while that runner still looks
/// live; the set acts on that patch, and then the runner goes. Counting the runner, the set
/// would see its count met, record the patch as acted on, and create nothing for the waiting
/// job until the listener's next empty poll.
#[test]
fn a_runner_whose_job_is_done_is_replaced_before_it_exits() {
    // Catch up and a pass (runner-1), the cache shows it, the job starts on it, the listener
    // handles the start (patch 1), the job completes, the listener handles it (patch 2 lists
    // runner-1), catch up and a pass on patch 2, then runner-1 goes.
    let events = [
        (1u8, 0usize),
        (0, 0),
        (7, 0),
        (2, 0),
        (5, 0),
        (3, 0),
        (5, 0),
        (1, 0),
        (0, 0),
        (4, 0),
    ];
    let mut world = World::new(2, Bounds::new(0, 1).expect("valid bounds"), ALL);
    for (event, pick) in events {
        world.step(event, pick);
    }
    assert_eq!(
        world.created, 2,
        "the pass on patch 2 creates the second runner"
    );
    assert!(world.finish(), "the second job was left without a runner");
}
