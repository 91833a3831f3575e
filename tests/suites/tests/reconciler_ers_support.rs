//! Shared harness of the EphemeralRunnerSet / EphemeralRunner reconciler suites, included by
//! them with `#[path]`; as a test target of its own it has nothing to run.
//!
//! The harness runs both controllers against the shared real kube-apiserver, confined to a
//! fresh namespace, and plays the kubelet by writing pod status through the status
//! subresource. The Actions service is [`FakeService`], an in-memory registry of runners
//! behind the reconcilers' `Connector` seam (the actions-client connector to the emulator was
//! not available when these suites were written).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_reconcilers::controllers::{ephemeral_runner, ephemeral_runner_set, runner_watch};
use k8s_reconcilers::crd::{EphemeralRunner, EphemeralRunnerSet};
use k8s_reconcilers::github::{
    ActionsService, Connector, GithubClients, JitConfig, NewScaleSet, RunnerGroup, RunnerInfo,
    ScaleSet, ScaleSetPatch, ServiceConfig, ServiceError, ServiceErrorKind,
};
use k8s_reconcilers::metrics::Metrics;
use k8s_reconcilers::{Context, ManagerOptions};
use kube::api::{Api, Patch, PatchParams, PostParams};
use scaleset_core::autoscaling_runner_set::DEFAULT_RUNNER_GROUP_ID;
use scaleset_core::registrations::ListedRunner;
use serde_json::json;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, ServiceError>> + Send + 'a>>;

/// Scale set id every runner of these suites belongs to.
pub const SCALE_SET_ID: i64 = 42;

#[derive(Default)]
struct Registry {
    next_id: i64,
    runners: BTreeMap<i64, RunnerInfo>,
    busy: BTreeSet<i64>,
    removed: Vec<i64>,
    remove_calls: usize,
}

/// An in-memory Actions service: runner registrations by JIT config (listed as GitHub's REST API
/// lists them, with their scale set's group and label), `RunnerExists` on a taken name,
/// `JobStillRunning` for runners marked busy, 404 for unknown runners.
#[derive(Clone, Default)]
pub struct FakeService {
    registry: Arc<Mutex<Registry>>,
}

impl FakeService {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap()
    }

    /// Registered runners by name.
    pub fn runners(&self) -> BTreeMap<String, i64> {
        self.lock()
            .runners
            .values()
            .map(|r| (r.name.clone(), r.id))
            .collect()
    }

    /// Runner ids removed so far, in order.
    pub fn removed(&self) -> Vec<i64> {
        self.lock().removed.clone()
    }

    /// `RemoveRunner` calls so far, whatever they answered.
    pub fn remove_calls(&self) -> usize {
        self.lock().remove_calls
    }

    /// Marks a runner as running a job (`RemoveRunner` answers `JobStillRunning`).
    pub fn set_busy(&self, id: i64, busy: bool) {
        let mut r = self.lock();
        if busy {
            r.busy.insert(id);
        } else {
            r.busy.remove(&id);
        }
    }

    /// The job of runner `id` ends: as the service does for an ephemeral runner, the
    /// registration goes with it.
    pub fn job_finished(&self, id: i64) {
        let mut r = self.lock();
        r.busy.remove(&id);
        r.runners.remove(&id);
    }

    /// Registers a runner directly (as if a JIT config was issued and never recorded).
    pub fn register(&self, name: &str, scale_set_id: i64) -> i64 {
        let mut r = self.lock();
        r.next_id += 1;
        let id = 1000 + r.next_id;
        r.runners.insert(
            id,
            RunnerInfo {
                id,
                name: name.to_owned(),
                runner_scale_set_id: scale_set_id,
            },
        );
        id
    }

    /// Removes registration `id`, telling whether it existed; a busy one is `JobStillRunning`.
    fn take(&self, id: i64, operation: &'static str) -> Result<bool, ServiceError> {
        let mut r = self.lock();
        if r.busy.contains(&id) {
            return Err(ServiceError::new(
                ServiceErrorKind::JobStillRunning,
                operation,
                "JobStillRunningException",
            ));
        }
        let existed = r.runners.remove(&id).is_some();
        if existed {
            r.removed.push(id);
        }
        Ok(existed)
    }
}

/// Every scale set exists, in the default runner group, named and labelled `scale-set-<id>`.
fn scale_set_name(id: i64) -> String {
    format!("scale-set-{id}")
}

fn unsupported<T>(operation: &'static str) -> Result<T, ServiceError> {
    Err(ServiceError::new(
        ServiceErrorKind::Invalid,
        operation,
        "not used by the runner controllers",
    ))
}

impl ActionsService for FakeService {
    fn get_runner_group_by_name<'a>(&'a self, _: &'a str) -> Fut<'a, RunnerGroup> {
        Box::pin(async { unsupported("GetRunnerGroupByName") })
    }
    fn get_runner_scale_set<'a>(&'a self, _: i64, _: &'a str) -> Fut<'a, Option<ScaleSet>> {
        Box::pin(async { unsupported("GetRunnerScaleSet") })
    }
    fn get_runner_scale_set_by_id(&self, id: i64) -> Fut<'_, Option<ScaleSet>> {
        let name = scale_set_name(id);
        Box::pin(async move {
            Ok(Some(ScaleSet {
                id,
                labels: vec![name.clone()],
                name,
                runner_group_id: DEFAULT_RUNNER_GROUP_ID,
                runner_group_name: "Default".into(),
            }))
        })
    }
    fn create_runner_scale_set(&self, _: NewScaleSet) -> Fut<'_, ScaleSet> {
        Box::pin(async { unsupported("CreateRunnerScaleSet") })
    }
    fn update_runner_scale_set(&self, _: i64, _: ScaleSetPatch) -> Fut<'_, ScaleSet> {
        Box::pin(async { unsupported("UpdateRunnerScaleSet") })
    }
    fn delete_runner_scale_set(&self, _: i64) -> Fut<'_, ()> {
        Box::pin(async { unsupported("DeleteRunnerScaleSet") })
    }
    fn generate_jit_runner_config<'a>(
        &'a self,
        scale_set_id: i64,
        name: &'a str,
        _work_folder: &'a str,
    ) -> Fut<'a, JitConfig> {
        Box::pin(async move {
            if self.lock().runners.values().any(|r| r.name == name) {
                return Err(ServiceError::new(
                    ServiceErrorKind::RunnerExists,
                    "GenerateJitRunnerConfig",
                    format!("AgentExistsException: runner {name} exists"),
                ));
            }
            let id = self.register(name, scale_set_id);
            Ok(JitConfig {
                runner: RunnerInfo {
                    id,
                    name: name.to_owned(),
                    runner_scale_set_id: scale_set_id,
                },
                encoded_jit_config: format!("jit-for-{name}-{id}").into(),
            })
        })
    }
    fn get_runner_by_name<'a>(&'a self, name: &'a str) -> Fut<'a, Option<RunnerInfo>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .runners
                .values()
                .find(|r| r.name == name)
                .cloned())
        })
    }
    fn remove_runner(&self, id: i64) -> Fut<'_, ()> {
        Box::pin(async move {
            self.lock().remove_calls += 1;
            match self.take(id, "RemoveRunner")? {
                true => Ok(()),
                false => Err(ServiceError::new(
                    ServiceErrorKind::NotFound,
                    "RemoveRunner",
                    "404",
                )),
            }
        })
    }
    fn list_self_hosted_runners(&self) -> Fut<'_, Vec<ListedRunner>> {
        Box::pin(async move {
            let r = self.lock();
            Ok(r.runners
                .values()
                .map(|x| ListedRunner {
                    id: x.id,
                    name: x.name.clone(),
                    busy: r.busy.contains(&x.id),
                    labels: vec![scale_set_name(x.runner_scale_set_id)],
                    runner_group_id: Some(DEFAULT_RUNNER_GROUP_ID),
                })
                .collect())
        })
    }
    fn delete_self_hosted_runner(&self, id: i64) -> Fut<'_, ()> {
        // GitHub's 404 counts as deleted.
        Box::pin(async move { self.take(id, "DeleteSelfHostedRunner").map(drop) })
    }
}

struct FakeConnector(FakeService);

impl Connector for FakeConnector {
    fn connect(&self, _: ServiceConfig) -> Fut<'_, Arc<dyn ActionsService>> {
        let service: Arc<dyn ActionsService> = Arc::new(self.0.clone());
        Box::pin(async move { Ok(service) })
    }
}

/// Both runner controllers running in one namespace of the shared control plane.
pub struct Harness {
    pub client: kube::Client,
    pub ns: testbed::TestNamespace,
    pub service: FakeService,
    /// The metrics both controllers update.
    pub metrics: Arc<Metrics>,
    options: Arc<ManagerOptions>,
    github: Arc<GithubClients>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Harness {
    /// Starts the controllers with test timings (20 ms pod backoff, `max_failures` budget).
    pub async fn start(prefix: &str, max_failures: u32) -> anyhow::Result<Self> {
        Self::start_with(prefix, max_failures, |_| {}).await
    }

    /// Like [`Harness::start`], with a chance to adjust the options.
    pub async fn start_with(
        prefix: &str,
        max_failures: u32,
        adjust: impl FnOnce(&mut ManagerOptions),
    ) -> anyhow::Result<Self> {
        // With the controller-manager: its garbage collector deletes a removed runner's pod and
        // JIT Secret, as in a cluster.
        let cp = testbed::ControlPlane::shared_with_scheduling().await?;
        let client = cp.client();
        k8s_reconcilers::crd::install(&client, Duration::from_secs(60)).await?;
        let ns = cp.test_namespace(prefix).await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
        let creds: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds"},
            "stringData": {"github_token": "ghp_fake"}
        }))?;
        secrets.create(&PostParams::default(), &creds).await?;
        let service = FakeService::default();
        let connector: Arc<dyn Connector> = Arc::new(FakeConnector(service.clone()));
        let mut options = ManagerOptions::new(ns.name(), "listener:test", connector.clone());
        options.watch_namespace = Some(ns.name().to_owned());
        adjust(&mut options);
        let options = Arc::new(options);
        let github = Arc::new(GithubClients::new(connector));
        let metrics = Arc::new(Metrics::default());
        let ers_ctx = Context::new(
            ephemeral_runner_set::CONTROLLER,
            client.clone(),
            options.clone(),
            github.clone(),
            metrics.clone(),
        );
        let er_ctx = Context::new(
            ephemeral_runner::CONTROLLER,
            client.clone(),
            options.clone(),
            github.clone(),
            metrics.clone(),
        );
        let retry = scaleset_core::ephemeral_runner::RetryPolicy {
            max_failures,
            backoff: vec![Duration::from_millis(20)],
            ..Default::default()
        };
        let tasks = vec![tokio::spawn(async move {
            let _ = runner_watch::run(
                ers_ctx,
                Default::default(),
                er_ctx,
                ephemeral_runner::Settings { retry },
            )
            .await;
        })];
        Ok(Self {
            client,
            ns,
            service,
            metrics,
            options,
            github,
            tasks,
        })
    }

    /// A further context over the same client, options and service (for the sweep).
    pub fn context(&self, name: &'static str) -> Arc<Context> {
        Context::new(
            name,
            self.client.clone(),
            self.options.clone(),
            self.github.clone(),
            Arc::new(Metrics::default()),
        )
    }

    pub fn runners(&self) -> Api<EphemeralRunner> {
        Api::namespaced(self.client.clone(), self.ns.name())
    }

    pub fn sets(&self) -> Api<EphemeralRunnerSet> {
        Api::namespaced(self.client.clone(), self.ns.name())
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), self.ns.name())
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), self.ns.name())
    }

    /// The EphemeralRunner spec used by the suites: PAT secret `creds`, one `runner` container.
    pub fn runner_spec(&self) -> serde_json::Value {
        json!({
            "githubConfigUrl": "https://github.com/org/repo",
            "githubConfigSecret": "creds",
            "runnerScaleSetId": SCALE_SET_ID,
            "metadata": {"labels": {"from-template": "yes"}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "runner",
                    "image": "ghcr.io/actions/actions-runner:latest",
                    "command": ["/home/runner/run.sh"]
                }]
            }
        })
    }

    /// Plays the kubelet: writes the pod's status once the controller has created the pod (a
    /// runner is registered before its pod exists, and a busy machine widens that gap).
    pub async fn set_pod_status(
        &self,
        name: &str,
        status: serde_json::Value,
    ) -> anyhow::Result<Pod> {
        eventually(&format!("pod {name}"), WAIT, || async {
            Ok(self.pods().get_opt(name).await?.map(|_| ()))
        })
        .await?;
        Ok(self
            .pods()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await?)
    }

    /// Plays the listener: marks the runner busy with a job.
    pub async fn assign_job(&self, runner: &str) -> anyhow::Result<()> {
        let patch = json!({"status": {"jobId": "job-1", "jobRequestId": 7, "jobRepositoryName": "org/repo"}});
        self.runners()
            .patch_status(runner, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// A runner container status in the given state.
pub fn runner_container(state: serde_json::Value) -> serde_json::Value {
    json!({
        "name": "runner",
        "image": "ghcr.io/actions/actions-runner:latest",
        "imageID": "",
        "ready": state.get("running").is_some(),
        "restartCount": 0,
        "state": state
    })
}

/// A running, ready runner pod status.
pub fn running_status() -> serde_json::Value {
    json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
        "containerStatuses": [runner_container(json!({"running": {"startedAt": "2024-01-01T00:00:00Z"}}))]
    })
}

/// A failed pod whose runner container exited with `code`.
pub fn exited_status(code: i32) -> serde_json::Value {
    json!({
        "phase": "Failed",
        "containerStatuses": [runner_container(json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}))]
    })
}

pub use testbed::eventually;

/// Generous limit for a condition the controllers should reach.
pub const WAIT: Duration = Duration::from_secs(60);
