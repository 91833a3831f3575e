//! `AutoscalingRunnerSet`: the user-facing kind (docs/architecture.md#crds).

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MetricsConfig, ProxyConfig, ResourceMeta, TlsConfig, VaultConfig};

/// Desired state of a runner scale set.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "AutoscalingRunnerSet",
    namespaced,
    status = "AutoscalingRunnerSetStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "AutoscalingRunnerSet is the Schema for the autoscalingrunnersets API",
    printcolumn(
        name = "Minimum Runners",
        type_ = "integer",
        json_path = ".spec.minRunners"
    ),
    printcolumn(
        name = "Maximum Runners",
        type_ = "integer",
        json_path = ".spec.maxRunners"
    ),
    printcolumn(
        name = "Current Runners",
        type_ = "integer",
        json_path = ".status.currentRunners"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
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
    )
)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct AutoscalingRunnerSetSpec {
    /// `https://<host>/<org>`, `https://<host>/<org>/<repo>` or `https://<host>/enterprises/<ent>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_url: Option<String>,
    /// Name of the Secret with GitHub credentials in this namespace (or the vault secret name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_secret: Option<String>,
    /// Runner group name; empty means the default group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group: Option<String>,
    /// Scale set name on the service; defaults to the resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_scale_set_name: Option<String>,
    /// Extra labels sent only when the scale set is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_scale_set_labels: Option<Vec<String>>,
    /// Proxy for the controller, the listener and the runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Custom CA for the GitHub server.
    #[serde(
        default,
        rename = "githubServerTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_server_tls: Option<TlsConfig>,
    /// Resolve the credentials from a vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_config: Option<VaultConfig>,
    /// Runner pod template; it must contain a container named `runner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::markers::pod_template_spec::<Option<PodTemplateSpec>>")]
    pub template: Option<PodTemplateSpec>,
    /// Labels and annotations for the AutoscalingListener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_listener: Option<ResourceMeta>,
    /// Listener metrics customisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metrics: Option<MetricsConfig>,
    /// Overlay merged onto the listener pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::markers::pod_template_spec::<Option<PodTemplateSpec>>")]
    pub listener_template: Option<PodTemplateSpec>,
    /// Metadata for the listener ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_service_account_metadata: Option<ResourceMeta>,
    /// Metadata for the listener Role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_role_metadata: Option<ResourceMeta>,
    /// Metadata for the listener RoleBinding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_role_binding_metadata: Option<ResourceMeta>,
    /// Metadata for the listener config Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_config_secret_metadata: Option<ResourceMeta>,
    /// Metadata for the EphemeralRunnerSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_set_metadata: Option<ResourceMeta>,
    /// Metadata for every newly created EphemeralRunner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_metadata: Option<ResourceMeta>,
    /// Metadata for every per-runner JIT Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_config_secret_metadata: Option<ResourceMeta>,
    /// Upper bound of runners; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_runners: Option<i32>,
    /// Lower bound of idle runners; absent means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_runners: Option<i32>,
}

impl AutoscalingRunnerSetSpec {
    /// The spec without `minRunners` and `maxRunners`, which reach the listener in place
    /// (docs/architecture.md#runner-bounds).
    pub fn without_bounds(&self) -> Self {
        Self {
            min_runners: None,
            max_runners: None,
            ..self.clone()
        }
    }
}

/// Observed state of a runner scale set. Every field is always serialised.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingRunnerSetStatus {
    /// Copy of the EphemeralRunnerSet `currentReplicas`.
    #[serde(default)]
    pub current_runners: i32,
    /// `Pending`, `Running` or `Outdated`.
    #[serde(default)]
    pub phase: String,
    /// Pending runners.
    #[serde(default)]
    pub pending_ephemeral_runners: i32,
    /// Running runners.
    #[serde(default)]
    pub running_ephemeral_runners: i32,
    /// Failed runners.
    #[serde(default)]
    pub failed_ephemeral_runners: i32,
    /// Conditions naming configuration problems (an arc-rs addition; ARC has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
}

/// Longest AutoscalingRunnerSet name the CRD admits: `scaleset_core::naming::MAX_ARS_NAME`
/// (this module does not depend on scaleset-core; a test checks that both agree).
pub const MAX_NAME: usize = 45;

/// The admission rule on the AutoscalingRunnerSet's name: at most [`MAX_NAME`] characters,
/// checked when the object is created
/// (`optionalOldSelf`), so an object stored before the rule can still be updated and deleted.
/// ARC refuses longer names in its chart, and its controller cannot run them either: the
/// listener name `<name>-<h8>-listener` is written to a label value, at most 63 characters.
pub fn name_rule() -> ValidationRule {
    let max = MAX_NAME;
    ValidationRule {
        rule: format!("oldSelf.hasValue() || self.metadata.name.size() <= {max}"),
        optional_old_self: Some(true),
        message: Some(format!(
            "metadata.name may have at most {max} characters, so that the listener name <name>-<hash>-listener fits in a 63-character label value: choose a shorter name"
        )),
        message_expression: None,
        reason: Some("FieldValueInvalid".into()),
        field_path: None,
    }
}
