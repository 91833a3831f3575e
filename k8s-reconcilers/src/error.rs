//! Errors of the reconcilers.

use crate::github::ServiceError;

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The user's configuration cannot work; the message names the field, the value and the fix.
    #[error("{0}")]
    Config(String),
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
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Config(_) => "config",
            Error::Service(_) => "service",
            Error::Finalizer(_) => "finalizer",
            Error::Serialize { .. } => "serialize",
            Error::Waiting { .. } => "waiting",
        }
    }
}
