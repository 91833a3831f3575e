//! The listener's error policy: what the listener does when a call to the Actions service or
//! to Kubernetes fails (docs/architecture.md#error-handling-and-exit-classes; pain points 3-5 of
//! docs/architecture.md#arc-pain-points-and-our-answers).
//!
//! The listener classifies the error ([`ErrorClass`]), says which call failed ([`Call`]) and
//! what it has counted so far ([`Failure`]), and carries out the [`Reaction`] that [`on_error`]
//! returns. It survives everything except rejected credentials (after
//! [`ListenerPolicy::max_auth_failures`] fresh credential exchanges), a configuration only the
//! controller can fix, a scale set gone from the service, and a session conflict lasting longer
//! than [`ListenerPolicy::conflict_timeout`].
//!
//! ```
//! use scaleset_core::listener_policy::*;
//! use scaleset_core::listener_lifecycle::ExitClass;
//! use std::time::Duration;
//! let p = ListenerPolicy::default();
//! let poll = |class| Failure { call: Call::Poll, class, attempt: 1, auth_failures: 0, conflicting_for: Duration::ZERO };
//! assert_eq!(on_error(&poll(ErrorClass::QueueTokenExpired), &p, 0.0), Reaction::RefreshSession);
//! assert_eq!(on_error(&poll(ErrorClass::SessionNotFound), &p, 0.0), Reaction::RecreateSession);
//! assert_eq!(on_error(&poll(ErrorClass::ScaleSetNotFound), &p, 0.0), Reaction::Exit(ExitClass::ScaleSetMissing));
//! ```

use crate::backoff::Backoff;
use crate::listener_lifecycle::ExitClass;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A classified error of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Connection errors, timeouts, 5xx, an unreadable or unexpected answer.
    Transient,
    /// 429 or a rate-limit 403 that outlasted the transport's retries, with the server's
    /// `Retry-After` when given.
    RateLimited(Option<Duration>),
    /// A 4xx the service answered for this request (other than the classes below): repeating
    /// the same request does not help.
    Rejected,
    /// 409 `RunnerScaleSetSessionConflictException`: another session holds the scale set.
    SessionConflict,
    /// The service no longer knows the session.
    SessionNotFound,
    /// 401 on a queue call: the message-queue token expired.
    QueueTokenExpired,
    /// Credentials rejected (401/403 from GitHub, revoked token, bad app key).
    Unauthorized,
    /// The scale set does not exist on the service.
    ScaleSetNotFound,
    /// Invalid configuration (URL, settings the service refuses).
    InvalidConfig,
}

/// The call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// A7: creating the message session.
    CreateSession,
    /// A8: refreshing the message-queue token.
    RefreshSession,
    /// Q1: the long poll.
    Poll,
    /// Q2 or A10: acknowledging a message or acquiring jobs; the service redelivers what is
    /// left undone.
    Queue,
    /// A Kubernetes patch (EphemeralRunnerSet replicas, EphemeralRunner status): only
    /// [`ErrorClass::Transient`] (retried) and [`ErrorClass::Rejected`] (the object is gone);
    /// the next poll applies the count again.
    Patch,
}

/// What the listener observed when a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The call.
    pub call: Call,
    /// Its error.
    pub class: ErrorClass,
    /// Consecutive failures of this call (of the poll loop, for [`Call::Poll`] and the
    /// refreshes it triggers), this one included.
    pub attempt: u32,
    /// Consecutive credential rejections since the last successful call, this one included.
    pub auth_failures: u32,
    /// How long session creation has been answered with conflicts only (zero when this is
    /// the first).
    pub conflicting_for: Duration,
}

/// The step the listener takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reaction {
    /// Wait, then make the call again; with `reauthenticate`, first forget the admin token so
    /// that the next call runs the credential exchange again.
    Retry {
        /// How long to wait.
        after: Duration,
        /// Forget the admin token first.
        reauthenticate: bool,
    },
    /// Refresh the message session (A8), then make the call again at once.
    RefreshSession,
    /// Forget the session and create a new one at once; a queue call is left undone.
    RecreateSession,
    /// Leave this call undone (a queue call the service redelivers, a patch the next message
    /// repeats).
    Skip,
    /// Delete the session and exit with this class.
    Exit(ExitClass),
}

/// The listener's error-policy settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ListenerPolicy {
    /// Delay between retries of the same call.
    pub backoff: Backoff,
    /// Consecutive credential rejections, each after a fresh credential exchange, before the
    /// listener exits.
    pub max_auth_failures: u32,
    /// How long a conflicting session create is retried before the listener exits.
    pub conflict_timeout: Duration,
    /// Attempts of one queue call (ack, acquire).
    pub queue_attempts: u32,
    /// Attempts of one Kubernetes patch.
    pub patch_attempts: u32,
}

impl Default for ListenerPolicy {
    fn default() -> Self {
        ListenerPolicy {
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(15)).with_jitter(0.2),
            max_auth_failures: 3,
            conflict_timeout: Duration::from_secs(300),
            queue_attempts: 4,
            patch_attempts: 3,
        }
    }
}

/// The listener's reaction to a failed call. `random` is a draw from `[0, 1)` for the
/// backoff's jitter.
///
/// | error | create session | refresh | poll | ack, acquire | patch |
/// |---|---|---|---|---|---|
/// | transient, rate limited | retry | retry | retry | retry, then skip | retry, then skip |
/// | rejected (a patch: not found) | retry | retry | retry | skip | skip |
/// | session conflict | retry until `conflict_timeout`, then exit `conflict` | re-create | re-create | re-create | - |
/// | session not found | retry | re-create | re-create | re-create | - |
/// | queue token expired | retry | re-create | refresh | refresh | - |
/// | unauthorized | re-authenticate and retry; exit `auth` at `max_auth_failures` | same | same | same | - |
/// | scale set not found | exit `scale-set-missing` | same | same | same | - |
/// | invalid configuration | exit `config` | same | same | same | - |
///
/// A rate-limited retry waits at least the server's `Retry-After`, or, when the service named
/// no wait, [`crate::failure::rate_limit_wait`] (a minute, doubling for repeats).
pub fn on_error(failure: &Failure, policy: &ListenerPolicy, random: f64) -> Reaction {
    let Failure {
        call,
        class,
        attempt,
        auth_failures,
        conflicting_for,
    } = *failure;
    let backoff = policy.backoff.delay(attempt, random);
    // A server's Retry-After is a floor for every call, a Kubernetes patch included.
    let wait = match class {
        ErrorClass::RateLimited(Some(after)) => after.max(backoff),
        // The service's rate limit without a wait: a minute or more, doubling for repeats.
        ErrorClass::RateLimited(None) if call != Call::Patch => {
            crate::failure::rate_limit_wait(None, attempt).max(backoff)
        }
        _ => backoff,
    };
    let retry_or_skip = |after, reauthenticate| {
        let limit = match call {
            Call::Queue => policy.queue_attempts,
            Call::Patch => policy.patch_attempts,
            Call::CreateSession | Call::RefreshSession | Call::Poll => u32::MAX,
        };
        if attempt >= limit {
            Reaction::Skip
        } else {
            Reaction::Retry {
                after,
                reauthenticate,
            }
        }
    };
    let retry = |after| retry_or_skip(after, false);
    if call == Call::Patch {
        return match class {
            ErrorClass::Rejected => Reaction::Skip,
            _ => retry(wait),
        };
    }
    match class {
        ErrorClass::InvalidConfig => Reaction::Exit(ExitClass::Config),
        ErrorClass::ScaleSetNotFound => Reaction::Exit(ExitClass::ScaleSetMissing),
        ErrorClass::Unauthorized if auth_failures >= policy.max_auth_failures => {
            Reaction::Exit(ExitClass::Auth)
        }
        ErrorClass::Unauthorized => retry_or_skip(backoff, true),
        ErrorClass::SessionConflict if call == Call::CreateSession => {
            if conflicting_for >= policy.conflict_timeout {
                Reaction::Exit(ExitClass::Conflict)
            } else {
                retry(backoff)
            }
        }
        ErrorClass::SessionConflict | ErrorClass::SessionNotFound
            if call != Call::CreateSession =>
        {
            Reaction::RecreateSession
        }
        ErrorClass::QueueTokenExpired => match call {
            Call::Poll | Call::Queue => Reaction::RefreshSession,
            Call::RefreshSession => Reaction::RecreateSession,
            Call::CreateSession | Call::Patch => retry(backoff),
        },
        ErrorClass::Rejected if call == Call::Queue => Reaction::Skip,
        ErrorClass::RateLimited(_) => retry(wait),
        ErrorClass::Transient
        | ErrorClass::Rejected
        | ErrorClass::SessionConflict
        | ErrorClass::SessionNotFound => retry(backoff),
    }
}

#[cfg(test)]
mod tests;
