//! `vaultConfig: azure_key_vault` end to end on the real API server, with the emulated Microsoft
//! identity platform and Key Vault (tests/emulator/src/azure.rs) and the production connector:
//! the manager reads `githubConfigSecret` from the vault (PAT and GitHub App JSON), registers the
//! scale set, and writes the vault settings (not the credentials) into the listener's config;
//! the listener process reads the credentials from the vault itself and a queued job gets a
//! runner. A certificate the app does not know gives `Ready=False` naming the field; the vault
//! is reached through `vaultConfig.proxy` when set.

#[path = "reconciler_ars_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};

use actions_emulator::{
    AzureCertificate, DEFAULT_PAT, Emulator, EmulatorConfig, JobPhase, JobSpec, TEST_APP_ID,
    TEST_APP_INSTALLATION_ID, TEST_APP_PRIVATE_KEY_PEM,
};
use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_reconcilers::crd::{AutoscalingRunnerSet, EphemeralRunner};
use k8s_reconcilers::github::vault::{TestVault, register_test_vault};
use k8s_reconcilers::names::listener_name;
use kube::ResourceExt;
use kube::api::{ObjectMeta, PostParams};
use serde_json::{Value, json};
use support::{Harness, ready_ars, wait_for};
use tokio::io::{AsyncBufReadExt, BufReader};

const TENANT: &str = "0b8e2c4a-tenant";
const CLIENT: &str = "7d1f3a9c-client";
const ORG: &str = "octo-org";

/// A TLS emulator with the app's certificate registered, the certificate file on disk and the
/// harness with the production connector.
struct Setup {
    h: Harness,
    emu: Emulator,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(prefix: &str, tls: bool) -> anyhow::Result<Self> {
        let h = Harness::start_with(prefix, |o| {
            o.connector = Arc::new(k8s_reconcilers::github::ActionsClientConnector::new("test"));
        })
        .await?;
        let emu = if tls {
            Emulator::start_tls(EmulatorConfig::default()).await?
        } else {
            Emulator::start(EmulatorConfig::default()).await?
        };
        let cert = AzureCertificate::generate("arc-vault")?;
        emu.key_vault().register_app(TENANT, CLIENT, &cert);
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("cert.pem"), &cert.pem)?;
        if let Some(ca) = emu.ca_pem() {
            std::fs::write(dir.path().join("ca.pem"), ca)?;
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some("emulator-ca".into()),
                    ..Default::default()
                },
                data: Some([("ca.crt".to_owned(), ca.to_owned())].into()),
                ..Default::default()
            };
            h.api::<ConfigMap>(h.ns())
                .create(&PostParams::default(), &cm)
                .await?;
        }
        Ok(Self { h, emu, dir })
    }

    fn vault_url(&self) -> String {
        format!("{}/", self.emu.url())
    }

    fn cert_path(&self) -> String {
        self.dir
            .path()
            .join("cert.pem")
            .to_string_lossy()
            .into_owned()
    }

    /// The vault at the emulator's own URL, its CA trusted.
    fn register_vault(&self) {
        register_test_vault(
            &self.vault_url(),
            TestVault {
                authority_host: self.emu.url().to_owned(),
                root_ca_pem: self.emu.ca_pem().map(str::to_owned),
            },
        );
    }

    /// An ARC spec whose `githubConfigSecret` names Key Vault secret `secret`.
    fn spec(&self, secret: &str, vault: Value) -> Value {
        let mut s = support::spec(&self.emu.org_url(ORG), secret);
        s["vaultConfig"] = vault;
        if self.emu.ca_pem().is_some() {
            s["githubServerTLS"] = json!({"certificateFrom": {"configMapKeyRef": {"name": "emulator-ca", "key": "ca.crt"}}});
        }
        s
    }

    fn vault(&self, url: &str) -> Value {
        json!({
            "type": "azure_key_vault",
            "azureKeyVault": {
                "url": url,
                "tenantId": TENANT,
                "clientId": CLIENT,
                "certificatePath": self.cert_path(),
            }
        })
    }
}

/// The listener's `config.json`, once its Secret exists.
async fn listener_config(s: &Setup, name: &str) -> anyhow::Result<(String, Value)> {
    let al = listener_name(name, s.h.ns(), "", &s.emu.org_url(ORG));
    let secrets = s.h.api::<Secret>(s.h.ctrl());
    let config = wait_for("the listener's config Secret", || async {
        Ok(secrets
            .get_opt(&format!("{al}-config"))
            .await?
            .and_then(|secret| secret.data)
            .and_then(|d| d.get("config.json").cloned()))
    })
    .await?;
    Ok((al, serde_json::from_slice(&config.0)?))
}

#[tokio::test]
async fn pat_from_key_vault_registers_the_scale_set_and_the_listener_gets_a_runner()
-> anyhow::Result<()> {
    let s = Setup::new("vault-pat", true).await?;
    s.register_vault();
    let kv = s.emu.key_vault();
    kv.set_secret(
        "arc-github",
        &json!({"github_token": DEFAULT_PAT.to_string()}).to_string(),
    );
    s.h.create_ars("arc", s.spec("arc-github", s.vault(&s.vault_url())))
        .await?;
    let ars = ready_ars(&s.h, "arc").await?;
    let id: i64 = ars.annotations()["runner-scale-set-id"].parse()?;
    assert!(
        s.emu.snapshot().scale_set(id).is_some(),
        "the scale set is registered"
    );
    assert!(kv.requested_secrets().iter().all(|n| n == "arc-github"));
    assert!(kv.token_requests() >= 1);

    let (al, config) = listener_config(&s, "arc").await?;
    assert_eq!(config["vault_type"], "azure_key_vault");
    assert_eq!(config["vault_lookup_key"], "arc-github");
    assert_eq!(
        config["azure_key_vault"],
        json!({"tenant_id": TENANT, "client_id": CLIENT, "url": s.vault_url(), "certificate_path": s.cert_path()})
    );
    assert_eq!(
        config["github_token"], "",
        "the credentials stay in the vault"
    );

    // The listener process reads the vault itself and scales for a queued job.
    // The listener controller writes the config Secret before it creates the pod.
    let pods = s.h.api::<Pod>(s.h.ctrl());
    let pod = wait_for("the listener pod", || async {
        Ok(pods.get_opt(&al).await?)
    })
    .await?;
    let sa = pod
        .spec
        .and_then(|p| p.service_account_name)
        .context("listener pod service account")?;
    let cp = testbed::ControlPlane::shared().await?;
    let kubeconfig = cp.service_account_kubeconfig(s.h.ctrl(), &sa).await?;
    // The manager's client keeps its token (an hour); a new token request is the listener's.
    let tokens_before = kv.token_requests();
    let listener = Listener::start(
        config,
        &kubeconfig,
        &[
            ("AZURE_AUTHORITY_HOST", s.emu.url().to_owned()),
            (
                "SSL_CERT_FILE",
                s.dir.path().join("ca.pem").to_string_lossy().into_owned(),
            ),
        ],
    )?;
    let job = s.emu.queue_job(JobSpec::with_labels(["arc"]));
    let runners = s.h.api::<EphemeralRunner>(s.h.ns());
    let runner = wait_for("an EphemeralRunner for the job", || async {
        Ok((!runners.list(&Default::default()).await?.items.is_empty()).then_some(()))
    })
    .await;
    if let Err(e) = runner {
        bail!("{e:#}; listener output:\n{}", listener.stop().await);
    }
    let phase = s.emu.snapshot().job(job).map(|j| j.phase);
    assert!(
        matches!(phase, Some(JobPhase::Acquired | JobPhase::Assigned)),
        "the listener acquired the job: {phase:?}"
    );
    assert!(
        kv.token_requests() > tokens_before,
        "the listener read the vault"
    );
    let out = listener.stop().await;
    for token in kv.issued_tokens() {
        assert!(
            !out.contains(&token),
            "access token in the listener's output"
        );
    }
    assert!(!out.contains(&DEFAULT_PAT.to_string()), "{out}");
    Ok(())
}

#[tokio::test]
async fn github_app_json_from_key_vault() -> anyhow::Result<()> {
    let s = Setup::new("vault-app", true).await?;
    s.register_vault();
    s.emu.key_vault().set_secret(
        "arc-app",
        &json!({
            "github_app_id": TEST_APP_ID.to_string(),
            "github_app_installation_id": TEST_APP_INSTALLATION_ID,
            "github_app_private_key": TEST_APP_PRIVATE_KEY_PEM,
        })
        .to_string(),
    );
    s.h.create_ars("arc", s.spec("arc-app", s.vault(&s.vault_url())))
        .await?;
    ready_ars(&s.h, "arc").await?;
    assert!(
        s.emu.count(actions_emulator::Endpoint::InstallationToken) >= 1,
        "the App's installation token was used"
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_the_app_does_not_know_gives_ready_false() -> anyhow::Result<()> {
    let s = Setup::new("vault-badcert", true).await?;
    s.register_vault();
    s.emu
        .key_vault()
        .set_secret("arc-github", r#"{"github_token":"ghp_neverRead"}"#);
    let other = AzureCertificate::generate("not-registered")?;
    std::fs::write(s.dir.path().join("cert.pem"), &other.pem)?;
    s.h.create_ars("arc", s.spec("arc-github", s.vault(&s.vault_url())))
        .await?;
    let api = s.h.api::<AutoscalingRunnerSet>(s.h.ns());
    let message = wait_for("a Ready=False condition", || async {
        Ok(api
            .get("arc")
            .await?
            .status
            .and_then(|st| st.conditions)
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False")
            })
            .map(|c| c.message))
    })
    .await?;
    assert!(
        message.contains("AADSTS700027")
            && message.contains("azureKeyVault.certificatePath")
            && message.contains("spec.vaultConfig"),
        "{message}"
    );
    assert!(
        !message.contains("eyJ") && !message.contains("PRIVATE KEY"),
        "{message}"
    );
    assert_eq!(s.emu.key_vault().secret_requests(), 0);
    assert!(s.emu.snapshot().scale_sets.is_empty());
    Ok(())
}

/// The scale-set chart's `keyVault` values render an ARS that reconciles (ARC's chart refused
/// nothing, arc-rs used to refuse the type).
#[tokio::test]
async fn the_charts_key_vault_values_reconcile() -> anyhow::Result<()> {
    let s = Setup::new("vault-chart", true).await?;
    s.register_vault();
    s.emu.key_vault().set_secret(
        "arc-github",
        &json!({"github_token": DEFAULT_PAT.to_string()}).to_string(),
    );
    let rendered = suites::helm::Render::new(suites::helm::Chart::ScaleSet, "arc", s.h.ns())
        .values(json!({
            "githubConfigUrl": s.emu.org_url(ORG),
            "githubConfigSecret": "arc-github",
            "controllerServiceAccount": {"name": "arc", "namespace": s.h.ctrl()},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "emulator-ca", "key": "ca.crt"}}},
            "keyVault": {"type": "azure_key_vault", "azureKeyVault": {
                "url": s.vault_url(), "tenantId": TENANT, "clientId": CLIENT,
                "certificatePath": s.cert_path()}},
        }))
        .render()?;
    let spec = rendered.single("AutoscalingRunnerSet")?["spec"].clone();
    assert_eq!(spec["vaultConfig"]["type"], "azure_key_vault");
    s.h.create_ars("arc", spec).await?;
    ready_ars(&s.h, "arc").await?;
    assert!(
        s.emu
            .key_vault()
            .requested_secrets()
            .contains(&"arc-github".to_owned())
    );
    Ok(())
}

/// The vault and the identity platform are on host names that do not resolve: only the proxy
/// (which sends every connection to the emulator) reaches them. Its credentials come from a
/// Kubernetes Secret, as ARC reads `vaultConfig.proxy`; those of the GitHub proxy (`spec.proxy`)
/// come from a Key Vault secret.
#[tokio::test]
async fn the_vault_is_reached_through_vault_config_proxy() -> anyhow::Result<()> {
    let s = Setup::new("vault-proxy", false).await?;
    let port = s.emu.addr().port();
    let vault_url = format!("http://vault.proxied.invalid:{port}/");
    register_test_vault(
        &vault_url,
        TestVault {
            authority_host: format!("http://login.proxied.invalid:{port}"),
            root_ca_pem: None,
        },
    );
    s.emu.key_vault().set_secret(
        "arc-github",
        &json!({"github_token": DEFAULT_PAT.to_string()}).to_string(),
    );
    let proxy = actions_emulator::proxy::Proxy::start(s.emu.addr()).await?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("vault-proxy-creds".into()),
            ..Default::default()
        },
        string_data: Some(
            [
                ("username".to_owned(), "kv".to_owned()),
                ("password".to_owned(), "pr0xy-pw".to_owned()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    s.h.api::<Secret>(s.h.ns())
        .create(&PostParams::default(), &secret)
        .await?;
    let mut vault = s.vault(&vault_url);
    vault["proxy"] =
        json!({"http": {"url": proxy.url(), "credentialSecretRef": "vault-proxy-creds"}});
    // The GitHub proxy's credentialSecretRef names a Key Vault secret (as in ARC with a vault).
    s.emu
        .key_vault()
        .set_secret("gh-proxy-creds", r#"{"username":"gh","password":"gh-pw"}"#);
    let gh_proxy = actions_emulator::proxy::Proxy::start(s.emu.addr()).await?;
    let mut spec = s.spec("arc-github", vault);
    spec["githubConfigUrl"] = json!(format!("http://github.proxied.invalid:{port}/{ORG}"));
    spec["proxy"] =
        json!({"http": {"url": gh_proxy.url(), "credentialSecretRef": "gh-proxy-creds"}});
    s.h.create_ars("arc", spec).await?;
    ready_ars(&s.h, "arc").await?;
    let github = gh_proxy.records();
    assert!(
        github
            .iter()
            .any(|r| r.target.contains("registration-token")
            // base64("gh:gh-pw")
            && r.auth.as_deref() == Some("Basic Z2g6Z2gtcHc=")),
        "{github:?}"
    );
    let records = proxy.records();
    assert!(
        records.iter().any(|r| r.target.starts_with(&format!(
            "http://login.proxied.invalid:{port}/{TENANT}/oauth2/v2.0/token"
        ))),
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r
            .target
            .starts_with(&format!("{vault_url}secrets/arc-github"))),
        "{records:?}"
    );
    // base64("kv:pr0xy-pw")
    assert!(
        records
            .iter()
            .all(|r| r.auth.as_deref() == Some("Basic a3Y6cHIweHktcHc=")),
        "{records:?}"
    );
    Ok(())
}

/// The listener binary, built once per test binary (a no-op when it is fresh).
fn listener_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let build = || -> anyhow::Result<PathBuf> {
                let exe = std::env::current_exe()?;
                let profile_dir = exe
                    .parent()
                    .and_then(Path::parent)
                    .context("test executable is not in target/<profile>/deps")?;
                let status = std::process::Command::new(env!("CARGO"))
                    .args(["build", "-p", "listener", "--bin", "listener"])
                    .current_dir(suites::helm::workspace_root())
                    .status()?;
                if !status.success() {
                    bail!("cargo build -p listener failed ({status})");
                }
                Ok(profile_dir.join("listener"))
            };
            build().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A listener process with its output captured.
struct Listener {
    child: tokio::process::Child,
    output: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Listener {
    fn start(mut config: Value, kubeconfig: &Path, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        config["health_addr"] = json!(format!("127.0.0.1:{}", testbed::free_port()?));
        config["metrics_addr"] = json!("");
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string())?;
        let mut child = tokio::process::Command::new(listener_binary()?)
            .env("LISTENER_CONFIG_PATH", &path)
            .env("KUBECONFIG", kubeconfig)
            .env("LISTENER_TERMINATION_LOG", dir.path().join("termination"))
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the listener")?;
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    println!("[listener] {line}");
                    sink.lock().map(|mut o| o.push(line)).ok();
                }
            });
        }
        Ok(Self {
            child,
            output,
            _dir: dir,
        })
    }

    fn output(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.output()
    }
}
