//! The one error type of the crate, with the context of the failed call.

use std::fmt;
use std::time::Duration;

/// What is known about a failed call. Never contains a credential.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The operation, named as in docs/architecture.md#operations (e.g. `create session`).
    pub operation: &'static str,
    /// HTTP method, when a request was made.
    pub method: Option<String>,
    /// Request URL (no credential is ever part of a URL).
    pub url: Option<String>,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The service's exception `typeName`, when the body carried one.
    pub exception: Option<String>,
    /// The service's message, the text body, or a description of what went wrong.
    pub message: String,
    /// `X-GitHub-Request-Id` response header.
    pub request_id: Option<String>,
    /// `ActivityId` response header.
    pub activity_id: Option<String>,
}

impl ErrorInfo {
    /// Context for a failure that happened before or without a response.
    pub fn new(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            operation,
            message: message.into(),
            ..Self::default()
        }
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        if let (Some(method), Some(url)) = (&self.method, &self.url) {
            write!(f, " ({method} {url})")?;
        }
        if let Some(status) = self.status {
            write!(f, ": status {status}")?;
        }
        if let Some(exception) = &self.exception {
            write!(f, ": {exception}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(id) = &self.activity_id {
            write!(f, " (activity_id={id:?})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (github_request_id={id:?})")?;
        }
        Ok(())
    }
}

/// Every failure of this crate. Match on the variant; the [`ErrorInfo`] says what happened.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid configuration (config URL, credentials, CA bundle, proxy URL): names the field,
    /// the value (never a secret) and the fix.
    #[error("invalid {field} {value:?}: {reason}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// Its value, or a description when the value is secret.
        value: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Another message session holds the scale set (`TaskAgentSessionConflictException`, 409).
    #[error("session conflict: {0}")]
    SessionConflict(Box<ErrorInfo>),
    /// The message session is gone (deleted or expired on the service side).
    #[error("message session not found: {0}")]
    SessionNotFound(Box<ErrorInfo>),
    /// The runner scale set does not exist.
    #[error("runner scale set not found: {0}")]
    ScaleSetNotFound(Box<ErrorInfo>),
    /// No runner group with that name.
    #[error("runner group not found: {0}")]
    RunnerGroupNotFound(Box<ErrorInfo>),
    /// The runner does not exist (`AgentNotFoundException`).
    #[error("runner not found: {0}")]
    RunnerNotFound(Box<ErrorInfo>),
    /// The runner still runs a job (`JobStillRunningException`): try again later.
    #[error("job still running: {0}")]
    JobStillRunning(Box<ErrorInfo>),
    /// A runner with that name already exists (`AgentExistsException`).
    #[error("runner exists: {0}")]
    RunnerExists(Box<ErrorInfo>),
    /// The message-queue token was rejected (401 on a queue call or acquire jobs).
    #[error("message queue token expired: {0}")]
    TokenExpired(Box<ErrorInfo>),
    /// A rate limit: a 429, or a 403 with `Retry-After`, `x-ratelimit-remaining: 0` or GitHub's
    /// rate-limit message. Not a credential problem: wait, then try again.
    #[error("rate limited ({}): {info}", wait_text(*retry_after))]
    RateLimited {
        /// The wait the answer named (`Retry-After`, or until `x-ratelimit-reset`); `None` when
        /// it named none (then wait at least a minute, longer for repeats).
        retry_after: Option<Duration>,
        /// Context.
        info: Box<ErrorInfo>,
    },
    /// Credentials rejected (401/403): fix the PAT, the App or its installation.
    #[error("authentication failed: {0}")]
    AuthFailed(Box<ErrorInfo>),
    /// 5xx after the retries ran out.
    #[error("server error: {0}")]
    Server(Box<ErrorInfo>),
    /// Another unexpected status (400, 404, 409, 422, …) with the service's explanation.
    #[error("request rejected: {0}")]
    Rejected(Box<ErrorInfo>),
    /// No response: connection, TLS, proxy or timeout trouble (after the retries).
    #[error("transport error: {0}")]
    Transport(Box<ErrorInfo>),
    /// A response that could not be understood.
    #[error("bad response: {0}")]
    BadResponse(Box<ErrorInfo>),
}

impl Error {
    /// The call's context, when the error came from a call.
    pub fn info(&self) -> Option<&ErrorInfo> {
        match self {
            Error::Config { .. } => None,
            Error::SessionConflict(i)
            | Error::SessionNotFound(i)
            | Error::ScaleSetNotFound(i)
            | Error::RunnerGroupNotFound(i)
            | Error::RunnerNotFound(i)
            | Error::JobStillRunning(i)
            | Error::RunnerExists(i)
            | Error::TokenExpired(i)
            | Error::AuthFailed(i)
            | Error::Server(i)
            | Error::Rejected(i)
            | Error::Transport(i)
            | Error::BadResponse(i) => Some(i),
            Error::RateLimited { info, .. } => Some(info),
        }
    }

    /// The HTTP status of the failed response, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.info().and_then(|i| i.status)
    }

    /// Whether trying the same call again later may succeed (transport, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Transport(_) | Error::Server(_) | Error::RateLimited { .. }
        )
    }

    /// Whether the error means "it does not exist" (scale set, session, runner or group).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::ScaleSetNotFound(_)
                | Error::SessionNotFound(_)
                | Error::RunnerNotFound(_)
                | Error::RunnerGroupNotFound(_)
        )
    }

    pub(crate) fn config(
        field: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            field,
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_response(info: ErrorInfo) -> Self {
        Error::BadResponse(Box::new(info))
    }
}

/// How a rate limit's wait reads in an error message.
fn wait_text(wait: Option<Duration>) -> String {
    match wait {
        Some(wait) => format!("retry after {}s", wait.as_secs()),
        None => "no wait named; retry in a minute or more".to_owned(),
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
