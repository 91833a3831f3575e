use super::*;
use crate::pod::{ContainerState, PodPhase};
use proptest::prelude::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_seconds(secs)
}

fn p() -> LifecyclePolicy {
    LifecyclePolicy::default()
}

fn missing(h: &ListenerHistory, hash: &str, now: i64) -> ListenerAction {
    decide(&ListenerPod::Missing, "", hash, h, t(now), &p())
}

/// ARC#4656: bad credentials must not restart the listener in a tight loop.
#[test]
fn bad_credentials_back_off_long_and_growing() {
    let policy = p();
    let mut h = ListenerHistory::default();
    let mut now = 0;
    let mut last_delay = Duration::ZERO;
    for _ in 0..8 {
        h = h.record(
            ExitClass::Auth,
            Duration::from_secs(3),
            "h",
            t(now),
            &policy,
        );
        let at = h.next_start("h", &policy).expect("next start");
        let delay = at.saturating_duration_since(t(now));
        assert!(delay >= Duration::from_secs(60));
        assert!(delay >= last_delay);
        assert!(delay <= policy.restart_max);
        assert!(matches!(
            missing(&h, "h", now + 1),
            ListenerAction::Wait(Some(_))
        ));
        assert_eq!(
            decide(&ListenerPod::Missing, "", "h", &h, at, &policy),
            ListenerAction::Create
        );
        last_delay = delay;
        now = at.unix_millis() / 1000 + 3;
    }
    assert_eq!(h.consecutive_failures, 8);
    assert_eq!(last_delay, policy.restart_max);
}

/// Behaviour 10 of docs/architecture.md#integration-behaviours: a terminated or evicted listener is deleted and recreated (ARC#4331).
#[test]
fn terminated_and_evicted_pods_are_replaced() {
    let h = ListenerHistory::default();
    let term = ListenerPod::Terminated {
        class: ExitClass::Transient,
        ran_for: Duration::from_secs(5),
    };
    assert_eq!(
        decide(&term, "h", "h", &h, t(0), &p()),
        ListenerAction::Delete {
            record: Some(ExitClass::Transient)
        }
    );
    assert_eq!(
        decide(&ListenerPod::ClusterLost, "h", "h", &h, t(0), &p()),
        ListenerAction::Delete { record: None }
    );
    // first transient failure: recreate at once (ARC parity)
    let h = h.record(
        ExitClass::Transient,
        Duration::from_secs(5),
        "h",
        t(0),
        &p(),
    );
    assert_eq!(missing(&h, "h", 0), ListenerAction::Create);
}

/// A configuration change (e.g. rotated credentials) recreates at once and voids the backoff,
/// whether the old pod still runs or is already gone.
#[test]
fn config_change_voids_backoff() {
    let h = ListenerHistory::default().record(ExitClass::Auth, Duration::ZERO, "old", t(0), &p());
    assert!(matches!(
        missing(&h, "old", 1),
        ListenerAction::Wait(Some(_))
    ));
    assert_eq!(missing(&h, "new", 1), ListenerAction::Create);
    assert_eq!(
        decide(&ListenerPod::Running, "old", "new", &h, t(1), &p()),
        ListenerAction::Delete { record: None }
    );
    // a failure under the new configuration counts from one
    let h2 = h.record(ExitClass::Auth, Duration::ZERO, "new", t(2), &p());
    assert_eq!(h2.consecutive_failures, 1);
}

#[test]
fn stable_run_restarts_count_and_shutdown_is_not_a_failure() {
    let policy = p();
    let h = ListenerHistory {
        consecutive_failures: 6,
        last_failure: Some(t(0)),
        last_class: Some(ExitClass::Transient),
        config_hash: "h".into(),
    };
    let h2 = h.clone().record(
        ExitClass::Transient,
        Duration::from_secs(3600),
        "h",
        t(10),
        &policy,
    );
    assert_eq!(h2.consecutive_failures, 1);
    let h3 = h.clone().record(
        ExitClass::Transient,
        Duration::from_secs(3),
        "h",
        t(10),
        &policy,
    );
    assert_eq!(h3.consecutive_failures, 7);
    assert_eq!(
        h.clone()
            .record(ExitClass::Shutdown, Duration::ZERO, "h", t(10), &policy),
        h
    );
}

#[test]
fn running_is_healthy_and_pending_waits() {
    let h = ListenerHistory::default();
    assert_eq!(
        decide(&ListenerPod::Running, "h", "h", &h, t(0), &p()),
        ListenerAction::Healthy
    );
    assert_eq!(
        decide(&ListenerPod::Pending, "h", "h", &h, t(0), &p()),
        ListenerAction::Wait(None)
    );
    assert_eq!(
        decide(&ListenerPod::Deleting, "x", "h", &h, t(0), &p()),
        ListenerAction::Wait(None)
    );
}

fn al(deleting: bool, children: Child, proxy: Option<Child>, pod: Child) -> ListenerObservation {
    ListenerObservation {
        deleting,
        ars_exists: true,
        service_account: children,
        role: children,
        role_binding: children,
        proxy_secret: proxy,
        config_secret: children,
        pod,
    }
}

const ALL: [ListenerChild; 5] = [
    ListenerChild::ServiceAccount,
    ListenerChild::Role,
    ListenerChild::RoleBinding,
    ListenerChild::ProxySecret,
    ListenerChild::ConfigSecret,
];

/// Behaviour 9 of docs/architecture.md#integration-behaviours: children in order SA, Role, RoleBinding, (proxy), config, then the pod;
/// a new listener gets all of them and its pod in one pass.
#[test]
fn listener_children_in_order_in_one_pass() {
    let o = al(false, Child::Missing, Some(Child::Missing), Child::Missing);
    assert_eq!(listener_step(&o), ListenerStep::Apply(ALL.to_vec()));
    let o = al(false, Child::Missing, None, Child::Missing);
    assert_eq!(
        listener_step(&o),
        ListenerStep::Apply(vec![
            ListenerChild::ServiceAccount,
            ListenerChild::Role,
            ListenerChild::RoleBinding,
            ListenerChild::ConfigSecret
        ])
    );
}

/// A pass whose children are all as desired writes none of them.
#[test]
fn current_children_are_not_written() {
    let o = al(false, Child::Current, Some(Child::Current), Child::Current);
    assert_eq!(listener_step(&o), ListenerStep::Apply(Vec::new()));
    // Q7: a stale config Secret (rotated credentials) is updated, and nothing else
    let o = ListenerObservation {
        config_secret: Child::Stale,
        ..o
    };
    assert_eq!(
        listener_step(&o),
        ListenerStep::Apply(vec![ListenerChild::ConfigSecret])
    );
}

/// A child someone deleted that is still terminating is re-created once it is gone.
#[test]
fn terminating_child_is_waited_for() {
    let o = ListenerObservation {
        role: Child::Deleting,
        ..al(false, Child::Current, None, Child::Current)
    };
    assert_eq!(
        listener_step(&o),
        ListenerStep::WaitForDeletion(ListenerChild::Role)
    );
}

/// docs/architecture.md#listener-children and #listener-deletion: the orphan deletes itself; cleanup deletes the pod and
/// the children in reverse creation order, then lets the finalizer go.
#[test]
fn listener_deletion_and_orphan() {
    let o = ListenerObservation {
        ars_exists: false,
        ..al(false, Child::Current, None, Child::Current)
    };
    assert_eq!(listener_step(&o), ListenerStep::DeleteSelf);
    let mut reversed = ALL.to_vec();
    reversed.reverse();
    assert_eq!(
        listener_step(&al(
            true,
            Child::Current,
            Some(Child::Stale),
            Child::Current
        )),
        ListenerStep::DeleteChildren {
            pod: true,
            children: reversed
        }
    );
    assert_eq!(
        listener_step(&al(true, Child::Missing, None, Child::Current)),
        ListenerStep::DeleteChildren {
            pod: true,
            children: Vec::new()
        }
    );
    // already terminating: not deleted again, but waited for
    assert_eq!(
        listener_step(&al(true, Child::Deleting, None, Child::Deleting)),
        ListenerStep::DeleteChildren {
            pod: false,
            children: Vec::new()
        }
    );
    assert_eq!(
        listener_step(&al(
            true,
            Child::Missing,
            Some(Child::Missing),
            Child::Missing
        )),
        ListenerStep::RemoveFinalizer
    );
    // cleanup does not depend on the ARS
    let o = ListenerObservation {
        ars_exists: false,
        ..al(true, Child::Missing, None, Child::Missing)
    };
    assert_eq!(listener_step(&o), ListenerStep::RemoveFinalizer);
}

fn failed(reason: &str, listener: ContainerState, message: &str) -> ListenerPodObservation {
    ListenerPodObservation {
        phase: PodPhase::Failed,
        reason: reason.into(),
        listener,
        termination_message: message.into(),
        ran_for: Duration::from_secs(7),
        ..ListenerPodObservation::default()
    }
}

fn exited(code: i32, reason: &str) -> ContainerState {
    ContainerState::Terminated {
        exit_code: code,
        reason: reason.into(),
    }
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState::Waiting {
        reason: reason.into(),
    }
}

/// Evicted, preempted, node shutdown or loss, `OutOf*`: the cluster's fault, like for runner
/// pods, also when the listener container was killed with the pod.
#[test]
fn cluster_failures_are_not_listener_failures() {
    for reason in [
        "Evicted",
        "Preempted",
        "Preempting",
        "NodeLost",
        "NodeShutdown",
        "Terminated",
        "OutOfcpu",
        "UnexpectedAdmissionError",
    ] {
        for container in [ContainerState::Absent, exited(137, "Error"), exited(0, "")] {
            let pod = failed(reason, container.clone(), "");
            assert_eq!(
                classify_pod(&pod),
                ListenerPod::ClusterLost,
                "{reason} {container:?}"
            );
            assert_eq!(
                decide(
                    &classify_pod(&pod),
                    "h",
                    "h",
                    &ListenerHistory::default(),
                    t(0),
                    &p()
                ),
                ListenerAction::Delete { record: None }
            );
        }
    }
}

/// The listener's exit is its own failure, whatever the exit code; the class comes from its
/// termination message, and an exit without one (OOMKilled, a crash) is transient.
#[test]
fn listener_exits_are_classified_by_their_message() {
    let ran = Duration::from_secs(7);
    let cases = [
        (
            exited(1, "Error"),
            "arc-listener-exit=auth: 401",
            ExitClass::Auth,
        ),
        (
            exited(1, "Error"),
            "arc-listener-exit=config: bad url",
            ExitClass::Config,
        ),
        (
            exited(0, "Completed"),
            "arc-listener-exit=shutdown: SIGTERM",
            ExitClass::Shutdown,
        ),
        (exited(137, "OOMKilled"), "", ExitClass::Transient),
        (
            exited(2, "Error"),
            "thread 'main' panicked",
            ExitClass::Transient,
        ),
        (exited(0, "Completed"), "", ExitClass::Transient),
    ];
    for (container, message, class) in cases {
        let pod = failed("", container.clone(), message);
        assert_eq!(
            classify_pod(&pod),
            ListenerPod::Terminated {
                class,
                ran_for: ran
            },
            "{container:?} {message}"
        );
    }
    // a listener container that exited while a sidecar keeps the pod running
    let pod = ListenerPodObservation {
        phase: PodPhase::Running,
        ..failed("", exited(1, "Error"), "arc-listener-exit=auth: 401")
    };
    assert_eq!(
        classify_pod(&pod),
        ListenerPod::Terminated {
            class: ExitClass::Auth,
            ran_for: ran
        }
    );
}

/// A pod that failed for a reason of its own before the listener terminated (e.g. the
/// template's `activeDeadlineSeconds`) is charged as a transient failure, like a runner pod.
#[test]
fn pod_failure_of_its_own_is_transient() {
    for reason in ["", "DeadlineExceeded"] {
        assert_eq!(
            classify_pod(&failed(reason, ContainerState::Running, "")),
            ListenerPod::Terminated {
                class: ExitClass::Transient,
                ran_for: Duration::ZERO
            }
        );
    }
}

/// Pull errors that can resolve keep the pod pending; an image that can never be pulled is a
/// configuration failure, backed off like one.
#[test]
fn image_errors() {
    let pending = |container| ListenerPodObservation {
        listener: container,
        ..ListenerPodObservation::default()
    };
    for reason in ["ErrImagePull", "ImagePullBackOff", "ContainerCreating"] {
        assert_eq!(
            classify_pod(&pending(waiting(reason))),
            ListenerPod::Pending
        );
    }
    for reason in ["InvalidImageName", "ErrImageNeverPull"] {
        assert_eq!(
            classify_pod(&pending(waiting(reason))),
            ListenerPod::Terminated {
                class: ExitClass::Config,
                ran_for: Duration::ZERO
            }
        );
    }
    assert_eq!(
        classify_pod(&pending(ContainerState::Absent)),
        ListenerPod::Pending
    );
    let running = ListenerPodObservation {
        phase: PodPhase::Running,
        ..pending(ContainerState::Running)
    };
    assert_eq!(classify_pod(&running), ListenerPod::Running);
    let deleting = ListenerPodObservation {
        deleting: true,
        ..failed("Evicted", exited(1, ""), "")
    };
    assert_eq!(classify_pod(&deleting), ListenerPod::Deleting);
}

#[test]
fn termination_messages_round_trip() {
    for (class, _) in ExitClass::TOKENS {
        let m = class.termination_message("detail: with colon");
        assert_eq!(ExitClass::from_termination_message(&m), class);
    }
    assert_eq!(
        ExitClass::from_termination_message(""),
        ExitClass::Transient
    );
}

fn any_class() -> impl Strategy<Value = ExitClass> {
    proptest::sample::select(
        ExitClass::TOKENS
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>(),
    )
}

proptest! {
    /// Restart delays never shrink while failures continue, never exceed the cap, and a
    /// deterministic failure always waits at least the deterministic base.
    #[test]
    fn restart_delay_monotone_and_capped(class in any_class(), n in 1u32..100) {
        let policy = p();
        let d = restart_delay(class, n, &policy);
        prop_assert!(d <= policy.restart_max);
        prop_assert!(restart_delay(class, n + 1, &policy) >= d);
        if matches!(class, ExitClass::Auth | ExitClass::Config | ExitClass::ScaleSetMissing) {
            prop_assert!(d >= policy.deterministic_base);
        }
    }
}

/// Issue #19: the fields that name the AutoscalingRunnerSet are used only when both are object
/// names; otherwise the report names the first unusable field and its value.
#[test]
fn a_listener_names_its_runner_set_by_object_names() {
    assert_eq!(ars_reference(Some("ns"), Some("arc")), Ok(("ns", "arc")));
    for (namespace, name, field, value) in [
        (None, Some("arc"), ArsField::Namespace, None),
        (Some("ns"), Some("a/b"), ArsField::Name, Some("a/b")),
        (Some("Runners"), None, ArsField::Namespace, Some("Runners")),
    ] {
        let e = ars_reference(namespace, name).expect_err("refused");
        assert_eq!((e.field, e.value.as_deref()), (field, value));
        let text = e.to_string();
        assert!(text.starts_with(field.path()), "{text}");
        assert!(
            text.contains("or delete this AutoscalingListener"),
            "{text}"
        );
    }
}
