//! `AutoscalingListener`: one per runner scale set, in the controller namespace
//! (docs/architecture.md#crds).

use k8s_openapi::api::core::v1::{LocalObjectReference, PodTemplateSpec};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MetricsConfig, ProxyConfig, ResourceMeta, TlsConfig, VaultConfig};

/// Desired state of a listener; every field is filled in by the AutoscalingRunnerSet controller.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "AutoscalingListener",
    namespaced,
    status = "AutoscalingListenerStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "AutoscalingListener is the Schema for the autoscalinglisteners API",
    printcolumn(
        name = "GitHub Configure URL",
        type_ = "string",
        json_path = ".spec.githubConfigUrl"
    ),
    printcolumn(
        name = "AutoscalingRunnerSet Namespace",
        type_ = "string",
        json_path = ".spec.autoscalingRunnerSetNamespace"
    ),
    printcolumn(
        name = "AutoscalingRunnerSet Name",
        type_ = "string",
        json_path = ".spec.autoscalingRunnerSetName"
    )
)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct AutoscalingListenerSpec {
    /// The scale set's GitHub config URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_url: Option<String>,
    /// The scale set's credentials Secret name (the vault lookup key with a vault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_secret: Option<String>,
    /// Service-side scale set id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_scale_set_id: Option<i64>,
    /// Namespace of the owning AutoscalingRunnerSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_runner_set_namespace: Option<String>,
    /// Name of the owning AutoscalingRunnerSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_runner_set_name: Option<String>,
    /// Name of the EphemeralRunnerSet the listener patches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_set_name: Option<String>,
    /// Upper bound of runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_runners: Option<i32>,
    /// Lower bound of idle runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_runners: Option<i32>,
    /// Listener image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull secrets for the listener pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        schema_with = "super::markers::local_object_references::<Option<Vec<LocalObjectReference>>>"
    )]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Proxy settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Custom CA for the GitHub server.
    #[serde(
        default,
        rename = "githubServerTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_server_tls: Option<TlsConfig>,
    /// Vault settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_config: Option<VaultConfig>,
    /// Listener metrics customisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// Overlay merged onto the listener pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::markers::pod_template_spec::<Option<PodTemplateSpec>>")]
    pub template: Option<PodTemplateSpec>,
    /// Metadata for the config Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret_metadata: Option<ResourceMeta>,
    /// Metadata for the ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_metadata: Option<ResourceMeta>,
    /// Metadata for the Role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_metadata: Option<ResourceMeta>,
    /// Metadata for the RoleBinding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_binding_metadata: Option<ResourceMeta>,
}

impl AutoscalingListenerSpec {
    /// The spec without `minRunners` and `maxRunners`: what a listener pod is built from. The
    /// bounds change in place, and the listener follows them without a restart
    /// (docs/architecture.md#runner-bounds).
    pub fn without_bounds(&self) -> Self {
        Self {
            min_runners: None,
            max_runners: None,
            ..self.clone()
        }
    }
}

/// Observed state of a listener: ARC's is always empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AutoscalingListenerStatus {
    /// The `Ready` condition: set to `False` with the reason and the message (field, value,
    /// fix) when a reconcile fails on something the user can fix, back to `True` once one
    /// succeeds (an arc-rs addition; ARC has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
}
