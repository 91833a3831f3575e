use super::*;
use proptest::prelude::*;

const URL: &str = "https://github.com/org";

fn desired() -> DesiredScaleSet {
    DesiredScaleSet::from_spec("arc", None, None, &[], URL)
}

fn recorded() -> Recorded {
    Recorded {
        id: Some(7),
        config_url: Some(URL.into()),
        name: Some("arc".into()),
        runner_group_name: Some("Default".into()),
    }
}

fn service() -> ServiceScaleSet {
    ServiceScaleSet {
        id: 7,
        name: "arc".into(),
        runner_group_id: 1,
        runner_group_name: "Default".into(),
        labels: vec!["arc".into()],
    }
}

fn found(s: ServiceScaleSet) -> ServiceView {
    ServiceView::Found(s)
}

/// Behaviour 1 (docs/architecture.md#integration-behaviours): a new ARS creates (or adopts) its
/// scale set.
#[test]
fn missing_id_finds_or_creates() {
    assert_eq!(
        sync_scale_set(&desired(), &Recorded::default(), &ServiceView::Missing),
        SyncStep::FindOrCreate
    );
    assert_eq!(on_lookup(Some(&service())), Lookup::Adopt(7));
    assert_eq!(on_lookup(None), Lookup::Create);
}

#[test]
fn in_sync_when_service_matches() {
    assert_eq!(
        sync_scale_set(&desired(), &recorded(), &found(service())),
        SyncStep::InSync
    );
    // case differences are not drift (the annotations record the service's spelling)
    let mut s = service();
    s.name = "ARC".into();
    s.labels = vec!["Arc".into()];
    let r = Recorded {
        name: Some("ARC".into()),
        ..recorded()
    };
    assert_eq!(sync_scale_set(&desired(), &r, &found(s)), SyncStep::InSync);
}

/// Behaviour 6 (docs/architecture.md#integration-behaviours): runnerScaleSetName and runnerGroup
/// changes are pushed to the service.
#[test]
fn rename_and_regroup_are_updates() {
    let d = DesiredScaleSet::from_spec("arc", Some("arc-v2"), Some("gpu-group"), &[], URL);
    let SyncStep::Update(u) = sync_scale_set(&d, &recorded(), &found(service())) else {
        panic!("expected an update");
    };
    assert_eq!(u.name.as_deref(), Some("arc-v2"));
    assert_eq!(u.runner_group, Some(Some("gpu-group".into())));
    assert_eq!(u.labels, Some(vec!["arc-v2".to_string()]));
}

/// ARC quirk (docs/architecture.md#scale-set-sync): emptying runnerGroup does not move back; here
/// it does.
#[test]
fn empty_group_moves_back_to_default() {
    let mut s = service();
    s.runner_group_id = 9;
    s.runner_group_name = "gpu".into();
    let SyncStep::Update(u) = sync_scale_set(&desired(), &recorded(), &found(s)) else {
        panic!("expected an update");
    };
    assert_eq!(u.runner_group, Some(None));
}

/// ARC#2445 / #4408: label edits after creation are pushed (ARC never pushes them).
#[test]
fn label_change_is_an_update() {
    let d = DesiredScaleSet::from_spec("arc", None, None, &["gpu".into()], URL);
    let SyncStep::Update(u) = sync_scale_set(&d, &recorded(), &found(service())) else {
        panic!("expected an update");
    };
    assert_eq!(
        u,
        ScaleSetUpdate {
            labels: Some(vec!["arc".into(), "gpu".into()]),
            ..Default::default()
        }
    );
}

/// ARC#4579: labels silently dropped by the server are reported, not retried forever.
#[test]
fn dropped_labels_are_reported() {
    let asked = ScaleSetUpdate {
        labels: Some(vec!["arc".into(), "gpu".into()]),
        ..Default::default()
    };
    assert_eq!(not_applied(&asked, &service()).labels, asked.labels);
    let mut ok = service();
    ok.labels.push("GPU".into());
    assert!(not_applied(&asked, &ok).is_empty());
}

/// Quirk Q5 (docs/architecture.md#arc-reconciler-quirks) / ADR 2022-10-27: a changed
/// githubConfigUrl is refused with a fix in the message.
#[test]
fn changed_config_url_is_refused() {
    let d = DesiredScaleSet::from_spec("arc", None, None, &[], "https://github.com/other-org");
    let SyncStep::Refuse(e) = sync_scale_set(&d, &recorded(), &found(service())) else {
        panic!("expected a refusal");
    };
    let msg = e.to_string();
    assert!(msg.contains("spec.githubConfigUrl"));
    assert!(msg.contains("https://github.com/other-org"));
    assert!(msg.contains("set githubConfigUrl back"));
    // trailing slash and case are not a change
    let d = DesiredScaleSet::from_spec("arc", None, None, &[], "https://GitHub.com/org/");
    assert_eq!(
        sync_scale_set(&d, &recorded(), &found(service())),
        SyncStep::InSync
    );
}

#[test]
fn unrecorded_config_url_is_recorded_first() {
    let r = Recorded {
        config_url: None,
        ..recorded()
    };
    assert_eq!(
        sync_scale_set(&desired(), &r, &found(service())),
        SyncStep::RecordConfigUrl
    );
}

/// The service's names are recorded once the scale set is otherwise in sync (after a rename,
/// or when adopting a scale set whose group an older installation did not record).
#[test]
fn service_names_are_recorded_after_the_update() {
    let d = DesiredScaleSet::from_spec("arc", Some("arc-v2"), None, &[], URL);
    assert!(matches!(
        sync_scale_set(&d, &recorded(), &found(service())),
        SyncStep::Update(_)
    ));
    let mut renamed = service();
    renamed.name = "arc-v2".into();
    renamed.labels = vec!["arc-v2".into()];
    assert_eq!(
        sync_scale_set(&d, &recorded(), &found(renamed.clone())),
        SyncStep::RecordNames {
            name: "arc-v2".into(),
            runner_group_name: "Default".into()
        }
    );
    let r = Recorded {
        name: Some("arc-v2".into()),
        ..recorded()
    };
    assert_eq!(sync_scale_set(&d, &r, &found(renamed)), SyncStep::InSync);
    let r = Recorded {
        runner_group_name: None,
        ..recorded()
    };
    assert!(matches!(
        sync_scale_set(&desired(), &r, &found(service())),
        SyncStep::RecordNames { .. }
    ));
}

/// ARC#4370 / #3935: the service lost the scale set: re-create it.
#[test]
fn lost_scale_set_is_recreated() {
    assert_eq!(
        sync_scale_set(&desired(), &recorded(), &ServiceView::Missing),
        SyncStep::Recreate { lost_id: 7 }
    );
}

/// docs/architecture.md#spec-drift-and-rollout / behaviour 7: ARC drains while runners are active.
#[test]
fn arc_spec_drift_drains_active_runners() {
    assert_eq!(on_spec_drift(1, 0, DriftPolicy::Drain), SpecDrift::Drain);
    assert_eq!(on_spec_drift(0, 2, DriftPolicy::Drain), SpecDrift::Drain);
    assert_eq!(
        on_spec_drift(0, 0, DriftPolicy::Drain),
        SpecDrift::PatchInPlace
    );
}

/// ARC#4432 / #4200: with idle minRunners the drain never ends; the default replaces instead.
#[test]
fn default_spec_drift_never_blocks_on_idle_runners() {
    assert_eq!(DriftPolicy::default(), DriftPolicy::Replace);
    assert_eq!(
        on_spec_drift(0, 5, DriftPolicy::default()),
        SpecDrift::PatchInPlace
    );
}

/// The version gate rules (docs/architecture.md#version-gate).
#[test]
fn version_gate_table() {
    let cases = [
        (Some("0.11.0"), "dev", true),
        (Some("dev"), "0.11.0", false),
        (Some("0.11.0"), "NA", false),
        (Some("0.11.0"), "1.11.0", false),
        (Some("0.11.0"), "0.10.0", false),
        (Some("0.11.1"), "0.11.0", true),
        (Some("abc"), "abc", true),
        (None, "0.14.2", false),
        (Some("0.11.0-rc1"), "0.11.3", true),
        (Some("v0.11.0"), "0.11.0", false),
        (Some("01.1.0"), "1.1.0", false),
        (Some("1"), "1.0.5", true),
        (Some("0.14.2"), "canary-abc", true),
    ];
    for (resource, build, want) in cases {
        assert_eq!(
            version_allowed(resource, build),
            want,
            "{resource:?} vs {build}"
        );
    }
}

/// Behaviour 2 (docs/architecture.md#integration-behaviours): deletion works without a recorded
/// scale-set id.
#[test]
fn deletion_without_scale_set_id() {
    let o = DeletionObservation {
        listener: Presence::Absent,
        runner_set: Presence::Absent,
        runner_set_at_zero: false,
        scale_set_id: None,
        protected: vec![],
    };
    assert_eq!(deletion_step(&o), DeletionStep::RemoveFinalizer);
}

/// Cleanup-protection removal order (docs/architecture.md#ars-deletion-order).
#[test]
fn cleanup_finalizers_in_order() {
    let o = DeletionObservation {
        listener: Presence::Absent,
        runner_set: Presence::Absent,
        runner_set_at_zero: true,
        scale_set_id: None,
        protected: vec![
            CleanupTarget::ManagerRole,
            CleanupTarget::GithubSecret,
            CleanupTarget::KubernetesModeRole,
        ],
    };
    assert_eq!(
        deletion_step(&o),
        DeletionStep::RemoveCleanupFinalizer(CleanupTarget::KubernetesModeRole)
    );
}

fn presence() -> impl Strategy<Value = Presence> {
    prop_oneof![
        Just(Presence::Absent),
        Just(Presence::Present),
        Just(Presence::Terminating)
    ]
}

fn targets() -> impl Strategy<Value = Vec<CleanupTarget>> {
    proptest::sample::subsequence(CleanupTarget::ORDER.to_vec(), 0..=7)
}

proptest! {
    /// Deletion-order invariants for any observation.
    #[test]
    fn deletion_order_invariants(
        listener in presence(), runner_set in presence(), at_zero in any::<bool>(),
        id in proptest::option::of(1i64..100), protected in targets(),
    ) {
        let o = DeletionObservation { listener, runner_set, runner_set_at_zero: at_zero, scale_set_id: id, protected: protected.clone() };
        let step = deletion_step(&o);
        if listener != Presence::Absent {
            prop_assert_eq!(step.stage(), 1);
        }
        if matches!(step, DeletionStep::ScaleToZero | DeletionStep::StopRunners | DeletionStep::WaitForRunners(_)) {
            prop_assert_eq!(listener, Presence::Absent);
        }
        if matches!(step, DeletionStep::StopRunners) {
            prop_assert!(at_zero);
        }
        if let DeletionStep::DeleteScaleSet(_) = step {
            prop_assert!(listener == Presence::Absent && runner_set == Presence::Absent);
        }
        if let DeletionStep::RemoveCleanupFinalizer(_) = step {
            prop_assert!(id.is_none() && runner_set == Presence::Absent);
        }
        if step == DeletionStep::RemoveFinalizer {
            prop_assert!(listener == Presence::Absent && runner_set == Presence::Absent);
            prop_assert!(id.is_none() && protected.is_empty());
        }
    }

    /// Carrying out each step in a simulated cluster terminates, never goes backwards, and ends
    /// with the finalizer removed.
    #[test]
    fn deletion_runs_to_completion_in_order(
        listener in presence(), runner_set in presence(), at_zero in any::<bool>(),
        id in proptest::option::of(1i64..100), protected in targets(), slow in 0u8..4,
    ) {
        let mut o = DeletionObservation { listener, runner_set, runner_set_at_zero: at_zero, scale_set_id: id, protected };
        let mut stage = 0;
        let mut waits = 0u8;
        for _ in 0..40 {
            let step = deletion_step(&o);
            prop_assert!(step.stage() >= stage, "went back from {} to {:?}", stage, step);
            stage = step.stage();
            match step {
                DeletionStep::StopListener => o.listener = Presence::Terminating,
                DeletionStep::WaitForListener(_) => { waits += 1; if waits > slow { o.listener = Presence::Absent; } }
                DeletionStep::ScaleToZero => o.runner_set_at_zero = true,
                DeletionStep::StopRunners => o.runner_set = Presence::Terminating,
                DeletionStep::WaitForRunners(_) => { waits += 1; if waits > slow * 2 { o.runner_set = Presence::Absent; } }
                DeletionStep::DeleteScaleSet(_) => o.scale_set_id = None,
                DeletionStep::RemoveCleanupFinalizer(t) => o.protected.retain(|x| *x != t),
                DeletionStep::RemoveFinalizer => return Ok(()),
            }
        }
        prop_assert!(false, "deletion did not finish");
    }

    /// Label lists are deduplicated, start with the name, and never contain blanks.
    #[test]
    fn labels_normalized(name in "[a-z]{1,8}", extra in proptest::collection::vec("[a-zA-Z ]{0,6}", 0..6)) {
        let l = scale_set_labels(&name, &extra);
        prop_assert_eq!(&l[0], &name);
        for (i, a) in l.iter().enumerate() {
            prop_assert!(!a.trim().is_empty());
            prop_assert!(!l[i + 1..].iter().any(|b| b.eq_ignore_ascii_case(a)));
        }
    }
}

fn converged() -> ArsObservation {
    ArsObservation {
        deleting: false,
        finalizer: true,
        version_allowed: true,
        invalid_spec: None,
        spec_hash_current: true,
        phase_outdated: false,
        scale_set: Some(SyncStep::InSync),
        runner_set: Presence::Present,
        runner_set_outdated: false,
        runner_set_spec_current: true,
        runner_set_hash_current: true,
        runner_set_metadata_current: true,
        active_runners: 0,
        listener: Presence::Present,
        listener_current: true,
        listener_bounds_current: true,
        status_current: true,
    }
}

/// Behaviour 3 (docs/architecture.md#integration-behaviours): steady state is stable.
#[test]
fn converged_ars_does_nothing() {
    assert_eq!(
        ars_step(&converged(), DriftPolicy::default()),
        ArsStep::Done
    );
    let o = ArsObservation {
        status_current: false,
        ..converged()
    };
    assert_eq!(ars_step(&o, DriftPolicy::default()), ArsStep::UpdateStatus);
}

/// docs/architecture.md#ars-reconcile-order: deletion, version gate, finalizer, spec checks, hash,
/// scale set.
#[test]
fn ars_step_order() {
    let d = DriftPolicy::default();
    let o = ArsObservation {
        deleting: true,
        version_allowed: false,
        ..converged()
    };
    assert_eq!(
        ars_step(&o, d),
        ArsStep::Deletion(DeletionObservationNeeded)
    );
    let o = ArsObservation {
        deleting: true,
        finalizer: false,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::Done);
    let o = ArsObservation {
        version_allowed: false,
        finalizer: false,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::DeleteSelf);
    let o = ArsObservation {
        finalizer: false,
        invalid_spec: Some("bad".into()),
        spec_hash_current: false,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::AddFinalizer);
    let o = ArsObservation {
        invalid_spec: Some("bad".into()),
        spec_hash_current: false,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::Invalid("bad".into()));
    let o = ArsObservation {
        spec_hash_current: false,
        scale_set: None,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::MarkPending);
    let o = ArsObservation {
        scale_set: Some(SyncStep::FindOrCreate),
        runner_set: Presence::Absent,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::ScaleSet(SyncStep::FindOrCreate));
}

/// The service is asked only when the pass gets to the scale set, and then before anything
/// that needs its id.
#[test]
fn scale_set_is_observed_when_needed() {
    let d = DriftPolicy::default();
    let o = ArsObservation {
        scale_set: None,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::ObserveScaleSet);
    let o = ArsObservation {
        scale_set: None,
        spec_hash_current: false,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::MarkPending);
    let o = ArsObservation {
        scale_set: None,
        phase_outdated: true,
        ..converged()
    };
    assert_eq!(ars_step(&o, d), ArsStep::StopListener);
}

/// Q5: a refused URL change stops everything else.
#[test]
fn refused_url_change_is_terminal_until_spec_changes() {
    let e = ConfigUrlChanged {
        recorded: "a".into(),
        desired: "b".into(),
    };
    let o = ArsObservation {
        scale_set: Some(SyncStep::Refuse(e.clone())),
        ..converged()
    };
    assert_eq!(ars_step(&o, DriftPolicy::default()), ArsStep::Refuse(e));
}

/// Behaviour 7 of docs/architecture.md#integration-behaviours (ARC drain) versus the default
/// in-place rollout (ARC#4432).
#[test]
fn spec_change_rollout() {
    let o = ArsObservation {
        runner_set_spec_current: false,
        runner_set_hash_current: false,
        active_runners: 2,
        ..converged()
    };
    assert_eq!(ars_step(&o, DriftPolicy::Drain), ArsStep::StopListener);
    let gone = ArsObservation {
        listener: Presence::Absent,
        ..o.clone()
    };
    assert_eq!(
        ars_step(&gone, DriftPolicy::Drain),
        ArsStep::RolloutRunnerSet(SpecDrift::Drain)
    );
    let terminating = ArsObservation {
        listener: Presence::Terminating,
        ..o.clone()
    };
    assert_eq!(
        ars_step(&terminating, DriftPolicy::Drain),
        ArsStep::RolloutRunnerSet(SpecDrift::Drain)
    );
    assert_eq!(
        ars_step(&o, DriftPolicy::Replace),
        ArsStep::RolloutRunnerSet(SpecDrift::PatchInPlace)
    );
    let idle = ArsObservation {
        active_runners: 0,
        ..o
    };
    assert_eq!(
        ars_step(&idle, DriftPolicy::Drain),
        ArsStep::RolloutRunnerSet(SpecDrift::PatchInPlace)
    );
}

/// Under Replace the set's hash lags behind its spec until the set controller has replaced
/// the runners: that is not drift. Under Drain the ARS writes the hash itself, so a stale
/// hash is.
#[test]
fn stale_runner_set_hash_is_drift_only_when_draining() {
    let o = ArsObservation {
        runner_set_hash_current: false,
        ..converged()
    };
    assert_eq!(ars_step(&o, DriftPolicy::Replace), ArsStep::Done);
    assert_eq!(
        ars_step(&o, DriftPolicy::Drain),
        ArsStep::RolloutRunnerSet(SpecDrift::PatchInPlace)
    );
}

/// Behaviour 4 (docs/architecture.md#integration-behaviours): a stale listener (or one left from an
/// earlier group) is replaced.
#[test]
fn listener_replacement() {
    let o = ArsObservation {
        listener_current: false,
        ..converged()
    };
    assert_eq!(
        ars_step(&o, DriftPolicy::default()),
        ArsStep::ReplaceListener
    );
    let o = ArsObservation {
        listener: Presence::Terminating,
        listener_current: false,
        ..converged()
    };
    assert_eq!(
        ars_step(&o, DriftPolicy::default()),
        ArsStep::Wait(DELETION_WAIT)
    );
    let o = ArsObservation {
        listener: Presence::Absent,
        listener_current: false,
        ..converged()
    };
    assert_eq!(
        ars_step(&o, DriftPolicy::default()),
        ArsStep::CreateListener
    );
}

/// New `minRunners` or `maxRunners` are written into the running listener, which is kept; a
/// listener that is replaced anyway gets them with its new spec.
#[test]
fn listener_bounds_change_in_place() {
    let o = ArsObservation {
        listener_bounds_current: false,
        ..converged()
    };
    assert_eq!(
        ars_step(&o, DriftPolicy::default()),
        ArsStep::UpdateListenerBounds
    );
    let o = ArsObservation {
        listener_current: false,
        listener_bounds_current: false,
        ..converged()
    };
    assert_eq!(
        ars_step(&o, DriftPolicy::default()),
        ArsStep::ReplaceListener
    );
}

/// Q6 / ARC#4242: outdated runners set the sticky phase `Outdated`, whatever the phase was
/// (ARC reacted only in `Running`, and without setting the phase its new runner set started
/// the same outdated runners again).
#[test]
fn outdated_runners_set_the_outdated_phase() {
    for drift in [DriftPolicy::Replace, DriftPolicy::Drain] {
        let o = ArsObservation {
            runner_set_outdated: true,
            ..converged()
        };
        assert_eq!(ars_step(&o, drift), ArsStep::MarkOutdated);
        let o = ArsObservation {
            runner_set_outdated: true,
            listener: Presence::Absent,
            status_current: false,
            ..converged()
        };
        assert_eq!(ars_step(&o, drift), ArsStep::MarkOutdated);
    }
}

/// While `Outdated`: stop the listener, then delete the runner set, then hold; the service is
/// not asked and nothing is created.
#[test]
fn outdated_phase_holds() {
    let d = DriftPolicy::default();
    let held = ArsObservation {
        phase_outdated: true,
        runner_set_outdated: true,
        scale_set: None,
        ..converged()
    };
    assert_eq!(ars_step(&held, d), ArsStep::StopListener);
    let o = ArsObservation {
        listener: Presence::Terminating,
        ..held.clone()
    };
    assert_eq!(ars_step(&o, d), ArsStep::Wait(DELETION_WAIT));
    let o = ArsObservation {
        listener: Presence::Absent,
        ..held.clone()
    };
    assert_eq!(ars_step(&o, d), ArsStep::DeleteRunnerSet);
    for runner_set in [Presence::Terminating, Presence::Absent] {
        let o = ArsObservation {
            listener: Presence::Absent,
            runner_set,
            ..held.clone()
        };
        assert_eq!(ars_step(&o, d), ArsStep::Parked);
    }
}

/// The exit from `Outdated` is a spec change: phase `Pending`, then a new runner set. An
/// outdated set still there whose runner spec changed is replaced, not patched (it would stay
/// outdated); with the runner spec unchanged the runners are still outdated, so it holds again.
#[test]
fn spec_change_leaves_outdated() {
    let d = DriftPolicy::default();
    let changed = ArsObservation {
        phase_outdated: true,
        spec_hash_current: false,
        listener: Presence::Absent,
        runner_set: Presence::Absent,
        ..converged()
    };
    assert_eq!(ars_step(&changed, d), ArsStep::MarkPending);
    let pending = ArsObservation {
        phase_outdated: false,
        spec_hash_current: true,
        ..changed
    };
    assert_eq!(ars_step(&pending, d), ArsStep::CreateRunnerSet);
    for drift in [DriftPolicy::Replace, DriftPolicy::Drain] {
        let still_there = ArsObservation {
            runner_set: Presence::Present,
            runner_set_outdated: true,
            runner_set_spec_current: false,
            runner_set_hash_current: false,
            ..pending.clone()
        };
        assert_eq!(ars_step(&still_there, drift), ArsStep::DeleteRunnerSet);
        let same_runners = ArsObservation {
            runner_set_spec_current: true,
            runner_set_hash_current: true,
            ..still_there
        };
        assert_eq!(ars_step(&same_runners, drift), ArsStep::MarkOutdated);
    }
}

fn any_obs() -> impl Strategy<Value = ArsObservation> {
    (
        proptest::collection::vec(any::<bool>(), 10),
        prop_oneof![
            Just(None),
            Just(Some(SyncStep::InSync)),
            Just(Some(SyncStep::FindOrCreate)),
            Just(Some(SyncStep::Recreate { lost_id: 3 })),
            Just(Some(SyncStep::RecordConfigUrl)),
            Just(Some(SyncStep::RecordNames {
                name: "x".into(),
                runner_group_name: "Default".into()
            })),
            Just(Some(SyncStep::Update(ScaleSetUpdate {
                name: Some("x".into()),
                ..Default::default()
            }))),
        ],
        presence(),
        presence(),
        0u32..3,
    )
        .prop_map(
            |(b, scale_set, runner_set, listener, active)| ArsObservation {
                deleting: false,
                finalizer: b[0],
                version_allowed: true,
                invalid_spec: None,
                spec_hash_current: b[1],
                phase_outdated: b[6],
                scale_set,
                runner_set,
                runner_set_outdated: b[7] && runner_set != Presence::Absent,
                runner_set_spec_current: b[2],
                runner_set_hash_current: b[8],
                runner_set_metadata_current: b[3],
                active_runners: active,
                listener,
                listener_current: b[4],
                listener_bounds_current: b[9],
                status_current: b[5],
            },
        )
}

/// Carries out `step` in a simulated cluster; `runners_outdated`: new runners exit 7.
fn simulate(o: &mut ArsObservation, step: &ArsStep, runners_outdated: bool) {
    match step {
        ArsStep::AddFinalizer => o.finalizer = true,
        ArsStep::MarkPending => {
            o.spec_hash_current = true;
            o.phase_outdated = false;
            o.status_current = false;
        }
        ArsStep::MarkOutdated => o.phase_outdated = true,
        ArsStep::ObserveScaleSet => o.scale_set = Some(SyncStep::InSync),
        ArsStep::ScaleSet(_) => o.scale_set = None,
        ArsStep::CreateRunnerSet => {
            o.runner_set = Presence::Present;
            o.runner_set_outdated = runners_outdated;
            o.runner_set_spec_current = true;
            o.runner_set_hash_current = true;
            o.runner_set_metadata_current = true;
        }
        ArsStep::DeleteRunnerSet => o.runner_set = Presence::Terminating,
        ArsStep::RolloutRunnerSet(SpecDrift::PatchInPlace) => {
            o.runner_set_spec_current = true;
            o.runner_set_hash_current = true;
        }
        // draining: busy runners finish over time
        ArsStep::RolloutRunnerSet(SpecDrift::Drain) => {
            o.active_runners = o.active_runners.saturating_sub(1);
        }
        ArsStep::PatchRunnerSetMetadata => o.runner_set_metadata_current = true,
        ArsStep::CreateListener => {
            o.listener = Presence::Present;
            o.listener_current = true;
            o.listener_bounds_current = true;
        }
        ArsStep::UpdateListenerBounds => o.listener_bounds_current = true,
        ArsStep::ReplaceListener | ArsStep::StopListener => o.listener = Presence::Terminating,
        ArsStep::Wait(_) => {
            if o.listener == Presence::Terminating {
                o.listener = Presence::Absent;
            }
            if o.runner_set == Presence::Terminating {
                o.runner_set = Presence::Absent;
            }
        }
        ArsStep::UpdateStatus => o.status_current = true,
        _ => {}
    }
}

proptest! {
    /// Carrying out each step in a simulated cluster converges to Done for either drift
    /// policy, or, when the runners are outdated, to Parked with no listener or runner set.
    #[test]
    fn ars_reconcile_converges(start in any_obs(), drain in any::<bool>(), outdated in any::<bool>()) {
        let drift = if drain { DriftPolicy::Drain } else { DriftPolicy::Replace };
        let mut o = start;
        let mut created = 0;
        for _ in 0..60 {
            let step = ars_step(&o, drift);
            match &step {
                ArsStep::Done => {
                    prop_assert!(!o.phase_outdated && !o.runner_set_outdated);
                    return Ok(());
                }
                ArsStep::Parked => {
                    prop_assert!(o.phase_outdated);
                    prop_assert_eq!(o.listener, Presence::Absent);
                    prop_assert_ne!(o.runner_set, Presence::Present);
                    return Ok(());
                }
                ArsStep::CreateRunnerSet => {
                    prop_assert!(!o.phase_outdated);
                    created += 1;
                    prop_assert!(created <= 1, "a second runner set was created");
                }
                ArsStep::CreateListener => prop_assert!(!o.phase_outdated && !o.runner_set_outdated),
                ArsStep::AddFinalizer
                | ArsStep::MarkPending
                | ArsStep::MarkOutdated
                | ArsStep::ObserveScaleSet
                | ArsStep::ScaleSet(_)
                | ArsStep::DeleteRunnerSet
                | ArsStep::RolloutRunnerSet(_)
                | ArsStep::PatchRunnerSetMetadata
                | ArsStep::ReplaceListener
                | ArsStep::UpdateListenerBounds
                | ArsStep::StopListener
                | ArsStep::Wait(_)
                | ArsStep::UpdateStatus => {}
                other => prop_assert!(false, "unexpected step {:?}", other),
            }
            simulate(&mut o, &step, outdated);
        }
        prop_assert!(false, "did not converge: {:?}", o);
    }
}
