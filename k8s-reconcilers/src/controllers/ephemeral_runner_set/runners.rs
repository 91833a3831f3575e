//! The EphemeralRunnerSet's view of its runners: which EphemeralRunners it owns, their
//! observation for `scaleset_core::runner_set`, and the construction of new ones
//! (docs/architecture.md#ephemeralrunnerset-reconciler).

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::ObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use scaleset_core::completions::{COMPLETED_RUNNERS, Completions, Held};
use scaleset_core::runner_set::{
    ObservedRunner, RunnerPhase, SetStatus, StatusChanges, UnseenWrites,
};

use crate::controllers::ephemeral_runner::observe::{has_job, now, timestamp};
use crate::crd::{EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerSetStatus};
use crate::meta::{merge_annotations, merge_labels};
use crate::names::{
    annotations, finalizers, labels, runner_generate_name, runner_proxy_secret_name,
};

/// The set controller's view of the EphemeralRunners: its watch cache, with each set's own
/// creations and deletions that the cache does not show yet laid over it
/// (docs/architecture.md#runners-from-the-watch-cache).
pub struct RunnerView {
    store: Store<EphemeralRunner>,
    /// By the set's UID.
    unseen: Mutex<HashMap<String, UnseenWrites>>,
    /// Runners that finished with a job, and the completions the listener's count reflects,
    /// by the set's UID (docs/architecture.md#the-patchid-protocol).
    completions: Mutex<HashMap<String, Completions>>,
}

impl RunnerView {
    /// A view of the runners in `store`.
    pub fn new(store: Store<EphemeralRunner>) -> Self {
        RunnerView {
            store,
            unseen: Mutex::default(),
            completions: Mutex::default(),
        }
    }

    /// The watch cache, to wait for its first list.
    pub fn store(&self) -> &Store<EphemeralRunner> {
        &self.store
    }

    /// Forgets the writes a watch event for `er` shows, and notes a runner that finished with
    /// a job. The watch delivers every change of a runner, so its job is seen before its end.
    pub fn seen(&self, er: &EphemeralRunner) {
        let Some(set) = owner_uid(er) else { return };
        if let Some(writes) = self.lock().get_mut(set) {
            writes.seen(&er.name_any(), er.metadata.deletion_timestamp.is_some());
        }
        if has_job(er) && observed(er).finished() {
            crate::lock(&self.completions)
                .entry(set.to_owned())
                .or_default()
                .finished(&er.name_any(), now());
        }
    }

    /// The creations `set` holds back in a pass on its current spec ([`Completions::held`]);
    /// marks its `runners` whose job is over ([`Completions::mark_done`]).
    pub fn completions(&self, set: &EphemeralRunnerSet, runners: &mut [ObservedRunner]) -> Held {
        let Some(uid) = set.meta().uid.as_deref() else {
            return Held::default();
        };
        let listed = set.annotations().get(COMPLETED_RUNNERS).map(String::as_str);
        let mut all = crate::lock(&self.completions);
        let completions = all.entry(uid.to_owned()).or_default();
        let held = completions.held(listed, i64::from(set.spec.patch_id), now());
        completions.mark_done(runners);
        if completions.is_empty() {
            all.remove(uid);
        }
        held
    }

    /// The runners of `set` as `scaleset_core::runner_set` sees them.
    pub fn of(&self, set: &EphemeralRunnerSet) -> Vec<ObservedRunner> {
        let cached: Vec<ObservedRunner> = self
            .store
            .state()
            .iter()
            .filter(|er| owned_by(er, set))
            .map(|er| observed(er))
            .collect();
        let Some(uid) = set.meta().uid.as_deref() else {
            return cached;
        };
        let mut unseen = self.lock();
        let Some(writes) = unseen.get_mut(uid) else {
            return cached;
        };
        let view = writes.overlay(cached, now());
        if writes.is_empty() {
            unseen.remove(uid);
        }
        view
    }

    /// Records the creation of runner `name` of `set`, stamped with `patch_id`.
    pub fn created(&self, set: &EphemeralRunnerSet, name: String, patch_id: i64) {
        if let Some(uid) = set.meta().uid.clone() {
            self.lock()
                .entry(uid)
                .or_default()
                .created(name, patch_id, now());
        }
    }

    /// Records the deletion of runner `name` of `set`.
    pub fn deleted(&self, set: &EphemeralRunnerSet, name: &str) {
        if let Some(uid) = set.meta().uid.clone() {
            self.lock().entry(uid).or_default().deleted(name, now());
        }
    }

    /// Forgets what it holds of `set` (the set is gone).
    pub fn forget(&self, set: &EphemeralRunnerSet) {
        if let Some(uid) = set.meta().uid.as_deref() {
            self.lock().remove(uid);
            crate::lock(&self.completions).remove(uid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UnseenWrites>> {
        crate::lock(&self.unseen)
    }
}

/// The UID of the EphemeralRunnerSet controlling `er`.
fn owner_uid(er: &EphemeralRunner) -> Option<&str> {
    er.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "EphemeralRunnerSet")
        .map(|o| o.uid.as_str())
}

/// Whether `er` is controlled by `set` (owner reference with the set's UID).
pub fn owned_by(er: &EphemeralRunner, set: &EphemeralRunnerSet) -> bool {
    set.meta().uid.is_some() && owner_uid(er) == set.meta().uid.as_deref()
}

/// An EphemeralRunner as `scaleset_core::runner_set` sees it.
pub fn observed(er: &EphemeralRunner) -> ObservedRunner {
    let status = er.status.clone().unwrap_or_default();
    ObservedRunner {
        name: er.name_any(),
        phase: RunnerPhase::parse(&status.phase),
        deleting: er.metadata.deletion_timestamp.is_some(),
        patch_id: er
            .annotations()
            .get(annotations::PATCH_ID)
            .and_then(|v| v.trim().parse::<i64>().ok()),
        runner_id: status.runner_id,
        has_job: has_job(er),
        created_at: er
            .metadata
            .creation_timestamp
            .as_ref()
            .map(timestamp)
            .unwrap_or_default(),
        failed_at: None,
        job_done: false,
    }
}

/// The set status for the counters of a pass; `phase` is `Outdated` when any runner is,
/// otherwise the current phase, or `Running` when none is set. `applied_patch_id` is the
/// `patchID` the pass acted on; `None` keeps the current one.
pub fn set_status(
    counts: &SetStatus,
    current: &EphemeralRunnerSetStatus,
    applied_patch_id: Option<i64>,
) -> EphemeralRunnerSetStatus {
    let as_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let phase = if counts.outdated {
        "Outdated"
    } else if current.phase.is_empty() {
        "Running"
    } else {
        &current.phase
    };
    EphemeralRunnerSetStatus {
        current_replicas: as_i32(counts.current_replicas),
        pending_ephemeral_runners: as_i32(counts.pending),
        running_ephemeral_runners: as_i32(counts.running),
        failed_ephemeral_runners: as_i32(counts.failed),
        phase: phase.to_owned(),
        observed_patch_id: applied_patch_id
            .map(|id| i32::try_from(id).unwrap_or(i32::MAX))
            .or(current.observed_patch_id),
        conditions: current.conditions.clone(),
    }
}

/// How `target` differs from the set's `current` status.
pub fn status_changes(
    current: Option<&EphemeralRunnerSetStatus>,
    target: &EphemeralRunnerSetStatus,
) -> StatusChanges {
    match current {
        Some(current) if current == target => StatusChanges::None,
        Some(current) if current.phase == target.phase => StatusChanges::Routine,
        _ => StatusChanges::Phase,
    }
}

/// A new EphemeralRunner of `set` stamped with `patch_id`.
pub fn new_runner(
    set: &EphemeralRunnerSet,
    patch_id: i64,
    excluded_prefixes: &[String],
) -> EphemeralRunner {
    let extra = set
        .spec
        .ephemeral_runner_metadata
        .clone()
        .unwrap_or_default();
    let mut own_labels = set.labels().clone();
    own_labels.insert(labels::COMPONENT.into(), labels::COMPONENT_RUNNER.into());
    let mut own_annotations = set.annotations().clone();
    own_annotations.insert(annotations::PATCH_ID.into(), patch_id.to_string());
    let namespace = set.namespace().unwrap_or_default();
    let mut spec = set.spec.ephemeral_runner_spec.clone();
    if spec.proxy.is_some() {
        spec.proxy_secret_ref = Some(runner_proxy_secret_name(&set.name_any(), &namespace));
    }
    EphemeralRunner {
        metadata: ObjectMeta {
            generate_name: Some(runner_generate_name(&set.name_any())),
            namespace: Some(namespace),
            labels: Some(merge_labels(
                extra.labels.as_ref(),
                Some(&own_labels),
                excluded_prefixes,
            )),
            annotations: Some(merge_annotations(
                extra.annotations.as_ref(),
                Some(&own_annotations),
            )),
            finalizers: Some(vec![
                finalizers::EPHEMERAL_RUNNER.into(),
                finalizers::RUNNER_REGISTRATION.into(),
            ]),
            owner_references: set.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> EphemeralRunnerSet {
        serde_json::from_value(json!({
            "apiVersion": "actions.github.com/v1alpha1",
            "kind": "EphemeralRunnerSet",
            "metadata": {
                "name": "arc", "namespace": "ns", "uid": "set-uid",
                "labels": {"app.kubernetes.io/component": "runner-set", "team": "a", "skip.me/x": "1"},
                "annotations": {"actions.github.com/integrity-hash": "h"}
            },
            "spec": {
                "replicas": 2,
                "patchID": 7,
                "ephemeralRunnerMetadata": {"labels": {"team": "meta", "m": "1"}, "annotations": {"n": "1"}},
                "ephemeralRunnerSpec": {
                    "githubConfigUrl": "https://github.com/org",
                    "githubConfigSecret": "creds",
                    "runnerScaleSetId": 3,
                    "proxy": {"http": {"url": "http://p:1"}},
                    "spec": {"containers": [{"name": "runner", "image": "r"}]}
                }
            }
        }))
        .expect("set json")
    }

    #[test]
    fn new_runner_follows_arc() {
        let s = set();
        let er = new_runner(&s, 7, &["skip.me/".into()]);
        let meta = &er.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("arc-runner-"));
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("app.kubernetes.io/component")
                .map(String::as_str),
            Some("runner")
        );
        assert_eq!(
            labels.get("team").map(String::as_str),
            Some("a"),
            "set labels win"
        );
        assert_eq!(labels.get("m").map(String::as_str), Some("1"));
        assert!(!labels.contains_key("skip.me/x"));
        let ann = meta.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(annotations::PATCH_ID).map(String::as_str),
            Some("7")
        );
        assert_eq!(
            ann.get(annotations::INTEGRITY_HASH).map(String::as_str),
            Some("h")
        );
        assert_eq!(ann.get("n").map(String::as_str), Some("1"));
        assert_eq!(meta.finalizers.clone().unwrap_or_default().len(), 2);
        assert!(owned_by(&er, &s));
        assert_eq!(er.spec.runner_scale_set_id, 3);
        assert_eq!(
            er.spec.proxy_secret_ref,
            Some(runner_proxy_secret_name("arc", "ns"))
        );
    }

    #[test]
    fn observation_and_status() {
        let s = set();
        let mut er = new_runner(&s, 4, &[]);
        er.metadata.name = Some("arc-runner-x".into());
        er.status = Some(crate::crd::EphemeralRunnerStatus {
            phase: "Running".into(),
            runner_id: 12,
            job_id: "j".into(),
            ..Default::default()
        });
        let o = observed(&er);
        assert_eq!((o.patch_id, o.runner_id, o.has_job), (Some(4), 12, true));
        assert_eq!(o.phase, RunnerPhase::Running);
        let counts = SetStatus {
            current_replicas: 3,
            pending: 1,
            running: 2,
            failed: 1,
            outdated: false,
        };
        let st = set_status(&counts, &EphemeralRunnerSetStatus::default(), Some(5));
        assert_eq!(
            (
                st.current_replicas,
                st.failed_ephemeral_runners,
                st.phase.as_str(),
                st.observed_patch_id
            ),
            (3, 1, "Running", Some(5))
        );
        let outdated = SetStatus {
            outdated: true,
            ..counts
        };
        let kept = set_status(&outdated, &st, None);
        assert_eq!(
            (kept.phase.as_str(), kept.observed_patch_id),
            ("Outdated", Some(5))
        );
    }
}
