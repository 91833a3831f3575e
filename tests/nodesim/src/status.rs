//! The pod status a kubelet writes, computed from what the simulator knows of a pod's
//! containers: phase, conditions, container states, exit codes and reasons.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// One container's state, as in `containerStatuses[].state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ContainerState {
    /// Not started: `ContainerCreating`, `PodInitializing`, `CreateContainerConfigError`, …
    Waiting {
        reason: String,
        message: Option<String>,
    },
    /// Started at this time.
    Running { started_at: Timestamp },
    /// Exited.
    Terminated {
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
    },
}

impl ContainerState {
    pub(crate) fn waiting(reason: &str, message: Option<String>) -> Self {
        Self::Waiting {
            reason: reason.to_owned(),
            message,
        }
    }

    fn to_json(&self, container_id: Option<&str>) -> Value {
        match self {
            Self::Waiting { reason, message } => {
                let mut w = json!({ "reason": reason });
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({ "waiting": w })
            }
            Self::Running { started_at } => {
                json!({ "running": { "startedAt": time(*started_at) } })
            }
            Self::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => {
                let mut t = json!({
                    "exitCode": exit_code,
                    "reason": reason,
                    "finishedAt": time(*finished_at),
                });
                if let Some(s) = started_at {
                    t["startedAt"] = json!(time(*s));
                }
                if let Some(m) = message {
                    t["message"] = json!(m);
                }
                if let Some(id) = container_id {
                    t["containerID"] = json!(id);
                }
                json!({ "terminated": t })
            }
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        matches!(self, Self::Running { .. })
    }

    pub(crate) fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}

/// What the simulator records of one container.
#[derive(Clone, Debug)]
pub(crate) struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub container_id: Option<String>,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    pub restart_count: i32,
    /// An init container with `restartPolicy: Always` (a native sidecar): it keeps running beside
    /// the regular containers and is stopped after them.
    pub sidecar: bool,
}

impl ContainerRecord {
    pub(crate) fn new(name: &str, image: &str, state: ContainerState) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            container_id: None,
            state,
            last_state: None,
            restart_count: 0,
            sidecar: false,
        }
    }

    /// Whether an init container lets the pod go on: it completed, or it is a started sidecar.
    fn init_done(&self) -> bool {
        self.state.exit_code() == Some(0) || (self.sidecar && self.container_id.is_some())
    }

    /// A started container has an id; a restart moves the old state to `lastState`.
    pub(crate) fn start(&mut self, now: Timestamp) {
        match self.state {
            ContainerState::Terminated { .. } => {
                self.last_state = Some(self.state.clone());
                self.restart_count += 1;
            }
            ContainerState::Waiting { .. } if self.last_state.is_some() => self.restart_count += 1,
            _ => {}
        }
        self.container_id = Some(format!("nodesim://{}", uuid::Uuid::new_v4().simple()));
        self.state = ContainerState::Running { started_at: now };
    }

    /// Records an exit with the reason a kubelet gives: `Completed`, `Error` or the one given.
    pub(crate) fn terminate(&mut self, exit_code: i32, reason: Option<&str>, now: Timestamp) {
        let started_at = match &self.state {
            ContainerState::Running { started_at } => Some(*started_at),
            ContainerState::Terminated { .. } => return,
            ContainerState::Waiting { .. } => None,
        };
        let reason = reason
            .map(str::to_owned)
            .unwrap_or_else(|| if exit_code == 0 { "Completed" } else { "Error" }.to_owned());
        self.state = ContainerState::Terminated {
            exit_code,
            reason,
            message: None,
            started_at,
            finished_at: now,
        };
    }

    /// Sets the termination message of an exited container.
    pub(crate) fn set_message(&mut self, text: Option<String>) {
        if let ContainerState::Terminated { message, .. } = &mut self.state {
            *message = text;
        }
    }

    fn to_json(&self, ready: bool) -> Value {
        let mut s = json!({
            "name": self.name,
            "image": self.image,
            "imageID": format!("nodesim://{}", self.image),
            "state": self.state.to_json(self.container_id.as_deref()),
            "lastState": self
                .last_state
                .as_ref()
                .map(|l| l.to_json(None))
                .unwrap_or_else(|| json!({})),
            "ready": ready,
            "restartCount": self.restart_count,
            "started": self.state.is_running(),
        });
        if let Some(id) = &self.container_id {
            s["containerID"] = json!(id);
        }
        s
    }
}

/// The pod's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Everything the simulator knows of a pod's runtime state.
#[derive(Clone, Debug)]
pub(crate) struct PodRuntime {
    pub restart_policy: String,
    pub init: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    /// Set by eviction: the pod is Failed with this reason and message whatever its containers.
    pub evicted: Option<(String, String)>,
    pub start_time: Option<Timestamp>,
    pub host_ip: String,
    pub pod_ip: String,
    /// Condition type → (status, last transition).
    transitions: BTreeMap<&'static str, (bool, Timestamp)>,
}

impl PodRuntime {
    pub(crate) fn new(
        restart_policy: &str,
        init: Vec<ContainerRecord>,
        containers: Vec<ContainerRecord>,
        ip: &str,
    ) -> Self {
        Self {
            restart_policy: restart_policy.to_owned(),
            init,
            containers,
            evicted: None,
            start_time: None,
            host_ip: ip.to_owned(),
            pod_ip: ip.to_owned(),
            transitions: BTreeMap::new(),
        }
    }

    fn init_failed_for_good(&self) -> bool {
        self.restart_policy == "Never"
            && self
                .init
                .iter()
                .any(|c| c.state.exit_code().is_some_and(|code| code != 0))
    }

    pub(crate) fn initialized(&self) -> bool {
        self.init.iter().all(ContainerRecord::init_done)
    }

    /// Stops the running sidecars as a kubelet does once the regular containers have ended;
    /// whether any was running.
    pub(crate) fn stop_sidecars(&mut self, now: Timestamp) -> bool {
        let mut stopped = false;
        for sidecar in self
            .init
            .iter_mut()
            .filter(|c| c.sidecar && c.state.is_running())
        {
            sidecar.terminate(0, None, now);
            stopped = true;
        }
        stopped
    }

    /// The phase a kubelet computes (`getPhase`).
    pub(crate) fn phase(&self) -> Phase {
        if self.evicted.is_some() || self.init_failed_for_good() {
            return Phase::Failed;
        }
        if !self.initialized() {
            return Phase::Pending;
        }
        let (mut running, mut waiting, mut succeeded, mut failed) = (0, 0, 0, 0);
        for c in &self.containers {
            match &c.state {
                ContainerState::Running { .. } => running += 1,
                ContainerState::Waiting { .. } if c.last_state.is_some() => running += 1,
                ContainerState::Waiting { .. } => waiting += 1,
                ContainerState::Terminated { exit_code: 0, .. } => succeeded += 1,
                ContainerState::Terminated { .. } => failed += 1,
            }
        }
        if waiting > 0 {
            return Phase::Pending;
        }
        if running > 0 {
            return Phase::Running;
        }
        match self.restart_policy.as_str() {
            "Always" => Phase::Running,
            "OnFailure" if failed > 0 => Phase::Running,
            _ if failed > 0 => Phase::Failed,
            _ if succeeded > 0 => Phase::Succeeded,
            _ => Phase::Pending,
        }
    }

    /// Whether every regular container runs (no readiness probes are simulated: a started
    /// container is ready).
    fn containers_ready(&self) -> bool {
        !self.containers.is_empty() && self.containers.iter().all(|c| c.state.is_running())
    }

    fn condition(
        &mut self,
        kind: &'static str,
        status: bool,
        reason: Option<String>,
        message: Option<String>,
        now: Timestamp,
    ) -> Value {
        let at = match self.transitions.get(kind) {
            Some((old, at)) if *old == status => *at,
            _ => {
                self.transitions.insert(kind, (status, now));
                now
            }
        };
        let mut c = json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": time(at),
        });
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    }

    /// The `status` object to write (a JSON merge patch replaces its lists whole).
    /// `scheduled` is the `PodScheduled` condition as the scheduler wrote it.
    pub(crate) fn status(&mut self, scheduled: Option<Value>, now: Timestamp) -> Value {
        let phase = self.phase();
        let completed = phase.is_terminal();
        let unfinished = |list: &[ContainerRecord], ok: &dyn Fn(&ContainerRecord) -> bool| {
            let names: Vec<&str> = list
                .iter()
                .filter(|c| !ok(c))
                .map(|c| c.name.as_str())
                .collect();
            names.join(" ")
        };
        let initialized = self.initialized();
        let init_reason = if completed && initialized {
            Some(("PodCompleted".to_owned(), None))
        } else if initialized {
            None
        } else {
            let names = unfinished(&self.init, &ContainerRecord::init_done);
            Some((
                "ContainersNotInitialized".to_owned(),
                Some(format!("containers with incomplete status: [{names}]")),
            ))
        };
        let ready = self.containers_ready() && !completed && self.evicted.is_none();
        let ready_reason = if ready {
            None
        } else if completed {
            Some(("PodCompleted".to_owned(), None))
        } else {
            let names = unfinished(&self.containers, &|c| c.state.is_running());
            Some((
                "ContainersNotReady".to_owned(),
                Some(format!("containers with unready status: [{names}]")),
            ))
        };
        let split = |r: Option<(String, Option<String>)>| match r {
            Some((reason, message)) => (Some(reason), message),
            None => (None, None),
        };
        let (ir, im) = split(init_reason);
        let (rr, rm) = split(ready_reason);
        let mut conditions = vec![
            self.condition("Initialized", initialized, ir, im, now),
            self.condition("Ready", ready, rr.clone(), rm.clone(), now),
            self.condition("ContainersReady", ready, rr, rm, now),
        ];
        conditions.push(scheduled.unwrap_or_else(|| {
            json!({
                "type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": time(now),
            })
        }));
        let mut status = json!({
            "phase": phase.as_str(),
            "conditions": conditions,
            "hostIP": self.host_ip,
            "podIP": self.pod_ip,
            "podIPs": [{ "ip": self.pod_ip }],
            "qosClass": "BestEffort",
            "containerStatuses": self
                .containers
                .iter()
                .map(|c| c.to_json(ready && c.state.is_running()))
                .collect::<Vec<_>>(),
        });
        if let Some(start) = self.start_time {
            status["startTime"] = json!(time(start));
        }
        if !self.init.is_empty() {
            status["initContainerStatuses"] = json!(
                self.init
                    .iter()
                    .map(|c| c.to_json(c.state.exit_code() == Some(0)))
                    .collect::<Vec<_>>()
            );
        }
        if let Some((reason, message)) = &self.evicted {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        status
    }
}

/// A timestamp as the API server writes it (seconds precision, `Z`).
pub(crate) fn time(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn runtime(policy: &str, init: usize) -> PodRuntime {
        let waiting = || ContainerState::waiting("ContainerCreating", None);
        PodRuntime::new(
            policy,
            (0..init)
                .map(|i| ContainerRecord::new(&format!("init-{i}"), "busybox", waiting()))
                .collect(),
            vec![ContainerRecord::new("runner", "runner:1", waiting())],
            "127.0.0.1",
        )
    }

    #[test]
    fn a_native_sidecar_runs_beside_the_runner_and_stops_after_it() {
        let now = Timestamp::now();
        let mut rt = runtime("Never", 2);
        rt.init[1].sidecar = true;
        rt.init[0].start(now);
        rt.init[0].terminate(0, None, now);
        assert!(!rt.initialized(), "the sidecar has not started");
        rt.init[1].start(now);
        assert!(rt.initialized(), "a started sidecar lets the pod go on");
        rt.containers[0].start(now);
        assert_eq!(rt.phase(), Phase::Running);
        let status = rt.status(None, now);
        assert!(status["initContainerStatuses"][1]["state"]["running"].is_object());
        assert_eq!(status["initContainerStatuses"][1]["started"], json!(true));
        rt.containers[0].terminate(0, None, now);
        assert_eq!(
            rt.phase(),
            Phase::Succeeded,
            "the sidecar does not hold the phase"
        );
        assert!(rt.stop_sidecars(now));
        assert!(!rt.stop_sidecars(now), "stopped once");
        let status = rt.status(None, now);
        let sidecar = &status["initContainerStatuses"][1]["state"]["terminated"];
        assert_eq!(sidecar["exitCode"], json!(0));
        assert_eq!(rt.phase(), Phase::Succeeded);
    }

    #[test]
    fn a_runner_that_exits_zero_makes_the_pod_succeed() {
        let now = Timestamp::now();
        let mut rt = runtime("Never", 0);
        assert_eq!(rt.phase(), Phase::Pending);
        rt.containers[0].start(now);
        assert_eq!(rt.phase(), Phase::Running);
        let status = rt.status(None, now);
        assert_eq!(status["containerStatuses"][0]["ready"], json!(true));
        assert_eq!(status["conditions"][1]["status"], json!("True"));
        rt.containers[0].terminate(0, None, now);
        assert_eq!(rt.phase(), Phase::Succeeded);
        let status = rt.status(None, now);
        let t = &status["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(t["exitCode"], json!(0));
        assert_eq!(t["reason"], json!("Completed"));
        assert_eq!(status["conditions"][1]["reason"], json!("PodCompleted"));
    }

    #[test]
    fn exit_codes_and_restart_policies_give_kubelet_phases() {
        let now = Timestamp::now();
        for (policy, phase) in [
            ("Never", Phase::Failed),
            ("OnFailure", Phase::Running),
            ("Always", Phase::Running),
        ] {
            let mut rt = runtime(policy, 0);
            rt.containers[0].start(now);
            rt.containers[0].terminate(137, Some("OOMKilled"), now);
            assert_eq!(rt.phase(), phase, "{policy}");
        }
        let mut rt = runtime("Always", 0);
        rt.containers[0].start(now);
        rt.containers[0].terminate(1, None, now);
        rt.containers[0].start(now);
        assert_eq!(rt.containers[0].restart_count, 1);
        let status = rt.status(None, now);
        assert_eq!(
            status["containerStatuses"][0]["lastState"]["terminated"]["reason"],
            json!("Error")
        );
    }

    #[test]
    fn a_failed_init_container_fails_a_never_restart_pod() {
        let now = Timestamp::now();
        let mut rt = runtime("Never", 2);
        rt.init[0].start(now);
        rt.init[0].terminate(0, None, now);
        assert_eq!(rt.phase(), Phase::Pending);
        rt.init[1].start(now);
        rt.init[1].terminate(3, None, now);
        assert_eq!(rt.phase(), Phase::Failed);
        let status = rt.status(None, now);
        assert_eq!(
            status["initContainerStatuses"][1]["state"]["terminated"]["exitCode"],
            json!(3)
        );
        assert_eq!(
            status["conditions"][0]["message"],
            json!("containers with incomplete status: [init-1]")
        );
    }

    #[test]
    fn eviction_fails_the_pod_with_its_reason() {
        let now = Timestamp::now();
        let mut rt = runtime("Never", 0);
        rt.containers[0].start(now);
        rt.evicted = Some((
            "Evicted".into(),
            "The node was low on resource: memory.".into(),
        ));
        assert_eq!(rt.phase(), Phase::Failed);
        let status = rt.status(None, now);
        assert_eq!(status["reason"], json!("Evicted"));
        assert_eq!(status["conditions"][1]["status"], json!("False"));
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let t2 = Timestamp::from_second(3_000).unwrap();
        let mut rt = runtime("Never", 0);
        rt.status(None, t0);
        let again = rt.status(None, t1);
        assert_eq!(
            again["conditions"][1]["lastTransitionTime"],
            json!(time(t0))
        );
        rt.containers[0].start(t2);
        let ready = rt.status(None, t2);
        assert_eq!(
            ready["conditions"][1]["lastTransitionTime"],
            json!(time(t2))
        );
    }
}
