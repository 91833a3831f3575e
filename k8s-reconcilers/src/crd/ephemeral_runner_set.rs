//! `EphemeralRunnerSet`: one per runner scale set, named after it (docs/architecture.md#crds).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{EphemeralRunnerSpec, ResourceMeta};

/// Desired runners of a scale set; `replicas` and `patchID` are written by the listener.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "EphemeralRunnerSet",
    namespaced,
    status = "EphemeralRunnerSetStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "EphemeralRunnerSet is the Schema for the ephemeralrunnersets API",
    printcolumn(
        name = "DesiredReplicas",
        type_ = "integer",
        json_path = ".spec.replicas"
    ),
    printcolumn(
        name = "CurrentReplicas",
        type_ = "integer",
        json_path = ".status.currentReplicas"
    ),
    printcolumn(
        name = "Pending Runners",
        type_ = "integer",
        json_path = ".status.pendingEphemeralRunners"
    ),
    printcolumn(
        name = "Running Runners",
        type_ = "integer",
        json_path = ".status.runningEphemeralRunners"
    ),
    printcolumn(
        name = "Finished Runners",
        type_ = "integer",
        json_path = ".status.finishedEphemeralRunners"
    ),
    printcolumn(
        name = "Deleting Runners",
        type_ = "integer",
        json_path = ".status.deletingEphemeralRunners"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase")
)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct EphemeralRunnerSetSpec {
    /// Desired number of runners; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicas: i32,
    /// Id of the listener patch that set `replicas`; 0 means "forced/idle".
    #[serde(default, rename = "patchID")]
    pub patch_id: i32,
    /// Template for new EphemeralRunners.
    #[serde(default)]
    pub ephemeral_runner_spec: EphemeralRunnerSpec,
    /// Metadata for EphemeralRunners created from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_metadata: Option<ResourceMeta>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Observed runners of a set. Every field but `observedPatchID` is always serialised.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerSetStatus {
    /// Pending + running + failed runners.
    pub current_replicas: i32,
    /// Pending runners that are not being deleted.
    #[serde(default)]
    pub pending_ephemeral_runners: i32,
    /// Running runners that are not being deleted.
    #[serde(default)]
    pub running_ephemeral_runners: i32,
    /// Failed runners that are not being deleted.
    #[serde(default)]
    pub failed_ephemeral_runners: i32,
    /// `Running` or `Outdated`.
    #[serde(default)]
    pub phase: String,
    /// The `spec.patchID` the controller last acted on (not in ARC's CRD). Without it a
    /// `patchID` counts as acted on while a runner stamped with it exists, so a set whose
    /// runners all completed before the listener's next patch would scale up again.
    #[serde(
        default,
        rename = "observedPatchID",
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_patch_id: Option<i32>,
    /// The `Ready` condition: set to `False` with the reason and the message (field, value,
    /// fix) when a reconcile fails on something the user can fix, back to `True` once one
    /// succeeds (an arc-rs addition; ARC has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
}
