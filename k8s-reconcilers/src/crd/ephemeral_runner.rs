//! `EphemeralRunner`: one per runner pod (docs/architecture.md#crds).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ProxyConfig, ResourceMeta, TlsConfig, VaultConfig};

/// One runner: its service registration settings and its pod template.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "EphemeralRunner",
    namespaced,
    status = "EphemeralRunnerStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "EphemeralRunner is the Schema for the ephemeralrunners API",
    printcolumn(
        name = "GitHub Config URL",
        type_ = "string",
        json_path = ".spec.githubConfigUrl"
    ),
    printcolumn(name = "RunnerId", type_ = "number", json_path = ".status.runnerId"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "JobRepository",
        type_ = "string",
        json_path = ".status.jobRepositoryName"
    ),
    printcolumn(
        name = "JobWorkflowRef",
        type_ = "string",
        json_path = ".status.jobWorkflowRef"
    ),
    printcolumn(
        name = "WorkflowRunId",
        type_ = "number",
        json_path = ".status.workflowRunId"
    ),
    printcolumn(
        name = "JobDisplayName",
        type_ = "string",
        json_path = ".status.jobDisplayName"
    ),
    printcolumn(name = "JobId", type_ = "string", json_path = ".status.jobId"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", remote = "Self")]
pub struct EphemeralRunnerSpec {
    /// GitHub config URL.
    #[serde(default)]
    pub github_config_url: String,
    /// Credentials Secret name, resolved in the runner's namespace.
    #[serde(default)]
    pub github_config_secret: String,
    /// Custom CA, used by the controller only.
    #[serde(
        default,
        rename = "githubServerTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_server_tls: Option<TlsConfig>,
    /// Scale set that issues the JIT config.
    #[serde(default)]
    pub runner_scale_set_id: i64,
    /// Proxy settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// Name of the set-level proxy Secret referenced from env vars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<String>,
    /// Vault settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_config: Option<VaultConfig>,
    /// Metadata for the JIT Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_config_secret_metadata: Option<ResourceMeta>,
    /// The runner pod template, inlined (`metadata` and `spec` at this level).
    #[serde(flatten)]
    #[schemars(schema_with = "super::markers::pod_template_spec::<PodTemplateSpec>")]
    pub pod_template: PodTemplateSpec,
}

/// Observed state of a runner. `ready` is always serialised; the rest only when set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerStatus {
    /// Status of the newest `PodReady` condition.
    #[serde(default)]
    pub ready: bool,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Outdated`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// Pod reason, or `InvalidPod` / `Outdated`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Pod message or error text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Runner id assigned by the service.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runner_id: i64,
    /// Runner name assigned by the service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runner_name: String,
    /// One entry per failed pod: pod UID to RFC 3339 timestamp.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("additionalProperties" = {"type": "string", "format": "date-time"}))]
    pub failures: BTreeMap<String, String>,
    /// Runner request id (written by the listener).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub job_request_id: i64,
    /// Job id; non-empty means the runner is busy (written by the listener).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_id: String,
    /// `owner/repo` of the job (written by the listener).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_repository_name: String,
    /// Workflow ref of the job (written by the listener).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_workflow_ref: String,
    /// Workflow run id (written by the listener).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workflow_run_id: i64,
    /// Job display name (written by the listener).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_display_name: String,
    /// The `Ready` condition: set to `False` with the reason and the message (field, value,
    /// fix) when a reconcile fails on something the user can fix, back to `True` once one
    /// succeeds (an arc-rs addition; ARC has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
