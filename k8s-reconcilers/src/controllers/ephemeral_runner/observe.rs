//! Adapters from Kubernetes objects to the observations of `scaleset_core::ephemeral_runner`.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use scaleset_core::ephemeral_runner::{ContainerState, PodObservation, PodPhase, RunnerState};
use scaleset_core::runner_set::RunnerPhase;
use scaleset_core::time::Timestamp;

use crate::crd::EphemeralRunner;
use crate::names::RUNNER_CONTAINER;

/// A Kubernetes timestamp as a core [`Timestamp`].
pub fn timestamp(t: &Time) -> Timestamp {
    Timestamp::from_unix_millis(t.0.as_millisecond())
}

/// What the controller knows it made: the runners created after it started, which it has
/// watched from their creation, and those it created a JIT Secret for. A runner created after
/// the start, without status, and without a JIT Secret from this controller has none (only
/// this controller creates them), so its first pass needs no reads before its JIT config.
pub struct Made {
    since: Timestamp,
    jit_secrets: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Made {
    /// Knows the runners created after `since`.
    pub fn since(since: Timestamp) -> Self {
        Made {
            since,
            jit_secrets: Default::default(),
        }
    }

    /// Records that this controller created (or found) the JIT Secret of `er`.
    pub fn jit_secret(&self, er: &EphemeralRunner) {
        if let Some(uid) = &er.metadata.uid {
            self.lock().insert(uid.clone());
        }
    }

    /// Forgets `er` (released).
    pub fn forget(&self, er: &EphemeralRunner) {
        if let Some(uid) = &er.metadata.uid {
            self.lock().remove(uid);
        }
    }

    /// Whether `er` is known to have no JIT Secret and no past: created after the start, no
    /// status, not being deleted, and no JIT Secret made for it.
    pub fn untouched(&self, er: &EphemeralRunner) -> bool {
        let created_after = er
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| timestamp(t) > self.since);
        created_after
            && er.status.is_none()
            && er.metadata.deletion_timestamp.is_none()
            && er
                .metadata
                .uid
                .as_ref()
                .is_some_and(|uid| !self.lock().contains(uid))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        crate::lock(&self.jit_secrets)
    }
}

/// The current time as a core [`Timestamp`].
pub fn now() -> Timestamp {
    Timestamp::from_unix_millis(k8s_openapi::jiff::Timestamp::now().as_millisecond())
}

/// The current time as RFC 3339 text, the format of `status.failures` values.
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Whether the runner has a job (`status.jobId` or `status.jobRequestId` set by the listener).
pub fn has_job(er: &EphemeralRunner) -> bool {
    er.status
        .as_ref()
        .is_some_and(|s| !s.job_id.is_empty() || s.job_request_id > 0)
}

/// What the controller knows about the runner: its status, whether the JIT Secret exists, and
/// the registration its pod carries before the status records it. Whether the set removed that
/// registration is left for the pass to fill in: only the running manager knows.
pub fn runner_state(er: &EphemeralRunner, jit_secret: bool, pod: Option<&Pod>) -> RunnerState {
    let status = er.status.clone().unwrap_or_default();
    let last_failure = status
        .failures
        .values()
        .filter_map(|v| v.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .max()
        .map(|t| Timestamp::from_unix_millis(t.as_millisecond()));
    RunnerState {
        phase: RunnerPhase::parse(&status.phase),
        ready: status.ready,
        jit_secret,
        runner_id: super::resources::registered_id(er, pod, None),
        has_job: has_job(er),
        failures: u32::try_from(status.failures.len()).unwrap_or(u32::MAX),
        last_failure,
        created_at: er
            .metadata
            .creation_timestamp
            .as_ref()
            .map(timestamp)
            .unwrap_or_default(),
        registration_removed: None,
    }
}

/// What the controller sees of the runner pod.
pub fn pod_observation(pod: &Pod) -> PodObservation {
    let status = pod.status.clone().unwrap_or_default();
    let runner = status
        .container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == RUNNER_CONTAINER)
        .map(container_state)
        .unwrap_or_default();
    let failed_init = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            (code != 0).then(|| (c.name.clone(), code))
        });
    PodObservation {
        phase: PodPhase::parse(status.phase.as_deref().unwrap_or_default()),
        reason: status.reason.clone().unwrap_or_default(),
        message: status.message.clone().unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        runner,
        failed_init,
        ready: pod_ready(pod),
    }
}

/// Status of the `Ready` condition with the latest transition time.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ == "Ready")
        .max_by_key(|c| c.last_transition_time.as_ref().map(timestamp))
        .is_some_and(|c| c.status == "True")
}

/// The state of one container of a pod.
pub fn container_state(c: &ContainerStatus) -> ContainerState {
    let Some(state) = c.state.as_ref() else {
        return ContainerState::Absent;
    };
    if let Some(t) = &state.terminated {
        ContainerState::Terminated {
            exit_code: t.exit_code,
            reason: t.reason.clone().unwrap_or_default(),
        }
    } else if state.running.is_some() {
        ContainerState::Running
    } else if let Some(w) = &state.waiting {
        ContainerState::Waiting {
            reason: w.reason.clone().unwrap_or_default(),
        }
    } else {
        ContainerState::Absent
    }
}

/// Whether the runner container is alive (running or not yet started), for the
/// `JobStillRunning` wait during deletion.
pub fn runner_alive(pod: Option<&Pod>) -> bool {
    pod.is_some_and(|p| {
        p.metadata.deletion_timestamp.is_none()
            && !matches!(pod_observation(p).runner, ContainerState::Terminated { .. })
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed" | "Succeeded")
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status}))
            .expect("pod json")
    }

    #[test]
    fn runner_container_states() {
        let p = pod(json!({
            "phase": "Failed",
            "reason": "Evicted",
            "containerStatuses": [
                {"name": "sidecar", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 1}}},
                {"name": "runner", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}
            ],
            "initContainerStatuses": [
                {"name": "init", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 2}}}
            ]
        }));
        let o = pod_observation(&p);
        assert_eq!(o.phase, PodPhase::Failed);
        assert_eq!(o.reason, "Evicted");
        assert_eq!(
            o.runner,
            ContainerState::Terminated {
                exit_code: 3,
                reason: "Error".into()
            }
        );
        assert_eq!(o.failed_init, Some(("init".into(), 2)));
        assert!(!runner_alive(Some(&p)));
    }

    #[test]
    fn ready_follows_the_latest_condition() {
        let p = pod(json!({
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2024-01-01T00:01:00Z"}
            ],
            "containerStatuses": [
                {"name": "runner", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {}}}
            ]
        }));
        let o = pod_observation(&p);
        assert!(!o.ready);
        assert_eq!(o.runner, ContainerState::Running);
        assert!(runner_alive(Some(&p)));
        assert!(!runner_alive(None));
    }

    #[test]
    fn runner_state_counts_failures_and_latest() {
        let er: EphemeralRunner = serde_json::from_value(json!({
            "apiVersion": "actions.github.com/v1alpha1",
            "kind": "EphemeralRunner",
            "metadata": {"name": "r", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {},
            "status": {
                "phase": "Running",
                "runnerId": 4,
                "jobId": "j",
                "failures": {"a": "2024-01-01T00:00:10Z", "b": "2024-01-01T00:00:20Z"}
            }
        }))
        .expect("er json");
        let s = runner_state(&er, true, None);
        assert_eq!(s.failures, 2);
        assert_eq!(s.runner_id, 4);
        assert!(s.has_job && s.jit_secret);
        assert_eq!(s.phase, RunnerPhase::Running);
        assert_eq!(
            s.last_failure
                .map(|t| t.unix_millis() - s.created_at.unix_millis()),
            Some(20_000)
        );
    }
}
