//! AutoscalingRunnerSet decisions: the service-side scale set (create, adopt, update, re-create,
//! refuse a moved URL), the version gate, spec-drift draining, and the deletion order of ADR
//! 2022-10-27 (docs/architecture.md#autoscalingrunnerset-reconciler; pain points 7 and 20 of
//! docs/architecture.md#arc-pain-points-and-our-answers).
//!
//! Scale-set sync: the reconciler builds a [`DesiredScaleSet`] from the spec, a [`Recorded`]
//! from the ARS annotations, and a [`ServiceView`] from `GetRunnerScaleSetById` (404 or `null`
//! = [`ServiceView::Missing`]), then calls [`sync_scale_set`].
//!
//! ```
//! use scaleset_core::autoscaling_runner_set::*;
//! let desired = DesiredScaleSet::from_spec("arc", None, None, &["gpu".into()], "https://github.com/org");
//! let recorded = Recorded { id: Some(7), config_url: Some("https://github.com/org".into()),
//!     ..Default::default() };
//! let service = ServiceScaleSet { id: 7, name: "arc".into(), runner_group_id: 1,
//!     runner_group_name: "Default".into(), labels: vec!["arc".into()] };
//! match sync_scale_set(&desired, &recorded, &ServiceView::Found(service)) {
//!     SyncStep::Update(u) => assert_eq!(u.labels, Some(vec!["arc".to_string(), "gpu".to_string()])),
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! Reconcile order: the reconciler builds an [`ArsObservation`] from what it reads (the ARS,
//! its EphemeralRunnerSet and listeners; the service only when [`ars_step`] returns
//! [`ArsStep::ObserveScaleSet`]) and carries out the one [`ArsStep`] that [`ars_step`] returns;
//! the watch events and requeues of that step start the next pass.
//!
//! Deletion: observe the listener, the EphemeralRunnerSet, the recorded scale-set id and the
//! chart's cleanup targets into a [`DeletionObservation`] and perform one [`DeletionStep`] per
//! pass, from [`deletion_step`], until it returns [`DeletionStep::RemoveFinalizer`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Id of the default runner group.
pub const DEFAULT_RUNNER_GROUP_ID: i64 = 1;

/// What the spec asks of the service-side scale set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredScaleSet {
    /// `spec.runnerScaleSetName`, or the ARS name when empty.
    pub name: String,
    /// `spec.runnerGroup`; `None` (empty) is the default group.
    pub runner_group: Option<String>,
    /// The name label first, then `spec.runnerScaleSetLabels` in order, without duplicates
    /// (case-insensitive) or blanks.
    pub labels: Vec<String>,
    /// `spec.githubConfigUrl`.
    pub config_url: String,
}

impl DesiredScaleSet {
    /// Builds the desired scale set from the ARS name and spec fields.
    pub fn from_spec(
        ars_name: &str,
        scale_set_name: Option<&str>,
        runner_group: Option<&str>,
        extra_labels: &[String],
        config_url: &str,
    ) -> Self {
        let name = scale_set_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(ars_name)
            .to_string();
        DesiredScaleSet {
            labels: scale_set_labels(&name, extra_labels),
            name,
            runner_group: runner_group
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_string),
            config_url: config_url.to_string(),
        }
    }
}

/// The scale set's labels: its name, then the extra labels; duplicates and blanks dropped.
///
/// ```
/// use scaleset_core::autoscaling_runner_set::scale_set_labels;
/// let l = scale_set_labels("linux-x64", &["gpu".into(), "Linux-X64".into(), " ".into()]);
/// assert_eq!(l, ["linux-x64", "gpu"]);
/// ```
pub fn scale_set_labels(name: &str, extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for label in std::iter::once(name).chain(extra.iter().map(String::as_str)) {
        let label = label.trim();
        if !label.is_empty() && !out.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            out.push(label.to_string());
        }
    }
    out
}

/// What the ARS annotations record about the scale set this ARS owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// `runner-scale-set-id`, when present and a positive integer (see [`parse_scale_set_id`]).
    pub id: Option<i64>,
    /// The `githubConfigUrl` the scale set was created under, when recorded.
    pub config_url: Option<String>,
    /// `runner-scale-set-name`: the scale-set name the service last reported.
    pub name: Option<String>,
    /// `runner-group-name`: the runner-group name the service last reported.
    pub runner_group_name: Option<String>,
}

/// Parses the `runner-scale-set-id` annotation; missing, unparsable or ≤ 0 is `None`.
///
/// ```
/// use scaleset_core::autoscaling_runner_set::parse_scale_set_id;
/// assert_eq!(parse_scale_set_id(Some("42")), Some(42));
/// assert_eq!(parse_scale_set_id(Some("0")), None);
/// assert_eq!(parse_scale_set_id(Some("x")), None);
/// ```
pub fn parse_scale_set_id(annotation: Option<&str>) -> Option<i64> {
    annotation?.trim().parse::<i64>().ok().filter(|id| *id > 0)
}

/// A scale set as the service returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceScaleSet {
    /// `id`.
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `runnerGroupId`.
    pub runner_group_id: i64,
    /// `runnerGroupName`.
    pub runner_group_name: String,
    /// Label names.
    pub labels: Vec<String>,
}

/// The service's answer for the recorded id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceView {
    /// The scale set exists.
    Found(ServiceScaleSet),
    /// 404 / `null`: the service lost it (e.g. deleted after 7 days unseen, ARC#4370).
    Missing,
}

/// Changes to push with `UpdateRunnerScaleSet`; `None` fields are unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleSetUpdate {
    /// New name.
    pub name: Option<String>,
    /// Move to this group; `Some(None)` means the default group (id 1).
    pub runner_group: Option<Option<String>>,
    /// New label list.
    pub labels: Option<Vec<String>>,
}

impl ScaleSetUpdate {
    /// No field changes.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.runner_group.is_none() && self.labels.is_none()
    }
}

/// The githubConfigUrl changed after the scale set was created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error(
    "spec.githubConfigUrl changed from {recorded:?} to {desired:?} after the runner scale set was created; \
     a scale set cannot move between organizations, repositories or enterprises: set githubConfigUrl back \
     to {recorded:?}, or delete this AutoscalingRunnerSet and create a new one for {desired:?}"
)]
pub struct ConfigUrlChanged {
    /// The URL recorded at creation.
    pub recorded: String,
    /// The URL in the spec now.
    pub desired: String,
}

/// The next scale-set action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncStep {
    /// No scale set recorded: look it up by group and name (`GetRunnerScaleSet`) and adopt it
    /// ([`on_lookup`]), or create it; then record id, name, group and config URL.
    FindOrCreate,
    /// The recorded scale set is gone on the service: drop the id annotation, then find or
    /// create it again (the listener and runners pick up the new id).
    Recreate {
        /// The lost id.
        lost_id: i64,
    },
    /// Record the config URL (set adopted from an installation that did not record it).
    RecordConfigUrl,
    /// Push these changes; the next pass reads the scale set again.
    Update(ScaleSetUpdate),
    /// The service's names differ from the recorded ones: record these.
    RecordNames {
        /// The scale-set name on the service.
        name: String,
        /// The runner-group name on the service.
        runner_group_name: String,
    },
    /// Refuse: set the error state with this message and do nothing else.
    Refuse(ConfigUrlChanged),
    /// Nothing to do.
    InSync,
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim()
        .trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim().trim_end_matches('/'))
}

fn same_labels(a: &[String], b: &[String]) -> bool {
    let covers = |x: &[String], y: &[String]| {
        x.iter()
            .all(|l| y.iter().any(|m| m.eq_ignore_ascii_case(l)))
    };
    covers(a, b) && covers(b, a)
}

/// Decides the scale-set step for a live (not deleting) ARS.
pub fn sync_scale_set(
    desired: &DesiredScaleSet,
    recorded: &Recorded,
    service: &ServiceView,
) -> SyncStep {
    let Some(id) = recorded.id else {
        return SyncStep::FindOrCreate;
    };
    match &recorded.config_url {
        Some(url) if !same_url(url, &desired.config_url) => {
            return SyncStep::Refuse(ConfigUrlChanged {
                recorded: url.clone(),
                desired: desired.config_url.clone(),
            });
        }
        Some(_) => {}
        None => return SyncStep::RecordConfigUrl,
    }
    let found = match service {
        ServiceView::Missing => return SyncStep::Recreate { lost_id: id },
        ServiceView::Found(s) => s,
    };
    let update = diff(desired, found);
    if !update.is_empty() {
        SyncStep::Update(update)
    } else if recorded.name.as_deref() != Some(found.name.as_str())
        || recorded.runner_group_name.as_deref() != Some(found.runner_group_name.as_str())
    {
        SyncStep::RecordNames {
            name: found.name.clone(),
            runner_group_name: found.runner_group_name.clone(),
        }
    } else {
        SyncStep::InSync
    }
}

fn diff(desired: &DesiredScaleSet, found: &ServiceScaleSet) -> ScaleSetUpdate {
    let group_differs = match &desired.runner_group {
        None => found.runner_group_id != DEFAULT_RUNNER_GROUP_ID,
        Some(g) => !g.eq_ignore_ascii_case(&found.runner_group_name),
    };
    ScaleSetUpdate {
        name: (!desired.name.eq_ignore_ascii_case(&found.name)).then(|| desired.name.clone()),
        runner_group: group_differs.then(|| desired.runner_group.clone()),
        labels: (!same_labels(&desired.labels, &found.labels)).then(|| desired.labels.clone()),
    }
}

/// After an update: which requested changes the service did not apply. A non-empty result
/// should become a status condition, not a retry loop (GHES without multi-label drops extra
/// labels silently, ARC#4579).
///
/// ```
/// use scaleset_core::autoscaling_runner_set::*;
/// let asked = ScaleSetUpdate { labels: Some(vec!["a".into(), "gpu".into()]), ..Default::default() };
/// let got = ServiceScaleSet { id: 1, name: "a".into(), runner_group_id: 1,
///     runner_group_name: "Default".into(), labels: vec!["a".into()] };
/// assert_eq!(not_applied(&asked, &got), ScaleSetUpdate { labels: asked.labels.clone(), ..Default::default() });
/// ```
pub fn not_applied(asked: &ScaleSetUpdate, returned: &ServiceScaleSet) -> ScaleSetUpdate {
    ScaleSetUpdate {
        name: asked
            .name
            .clone()
            .filter(|n| !n.eq_ignore_ascii_case(&returned.name)),
        runner_group: asked.runner_group.clone().filter(|g| match g {
            None => returned.runner_group_id != DEFAULT_RUNNER_GROUP_ID,
            Some(g) => !g.eq_ignore_ascii_case(&returned.runner_group_name),
        }),
        labels: asked
            .labels
            .clone()
            .filter(|l| !same_labels(l, &returned.labels)),
    }
}

/// Result of looking a scale set up by group and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookup {
    /// Adopt this id (then sync on the next pass).
    Adopt(i64),
    /// Create a scale set with the desired name, group and labels (`disableUpdate: true`).
    Create,
}

/// Adopt an existing scale set of the same name in the group, or create one.
pub fn on_lookup(found: Option<&ServiceScaleSet>) -> Lookup {
    match found {
        Some(s) if s.id > 0 => Lookup::Adopt(s.id),
        _ => Lookup::Create,
    }
}

/// What to do when the runner pod spec of the ARS changed
/// (docs/architecture.md#spec-drift-and-rollout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecDrift {
    /// Runners are still pending or running: stop the listener, wait (requeue 1 s).
    Drain,
    /// Patch the EphemeralRunnerSet spec in place.
    PatchInPlace,
}

/// How an ARS spec change reaches existing runners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DriftPolicy {
    /// ARC: delete the listener and wait until no runner is pending or running, then patch.
    /// With `minRunners > 0` idle runners never drain and the listener stays down
    /// (ARC#4432, #4200).
    Drain,
    /// Patch the EphemeralRunnerSet spec at once and leave its integrity-hash annotation to the
    /// set controller, which then replaces idle and pending runners (busy ones finish on the
    /// old spec). The listener keeps running.
    #[default]
    Replace,
}

/// Decides how to roll out an EphemeralRunnerSet spec change.
///
/// ```
/// use scaleset_core::autoscaling_runner_set::{on_spec_drift, DriftPolicy, SpecDrift};
/// assert_eq!(on_spec_drift(0, 3, DriftPolicy::Drain), SpecDrift::Drain);
/// assert_eq!(on_spec_drift(0, 0, DriftPolicy::Drain), SpecDrift::PatchInPlace);
/// assert_eq!(on_spec_drift(0, 3, DriftPolicy::Replace), SpecDrift::PatchInPlace);
/// ```
pub fn on_spec_drift(pending_runners: u32, running_runners: u32, policy: DriftPolicy) -> SpecDrift {
    match policy {
        DriftPolicy::Drain if pending_runners + running_runners > 0 => SpecDrift::Drain,
        DriftPolicy::Drain | DriftPolicy::Replace => SpecDrift::PatchInPlace,
    }
}

/// Checks the runner pod template: it needs a container named `runner`, the one the controller
/// gives the JIT configuration (ARC's runners have the same need). Without it no runner could
/// ever take a job, so the ARS is refused before a scale set is registered; the error names the
/// field, the containers found and the fix.
///
/// ```
/// use scaleset_core::autoscaling_runner_set::check_runner_template;
/// assert!(check_runner_template(&["runner", "dind"]).is_ok());
/// let e = check_runner_template(&["main"]).unwrap_err();
/// assert!(e.contains("[\"main\"]") && e.contains("name the runner container \"runner\""));
/// ```
pub fn check_runner_template(container_names: &[&str]) -> Result<(), String> {
    if container_names.contains(&"runner") {
        return Ok(());
    }
    Err(format!(
        "spec.template.spec.containers has no container named \"runner\" (found {container_names:?}); name the runner container \"runner\": it is the one that gets the runner's registration"
    ))
}

/// The version gate (docs/architecture.md#version-gate): may this controller build manage an ARS
/// with this `app.kubernetes.io/version` label? A refused ARS is deleted.
///
/// ```
/// use scaleset_core::autoscaling_runner_set::version_allowed;
/// assert!(version_allowed(Some("0.11.0"), "dev"));
/// assert!(version_allowed(Some("0.11.1"), "0.11.0"));
/// assert!(!version_allowed(Some("0.11.0"), "0.10.0"));
/// assert!(!version_allowed(None, "0.14.2"));
/// assert!(version_allowed(Some("abc"), "abc"));
/// ```
pub fn version_allowed(resource_version: Option<&str>, build_version: &str) -> bool {
    if build_version == "dev" || build_version.starts_with("canary-") {
        return true;
    }
    let Some(resource) = resource_version else {
        return false;
    };
    if resource == build_version {
        return true;
    }
    match (major_minor(resource), major_minor(build_version)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn major_minor(v: &str) -> Option<(u64, u64)> {
    fn num(s: &str) -> Option<u64> {
        let ok = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        ok.then(|| s.parse().ok()).flatten()
    }
    let mut parts = v.splitn(3, '.');
    let major = num(parts.next()?)?;
    let minor = match parts.next() {
        None => 0,
        Some(m) => num(m)?,
    };
    if let Some(rest) = parts.next() {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        num(&digits)?;
    }
    Some((major, minor))
}

/// Existence of a dependent object during deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    /// Not found.
    Absent,
    /// Exists, not being deleted.
    Present,
    /// Exists with a deletion timestamp.
    Terminating,
}

/// Chart-created objects whose `actions.github.com/cleanup-protection` finalizer the ARS
/// removes last, in this order (docs/architecture.md#ars-deletion-order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CleanupTarget {
    /// `cleanup-kubernetes-mode-role-binding-name`.
    KubernetesModeRoleBinding,
    /// `cleanup-kubernetes-mode-role-name`.
    KubernetesModeRole,
    /// `cleanup-kubernetes-mode-service-account-name`.
    KubernetesModeServiceAccount,
    /// `cleanup-no-permission-service-account-name`.
    NoPermissionServiceAccount,
    /// `cleanup-github-secret-name`.
    GithubSecret,
    /// `cleanup-manager-role-binding`.
    ManagerRoleBinding,
    /// `cleanup-manager-role-name`.
    ManagerRole,
}

impl CleanupTarget {
    /// All targets in removal order.
    pub const ORDER: [CleanupTarget; 7] = [
        CleanupTarget::KubernetesModeRoleBinding,
        CleanupTarget::KubernetesModeRole,
        CleanupTarget::KubernetesModeServiceAccount,
        CleanupTarget::NoPermissionServiceAccount,
        CleanupTarget::GithubSecret,
        CleanupTarget::ManagerRoleBinding,
        CleanupTarget::ManagerRole,
    ];
}

/// What the ARS reconciler observed during deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionObservation {
    /// The AutoscalingListener (found by name or by the scale-set labels).
    pub listener: Presence,
    /// The EphemeralRunnerSet.
    pub runner_set: Presence,
    /// The EphemeralRunnerSet's `spec.replicas` is 0 and `spec.patchID` is 0.
    pub runner_set_at_zero: bool,
    /// The recorded scale-set id.
    pub scale_set_id: Option<i64>,
    /// Cleanup targets whose object still carries the cleanup-protection finalizer (objects
    /// that are missing, or a forbidden GitHub Secret, are simply not listed).
    pub protected: Vec<CleanupTarget>,
}

/// One deletion step; perform it, then reconcile again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeletionStep {
    /// 1. Delete the listener so nothing patches the runner set any more.
    StopListener,
    /// Wait for the listener to go.
    WaitForListener(Duration),
    /// 2. Patch the runner set to `replicas: 0, patchID: 0` so no runner is created.
    ScaleToZero,
    /// 3. Delete the runner set; its finalizer stops idle runners, busy ones finish their job.
    StopRunners,
    /// 4. Wait for the runner set (and its runners) to go.
    WaitForRunners(Duration),
    /// 5. `DeleteRunnerScaleSet(id)`, then patch the id annotation away.
    DeleteScaleSet(i64),
    /// 6. Remove the cleanup-protection finalizer from this object.
    RemoveCleanupFinalizer(CleanupTarget),
    /// 7. Remove the ARS finalizer (not-found ignored). Deletion is complete.
    RemoveFinalizer,
}

impl DeletionStep {
    /// Position in the ADR 2022-10-27 order; steps never go backwards within one deletion.
    pub fn stage(self) -> u8 {
        match self {
            DeletionStep::StopListener | DeletionStep::WaitForListener(_) => 1,
            DeletionStep::ScaleToZero => 2,
            DeletionStep::StopRunners | DeletionStep::WaitForRunners(_) => 3,
            DeletionStep::DeleteScaleSet(_) => 4,
            DeletionStep::RemoveCleanupFinalizer(_) => 5,
            DeletionStep::RemoveFinalizer => 6,
        }
    }
}

/// Requeue while waiting for the listener or the runners during deletion (ARC: 5 s).
pub const DELETION_WAIT: Duration = Duration::from_secs(5);

/// Next deletion step: stop listener, scale to zero, stop runners, wait, delete the scale set,
/// release chart objects, remove the finalizer.
///
/// ```
/// use scaleset_core::autoscaling_runner_set::*;
/// let mut o = DeletionObservation { listener: Presence::Present, runner_set: Presence::Present,
///     runner_set_at_zero: false, scale_set_id: Some(3), protected: vec![CleanupTarget::GithubSecret] };
/// assert_eq!(deletion_step(&o), DeletionStep::StopListener);
/// o.listener = Presence::Absent;
/// assert_eq!(deletion_step(&o), DeletionStep::ScaleToZero);
/// o.runner_set_at_zero = true;
/// assert_eq!(deletion_step(&o), DeletionStep::StopRunners);
/// o.runner_set = Presence::Absent;
/// assert_eq!(deletion_step(&o), DeletionStep::DeleteScaleSet(3));
/// o.scale_set_id = None;
/// assert_eq!(deletion_step(&o), DeletionStep::RemoveCleanupFinalizer(CleanupTarget::GithubSecret));
/// o.protected.clear();
/// assert_eq!(deletion_step(&o), DeletionStep::RemoveFinalizer);
/// ```
pub fn deletion_step(o: &DeletionObservation) -> DeletionStep {
    match o.listener {
        Presence::Present => return DeletionStep::StopListener,
        Presence::Terminating => return DeletionStep::WaitForListener(DELETION_WAIT),
        Presence::Absent => {}
    }
    match o.runner_set {
        Presence::Present if !o.runner_set_at_zero => return DeletionStep::ScaleToZero,
        Presence::Present => return DeletionStep::StopRunners,
        Presence::Terminating => return DeletionStep::WaitForRunners(DELETION_WAIT),
        Presence::Absent => {}
    }
    if let Some(id) = o.scale_set_id {
        return DeletionStep::DeleteScaleSet(id);
    }
    CleanupTarget::ORDER
        .into_iter()
        .find(|t| o.protected.contains(t))
        .map_or(
            DeletionStep::RemoveFinalizer,
            DeletionStep::RemoveCleanupFinalizer,
        )
}

/// ARS `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArsPhase {
    /// The spec changed and is being applied.
    Pending,
    /// Converged.
    Running,
    /// Runners are deprecated (exit code 7).
    Outdated,
    /// A configuration error the controller refuses to act on (e.g. [`ConfigUrlChanged`]).
    Failed,
}

impl ArsPhase {
    /// The status string.
    pub fn as_str(self) -> &'static str {
        match self {
            ArsPhase::Pending => "Pending",
            ArsPhase::Running => "Running",
            ArsPhase::Outdated => "Outdated",
            ArsPhase::Failed => "Failed",
        }
    }
}

#[cfg(test)]
mod tests;

/// Everything the ARS reconciler observed, reduced to what orders its work
/// (docs/architecture.md#ars-reconcile-order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArsObservation {
    /// `deletionTimestamp` is set.
    pub deleting: bool,
    /// The ARS finalizer is present.
    pub finalizer: bool,
    /// [`version_allowed`] for the ARS version label.
    pub version_allowed: bool,
    /// Why the spec cannot be acted on (e.g. `minRunners` > `maxRunners`), if it cannot.
    pub invalid_spec: Option<String>,
    /// The `integrity-hash` annotation equals hash(spec + labels).
    pub spec_hash_current: bool,
    /// The ARS status phase is `Outdated`; it stays so until the spec changes.
    pub phase_outdated: bool,
    /// Result of [`sync_scale_set`]; `None` until the service has been asked. The reconciler
    /// asks it only when [`ars_step`] returns [`ArsStep::ObserveScaleSet`], so a pass that
    /// ends earlier (finalizer, new hash, outdated hold) needs neither credentials nor the
    /// service.
    pub scale_set: Option<SyncStep>,
    /// The EphemeralRunnerSet.
    pub runner_set: Presence,
    /// Its status phase is `Outdated`: its runners report a deprecated runner version (exit
    /// code 7). The set keeps that phase for as long as it exists.
    pub runner_set_outdated: bool,
    /// Its `ephemeralRunnerSpec` equals the desired one.
    pub runner_set_spec_current: bool,
    /// Its `integrity-hash` annotation equals the desired one (it lags behind the spec under
    /// [`DriftPolicy::Replace`], whose rollout the set controller finishes).
    pub runner_set_hash_current: bool,
    /// Its labels, annotations and `ephemeralRunnerMetadata` include the desired ones.
    pub runner_set_metadata_current: bool,
    /// Pending + running runners, from its status.
    pub active_runners: u32,
    /// The AutoscalingListeners of this ARS: the one with the desired name and any other
    /// labelled as this ARS's (left from an earlier runner group or URL, quirk Q4).
    pub listener: Presence,
    /// Exactly the desired listener is there (not terminating) and its spec, labels and
    /// annotations match the desired ones (pull secrets included, see quirk Q3), its
    /// `minRunners` and `maxRunners` aside.
    pub listener_current: bool,
    /// Its `minRunners` and `maxRunners` equal the ARS's. They change in place: the listener
    /// follows them on the ARS without a restart (docs/architecture.md#runner-bounds).
    pub listener_bounds_current: bool,
    /// The ARS status already shows phase `Running`, the set's counters and a current
    /// `Ready` condition.
    pub status_current: bool,
}

/// The one thing an ARS reconcile pass does next; carry it out, then reconcile again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArsStep {
    /// The version gate refused this ARS: delete it.
    DeleteSelf,
    /// Deleting: carry out the deletion order (see [`deletion_step`]), then remove the
    /// finalizer.
    Deletion(DeletionObservationNeeded),
    /// Add the ARS finalizer.
    AddFinalizer,
    /// The spec is invalid: report it (condition `Ready=False`, reason
    /// `InvalidConfiguration`) and do nothing else until it changes.
    Invalid(String),
    /// Store the new integrity hash and set phase `Pending`.
    MarkPending,
    /// Ask the service about the scale set ([`sync_scale_set`]), fill in
    /// [`ArsObservation::scale_set`] and call [`ars_step`] again.
    ObserveScaleSet,
    /// Scale-set work (find/create, re-create, update, record URL or names).
    ScaleSet(SyncStep),
    /// Set phase `Failed` with the error; nothing else happens until the spec changes.
    Refuse(ConfigUrlChanged),
    /// The runners report a deprecated runner version: set phase `Outdated`. While the phase
    /// is `Outdated` the listener is stopped and the runner set deleted, and nothing is
    /// created again until the spec changes, which sets phase `Pending` (quirk Q6; ARC#4242).
    /// Without the sticky phase a new runner set would start the same outdated runners, and
    /// the listener with them, in a loop.
    MarkOutdated,
    /// Create the EphemeralRunnerSet.
    CreateRunnerSet,
    /// Delete the EphemeralRunnerSet: during the outdated hold, or to replace an outdated set
    /// whose runner spec changed (an outdated set stays outdated, so it is never patched).
    DeleteRunnerSet,
    /// Roll out the runner spec: patch it in place, or (drain) wait for the runners.
    RolloutRunnerSet(SpecDrift),
    /// Merge the desired labels, annotations and `ephemeralRunnerMetadata` into the set.
    PatchRunnerSetMetadata,
    /// Delete every listener of this ARS (draining, or the outdated hold).
    StopListener,
    /// Create the listener.
    CreateListener,
    /// Delete the listeners that are not the current desired one; the next pass creates it.
    ReplaceListener,
    /// Write the ARS's `minRunners` and `maxRunners` into the listener's spec, in place.
    UpdateListenerBounds,
    /// Wait for the listener or runner set to finish terminating.
    Wait(Duration),
    /// Write phase `Running`, copy all counters from the runner set (quirk Q2) and mark the
    /// `Ready` condition.
    UpdateStatus,
    /// Outdated, with the listener and runner set gone: nothing to do until the spec changes.
    Parked,
    /// Converged.
    Done,
}

/// Marker: during deletion, build a [`DeletionObservation`] and call [`deletion_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionObservationNeeded;

/// Orders the ARS reconcile (docs/architecture.md#ars-reconcile-order, with quirks Q1-Q3 and Q5-Q6
/// of docs/architecture.md#arc-reconciler-quirks resolved).
///
/// ```
/// use scaleset_core::autoscaling_runner_set::*;
/// let mut o = ArsObservation {
///     deleting: false, finalizer: true, version_allowed: true, invalid_spec: None,
///     spec_hash_current: true, phase_outdated: false, scale_set: None,
///     runner_set: Presence::Absent, runner_set_outdated: false, runner_set_spec_current: false,
///     runner_set_hash_current: false, runner_set_metadata_current: false, active_runners: 0,
///     listener: Presence::Absent, listener_current: false, listener_bounds_current: false,
///     status_current: false,
/// };
/// assert_eq!(ars_step(&o, DriftPolicy::default()), ArsStep::ObserveScaleSet);
/// o.scale_set = Some(SyncStep::InSync);
/// assert_eq!(ars_step(&o, DriftPolicy::default()), ArsStep::CreateRunnerSet);
/// o.runner_set = Presence::Present;
/// o.runner_set_spec_current = true;
/// o.runner_set_hash_current = true;
/// o.runner_set_metadata_current = true;
/// assert_eq!(ars_step(&o, DriftPolicy::default()), ArsStep::CreateListener);
/// ```
pub fn ars_step(o: &ArsObservation, drift: DriftPolicy) -> ArsStep {
    if o.deleting {
        return if o.finalizer {
            ArsStep::Deletion(DeletionObservationNeeded)
        } else {
            ArsStep::Done
        };
    }
    if !o.version_allowed {
        return ArsStep::DeleteSelf;
    }
    if !o.finalizer {
        return ArsStep::AddFinalizer;
    }
    if let Some(e) = &o.invalid_spec {
        return ArsStep::Invalid(e.clone());
    }
    if !o.spec_hash_current {
        return ArsStep::MarkPending;
    }
    if o.phase_outdated {
        return outdated_hold(o);
    }
    match &o.scale_set {
        None => return ArsStep::ObserveScaleSet,
        Some(SyncStep::InSync) => {}
        Some(SyncStep::Refuse(e)) => return ArsStep::Refuse(e.clone()),
        Some(other) => return ArsStep::ScaleSet(other.clone()),
    }
    match o.runner_set {
        Presence::Absent => return ArsStep::CreateRunnerSet,
        Presence::Terminating => return ArsStep::Wait(DELETION_WAIT),
        Presence::Present => {}
    }
    let drifted =
        !o.runner_set_spec_current || (!o.runner_set_hash_current && drift == DriftPolicy::Drain);
    if o.runner_set_outdated {
        return if drifted {
            ArsStep::DeleteRunnerSet
        } else {
            ArsStep::MarkOutdated
        };
    }
    if drifted {
        let rollout = on_spec_drift(o.active_runners, 0, drift);
        if rollout == SpecDrift::Drain && o.listener == Presence::Present {
            return ArsStep::StopListener;
        }
        return ArsStep::RolloutRunnerSet(rollout);
    }
    if !o.runner_set_metadata_current {
        return ArsStep::PatchRunnerSetMetadata;
    }
    match o.listener {
        Presence::Absent => return ArsStep::CreateListener,
        Presence::Present if !o.listener_current => return ArsStep::ReplaceListener,
        Presence::Present if !o.listener_bounds_current => {
            return ArsStep::UpdateListenerBounds;
        }
        Presence::Present => {}
        Presence::Terminating => return ArsStep::Wait(DELETION_WAIT),
    }
    if o.status_current {
        ArsStep::Done
    } else {
        ArsStep::UpdateStatus
    }
}

/// Phase `Outdated`: stop the listener, then delete the runner set, then hold.
fn outdated_hold(o: &ArsObservation) -> ArsStep {
    match (o.listener, o.runner_set) {
        (Presence::Present, _) => ArsStep::StopListener,
        (Presence::Terminating, _) => ArsStep::Wait(DELETION_WAIT),
        (Presence::Absent, Presence::Present) => ArsStep::DeleteRunnerSet,
        (Presence::Absent, Presence::Absent | Presence::Terminating) => ArsStep::Parked,
    }
}
