//! [`System`]: one emulator, one node simulator and one manager installed from the controller
//! chart, on a control plane; scale sets installed from the scale-set chart.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actions_emulator::{Emulator, EmulatorConfig, JobSpec};
use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_reconcilers::crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use nodesim::{ContainerMatcher, ContainerRuntime, NodeSimulator, ProcessRule, SimulatorConfig};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use testbed::{AuditLog, ControlPlane, ControlPlaneOptions, TestNamespace};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::binaries::{Binaries, build_binaries, build_images_once};
use crate::cluster::{apply, wait_for};
use crate::helm::{Chart, Cluster, controller_crds, render};
use crate::{ORG, WAIT};

/// The ConfigMap (in each scale set's namespace) holding the emulator's CA, and its key.
pub const CA_CONFIG_MAP: &str = "emulator-ca";
const CA_KEY: &str = "ca.crt";

/// The control plane a [`System`] runs on: a process-wide shared one, or its own.
pub enum Plane {
    /// `ControlPlane::shared_with_scheduling()` and the like.
    Shared(&'static ControlPlane),
    /// A control plane the system owns and stops on shutdown.
    Owned(Box<ControlPlane>),
}

impl From<&'static ControlPlane> for Plane {
    fn from(cp: &'static ControlPlane) -> Self {
        Plane::Shared(cp)
    }
}

impl From<ControlPlane> for Plane {
    fn from(cp: ControlPlane) -> Self {
        Plane::Owned(Box::new(cp))
    }
}

impl Deref for Plane {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        match self {
            Plane::Shared(cp) => cp,
            Plane::Owned(cp) => cp,
        }
    }
}

/// How to start a [`System`].
#[derive(Clone, Debug)]
pub struct SystemOptions {
    /// Prefix of the namespaces and the controller release (short: names derive from it).
    pub name: String,
    /// How many simulated Nodes.
    pub nodes: usize,
    /// How many pods fit on each Node.
    pub node_pods: u32,
    /// Serve the emulator over HTTPS with a generated CA; scale sets then get
    /// `githubServerTLS` from the [`CA_CONFIG_MAP`] ConfigMap.
    pub tls: bool,
    /// The emulator's settings.
    pub emulator: EmulatorConfig,
    /// Values merged over the controller chart's defaults (and the harness's `flags.logLevel`).
    pub controller_values: Value,
    /// Install the controller with `flags.watchSingleNamespace` set to the runner namespace.
    pub single_namespace: bool,
    /// Run release builds of the manager and listener.
    pub release: bool,
    /// Extra environment of the manager process (after the pod's), e.g. `RUST_LOG`.
    pub manager_env: Vec<(String, String)>,
    /// How the manager and listener pods run: from the images `cargo xtask images` builds, in
    /// podman (the default), or as host processes of the binaries in target/ when
    /// `ARC_TEST_HOST_PROCESSES=1` asks for quick local runs.
    pub runtime: ContainerRuntime,
}

/// The environment variable that runs the manager and listener as host processes instead of
/// containers.
pub const HOST_PROCESSES_ENV: &str = "ARC_TEST_HOST_PROCESSES";

/// [`ContainerRuntime::HostProcesses`] when `ARC_TEST_HOST_PROCESSES=1`, else podman.
pub fn runtime_from_env() -> ContainerRuntime {
    match std::env::var(HOST_PROCESSES_ENV).as_deref() {
        Ok("1" | "true") => ContainerRuntime::HostProcesses,
        _ => ContainerRuntime::Podman,
    }
}

impl SystemOptions {
    /// Defaults: two Nodes, HTTP emulator with a 5 s long-poll hold, cluster-wide manager at log
    /// level info, debug binaries.
    pub fn new(name: &str) -> Self {
        let emulator = EmulatorConfig {
            long_poll_hold: Duration::from_secs(5),
            ..EmulatorConfig::default()
        };
        Self {
            name: name.to_owned(),
            nodes: 2,
            node_pods: 250,
            tls: false,
            emulator,
            controller_values: json!({}),
            single_namespace: false,
            release: false,
            manager_env: Vec::new(),
            runtime: runtime_from_env(),
        }
    }
}

/// What to install with the scale-set chart.
#[derive(Clone, Debug)]
pub struct ScaleSetSpec {
    /// Release name, hence the AutoscalingRunnerSet's and (by default) the scale set's name.
    pub name: String,
    /// Values merged over the harness's (URL, PAT secret, controller ServiceAccount,
    /// `runnerScaleSetName`, `maxRunners: 10`, TLS when the emulator serves HTTPS).
    pub values: Value,
}

impl ScaleSetSpec {
    /// A scale set named `name` with the harness's values.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            values: json!({}),
        }
    }

    /// Adds values (deep-merged over what is there).
    pub fn values(mut self, values: Value) -> Self {
        merge(&mut self.values, &values);
        self
    }
}

/// An installed scale set.
#[derive(Clone, Debug)]
pub struct ScaleSet {
    /// Release and AutoscalingRunnerSet name.
    pub name: String,
    /// Name of the scale set in the service (`runnerScaleSetName`).
    pub scale_set_name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its id in the emulator.
    pub id: i64,
    /// The values it was rendered with.
    pub values: Value,
    /// What the chart rendered (deleted by [`System::uninstall_scale_set`]).
    pub objects: Vec<Value>,
}

/// The whole system (see the crate docs).
pub struct System {
    emulator: Emulator,
    sim: Option<NodeSimulator>,
    /// The host binaries, when the manager and listener run as host processes.
    binaries: Option<Binaries>,
    controller_ns: Option<TestNamespace>,
    runner_ns: Option<TestNamespace>,
    release: String,
    controller_objects: Vec<Value>,
    controller_sa: String,
    options: SystemOptions,
    plane: Option<Plane>,
    /// The API server's version, for Helm's `.Capabilities.KubeVersion`.
    kube_version: String,
    started: std::time::Instant,
    _serial: OwnedMutexGuard<()>,
}

fn serial() -> Arc<Mutex<()>> {
    static LOCK: OnceLock<Arc<Mutex<()>>> = OnceLock::new();
    LOCK.get_or_init(|| Arc::new(Mutex::new(()))).clone()
}

/// Applies the controller chart's CRDs (as Helm installs them) and waits until each is
/// established.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let crds = tokio::task::spawn_blocking(controller_crds).await??;
    apply(client, &crds).await?;
    let crd_api: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        tokio::time::timeout(
            Duration::from_secs(60),
            kube::runtime::wait::await_condition(
                crd_api.clone(),
                name,
                kube::runtime::conditions::is_crd_established(),
            ),
        )
        .await
        .with_context(|| format!("CRD {name} was not established within 60 s"))??;
    }
    Ok(())
}

/// Deep-merges `over` into `base` (objects merge key by key, anything else replaces).
pub(crate) fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl System {
    /// [`System::start`] on a control plane of its own (with a scheduler) whose API server
    /// writes `audit` and gets `extra_apiserver_args` after every other flag.
    pub async fn start_audited(
        audit: &AuditLog,
        extra_apiserver_args: &[&str],
        options: SystemOptions,
    ) -> anyhow::Result<System> {
        let mut apiserver_args = audit.apiserver_args();
        apiserver_args.extend(extra_apiserver_args.iter().map(|a| (*a).to_owned()));
        let plane = ControlPlane::start(ControlPlaneOptions {
            scheduling: true,
            extra_apiserver_args: apiserver_args,
            ..ControlPlaneOptions::default()
        })
        .await?;
        System::start(plane.into(), options).await
    }

    /// Starts everything and installs the controller chart; waits until the manager runs.
    /// Waits first for any other system of this process to shut down.
    pub async fn start(plane: Plane, options: SystemOptions) -> anyhow::Result<System> {
        let serial = serial().lock_owned().await;
        let binaries = match options.runtime {
            ContainerRuntime::HostProcesses => {
                let release = options.release;
                Some(
                    tokio::task::spawn_blocking(move || build_binaries(release))
                        .await
                        .context("building the binaries")??,
                )
            }
            ContainerRuntime::Podman => {
                tokio::task::spawn_blocking(build_images_once)
                    .await
                    .context("building the images")??;
                None
            }
        };
        plane
            .ensure_scheduling()
            .await
            .context("the system needs the scheduler and controller-manager")?;
        let emulator = if options.tls {
            Emulator::start_tls(options.emulator.clone()).await?
        } else {
            Emulator::start(options.emulator.clone()).await?
        };
        let controller_ns = plane
            .test_namespace(&format!("{}-sys", options.name))
            .await?;
        let runner_ns = plane
            .test_namespace(&format!("{}-run", options.name))
            .await?;
        let mut sim = SimulatorConfig::with_nodes(&format!("{}-node", options.name), options.nodes);
        sim.runtime = options.runtime;
        sim.taint = false;
        for node in &mut sim.nodes {
            node.pods = options.node_pods;
        }
        sim.listener_binary = binaries.as_ref().map(|b| b.listener.clone());
        sim.process_rules = vec![ProcessRule {
            matcher: ContainerMatcher {
                names: vec!["manager".to_owned()],
                image_contains: Vec::new(),
            },
            binary: binaries.as_ref().map(|b| b.manager.clone()),
            env: options.manager_env.clone(),
        }];
        let sim = NodeSimulator::start(plane.config().clone(), sim).await?;
        sim.forward_host_port(emulator.addr().port());
        let kube_version = plane
            .client()
            .apiserver_version()
            .await
            .context("reading the API server's version")?
            .git_version;
        let release = controller_ns.name().to_owned();
        let mut system = System {
            emulator,
            sim: Some(sim),
            binaries,
            release,
            controller_objects: Vec::new(),
            controller_sa: String::new(),
            options,
            controller_ns: Some(controller_ns),
            runner_ns: Some(runner_ns),
            plane: Some(plane),
            kube_version,
            started: std::time::Instant::now(),
            _serial: serial,
        };
        if let Err(e) = system.install_controller().await {
            let e = e.context(system.diagnostics().await);
            system.shutdown().await;
            return Err(e);
        }
        Ok(system)
    }

    /// [`System::start`] on the process's shared control plane with scheduling (for tests).
    pub async fn shared(options: SystemOptions) -> anyhow::Result<System> {
        let cp = ControlPlane::shared_with_scheduling().await?;
        System::start(cp.into(), options).await
    }

    /// Ends a test: on `Err`, adds the manager's and listeners' logs; then shuts down.
    pub async fn finish(self, outcome: anyhow::Result<()>) -> anyhow::Result<()> {
        self.save_logs().await;
        let outcome = match outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(e.context(self.diagnostics().await)),
        };
        self.shutdown().await;
        outcome
    }

    async fn install_controller(&mut self) -> anyhow::Result<()> {
        let client = self.client();
        install_crds(&client).await?;
        let log_level = std::env::var("ARC_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let mut values = json!({ "flags": { "logLevel": log_level } });
        if self.options.single_namespace {
            merge(
                &mut values,
                &json!({ "flags": { "watchSingleNamespace": self.runner_namespace() } }),
            );
        }
        merge(&mut values, &self.options.controller_values);
        let objects = self
            .render(
                Chart::Controller,
                &self.release,
                self.controller_namespace(),
                values,
            )
            .await?;
        self.controller_sa = objects
            .iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .and_then(|o| o["metadata"]["name"].as_str())
            .context("the controller chart rendered no ServiceAccount")?
            .to_owned();
        apply(&client, &objects).await?;
        self.controller_objects = objects;
        self.wait_manager_running(WAIT).await?;
        self.stage("the manager runs");
        Ok(())
    }

    /// Logs a step with the time since start (stderr; shown with `--nocapture`).
    pub fn stage(&self, what: &str) {
        eprintln!(
            "[system {} +{:.1}s] {what}",
            self.options.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// The admin client of the control plane.
    pub fn client(&self) -> kube::Client {
        self.plane().client()
    }

    /// `helm template` of `chart` with `lookup` and the Kubernetes version from this cluster.
    async fn render(
        &self,
        chart: Chart,
        release: &str,
        namespace: &str,
        values: Value,
    ) -> anyhow::Result<Vec<Value>> {
        let (release, namespace) = (release.to_owned(), namespace.to_owned());
        let cluster = Cluster {
            kubeconfig: self.plane().kubeconfig_path().to_path_buf(),
            version: self.kube_version.clone(),
        };
        tokio::task::spawn_blocking(move || {
            render(chart, &release, &namespace, &values, Some(&cluster))
        })
        .await?
    }

    /// The control plane.
    pub fn plane(&self) -> &ControlPlane {
        match &self.plane {
            Some(p) => p,
            None => unreachable_plane(),
        }
    }

    /// The emulator.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The node simulator.
    pub fn sim(&self) -> &NodeSimulator {
        match &self.sim {
            Some(s) => s,
            None => unreachable_sim(),
        }
    }

    /// Where the manager runs (the controller chart's namespace).
    pub fn controller_namespace(&self) -> &str {
        self.controller_ns
            .as_ref()
            .map(|n| n.name())
            .unwrap_or_default()
    }

    /// The namespace scale sets go to by default (the watched one in single-namespace mode).
    pub fn runner_namespace(&self) -> &str {
        self.runner_ns
            .as_ref()
            .map(|n| n.name())
            .unwrap_or_default()
    }

    /// The controller chart's ServiceAccount (the manager's identity).
    pub fn controller_service_account(&self) -> &str {
        &self.controller_sa
    }

    /// (kind, namespace, name) of the controller chart's Roles and RoleBindings.
    pub(crate) fn controller_object_names(&self) -> Vec<(&'static str, String, String)> {
        self.controller_objects
            .iter()
            .filter_map(|o| {
                let kind = match o["kind"].as_str()? {
                    "Role" => "Role",
                    "RoleBinding" => "RoleBinding",
                    _ => return None,
                };
                Some((
                    kind,
                    o["metadata"]["namespace"].as_str()?.to_owned(),
                    o["metadata"]["name"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// The manager pods (normally one).
    pub async fn manager_pods(&self) -> anyhow::Result<Vec<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.client(), self.controller_namespace());
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/part-of=gha-rs-controller"))
            .await?;
        let mut items = list.items;
        if items.is_empty() {
            items = pods
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .is_some_and(|s| s.containers.iter().any(|c| c.name == "manager"))
                })
                .collect();
        }
        Ok(items)
    }

    /// Waits until a manager pod is Running with its container started.
    pub async fn wait_manager_running(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_for(timeout, "the manager pod to run", || async {
            Ok(self.manager_pods().await?.iter().any(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().is_some_and(|s| {
                        s.phase.as_deref() == Some("Running")
                            && s.container_statuses.as_ref().is_some_and(|c| {
                                c.iter()
                                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                            })
                    })
            }))
        })
        .await
    }

    /// The pids of this system's manager processes (normally one).
    pub async fn manager_pids(&self) -> Vec<u32> {
        let pods = self.manager_pods().await.unwrap_or_default();
        self.pids(&pods, "manager", |b| &b.manager)
    }

    /// The pids of this system's listener processes.
    pub async fn listener_pids(&self) -> Vec<u32> {
        let pods: Api<Pod> = Api::namespaced(self.client(), self.controller_namespace());
        let pods = pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        self.pids(&pods, "listener", |b| &b.listener)
    }

    /// The processes of container `container` of `pods`: their podman containers, or the host
    /// processes of `binary`.
    fn pids(
        &self,
        pods: &[Pod],
        container: &str,
        binary: fn(&Binaries) -> &std::path::PathBuf,
    ) -> Vec<u32> {
        match &self.binaries {
            Some(binaries) => crate::process::find_processes(
                binary(binaries),
                &self.sim().workdir().display().to_string(),
            ),
            None => crate::process::container_pids(pods, container),
        }
    }

    /// The base values of a scale set of this system.
    fn scale_set_values(&self, name: &str) -> Value {
        let mut values = json!({
            "githubConfigUrl": self.emulator.org_url(ORG),
            "githubConfigSecret": { "github_token": self.emulator.pat().expose_secret() },
            "runnerScaleSetName": name,
            "maxRunners": 10,
            "controllerServiceAccount": {
                "namespace": self.controller_namespace(),
                "name": self.controller_sa,
            },
        });
        if self.options.tls {
            merge(
                &mut values,
                &json!({ "githubServerTLS": {
                    "certificateFrom": { "configMapKeyRef": { "name": CA_CONFIG_MAP, "key": CA_KEY } },
                    "runnerMountPath": "/usr/local/share/ca-certificates/",
                }}),
            );
        }
        values
    }

    /// Renders the scale-set chart for `spec` into the runner namespace, applies it, and waits
    /// until the scale set exists in the emulator and its listener holds a session.
    pub async fn install_scale_set(&self, spec: ScaleSetSpec) -> anyhow::Result<ScaleSet> {
        self.install_scale_set_in(spec, self.runner_namespace())
            .await
    }

    /// [`System::install_scale_set`] into another namespace.
    pub async fn install_scale_set_in(
        &self,
        spec: ScaleSetSpec,
        namespace: &str,
    ) -> anyhow::Result<ScaleSet> {
        let mut values = self.scale_set_values(&spec.name);
        merge(&mut values, &spec.values);
        if let Some(pem) = self.emulator.ca_pem() {
            self.put_ca(namespace, pem).await?;
        }
        let objects = self
            .render(Chart::ScaleSet, &spec.name, namespace, values.clone())
            .await?;
        apply(&self.client(), &objects).await?;
        let scale_set_name = values["runnerScaleSetName"]
            .as_str()
            .unwrap_or(&spec.name)
            .to_owned();
        let id = self
            .wait_listening(&scale_set_name, WAIT)
            .await
            .map_err(|e| e.context(format!("scale set {scale_set_name} did not come up")))?;
        self.stage(&format!("scale set {scale_set_name} ({id}) is listening"));
        Ok(ScaleSet {
            name: spec.name,
            scale_set_name,
            namespace: namespace.to_owned(),
            id,
            values,
            objects,
        })
    }

    /// Re-renders an installed scale set with more values and applies it (`helm upgrade`).
    pub async fn upgrade_scale_set(&self, set: &mut ScaleSet, values: Value) -> anyhow::Result<()> {
        merge(&mut set.values, &values);
        let objects = self
            .render(
                Chart::ScaleSet,
                &set.name,
                &set.namespace,
                set.values.clone(),
            )
            .await?;
        apply(&self.client(), &objects).await?;
        set.objects = objects;
        Ok(())
    }

    async fn put_ca(&self, namespace: &str, pem: &str) -> anyhow::Result<()> {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": CA_CONFIG_MAP, "namespace": namespace },
            "data": { CA_KEY: pem },
        }))?;
        let api: Api<ConfigMap> = Api::namespaced(self.client(), namespace);
        match api.create(&PostParams::default(), &cm).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e).context("creating the emulator CA ConfigMap"),
        }
    }

    /// Waits until the scale set named `name` exists in the emulator with an active session;
    /// returns its id.
    pub async fn wait_listening(&self, name: &str, timeout: Duration) -> anyhow::Result<i64> {
        let snap = self
            .emulator
            .wait_until(timeout, |s| {
                s.scale_set_by_name(name)
                    .is_some_and(|set| s.active_session(set.id).is_some())
            })
            .await?;
        snap.scale_set_by_name(name)
            .map(|s| s.id)
            .context("the scale set vanished")
    }

    /// Queues `count` jobs for the scale set's name label, each running for `duration`.
    pub fn queue_jobs(&self, set: &ScaleSet, count: usize, duration: Duration) -> Vec<i64> {
        self.queue_labeled(&[set.scale_set_name.as_str()], count, duration)
    }

    /// Queues `count` jobs asking for `labels`.
    pub fn queue_labeled(&self, labels: &[&str], count: usize, duration: Duration) -> Vec<i64> {
        (0..count)
            .map(|i| {
                self.emulator.queue_job(JobSpec {
                    duration,
                    display_name: format!("job-{}", i + 1),
                    ..JobSpec::with_labels(labels.iter().copied())
                })
            })
            .collect()
    }

    /// Queues `count` jobs for the scale set, waits until they completed and the scale set is
    /// back to `idle` runners; returns the job ids.
    pub async fn run_jobs(
        &self,
        set: &ScaleSet,
        count: usize,
        duration: Duration,
        idle: usize,
    ) -> anyhow::Result<Vec<i64>> {
        let jobs = self.queue_jobs(set, count, duration);
        self.wait_jobs_completed(&jobs, WAIT).await?;
        self.wait_runners(set, idle, WAIT).await?;
        Ok(jobs)
    }

    /// Waits until every job in `ids` is completed.
    pub async fn wait_jobs_completed(&self, ids: &[i64], timeout: Duration) -> anyhow::Result<()> {
        if let Err(open) = self.emulator.wait_jobs_completed(ids, timeout).await {
            let open: Vec<String> = open
                .iter()
                .map(|(id, phase)| format!("{id} {phase:?}"))
                .collect();
            anyhow::bail!("jobs not completed within {timeout:?}: {}", open.join(", "));
        }
        self.stage(&format!("{} jobs completed", ids.len()));
        Ok(())
    }

    /// The EphemeralRunners of a scale set's namespace.
    pub async fn ephemeral_runners(&self, set: &ScaleSet) -> anyhow::Result<Vec<EphemeralRunner>> {
        let api: Api<EphemeralRunner> = Api::namespaced(self.client(), &set.namespace);
        Ok(api.list(&ListParams::default()).await?.items)
    }

    /// The runner pods of a scale set's namespace.
    pub async fn runner_pods(&self, set: &ScaleSet) -> anyhow::Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client(), &set.namespace);
        Ok(api
            .list(&ListParams::default().labels(k8s_reconcilers::names::labels::EPHEMERAL_RUNNER))
            .await?
            .items)
    }

    /// Waits until the scale set has exactly `count` EphemeralRunners and runner pods, and the
    /// emulator exactly `count` registered runners for it.
    pub async fn wait_runners(
        &self,
        set: &ScaleSet,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let result = wait_for(
            timeout,
            &format!("{count} runners of {}", set.name),
            || async {
                let (runners, pods, registered) = self.runner_counts(set).await?;
                Ok(runners == count && pods == count && registered == count)
            },
        )
        .await;
        if result.is_ok() {
            self.stage(&format!("{count} runners of {}", set.name));
        }
        if let Err(e) = result {
            let (runners, pods, registered) = self.runner_counts(set).await.unwrap_or_default();
            return Err(e.context(format!(
                "{runners} EphemeralRunners, {pods} runner pods, {registered} registered runners; {}",
                self.runner_states(set).await
            )));
        }
        Ok(())
    }

    async fn runner_counts(&self, set: &ScaleSet) -> anyhow::Result<(usize, usize, usize)> {
        let runners = self.ephemeral_runners(set).await?.len();
        let pods = self.runner_pods(set).await?.len();
        let registered = self
            .emulator
            .snapshot()
            .runners
            .iter()
            .filter(|r| r.scale_set_id == set.id)
            .count();
        Ok((runners, pods, registered))
    }

    /// One line per EphemeralRunner (phase, reason, message) and runner pod (phase, reason).
    pub async fn runner_states(&self, set: &ScaleSet) -> String {
        let mut out = Vec::new();
        for r in self.ephemeral_runners(set).await.unwrap_or_default() {
            let status = r.status.unwrap_or_default();
            out.push(format!(
                "EphemeralRunner {} phase={:?} reason={:?} message={:?} runnerId={}",
                r.metadata.name.unwrap_or_default(),
                status.phase,
                status.reason,
                status.message,
                status.runner_id
            ));
        }
        for p in self.runner_pods(set).await.unwrap_or_default() {
            let status = p.status.unwrap_or_default();
            out.push(format!(
                "pod {} phase={:?} reason={:?} message={:?}",
                p.metadata.name.unwrap_or_default(),
                status.phase,
                status.reason,
                status.message
            ));
        }
        out.join("; ")
    }

    /// The options the system was started with.
    pub fn options(&self) -> &SystemOptions {
        &self.options
    }

    /// The listener pod of a scale set, once it exists.
    pub async fn listener_pod(&self, set: &ScaleSet) -> anyhow::Result<Option<Pod>> {
        let listeners: Api<AutoscalingListener> =
            Api::namespaced(self.client(), self.controller_namespace());
        let pods: Api<Pod> = Api::namespaced(self.client(), self.controller_namespace());
        for l in listeners.list(&ListParams::default()).await?.items {
            if l.spec.autoscaling_runner_set_name.as_deref() == Some(set.name.as_str())
                && l.spec.autoscaling_runner_set_namespace.as_deref()
                    == Some(set.namespace.as_str())
            {
                let name = l.metadata.name.unwrap_or_default();
                return Ok(pods.get_opt(&name).await?);
            }
        }
        Ok(None)
    }

    /// Deletes the AutoscalingRunnerSet, waits until it is gone and the scale set removed from
    /// the emulator, then deletes what else the chart rendered (as `helm uninstall` does).
    pub async fn uninstall_scale_set(&self, set: &ScaleSet) -> anyhow::Result<()> {
        self.uninstall_scale_set_within(set, WAIT).await
    }

    /// [`System::uninstall_scale_set`] with another timeout (large scale sets).
    pub async fn uninstall_scale_set_within(
        &self,
        set: &ScaleSet,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let client = self.client();
        let ars: Api<AutoscalingRunnerSet> = Api::namespaced(client.clone(), &set.namespace);
        match ars.delete(&set.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e).context("deleting the AutoscalingRunnerSet"),
        }
        wait_for(timeout, "the AutoscalingRunnerSet to be gone", || async {
            Ok(ars.get_opt(&set.name).await?.is_none())
        })
        .await?;
        let id = set.id;
        self.emulator
            .wait_until(timeout, |s| s.scale_set(id).is_none())
            .await
            .context("the manager did not delete the scale set from the service")?;
        for object in set.objects.iter().rev() {
            if object["kind"] == "AutoscalingRunnerSet" {
                continue;
            }
            delete_object(&client, object).await?;
        }
        self.stage(&format!("scale set {} uninstalled", set.scale_set_name));
        Ok(())
    }

    /// The end of the manager's and the listeners' logs, for failure messages.
    pub async fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (name, container, log) in self.controller_logs().await {
            out.push_str(&format!(
                "\n--- {container} log of {name} (last 40 lines) ---\n{}",
                tail(&log, 40)
            ));
        }
        out
    }

    /// The whole logs of the manager and listener containers: (pod, container, log).
    async fn controller_logs(&self) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        let Some(sim) = &self.sim else {
            return out;
        };
        let ns = self.controller_namespace();
        if let Ok(pods) = Api::<Pod>::namespaced(self.client(), ns)
            .list(&ListParams::default())
            .await
        {
            for pod in pods.items {
                let name = pod.metadata.name.unwrap_or_default();
                for container in ["manager", "listener"] {
                    if let Some(log) = sim.container_log(ns, &name, container) {
                        out.push((name.clone(), container, log));
                    }
                }
            }
        }
        out
    }

    /// Every manager and listener log this system's node simulator wrote, including those of
    /// pods that are gone: (pod directory, container, log), for checks over every line (the
    /// bad-input campaign's secret-leak check).
    pub fn all_controller_logs(&self) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        let Some(sim) = &self.sim else {
            return out;
        };
        let prefix = format!("{}_", self.controller_namespace());
        let Ok(dirs) = std::fs::read_dir(sim.workdir()) else {
            return out;
        };
        let mut dirs: Vec<std::path::PathBuf> = dirs
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for container in ["manager", "listener"] {
                if let Ok(log) = std::fs::read_to_string(dir.join(format!("{container}.log"))) {
                    out.push((name.clone(), container, log));
                }
            }
        }
        out
    }

    /// With `ARC_TEST_LOG_DIR` set, writes the whole manager and listener logs there (of pods
    /// that are gone too) as `<system>_<pod directory>_<container>.log`, whatever the outcome.
    pub async fn save_logs(&self) {
        let Some(dir) = std::env::var_os("ARC_TEST_LOG_DIR") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("ARC_TEST_LOG_DIR {}: {e}", dir.display());
            return;
        }
        for (pod, container, log) in self.all_controller_logs() {
            let path = dir.join(format!("{}_{pod}_{container}.log", self.options.name));
            if let Err(e) = std::fs::write(&path, log) {
                eprintln!("writing {}: {e}", path.display());
            }
        }
    }

    /// Stops everything: deletes the manager Deployment and waits for its pods to go while
    /// the node simulator still runs, stops the simulator, deletes the namespaces and the
    /// controller chart's cluster-scoped objects, stops the emulator (and an owned control
    /// plane).
    pub async fn shutdown(mut self) {
        let client = self.client();
        let ns = self.controller_namespace().to_owned();
        let runner_ns = self.runner_namespace().to_owned();
        let sets: Api<AutoscalingRunnerSet> = Api::namespaced(client.clone(), &runner_ns);
        if sets
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| !l.items.is_empty())
        {
            let _ = sets
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await;
            let _ = wait_for(
                Duration::from_secs(30),
                "leftover scale sets to go",
                || async { Ok(sets.list(&ListParams::default()).await?.items.is_empty()) },
            )
            .await;
        }
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        if let Ok(list) = deployments.list(&ListParams::default()).await {
            for d in list.items {
                let _ = deployments
                    .delete(
                        &d.metadata.name.unwrap_or_default(),
                        &DeleteParams::background(),
                    )
                    .await;
            }
        }
        for namespace in [ns.clone(), self.runner_namespace().to_owned()] {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let _ = pods
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await;
            let _ = wait_for(Duration::from_secs(30), "pods to stop", || async {
                Ok(pods.list(&ListParams::default()).await?.items.is_empty())
            })
            .await;
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
        for namespace in [&ns, &runner_ns] {
            strip_finalizers::<AutoscalingRunnerSet>(&client, namespace).await;
            strip_finalizers::<k8s_reconcilers::crd::EphemeralRunnerSet>(&client, namespace).await;
            strip_finalizers::<EphemeralRunner>(&client, namespace).await;
            strip_finalizers::<AutoscalingListener>(&client, namespace).await;
        }
        for object in &self.controller_objects {
            if object["metadata"]["namespace"].is_null() {
                let _ = delete_object(&client, object).await;
            }
        }
        for ns in [self.runner_ns.take(), self.controller_ns.take()]
            .into_iter()
            .flatten()
        {
            let _ = ns.delete().await;
        }
        self.stage("stopped");
        if let Some(Plane::Owned(cp)) = self.plane.take() {
            let _ = tokio::task::spawn_blocking(move || cp.stop()).await;
        }
    }
}

/// Removes the finalizers of every object of kind `K` in `namespace` (after the manager is
/// gone, so that namespace deletion can finish).
async fn strip_finalizers<K>(client: &kube::Client, namespace: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    let patch = json!({ "metadata": { "finalizers": null } });
    for object in list.items {
        if let Some(name) = object.meta().name.clone() {
            let _ = api
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await;
        }
    }
}

fn unreachable_plane() -> &'static ControlPlane {
    panic!("System used after shutdown")
}

fn unreachable_sim() -> &'static NodeSimulator {
    panic!("System used after shutdown")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Deletes one rendered object (404 is fine).
pub(crate) async fn delete_object(client: &kube::Client, object: &Value) -> anyhow::Result<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let (resource, caps) =
        pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            &resource,
        ),
    };
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => bail!("deleting {kind} {name}: {e}"),
    }
}
