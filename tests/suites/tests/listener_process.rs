//! The listener as a real process: its config file, a ServiceAccount with exactly the Role the
//! AutoscalingListener reconciler grants (patch on the EphemeralRunnerSet and EphemeralRunners),
//! the local kube-apiserver (testbed), and the Actions emulator over real HTTP.
//!
//! The tests run `cargo build -p listener --bin listener` once per test binary (a no-op when the
//! binary is fresh). `LISTENER_TEST_CONFLICT_SECS` sets how long the session conflict of the
//! fault test lasts (default 10 s; the scenario is 60).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use actions_client::{
    ActionsClient, Credentials, JitSetting, NewRunnerScaleSet, Transport, TransportConfig,
};
use actions_emulator::{
    Emulator, EmulatorConfig, Endpoint, Fault, FaultKind, JobPhase, JobSpec, SessionState,
    TEST_APP_ID, TEST_APP_INSTALLATION_ID, TEST_APP_PRIVATE_KEY_PEM,
};
use anyhow::{Context, bail};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use testbed::ControlPlane;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(120);
const RUNNER_SET: &str = "arc-set";
const LISTENER_SA: &str = "arc-set-listener";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.github.com", "v1alpha1", kind),
        plural,
    )
}

fn ers() -> ApiResource {
    resource("EphemeralRunnerSet", "ephemeralrunnersets")
}

fn er() -> ApiResource {
    resource("EphemeralRunner", "ephemeralrunners")
}

/// The listener binary, built once per test binary if missing or older than its sources.
fn listener_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_listener().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_listener() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not in target/<profile>/deps")?;
    let root = suites::helm::workspace_root();
    let mut build = std::process::Command::new(env!("CARGO"));
    build.args(["build", "-p", "listener", "--bin", "listener"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .current_dir(&root)
        .status()
        .context("running cargo build -p listener")?;
    if !status.success() {
        bail!("cargo build -p listener failed ({status})");
    }
    let binary = profile_dir.join("listener");
    if !binary.exists() {
        bail!("{} is missing after the build", binary.display());
    }
    Ok(binary)
}

/// [`testbed::eventually`] with this suite's timeout.
async fn eventually<T, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    testbed::eventually(what, WAIT, check).await
}

/// The Kubernetes side: CRDs, a namespace, the EphemeralRunnerSet, and the listener's identity.
struct Cluster {
    ns: testbed::TestNamespace,
    admin: kube::Client,
    listener_kubeconfig: PathBuf,
}

impl Cluster {
    async fn new(prefix: &str) -> anyhow::Result<Self> {
        let cp = ControlPlane::shared().await?;
        let admin = cp.client();
        suites::helm::ensure_crds(&admin).await?;
        let ns = cp.test_namespace(prefix).await?;
        let name = ns.name().to_string();
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": LISTENER_SA, "namespace": name},
            "rules": [
                {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunnersets"],
                 "resourceNames": [RUNNER_SET], "verbs": ["patch"]},
                {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunners", "ephemeralrunners/status"],
                 "verbs": ["patch"]},
            ]
        });
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": LISTENER_SA, "namespace": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LISTENER_SA},
            "subjects": [{"kind": "ServiceAccount", "name": LISTENER_SA, "namespace": name}],
        });
        suites::helm::apply(&admin, &[role, binding]).await?;
        let listener_kubeconfig = cp.service_account_kubeconfig(&name, LISTENER_SA).await?;
        Ok(Cluster {
            ns,
            admin,
            listener_kubeconfig,
        })
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    async fn create_runner_set(&self, config_url: &str, scale_set_id: i64) -> anyhow::Result<()> {
        let object = json!({
            "apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunnerSet",
            "metadata": {"name": RUNNER_SET, "namespace": self.ns()},
            "spec": {
                "replicas": 0, "patchID": 0,
                "ephemeralRunnerSpec": {
                    "githubConfigUrl": config_url, "githubConfigSecret": "github-secret",
                    "runnerScaleSetId": scale_set_id,
                    "spec": {"containers": [{"name": "runner", "image": "runner:latest"}]}
                }
            }
        });
        suites::helm::apply(&self.admin, &[object]).await
    }

    async fn create_runner(&self, name: &str) -> anyhow::Result<()> {
        let object = json!({
            "apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunner",
            "metadata": {"name": name, "namespace": self.ns()},
            "spec": {"githubConfigUrl": "https://github.com/x", "githubConfigSecret": "github-secret",
                     "runnerScaleSetId": 1,
                     "spec": {"containers": [{"name": "runner", "image": "runner:latest"}]}}
        });
        suites::helm::apply(&self.admin, &[object]).await
    }

    async fn runner_set(&self) -> anyhow::Result<DynamicObject> {
        Ok(
            Api::<DynamicObject>::namespaced_with(self.admin.clone(), self.ns(), &ers())
                .get(RUNNER_SET)
                .await?,
        )
    }

    async fn runner(&self, name: &str) -> anyhow::Result<DynamicObject> {
        Ok(
            Api::<DynamicObject>::namespaced_with(self.admin.clone(), self.ns(), &er())
                .get(name)
                .await?,
        )
    }

    async fn replicas(&self) -> anyhow::Result<(i64, i64)> {
        let ers = self.runner_set().await?;
        let replicas = ers
            .data
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let patch_id = ers
            .data
            .pointer("/spec/patchID")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        Ok((replicas, patch_id))
    }

    async fn wait_replicas(&self, want: i64) -> anyhow::Result<()> {
        eventually(
            &format!("EphemeralRunnerSet replicas == {want}"),
            || async { Ok((self.replicas().await?.0 == want).then_some(())) },
        )
        .await
    }

    /// Sets the replicas as an admin, to see the listener write its count again.
    async fn scribble_replicas(&self, replicas: i64) -> anyhow::Result<()> {
        Api::<DynamicObject>::namespaced_with(self.admin.clone(), self.ns(), &ers())
            .patch(
                RUNNER_SET,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await?;
        Ok(())
    }

    async fn wait_job_status(&self, runner: &str, request_id: i64) -> anyhow::Result<Value> {
        eventually(
            &format!("EphemeralRunner {runner} status with jobRequestId {request_id}"),
            || async {
                let status = self.runner(runner).await?.data["status"].clone();
                Ok((status["jobRequestId"] == json!(request_id)).then_some(status))
            },
        )
        .await
    }
}

/// A running listener process with its output captured.
struct ListenerProcess {
    child: Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    health_port: u16,
    metrics_port: u16,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn capture(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    sink: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    echo: &'static str,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[listener {echo}] {line}");
            sink.lock().expect("output lock").push(line);
        }
    });
}

impl ListenerProcess {
    /// Starts the listener with `config` (health and metrics ports are filled in) and `kubeconfig`.
    async fn start(config: Value, kubeconfig: &Path) -> anyhow::Result<Self> {
        Self::start_with_env(config, kubeconfig, &[]).await
    }

    async fn start_with_env(
        mut config: Value,
        kubeconfig: &Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let binary = listener_binary()?;
        let dir = TempDir::new("listener-test")?;
        let health_port = testbed::free_port()?;
        let metrics_port = testbed::free_port()?;
        if config.get("health_addr").is_none() {
            config["health_addr"] = json!(format!("127.0.0.1:{health_port}"));
        }
        if config.get("metrics_addr").is_none() {
            config["metrics_addr"] = json!(format!("127.0.0.1:{metrics_port}"));
        }
        let path = dir.0.join("config.json");
        std::fs::write(&path, format!("{config}\n"))?;
        let mut child = Command::new(binary)
            .env("LISTENER_CONFIG_PATH", &path)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the listener")?;
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            capture(out, output.clone(), "out");
        }
        if let Some(err) = child.stderr.take() {
            capture(err, output.clone(), "err");
        }
        Ok(ListenerProcess {
            child,
            output,
            health_port,
            metrics_port,
            _dir: dir,
        })
    }

    fn output(&self) -> String {
        self.output.lock().expect("output lock").join("\n")
    }

    fn assert_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the listener exited ({status}); output:\n{}", self.output());
        }
        Ok(())
    }

    async fn ready(&self) -> anyhow::Result<bool> {
        Ok(
            testbed::http_get(([127, 0, 0, 1], self.health_port).into(), "/readyz")
                .await?
                .0
                == 200,
        )
    }

    async fn live(&self) -> anyhow::Result<bool> {
        Ok(
            testbed::http_get(([127, 0, 0, 1], self.health_port).into(), "/healthz")
                .await?
                .0
                == 200,
        )
    }

    async fn exit_code(mut self) -> anyhow::Result<(i32, String)> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .context("the listener did not exit")??;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok((status.code().unwrap_or(-1), self.output()))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        eventually("listener readiness", || async {
            Ok(self.ready().await.unwrap_or(false).then_some(()))
        })
        .await?;
        self.assert_running()
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) =
            testbed::http_get(([127, 0, 0, 1], self.metrics_port).into(), "/metrics").await?;
        if status != 200 {
            bail!("metrics endpoint answered {status}");
        }
        Ok(body)
    }

    /// SIGTERM, then the exit code.
    async fn terminate(mut self) -> anyhow::Result<(i32, String)> {
        let pid = self.child.id().context("listener already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("the listener did not exit within the 60 s grace period")??;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok((status.code().unwrap_or(-1), self.output()))
    }
}

/// ARC's config file for this scale set (the controller's exact keys, plus our optional ones).
fn arc_config(
    config_url: &str,
    token: &str,
    ns: &str,
    scale_set_id: i64,
    min: i64,
    max: i64,
) -> Value {
    json!({"configure_url": config_url, "vault_type": "", "vault_lookup_key": "",
        "github_app_id": "", "github_app_installation_id": 0, "github_app_private_key": "",
        "github_token": token,
        "ephemeral_runner_set_namespace": ns, "ephemeral_runner_set_name": RUNNER_SET,
        "max_runners": max, "min_runners": min, "runner_scale_set_id": scale_set_id,
        "runner_scale_set_name": RUNNER_SET, "server_root_ca": "", "log_level": "debug",
        "log_format": "json", "metrics_endpoint": "", "metrics": null,
        "liveness_stale_after_seconds": 60, "session_conflict_timeout_seconds": 600})
}

/// The emulator with a scale set `arc-set` (label `arc-set`) in the default runner group.
struct Service {
    emu: Emulator,
    client: ActionsClient,
    config_url: String,
    scale_set_id: i64,
}

impl Service {
    async fn start() -> anyhow::Result<Self> {
        Self::start_with(false).await
    }

    /// With `tls`, the emulator serves HTTPS with its own CA ([`Emulator::ca_pem`]).
    async fn start_with(tls: bool) -> anyhow::Result<Self> {
        let config = EmulatorConfig {
            long_poll_hold: Duration::from_secs(2),
            ..EmulatorConfig::default()
        };
        let emu = if tls {
            Emulator::start_tls(config).await?
        } else {
            Emulator::start(config).await?
        };
        let config_url = emu.org_url("octo-org");
        let transport = Transport::new(TransportConfig {
            root_ca_pem: emu.ca_pem().map(str::to_owned),
            ..TransportConfig::default()
        })?;
        let client = ActionsClient::builder(config_url.clone(), Credentials::pat(emu.pat())?)
            .transport(transport)
            .build()?;
        let set = client
            .create_runner_scale_set(&NewRunnerScaleSet::new(RUNNER_SET, 1))
            .await?;
        Ok(Service {
            emu,
            client,
            config_url,
            scale_set_id: set.id,
        })
    }

    fn config(&self, ns: &str, min: i64, max: i64) -> Value {
        let pat = self.emu.pat();
        arc_config(
            &self.config_url,
            pat.expose_secret(),
            ns,
            self.scale_set_id,
            min,
            max,
        )
    }

    fn queue(&self, n: usize) -> Vec<i64> {
        (0..n)
            .map(|_| self.emu.queue_job(JobSpec::with_labels([RUNNER_SET])))
            .collect()
    }

    fn phase(&self, id: i64) -> Option<JobPhase> {
        self.emu.snapshot().job(id).map(|j| j.phase)
    }

    /// Waits until every job in `ids` was acquired by the listener (and assigned).
    async fn wait_acquired(&self, ids: &[i64]) -> anyhow::Result<()> {
        let ids = ids.to_vec();
        self.emu
            .wait_until(WAIT, |s| {
                ids.iter().all(|id| {
                    s.job(*id).is_some_and(|j| {
                        !matches!(j.phase, JobPhase::Queued | JobPhase::Available)
                            && j.acquired_at.is_some()
                    })
                })
            })
            .await?;
        Ok(())
    }

    fn active_session(&self) -> Option<String> {
        self.emu
            .snapshot()
            .active_session(self.scale_set_id)
            .map(|s| s.id.clone())
    }
}

fn conflict_duration() -> Duration {
    let secs = std::env::var("LISTENER_TEST_CONFLICT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// Every metric of ARC's listener (docs/architecture.md#listener-metrics-and-health) with its type.
const ARC_METRICS: [(&str, &str); 12] = [
    ("gha_assigned_jobs", "gauge"),
    ("gha_running_jobs", "gauge"),
    ("gha_registered_runners", "gauge"),
    ("gha_busy_runners", "gauge"),
    ("gha_idle_runners", "gauge"),
    ("gha_min_runners", "gauge"),
    ("gha_max_runners", "gauge"),
    ("gha_desired_runners", "gauge"),
    ("gha_started_jobs", "counter"),
    ("gha_completed_jobs", "counter"),
    ("gha_job_startup_duration_seconds", "histogram"),
    ("gha_job_execution_duration_seconds", "histogram"),
];

#[tokio::test]
async fn jobs_scale_the_runner_set_and_job_started_marks_the_runner() -> anyhow::Result<()> {
    let cluster = Cluster::new("listener-jobs").await?;
    let service = Service::start().await?;
    cluster
        .create_runner_set(&service.config_url, service.scale_set_id)
        .await?;
    cluster.create_runner("runner-a").await?;
    let mut listener = ListenerProcess::start(
        service.config(cluster.ns(), 1, 5),
        &cluster.listener_kubeconfig,
    )
    .await?;
    listener.wait_ready().await?;
    cluster.wait_replicas(1).await?;

    let first = service.queue(3);
    cluster.wait_replicas(4).await?;
    let (_, patch_id) = cluster.replicas().await?;
    assert!(
        patch_id > 0,
        "a scale-up carries a fresh patchID, not {patch_id}"
    );
    service.wait_acquired(&first).await?;
    let more = service.queue(4);
    cluster.wait_replicas(5).await?;
    let capacity = service
        .emu
        .snapshot()
        .scale_set(service.scale_set_id)
        .and_then(|s| s.max_capacity);
    assert_eq!(capacity, Some(5), "X-ScaleSetMaxCapacity is max_runners");

    let jit = service
        .client
        .generate_jit_config(
            service.scale_set_id,
            &JitSetting {
                name: "runner-a".into(),
                work_folder: String::new(),
            },
        )
        .await?;
    let conn = service
        .emu
        .runner_connect(jit.encoded_jit_config.expose_secret())?;
    let job = service
        .emu
        .runner_job(&conn, WAIT)
        .await?
        .context("no job for runner-a")?;
    service.emu.runner_started(&conn)?;
    let status = cluster
        .wait_job_status("runner-a", job.runner_request_id)
        .await?;
    assert_eq!(
        status["jobRepositoryName"],
        json!("octo-org/app"),
        "{status}"
    );
    assert_eq!(status["jobDisplayName"], json!("build"), "{status}");
    assert_eq!(status["jobId"], json!(job.job_id), "{status}");
    service.emu.runner_completed(&conn, None)?;

    for id in first.iter().chain(&more) {
        service.emu.cancel_job(*id);
    }
    cluster.wait_replicas(1).await?;
    let (_, patch_id) = cluster.replicas().await?;
    eventually("patchID 0 once resting at minRunners", || async {
        Ok((cluster.replicas().await? == (1, 0)).then_some(()))
    })
    .await
    .with_context(|| format!("last patchID {patch_id}"))?;
    listener.assert_running()?;

    let text = eventually("stage histograms up to started_to_completed", || async {
        let text = listener.metrics().await?;
        Ok(text
            .contains("stage=\"started_to_completed\"")
            .then_some(text))
    })
    .await?;
    for (name, kind) in ARC_METRICS {
        let line = format!("# TYPE {name} {kind}");
        assert!(text.contains(&line), "metrics lack {line:?}:\n{text}");
    }
    for needle in [
        "gha_min_runners{enterprise=\"\",organization=\"octo-org\",repository=\"\",name=\"arc-set\",namespace=",
        "gha_max_runners{enterprise=\"\",organization=\"octo-org\",repository=\"\",name=\"arc-set\",namespace=",
        "gha_started_jobs_total{enterprise=\"\",organization=\"octo-org\",repository=\"app\",job_name=\"build\",event_name=\"push\"} 1",
        "gha_completed_jobs_total{enterprise=\"\",organization=\"octo-org\",repository=\"app\",job_name=\"build\",event_name=\"push\",job_result=\"succeeded\"} 1",
        "gha_job_startup_duration_seconds_count{enterprise=\"\",organization=\"octo-org\",repository=\"app\",job_name=\"build\",event_name=\"push\"} 1",
        "gha_job_execution_duration_seconds_count{",
        "# TYPE arcrs_job_stage_duration_seconds histogram",
        "arcrs_listener_last_poll_timestamp_seconds",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    for stage in [
        "queued_to_available",
        "available_to_acquired",
        "acquired_to_assigned",
        "assigned_to_started",
        "started_to_completed",
    ] {
        let count = format!("arcrs_job_stage_duration_seconds_count{{stage=\"{stage}\"");
        assert!(text.contains(&count), "metrics lack {count:?}:\n{text}");
    }

    let out = listener.output();
    let pat = service.emu.pat();
    assert!(
        !out.contains(pat.expose_secret()),
        "the PAT leaked into the logs"
    );
    let started = out
        .lines()
        .find(|l| l.contains("\"job started\""))
        .with_context(|| format!("no job started line in:\n{out}"))?;
    let line: Value = serde_json::from_str(started.trim_start_matches("[listener out] "))?;
    assert_eq!(
        line["span"]["scale_set_id"],
        json!(service.scale_set_id),
        "{started}"
    );
    assert_eq!(line["job_id"], json!(job.job_id), "{started}");

    let session = service.active_session().context("a live session")?;
    let (code, out) = listener.terminate().await?;
    assert_eq!(code, 0, "{out}");
    let snap = service.emu.snapshot();
    let record = snap
        .sessions
        .iter()
        .find(|s| s.id == session)
        .context("session record")?;
    assert_eq!(
        record.state,
        SessionState::Deleted,
        "SIGTERM deletes the session"
    );
    Ok(())
}

#[tokio::test]
async fn every_fault_is_survived_without_losing_a_job() -> anyhow::Result<()> {
    let cluster = Cluster::new("listener-faults").await?;
    let service = Service::start().await?;
    cluster
        .create_runner_set(&service.config_url, service.scale_set_id)
        .await?;

    let foreign = service
        .client
        .create_message_session(service.scale_set_id, "listener-in-another-cluster")
        .await?;
    let conflict = conflict_duration();
    let mut config = service.config(cluster.ns(), 0, 10);
    config["session_conflict_timeout_seconds"] = json!(conflict.as_secs() + 300);
    let mut listener = ListenerProcess::start(config, &cluster.listener_kubeconfig).await?;
    eventually("the listener meets the session conflict", || async {
        Ok(listener
            .output()
            .contains("another session exists for this scale set")
            .then_some(()))
    })
    .await?;
    tokio::time::sleep(conflict).await;
    listener.assert_running()?;
    assert!(
        !listener.ready().await?,
        "not ready while another session holds the scale set"
    );
    service
        .client
        .delete_message_session(service.scale_set_id, &foreign.session_id)
        .await?;
    listener.wait_ready().await?;

    let mut jobs = service.queue(2);
    cluster.wait_replicas(2).await?;
    service.wait_acquired(&jobs).await?;

    service.emu.expire_message_queue_token(service.scale_set_id);
    jobs.extend(service.queue(1));
    cluster.wait_replicas(3).await?;
    let refreshed = service
        .emu
        .snapshot()
        .active_session(service.scale_set_id)
        .map_or(0, |s| s.refreshes);
    assert!(refreshed >= 1, "the queue token was not refreshed");

    let before = service.emu.count(Endpoint::CreateSession);
    service.emu.expire_admin_tokens();
    service.emu.expire_session(service.scale_set_id);
    jobs.extend(service.queue(1));
    cluster.wait_replicas(4).await?;
    assert!(
        service.emu.count(Endpoint::CreateSession) > before,
        "the dropped session was not re-created"
    );

    let burst = |endpoint, status, times| {
        Fault::on(
            endpoint,
            FaultKind::Status {
                status,
                retry_after: None,
                type_key: None,
                message: None,
            },
            times,
        )
    };
    service.emu.inject(burst(Endpoint::GetMessage, 503, 7));
    service.emu.inject(burst(Endpoint::AcquireJobs, 500, 2));
    service.emu.inject(burst(Endpoint::DeleteMessage, 502, 2));
    jobs.extend(service.queue(1));
    cluster.wait_replicas(5).await?;

    service.emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::DropConnection,
        6,
    ));
    service.emu.inject(Fault::on(
        Endpoint::AcquireJobs,
        FaultKind::DropConnection,
        2,
    ));
    jobs.extend(service.queue(1));
    cluster.wait_replicas(6).await?;

    for body in [
        "{\"messageId\": 1, \"messageType\": \"RunnerScaleSetJobMessages\", \"body\": \"[{not json\"}",
        "<html>proxy error</html>",
    ] {
        service.emu.inject(Fault::on(
            Endpoint::GetMessage,
            FaultKind::Respond {
                status: 200,
                content_type: Some("application/json".into()),
                body: body.into(),
            },
            2,
        ));
    }
    jobs.extend(service.queue(1));
    cluster.wait_replicas(7).await?;

    service.wait_acquired(&jobs).await?;
    assert!(service.emu.faults().is_empty(), "every fault fired");
    listener.assert_running()?;

    for id in &jobs {
        service.emu.cancel_job(*id);
    }
    cluster.wait_replicas(0).await?;
    assert!(
        jobs.iter()
            .all(|id| service.phase(*id) == Some(JobPhase::Completed)),
        "jobs: {:?}",
        service.emu.snapshot().jobs
    );
    let session = service.active_session().context("a live session")?;
    let (code, out) = listener.terminate().await?;
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains(service.emu.pat().expose_secret()),
        "the PAT leaked into the logs"
    );
    assert!(
        service.active_session().is_none(),
        "session {session} not deleted on SIGTERM"
    );
    Ok(())
}

#[tokio::test]
async fn liveness_fails_when_the_service_stops_answering_polls() -> anyhow::Result<()> {
    let cluster = Cluster::new("listener-live").await?;
    let service = Service::start().await?;
    cluster
        .create_runner_set(&service.config_url, service.scale_set_id)
        .await?;
    let mut config = service.config(cluster.ns(), 0, 3);
    config["liveness_stale_after_seconds"] = json!(5);
    let mut listener = ListenerProcess::start(config, &cluster.listener_kubeconfig).await?;
    listener.wait_ready().await?;
    assert!(listener.live().await?, "live while polls complete");
    cluster.scribble_replicas(3).await?;
    cluster.wait_replicas(0).await?;
    service.emu.inject(Fault {
        endpoint: Some(Endpoint::GetMessage.as_str().to_owned()),
        kind: FaultKind::Delay { ms: 600_000 },
        times: None,
        rate: None,
    });
    eventually("liveness failing", || async {
        Ok((!listener.live().await?).then_some(()))
    })
    .await?;
    listener.assert_running()?;
    let (code, out) = listener.terminate().await?;
    assert_eq!(code, 0, "a stuck poll does not block shutdown: {out}");
    Ok(())
}

#[tokio::test]
async fn rejected_credentials_exit_1_with_the_fix() -> anyhow::Result<()> {
    let cluster = Cluster::new("listener-auth").await?;
    let service = Service::start().await?;
    cluster
        .create_runner_set(&service.config_url, service.scale_set_id)
        .await?;
    let mut config = service.config(cluster.ns(), 0, 3);
    config["github_token"] = json!("ghp_revokedToken0000000000000000000000");
    let listener = ListenerProcess::start(config, &cluster.listener_kubeconfig).await?;
    let (code, out) = listener.exit_code().await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("authentication failed") && out.contains("fix:"),
        "{out}"
    );
    assert!(!out.contains("ghp_revokedToken"), "{out}");
    Ok(())
}

#[tokio::test]
async fn github_app_over_https_with_server_root_ca() -> anyhow::Result<()> {
    let cluster = Cluster::new("listener-app").await?;
    let service = Service::start_with(true).await?;
    cluster
        .create_runner_set(&service.config_url, service.scale_set_id)
        .await?;
    let mut config = service.config(cluster.ns(), 1, 3);
    config["github_token"] = json!("");
    config["github_app_id"] = json!(TEST_APP_ID.to_string());
    config["github_app_installation_id"] = json!(TEST_APP_INSTALLATION_ID);
    config["github_app_private_key"] = json!(TEST_APP_PRIVATE_KEY_PEM);
    config["server_root_ca"] = json!(service.emu.ca_pem().context("TLS emulator CA")?);
    let mut listener = ListenerProcess::start(config, &cluster.listener_kubeconfig).await?;
    listener.wait_ready().await?;
    cluster.wait_replicas(1).await?;
    let jobs = service.queue(1);
    cluster.wait_replicas(2).await?;
    service.wait_acquired(&jobs).await?;
    assert!(
        service.emu.count(Endpoint::InstallationToken) >= 1,
        "the App's installation token was used"
    );
    let (code, out) = listener.terminate().await?;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("PRIVATE KEY"), "the App key leaked: {out}");
    Ok(())
}

#[tokio::test]
async fn github_calls_go_through_the_proxy_from_the_environment() -> anyhow::Result<()> {
    let cluster = Cluster::new("listener-proxy").await?;
    let service = Service::start().await?;
    cluster
        .create_runner_set(&service.config_url, service.scale_set_id)
        .await?;
    let forward = actions_emulator::proxy::Proxy::start(service.emu.addr()).await?;
    let proxy = forward.url();
    let host = format!("github.proxied.invalid:{}", service.emu.addr().port());
    let mut config = service.config(cluster.ns(), 2, 4);
    config["configure_url"] = json!(format!("http://{host}/octo-org"));
    // The emulator speaks plain HTTP, so `http_proxy` (the lower-case name the controller
    // injects) applies. `https_proxy` is left out: kube-client, built without its `http-proxy`
    // feature, refuses any HTTPS_PROXY when it reads a kubeconfig (in a pod it uses the
    // in-cluster config, which ignores the variable).
    let env = [
        ("http_proxy", proxy),
        ("no_proxy", "127.0.0.1,localhost".to_string()),
    ];
    let mut listener =
        ListenerProcess::start_with_env(config, &cluster.listener_kubeconfig, &env).await?;
    listener.wait_ready().await?;
    cluster.wait_replicas(2).await?;
    let records = forward.records();
    let registration =
        format!("http://{host}/api/v3/orgs/octo-org/actions/runners/registration-token");
    assert!(
        records
            .iter()
            .any(|r| r.method == "POST" && r.target == registration),
        "the proxy saw {records:?}"
    );
    let (code, out) = listener.terminate().await?;
    assert_eq!(code, 0, "{out}");
    Ok(())
}

#[tokio::test]
async fn bad_config_exits_with_code_2_naming_the_key() -> anyhow::Result<()> {
    let binary = listener_binary()?;
    let dir = TempDir::new("listener-badconfig")?;
    let cases = [
        (
            json!({"min_runners": 5, "max_runners": 2}),
            "config key `min_runners`",
        ),
        (
            json!({"log_format": "yaml"}),
            "config key `log_format`: invalid log format \"yaml\"",
        ),
        (
            json!({"runner_scale_set_id": 0}),
            "config key `runner_scale_set_id`",
        ),
        (
            json!({"github_token": ""}),
            "config key `github_token`: no credentials",
        ),
        (
            json!({"configure_url": "https://github.com/a/b/c/d"}),
            "config key `configure_url`",
        ),
    ];
    for (i, (change, expected)) in cases.into_iter().enumerate() {
        let mut config = arc_config("https://github.com/org", "ghp_topsecret", "ns", 1, 0, 10);
        for (k, v) in change.as_object().context("object")? {
            config[k] = v.clone();
        }
        let path = dir.0.join(format!("config-{i}.json"));
        std::fs::write(&path, config.to_string())?;
        let out = Command::new(&binary)
            .env("LISTENER_CONFIG_PATH", &path)
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(
            stderr.contains(expected),
            "case {i}: expected {expected:?} in {stderr:?}"
        );
        assert!(stderr.contains("fix:"), "case {i}: no fix in {stderr:?}");
        assert!(
            !stderr.contains("ghp_topsecret"),
            "case {i}: secret leaked: {stderr:?}"
        );
    }
    let out = Command::new(&binary)
        .env_remove("LISTENER_CONFIG_PATH")
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LISTENER_CONFIG_PATH"));
    let out = Command::new(&binary)
        .env("LISTENER_CONFIG_PATH", dir.0.join("missing.json"))
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
    Ok(())
}

/// Issue #19: a rate-limited poll (GitHub's secondary limit, a 429 that names no wait) is waited
/// out: no poll while the limit lasts (at least a minute), no exit and no new session, and the
/// poll after it picks up the queued job. The log says so without the PAT.
#[tokio::test]
async fn a_rate_limited_poll_is_waited_out() -> anyhow::Result<()> {
    let cluster = Cluster::new("listener-ratelimit").await?;
    let service = Service::start().await?;
    cluster
        .create_runner_set(&service.config_url, service.scale_set_id)
        .await?;
    let mut listener = ListenerProcess::start(
        service.config(cluster.ns(), 0, 3),
        &cluster.listener_kubeconfig,
    )
    .await?;
    listener.wait_ready().await?;
    service.emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::secondary_rate_limit(429),
        1,
    ));
    eventually("a poll answered with the rate limit", || async {
        Ok(service.emu.faults().is_empty().then_some(()))
    })
    .await?;
    let polls = service.emu.count(Endpoint::GetMessage);
    let sessions = service.emu.count(Endpoint::CreateSession);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        service.emu.count(Endpoint::GetMessage),
        polls,
        "a poll while the rate limit lasts"
    );
    listener.assert_running()?;
    let jobs = service.queue(1);
    cluster.wait_replicas(1).await?;
    service.wait_acquired(&jobs).await?;
    assert_eq!(
        service.emu.count(Endpoint::CreateSession),
        sessions,
        "the session was kept"
    );
    let (code, out) = listener.terminate().await?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rate limited"), "{out}");
    assert!(
        !out.contains(service.emu.pat().expose_secret()),
        "the PAT leaked into the logs"
    );
    Ok(())
}
