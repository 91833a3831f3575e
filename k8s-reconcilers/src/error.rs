//! Errors of the reconcilers.

use crate::github::ServiceError;

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The user's configuration cannot work; the message names the field, the value and the fix.
    /// The only variant reported as `InvalidConfiguration` and retried at the slow backoff.
    #[error("{0}")]
    Config(String),
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

    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Config(_) => "config",
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
}
