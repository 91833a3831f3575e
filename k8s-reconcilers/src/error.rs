//! Errors of the reconcilers.

use crate::github::ServiceError;

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object's own configuration cannot work; the message names the field, the value and
    /// the fix. Reported as `InvalidConfiguration` and not retried until the object changes.
    #[error("{0}")]
    Config(String),
    /// Something the object names is missing or unusable (a Secret or ConfigMap, or the keys in
    /// it); the message names the field, the value and the fix. It may heal without an edit of
    /// the object, so it is retried every few minutes.
    #[error("{0}")]
    Unavailable(String),
    /// The Actions service or the API server returned something this controller cannot use
    /// (a scale set without an id, an object without a namespace, a JIT Secret without its
    /// registration); `what` says which.
    #[error("unusable answer: {what}")]
    Unusable {
        /// What was unusable, and what happens next.
        what: String,
    },
    /// Some of several independent calls of one pass failed; the others took effect.
    #[error("{what}: {}", .failures.join("; "))]
    Partial {
        /// The work the calls belonged to.
        what: String,
        /// Each failed call, with its error.
        failures: Vec<String>,
    },
    /// The Actions service failed.
    #[error("Actions service: {0}")]
    Service(#[source] ServiceError),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Not an error: a dependent step is still in progress (e.g. waiting during deletion);
    /// requeue after `retry_after` without backoff.
    #[error("waiting for {what}")]
    Waiting {
        /// What is awaited.
        what: String,
        /// When to look again.
        retry_after: std::time::Duration,
    },
    /// Serialising an object failed.
    #[error("serialising {what}: {source}")]
    Serialize {
        /// What was serialised.
        what: &'static str,
        /// Cause.
        source: serde_json::Error,
    },
}

impl Error {
    /// `Err(Partial)` when any call of `what` failed.
    pub fn partial(what: impl Into<String>, failures: Vec<String>) -> Result<(), Error> {
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Partial {
                what: what.into(),
                failures,
            })
        }
    }

    /// The class of this failure, for [`scaleset_core::failure::after_failure`].
    pub fn failure(&self) -> scaleset_core::failure::Failure {
        use crate::github::ServiceErrorKind as K;
        use scaleset_core::failure::Failure;
        match self {
            Error::Config(_) => Failure::Invalid,
            Error::Unavailable(_) => Failure::Unavailable,
            Error::Service(e)
                if matches!(e.kind, K::Unreachable | K::Unauthorized | K::Configuration) =>
            {
                Failure::Unavailable
            }
            Error::Service(e) if e.kind == K::RateLimited => Failure::RateLimited {
                retry_after: e.retry_after,
            },
            Error::Service(e) => Failure::Transient {
                retry_after: e.retry_after,
            },
            _ => Failure::Transient { retry_after: None },
        }
    }

    /// The reason of the Warning Event (and, on an AutoscalingRunnerSet, of the `Ready=False`
    /// condition) that reports this failure to the user; `None` for failures that are not the
    /// user's to fix.
    pub fn reason(&self) -> Option<&'static str> {
        use crate::github::ServiceErrorKind as K;
        match self {
            // A Secret or ConfigMap the spec names is part of the configuration, too.
            Error::Config(_) | Error::Unavailable(_) => Some("InvalidConfiguration"),
            Error::Service(e) if e.kind == K::Unreachable => Some("ServiceUnreachable"),
            Error::Service(e) if e.kind == K::Unauthorized => Some("CredentialsRejected"),
            Error::Service(e) if e.kind == K::Configuration => Some("InvalidConfiguration"),
            Error::Service(e) if e.kind == K::RateLimited => Some("RateLimited"),
            Error::Service(_) => Some("ActionsServiceError"),
            Error::Unusable { .. } => Some("UnusableAnswer"),
            Error::Partial { .. } => Some("CallsFailed"),
            _ => None,
        }
    }

    /// Whether the user can fix this failure (it gets a condition where the kind has one).
    pub fn is_users_to_fix(&self) -> bool {
        !matches!(
            self.failure(),
            scaleset_core::failure::Failure::Transient { .. }
                | scaleset_core::failure::Failure::RateLimited { .. }
        )
    }

    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Config(_) => "config",
            Error::Unavailable(_) => "unavailable",
            Error::Unusable { .. } => "unusable",
            Error::Partial { .. } => "partial",
            Error::Service(_) => "service",
            Error::Finalizer(_) => "finalizer",
            Error::Serialize { .. } => "serialize",
            Error::Waiting { .. } => "waiting",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_is_an_error_only_when_a_call_failed() {
        assert!(Error::partial("scaling", Vec::new()).is_ok());
        let Err(e) = Error::partial(
            "scaling set a",
            vec!["create: 500".into(), "delete: 409".into()],
        ) else {
            panic!("failures must make an error");
        };
        assert_eq!(e.to_string(), "scaling set a: create: 500; delete: 409");
        assert_eq!(e.metric_label(), "partial");
    }

    /// Issue #19: a rate limit is waited out, not reported as bad credentials: its own reason,
    /// no condition (not the user's to fix), the named wait or at least a minute, doubling.
    #[test]
    fn a_rate_limit_is_not_a_credential_failure() {
        use crate::github::{ServiceError, ServiceErrorKind};
        use scaleset_core::failure::{Remedy, after_failure};
        use std::time::Duration;
        let limited = |after: Option<u64>| {
            let mut e = ServiceError::new(ServiceErrorKind::RateLimited, "ListScaleSets", "403");
            e.retry_after = after.map(Duration::from_secs);
            Error::Service(e)
        };
        let remedy = |e: &Error, n| after_failure(e.failure(), n);
        for e in [limited(Some(90)), limited(None)] {
            assert_eq!(e.reason(), Some("RateLimited"));
            assert!(!e.is_users_to_fix(), "a rate limit got a condition");
        }
        let secs = |s| Remedy::RetryAfter(Duration::from_secs(s));
        assert_eq!(remedy(&limited(Some(90)), 1), secs(90));
        assert_eq!(remedy(&limited(Some(90)), 40), secs(1000));
        assert_eq!(remedy(&limited(None), 1), secs(60));
        assert_eq!(remedy(&limited(None), 2), secs(120));
        let rejected = Error::Service(ServiceError::new(
            ServiceErrorKind::Unauthorized,
            "ListScaleSets",
            "403",
        ));
        assert_eq!(rejected.reason(), Some("CredentialsRejected"));
        assert!(rejected.is_users_to_fix());
    }
}
