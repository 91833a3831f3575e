//! Shared set-up for the reconciler suites: CRDs on the test-bed API server, a controller
//! namespace and a runner namespace per test, the controllers running in-process against the
//! in-process Actions service, and polling helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_reconcilers::crd::{self, AutoscalingRunnerSet};
use k8s_reconcilers::github::memory::MemoryService;
use k8s_reconcilers::{ManagerOptions, crd::AutoscalingRunnerSetSpec};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;
use testbed::{ControlPlane, TestNamespace};

/// Generous wait for controller convergence.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// A running controller set for one test.
pub struct Harness {
    pub client: kube::Client,
    pub controller_ns: TestNamespace,
    pub runner_ns: TestNamespace,
    pub service: MemoryService,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    /// Starts the controllers, watching only this test's runner namespace.
    pub async fn start(prefix: &str) -> anyhow::Result<Self> {
        Self::start_with(prefix, |_| {}).await
    }

    /// Like [`Harness::start`], with a chance to adjust the options.
    pub async fn start_with(
        prefix: &str,
        adjust: impl FnOnce(&mut ManagerOptions),
    ) -> anyhow::Result<Self> {
        let cp = ControlPlane::shared().await?;
        let client = cp.client();
        crd::install(&client, Duration::from_secs(60)).await?;
        let controller_ns = cp.test_namespace(&format!("{prefix}-ctrl")).await?;
        let runner_ns = cp.test_namespace(&format!("{prefix}-run")).await?;
        let service = MemoryService::new();
        let mut options = ManagerOptions::new(
            controller_ns.name(),
            "ghcr.io/arc-rs/controller:test",
            service.connector(),
        );
        options.watch_namespace = Some(runner_ns.name().to_owned());
        options.listener_metrics_addr = ":8080".into();
        options.listener_metrics_endpoint = "/metrics".into();
        adjust(&mut options);
        let task = tokio::spawn(k8s_reconcilers::run(client.clone(), options));
        Ok(Self {
            client,
            controller_ns,
            runner_ns,
            service,
            task,
        })
    }

    pub fn ns(&self) -> &str {
        self.runner_ns.name()
    }

    pub fn ctrl(&self) -> &str {
        self.controller_ns.name()
    }

    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates the GitHub credentials Secret `name` with a PAT.
    pub async fn pat_secret(&self, name: &str, token: &str) -> anyhow::Result<()> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "github_token".to_owned(),
                ByteString(token.as_bytes().to_vec()),
            )])),
            ..Default::default()
        };
        self.api::<Secret>(self.ns())
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    /// Creates an AutoscalingRunnerSet from ARC-style JSON `spec`.
    pub async fn create_ars(
        &self,
        name: &str,
        spec: serde_json::Value,
    ) -> anyhow::Result<AutoscalingRunnerSet> {
        let ars: AutoscalingRunnerSet = serde_json::from_value(json!({
            "apiVersion": "actions.github.com/v1alpha1",
            "kind": "AutoscalingRunnerSet",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/version": "0.14.2"}},
            "spec": spec,
        }))?;
        Ok(self
            .api::<AutoscalingRunnerSet>(self.ns())
            .create(&PostParams::default(), &ars)
            .await?)
    }

    /// Whether the controllers are still running.
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A minimal ARC spec for `url` with credentials Secret `secret`.
pub fn spec(url: &str, secret: &str) -> serde_json::Value {
    json!({
        "githubConfigUrl": url,
        "githubConfigSecret": secret,
        "maxRunners": 5,
        "minRunners": 0,
        "template": {"spec": {"containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
            "command": ["/home/runner/run.sh"]}]}}
    })
}

/// Default spec value, for callers that build specs in Rust.
pub fn empty_spec() -> AutoscalingRunnerSetSpec {
    AutoscalingRunnerSetSpec::default()
}

/// [`testbed::eventually`] with this suite's timeout.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    testbed::eventually(what, TIMEOUT, check).await
}

/// Waits until AutoscalingRunnerSet `name` of the harness namespace reports phase `Running`.
pub async fn ready_ars(h: &Harness, name: &str) -> anyhow::Result<AutoscalingRunnerSet> {
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    wait_for("the ARS to be Running", || async {
        let ars = api.get(name).await?;
        Ok(ars
            .status
            .as_ref()
            .is_some_and(|s| s.phase == "Running")
            .then_some(ars))
    })
    .await
}
