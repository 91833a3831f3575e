use super::*;
use proptest::prelude::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_seconds(secs)
}

fn registered() -> RunnerState {
    RunnerState {
        jit_secret: true,
        runner_id: 42,
        ..RunnerState::default()
    }
}

fn started() -> RunnerState {
    RunnerState {
        phase: RunnerPhase::Running,
        ready: true,
        ..registered()
    }
}

fn terminated(pod_phase: PodPhase, exit_code: i32, reason: &str) -> PodObservation {
    PodObservation {
        phase: pod_phase,
        runner: ContainerState::Terminated {
            exit_code,
            reason: reason.into(),
        },
        ..PodObservation::default()
    }
}

fn failed_pod(reason: &str) -> PodObservation {
    PodObservation {
        phase: PodPhase::Failed,
        reason: reason.into(),
        ..PodObservation::default()
    }
}

fn go(runner: &RunnerState, pod: Option<&PodObservation>) -> Action {
    decide(runner, pod, t(1_000), &RetryPolicy::default())
}

fn retry(action: Action) -> Retry {
    match action {
        Action::RetryPod(r) => r,
        other => panic!("expected a retry, got {other:?}"),
    }
}

/// Behaviour 13 (docs/architecture.md#integration-behaviours): JIT Secret, then the pod; the
/// runner id is written with the first status write, when the pod runs.
#[test]
fn creation_sequence() {
    assert_eq!(go(&RunnerState::default(), None), Action::RequestJitConfig);
    let no_id = RunnerState {
        jit_secret: true,
        ..RunnerState::default()
    };
    assert_eq!(go(&no_id, None), Action::CreatePod);
    assert_eq!(go(&registered(), None), Action::CreatePod);
}

/// ARC test: phase and ready mirror the pod only once the runner container status exists, and
/// a pod-level Succeeded without container termination changes nothing.
#[test]
fn status_mirrors_pod_once_container_reported() {
    let pod = PodObservation {
        phase: PodPhase::Running,
        ..PodObservation::default()
    };
    assert_eq!(go(&registered(), Some(&pod)), Action::Wait(None));
    let pod = PodObservation {
        phase: PodPhase::Running,
        runner: ContainerState::Running,
        ready: true,
        ..PodObservation::default()
    };
    assert_eq!(
        go(&registered(), Some(&pod)),
        Action::MirrorStatus {
            phase: RunnerPhase::Running,
            ready: true
        }
    );
    assert_eq!(go(&started(), Some(&pod)), Action::Wait(None));
    let pod = PodObservation {
        phase: PodPhase::Succeeded,
        runner: ContainerState::Running,
        ..PodObservation::default()
    };
    assert_eq!(go(&started(), Some(&pod)), Action::Wait(None));
}

/// ARC test "runner exit code 0 (even in a Failed pod) deletes the runner".
#[test]
fn exit_zero_is_success_even_in_failed_pod() {
    for phase in [PodPhase::Running, PodPhase::Failed, PodPhase::Succeeded] {
        assert_eq!(
            go(&started(), Some(&terminated(phase, 0, "Completed"))),
            Action::DeleteRunner {
                cause: DeleteCause::Completed,
                removal: ServiceRemoval::None
            }
        );
    }
}

/// An ephemeral runner that finished the job it started is removed by the service itself, so
/// its deletion makes no `RemoveRunner` call; one without a recorded job still makes it.
#[test]
fn exit_zero_after_a_job_leaves_the_removal_to_the_service() {
    let with_job = RunnerState {
        has_job: true,
        ..started()
    };
    let exited = terminated(PodPhase::Succeeded, 0, "Completed");
    assert_eq!(
        go(&with_job, Some(&exited)),
        Action::DeleteRunner {
            cause: DeleteCause::Completed,
            removal: ServiceRemoval::DoneByService
        }
    );
}

/// A runner whose registration the set removed to scale down is the set's to delete; if the
/// set's deletion does not come, its own controller deletes it, without a second
/// `RemoveRunner`, whatever its pod shows: its runner exits non-zero once the registration is
/// gone, and that exit is the runner's end, not a failure to retry.
#[test]
fn a_registration_the_set_removed_ends_the_runner_without_a_retry() {
    let removed = |ago: u64| RunnerState {
        registration_removed: Some(Duration::from_secs(ago)),
        ..started()
    };
    let gone = Action::DeleteRunner {
        cause: DeleteCause::RegistrationGone,
        removal: ServiceRemoval::DoneByService,
    };
    let running = PodObservation {
        phase: PodPhase::Running,
        runner: ContainerState::Running,
        ..PodObservation::default()
    };
    let exited = terminated(PodPhase::Failed, 1, "Error");
    for pod in [None, Some(&running), Some(&exited)] {
        assert_eq!(
            go(&removed(4), pod),
            Action::Wait(Some(SET_DELETION_GRACE - Duration::from_secs(4))),
            "pod {pod:?}: the set's deletion is awaited"
        );
        let late = SET_DELETION_GRACE.as_secs();
        assert_eq!(go(&removed(late), pod), gone, "pod {pod:?}");
    }
    assert!(
        matches!(go(&started(), Some(&exited)), Action::RetryPod(_)),
        "the same exit of a runner still registered is retried"
    );
    assert_eq!(
        after_retry_removal(RemoveResult::AlreadyGone),
        RetryRemoval::Delete(gone),
        "a retry that finds the registration gone deletes the runner without another removal"
    );
}

/// docs/architecture.md#pod-states; ARC#4242: exit 7 means deprecated runner.
#[test]
fn exit_seven_marks_outdated() {
    assert_eq!(
        go(&started(), Some(&terminated(PodPhase::Failed, 7, "Error"))),
        Action::MarkOutdated
    );
    assert_eq!(
        go(&started(), Some(&terminated(PodPhase::Running, 7, "Error"))),
        Action::MarkOutdated
    );
}

/// ARC test "runner failure without job: pod recreated and failures grow"; the spent JIT config
/// is replaced (ARC#4588 zombie runners).
#[test]
fn runner_failure_is_charged_and_reregisters() {
    let r = retry(go(
        &started(),
        Some(&terminated(PodPhase::Failed, 1, "Error")),
    ));
    assert!(r.charged);
    assert!(r.fresh_registration);
    assert!(r.message.contains("exited with code 1"));
}

/// ARC#4197 / #4155: OOMKilled is the runner's fault and its registration is spent.
#[test]
fn oom_killed_is_charged() {
    let r = retry(go(
        &started(),
        Some(&terminated(PodPhase::Failed, 137, "OOMKilled")),
    ));
    assert!(r.charged && r.fresh_registration);
    assert_eq!(r.reason, "OOMKilled");
}

/// ARC#4336 / #4457: init container failure is charged; the JIT config was never used.
#[test]
fn init_container_failure_is_charged_without_reregistration() {
    let pod = PodObservation {
        phase: PodPhase::Pending,
        failed_init: Some(("init-dind-externals".into(), 1)),
        ..PodObservation::default()
    };
    let r = retry(go(&registered(), Some(&pod)));
    assert!(r.charged);
    assert!(!r.fresh_registration);
    assert_eq!(r.reason, "InitContainerFailed");
}

/// ARC#3700 / #4102 / #4336: evictions and OutOf* are the cluster's fault: not charged.
#[test]
fn cluster_faults_are_not_charged() {
    for reason in [
        "Evicted",
        "OutOfcpu",
        "OutOfpods",
        "OutOfmemory",
        "NodeShutdown",
        "Preempting",
    ] {
        let r = retry(go(&registered(), Some(&failed_pod(reason))));
        assert!(!r.charged, "{reason} must not be charged");
        assert!(
            !r.fresh_registration,
            "{reason} before start reuses the JIT config"
        );
    }
}

/// ARC#4588: spot eviction after the runner started: not charged, but a new registration.
#[test]
fn eviction_after_start_reregisters() {
    let mut pod = terminated(PodPhase::Failed, 137, "Error");
    pod.reason = "Evicted".into();
    let r = retry(go(&started(), Some(&pod)));
    assert!(!r.charged && r.fresh_registration);
}

/// ARC#4197: pod vanished (node drained) after start: new registration, not charged.
#[test]
fn vanished_pod_after_start_reregisters() {
    let r = retry(go(&started(), None));
    assert!(!r.charged && r.fresh_registration);
    assert_eq!(r.reason, "PodVanished");
}

/// ARC test "failure with a job assigned deletes the runner".
#[test]
fn failure_with_job_deletes_runner() {
    let busy = RunnerState {
        has_job: true,
        ..started()
    };
    let lost = Action::DeleteRunner {
        cause: DeleteCause::JobLost,
        removal: ServiceRemoval::BestEffortAfter,
    };
    assert_eq!(
        go(&busy, Some(&terminated(PodPhase::Failed, 1, "Error"))),
        lost
    );
    assert_eq!(go(&busy, Some(&failed_pod("Evicted"))), lost);
    assert_eq!(go(&busy, None), lost);
}

/// ARC test "the 6th failure deletes the runner"; ARC#3700: budget is a parameter.
#[test]
fn budget_exhaustion_deletes_runner() {
    let too_many = Action::DeleteRunner {
        cause: DeleteCause::TooManyFailures,
        removal: ServiceRemoval::Before,
    };
    let at_limit = RunnerState {
        failures: 5,
        ..started()
    };
    assert_eq!(
        go(&at_limit, Some(&terminated(PodPhase::Failed, 1, "Error"))),
        too_many
    );
    // cluster faults do not spend the last retry
    assert!(matches!(
        go(&at_limit, Some(&failed_pod("Evicted"))),
        Action::RetryPod(_)
    ));
    let over = RunnerState {
        failures: 6,
        ..registered()
    };
    assert_eq!(go(&over, None), too_many);
    let strict = RetryPolicy {
        max_failures: 1,
        ..RetryPolicy::default()
    };
    let one = RunnerState {
        failures: 1,
        ..started()
    };
    assert_eq!(
        decide(
            &one,
            Some(&terminated(PodPhase::Failed, 2, "Error")),
            t(0),
            &strict
        ),
        too_many
    );
}

/// A lowered budget never interrupts a runner that is running (possibly a job).
#[test]
fn lowered_budget_does_not_kill_running_runner() {
    let strict = RetryPolicy {
        max_failures: 1,
        ..RetryPolicy::default()
    };
    let r = RunnerState {
        failures: 4,
        has_job: true,
        ..started()
    };
    let pod = PodObservation {
        phase: PodPhase::Running,
        runner: ContainerState::Running,
        ready: true,
        ..PodObservation::default()
    };
    assert_eq!(decide(&r, Some(&pod), t(0), &strict), Action::Wait(None));
}

/// ARC backoff 0/5/10/20/40/80 s counted from the last failure.
#[test]
fn backoff_before_recreating_pod() {
    let r = RunnerState {
        failures: 2,
        last_failure: Some(t(995)),
        ..registered()
    };
    assert_eq!(go(&r, None), Action::Wait(Some(Duration::from_secs(5))));
    let r = RunnerState {
        failures: 2,
        last_failure: Some(t(990)),
        ..registered()
    };
    assert_eq!(go(&r, None), Action::CreatePod);
}

/// An image name that can never be pulled is a charged failure instead of a stuck Pending.
#[test]
fn hopeless_waiting_reason_is_charged() {
    let pod = PodObservation {
        runner: ContainerState::Waiting {
            reason: "InvalidImageName".into(),
        },
        ..PodObservation::default()
    };
    assert!(retry(go(&registered(), Some(&pod))).charged);
    let pod = PodObservation {
        runner: ContainerState::Waiting {
            reason: "ImagePullBackOff".into(),
        },
        ..PodObservation::default()
    };
    assert_eq!(go(&registered(), Some(&pod)), Action::Wait(None));
}

#[test]
fn terminal_phases_clean_up() {
    for phase in [
        RunnerPhase::Failed,
        RunnerPhase::Outdated,
        RunnerPhase::Succeeded,
    ] {
        let r = RunnerState {
            phase,
            ..registered()
        };
        assert_eq!(go(&r, None), Action::CleanupTerminal);
    }
}

#[test]
fn deleting_pod_waits() {
    let pod = PodObservation {
        deleting: true,
        ..failed_pod("Evicted")
    };
    assert_eq!(go(&started(), Some(&pod)), Action::Wait(None));
}

/// docs/architecture.md#jit-config-and-pod; ARC#4272 / #4305 (quota and admission retried, then
/// recreated).
#[test]
fn pod_create_errors() {
    let p = RetryPolicy::default();
    let young = RunnerState {
        created_at: t(900),
        ..registered()
    };
    let old = RunnerState {
        created_at: t(0),
        ..registered()
    };
    let now = t(1_000);
    let e = on_pod_create_error(PodCreateError::QuotaExceeded, "q", &young, now, &p);
    assert_eq!(e, Action::Wait(Some(Duration::from_secs(30))));
    let e = on_pod_create_error(PodCreateError::AdmissionDenied, "q", &old, now, &p);
    assert_eq!(
        e,
        Action::DeleteRunner {
            cause: DeleteCause::CreateRejected,
            removal: ServiceRemoval::None
        }
    );
    let e = on_pod_create_error(PodCreateError::Invalid, "bad spec", &young, now, &p);
    assert_eq!(
        e,
        Action::MarkFailed {
            reason: "InvalidPod".into(),
            message: "Failed to create the pod: bad spec".into()
        }
    );
    assert_eq!(
        on_pod_create_error(PodCreateError::AlreadyExists, "", &young, now, &p),
        Action::Wait(Some(Duration::from_secs(5)))
    );
    assert_eq!(
        PodCreateError::classify(403, "admission webhook \"x\" denied the request"),
        PodCreateError::AdmissionDenied
    );
    assert_eq!(
        PodCreateError::classify(403, "priorityclass not found"),
        PodCreateError::Forbidden
    );
    assert_eq!(PodCreateError::classify(500, "boom"), PodCreateError::Other);
}

/// docs/architecture.md#ephemeralrunner-deletion: JobStillRunning waits 30 s; id 0 has nothing to
/// remove.
#[test]
fn finalizer_steps() {
    let p = RetryPolicy::default();
    assert_eq!(finalizer_start(true, 0), FinalizerStep::Release);
    assert_eq!(finalizer_start(false, 5), FinalizerStep::Release);
    assert_eq!(
        finalizer_start(true, 5),
        FinalizerStep::RemoveFromService { runner_id: 5 }
    );
    assert_eq!(
        after_remove(RemoveResult::Removed, true, Duration::ZERO, &p),
        FinalizerStep::Release
    );
    assert_eq!(
        after_remove(RemoveResult::Failed, false, Duration::ZERO, &p),
        FinalizerStep::Error
    );
    assert_eq!(
        after_remove(
            RemoveResult::JobStillRunning,
            false,
            Duration::from_secs(60),
            &p
        ),
        FinalizerStep::RetryAfter(Duration::from_secs(30))
    );
}

fn any_container() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        Just(ContainerState::Absent),
        Just(ContainerState::Running),
        prop_oneof![
            Just("ContainerCreating"),
            Just("ImagePullBackOff"),
            Just("InvalidImageName")
        ]
        .prop_map(|r| ContainerState::Waiting {
            reason: r.to_string()
        }),
        (
            prop_oneof![Just(0), Just(1), Just(7), Just(137)],
            prop_oneof![Just("Error"), Just("OOMKilled"), Just("Completed")]
        )
            .prop_map(|(c, r)| ContainerState::Terminated {
                exit_code: c,
                reason: r.to_string()
            }),
    ]
}

fn any_pod() -> impl Strategy<Value = Option<PodObservation>> {
    proptest::option::of(
        (
            prop_oneof![
                Just(PodPhase::Pending),
                Just(PodPhase::Running),
                Just(PodPhase::Succeeded),
                Just(PodPhase::Failed),
                Just(PodPhase::Unknown)
            ],
            prop_oneof![
                Just(""),
                Just("Evicted"),
                Just("OutOfcpu"),
                Just("DeadlineExceeded")
            ],
            any::<bool>(),
            any_container(),
            proptest::option::of(Just(("init".to_string(), 1))),
            any::<bool>(),
        )
            .prop_map(|(phase, reason, deleting, runner, failed_init, ready)| {
                PodObservation {
                    phase,
                    reason: reason.into(),
                    message: String::new(),
                    deleting,
                    runner,
                    failed_init,
                    ready,
                }
            }),
    )
}

fn any_runner() -> impl Strategy<Value = RunnerState> {
    (
        prop_oneof![
            Just(RunnerPhase::Pending),
            Just(RunnerPhase::Running),
            Just(RunnerPhase::Failed),
            Just(RunnerPhase::Outdated)
        ],
        any::<bool>(),
        any::<bool>(),
        -1i64..3,
        any::<bool>(),
        0u32..8,
        proptest::option::of(0u64..20),
    )
        .prop_map(
            |(phase, ready, jit, id, job, failures, removed)| RunnerState {
                phase,
                ready,
                jit_secret: jit,
                runner_id: id,
                has_job: job,
                failures,
                last_failure: None,
                created_at: t(0),
                registration_removed: removed.map(Duration::from_secs),
            },
        )
}

proptest! {
    /// Terminal pod observations always lead somewhere: never a plain wait, and a timed one
    /// only for the set's deletion of a runner whose registration it removed.
    #[test]
    fn terminal_pod_states_never_dead_end(runner in any_runner(), pod in any_pod()) {
        let action = go(&runner, pod.as_ref());
        if let Some(p) = &pod {
            let terminal = matches!(p.runner, ContainerState::Terminated { .. }) || p.phase == PodPhase::Failed || p.failed_init.is_some();
            let awaits_the_set = runner.registration_removed.is_some()
                && matches!(action, Action::Wait(Some(_)));
            if terminal && !p.deleting && !awaits_the_set {
                prop_assert!(!matches!(action, Action::Wait(_)), "dead end: {:?}", action);
            }
        }
        // a runner with a job is never re-podded: its job died with the pod
        if runner.has_job {
            prop_assert!(!matches!(action, Action::RetryPod(_)));
        }
        if let Action::RetryPod(r) = &action {
            prop_assert!(!r.charged || runner.failures < RetryPolicy::default().max_failures);
        }
    }

    /// Drive one runner through adversarial pod outcomes: charged failures never exceed the
    /// budget, and the runner always ends (deleted) or keeps going with uncharged reschedules.
    #[test]
    fn retry_budget_never_exceeded(
        outcomes in proptest::collection::vec(any_pod().prop_filter("pod", |p| p.is_some()), 1..60),
        max_failures in 0u32..7,
    ) {
        let policy = RetryPolicy { max_failures, ..RetryPolicy::default() };
        let mut runner = registered();
        let mut now = 0i64;
        let mut charged_pods = 0u32;
        for pod in outcomes.iter().flatten() {
            now += 1_000;
            let mut pod = pod.clone();
            pod.deleting = false;
            match decide(&runner, Some(&pod), t(now), &policy) {
                Action::RetryPod(r) => {
                    if r.charged {
                        runner.failures += 1;
                        runner.last_failure = Some(t(now));
                        charged_pods += 1;
                    }
                    if r.fresh_registration {
                        runner.runner_id = 0;
                        runner.jit_secret = false;
                        runner.phase = RunnerPhase::Pending;
                        prop_assert_eq!(decide(&runner, None, t(now), &policy), Action::RequestJitConfig);
                        runner.jit_secret = true;
                        runner.runner_id = 42;
                    }
                    prop_assert_eq!(decide(&runner, None, t(now + 100), &policy), Action::CreatePod);
                }
                Action::MirrorStatus { phase, ready } => { runner.phase = phase; runner.ready = ready; }
                Action::DeleteRunner { .. } | Action::MarkOutdated | Action::CleanupTerminal => break,
                Action::Wait(_) => {}
                other => prop_assert!(false, "unexpected {:?}", other),
            }
            prop_assert!(runner.failures <= max_failures);
        }
        prop_assert!(charged_pods <= max_failures);
    }
}
