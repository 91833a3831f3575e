//! Blind JSON merge patches on the EphemeralRunnerSet and EphemeralRunner status: the only
//! Kubernetes calls the listener makes (its Role grants `patch` and nothing else).

use std::future::Future;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;

use actions_client::JobStarted;

/// Why a Kubernetes patch failed.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The object does not exist (404).
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Kind of the object.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Any other failure (RBAC, transport, server).
    #[error("patching {kind} {namespace}/{name}: {message}")]
    Failed {
        /// Kind of the object.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        message: String,
    },
}

/// What the loop writes to Kubernetes.
pub trait RunnerSetPatcher: Send + Sync + 'static {
    /// Merge-patches the EphemeralRunnerSet; returns the resulting `spec.replicas`.
    fn patch_runner_set(
        &self,
        body: serde_json::Value,
    ) -> impl Future<Output = Result<i64, PatchError>> + Send;
    /// Merge-patches an EphemeralRunner's status.
    fn patch_runner_status(
        &self,
        runner_name: &str,
        body: serde_json::Value,
    ) -> impl Future<Output = Result<(), PatchError>> + Send;
}

/// The status patch ARC's listener sends on JobStarted (empty fields omitted).
pub fn runner_status_patch(started: &JobStarted) -> serde_json::Value {
    let job = &started.job;
    let mut status = serde_json::Map::new();
    if !job.job_display_name.is_empty() {
        status.insert("jobDisplayName".into(), job.job_display_name.clone().into());
    }
    if !job.job_id.is_empty() {
        status.insert("jobId".into(), job.job_id.clone().into());
    }
    if !job.owner_name.is_empty() || !job.repository_name.is_empty() {
        status.insert(
            "jobRepositoryName".into(),
            format!("{}/{}", job.owner_name, job.repository_name).into(),
        );
    }
    if job.runner_request_id != 0 {
        status.insert("jobRequestId".into(), job.runner_request_id.into());
    }
    if !job.job_workflow_ref.is_empty() {
        status.insert("jobWorkflowRef".into(), job.job_workflow_ref.clone().into());
    }
    if job.workflow_run_id != 0 {
        status.insert("workflowRunId".into(), job.workflow_run_id.into());
    }
    serde_json::json!({ "status": status })
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.github.com", "v1alpha1", kind),
        plural,
    )
}

/// [`RunnerSetPatcher`] over a kube client, with `DynamicObject` so the listener does not
/// depend on the CRD types.
#[derive(Clone)]
pub struct KubePatcher {
    runner_sets: Api<DynamicObject>,
    runners: Api<DynamicObject>,
    namespace: String,
    runner_set_name: String,
}

impl KubePatcher {
    /// Patches `namespace/runner_set_name` and the EphemeralRunners of `namespace`.
    pub fn new(client: kube::Client, namespace: &str, runner_set_name: &str) -> Self {
        let ers = resource("EphemeralRunnerSet", "ephemeralrunnersets");
        let er = resource("EphemeralRunner", "ephemeralrunners");
        KubePatcher {
            runner_sets: Api::namespaced_with(client.clone(), namespace, &ers),
            runners: Api::namespaced_with(client, namespace, &er),
            namespace: namespace.to_string(),
            runner_set_name: runner_set_name.to_string(),
        }
    }

    fn error(&self, kind: &'static str, name: &str, e: kube::Error) -> PatchError {
        match e {
            kube::Error::Api(status) if object_missing(&status, name) => PatchError::NotFound {
                kind,
                namespace: self.namespace.clone(),
                name: name.to_string(),
            },
            other => PatchError::Failed {
                kind,
                namespace: self.namespace.clone(),
                name: name.to_string(),
                message: other.to_string(),
            },
        }
    }
}

/// Whether a 404 says the object `name` is missing, not that the API server does not serve the
/// resource (yet: right after an API-server restart the CRDs' endpoints come back a moment after
/// the server answers), which is worth retrying.
fn object_missing(status: &kube::core::Status, name: &str) -> bool {
    status.code == 404
        && (status.details.as_ref().is_some_and(|d| d.name == name)
            || status.message.contains(&format!("\"{name}\"")))
}

impl RunnerSetPatcher for KubePatcher {
    async fn patch_runner_set(&self, body: serde_json::Value) -> Result<i64, PatchError> {
        let object = self
            .runner_sets
            .patch(
                &self.runner_set_name,
                &PatchParams::default(),
                &Patch::Merge(body),
            )
            .await
            .map_err(|e| self.error("EphemeralRunnerSet", &self.runner_set_name, e))?;
        Ok(object
            .data
            .pointer("/spec/replicas")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0))
    }

    async fn patch_runner_status(
        &self,
        runner_name: &str,
        body: serde_json::Value,
    ) -> Result<(), PatchError> {
        self.runners
            .patch_status(runner_name, &PatchParams::default(), &Patch::Merge(body))
            .await
            .map_err(|e| self.error("EphemeralRunner", runner_name, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actions_client::JobInfo;

    #[test]
    fn only_a_404_naming_the_object_means_it_is_missing() {
        // As the API server sends them.
        let status = |message: &str, details: Option<&str>| -> kube::core::Status {
            let mut body = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": message, "reason": "NotFound", "code": 404,
            });
            if let Some(name) = details {
                body["details"] = serde_json::json!({
                    "name": name, "group": "actions.github.com", "kind": "ephemeralrunners",
                });
            }
            serde_json::from_value(body).expect("a Status")
        };
        let gone = r#"ephemeralrunners.actions.github.com "runner-a" not found"#;
        assert!(object_missing(&status(gone, Some("runner-a")), "runner-a"));
        assert!(object_missing(&status(gone, None), "runner-a"));
        let unserved = "the server could not find the requested resource";
        assert!(!object_missing(&status(unserved, None), "runner-a"));
        assert!(!object_missing(&status(unserved, Some("")), "runner-a"));
    }

    #[test]
    fn status_patch_omits_empty_fields() {
        let job = JobStarted {
            job: JobInfo {
                runner_request_id: 998,
                owner_name: "octo-org".into(),
                repository_name: "app".into(),
                job_id: "77aa".into(),
                workflow_run_id: 554,
                ..Default::default()
            },
            runner_name: "runner-a".into(),
            ..Default::default()
        };
        assert_eq!(
            runner_status_patch(&job).to_string(),
            r#"{"status":{"jobId":"77aa","jobRepositoryName":"octo-org/app","jobRequestId":998,"workflowRunId":554}}"#
        );
    }
}
