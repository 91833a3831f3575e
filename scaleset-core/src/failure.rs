//! What a reconciler does after a failed pass, and when a deletion stops waiting for cleanup it
//! cannot finish (docs/architecture.md#bad-input-and-stuck-deletions).
//!
//! A reconciler classifies its error as a [`Failure`] and asks [`after_failure`] what to do:
//! input the user must edit is reported once and not retried until the object changes; a
//! missing or unreachable dependency is retried every few minutes; anything else backs off from
//! milliseconds.
//!
//! ```
//! use scaleset_core::failure::*;
//! use std::time::Duration;
//! assert_eq!(after_failure(Failure::Invalid, 1), Remedy::AwaitChange);
//! assert_eq!(after_failure(Failure::Unavailable, 1), Remedy::RetryAfter(Duration::from_secs(30)));
//! assert_eq!(after_failure(Failure::Unavailable, 9), Remedy::RetryAfter(Duration::from_secs(300)));
//! let limited = Failure::RateLimited { retry_after: Some(Duration::from_secs(90)) };
//! assert_eq!(after_failure(limited, 1), Remedy::RetryAfter(Duration::from_secs(90)));
//! let unnamed = Failure::RateLimited { retry_after: None };
//! assert_eq!(after_failure(unnamed, 1), Remedy::RetryAfter(Duration::from_secs(60)));
//! assert_eq!(after_failure(unnamed, 3), Remedy::RetryAfter(Duration::from_secs(240)));
//! ```
//!
//! On the deletion path every failure is retried, but for a bounded time only:
//!
//! ```
//! use scaleset_core::failure::*;
//! use std::time::Duration;
//! let grace = DELETION_GRACE;
//! assert_eq!(on_cleanup_failure(Duration::from_secs(60), grace), CleanupFailure::Retry);
//! assert_eq!(on_cleanup_failure(grace, grace), CleanupFailure::Abandon);
//! ```

use crate::backoff::Backoff;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The class of a failed reconcile pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The object's own fields cannot work (the message names the field, the value and the
    /// fix). Only an edit of the object helps, and an edit starts a new pass.
    Invalid,
    /// Something the object names is missing or out of reach: a Secret or ConfigMap that does
    /// not exist (or lacks its keys), a `githubConfigUrl` host that refuses connections,
    /// credentials the service refuses. It may heal without an edit of the object (and those
    /// objects are not watched), so it is retried, slowly.
    Unavailable,
    /// The service's rate limit (a 429, or a 403 that says so): neither the user's to fix nor a
    /// credential rejection. The next attempt comes no sooner than the wait the service named,
    /// or, when it named none, than [`rate_limit_wait`] (a minute, doubling for repeats).
    RateLimited {
        /// The wait the service named (`Retry-After`, or until `x-ratelimit-reset`).
        retry_after: Option<Duration>,
    },
    /// Anything else (API-server trouble, a service 5xx): retried from milliseconds, doubling,
    /// and no sooner than `retry_after` when the answer named a wait.
    Transient {
        /// The wait the service asked for, if it did.
        retry_after: Option<Duration>,
    },
}

/// What to do after a failed pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Remedy {
    /// Nothing until the object changes (the watch starts the next pass).
    AwaitChange,
    /// Try again after this delay.
    RetryAfter(Duration),
}

/// Backoff of [`Failure::Transient`]: 5 ms doubling to 1000 s (ARC's rate-limited requeue).
pub const TRANSIENT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(5), Duration::from_secs(1000));

/// Backoff of [`Failure::Unavailable`]: 30 s doubling to 5 minutes.
pub const UNAVAILABLE_BACKOFF: Backoff =
    Backoff::new(Duration::from_secs(30), Duration::from_secs(300));

/// Backoff after a rate limit that named no wait: GitHub asks for at least a minute, and for
/// exponentially longer waits while the limit persists; 60 s doubling to 16 minutes.
pub const RATE_LIMIT_BACKOFF: Backoff =
    Backoff::new(Duration::from_secs(60), Duration::from_secs(960));

/// How long to wait after the `repeats`-th consecutive rate limit (1 is the first): the wait the
/// service named (never less than the transient backoff), or [`RATE_LIMIT_BACKOFF`] when it
/// named none.
///
/// ```
/// use scaleset_core::failure::rate_limit_wait;
/// use std::time::Duration;
/// let s = Duration::from_secs;
/// assert_eq!(rate_limit_wait(Some(s(42)), 1), s(42));
/// assert_eq!(rate_limit_wait(None, 1), s(60));
/// assert_eq!(rate_limit_wait(None, 2), s(120));
/// assert_eq!(rate_limit_wait(None, 30), s(960));
/// ```
pub fn rate_limit_wait(retry_after: Option<Duration>, repeats: u32) -> Duration {
    match retry_after {
        Some(after) => after.max(TRANSIENT_BACKOFF.delay(repeats, 0.0)),
        None => RATE_LIMIT_BACKOFF.delay(repeats, 0.0),
    }
}

/// Decides what follows the `failures`-th consecutive failure (1 is the first) of this class.
pub fn after_failure(failure: Failure, failures: u32) -> Remedy {
    match failure {
        Failure::Invalid => Remedy::AwaitChange,
        Failure::Unavailable => Remedy::RetryAfter(UNAVAILABLE_BACKOFF.delay(failures, 0.0)),
        Failure::RateLimited { retry_after } => {
            Remedy::RetryAfter(rate_limit_wait(retry_after, failures))
        }
        Failure::Transient { retry_after } => {
            let delay = TRANSIENT_BACKOFF.delay(failures, 0.0);
            Remedy::RetryAfter(retry_after.map_or(delay, |after| delay.max(after)))
        }
    }
}

/// How long a deletion may keep failing, counted from the deletion request, before its
/// finalizer is removed anyway and what could not be cleaned up is reported.
pub const DELETION_GRACE: Duration = Duration::from_secs(15 * 60);

/// What a deletion does when a cleanup step failed (or, where the reconciler says so, is still
/// waiting on something that cannot be hurried, such as a child held by a foreign finalizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupFailure {
    /// Within the grace period: retry as usual.
    Retry,
    /// The grace period is over: remove the finalizer and report what was left behind.
    Abandon,
}

/// Decides whether a deletion that has been under way for `deleting_for` keeps retrying a
/// failed cleanup or gives up on it after `grace`.
pub fn on_cleanup_failure(deleting_for: Duration, grace: Duration) -> CleanupFailure {
    if deleting_for >= grace {
        CleanupFailure::Abandon
    } else {
        CleanupFailure::Retry
    }
}

/// [`after_failure`] for an object being deleted: a deletion never waits for an edit (nobody
/// edits what they deleted) and never past its deadline, `grace` after the deletion request, at
/// which its reconciler abandons what it could not clean up.
///
/// ```
/// use scaleset_core::failure::*;
/// use std::time::Duration;
/// let grace = Duration::from_secs(900);
/// let early = after_cleanup_failure(Failure::Unavailable, 1, Duration::from_secs(880), grace);
/// assert_eq!(early, Remedy::RetryAfter(Duration::from_secs(21)));
/// let slow = after_cleanup_failure(Failure::Unavailable, 9, Duration::ZERO, grace);
/// assert_eq!(slow, Remedy::RetryAfter(Duration::from_secs(300)));
/// let late = after_cleanup_failure(Failure::Invalid, 1, grace, grace);
/// assert_eq!(late, Remedy::RetryAfter(Duration::from_millis(5)));
/// ```
pub fn after_cleanup_failure(
    failure: Failure,
    failures: u32,
    deleting_for: Duration,
    grace: Duration,
) -> Remedy {
    let remedy = match after_failure(failure, failures) {
        Remedy::AwaitChange => after_failure(Failure::Transient { retry_after: None }, failures),
        retry => retry,
    };
    if on_cleanup_failure(deleting_for, grace) == CleanupFailure::Abandon {
        return remedy;
    }
    let deadline = grace.saturating_sub(deleting_for) + DEADLINE_SLACK;
    match remedy {
        Remedy::RetryAfter(d) => Remedy::RetryAfter(d.min(deadline)),
        Remedy::AwaitChange => Remedy::RetryAfter(deadline),
    }
}

/// How long after its deadline a failing deletion is looked at again.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn transient_backoff_is_arcs() {
        let t = Failure::Transient { retry_after: None };
        assert_eq!(
            after_failure(t, 1),
            Remedy::RetryAfter(Duration::from_millis(5))
        );
        assert_eq!(
            after_failure(t, 2),
            Remedy::RetryAfter(Duration::from_millis(10))
        );
        assert_eq!(
            after_failure(t, 40),
            Remedy::RetryAfter(Duration::from_secs(1000))
        );
    }

    proptest! {
        /// A rate limit is never retried sooner than the service asked, nor sooner than a
        /// minute when it named no wait, and repeats without a named wait never wait less.
        #[test]
        fn rate_limits_are_waited_out(n in 1u32..60, secs in proptest::option::of(0u64..100_000)) {
            let named = secs.map(Duration::from_secs);
            let Remedy::RetryAfter(d) = after_failure(Failure::RateLimited { retry_after: named }, n)
            else {
                return Err(TestCaseError::fail("a rate limit awaited a change"));
            };
            prop_assert!(d >= named.unwrap_or(Duration::from_secs(60)));
            if named.is_none() {
                prop_assert!(rate_limit_wait(None, n + 1) >= d);
            }
        }

        /// A dependency that may heal is never retried faster than every 30 s nor slower than
        /// every 5 minutes; invalid input is never retried by time.
        #[test]
        fn unavailable_retries_are_minutes(n in 0u32..200) {
            match after_failure(Failure::Unavailable, n) {
                Remedy::RetryAfter(d) => prop_assert!(
                    d >= Duration::from_secs(30) && d <= Duration::from_secs(300)
                ),
                Remedy::AwaitChange => prop_assert!(false, "unavailable must be retried"),
            }
            prop_assert_eq!(after_failure(Failure::Invalid, n), Remedy::AwaitChange);
        }

        /// A failing deletion is always retried, and never later than its deadline.
        #[test]
        fn deletions_are_retried_before_their_deadline(
            n in 1u32..60, secs in 0u64..2_000, grace in 1u64..1_000, which in 0usize..4,
        ) {
            let failure = [
                Failure::Invalid,
                Failure::Unavailable,
                Failure::Transient { retry_after: None },
                Failure::RateLimited { retry_after: None },
            ][which];
            let (deleting_for, grace) = (Duration::from_secs(secs), Duration::from_secs(grace));
            match after_cleanup_failure(failure, n, deleting_for, grace) {
                Remedy::RetryAfter(d) if deleting_for < grace => {
                    prop_assert!(d <= grace - deleting_for + DEADLINE_SLACK);
                }
                Remedy::RetryAfter(_) => {}
                Remedy::AwaitChange => prop_assert!(false, "a deletion awaited a change"),
            }
        }

        /// A deletion is abandoned exactly once the grace period has passed.
        #[test]
        fn cleanup_is_bounded(secs in 0u64..10_000, grace in 1u64..5_000) {
            let verdict = on_cleanup_failure(Duration::from_secs(secs), Duration::from_secs(grace));
            prop_assert_eq!(verdict == CleanupFailure::Abandon, secs >= grace);
        }
    }
}
