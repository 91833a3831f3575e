//! Listener lifecycle: how the listener process ends and (re)creation of the listener pod by
//! the controller, with backoff by exit class (pain point 6 of
//! docs/architecture.md#arc-pain-points-and-our-answers; docs/architecture.md#listener-pod-and-restarts
//! and #error-handling-and-exit-classes). The listener's in-process error handling is
//! [`crate::listener_policy`].
//!
//! * On exit the listener writes [`ExitClass::termination_message`] to its termination log
//!   (`/dev/termination-log`).
//! * In the controller, [`listener_step`] orders the AutoscalingListener's children (apply the
//!   missing or stale ones together, or delete them on cleanup), [`classify_pod`] turns the
//!   listener pod's status into a [`ListenerPod`] with the rules runner pods follow
//!   ([`crate::pod`]), and [`decide`] looks at the listener pod ([`ListenerPod`]) and the recorded
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

use crate::backoff::Backoff;
use crate::naming::is_dns1123_subdomain;
use crate::pod::{
    ContainerState, Fault, PodPhase, cannot_start, pod_reason_fault, terminated_fault,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
}

const PREFIX: &str = "arc-listener-exit=";

/// Controller-side tunables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePolicy {
    /// Controller restart delay after a session-conflict exit; doubles per consecutive failure.
    pub conflict_interval: Duration,
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
            conflict_interval: Duration::from_secs(30),
            restart_base: Duration::from_secs(5),
            deterministic_base: Duration::from_secs(60),
            restart_max: Duration::from_secs(30 * 60),
            stable_after: Duration::from_secs(10 * 60),
        }
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
    /// The listener failed: its container terminated (any exit code; `class` from its
    /// termination message, `ran_for` from its start and finish times), or the pod failed for
    /// a reason of its own before it did, or its image can never be pulled ([`classify_pod`]).
    Terminated {
        /// Parsed exit class.
        class: ExitClass,
        /// How long it ran.
        ran_for: Duration,
    },
    /// The cluster failed it: `Evicted`, `Preempted`, `OutOf*`, node shutdown or loss
    /// ([`crate::pod::pod_reason_fault`]).
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
    let doubling = |base| Backoff::new(base, policy.restart_max);
    match class {
        ExitClass::Shutdown => Duration::ZERO,
        ExitClass::Transient if n == 1 => Duration::ZERO,
        ExitClass::Transient => doubling(policy.restart_base).delay(n - 1, 0.0),
        ExitClass::Conflict => doubling(policy.conflict_interval).delay(n, 0.0),
        ExitClass::Auth | ExitClass::Config | ExitClass::ScaleSetMissing => {
            doubling(policy.deterministic_base).delay(n, 0.0)
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

/// What the AutoscalingListener reconciler observed of the listener pod; the input of
/// [`classify_pod`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListenerPodObservation {
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `status.phase`.
    pub phase: PodPhase,
    /// `status.reason` (`Evicted`, `Preempted`, `NodeLost`, `OutOfcpu`…).
    pub reason: String,
    /// The `listener` container.
    pub listener: ContainerState,
    /// `state.terminated.message` of the `listener` container (its termination log).
    pub termination_message: String,
    /// How long the `listener` container ran, from its start and finish times.
    pub ran_for: Duration,
}

/// Classifies the listener pod with the same rules as runner pods ([`crate::pod`]): a pod the
/// cluster failed (evicted, preempted, node shutdown or loss, `OutOf*`) is
/// [`ListenerPod::ClusterLost`] even when its container was killed with it; an exit of the
/// listener (any exit code, `OOMKilled`) is [`ListenerPod::Terminated`] with the class of its
/// termination message; a pod that failed for another reason without the container
/// terminating is a transient failure; an image that can never be pulled is a configuration
/// failure. Pull errors that may resolve (`ImagePullBackOff`) leave the pod pending.
///
/// ```
/// use scaleset_core::listener_lifecycle::*;
/// use scaleset_core::pod::PodPhase;
/// let evicted = ListenerPodObservation { phase: PodPhase::Failed, reason: "Evicted".into(), ..ListenerPodObservation::default() };
/// assert_eq!(classify_pod(&evicted), ListenerPod::ClusterLost);
/// ```
pub fn classify_pod(pod: &ListenerPodObservation) -> ListenerPod {
    if pod.deleting {
        return ListenerPod::Deleting;
    }
    let failure = |class| ListenerPod::Terminated {
        class,
        ran_for: Duration::ZERO,
    };
    match &pod.listener {
        ContainerState::Terminated { .. } => match terminated_fault(pod.phase, &pod.reason) {
            Fault::Cluster => ListenerPod::ClusterLost,
            Fault::Runner => ListenerPod::Terminated {
                class: ExitClass::from_termination_message(&pod.termination_message),
                ran_for: pod.ran_for,
            },
        },
        _ if pod.phase == PodPhase::Failed => match pod_reason_fault(&pod.reason) {
            Fault::Cluster => ListenerPod::ClusterLost,
            Fault::Runner => failure(ExitClass::Transient),
        },
        ContainerState::Waiting { reason } if cannot_start(reason) => failure(ExitClass::Config),
        ContainerState::Running => ListenerPod::Running,
        ContainerState::Absent | ContainerState::Waiting { .. } => ListenerPod::Pending,
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
    /// Exists and is being deleted (`deletionTimestamp` set).
    Deleting,
}

/// The objects the listener needs before its pod, in creation order
/// (docs/architecture.md#listener-children).
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

/// The fields of an AutoscalingListener that name the AutoscalingRunnerSet it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArsField {
    /// `spec.autoscalingRunnerSetNamespace`.
    Namespace,
    /// `spec.autoscalingRunnerSetName`.
    Name,
}

impl ArsField {
    /// The field's path in the AutoscalingListener.
    pub fn path(self) -> &'static str {
        match self {
            ArsField::Namespace => "spec.autoscalingRunnerSetNamespace",
            ArsField::Name => "spec.autoscalingRunnerSetName",
        }
    }
}

/// An AutoscalingListener that names no usable AutoscalingRunnerSet: the field is missing, empty
/// or no object name. Such a listener serves nothing, so it gets no children and no pod; it is
/// reported (the message names the field, the value and the fix) and left for the user to fix
/// or delete. ARC 0.14.2 only logs "Failed to find AutoscalingRunnerSet" and retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is {}: an AutoscalingListener serves the AutoscalingRunnerSet named by \
     spec.autoscalingRunnerSetNamespace and spec.autoscalingRunnerSetName; set both to its \
     namespace and name, or delete this AutoscalingListener (the AutoscalingRunnerSet controller \
     creates one for each AutoscalingRunnerSet)",
    field.path(),
    value.as_deref().map_or_else(|| "missing".to_owned(), |v| format!("{v:?}, not an object name"))
)]
pub struct UnnamedArs {
    /// The first unusable field.
    pub field: ArsField,
    /// Its value; `None` when the field is absent.
    pub value: Option<String>,
}

/// The namespace and name of the AutoscalingRunnerSet an AutoscalingListener serves, from its
/// `spec.autoscalingRunnerSetNamespace` and `spec.autoscalingRunnerSetName`: both must be object
/// names (DNS-1123 subdomains), else [`UnnamedArs`] names the first that is not.
///
/// ```
/// use scaleset_core::listener_lifecycle::*;
/// assert_eq!(ars_reference(Some("runners"), Some("arc")), Ok(("runners", "arc")));
/// let e = ars_reference(Some("runners"), None).unwrap_err();
/// assert_eq!(e.field, ArsField::Name);
/// assert!(e.to_string().starts_with("spec.autoscalingRunnerSetName is missing: "));
/// let e = ars_reference(Some(""), Some("arc")).unwrap_err();
/// assert!(e.to_string().starts_with("spec.autoscalingRunnerSetNamespace is \"\", not an object name: "));
/// ```
pub fn ars_reference<'a>(
    namespace: Option<&'a str>,
    name: Option<&'a str>,
) -> Result<(&'a str, &'a str), UnnamedArs> {
    let check = |field, value: Option<&'a str>| match value {
        Some(v) if is_dns1123_subdomain(v) => Ok(v),
        _ => Err(UnnamedArs {
            field,
            value: value.map(str::to_owned),
        }),
    };
    Ok((
        check(ArsField::Namespace, namespace)?,
        check(ArsField::Name, name)?,
    ))
}

/// What the AutoscalingListener reconciler observed. Adding and removing the finalizer is
/// left to kube's finalizer helper: `deleting` says which of its events this pass handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerObservation {
    /// The pass cleans up (the AutoscalingListener is being deleted and has the finalizer).
    pub deleting: bool,
    /// The AutoscalingRunnerSet it serves ([`ars_reference`]) exists; without it the children
    /// are not read (the step is [`ListenerStep::DeleteSelf`] whatever they are). A listener
    /// that names none is not observed at all: it is reported as [`UnnamedArs`].
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
    /// The listener pod, read on cleanup only: there an existing pod is [`Child::Current`] or
    /// [`Child::Deleting`]; outside cleanup [`decide`] handles the pod and this is ignored.
    pub pod: Child,
}

/// One AutoscalingListener reconcile step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerStep {
    /// Cleaning up: delete these (the pod first when `pod`, then the children in reverse
    /// creation order; objects already being deleted are not listed) and check again after
    /// a short wait.
    DeleteChildren {
        /// Delete the pod.
        pod: bool,
        /// Delete these children.
        children: Vec<ListenerChild>,
    },
    /// Cleaning up and nothing is left: the finalizer can go.
    RemoveFinalizer,
    /// The ARS it names does not exist (it was deleted; the listener is a leftover, or named the
    /// wrong one): delete this AutoscalingListener, with a Warning Event naming the ARS. An
    /// AutoscalingRunnerSet that does exist makes its own listener again.
    DeleteSelf,
    /// A child is still being deleted: check again after a short wait, then re-create it.
    WaitForDeletion(ListenerChild),
    /// Create or update these children (all that are missing or stale) in creation order in
    /// one pass, then, in the same pass, handle the pod with [`decide`]: a new listener gets
    /// its pod without an extra round trip. Empty when every child is current.
    Apply(Vec<ListenerChild>),
}

/// Decides the AutoscalingListener reconcile step.
///
/// ```
/// use scaleset_core::listener_lifecycle::*;
/// let o = ListenerObservation {
///     deleting: false, ars_exists: true, service_account: Child::Current,
///     role: Child::Missing, role_binding: Child::Stale, proxy_secret: None,
///     config_secret: Child::Current, pod: Child::Missing,
/// };
/// assert_eq!(
///     listener_step(&o),
///     ListenerStep::Apply(vec![ListenerChild::Role, ListenerChild::RoleBinding])
/// );
/// ```
pub fn listener_step(o: &ListenerObservation) -> ListenerStep {
    let children = [
        (ListenerChild::ServiceAccount, Some(o.service_account)),
        (ListenerChild::Role, Some(o.role)),
        (ListenerChild::RoleBinding, Some(o.role_binding)),
        (ListenerChild::ProxySecret, o.proxy_secret),
        (ListenerChild::ConfigSecret, Some(o.config_secret)),
    ];
    let present = |c: Child| !matches!(c, Child::Missing | Child::Deleting);
    if o.deleting {
        let any_left = std::iter::once(o.pod)
            .chain(children.iter().filter_map(|(_, c)| *c))
            .any(|c| c != Child::Missing);
        if !any_left {
            return ListenerStep::RemoveFinalizer;
        }
        return ListenerStep::DeleteChildren {
            pod: present(o.pod),
            children: children
                .iter()
                .rev()
                .filter(|(_, c)| c.is_some_and(present))
                .map(|(kind, _)| *kind)
                .collect(),
        };
    }
    if !o.ars_exists {
        return ListenerStep::DeleteSelf;
    }
    if let Some((kind, _)) = children.iter().find(|(_, c)| *c == Some(Child::Deleting)) {
        return ListenerStep::WaitForDeletion(*kind);
    }
    ListenerStep::Apply(
        children
            .iter()
            .filter(|(_, c)| matches!(c, Some(Child::Missing | Child::Stale)))
            .map(|(kind, _)| *kind)
            .collect(),
    )
}

#[cfg(test)]
mod tests;
