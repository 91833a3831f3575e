use super::*;
use proptest::prelude::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_seconds(secs)
}

fn spec(replicas: u32, patch_id: i64) -> SetSpec {
    SetSpec {
        replicas,
        patch_id,
        applied_patch_id: None,
        held: 0,
    }
}

fn run(name: &str, phase: RunnerPhase, created: i64) -> ObservedRunner {
    ObservedRunner::new(name, phase, t(created))
}

const NOW: i64 = 10_000;

fn plan_default(s: SetSpec, runners: &[ObservedRunner]) -> ScalePlan {
    plan(s, runners, t(NOW), &SetPolicy::default())
}

/// ARC's behaviour: failed runners hold a slot until a cleanup, no TTL, no pause.
fn arc_policy() -> SetPolicy {
    SetPolicy {
        count_failed: true,
        failed_ttl: None,
        pause_after_failed: None,
    }
}

fn names(c: &[Candidate]) -> Vec<&str> {
    c.iter().map(|c| c.name.as_str()).collect()
}

/// ARC ephemeralrunnerset_controller_test "should scale up with patchID 0".
#[test]
fn patch_id_zero_scales_up_to_replicas() {
    let p = plan_default(spec(3, 0), &[]);
    assert_eq!(p.outcome, Outcome::ScaleUp);
    assert_eq!(p.create, 3);
    assert_eq!(p.stamp_patch_id, 0);
}

/// ARC test "should scale up when patchID changes".
#[test]
fn new_patch_id_scales_up() {
    let runners = [run("a", RunnerPhase::Running, 1).with_patch_id(1)];
    let p = plan_default(spec(3, 2), &runners);
    assert_eq!(
        (p.outcome, p.create, p.stamp_patch_id),
        (Outcome::ScaleUp, 2, 2)
    );
}

/// ARC#3371 (overscaling): a patchID already acted on does nothing, even if runners finished.
#[test]
fn same_patch_id_waits_and_keeps_finished() {
    let runners = [
        run("a", RunnerPhase::Running, 1).with_patch_id(4),
        run("b", RunnerPhase::Succeeded, 1).with_patch_id(4),
    ];
    let p = plan_default(spec(3, 4), &runners);
    assert_eq!(p.outcome, Outcome::AlreadyApplied);
    assert_eq!(p.create, 0);
    assert!(p.delete.is_empty());
    // a new patch id removes the finished runner and tops up
    let p = plan_default(spec(3, 5), &runners);
    assert_eq!(p.delete, vec!["b".to_string()]);
    assert_eq!(p.create, 2);
}

/// ARC test "should not remove pending runner when replicas decrease with patchID > 0".
#[test]
fn lower_replicas_with_positive_patch_id_drains() {
    let runners = [
        run("a", RunnerPhase::Pending, 1).with_patch_id(1),
        run("b", RunnerPhase::Running, 1)
            .with_patch_id(1)
            .with_runner_id(9),
    ];
    let p = plan_default(spec(0, 2), &runners);
    assert_eq!(p.outcome, Outcome::Draining);
    assert_eq!(p.scale_down, ScaleDown::default());
}

/// ARC test "patchID 0 removes only job-less pending or running runners"; ADR 2022-12-27.
#[test]
fn patch_id_zero_scales_down_idle_only_in_preference_order() {
    let runners = [
        run("running-old", RunnerPhase::Running, 1).with_runner_id(1),
        run("running-busy", RunnerPhase::Running, 0)
            .with_runner_id(2)
            .with_job(true),
        run("pending-reg", RunnerPhase::Pending, 5).with_runner_id(3),
        run("unregistered", RunnerPhase::Pending, 9),
        run("running-new", RunnerPhase::Running, 7).with_runner_id(4),
        run("gone", RunnerPhase::Running, 0)
            .with_runner_id(5)
            .deleting(),
    ];
    let p = plan_default(spec(1, 0), &runners);
    assert_eq!(p.outcome, Outcome::ScaleDown);
    assert_eq!(p.scale_down.count, 4);
    assert_eq!(
        names(&p.scale_down.candidates),
        ["unregistered", "pending-reg", "running-old", "running-new"]
    );
    assert_eq!(p.scale_down.candidates[0].runner_id, None);
    assert_eq!(p.scale_down.candidates[1].runner_id, Some(3));
}

/// ARC#3700: failed runners do not hold capacity by default; ARC's policy counts them.
#[test]
fn failed_runners_do_not_count_against_replicas() {
    let runners = [
        run("ok", RunnerPhase::Running, 1).with_runner_id(1),
        run("bad", RunnerPhase::Failed, NOW - 10),
    ];
    let p = plan_default(spec(2, 0), &runners);
    assert_eq!((p.outcome, p.create), (Outcome::ScaleUp, 1));
    assert_eq!(p.status.current_replicas, 1);
    assert_eq!(p.status.failed, 1);
    let p = plan(spec(2, 0), &runners, t(NOW), &arc_policy());
    assert_eq!((p.outcome, p.create), (Outcome::Steady, 0));
    assert_eq!(p.status.current_replicas, 2);
}

/// A broken template must not create failing runners in a loop.
#[test]
fn creation_pauses_after_many_failures_until_they_expire() {
    let failed: Vec<_> = (0..5)
        .map(|i| run(&format!("f{i}"), RunnerPhase::Failed, NOW - 60))
        .collect();
    let p = plan_default(spec(2, 0), &failed);
    assert_eq!((p.outcome, p.create), (Outcome::CreationPaused, 0));
    let later = plan(spec(2, 0), &failed, t(NOW + 15 * 60), &SetPolicy::default());
    assert_eq!(later.delete.len(), 5);
    assert_eq!((later.outcome, later.create), (Outcome::ScaleUp, 2));
}

/// ARC keeps failed runners forever (no TTL).
#[test]
fn arc_policy_keeps_failed_runners() {
    let runners = [run("bad", RunnerPhase::Failed, 0)];
    let p = plan(spec(0, 0), &runners, t(NOW * 100), &arc_policy());
    assert!(p.delete.is_empty());
}

/// After a listener restart the sequence starts again (0, 1, 2, …) below the stamps of older
/// runners; those lower patch ids must still scale up.
#[test]
fn lower_patch_id_after_listener_restart_still_scales() {
    let runners = [run("a", RunnerPhase::Running, 1).with_patch_id(57)];
    let p = plan_default(spec(5, 3), &runners);
    assert_eq!(
        (p.outcome, p.create, p.stamp_patch_id),
        (Outcome::ScaleUp, 4, 3)
    );
}

/// Listener restart sends patchID 0 even though runners carry higher stamps: authoritative.
#[test]
fn listener_restart_patch_zero_is_authoritative() {
    let runners = [run("a", RunnerPhase::Running, 1)
        .with_patch_id(90)
        .with_runner_id(3)];
    let p = plan_default(spec(0, 0), &runners);
    assert_eq!(p.outcome, Outcome::ScaleDown);
}

/// The applied patchID is what the status records, not the newest runner stamp: once the last
/// runner of patch 4 completed and went, patch 4 is still applied and nothing is created for
/// its stale `replicas`. Without the record (ARC's inference) the set scales up again.
#[test]
fn recorded_patch_id_outlives_its_runners() {
    let recorded = SetSpec {
        applied_patch_id: Some(4),
        ..spec(2, 4)
    };
    let p = plan_default(recorded, &[]);
    assert_eq!((p.outcome, p.create), (Outcome::AlreadyApplied, 0));
    let inferred = plan_default(spec(2, 4), &[]);
    assert_eq!((inferred.outcome, inferred.create), (Outcome::ScaleUp, 2));
    // a stamp newer than the record does not make an unapplied patch look applied
    let runners = [run("a", RunnerPhase::Running, 1).with_patch_id(5)];
    let p = plan_default(
        SetSpec {
            applied_patch_id: Some(4),
            ..spec(3, 5)
        },
        &runners,
    );
    assert_eq!(
        (p.outcome, p.create, p.applied_patch_id),
        (Outcome::ScaleUp, 2, Some(5))
    );
}

/// A runner that finished with a job `replicas` still counts is not replaced, and the patch is
/// acted on again once the hold ends (docs/architecture.md#the-patchid-protocol).
#[test]
fn held_creations_leave_the_patch_unapplied() {
    let runners = [run("a", RunnerPhase::Running, 1).with_job(true)];
    let all_held = plan_default(
        SetSpec {
            held: 1,
            ..spec(2, 5)
        },
        &runners,
    );
    assert_eq!(
        (all_held.outcome, all_held.create, all_held.applied_patch_id),
        (Outcome::Held, 0, None)
    );
    let some_held = plan_default(
        SetSpec {
            held: 1,
            ..spec(4, 5)
        },
        &runners,
    );
    assert_eq!(
        (
            some_held.outcome,
            some_held.create,
            some_held.applied_patch_id
        ),
        (Outcome::ScaleUp, 2, None)
    );
    let more_held_than_missing = plan_default(
        SetSpec {
            held: 3,
            ..spec(2, 5)
        },
        &runners,
    );
    assert_eq!(more_held_than_missing.create, 0);
    let none_missing = plan_default(
        SetSpec {
            held: 3,
            ..spec(1, 5)
        },
        &runners,
    );
    assert_eq!(
        (none_missing.outcome, none_missing.applied_patch_id),
        (Outcome::Steady, Some(5))
    );
}

/// docs/architecture.md#the-patchid-protocol: unparsable or missing stamps are ignored; deleting
/// runners count.
#[test]
fn latest_patch_id_includes_deleting_runners() {
    let runners = [
        run("a", RunnerPhase::Running, 1).with_patch_id(3),
        run("b", RunnerPhase::Running, 1)
            .with_patch_id(8)
            .deleting(),
        run("c", RunnerPhase::Running, 1),
    ];
    assert_eq!(latest_patch_id(&runners), 8);
    assert_eq!(latest_patch_id(&[]), 0);
}

/// docs/architecture.md#runner-set-status: counters and the Outdated flag.
#[test]
fn status_counters() {
    let runners = [
        run("p", RunnerPhase::Pending, 1),
        run("r", RunnerPhase::Running, 1),
        run("f", RunnerPhase::Failed, 1),
        run("o", RunnerPhase::Outdated, 1),
        run("d", RunnerPhase::Running, 1).deleting(),
        run("s", RunnerPhase::Succeeded, 1),
    ];
    let s = status(&runners, &arc_policy());
    assert_eq!(
        s,
        SetStatus {
            current_replicas: 3,
            pending: 1,
            running: 1,
            failed: 1,
            outdated: true
        }
    );
}

/// docs/architecture.md#runner-set-cleanup: cleanup partitions runners; deleting ones are left to
/// their finalizer.
#[test]
fn cleanup_partitions() {
    let runners = [
        run("fin", RunnerPhase::Succeeded, 1),
        run("out", RunnerPhase::Outdated, 1),
        run("busy", RunnerPhase::Running, 1)
            .with_runner_id(2)
            .with_job(true),
        run("idle", RunnerPhase::Running, 1).with_runner_id(3),
        run("del", RunnerPhase::Running, 1).deleting(),
    ];
    let c = cleanup(&runners);
    assert_eq!(c.delete, ["fin", "out"]);
    assert_eq!(names(&c.remove_then_delete), ["idle"]);
    assert_eq!(c.waiting_for_jobs, ["busy"]);
    assert!(!c.done);
}

/// docs/architecture.md#ephemeralrunnerset-reconciler order: deletion, finalizer, spec change,
/// outdated, scale.
#[test]
fn set_step_order() {
    let all = |deleting, finalizer, spec_hash_current| SetObservation {
        deleting,
        finalizer,
        spec_hash_current,
    };
    assert_eq!(set_step(&all(true, false, false), true), SetStep::Finalize);
    assert_eq!(
        set_step(&all(false, false, false), true),
        SetStep::AddFinalizer
    );
    assert_eq!(
        set_step(&all(false, true, false), true),
        SetStep::ReplaceRunners
    );
    assert_eq!(
        set_step(&all(false, true, true), true),
        SetStep::CleanupOutdated
    );
    assert_eq!(set_step(&all(false, true, true), false), SetStep::Scale);
}

fn any_phase() -> impl Strategy<Value = RunnerPhase> {
    prop_oneof![
        Just(RunnerPhase::Pending),
        Just(RunnerPhase::Running),
        Just(RunnerPhase::Succeeded),
        Just(RunnerPhase::Failed),
        Just(RunnerPhase::Outdated),
    ]
}

fn any_runners() -> impl Strategy<Value = Vec<ObservedRunner>> {
    proptest::collection::vec(
        (
            any_phase(),
            any::<bool>(),
            proptest::option::of(0i64..6),
            -1i64..4,
            any::<bool>(),
            0i64..NOW,
        ),
        0..20,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(
                |(i, (phase, deleting, patch, id, job, created))| ObservedRunner {
                    name: format!("r{i}"),
                    phase,
                    deleting,
                    patch_id: patch,
                    runner_id: id,
                    has_job: job,
                    created_at: t(created),
                    failed_at: None,
                    job_done: false,
                },
            )
            .collect()
    })
}

fn any_policy() -> impl Strategy<Value = SetPolicy> {
    (
        any::<bool>(),
        proptest::option::of(0u64..NOW as u64),
        proptest::option::of(0u32..6),
    )
        .prop_map(|(count_failed, ttl, pause)| SetPolicy {
            count_failed,
            failed_ttl: ttl.map(Duration::from_secs),
            pause_after_failed: pause,
        })
}

proptest! {
    #[test]
    fn scale_down_never_selects_busy_or_deleting(
        runners in any_runners(), replicas in 0u32..10, patch in 0i64..6, policy in any_policy()
    ) {
        let p = plan(spec(replicas, patch), &runners, t(NOW), &policy);
        for c in &p.scale_down.candidates {
            let r = runners.iter().find(|r| r.name == c.name).expect("candidate is a runner");
            prop_assert!(!r.has_job && !r.deleting);
            prop_assert!(matches!(r.phase, RunnerPhase::Pending | RunnerPhase::Running));
            prop_assert_eq!(c.runner_id, (r.runner_id > 0).then_some(r.runner_id));
        }
        for name in &p.delete {
            let r = runners.iter().find(|r| &r.name == name).expect("deleted is a runner");
            prop_assert!(matches!(r.phase, RunnerPhase::Succeeded | RunnerPhase::Failed));
            prop_assert!(!r.deleting);
            prop_assert!(!p.scale_down.candidates.iter().any(|c| &c.name == name));
        }
        if patch > 0 {
            prop_assert!(p.scale_down.candidates.is_empty() && p.scale_down.count == 0);
        }
        // no runner is both deleted and kept: the counts cover exactly the runners not deleted
        let kept: Vec<ObservedRunner> =
            runners.iter().filter(|r| !p.delete.contains(&r.name)).cloned().collect();
        let mut expected = status(&kept, &policy);
        expected.failed = kept.iter().filter(|r| r.phase == RunnerPhase::Failed && !r.deleting).count() as u32;
        prop_assert_eq!(p.status, expected);
        // creation never overshoots the desired count
        prop_assert!(p.create == 0 || p.status.current_replicas + p.create == replicas);
        prop_assert!(p.create == 0 || p.scale_down.count == 0);
    }

    #[test]
    fn cleanup_is_a_partition_and_spares_busy(runners in any_runners()) {
        let c = cleanup(&runners);
        for r in &runners {
            let hits = usize::from(c.delete.contains(&r.name))
                + usize::from(c.remove_then_delete.iter().any(|x| x.name == r.name))
                + usize::from(c.waiting_for_jobs.contains(&r.name));
            prop_assert_eq!(hits, usize::from(!r.deleting));
            if r.has_job && matches!(r.phase, RunnerPhase::Pending | RunnerPhase::Running) && !r.deleting {
                prop_assert!(c.waiting_for_jobs.contains(&r.name));
            }
        }
        prop_assert_eq!(c.done, runners.is_empty());
    }

    /// Random worlds driven by the listener's scaler: a runner with a job is never removed, and
    /// the live runner count never exceeds max(previous live count, replicas).
    #[test]
    fn simulated_world_never_removes_busy_runners(
        events in proptest::collection::vec((0u64..8, 0usize..4, any::<bool>(), any::<bool>()), 1..40)
    ) {
        let bounds = crate::desired::Bounds::new(1, 6).expect("bounds");
        let mut scaler = crate::desired::Scaler::new(bounds);
        let mut world: Vec<ObservedRunner> = Vec::new();
        let mut next = 0u32;
        let mut clock = 0i64;
        let policy = SetPolicy::default();
        for (assigned, pick, job_event, fail) in events {
            clock += 30;
            // the world moves: a runner registers / starts / takes a job / fails / finishes
            if let Some(r) = world.get_mut(pick) {
                if r.runner_id <= 0 { r.runner_id = i64::from(next) + 100; }
                else if r.phase == RunnerPhase::Pending { r.phase = RunnerPhase::Running; }
                else if fail { r.phase = RunnerPhase::Failed; r.failed_at = Some(t(clock)); }
                else if !r.has_job { r.has_job = true; scaler.mark_dirty(); }
                else if job_event { world.remove(pick); scaler.mark_dirty(); }
            }
            let d = scaler.step(assigned);
            let live_before = world.iter().filter(|r| matches!(r.phase, RunnerPhase::Pending | RunnerPhase::Running)).count();
            let p = plan(spec(d.target, d.patch_id), &world, t(clock), &policy);
            world.retain(|r| !p.delete.contains(&r.name));
            for c in p.scale_down.candidates.iter().take(p.scale_down.count as usize) {
                let i = world.iter().position(|r| r.name == c.name).expect("candidate exists");
                prop_assert!(!world[i].has_job, "busy runner {} chosen", c.name);
                world.remove(i);
            }
            for _ in 0..p.create {
                world.push(ObservedRunner::new(format!("n{next}"), RunnerPhase::Pending, t(clock))
                    .with_patch_id(p.stamp_patch_id));
                next += 1;
            }
            let live_after = world.iter().filter(|r| matches!(r.phase, RunnerPhase::Pending | RunnerPhase::Running)).count();
            prop_assert!(live_after <= live_before.max(d.target as usize));
            prop_assert!(d.target <= bounds.max_runners());
        }
    }
}

#[test]
fn routine_changes_wait_for_the_delay_and_phases_do_not() {
    let now = Timestamp::from_unix_seconds(100);
    let recent = Some(Timestamp::from_unix_millis(99_500));
    assert_eq!(
        status_write(StatusChanges::None, recent, now),
        StatusWrite::Unchanged
    );
    assert_eq!(
        status_write(StatusChanges::Phase, None, now),
        StatusWrite::Now
    );
    assert_eq!(
        status_write(StatusChanges::Routine, None, now),
        StatusWrite::After(ROUTINE_DELAY),
        "the first routine change waits the whole delay"
    );
    assert_eq!(
        status_write(StatusChanges::Routine, recent, now),
        StatusWrite::After(ROUTINE_DELAY - Duration::from_millis(500))
    );
    let long_ago = Some(Timestamp::from_unix_seconds(90));
    assert_eq!(
        status_write(StatusChanges::Routine, long_ago, now),
        StatusWrite::Now
    );
}
