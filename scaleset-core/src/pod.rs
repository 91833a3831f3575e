//! What a pod's status means, for runner and listener pods alike: one classification of pod
//! failures into the cluster's fault (eviction, preemption, node loss: not charged) and the
//! workload's fault (its exit, its image or template: charged to its restart budget).
//!
//! [`crate::ephemeral_runner::decide`] and [`crate::listener_lifecycle::classify_pod`] both
//! classify through [`terminated_fault`], [`pod_reason_fault`] and [`cannot_start`].

use serde::{Deserialize, Serialize};

/// Pod `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PodPhase {
    /// `Pending` (or empty).
    #[default]
    Pending,
    /// `Running`.
    Running,
    /// `Succeeded`.
    Succeeded,
    /// `Failed`.
    Failed,
    /// `Unknown` (node unreachable).
    Unknown,
}

impl PodPhase {
    /// Parses the pod phase string; empty is `Pending`.
    pub fn parse(s: &str) -> Self {
        match s {
            "Running" => PodPhase::Running,
            "Succeeded" => PodPhase::Succeeded,
            "Failed" => PodPhase::Failed,
            "Unknown" => PodPhase::Unknown,
            _ => PodPhase::Pending,
        }
    }
}

/// State of the pod's main container (`runner` or `listener`), or of a failed init container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ContainerState {
    /// Not reported yet.
    #[default]
    Absent,
    /// Waiting, with its reason (`ContainerCreating`, `ImagePullBackOff`, `InvalidImageName`…).
    Waiting {
        /// `state.waiting.reason`.
        reason: String,
    },
    /// Running.
    Running,
    /// Terminated.
    Terminated {
        /// `state.terminated.exitCode`.
        exit_code: i32,
        /// `state.terminated.reason` (`Completed`, `Error`, `OOMKilled`…).
        reason: String,
    },
}

/// Whose fault a pod failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The workload (runner or listener) or its image/template: charged to its budget.
    Runner,
    /// The cluster (eviction, `OutOf*`, node loss, preemption, pod vanished): not charged.
    Cluster,
}

/// Classifies a pod `status.reason` of a failed pod.
///
/// ```
/// use scaleset_core::pod::{pod_reason_fault, Fault};
/// assert_eq!(pod_reason_fault("Evicted"), Fault::Cluster);
/// assert_eq!(pod_reason_fault("OutOfmemory"), Fault::Cluster);
/// assert_eq!(pod_reason_fault("DeadlineExceeded"), Fault::Runner);
/// ```
pub fn pod_reason_fault(reason: &str) -> Fault {
    const CLUSTER: &[&str] = &[
        "Evicted",
        "Preempting",
        "Preempted",
        "NodeShutdown",
        "Shutdown",
        "Terminated",
        "NodeLost",
        "NodeAffinity",
        "UnexpectedAdmissionError",
        "Deleted",
    ];
    if reason.starts_with("OutOf") || CLUSTER.contains(&reason) {
        Fault::Cluster
    } else {
        Fault::Runner
    }
}

/// Whose fault it is that the main container terminated: the cluster's only when the pod
/// failed for a cluster reason (e.g. the container was killed by an eviction), the workload's
/// otherwise (its own exit, `OOMKilled`).
///
/// ```
/// use scaleset_core::pod::{terminated_fault, Fault, PodPhase};
/// assert_eq!(terminated_fault(PodPhase::Failed, "Evicted"), Fault::Cluster);
/// assert_eq!(terminated_fault(PodPhase::Failed, ""), Fault::Runner);
/// assert_eq!(terminated_fault(PodPhase::Running, "Evicted"), Fault::Runner);
/// ```
pub fn terminated_fault(phase: PodPhase, pod_reason: &str) -> Fault {
    if phase == PodPhase::Failed {
        pod_reason_fault(pod_reason)
    } else {
        Fault::Runner
    }
}

/// Container waiting reasons that can never resolve on their own (pull errors such as
/// `ErrImagePull` and `ImagePullBackOff` can, so they are not among them).
///
/// ```
/// use scaleset_core::pod::cannot_start;
/// assert!(cannot_start("InvalidImageName"));
/// assert!(!cannot_start("ImagePullBackOff"));
/// ```
pub fn cannot_start(waiting_reason: &str) -> bool {
    matches!(waiting_reason, "InvalidImageName" | "ErrImageNeverPull")
}
