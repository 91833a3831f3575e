//! Blind JSON merge patches on the EphemeralRunnerSet and EphemeralRunner status: the only
//! Kubernetes calls the listener makes (its Role grants `patch` and nothing else).
//!
//! A patch is built as ARC's listener builds it (`jsonpatch.CreateMergePatch`): the difference
//! between two objects of the CRD type, so it can only name fields the CRD types have. The
//! answers are read as metadata only: the listener needs nothing from them, and reading the
//! whole objects would link the deserializers of the CRD types and their pod templates; of the
//! EphemeralRunnerSet's answer also its `status.observedPatchID` ([`PatchedSet`]).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use actions_client::JobStarted;
use k8s_reconcilers::crd::{EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerStatus};
use kube::Resource;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why a Kubernetes patch failed.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The object does not exist (404).
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Kind of the object.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Any other failure (RBAC, transport, server).
    #[error("patching {kind} {namespace}/{name}: {message}")]
    Failed {
        /// Kind of the object.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        message: String,
    },
}

/// A JSON merge patch (RFC 7386) of a `K`.
pub struct MergePatch<K> {
    body: Value,
    kind: PhantomData<fn() -> K>,
}

impl<K: Serialize> MergePatch<K> {
    /// The patch that turns `from` into `to`: the keys whose values differ, with `null` for the
    /// keys `to` omits.
    pub fn between(from: &K, to: &K) -> Result<Self, serde_json::Error> {
        Ok(MergePatch {
            body: difference(&serde_json::to_value(from)?, &serde_json::to_value(to)?),
            kind: PhantomData,
        })
    }
}

impl<K> fmt::Debug for MergePatch<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.body, f)
    }
}

impl<K> fmt::Display for MergePatch<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.body, f)
    }
}

impl<K> Serialize for MergePatch<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.body.serialize(s)
    }
}

fn difference(from: &Value, to: &Value) -> Value {
    let (Value::Object(from), Value::Object(to)) = (from, to) else {
        return to.clone();
    };
    let mut patch: Map<String, Value> = from
        .keys()
        .filter(|key| !to.contains_key(*key))
        .map(|key| (key.clone(), Value::Null))
        .collect();
    for (key, new) in to {
        match from.get(key) {
            Some(old) if old == new => {}
            Some(old) => {
                patch.insert(key.clone(), difference(old, new));
            }
            None => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    Value::Object(patch)
}

/// What the loop writes to Kubernetes.
pub trait RunnerSetPatcher: Send + Sync + 'static {
    /// Merge-patches the EphemeralRunnerSet; returns the `status.observedPatchID` of the
    /// patched object, if it has one.
    fn patch_runner_set(
        &self,
        patch: &MergePatch<EphemeralRunnerSet>,
    ) -> impl Future<Output = Result<Option<i64>, PatchError>> + Send;
    /// Merge-patches an EphemeralRunner's status.
    fn patch_runner_status(
        &self,
        runner_name: &str,
        patch: &MergePatch<EphemeralRunner>,
    ) -> impl Future<Output = Result<(), PatchError>> + Send;
}

/// The status patch ARC's listener sends on JobStarted: the job's fields that are set.
pub fn runner_status_patch(
    started: &JobStarted,
) -> Result<MergePatch<EphemeralRunner>, serde_json::Error> {
    let job = &started.job;
    let repository = if job.owner_name.is_empty() && job.repository_name.is_empty() {
        String::new()
    } else {
        format!("{}/{}", job.owner_name, job.repository_name)
    };
    let runner = |status| EphemeralRunner {
        status: Some(status),
        ..Default::default()
    };
    let with_job = EphemeralRunnerStatus {
        job_display_name: job.job_display_name.clone(),
        job_id: job.job_id.clone(),
        job_repository_name: repository,
        job_request_id: job.runner_request_id,
        job_workflow_ref: job.job_workflow_ref.clone(),
        workflow_run_id: job.workflow_run_id,
        ..Default::default()
    };
    MergePatch::between(&runner(EphemeralRunnerStatus::default()), &runner(with_job))
}

/// What the listener reads of the EphemeralRunnerSet a patch returns: its metadata and its
/// status, for the `patchID` the set controller last recorded as acted on (read leniently: an
/// answer the patch succeeded with is never refused for its status).
#[derive(Clone, Debug, Deserialize)]
pub struct PatchedSet {
    metadata: ObjectMeta,
    #[serde(default)]
    status: Option<Value>,
}

/// Implements [`Resource`] for `$projection`, a struct with a `metadata: ObjectMeta` field that
/// reads part of the namespaced kind `$kind`, so that `Api` serves it under that kind's URL.
macro_rules! projection_of {
    ($projection:ty, $kind:ty) => {
        impl kube::Resource for $projection {
            type DynamicType = ();
            type Scope = kube::core::NamespaceResourceScope;

            fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::kind(dt)
            }
            fn group(dt: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::group(dt)
            }
            fn version(dt: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::version(dt)
            }
            fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
                <$kind as kube::Resource>::plural(dt)
            }
            fn meta(&self) -> &kube::api::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use projection_of;

projection_of!(PatchedSet, EphemeralRunnerSet);

/// [`RunnerSetPatcher`] over a kube client.
#[derive(Clone)]
pub struct KubePatcher {
    runner_sets: Api<PatchedSet>,
    runners: Api<PartialObjectMeta<EphemeralRunner>>,
    namespace: String,
    runner_set_name: String,
}

impl KubePatcher {
    /// Patches `namespace/runner_set_name` and the EphemeralRunners of `namespace`.
    pub fn new(client: kube::Client, namespace: &str, runner_set_name: &str) -> Self {
        KubePatcher {
            runner_sets: Api::namespaced(client.clone(), namespace),
            runners: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            runner_set_name: runner_set_name.to_string(),
        }
    }

    fn error<K: Resource<DynamicType = ()>>(&self, name: &str, e: kube::Error) -> PatchError {
        let kind = K::kind(&()).into_owned();
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
    async fn patch_runner_set(
        &self,
        patch: &MergePatch<EphemeralRunnerSet>,
    ) -> Result<Option<i64>, PatchError> {
        let set = self
            .runner_sets
            .patch(
                &self.runner_set_name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(|e| self.error::<EphemeralRunnerSet>(&self.runner_set_name, e))?;
        Ok(set
            .status
            .and_then(|s| s.get("observedPatchID").and_then(Value::as_i64)))
    }

    async fn patch_runner_status(
        &self,
        runner_name: &str,
        patch: &MergePatch<EphemeralRunner>,
    ) -> Result<(), PatchError> {
        self.runners
            .patch_status(runner_name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| self.error::<EphemeralRunner>(runner_name, e))?;
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
    fn difference_is_the_merge_patch_from_one_document_to_the_other() {
        let from = serde_json::json!({"gone": 1, "same": {"a": 1}, "nested": {"a": 1, "b": 2}, "list": [1]});
        let to = serde_json::json!({"same": {"a": 1}, "nested": {"a": 1, "b": 3}, "list": [2], "new": "x"});
        assert_eq!(
            difference(&from, &to),
            serde_json::json!({"gone": null, "nested": {"b": 3}, "list": [2], "new": "x"})
        );
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
        let patch = runner_status_patch(&job).expect("a patch");
        assert_eq!(
            patch.to_string(),
            r#"{"status":{"jobId":"77aa","jobRepositoryName":"octo-org/app","jobRequestId":998,"workflowRunId":554}}"#
        );
    }
}
