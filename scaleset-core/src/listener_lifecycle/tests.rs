use super::*;
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

/// controllers.md 14.10: a terminated or evicted listener is deleted and recreated (ARC#4331).
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

fn al(deleting: bool, children: Child, proxy: Option<Child>, pod: bool) -> ListenerObservation {
    ListenerObservation {
        deleting,
        finalizer: true,
        ars_exists: true,
        service_account: children,
        role: children,
        role_binding: children,
        proxy_secret: proxy,
        config_secret: children,
        pod_exists: pod,
    }
}

/// controllers.md 14.9: children in order SA, Role, RoleBinding, (proxy), config, then the pod.
#[test]
fn listener_children_in_order() {
    let mut o = al(false, Child::Missing, Some(Child::Missing), false);
    let mut seen = Vec::new();
    loop {
        match listener_step(&o) {
            ListenerStep::Create(c) => {
                seen.push(c);
                match c {
                    ListenerChild::ServiceAccount => o.service_account = Child::Current,
                    ListenerChild::Role => o.role = Child::Current,
                    ListenerChild::RoleBinding => o.role_binding = Child::Current,
                    ListenerChild::ProxySecret => o.proxy_secret = Some(Child::Current),
                    ListenerChild::ConfigSecret => o.config_secret = Child::Current,
                }
            }
            ListenerStep::Pod => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ListenerChild::ServiceAccount,
            ListenerChild::Role,
            ListenerChild::RoleBinding,
            ListenerChild::ProxySecret,
            ListenerChild::ConfigSecret
        ]
    );
    // Q7: a stale config Secret (rotated credentials) is updated
    o.config_secret = Child::Stale;
    assert_eq!(
        listener_step(&o),
        ListenerStep::Update(ListenerChild::ConfigSecret)
    );
}

/// controllers.md 5.2 step 4 and 5.9.
#[test]
fn listener_deletion_and_orphan() {
    let o = ListenerObservation {
        ars_exists: false,
        ..al(false, Child::Current, None, true)
    };
    assert_eq!(listener_step(&o), ListenerStep::DeleteSelf);
    assert_eq!(
        listener_step(&al(true, Child::Current, None, false)),
        ListenerStep::DeleteChildren
    );
    assert_eq!(
        listener_step(&al(true, Child::Missing, None, true)),
        ListenerStep::DeleteChildren
    );
    assert_eq!(
        listener_step(&al(true, Child::Missing, Some(Child::Missing), false)),
        ListenerStep::RemoveFinalizer
    );
    let o = ListenerObservation {
        finalizer: false,
        ..al(false, Child::Missing, None, false)
    };
    assert_eq!(listener_step(&o), ListenerStep::AddFinalizer);
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
