//! Shared harness of the manager process suites, included by them with `#[path]`; as a test
//! target of its own it has nothing to run.
//!
//! It runs the real `manager` binary (built once per test binary) against the shared
//! kube-apiserver and the Actions-service emulator over HTTP, with its logs in a file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_reconcilers::crd::{AutoscalingRunnerSet, EphemeralRunnerSet};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous limit for a condition the manager should reach.
pub const WAIT: Duration = Duration::from_secs(90);

/// The manager binary, built once per test binary if missing or older than its sources.
pub fn manager_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not in target/<profile>/deps")?;
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-p", "manager", "--bin", "manager"]);
    if profile_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo
        .current_dir(suites::helm::workspace_root())
        .status()
        .context("running cargo build -p manager")?;
    if !status.success() {
        bail!("cargo build -p manager failed ({status})");
    }
    let binary = profile_dir.join("manager");
    if !binary.exists() {
        bail!("{} is missing after the build", binary.display());
    }
    Ok(binary)
}

pub use testbed::free_port;

/// One running manager process.
pub struct Manager {
    child: Child,
    /// Its log file (stderr).
    pub log: PathBuf,
    /// Metrics port on 127.0.0.1.
    pub metrics_port: u16,
    /// Health port on 127.0.0.1.
    pub health_port: u16,
}

impl Manager {
    /// Starts the manager for controller namespace `ctrl`, watching `watch`, with `extra` flags.
    pub fn start(
        kubeconfig: &Path,
        ctrl: &str,
        watch: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let metrics_port = free_port()?;
        let log = std::env::temp_dir().join(format!(
            "arc-manager-{}-{metrics_port}.log",
            std::process::id()
        ));
        let health_port = free_port()?;
        let child = Command::new(manager_binary()?)
            .arg("--auto-scaling-runner-set-only")
            .arg(format!("--watch-single-namespace={watch}"))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .arg(format!(
                "--health-probe-bind-address=127.0.0.1:{health_port}"
            ))
            .arg("--log-level=debug")
            .arg("--log-format=json")
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("CONTROLLER_MANAGER_POD_NAMESPACE", ctrl)
            .env(
                "CONTROLLER_MANAGER_CONTAINER_IMAGE",
                "ghcr.io/arc-rs/gha-runner-scale-set-controller:test",
            )
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning the manager")?;
        Ok(Self {
            child,
            log,
            metrics_port,
            health_port,
        })
    }

    /// Starts the manager with exactly `args` and `env` (e.g. from a rendered Deployment);
    /// `health_port` is where `--health-probe-bind-address` points, if anywhere.
    pub fn start_raw(
        kubeconfig: &Path,
        args: &[String],
        env: &[(String, String)],
        health_port: u16,
    ) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "arc-manager-{}-{}.log",
            std::process::id(),
            free_port()?
        ));
        let child = Command::new(manager_binary()?)
            .args(args)
            .envs(env.iter().cloned())
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning the manager")?;
        Ok(Self {
            child,
            log,
            metrics_port: 0,
            health_port,
        })
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on the metrics port: (status, body).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = http_get(self.metrics_port, "/metrics").await?;
        if status != 200 {
            bail!("GET /metrics answered {status}");
        }
        Ok(body)
    }

    /// `GET path` on the health port.
    pub async fn health(&self, path: &str) -> anyhow::Result<u16> {
        Ok(http_get(self.health_port, path).await?.0)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to this process only.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.pid());
        }
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the manager did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("manager log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Minimal HTTP/1.1 GET on 127.0.0.1: status, body.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let (status, _, body) = http_get_raw(port, path).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Minimal HTTP/1.1 GET on 127.0.0.1: status, response head and raw body.
pub async fn http_get_raw(port: u16, path: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let head_end = split.unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status line")?;
    let body = split.map(|i| raw[i + 4..].to_vec()).unwrap_or_default();
    Ok((status, head, body))
}

/// The value of the sample `name{labels…}` whose label set contains all of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.trim().parse().ok()).flatten()
    })
}

pub use testbed::eventually;

/// Waits until the AutoscalingRunnerSet `name` carries its scale set id annotation.
pub async fn scale_set_id(ars_api: &Api<AutoscalingRunnerSet>, name: &str) -> anyhow::Result<i64> {
    eventually(&format!("the scale set id of {name}"), WAIT, || async {
        let ars = ars_api.get(name).await?;
        Ok(ars
            .annotations()
            .get(k8s_reconcilers::names::annotations::RUNNER_SCALE_SET_ID)
            .and_then(|v| v.parse().ok()))
    })
    .await
}

/// Creates the PAT Secret `name` holding the emulator's token.
pub async fn pat_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    emu: &actions_emulator::Emulator,
) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            "github_token".to_owned(),
            emu.pat().expose_secret().to_owned(),
        )])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// Creates an ARC-style AutoscalingRunnerSet for `url` and Secret `secret`.
pub async fn create_ars(
    client: &kube::Client,
    ns: &str,
    name: &str,
    url: &str,
    secret: &str,
) -> anyhow::Result<AutoscalingRunnerSet> {
    create_ars_with(client, ns, name, url, secret, json!({})).await
}

/// Like [`create_ars`], with the top-level fields of `extra` added to the spec.
pub async fn create_ars_with(
    client: &kube::Client,
    ns: &str,
    name: &str,
    url: &str,
    secret: &str,
    extra: serde_json::Value,
) -> anyhow::Result<AutoscalingRunnerSet> {
    let mut value = json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/version": "0.14.2"}},
        "spec": {
            "githubConfigUrl": url,
            "githubConfigSecret": secret,
            "minRunners": 0,
            "maxRunners": 5,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "runner",
                "image": "ghcr.io/actions/actions-runner:latest",
                "command": ["/home/runner/run.sh"]
            }]}}
        }
    });
    if let Some(fields) = extra.as_object() {
        for (k, v) in fields {
            value["spec"][k] = v.clone();
        }
    }
    let ars: AutoscalingRunnerSet = serde_json::from_value(value)?;
    Ok(Api::<AutoscalingRunnerSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ars)
        .await?)
}

/// Plays the listener: once the EphemeralRunnerSet `name` exists in `ns`, asks it for `replicas`
/// runners under `patch_id`.
pub async fn scale_runner_set(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: i32,
    patch_id: i32,
) -> anyhow::Result<()> {
    let api: Api<EphemeralRunnerSet> = Api::namespaced(client.clone(), ns);
    eventually("the EphemeralRunnerSet", WAIT, || async {
        api.get_opt(name).await.map_err(Into::into)
    })
    .await?;
    let patch = json!({"spec": {"replicas": replicas, "patchID": patch_id}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
