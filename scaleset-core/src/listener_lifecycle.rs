//! Listener lifecycle: in-process error handling in the listener and (re)creation of the
//! listener pod by the controller, with backoff by error class (anchors.md pain points 3-6;
//! controllers.md 5.8; listener.md 4.3 and 9).
//!
//! Two halves:
//! * In the listener, [`on_error`] turns a classified error ([`ErrorClass`]) and the number of
//!   consecutive failures of that class into an [`InProcess`] step: retry, refresh or re-create
//!   the message session, or exit. On exit the listener writes
//!   [`ExitClass::termination_message`] to its termination log (`/dev/termination-log`).
//! * In the controller, [`decide`] looks at the listener pod ([`ListenerPod`]) and the recorded
//!   [`ListenerHistory`] and returns a [`ListenerAction`]. A pod that exits for a deterministic
//!   reason (bad credentials, invalid configuration, scale set gone) is recreated after a long,
//!   growing delay instead of in a tight loop (ARC#4656); a configuration change (new integrity
//!   hash, e.g. rotated credentials) voids the history and recreates at once.
//!
//! ```
//! use scaleset_core::listener_lifecycle::*;
//! use scaleset_core::time::Timestamp;
//! use std::time::Duration;
//! let policy = LifecyclePolicy::default();
//! let t0 = Timestamp::from_unix_seconds(0);
//! // the listener exited with bad credentials
//! let pod = ListenerPod::Terminated { class: ExitClass::Auth, ran_for: Duration::from_secs(2) };
//! let history = ListenerHistory::default();
//! let ListenerAction::Delete { record: Some(class) } = decide(&pod, "h1", "h1", &history, t0, &policy) else { panic!() };
//! let history = history.record(class, Duration::from_secs(2), "h1", t0, &policy);
//! // the next pass does not recreate it right away
//! let later = t0 + Duration::from_secs(1);
//! let wait = decide(&ListenerPod::Missing, "", "h1", &history, later, &policy);
//! assert!(matches!(wait, ListenerAction::Wait(Some(d)) if d >= Duration::from_secs(30)));
//! // fixed credentials change the configuration hash: recreate at once
//! assert_eq!(decide(&ListenerPod::Missing, "", "h2", &history, later, &policy), ListenerAction::Create);
//! ```

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A classified listener-side error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Connection errors, timeouts, 5xx, EOF on a 200: retry in process.
    Transient,
    /// 429 or a rate-limit 403, with the server's `Retry-After` when given.
    RateLimited(Option<Duration>),
    /// 409 `RunnerScaleSetSessionConflictException`: another session holds the scale set.
    SessionConflict,
    /// The session is gone (refresh 404, "session ID doesn't exist").
    SessionNotFound,
    /// 401 on a queue call (`MessageQueueTokenExpired`).
    QueueTokenExpired,
    /// Credentials rejected (401/403 from GitHub, revoked token, bad app key).
    Unauthorized,
    /// The scale set does not exist on the service (404 `RunnerScaleSetNotFound`).
    ScaleSetNotFound,
    /// Invalid configuration (config file, URL, ERS missing or forbidden).
    InvalidConfig,
    /// Shutdown requested (SIGTERM).
    Shutdown,
}

/// Why the listener process ended; written as its termination message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitClass {
    /// Retries of transient errors were exhausted, or the reason is unknown.
    Transient,
    /// The session stayed in conflict.
    Conflict,
    /// Credentials rejected.
    Auth,
    /// Configuration invalid.
    Config,
    /// Scale set missing on the service (the controller re-creates it).
    ScaleSetMissing,
    /// Normal shutdown.
    Shutdown,
}

impl ExitClass {
    const TOKENS: [(ExitClass, &'static str); 6] = [
        (ExitClass::Transient, "transient"),
        (ExitClass::Conflict, "conflict"),
        (ExitClass::Auth, "auth"),
        (ExitClass::Config, "config"),
        (ExitClass::ScaleSetMissing, "scale-set-missing"),
        (ExitClass::Shutdown, "shutdown"),
    ];

    /// The token used in termination messages.
    pub fn token(self) -> &'static str {
        Self::TOKENS
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("transient", |(_, t)| t)
    }

    /// `arc-listener-exit=<token>: <detail>`; the detail must not contain secrets.
    ///
    /// ```
    /// use scaleset_core::listener_lifecycle::ExitClass;
    /// let m = ExitClass::Auth.termination_message("401 from api.github.com");
    /// assert_eq!(m, "arc-listener-exit=auth: 401 from api.github.com");
    /// assert_eq!(ExitClass::from_termination_message(&m), ExitClass::Auth);
    /// assert_eq!(ExitClass::from_termination_message("panic"), ExitClass::Transient);
    /// ```
    pub fn termination_message(self, detail: &str) -> String {
        format!("{PREFIX}{}: {detail}", self.token())
    }

    /// Parses a termination message; anything unrecognised is [`ExitClass::Transient`].
    pub fn from_termination_message(message: &str) -> Self {
        let token = message
            .lines()
            .find_map(|l| l.trim().strip_prefix(PREFIX))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_default();
        Self::TOKENS
            .iter()
            .find(|(_, t)| *t == token)
            .map_or(ExitClass::Transient, |(c, _)| *c)
    }

    /// Deterministic failures that restarting cannot fix until something changes.
    pub fn is_deterministic(self) -> bool {
        matches!(
            self,
            ExitClass::Auth | ExitClass::Config | ExitClass::ScaleSetMissing
        )
    }
}

const PREFIX: &str = "arc-listener-exit=";

/// Tunables for both halves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePolicy {
    /// First in-process retry delay for transient errors; doubles per attempt.
    pub transient_base: Duration,
    /// Cap of the in-process transient delay.
    pub transient_max: Duration,
    /// In-process transient attempts before exiting.
    pub transient_attempts: u32,
    /// Delay between session-conflict retries (the old ARC listener: 30 s).
    pub conflict_interval: Duration,
    /// Session-conflict retries before exiting (the old ARC listener: 10).
    pub conflict_attempts: u32,
    /// Controller restart delay after a transient exit; doubles per consecutive failure.
    pub restart_base: Duration,
    /// Controller restart delay after a deterministic exit; doubles per consecutive failure.
    pub deterministic_base: Duration,
    /// Cap of every controller restart delay.
    pub restart_max: Duration,
    /// A listener that ran this long before exiting starts a fresh failure count.
    pub stable_after: Duration,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        LifecyclePolicy {
            transient_base: Duration::from_secs(1),
            transient_max: Duration::from_secs(60),
            transient_attempts: 10,
            conflict_interval: Duration::from_secs(30),
            conflict_attempts: 10,
            restart_base: Duration::from_secs(5),
            deterministic_base: Duration::from_secs(60),
            restart_max: Duration::from_secs(30 * 60),
            stable_after: Duration::from_secs(10 * 60),
        }
    }
}

fn doubling(base: Duration, exponent: u32, cap: Duration) -> Duration {
    let factor = 1u32.checked_shl(exponent.min(20)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// What the listener does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InProcess {
    /// Retry the same call after the delay.
    RetryAfter(Duration),
    /// Refresh the message session, then retry once.
    RefreshSession,
    /// Create a new message session (the old one is gone) and continue from the last message.
    RecreateSession,
    /// Delete the session and exit with this class.
    Exit(ExitClass),
}

/// Listener-side error handling. `attempt` counts consecutive failures of this class,
/// starting at 1; reset it after a successful call.
///
/// ```
/// use scaleset_core::listener_lifecycle::*;
/// use std::time::Duration;
/// let p = LifecyclePolicy::default();
/// assert_eq!(on_error(ErrorClass::Transient, 1, &p), InProcess::RetryAfter(Duration::from_secs(1)));
/// assert_eq!(on_error(ErrorClass::SessionNotFound, 1, &p), InProcess::RecreateSession);
/// assert_eq!(on_error(ErrorClass::Unauthorized, 1, &p), InProcess::Exit(ExitClass::Auth));
/// ```
pub fn on_error(class: ErrorClass, attempt: u32, policy: &LifecyclePolicy) -> InProcess {
    let n = attempt.max(1);
    match class {
        ErrorClass::Shutdown => InProcess::Exit(ExitClass::Shutdown),
        ErrorClass::Unauthorized => InProcess::Exit(ExitClass::Auth),
        ErrorClass::InvalidConfig => InProcess::Exit(ExitClass::Config),
        ErrorClass::ScaleSetNotFound => InProcess::Exit(ExitClass::ScaleSetMissing),
        ErrorClass::QueueTokenExpired if n == 1 => InProcess::RefreshSession,
        ErrorClass::SessionNotFound if n <= 2 => InProcess::RecreateSession,
        ErrorClass::SessionConflict if n <= policy.conflict_attempts => {
            InProcess::RetryAfter(policy.conflict_interval)
        }
        ErrorClass::SessionConflict => InProcess::Exit(ExitClass::Conflict),
        ErrorClass::RateLimited(Some(after)) if n <= policy.transient_attempts => {
            InProcess::RetryAfter(after.max(policy.transient_base))
        }
        ErrorClass::Transient
        | ErrorClass::RateLimited(_)
        | ErrorClass::QueueTokenExpired
        | ErrorClass::SessionNotFound
            if n <= policy.transient_attempts =>
        {
            InProcess::RetryAfter(doubling(policy.transient_base, n - 1, policy.transient_max))
        }
        _ => InProcess::Exit(ExitClass::Transient),
    }
}

/// The listener pod as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerPod {
    /// No pod.
    Missing,
    /// Being deleted.
    Deleting,
    /// Scheduled or starting.
    Pending,
    /// The `listener` container runs.
    Running,
    /// The `listener` container terminated (any exit code); `class` from its termination
    /// message, `ran_for` from its start and finish times.
    Terminated {
        /// Parsed exit class.
        class: ExitClass,
        /// How long it ran.
        ran_for: Duration,
    },
    /// The cluster removed it: `Evicted`, `OutOf*`, node shutdown or loss, pod phase Failed
    /// without a container state.
    ClusterLost,
}

/// Restart history kept by the controller (e.g. in the AutoscalingListener status).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerHistory {
    /// Consecutive failed runs.
    pub consecutive_failures: u32,
    /// When the last failed run was recorded.
    pub last_failure: Option<Timestamp>,
    /// Its class.
    pub last_class: Option<ExitClass>,
    /// Integrity hash of the listener configuration the failures happened with; a different
    /// current hash (e.g. rotated credentials) voids the history.
    pub config_hash: String,
}

impl ListenerHistory {
    /// Records an exit of a listener that ran with configuration `config_hash`. Shutdown exits
    /// are not failures; a run longer than [`LifecyclePolicy::stable_after`], or a different
    /// configuration, starts the count afresh.
    pub fn record(
        self,
        class: ExitClass,
        ran_for: Duration,
        config_hash: &str,
        now: Timestamp,
        policy: &LifecyclePolicy,
    ) -> ListenerHistory {
        if class == ExitClass::Shutdown {
            return self;
        }
        let previous = if ran_for >= policy.stable_after || self.config_hash != config_hash {
            0
        } else {
            self.consecutive_failures
        };
        ListenerHistory {
            consecutive_failures: previous.saturating_add(1),
            last_failure: Some(now),
            last_class: Some(class),
            config_hash: config_hash.to_string(),
        }
    }

    /// When a listener with configuration `config_hash` may be created; `None` = now.
    pub fn next_start(&self, config_hash: &str, policy: &LifecyclePolicy) -> Option<Timestamp> {
        if self.config_hash != config_hash {
            return None;
        }
        let last = self.last_failure?;
        Some(last + restart_delay(self.last_class?, self.consecutive_failures, policy))
    }
}

/// Controller restart delay after `failures` consecutive failed runs ending with `class`.
///
/// ```
/// use scaleset_core::listener_lifecycle::*;
/// use std::time::Duration;
/// let p = LifecyclePolicy::default();
/// assert_eq!(restart_delay(ExitClass::Transient, 1, &p), Duration::ZERO);
/// assert_eq!(restart_delay(ExitClass::Transient, 3, &p), Duration::from_secs(10));
/// assert_eq!(restart_delay(ExitClass::Auth, 1, &p), Duration::from_secs(60));
/// assert_eq!(restart_delay(ExitClass::Auth, 30, &p), Duration::from_secs(1800));
/// ```
pub fn restart_delay(class: ExitClass, failures: u32, policy: &LifecyclePolicy) -> Duration {
    let n = failures.max(1);
    match class {
        ExitClass::Shutdown => Duration::ZERO,
        ExitClass::Transient if n == 1 => Duration::ZERO,
        ExitClass::Transient => doubling(policy.restart_base, n - 2, policy.restart_max),
        ExitClass::Conflict => doubling(policy.conflict_interval, n - 1, policy.restart_max),
        ExitClass::Auth | ExitClass::Config | ExitClass::ScaleSetMissing => {
            doubling(policy.deterministic_base, n - 1, policy.restart_max)
        }
    }
}

/// What the AutoscalingListener reconciler does with the listener pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerAction {
    /// Create the pod (its Secrets and RBAC exist).
    Create,
    /// Delete the pod. With `record`, store [`ListenerHistory::record`] first (with the
    /// pod's configuration hash).
    Delete {
        /// Exit to record as a failure.
        record: Option<ExitClass>,
    },
    /// Nothing now; reconcile again after the delay, or on the next event.
    Wait(Option<Duration>),
    /// Healthy.
    Healthy,
}

/// Controller-side decision. `desired_hash` is the integrity hash of the listener pod the
/// controller would build now; `pod_hash` the one on the live pod.
pub fn decide(
    pod: &ListenerPod,
    pod_hash: &str,
    desired_hash: &str,
    history: &ListenerHistory,
    now: Timestamp,
    policy: &LifecyclePolicy,
) -> ListenerAction {
    match pod {
        ListenerPod::Deleting => ListenerAction::Wait(None),
        ListenerPod::Missing => match history.next_start(desired_hash, policy) {
            Some(at) if now < at => ListenerAction::Wait(Some(at.saturating_duration_since(now))),
            _ => ListenerAction::Create,
        },
        _ if pod_hash != desired_hash => ListenerAction::Delete { record: None },
        ListenerPod::Terminated { class, .. } => ListenerAction::Delete {
            record: Some(*class),
        },
        ListenerPod::ClusterLost => ListenerAction::Delete { record: None },
        ListenerPod::Pending => ListenerAction::Wait(None),
        ListenerPod::Running => ListenerAction::Healthy,
    }
}

/// State of one object the AutoscalingListener owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Child {
    /// Not found.
    Missing,
    /// Exists but its labels, annotations or content differ from the desired object.
    Stale,
    /// Exists as desired.
    Current,
}

/// The objects the listener needs before its pod, in creation order (controllers.md 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ListenerChild {
    /// ServiceAccount `<AL>` in the controller namespace.
    ServiceAccount,
    /// Role `<AL>` in the ARS namespace.
    Role,
    /// RoleBinding `<AL>` in the ARS namespace.
    RoleBinding,
    /// Secret `<AL>-proxy` (only with a proxy).
    ProxySecret,
    /// Secret `<AL>-config`; its data is refreshed too (quirk Q7: rotated credentials).
    ConfigSecret,
}

/// What the AutoscalingListener reconciler observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerObservation {
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// The listener finalizer is present.
    pub finalizer: bool,
    /// The AutoscalingRunnerSet it serves exists.
    pub ars_exists: bool,
    /// The ServiceAccount.
    pub service_account: Child,
    /// The Role.
    pub role: Child,
    /// The RoleBinding.
    pub role_binding: Child,
    /// The proxy Secret; `None` when no proxy is configured.
    pub proxy_secret: Option<Child>,
    /// The config Secret.
    pub config_secret: Child,
    /// The listener pod exists (in any state).
    pub pod_exists: bool,
}

/// One AutoscalingListener reconcile step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerStep {
    /// Deleting: delete every child that still exists (pod, config Secret, proxy Secret,
    /// RoleBinding, Role, ServiceAccount) and requeue after 1 s.
    DeleteChildren,
    /// Deleting and nothing is left: remove the finalizer.
    RemoveFinalizer,
    /// Add the finalizer.
    AddFinalizer,
    /// The ARS is gone: delete this AutoscalingListener.
    DeleteSelf,
    /// Create this child.
    Create(ListenerChild),
    /// Update this child (merge labels and annotations, replace rules or data).
    Update(ListenerChild),
    /// All children are in place: handle the pod with [`decide`].
    Pod,
}

/// Orders the AutoscalingListener reconcile.
///
/// ```
/// use scaleset_core::listener_lifecycle::*;
/// let o = ListenerObservation {
///     deleting: false, finalizer: true, ars_exists: true, service_account: Child::Current,
///     role: Child::Missing, role_binding: Child::Missing, proxy_secret: None,
///     config_secret: Child::Missing, pod_exists: false,
/// };
/// assert_eq!(listener_step(&o), ListenerStep::Create(ListenerChild::Role));
/// ```
pub fn listener_step(o: &ListenerObservation) -> ListenerStep {
    let children = [
        (ListenerChild::ServiceAccount, Some(o.service_account)),
        (ListenerChild::Role, Some(o.role)),
        (ListenerChild::RoleBinding, Some(o.role_binding)),
        (ListenerChild::ProxySecret, o.proxy_secret),
        (ListenerChild::ConfigSecret, Some(o.config_secret)),
    ];
    if o.deleting {
        let any_left = o.pod_exists
            || children
                .iter()
                .any(|(_, c)| c.is_some_and(|c| c != Child::Missing));
        return if any_left {
            ListenerStep::DeleteChildren
        } else {
            ListenerStep::RemoveFinalizer
        };
    }
    if !o.finalizer {
        return ListenerStep::AddFinalizer;
    }
    if !o.ars_exists {
        return ListenerStep::DeleteSelf;
    }
    for (kind, state) in children {
        match state {
            Some(Child::Missing) => return ListenerStep::Create(kind),
            Some(Child::Stale) => return ListenerStep::Update(kind),
            Some(Child::Current) | None => {}
        }
    }
    ListenerStep::Pod
}

#[cfg(test)]
mod tests;
