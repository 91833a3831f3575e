//! One pod's life on a simulated node, as a kubelet drives it: resolve, initialise, run, restart
//! per policy, stop on deletion within the grace period, remove the pod; and injected faults.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::container::{self, ContainerSpec};
use crate::kubelet::{Ctx, Real};
use crate::netns::PodNetwork;
use crate::resolve::{self, NotReady, Sources};
use crate::runner::{self, JIT_ENV};
use crate::status::{ContainerRecord, ContainerState, PodRuntime};
use crate::workload::{self, Exit, Launch, Signal};
use crate::{FAIL_INIT_ANNOTATION, FaultError, RUNNER_CONTAINER, token};

/// How long SIGKILLed containers may take to report their exit.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long containers get to stop when the simulator shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a pod that cannot start yet is retried.
const RETRY: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A failure to inject into a running pod.
pub(crate) enum Fault {
    Evict { message: String },
    OomKill { container: String },
    Kill { container: String },
}

/// What the dispatcher and the fault API tell a pod task.
pub(crate) enum PodEvent {
    Updated(Box<Pod>),
    Gone,
    NodeLost,
    /// The simulator stops: containers get SIGTERM, then SIGKILL; nothing more is written.
    Shutdown,
    Fault(Fault, oneshot::Sender<Result<(), FaultError>>),
}

/// Why the task ended.
enum End {
    /// Removed (finalised by us or force-deleted), or the simulator stopped.
    Done,
    /// The node was lost: the processes died with it and nothing more is written.
    NodeLost,
    /// The simulator stops.
    Shutdown,
}

struct Slot {
    control: Option<mpsc::UnboundedSender<Signal>>,
    generation: u64,
    forced: Option<(i32, &'static str)>,
    restart_at: Option<Instant>,
    backoff: Duration,
    launch: Option<Launch>,
}

pub(crate) struct PodTask {
    ctx: Arc<Ctx>,
    api: Api<Pod>,
    pod: Pod,
    key: String,
    dir: PathBuf,
    rt: PodRuntime,
    slots: Vec<Slot>,
    events: mpsc::UnboundedReceiver<PodEvent>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits_rx: mpsc::UnboundedReceiver<Exit>,
    dirty: bool,
    written: Option<Value>,
    stopping: bool,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The pod's ServiceAccount kubeconfig, once written.
    kubeconfig: Option<PathBuf>,
    /// The pod's network namespace, once a real container needs it.
    network: Option<PodNetwork>,
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn is_api_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl PodTask {
    pub(crate) fn new(ctx: Arc<Ctx>, pod: Pod, events: mpsc::UnboundedReceiver<PodEvent>) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let waiting = |reason: &str| ContainerState::waiting(reason, None);
        let init: Vec<ContainerRecord> = spec
            .init_containers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| ContainerRecord {
                sidecar: c.restart_policy.as_deref() == Some("Always"),
                ..ContainerRecord::new(&c.name, image(c), waiting("PodInitializing"))
            })
            .collect();
        let initial = if init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let containers: Vec<ContainerRecord> = spec
            .containers
            .iter()
            .map(|c| ContainerRecord::new(&c.name, image(c), waiting(initial)))
            .collect();
        let slots = containers
            .iter()
            .map(|_| Slot {
                control: None,
                generation: 0,
                forced: None,
                restart_at: None,
                backoff: FIRST_BACKOFF,
                launch: None,
            })
            .collect();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_owned());
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let dir = ctx.workdir.join(format!("{namespace}_{name}_{uid}"));
        Self {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            ctx,
            key: format!("{namespace}/{name}"),
            pod,
            dir,
            rt: PodRuntime::new(&policy, init, containers, "127.0.0.1"),
            slots,
            events,
            exits_tx,
            exits_rx,
            dirty: false,
            written: None,
            stopping: false,
            background: Vec::new(),
            kubeconfig: None,
            network: None,
        }
    }

    /// Runs the pod to its end.
    pub(crate) async fn run(mut self) {
        let end = self.lifecycle().await;
        self.stopping = true;
        if matches!(end, End::Shutdown) && self.live() > 0 {
            self.signal_all(Signal::Term);
            self.wait_exits(Instant::now() + SHUTDOWN_GRACE).await;
        }
        if self.live() > 0 {
            self.signal_all(Signal::Kill);
            self.wait_exits(Instant::now() + KILL_WAIT).await;
        }
        for task in self.background.drain(..) {
            task.abort();
        }
        if let Some(network) = self.network.take() {
            network.remove().await;
        }
        for sub in ["volumes", "serviceaccount"] {
            let _ = std::fs::remove_dir_all(self.dir.join(sub));
        }
        tracing::debug!(pod = %self.key, "pod task ended");
    }

    fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.control.is_some()).count()
    }

    fn existing_phase(&self) -> Option<String> {
        self.pod.status.as_ref().and_then(|s| s.phase.clone())
    }

    async fn lifecycle(&mut self) -> End {
        if matches!(
            self.existing_phase().as_deref(),
            Some("Succeeded" | "Failed")
        ) {
            return self.wait_terminal().await;
        }
        if self.deleting() {
            self.finalize().await;
            return End::Done;
        }
        self.rt.start_time = Some(now());
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!(pod = %self.key, error = %e, "cannot create the pod directory");
        }
        let launches = loop {
            match self.prepare().await {
                Ok(l) => break l,
                Err(not_ready) => {
                    let (reason, message) = match &not_ready {
                        NotReady::Mount(m) => ("ContainerCreating", m.clone()),
                        NotReady::Config(m) => ("CreateContainerConfigError", m.clone()),
                        NotReady::Image(m) => ("ErrImagePull", m.clone()),
                    };
                    tracing::debug!(pod = %self.key, reason, message, "pod cannot start yet");
                    let initialized = self.rt.init.is_empty();
                    for c in &mut self.rt.containers {
                        c.state = if initialized || reason != "ContainerCreating" {
                            ContainerState::waiting(
                                reason,
                                (reason != "ContainerCreating").then(|| message.clone()),
                            )
                        } else {
                            ContainerState::waiting("PodInitializing", None)
                        };
                    }
                    self.dirty = true;
                    self.write_status().await;
                    if let Some(end) = self.pause(RETRY).await {
                        return end;
                    }
                }
            }
        };
        for (slot, launch) in self.slots.iter_mut().zip(launches) {
            slot.launch = Some(launch);
        }
        if let Some(end) = self.run_init_containers().await {
            return end;
        }
        if self.rt.phase().is_terminal() {
            self.dirty = true;
            self.write_status().await;
            return self.wait_terminal().await;
        }
        for i in 0..self.slots.len() {
            self.start_container(i);
        }
        self.dirty = true;
        self.main_loop().await
    }

    /// Waits `duration` for events while the pod cannot start; `Some` when the pod ended.
    async fn pause(&mut self, duration: Duration) -> Option<End> {
        let deadline = Instant::now() + duration;
        loop {
            let event = tokio::select! {
                e = self.events.recv() => e,
                () = tokio::time::sleep_until(deadline) => return None,
            };
            match event {
                None | Some(PodEvent::Gone) => return Some(End::Done),
                Some(PodEvent::NodeLost) => return Some(End::NodeLost),
                Some(PodEvent::Shutdown) => return Some(End::Shutdown),
                Some(PodEvent::Updated(p)) => {
                    self.pod = *p;
                    if self.deleting() {
                        self.finalize().await;
                        return Some(End::Done);
                    }
                }
                Some(PodEvent::Fault(Fault::Evict { message }, reply)) => {
                    self.rt.evicted = Some(("Evicted".to_owned(), message));
                    self.dirty = true;
                    self.write_status().await;
                    let _ = reply.send(Ok(()));
                    return Some(self.wait_terminal().await);
                }
                Some(PodEvent::Fault(_, reply)) => {
                    let _ = reply.send(Err(self.no_container("any")));
                }
            }
        }
    }

    fn no_container(&self, container: &str) -> FaultError {
        let (namespace, name) = self.key.split_once('/').unwrap_or_default();
        FaultError::NoSuchContainer {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            container: container.to_owned(),
        }
    }

    /// Resolves volumes and every container's environment; the launch of each container.
    async fn prepare(&mut self) -> Result<Vec<Launch>, NotReady> {
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let mut sources = Sources::new(self.ctx.client.clone(), &namespace);
        let volumes = resolve::materialise_volumes(&self.pod, &mut sources, &self.dir).await?;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let mut kubeconfig: Option<PathBuf> = None;
        let mut launches = Vec::new();
        let automount = spec.automount_service_account_token != Some(false);
        for container in &spec.containers {
            let real = self
                .ctx
                .real_container(&container.name, image(container))
                .transpose()
                .map_err(NotReady::Image)?;
            let mounts = resolve::mounts(container, &volumes);
            // A real container sees its volumes at their mount paths; a process sees host paths.
            let rewrite: &[(String, PathBuf)] = match real {
                Some(Real::Image(_)) => &[],
                _ => &mounts,
            };
            if let Some(Real::Image(_)) = real {
                self.ensure_network().await?;
            }
            let env =
                resolve::environment(&self.pod, &self.rt.pod_ip, container, &mut sources, rewrite)
                    .await?;
            let launch = if let Some(real) = real {
                if kubeconfig.is_none() && automount {
                    kubeconfig = Some(self.service_account_kubeconfig(&namespace).await?);
                }
                match real {
                    Real::Program((program, extra)) => {
                        self.process_launch(program, container, env, extra, kubeconfig.as_ref())
                    }
                    Real::Image(extra) => {
                        self.container_launch(container, env, extra, &volumes, automount)
                            .await?
                    }
                }
            } else if container.name == RUNNER_CONTAINER {
                let jit = env
                    .iter()
                    .find(|(k, _)| k == JIT_ENV)
                    .map(|(_, v)| SecretString::from(v.clone()));
                let extra_ca = env
                    .iter()
                    .find(|(k, _)| k == "NODE_EXTRA_CA_CERTS")
                    .map(|(_, v)| PathBuf::from(v));
                let http = match extra_ca {
                    Some(path) => runner::http_client(Some(&path))
                        .map_err(|e| NotReady::Mount(format!("{e:#}")))?,
                    None => self.ctx.http.clone(),
                };
                Launch::Runner {
                    http: Box::new(http),
                    jit,
                }
            } else {
                Launch::Idle
            };
            launches.push(launch);
        }
        Ok(launches)
    }

    async fn service_account_kubeconfig(&mut self, namespace: &str) -> Result<PathBuf, NotReady> {
        if let Some(path) = &self.kubeconfig {
            return Ok(path.clone());
        }
        let token = token::request_token(&self.ctx.client, &self.pod)
            .await
            .map_err(|e| {
                NotReady::Mount(format!(
                    "MountVolume.SetUp failed for the ServiceAccount token: {e}"
                ))
            })?;
        let dir = self.dir.join("serviceaccount");
        let path = token::write_kubeconfig(&dir, &self.ctx.api_server, namespace, &token)
            .map_err(|e| NotReady::Mount(format!("writing the pod's kubeconfig: {e}")))?;
        self.background.push(tokio::spawn(token::refresh_forever(
            self.ctx.client.clone(),
            self.pod.clone(),
            dir,
        )));
        self.kubeconfig = Some(path.clone());
        Ok(path)
    }

    /// The pod's own network namespace and address (`status.podIP`), made once for a pod that
    /// runs real containers.
    async fn ensure_network(&mut self) -> Result<(), NotReady> {
        if self.network.is_some() {
            return Ok(());
        }
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let id: String = uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let network = PodNetwork::create(&id, self.ctx.host_ports.clone())
            .await
            .map_err(|e| NotReady::Mount(format!("setting up the pod network: {e}")))?;
        self.rt.pod_ip = network.address().to_string();
        self.dirty = true;
        self.network = Some(network);
        Ok(())
    }

    /// A real container: the pod's image with its environment, its volume mounts at their mount
    /// paths and, unless automounting is off, the in-cluster ServiceAccount files and the API
    /// server's address.
    async fn container_launch(
        &mut self,
        container: &Container,
        mut env: Vec<(String, String)>,
        extra: Vec<(String, String)>,
        volumes: &HashMap<String, PathBuf>,
        automount: bool,
    ) -> Result<Launch, NotReady> {
        let image = image(container);
        match container::image_present(image).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(NotReady::Image(format!(
                    "image {image:?} is not in the node's image store and cannot be pulled; fix: \
                     build it with `cargo xtask images` (or set the chart's image to one that is)"
                )));
            }
            Err(e) => return Err(NotReady::Image(e)),
        }
        let read_only = |path: &str| {
            container
                .volume_mounts
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|m| m.mount_path.trim_end_matches('/') == path && m.read_only == Some(true))
        };
        let mut mounts: Vec<(PathBuf, String, bool)> = resolve::mounts(container, volumes)
            .into_iter()
            .map(|(path, host)| (host, path.clone(), read_only(&path)))
            .collect();
        let declares_token = mounts
            .iter()
            .any(|(_, path, _)| path.trim_end_matches('/') == container::SERVICE_ACCOUNT_DIR);
        if automount && !declares_token {
            let dir = self.dir.join("serviceaccount");
            mounts.push((dir, container::SERVICE_ACCOUNT_DIR.to_owned(), true));
            let (host, port) = self.ctx.api_server.host_port();
            env.insert(0, ("KUBERNETES_SERVICE_HOST".to_owned(), host));
            env.insert(1, ("KUBERNETES_SERVICE_PORT".to_owned(), port));
        }
        let mut all = vec![(
            "HOSTNAME".to_owned(),
            self.pod.metadata.name.clone().unwrap_or_default(),
        )];
        all.append(&mut env);
        all.extend(extra);
        let mut spec = ContainerSpec::new(&self.pod, container, &self.dir, all, mounts);
        spec.network = self.network.as_ref().map(PodNetwork::path);
        Ok(Launch::Container {
            spec: Box::new(spec),
            log: self.dir.join(format!("{}.log", container.name)),
        })
    }

    fn process_launch(
        &self,
        program: PathBuf,
        container: &Container,
        mut env: Vec<(String, String)>,
        extra: Vec<(String, String)>,
        kubeconfig: Option<&PathBuf>,
    ) -> Launch {
        let host = |k: &str| std::env::var(k).ok().map(|v| (k.to_owned(), v));
        let mut base: Vec<(String, String)> = ["PATH", "LANG", "TZ"]
            .into_iter()
            .filter_map(host)
            .collect();
        base.push(("HOME".to_owned(), self.dir.display().to_string()));
        base.push((
            "HOSTNAME".to_owned(),
            self.pod.metadata.name.clone().unwrap_or_default(),
        ));
        if let Some(k) = kubeconfig {
            base.push(("KUBECONFIG".to_owned(), k.display().to_string()));
        }
        base.append(&mut env);
        base.extend(extra);
        Launch::Process {
            program,
            args: container.args.clone().unwrap_or_default(),
            env: base,
            dir: self.dir.clone(),
            log: self.dir.join(format!("{}.log", container.name)),
        }
    }

    /// The armed or annotated failure of init container `name`, if any.
    fn init_failure(&self, name: &str) -> Option<i32> {
        let (namespace, pod) = self.key.split_once('/').unwrap_or_default();
        if let Some(code) = self.ctx.armed_init_failure(namespace, pod, name) {
            return Some(code);
        }
        let annotation = self
            .pod
            .metadata
            .annotations
            .as_ref()?
            .get(FAIL_INIT_ANNOTATION)?;
        let (container, code) = match annotation.split_once('=') {
            Some((c, code)) => (c.trim(), code.trim().parse().unwrap_or(1)),
            None => (annotation.trim(), 1),
        };
        (container == name).then_some(code)
    }

    /// Runs init containers in order (each completes at once unless a failure is injected; a
    /// sidecar starts and keeps running).
    async fn run_init_containers(&mut self) -> Option<End> {
        let mut i = 0;
        let mut backoff = FIRST_BACKOFF;
        while i < self.rt.init.len() {
            let name = self.rt.init[i].name.clone();
            let at = now();
            self.rt.init[i].start(at);
            if self.rt.init[i].sidecar {
                i += 1;
                continue;
            }
            let code = self.init_failure(&name).unwrap_or(0);
            self.rt.init[i].terminate(code, None, at);
            if code == 0 {
                i += 1;
                continue;
            }
            tracing::info!(pod = %self.key, container = %name, code, "init container failed");
            if self.rt.phase().is_terminal() {
                return None;
            }
            self.dirty = true;
            self.write_status().await;
            if let Some(end) = self.pause(backoff).await {
                return Some(end);
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        None
    }

    fn start_container(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(launch) = slot.launch.clone() else {
            return;
        };
        slot.generation += 1;
        slot.restart_at = None;
        let podman_name = match &launch {
            Launch::Container { spec, .. } => Some(spec.container_name(slot.generation)),
            _ => None,
        };
        match workload::start(&self.key, launch, i, slot.generation, self.exits_tx.clone()) {
            Ok(started) => {
                slot.control = Some(started.control);
                self.rt.containers[i].start(now());
                if let Some(name) = podman_name {
                    self.rt.containers[i].container_id = Some(format!("podman://{name}"));
                }
                tracing::debug!(pod = %self.key, container = %self.rt.containers[i].name, pid = ?started.pid, "container started");
            }
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "container could not start");
                self.rt.containers[i].start(now());
                self.rt.containers[i].terminate(128, Some("StartError"), now());
                self.schedule_restart(i, 128);
            }
        }
        self.dirty = true;
    }

    fn schedule_restart(&mut self, i: usize, code: i32) {
        let policy = self.rt.restart_policy.as_str();
        let restart = !self.stopping
            && self.rt.evicted.is_none()
            && (policy == "Always" || (policy == "OnFailure" && code != 0));
        if !restart {
            return;
        }
        let slot = &mut self.slots[i];
        slot.restart_at = Some(Instant::now() + slot.backoff);
        let record = &mut self.rt.containers[i];
        record.last_state = Some(record.state.clone());
        record.state = ContainerState::waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {}s restarting failed container={} pod={}",
                slot.backoff.as_secs(),
                record.name,
                self.key
            )),
        );
        slot.backoff = (slot.backoff * 2).min(MAX_BACKOFF);
    }

    fn on_exit(&mut self, exit: Exit) {
        let Some(slot) = self.slots.get_mut(exit.index) else {
            return;
        };
        if slot.generation != exit.generation || slot.control.is_none() {
            return;
        }
        slot.control = None;
        let (code, reason) = match slot.forced.take() {
            Some((code, reason)) => (code, Some(reason)),
            None => (exit.code, None),
        };
        self.rt.containers[exit.index].terminate(code, reason, now());
        self.rt.containers[exit.index].set_message(exit.message);
        tracing::info!(pod = %self.key, container = %self.rt.containers[exit.index].name, code, reason = reason.unwrap_or_default(), "container exited");
        self.schedule_restart(exit.index, code);
        self.dirty = true;
    }

    fn signal_all(&mut self, signal: Signal) {
        for slot in &mut self.slots {
            if let Some(c) = &slot.control {
                let _ = c.send(signal);
            }
            slot.restart_at = None;
        }
    }

    /// Waits until no container is live or `deadline`; handles only exits.
    async fn wait_exits(&mut self, deadline: Instant) {
        while self.live() > 0 {
            tokio::select! {
                Some(exit) = self.exits_rx.recv() => self.on_exit(exit),
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    async fn main_loop(&mut self) -> End {
        loop {
            if self.rt.phase().is_terminal() && self.live() == 0 && self.rt.stop_sidecars(now()) {
                self.dirty = true;
            }
            self.write_status().await;
            if self.rt.phase().is_terminal() && self.live() == 0 {
                return self.wait_terminal().await;
            }
            let next_restart = self.slots.iter().filter_map(|s| s.restart_at).min();
            let far = Instant::now() + Duration::from_secs(3600);
            let retry = if self.dirty {
                Instant::now() + RETRY
            } else {
                far
            };
            tokio::select! {
                Some(exit) = self.exits_rx.recv() => self.on_exit(exit),
                event = self.events.recv() => match event {
                    None | Some(PodEvent::Gone) => return End::Done,
                    Some(PodEvent::NodeLost) => return End::NodeLost,
                    Some(PodEvent::Shutdown) => return End::Shutdown,
                    Some(PodEvent::Updated(p)) => {
                        self.pod = *p;
                        if self.deleting() {
                            return self.stop_and_remove().await;
                        }
                    }
                    Some(PodEvent::Fault(fault, reply)) => {
                        let result = self.inject(fault).await;
                        let _ = reply.send(result);
                    }
                },
                () = tokio::time::sleep_until(next_restart.unwrap_or(far)) => {
                    let due: Vec<usize> = self
                        .slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.restart_at.is_some_and(|t| t <= Instant::now()))
                        .map(|(i, _)| i)
                        .collect();
                    for i in due {
                        self.start_container(i);
                    }
                }
                () = tokio::time::sleep_until(retry) => {}
            }
        }
    }

    async fn inject(&mut self, fault: Fault) -> Result<(), FaultError> {
        match fault {
            Fault::Evict { message } => {
                tracing::info!(pod = %self.key, "evicting pod");
                self.stopping = true;
                self.rt.evicted = Some(("Evicted".to_owned(), message));
                self.signal_all(Signal::Kill);
                self.wait_exits(Instant::now() + KILL_WAIT).await;
                self.dirty = true;
                Ok(())
            }
            Fault::OomKill { container } => self.kill(&container, Some((137, "OOMKilled"))),
            Fault::Kill { container } => self.kill(&container, None),
        }
    }

    fn kill(
        &mut self,
        container: &str,
        forced: Option<(i32, &'static str)>,
    ) -> Result<(), FaultError> {
        let index = self
            .rt
            .containers
            .iter()
            .position(|c| c.name == container)
            .filter(|i| self.slots[*i].control.is_some())
            .ok_or_else(|| self.no_container(container))?;
        let slot = &mut self.slots[index];
        slot.forced = forced;
        if let Some(c) = &slot.control {
            let _ = c.send(Signal::Kill);
        }
        tracing::info!(pod = %self.key, container, oom = forced.is_some(), "killing container");
        Ok(())
    }

    /// Graceful deletion: SIGTERM, SIGKILL after the grace period, final status, removal.
    async fn stop_and_remove(&mut self) -> End {
        self.stopping = true;
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0);
        tracing::info!(pod = %self.key, grace, "stopping pod");
        self.signal_all(Signal::Term);
        let deadline = Instant::now() + Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        while self.live() > 0 {
            tokio::select! {
                Some(exit) = self.exits_rx.recv() => self.on_exit(exit),
                event = self.events.recv() => match event {
                    None | Some(PodEvent::Gone) => return End::Done,
                    Some(PodEvent::NodeLost) => return End::NodeLost,
                    Some(PodEvent::Shutdown) => return End::Shutdown,
                    Some(PodEvent::Updated(p)) => self.pod = *p,
                    Some(PodEvent::Fault(_, reply)) => {
                        let _ = reply.send(Err(self.no_container("any (the pod is stopping)")));
                    }
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if self.live() > 0 {
            self.signal_all(Signal::Kill);
            self.wait_exits(Instant::now() + KILL_WAIT).await;
        }
        self.rt.stop_sidecars(now());
        self.dirty = true;
        self.write_status().await;
        self.finalize().await;
        End::Done
    }

    /// A terminal pod: waits for its deletion, then removes it.
    async fn wait_terminal(&mut self) -> End {
        loop {
            if self.deleting() {
                self.finalize().await;
                return End::Done;
            }
            let retry = if self.dirty {
                RETRY
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                event = self.events.recv() => match event {
                    None | Some(PodEvent::Gone) => return End::Done,
                    Some(PodEvent::NodeLost) => return End::NodeLost,
                    Some(PodEvent::Shutdown) => return End::Shutdown,
                    Some(PodEvent::Updated(p)) => self.pod = *p,
                    Some(PodEvent::Fault(_, reply)) => {
                        let _ = reply.send(Err(self.no_container("any (the pod has terminated)")));
                    }
                },
                () = tokio::time::sleep(retry) => self.write_status().await,
            }
        }
    }

    /// Deletes the pod with grace 0 (the kubelet's last word); gone or replaced pods are fine.
    async fn finalize(&mut self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let mut delay = Duration::from_millis(200);
        for _ in 0..20 {
            match self.api.delete(&name, &params).await {
                Ok(_) => return,
                Err(e) if is_api_status(&e, 404) || is_api_status(&e, 409) => return,
                Err(e) => {
                    tracing::warn!(pod = %self.key, error = %e, "removing the pod failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Writes the status if it changed; on failure it stays dirty and is retried.
    async fn write_status(&mut self) {
        if !self.dirty {
            return;
        }
        let scheduled = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .and_then(|c| serde_json::to_value(c).ok());
        let status = self.rt.status(scheduled, now());
        if self.written.as_ref() == Some(&status) {
            self.dirty = false;
            return;
        }
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({ "status": status });
        match self
            .api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(pod) => {
                self.pod.status = pod.status;
                self.written = Some(status);
                self.dirty = false;
            }
            Err(e) if is_api_status(&e, 404) => self.dirty = false,
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "writing the pod status failed; retrying")
            }
        }
    }
}

fn image(c: &Container) -> &str {
    c.image.as_deref().unwrap_or_default()
}

/// Per-pod fault switches kept by the simulator: `(namespace, pod, init container) → exit code`.
pub(crate) type ArmedInitFailures = HashMap<(String, String, String), i32>;
