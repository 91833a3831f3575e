//! The simulator itself: registers its Nodes, watches the pods bound to each, and hands every
//! pod to its own task; the failure-injection API.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::netns::HostPorts;
use crate::pod::{ArmedInitFailures, Fault, PodEvent, PodTask};
use crate::runner::{self, HttpClient};
use crate::token::ApiServer;
use crate::{ContainerRuntime, FaultError, SimulatorConfig, node, provisioner};

/// A program to run and its extra environment.
pub(crate) type Program = (PathBuf, Vec<(String, String)>);

/// What runs a listener or process container.
pub(crate) enum Real {
    /// A host process.
    Program(Program),
    /// The pod's image in podman, with this extra environment.
    Image(Vec<(String, String)>),
}

/// State shared by the simulator's tasks.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub config: SimulatorConfig,
    pub api_server: ApiServer,
    pub workdir: PathBuf,
    pub http: HttpClient,
    /// Host ports forwarded into every pod network (podman runtime).
    pub host_ports: HostPorts,
    pods: Mutex<HashMap<String, PodEntry>>,
    armed: Mutex<ArmedInitFailures>,
    lost: Mutex<HashSet<String>>,
}

struct PodEntry {
    namespace: String,
    name: String,
    node: String,
    tx: mpsc::UnboundedSender<PodEvent>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ctx {
    pub(crate) fn armed_init_failure(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Option<i32> {
        lock(&self.armed)
            .get(&(namespace.to_owned(), pod.to_owned(), container.to_owned()))
            .copied()
    }

    /// How a listener or process container runs, with its extra environment: its program
    /// (host processes) or its image (podman). `Some(Err)` for a listener when no listener
    /// binary is configured for host processes; `None` for other containers.
    pub(crate) fn real_container(&self, name: &str, image: &str) -> Option<Result<Real, String>> {
        let (program, env) = if self.config.listener_matcher.matches(name, image) {
            (
                self.config.listener_binary.clone(),
                self.config.listener_env.clone(),
            )
        } else {
            let rule = self
                .config
                .process_rules
                .iter()
                .find(|r| r.matcher.matches(name, image))?;
            (rule.binary.clone(), rule.env.clone())
        };
        Some(match self.config.runtime {
            ContainerRuntime::Podman => Ok(Real::Image(env)),
            ContainerRuntime::HostProcesses => program
                .map(|p| Real::Program((p, env)))
                .ok_or_else(|| {
                    format!(
                        "image {image:?}: the node simulator has no binary for container {name:?}; fix: set SimulatorConfig::listener_binary or the ProcessRule's binary"
                    )
                }),
        })
    }

    fn sender(&self, namespace: &str, name: &str) -> Option<mpsc::UnboundedSender<PodEvent>> {
        lock(&self.pods)
            .values()
            .find(|e| e.namespace == namespace && e.name == name && !e.tx.is_closed())
            .map(|e| e.tx.clone())
    }
}

/// A running node simulator. Stop it with [`NodeSimulator::shutdown`]; dropping it stops its
/// tasks and kills its processes without tidying the API server.
pub struct NodeSimulator {
    ctx: Arc<Ctx>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    heartbeats: HashMap<String, CancellationToken>,
    _tempdir: Option<TempDir>,
}

impl std::fmt::Debug for NodeSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSimulator")
            .field("nodes", &self.node_names())
            .field("workdir", &self.ctx.workdir)
            .finish_non_exhaustive()
    }
}

impl NodeSimulator {
    /// Registers the configured Nodes and starts playing their kubelet.
    /// `kube_config` is the simulator's own identity (it needs to read Secrets, write pod and
    /// Node status, and request ServiceAccount tokens: an admin, or a kubelet's rights).
    pub async fn start(kube_config: kube::Config, config: SimulatorConfig) -> anyhow::Result<Self> {
        let client = kube::Client::try_from(kube_config.clone())
            .context("building the simulator's kube client")?;
        if config.nodes.is_empty() {
            anyhow::bail!("SimulatorConfig::nodes is empty; fix: give at least one NodeConfig");
        }
        let host_processes = config.runtime == ContainerRuntime::HostProcesses;
        if let Some(bin) = &config.listener_binary
            && host_processes
            && !bin.is_file()
        {
            anyhow::bail!(
                "SimulatorConfig::listener_binary {} is not a file; fix: build it with `cargo build -p listener`",
                bin.display()
            );
        }
        for rule in &config.process_rules {
            if let Some(binary) = rule
                .binary
                .as_ref()
                .filter(|b| host_processes && !b.is_file())
            {
                anyhow::bail!(
                    "SimulatorConfig::process_rules: binary {} is not a file; fix: build it first",
                    binary.display()
                );
            }
        }
        let (workdir, tempdir) = match &config.workdir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                (dir.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("arc-nodesim-")
                    .tempdir()
                    .context("creating the node simulator's directory")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let http = runner::http_client(None)?;
        let api_server = ApiServer::from_config(&kube_config);
        let host_ports: HostPorts = Arc::default();
        if let Ok(port) = api_server.host_port().1.parse::<u16>() {
            lock(&host_ports).insert(port);
        }
        let ctx = Arc::new(Ctx {
            host_ports,
            api_server,
            client: client.clone(),
            config,
            workdir,
            http,
            pods: Mutex::new(HashMap::new()),
            armed: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashSet::new()),
        });
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut heartbeats = HashMap::new();
        for n in &ctx.config.nodes {
            node::register(&client, n, ctx.config.taint).await?;
            let beat = stop.child_token();
            tasks.push(tokio::spawn(node::keep_alive(
                client.clone(),
                n.name.clone(),
                ctx.config.lease_interval,
                ctx.config.status_interval,
                beat.clone(),
            )));
            heartbeats.insert(n.name.clone(), beat);
            tasks.push(tokio::spawn(watch_node(
                ctx.clone(),
                n.name.clone(),
                stop.child_token(),
            )));
        }
        provisioner::ensure_storage_class(&client)
            .await
            .context("applying the simulator's StorageClass")?;
        for work in [
            provisioner::provision_claims(client.clone()).boxed(),
            provisioner::delete_released(client.clone()).boxed(),
        ] {
            let stopped = stop.child_token();
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = stopped.cancelled() => {}
                    () = work => {}
                }
            }));
        }
        tracing::info!(nodes = ?ctx.config.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(), "node simulator started");
        Ok(Self {
            ctx,
            stop,
            tasks,
            heartbeats,
            _tempdir: tempdir,
        })
    }

    /// Makes the host's `127.0.0.1:port` reachable at the same address inside every pod that
    /// runs in podman (each has its own network namespace), as the API server's port is.
    pub fn forward_host_port(&self, port: u16) {
        lock(&self.ctx.host_ports).insert(port);
    }

    /// The names of the simulated Nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.ctx
            .config
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// Where pod files live: `<namespace>_<pod>_<uid>/` with `<container>.log`.
    pub fn workdir(&self) -> &Path {
        &self.ctx.workdir
    }

    /// The output of a process container (the listener) so far, if it ran here.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        let prefix = format!("{namespace}_{pod}_");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.ctx.workdir)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        dirs.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
        let mut out = String::new();
        for d in dirs {
            if let Ok(text) = std::fs::read_to_string(d.join(format!("{container}.log"))) {
                out.push_str(&text);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// How many pods the simulator currently runs (not yet removed).
    pub fn running_pods(&self) -> usize {
        lock(&self.ctx.pods)
            .values()
            .filter(|e| !e.tx.is_closed())
            .count()
    }

    async fn fault(&self, namespace: &str, name: &str, fault: Fault) -> Result<(), FaultError> {
        let tx = self
            .ctx
            .sender(namespace, name)
            .ok_or_else(|| FaultError::NoSuchPod {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        let (reply, answer) = oneshot::channel();
        tx.send(PodEvent::Fault(fault, reply))
            .map_err(|_| FaultError::NoSuchPod {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        answer.await.map_err(|_| FaultError::NoSuchPod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?
    }

    /// Evicts a pod as a kubelet under memory pressure does: its containers are killed and it
    /// becomes `Failed` with reason `Evicted`. It stays until deleted.
    pub async fn evict_pod(&self, namespace: &str, name: &str) -> Result<(), FaultError> {
        let message = "The node was low on resource: memory. (simulated eviction)".to_owned();
        self.fault(namespace, name, Fault::Evict { message }).await
    }

    /// Kills a container for exceeding its memory limit: exit code 137, reason `OOMKilled`;
    /// the pod's restart policy applies.
    pub async fn oom_kill(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<(), FaultError> {
        let container = container.to_owned();
        self.fault(namespace, name, Fault::OomKill { container })
            .await
    }

    /// Sends SIGKILL to a container (exit code 137, reason `Error`).
    pub async fn kill_container(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<(), FaultError> {
        let container = container.to_owned();
        self.fault(namespace, name, Fault::Kill { container }).await
    }

    /// Arms a failure: init container `container` of pod `namespace/name` exits with
    /// `exit_code` when it runs (pods that already ran are not affected). For pods made by
    /// controllers, [`crate::FAIL_INIT_ANNOTATION`] on the template does the same.
    pub fn fail_init_container(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        exit_code: i32,
    ) {
        lock(&self.ctx.armed).insert(
            (namespace.to_owned(), name.to_owned(), container.to_owned()),
            exit_code,
        );
    }

    /// Loses a Node: its kubelet stops (heartbeats end, its processes die with it), and what
    /// the node lifecycle controller would do follows: the Node's conditions become Unknown, it
    /// is tainted unreachable, and its pods are marked not ready. Nothing more is written for
    /// its pods; deleting them waits forever, as on a real lost node, until the Node is deleted.
    pub async fn lose_node(&self, node: &str) -> Result<(), FaultError> {
        let beat = self
            .heartbeats
            .get(node)
            .ok_or_else(|| FaultError::NoSuchNode(node.to_owned()))?;
        beat.cancel();
        lock(&self.ctx.lost).insert(node.to_owned());
        let senders: Vec<_> = lock(&self.ctx.pods)
            .values()
            .filter(|e| e.node == node)
            .map(|e| e.tx.clone())
            .collect();
        for tx in senders {
            let _ = tx.send(PodEvent::NodeLost);
        }
        node::mark_lost(&self.ctx.client, node, self.ctx.config.taint)
            .await
            .map_err(|e| FaultError::Api(format!("{e:#}")))
    }

    /// Deletes a Node object (after [`NodeSimulator::lose_node`], the pod garbage collector
    /// then removes its pods).
    pub async fn delete_node(&self, node: &str) -> Result<(), FaultError> {
        if !self.heartbeats.contains_key(node) {
            return Err(FaultError::NoSuchNode(node.to_owned()));
        }
        if let Some(beat) = self.heartbeats.get(node) {
            beat.cancel();
        }
        lock(&self.ctx.lost).insert(node.to_owned());
        node::delete(&self.ctx.client, node).await;
        Ok(())
    }

    /// Stops every container (SIGTERM, then SIGKILL after 5 s), stops the kubelet loops, and
    /// deletes the Nodes when configured to.
    pub async fn shutdown(mut self) {
        let senders: Vec<_> = lock(&self.ctx.pods).drain().map(|(_, e)| e.tx).collect();
        for tx in &senders {
            let _ = tx.send(PodEvent::Shutdown);
        }
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
        if self.ctx.config.delete_nodes_on_shutdown {
            for n in &self.ctx.config.nodes {
                node::delete(&self.ctx.client, &n.name).await;
            }
        }
    }
}

impl Drop for NodeSimulator {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Watches the pods bound to `node` and feeds each to its task.
async fn watch_node(ctx: Arc<Ctx>, node: String, stop: CancellationToken) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(pods, config).boxed();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut relist: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            e = stream.next() => e,
        };
        if lock(&ctx.lost).contains(&node) {
            break;
        }
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(node, error = %e, "pod watch error; the watcher retries");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        match event {
            watcher::Event::Init => relist = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (relist.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                apply(&ctx, &node, pod, &mut tasks);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relist.take() {
                    let gone: Vec<_> = lock(&ctx.pods)
                        .iter()
                        .filter(|(uid, e)| e.node == node && !seen.contains(*uid))
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        if let Some(e) = lock(&ctx.pods).remove(&uid) {
                            let _ = e.tx.send(PodEvent::Gone);
                        }
                    }
                }
            }
            watcher::Event::Apply(pod) => apply(&ctx, &node, pod, &mut tasks),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref()
                    && let Some(e) = lock(&ctx.pods).remove(uid)
                {
                    let _ = e.tx.send(PodEvent::Gone);
                }
            }
        }
        tasks.retain(|t| !t.is_finished());
    }
    if stop.is_cancelled() {
        for t in &tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !t.is_finished() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
            .await;
        }
        for t in tasks {
            t.abort();
        }
    }
}

fn apply(ctx: &Arc<Ctx>, node: &str, pod: Pod, tasks: &mut Vec<JoinHandle<()>>) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let mut pods = lock(&ctx.pods);
    if let Some(entry) = pods.get(&uid) {
        let _ = entry.tx.send(PodEvent::Updated(Box::new(pod)));
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    pods.insert(
        uid,
        PodEntry {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: node.to_owned(),
            tx,
        },
    );
    drop(pods);
    tasks.push(tokio::spawn(PodTask::new(ctx.clone(), pod, rx).run()));
}
