use super::*;
use proptest::prelude::*;

const MS: Duration = Duration::from_millis(1);

fn policy() -> ListenerPolicy {
    ListenerPolicy {
        backoff: Backoff::new(10 * MS, 80 * MS).with_jitter(0.5),
        ..ListenerPolicy::default()
    }
}

fn failure(call: Call, class: ErrorClass, attempt: u32) -> Failure {
    Failure {
        call,
        class,
        attempt,
        auth_failures: 0,
        conflicting_for: Duration::ZERO,
    }
}

fn react(call: Call, class: ErrorClass, attempt: u32) -> Reaction {
    on_error(&failure(call, class, attempt), &policy(), 0.0)
}

fn retry(ms: u64) -> Reaction {
    Reaction::Retry {
        after: Duration::from_millis(ms),
        reauthenticate: false,
    }
}

const SERVICE_CALLS: [Call; 4] = [
    Call::CreateSession,
    Call::RefreshSession,
    Call::Poll,
    Call::Queue,
];

/// ARC#3591 / #3529: transient errors are retried with a doubling, capped backoff; the poll
/// loop and session creation never give up on them.
#[test]
fn transient_errors_back_off_and_the_poll_never_gives_up() {
    for call in [Call::CreateSession, Call::RefreshSession, Call::Poll] {
        assert_eq!(react(call, ErrorClass::Transient, 1), retry(10));
        assert_eq!(react(call, ErrorClass::Transient, 3), retry(40));
        assert_eq!(react(call, ErrorClass::Transient, 1000), retry(80));
        assert_eq!(react(call, ErrorClass::Rejected, 2), retry(20));
    }
}

#[test]
fn queue_calls_and_patches_are_left_to_redelivery_after_their_attempts() {
    let p = policy();
    assert_eq!(react(Call::Queue, ErrorClass::Transient, 1), retry(10));
    assert_eq!(
        react(Call::Queue, ErrorClass::Transient, p.queue_attempts - 1),
        retry(40)
    );
    assert_eq!(
        react(Call::Queue, ErrorClass::Transient, p.queue_attempts),
        Reaction::Skip
    );
    assert_eq!(react(Call::Queue, ErrorClass::Rejected, 1), Reaction::Skip);
    assert_eq!(react(Call::Patch, ErrorClass::Transient, 1), retry(10));
    assert_eq!(
        react(Call::Patch, ErrorClass::Transient, p.patch_attempts),
        Reaction::Skip
    );
    assert_eq!(react(Call::Patch, ErrorClass::Rejected, 1), Reaction::Skip);
}

#[test]
fn rate_limits_wait_at_least_the_retry_after() {
    let limited = |after| ErrorClass::RateLimited(after);
    assert_eq!(react(Call::Poll, limited(Some(500 * MS)), 1), retry(500));
    assert_eq!(react(Call::Poll, limited(Some(MS)), 3), retry(40));
    assert_eq!(react(Call::Poll, limited(None), 1), retry(60_000));
    assert_eq!(react(Call::Poll, limited(None), 2), retry(120_000));
    assert_eq!(react(Call::Patch, limited(None), 2), retry(20));
}

/// ARC#4356 / scaleset#123: a session the service no longer knows, or one another listener
/// took over, is re-created instead of crashing.
#[test]
fn a_lost_session_is_recreated() {
    for call in [Call::RefreshSession, Call::Poll, Call::Queue] {
        for class in [ErrorClass::SessionNotFound, ErrorClass::SessionConflict] {
            assert_eq!(react(call, class, 1), Reaction::RecreateSession, "{call:?}");
        }
    }
    assert_eq!(
        react(Call::CreateSession, ErrorClass::SessionNotFound, 2),
        retry(20)
    );
}

/// docs/architecture.md#message-session-and-long-poll: a 401 on a queue call refreshes the session; a refresh that is refused in
/// turn re-creates it.
#[test]
fn an_expired_queue_token_refreshes_the_session() {
    for call in [Call::Poll, Call::Queue] {
        assert_eq!(
            react(call, ErrorClass::QueueTokenExpired, 1),
            Reaction::RefreshSession
        );
    }
    assert_eq!(
        react(Call::RefreshSession, ErrorClass::QueueTokenExpired, 1),
        Reaction::RecreateSession
    );
}

/// ARC#3209 / #4285: a 409 on create is retried until the conflict timeout, then the listener
/// exits with the `conflict` class.
#[test]
fn a_session_conflict_is_retried_until_the_timeout() {
    let p = policy();
    let mut f = failure(Call::CreateSession, ErrorClass::SessionConflict, 2);
    f.conflicting_for = p.conflict_timeout - MS;
    assert_eq!(on_error(&f, &p, 0.0), retry(20));
    f.conflicting_for = p.conflict_timeout;
    assert_eq!(on_error(&f, &p, 0.0), Reaction::Exit(ExitClass::Conflict));
}

#[test]
fn rejected_credentials_reauthenticate_until_the_limit() {
    let p = policy();
    for call in SERVICE_CALLS {
        let mut f = failure(call, ErrorClass::Unauthorized, 2);
        for n in 1..p.max_auth_failures {
            f.auth_failures = n;
            assert_eq!(
                on_error(&f, &p, 0.0),
                Reaction::Retry {
                    after: 20 * MS,
                    reauthenticate: true
                }
            );
        }
        f.auth_failures = p.max_auth_failures;
        assert_eq!(on_error(&f, &p, 0.0), Reaction::Exit(ExitClass::Auth));
    }
}

#[test]
fn what_only_the_controller_can_fix_exits_with_its_class() {
    for call in SERVICE_CALLS {
        assert_eq!(
            react(call, ErrorClass::InvalidConfig, 1),
            Reaction::Exit(ExitClass::Config)
        );
        assert_eq!(
            react(call, ErrorClass::ScaleSetNotFound, 1),
            Reaction::Exit(ExitClass::ScaleSetMissing)
        );
    }
}

#[test]
fn the_default_policy_keeps_the_listener_timings() {
    let p = ListenerPolicy::default();
    assert_eq!(p.backoff.delay(1, 0.0), Duration::from_secs(1));
    assert_eq!(p.backoff.delay(10, 0.0), Duration::from_secs(15));
    assert_eq!(p.backoff.delay(10, 0.999), Duration::from_secs(12) + 3 * MS);
    assert_eq!(p.conflict_timeout, Duration::from_secs(300));
    assert_eq!(p.max_auth_failures, 3);
}

fn any_class() -> impl Strategy<Value = ErrorClass> {
    prop_oneof![
        Just(ErrorClass::Transient),
        proptest::option::of((0u64..100_000).prop_map(Duration::from_millis))
            .prop_map(ErrorClass::RateLimited),
        Just(ErrorClass::Rejected),
        Just(ErrorClass::SessionConflict),
        Just(ErrorClass::SessionNotFound),
        Just(ErrorClass::QueueTokenExpired),
        Just(ErrorClass::Unauthorized),
        Just(ErrorClass::ScaleSetNotFound),
        Just(ErrorClass::InvalidConfig),
    ]
}

fn any_call() -> impl Strategy<Value = Call> {
    proptest::sample::select(vec![
        Call::CreateSession,
        Call::RefreshSession,
        Call::Poll,
        Call::Queue,
        Call::Patch,
    ])
}

/// The case proptest found: a rate-limited Kubernetes patch waited the backoff (10 ms), not the
/// server's Retry-After (18 ms).
#[test]
fn a_rate_limited_patch_waits_the_retry_after() {
    let f = failure(Call::Patch, ErrorClass::RateLimited(Some(18 * MS)), 1);
    assert!(matches!(
        on_error(&f, &policy(), 0.0),
        Reaction::Retry { after, .. } if after == 18 * MS
    ));
}

proptest! {
    /// Every wait is a jittered backoff (or a longer Retry-After), exits happen only for the
    /// deterministic classes, an exhausted conflict or the auth limit, and a bounded call
    /// never retries past its attempts.
    #[test]
    fn reactions_are_bounded(
        call in any_call(),
        class in any_class(),
        attempt in 1u32..40,
        auth_failures in 0u32..6,
        conflicting_ms in 0u64..600_000,
        random in 0.0f64..1.0,
    ) {
        let p = policy();
        let f = Failure {
            call, class, attempt, auth_failures,
            conflicting_for: Duration::from_millis(conflicting_ms),
        };
        match on_error(&f, &p, random) {
            Reaction::Retry { after, .. } => {
                let full = p.backoff.delay(attempt, 0.0);
                let floor = full.mul_f64(1.0 - p.backoff.jitter);
                match class {
                    ErrorClass::RateLimited(Some(ra)) => prop_assert!(after >= ra.max(floor)),
                    ErrorClass::RateLimited(None) if call != Call::Patch => {
                        prop_assert!(after >= Duration::from_secs(60).max(floor));
                    }
                    _ => prop_assert!(after >= floor && after <= full),
                }
                if call == Call::Queue { prop_assert!(attempt < p.queue_attempts); }
                if call == Call::Patch { prop_assert!(attempt < p.patch_attempts); }
            }
            Reaction::Exit(exit) => {
                prop_assert!(call != Call::Patch);
                match exit {
                    ExitClass::Auth => prop_assert!(auth_failures >= p.max_auth_failures),
                    ExitClass::Conflict => prop_assert!(
                        call == Call::CreateSession && f.conflicting_for >= p.conflict_timeout
                    ),
                    ExitClass::Config => prop_assert_eq!(class, ErrorClass::InvalidConfig),
                    ExitClass::ScaleSetMissing => {
                        prop_assert_eq!(class, ErrorClass::ScaleSetNotFound)
                    }
                    ExitClass::Transient | ExitClass::Shutdown => prop_assert!(false),
                }
            }
            Reaction::RefreshSession | Reaction::RecreateSession => {
                prop_assert!(call != Call::CreateSession && call != Call::Patch);
            }
            Reaction::Skip => prop_assert!(matches!(call, Call::Queue | Call::Patch)),
        }
    }
}
