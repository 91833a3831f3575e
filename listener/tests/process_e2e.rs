//! The listener binary as a real process: real kube-apiserver (testbed), a ServiceAccount with
//! exactly the listener Role (patch on the EphemeralRunnerSet and EphemeralRunners), SIGTERM, exit
//! codes, health and metrics over HTTP. The Actions side is `support::fake_actions` until the
//! shared emulator ships.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{conditions, wait::await_condition};
use serde_json::{Value, json};
use support::fake_actions::{FakeActions, GOOD_PAT};
use testbed::ControlPlane;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(90);
const SET: &str = "arc-set";
const SA: &str = "arc-set-listener";
const HOLD: Duration = Duration::from_secs(2);

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

async fn apply(
    client: &kube::Client,
    res: &ApiResource,
    ns: &str,
    obj: Value,
) -> anyhow::Result<()> {
    let name = obj["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_string();
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, res)
        .patch(
            &name,
            &PatchParams::apply("listener-e2e").force(),
            &Patch::Apply(obj),
        )
        .await
        .with_context(|| format!("applying {} {name}", res.kind))?;
    Ok(())
}

async fn ensure_crds(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (kind, plural) in [
        ("EphemeralRunnerSet", "ephemeralrunnersets"),
        ("EphemeralRunner", "ephemeralrunners"),
    ] {
        let name = format!("{plural}.actions.github.com");
        if crds.get_opt(&name).await?.is_none() {
            let crd: CustomResourceDefinition = serde_json::from_value(json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {"group": "actions.github.com", "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
            }))?;
            match crds.create(&Default::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established"))??;
    }
    Ok(())
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(format!("{e:#}")),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Namespace, EphemeralRunnerSet, and the listener's ServiceAccount with only its Role.
struct Cluster {
    ns: testbed::TestNamespace,
    admin: kube::Client,
    kubeconfig: PathBuf,
}

impl Cluster {
    async fn new() -> anyhow::Result<Self> {
        let cp = ControlPlane::shared().await?;
        let admin = cp.client();
        ensure_crds(&admin).await?;
        let ns = cp.test_namespace("listener-e2e").await?;
        let name = ns.name().to_string();
        let rbac = |kind: &str| {
            ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
                &format!("{}s", kind.to_lowercase()),
            )
        };
        apply(&admin, &rbac("Role"), &name, json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": SA, "namespace": name},
            "rules": [
                {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunnersets"], "resourceNames": [SET], "verbs": ["patch"]},
                {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunners", "ephemeralrunners/status"], "verbs": ["patch"]}
            ]})).await?;
        apply(&admin, &rbac("RoleBinding"), &name, json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": SA, "namespace": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA},
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": name}]})).await?;
        apply(
            &admin,
            &ers(),
            &name,
            json!({"apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunnerSet",
            "metadata": {"name": SET, "namespace": name}, "spec": {"replicas": 0, "patchID": 0}}),
        )
        .await?;
        let kubeconfig = cp.service_account_kubeconfig(&name, SA).await?;
        Ok(Cluster {
            ns,
            admin,
            kubeconfig,
        })
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    async fn replicas(&self) -> anyhow::Result<i64> {
        let set = Api::<DynamicObject>::namespaced_with(self.admin.clone(), self.ns(), &ers())
            .get(SET)
            .await?;
        Ok(set
            .data
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0))
    }

    async fn wait_replicas(&self, want: i64) -> anyhow::Result<()> {
        eventually(&format!("replicas == {want}"), || async {
            Ok((self.replicas().await? == want).then_some(()))
        })
        .await
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("listener-e2e-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok((
        status,
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

struct Proc {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    health: u16,
    metrics: u16,
    _dir: TempDir,
}

fn capture(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[listener] {line}");
            sink.lock().expect("lock").push(line);
        }
    });
}

fn config(fake: &FakeActions, ns: &str, min: i64, max: i64) -> Value {
    json!({"configure_url": fake.config_url(), "vault_type": "", "vault_lookup_key": "",
        "github_app_id": "", "github_app_installation_id": 0, "github_app_private_key": "",
        "github_token": GOOD_PAT, "ephemeral_runner_set_namespace": ns, "ephemeral_runner_set_name": SET,
        "max_runners": max, "min_runners": min, "runner_scale_set_id": 1, "runner_scale_set_name": SET,
        "server_root_ca": "", "log_level": "debug", "log_format": "json", "metrics_endpoint": "", "metrics": null,
        "liveness_stale_after_seconds": 30, "session_conflict_timeout_seconds": 600})
}

impl Proc {
    async fn start(config: Value, kubeconfig: &Path) -> anyhow::Result<Self> {
        Self::start_with_env(config, kubeconfig, &[]).await
    }

    async fn start_with_env(
        mut config: Value,
        kubeconfig: &Path,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let dir = TempDir::new()?;
        let (health, metrics) = (free_port()?, free_port()?);
        config["health_addr"] = json!(format!("127.0.0.1:{health}"));
        config["metrics_addr"] = json!(format!("127.0.0.1:{metrics}"));
        let path = dir.0.join("config.json");
        std::fs::write(&path, format!("{config}\n"))?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_listener"))
            .env("LISTENER_CONFIG_PATH", &path)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let output = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().context("stdout")?, output.clone());
        capture(child.stderr.take().context("stderr")?, output.clone());
        Ok(Proc {
            child,
            output,
            health,
            metrics,
            _dir: dir,
        })
    }

    fn output(&self) -> String {
        self.output.lock().expect("lock").join("\n")
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the listener exited ({status}):\n{}", self.output());
        }
        Ok(())
    }

    async fn probe(&self, path: &str) -> u16 {
        http_get(self.health, path).await.map(|r| r.0).unwrap_or(0)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        eventually("readiness", || async {
            Ok((self.probe("/readyz").await == 200).then_some(()))
        })
        .await?;
        self.alive()
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http_get(self.metrics, "/metrics").await?;
        anyhow::ensure!(status == 200, "metrics answered {status}");
        Ok(body)
    }

    async fn terminate(mut self) -> anyhow::Result<(i32, String)> {
        let pid = self.child.id().context("already exited")?;
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("no exit within the 60 s grace period")??;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok((status.code().unwrap_or(-1), self.output()))
    }

    async fn exit_code(mut self) -> anyhow::Result<(i32, String)> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .context("did not exit")??;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok((status.code().unwrap_or(-1), self.output()))
    }
}

#[tokio::test]
async fn replicas_follow_jobs_and_job_started_marks_the_runner() -> anyhow::Result<()> {
    let cluster = Cluster::new().await?;
    let fake = FakeActions::start(HOLD).await?;
    apply(&cluster.admin, &er(), cluster.ns(), json!({"apiVersion": "actions.github.com/v1alpha1",
        "kind": "EphemeralRunner", "metadata": {"name": "runner-a", "namespace": cluster.ns()}, "spec": {}})).await?;
    let mut p = Proc::start(config(&fake, cluster.ns(), 1, 5), &cluster.kubeconfig).await?;
    p.wait_ready().await?;
    cluster.wait_replicas(1).await?;

    let jobs = fake.queue_jobs(3);
    cluster.wait_replicas(4).await?;
    eventually("3 jobs acquired", || async {
        Ok((fake.with(|s| s.acquired.len()) == 3).then_some(()))
    })
    .await?;
    let more = fake.queue_jobs(4);
    cluster.wait_replicas(5).await?;

    fake.start_job(jobs[0], "runner-a");
    eventually("runner-a status patched", || async {
        let runner =
            Api::<DynamicObject>::namespaced_with(cluster.admin.clone(), cluster.ns(), &er())
                .get("runner-a")
                .await?;
        Ok(
            (runner.data.pointer("/status/jobRequestId") == Some(&json!(jobs[0])))
                .then_some(runner),
        )
    })
    .await?;

    for id in jobs.iter().chain(&more) {
        fake.complete_job(*id, "runner-a");
    }
    cluster.wait_replicas(1).await?;
    p.alive()?;

    let text = p.metrics().await?;
    for needle in [
        "gha_assigned_jobs{enterprise=\"\",organization=\"octo-org\",repository=\"\",name=\"arc-set\"",
        "gha_desired_runners{",
        "gha_max_runners{enterprise=\"\",organization=\"octo-org\",repository=\"\",name=\"arc-set\",namespace=",
        "gha_started_jobs_total{enterprise=\"\",organization=\"octo-org\",repository=\"app\",job_name=\"build\",event_name=\"push\"} 1",
        "gha_completed_jobs_total{",
        "gha_job_startup_duration_seconds_bucket{le=\"3.0\"",
        "arcrs_job_stage_duration_seconds_bucket{le=",
        "stage=\"available_to_acquired\"",
        "arcrs_listener_last_poll_timestamp_seconds",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    assert!(fake.with(|s| s.max_capacity_seen.iter().all(|c| c == "5")));

    let out = p.output();
    assert!(!out.contains(GOOD_PAT), "the PAT leaked into the logs");
    let started = out
        .lines()
        .find(|l| l.contains("job started"))
        .context("no job started line")?;
    let line: Value = serde_json::from_str(started)?;
    assert_eq!(line["span"]["scale_set_id"], json!(1), "{started}");
    assert_eq!(
        line["job_id"],
        json!(format!("job-{}", jobs[0])),
        "{started}"
    );

    let (code, _) = p.terminate().await?;
    assert_eq!(code, 0);
    Ok(())
}

#[tokio::test]
async fn survives_conflict_token_expiry_dropped_session_5xx_and_bad_bodies() -> anyhow::Result<()> {
    let cluster = Cluster::new().await?;
    let fake = FakeActions::start(HOLD).await?;
    fake.with(|s| s.foreign_session = true);
    let mut p = Proc::start(config(&fake, cluster.ns(), 0, 10), &cluster.kubeconfig).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    p.alive()?;
    assert_eq!(
        p.probe("/readyz").await,
        503,
        "not ready while another session holds the scale set"
    );
    assert!(
        p.output().contains("another session exists"),
        "{}",
        p.output()
    );
    fake.with(|s| s.foreign_session = false);
    p.wait_ready().await?;

    fake.queue_jobs(2);
    cluster.wait_replicas(2).await?;

    fake.expire_token();
    fake.queue_jobs(1);
    cluster.wait_replicas(3).await?;
    assert!(
        fake.with(|s| s.refreshes) >= 1,
        "the queue token was not refreshed"
    );

    fake.drop_session();
    eventually("a new session", || async {
        Ok((fake.with(|s| s.sessions_created.len()) >= 2).then_some(()))
    })
    .await?;
    fake.queue_jobs(1);
    cluster.wait_replicas(4).await?;

    fake.with(|s| s.fail_polls = 6);
    fake.queue_jobs(1);
    cluster.wait_replicas(5).await?;

    fake.with(|s| s.malformed_next = true);
    fake.queue_jobs(1);
    eventually("the malformed message acked", || async {
        Ok(fake.with(|s| s.messages_len() == 0).then_some(()))
    })
    .await?;
    fake.cancel_all();
    cluster.wait_replicas(0).await?;
    p.alive()?;

    let session = fake
        .with(|s| s.session.clone().map(|x| x.id))
        .context("a live session")?;
    let (code, out) = p.terminate().await?;
    assert_eq!(code, 0, "{out}");
    assert!(
        fake.with(|s| s.session.is_none() && s.sessions_deleted.contains(&session)),
        "session not deleted on SIGTERM"
    );
    Ok(())
}

#[tokio::test]
async fn liveness_fails_when_polls_stop_answering() -> anyhow::Result<()> {
    let cluster = Cluster::new().await?;
    let fake = FakeActions::start(HOLD).await?;
    let mut c = config(&fake, cluster.ns(), 0, 3);
    c["liveness_stale_after_seconds"] = json!(5);
    let mut p = Proc::start(c, &cluster.kubeconfig).await?;
    p.wait_ready().await?;
    assert_eq!(p.probe("/healthz").await, 200);
    fake.with(|s| s.stall_polls = true);
    eventually("liveness failing", || async {
        Ok((p.probe("/healthz").await == 503).then_some(()))
    })
    .await?;
    fake.with(|s| s.stall_polls = false);
    p.alive()?;
    Ok(())
}

#[tokio::test]
async fn rejected_credentials_exit_1_with_the_fix() -> anyhow::Result<()> {
    let cluster = Cluster::new().await?;
    let fake = FakeActions::start(HOLD).await?;
    let mut c = config(&fake, cluster.ns(), 0, 3);
    c["github_token"] = json!("ghp_revoked_token");
    let p = Proc::start(c, &cluster.kubeconfig).await?;
    let (code, out) = p.exit_code().await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not authorized") && out.contains("fix:"),
        "{out}"
    );
    assert!(!out.contains("ghp_revoked_token"), "{out}");
    Ok(())
}

#[tokio::test]
async fn bad_config_exits_2_naming_the_key() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let path = dir.0.join("config.json");
    std::fs::write(
        &path,
        r#"{"configure_url":"https://github.com/o","github_token":"ghp_x1","ephemeral_runner_set_namespace":"n","ephemeral_runner_set_name":"s","runner_scale_set_id":1,"min_runners":4,"max_runners":2,"log_level":"info","log_format":"text"}"#,
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_listener"))
        .env("LISTENER_CONFIG_PATH", &path)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("config key `min_runners`") && stderr.contains("fix:"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_listener"))
        .env_remove("LISTENER_CONFIG_PATH")
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LISTENER_CONFIG_PATH"));
    Ok(())
}

/// A forward proxy (absolute-form requests and CONNECT) that records each request line it sees
/// first on a connection.
async fn start_proxy() -> anyhow::Result<(u16, Arc<Mutex<Vec<String>>>)> {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = socket.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = socket.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let line = text.lines().next().unwrap_or_default().to_string();
                log.lock().expect("lock").push(line.clone());
                let target = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let connect = line.starts_with("CONNECT ");
                let authority = if connect {
                    target
                } else {
                    target
                        .trim_start_matches("http://")
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(authority).await else {
                    return;
                };
                if connect {
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                } else if upstream.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    Ok((port, seen))
}

#[tokio::test]
async fn actions_calls_go_through_the_proxy_from_the_environment() -> anyhow::Result<()> {
    let cluster = Cluster::new().await?;
    let fake = FakeActions::start(HOLD).await?;
    let (port, seen) = start_proxy().await?;
    let proxy = format!("http://127.0.0.1:{port}");
    let env = [
        ("HTTP_PROXY", proxy.clone()),
        ("HTTPS_PROXY", proxy),
        ("NO_PROXY", String::new()),
    ];
    let mut p =
        Proc::start_with_env(config(&fake, cluster.ns(), 2, 4), &cluster.kubeconfig, &env).await?;
    p.wait_ready().await?;
    cluster.wait_replicas(2).await?;
    let lines = seen.lock().expect("lock").clone();
    let registration = format!(
        "POST {}/api/v3/orgs/octo-org/actions/runners/registration-token HTTP/1.1",
        fake.url
    );
    assert!(lines.contains(&registration), "the proxy saw {lines:?}");
    let (code, _) = p.terminate().await?;
    assert_eq!(code, 0);
    Ok(())
}
