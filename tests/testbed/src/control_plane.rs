//! The control plane: a local etcd + kube-apiserver (+ controller-manager and scheduler), or an
//! existing cluster named by `ARC_TEST_KUBECONFIG`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::binaries::{KubernetesRelease, etcd_binary, kubernetes_binary, kubernetes_release};
use crate::kubeconfig::{self, Credentials};
use crate::namespace::{TestNamespace, unique_name};
use crate::pki::Pki;
use crate::process::{Janitor, ManagedProcess};

/// The environment variable naming a kubeconfig of an existing cluster to use instead of a
/// local control plane.
pub const EXISTING_CLUSTER_ENV: &str = "ARC_TEST_KUBECONFIG";

/// How long the API server may take to become ready (the machine may be busy building).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long minted ServiceAccount tokens stay valid.
const SERVICE_ACCOUNT_TOKEN_SECONDS: i64 = 7 * 24 * 3600;
const FIELD_MANAGER: &str = "testbed";

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    /// Also run kube-controller-manager and kube-scheduler (Deployments make pods, pods get
    /// bound to Nodes, garbage collection and namespace deletion work).
    pub scheduling: bool,
    /// Extra kube-apiserver flags, e.g. `--audit-log-path=...`.
    pub extra_apiserver_args: Vec<String>,
    /// The Kubernetes release to run; `None` takes `ARC_K8S_VERSION` (else the newest).
    pub release: Option<KubernetesRelease>,
}

/// A Kubernetes control plane for tests, demos and benchmarks.
///
/// Local control planes stop every process they started and remove their directory on drop;
/// if the owning process dies first, a janitor process does it (see the `process` module).
pub struct ControlPlane {
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    config: kube::Config,
    local: Option<Local>,
    startup: Duration,
    scheduling: OnceCell<()>,
    workdir: Option<TempDir>,
    janitor: Mutex<Janitor>,
}

struct Local {
    release: KubernetesRelease,
    pki: Pki,
    apiserver_url: String,
    apiserver_args: Vec<String>,
    /// etcd, kube-apiserver, then kube-controller-manager and kube-scheduler if started.
    processes: Mutex<Vec<ManagedProcess>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("kubeconfig_path", &self.kubeconfig_path)
            .field("local", &self.local.is_some())
            .field("startup", &self.startup)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary, started on first use (or
    /// the cluster of `ARC_TEST_KUBECONFIG`). It lives until the test process exits.
    pub async fn shared() -> anyhow::Result<&'static ControlPlane> {
        SHARED
            .get_or_try_init(|| start_detached(ControlPlaneOptions::default()))
            .await
    }

    /// [`ControlPlane::shared`] with kube-controller-manager and kube-scheduler running too.
    pub async fn shared_with_scheduling() -> anyhow::Result<&'static ControlPlane> {
        let cp = Self::shared().await?;
        cp.ensure_scheduling().await?;
        Ok(cp)
    }

    /// Starts a control plane owned by the caller: the cluster of `ARC_TEST_KUBECONFIG` if set,
    /// else a local one.
    pub async fn from_env_or_start(options: ControlPlaneOptions) -> anyhow::Result<Self> {
        match std::env::var_os(EXISTING_CLUSTER_ENV) {
            Some(path) if !path.is_empty() => Self::existing(Path::new(&path)).await,
            _ => Self::start(options).await,
        }
    }

    /// Uses an existing cluster through the kubeconfig at `path` (its current context).
    pub async fn existing(path: &Path) -> anyhow::Result<Self> {
        let begin = Instant::now();
        let kubeconfig = kubeconfig::read(path).with_context(|| {
            format!(
                "{EXISTING_CLUSTER_ENV}={} must name a readable kubeconfig",
                path.display()
            )
        })?;
        let config = kubeconfig::client_config(kubeconfig.clone()).await?;
        let workdir = new_workdir()?;
        let janitor = Janitor::start(workdir.path())?;
        let mut cp = Self {
            kubeconfig_path: path.to_path_buf(),
            kubeconfig,
            config,
            local: None,
            startup: Duration::ZERO,
            scheduling: OnceCell::new_with(Some(())),
            workdir: Some(workdir),
            janitor: Mutex::new(janitor),
        };
        let client = cp.try_client()?;
        client
            .apiserver_version()
            .await
            .with_context(|| format!("reaching the cluster of {}", path.display()))?;
        cp.startup = begin.elapsed();
        Ok(cp)
    }

    /// Starts a local control plane: etcd and kube-apiserver on free loopback ports in a new
    /// temporary directory, and the controller-manager and scheduler if asked.
    pub async fn start(options: ControlPlaneOptions) -> anyhow::Result<Self> {
        let begin = Instant::now();
        let release = match options.release {
            Some(release) => release,
            None => kubernetes_release()?,
        };
        let workdir = new_workdir()?;
        let janitor = Janitor::start(workdir.path())?;
        let janitor = Mutex::new(janitor);
        let dir = workdir.path().to_path_buf();

        let pki = Pki::generate()?;
        write_file(&dir.join("ca.crt"), &pki.ca_cert_pem)?;
        write_file(&dir.join("apiserver.crt"), &pki.serving_cert_pem)?;
        write_file(&dir.join("apiserver.key"), &pki.serving_key_pem)?;
        write_file(&dir.join("sa.key"), &pki.service_account_key_pem)?;
        write_file(&dir.join("sa.pub"), &pki.service_account_pub_pem)?;
        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        write_file(
            &dir.join("tokens.csv"),
            &format!("{admin_token},admin,admin,\"system:masters\"\n"),
        )?;

        let mut attempt = 0;
        let (processes, apiserver_url, apiserver_args, kubeconfig, config) = loop {
            attempt += 1;
            match start_etcd_and_apiserver(&dir, &pki, &admin_token, release, &options, &janitor)
                .await
            {
                Ok(started) => break started,
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    tracing::warn!("a port was taken while starting the control plane; retrying");
                }
                Err(e) => return Err(e),
            }
        };

        let kubeconfig_path = dir.join("admin.kubeconfig");
        kubeconfig::write(&kubeconfig_path, &kubeconfig)?;
        let mut cp = Self {
            kubeconfig_path,
            kubeconfig,
            config,
            local: Some(Local {
                release,
                pki,
                apiserver_url,
                apiserver_args,
                processes: Mutex::new(processes),
            }),
            startup: Duration::ZERO,
            scheduling: OnceCell::new(),
            workdir: Some(workdir),
            janitor,
        };
        if options.scheduling {
            cp.ensure_scheduling().await?;
        }
        cp.startup = begin.elapsed();
        Ok(cp)
    }

    /// A new admin client. Call it inside a tokio runtime; clients do not outlive theirs.
    ///
    /// # Panics
    /// Never for a started control plane: its configuration was turned into a client once
    /// already during start-up.
    pub fn client(&self) -> kube::Client {
        #[allow(clippy::expect_used)]
        self.try_client()
            .expect("the control plane's client configuration was valid at start-up")
    }

    /// A new admin client, or why it cannot be built.
    pub fn try_client(&self) -> anyhow::Result<kube::Client> {
        kube::Client::try_from(self.config.clone()).context("building an admin kube client")
    }

    /// The admin client configuration.
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Whether this is an existing cluster from `ARC_TEST_KUBECONFIG` rather than a local one.
    pub fn is_existing_cluster(&self) -> bool {
        self.local.is_none()
    }

    /// How long start-up took (zero for a reused shared control plane's later callers: they
    /// measure their own wait).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The API server's URL.
    pub fn apiserver_url(&self) -> String {
        self.config.cluster_url.to_string()
    }

    /// The Kubernetes release of a local control plane (`None` for an existing cluster).
    pub fn release(&self) -> Option<KubernetesRelease> {
        self.local.as_ref().map(|l| l.release)
    }

    /// The cluster CA certificate (PEM) of a local control plane.
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.local.as_ref().map(|l| l.pki.ca_cert_pem.as_str())
    }

    /// The control plane's private directory (removed with it).
    pub fn workdir(&self) -> anyhow::Result<&Path> {
        self.workdir
            .as_ref()
            .map(TempDir::path)
            .context("the control plane was already stopped")
    }

    /// Creates a uniquely named namespace starting with `prefix`; it is deleted on drop.
    pub async fn test_namespace(&self, prefix: &str) -> anyhow::Result<TestNamespace> {
        TestNamespace::create(self.config.clone(), prefix).await
    }

    /// Deletes the cluster-scoped object `name` of kind `K` when the returned guard drops.
    pub fn delete_on_drop<K: crate::ClusterObject>(&self, name: &str) -> crate::DeleteOnDrop<K> {
        crate::DeleteOnDrop::new(self.config.clone(), name)
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name` (created if missing)
    /// with a token from the TokenRequest API, so RBAC applies to it for real.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let client = self.try_client()?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        let account = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": { "name": name, "namespace": namespace },
        });
        accounts
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&account),
            )
            .await
            .with_context(|| format!("applying ServiceAccount {namespace}/{name}"))?;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(SERVICE_ACCOUNT_TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let response = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?;
        let token = response
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .with_context(|| {
                format!("the TokenRequest for ServiceAccount {namespace}/{name} returned no token")
            })?;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let mut config =
            kubeconfig::for_identity(&self.kubeconfig, &user, Credentials::Token(&token));
        if let Some(context) = config.contexts.first_mut().and_then(|c| c.context.as_mut()) {
            context.namespace = Some(namespace.to_owned());
        }
        let path = self.workdir()?.join(format!(
            "sa-{}.kubeconfig",
            unique_name(&format!("{namespace}-{name}"))
        ));
        kubeconfig::write(&path, &config)?;
        Ok(path)
    }

    /// A client authenticated as ServiceAccount `namespace/name` (created if missing).
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        let path = self.service_account_kubeconfig(namespace, name).await?;
        client_from_kubeconfig(&path).await
    }

    /// A kubeconfig for user `user` (optionally in `group`) with a client certificate signed
    /// by the cluster CA. Only a local control plane can mint these.
    pub fn user_kubeconfig(&self, user: &str, group: Option<&str>) -> anyhow::Result<PathBuf> {
        let local = self.local.as_ref().with_context(|| {
            format!(
                "user identities can only be minted on a local control plane; unset \
                 {EXISTING_CLUSTER_ENV} or use service_account_client"
            )
        })?;
        let cert = local.pki.client_cert(user, group)?;
        let config = kubeconfig::for_identity(
            &self.kubeconfig,
            user,
            Credentials::ClientCert {
                cert_pem: &cert.cert_pem,
                key_pem: &cert.key_pem,
            },
        );
        let path = self
            .workdir()?
            .join(format!("user-{}.kubeconfig", unique_name(user)));
        kubeconfig::write(&path, &config)?;
        Ok(path)
    }

    /// A client authenticated as user `user` (optionally in `group`); see
    /// [`ControlPlane::user_kubeconfig`].
    pub async fn user_client(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> anyhow::Result<kube::Client> {
        let path = self.user_kubeconfig(user, group)?;
        client_from_kubeconfig(&path).await
    }

    /// Starts kube-controller-manager and kube-scheduler once, and waits until the
    /// controller-manager works (the `default` ServiceAccount appears).
    pub async fn ensure_scheduling(&self) -> anyhow::Result<()> {
        self.scheduling
            .get_or_try_init(|| async {
                let Some(local) = &self.local else {
                    return Ok(());
                };
                let dir = self.workdir()?.to_path_buf();
                let kubeconfig = self.kubeconfig_path.display().to_string();
                let controller_manager_args =
                    vec![
                    format!("--kubeconfig={kubeconfig}"),
                    format!("--service-account-private-key-file={}", dir.join("sa.key").display()),
                    format!("--root-ca-file={}", dir.join("ca.crt").display()),
                    "--controllers=*,-nodeipam,-nodelifecycle,-ttl,-bootstrapsigner,-tokencleaner"
                        .to_owned(),
                    "--leader-elect=false".to_owned(),
                    "--bind-address=127.0.0.1".to_owned(),
                    "--secure-port=0".to_owned(),
                ];
                let scheduler_args = vec![
                    format!("--kubeconfig={kubeconfig}"),
                    "--leader-elect=false".to_owned(),
                    "--bind-address=127.0.0.1".to_owned(),
                    "--secure-port=0".to_owned(),
                ];
                {
                    let mut janitor = lock(&self.janitor);
                    let mut processes = lock(&local.processes);
                    processes.push(ManagedProcess::spawn(
                        "kube-controller-manager",
                        &kubernetes_binary(local.release, "kube-controller-manager")?,
                        &controller_manager_args,
                        &dir,
                        &mut janitor,
                    )?);
                    processes.push(ManagedProcess::spawn(
                        "kube-scheduler",
                        &kubernetes_binary(local.release, "kube-scheduler")?,
                        &scheduler_args,
                        &dir,
                        &mut janitor,
                    )?);
                }
                self.wait_for_controller_manager(local).await
            })
            .await
            .map(|_| ())
    }

    async fn wait_for_controller_manager(&self, local: &Local) -> anyhow::Result<()> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.try_client()?, "default");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            check_running(local)?;
            if accounts.get_opt("default").await.ok().flatten().is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-controller-manager did not create the default ServiceAccount within \
                     {READY_TIMEOUT:?}; the end of its log:\n{}",
                    tail_of(local, "kube-controller-manager")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails, with the end of its log, if a process of a local control plane has exited.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        match &self.local {
            Some(local) => check_running(local),
            None => Ok(()),
        }
    }

    /// Stops and starts kube-apiserver on the same port (etcd keeps the data), and waits until
    /// it is ready again. For fault-injection tests on a control plane they own.
    pub async fn restart_apiserver(&self) -> anyhow::Result<()> {
        let local = self
            .local
            .as_ref()
            .context("only a local control plane's API server can be restarted")?;
        let dir = self.workdir()?.to_path_buf();
        {
            let mut processes = lock(&local.processes);
            let index = processes
                .iter()
                .position(|p| p.name() == "kube-apiserver")
                .context("kube-apiserver is not running")?;
            let mut old = processes.remove(index);
            old.stop();
            let mut janitor = lock(&self.janitor);
            processes.insert(
                index,
                ManagedProcess::spawn(
                    "kube-apiserver",
                    &kubernetes_binary(local.release, "kube-apiserver")?,
                    &local.apiserver_args,
                    &dir,
                    &mut janitor,
                )?,
            );
        }
        let client = self.try_client()?;
        wait_for_apiserver(&client, || check_running(local)).await?;
        tracing::info!(url = %local.apiserver_url, "kube-apiserver restarted");
        Ok(())
    }

    /// Stops every process and removes the directory now (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(local) = &self.local {
            let mut processes = lock(&local.processes);
            while let Some(mut process) = processes.pop() {
                process.stop();
            }
        }
        if let Some(workdir) = self.workdir.take() {
            let path = workdir.path().to_path_buf();
            if let Err(e) = workdir.close() {
                tracing::warn!(dir = %path.display(), error = %e, "could not remove the control plane's directory");
            }
        }
        lock(&self.janitor).release();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type Started = (
    Vec<ManagedProcess>,
    String,
    Vec<String>,
    Kubeconfig,
    kube::Config,
);

async fn start_etcd_and_apiserver(
    dir: &Path,
    pki: &Pki,
    admin_token: &str,
    release: KubernetesRelease,
    options: &ControlPlaneOptions,
    janitor: &Mutex<Janitor>,
) -> anyhow::Result<Started> {
    let etcd_port = free_port()?;
    let peer_port = free_port()?;
    let apiserver_port = free_port()?;
    let etcd_data = dir.join("etcd");
    if etcd_data.exists() {
        std::fs::remove_dir_all(&etcd_data)
            .with_context(|| format!("clearing {}", etcd_data.display()))?;
    }
    let client_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let etcd_args = vec![
        "--name=default".to_owned(),
        format!("--data-dir={}", etcd_data.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=default={peer_url}"),
        "--logger=zap".to_owned(),
        "--log-level=warn".to_owned(),
    ];
    let mut etcd = {
        let mut janitor = lock(janitor);
        ManagedProcess::spawn("etcd", &etcd_binary()?, &etcd_args, dir, &mut janitor)?
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", etcd_port)).is_err() {
        etcd.ensure_running()?;
        if Instant::now() > deadline {
            bail!(
                "etcd did not listen on port {etcd_port} within {READY_TIMEOUT:?}; the end of its log:\n{}",
                etcd.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let path = |name: &str| dir.join(name).display().to_string();
    let mut apiserver_args = vec![
        format!("--etcd-servers={client_url}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={apiserver_port}"),
        format!("--cert-dir={}", path("certs")),
        format!("--tls-cert-file={}", path("apiserver.crt")),
        format!("--tls-private-key-file={}", path("apiserver.key")),
        format!("--client-ca-file={}", path("ca.crt")),
        format!("--token-auth-file={}", path("tokens.csv")),
        "--authorization-mode=Node,RBAC".to_owned(),
        "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
        format!("--service-account-key-file={}", path("sa.pub")),
        format!("--service-account-signing-key-file={}", path("sa.key")),
        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
        "--allow-privileged=true".to_owned(),
        // Most suites run no controller-manager, so new namespaces get no `default`
        // ServiceAccount, and the ServiceAccount admission plugin refuses pods whose account is
        // missing. The node simulator gives pods their token itself (TokenRequest).
        "--disable-admission-plugins=ServiceAccount".to_owned(),
        "--endpoint-reconciler-type=none".to_owned(),
        "--profiling=false".to_owned(),
    ];
    apiserver_args.extend(options.extra_apiserver_args.iter().cloned());
    let apiserver = {
        let mut janitor = lock(janitor);
        ManagedProcess::spawn(
            "kube-apiserver",
            &kubernetes_binary(release, "kube-apiserver")?,
            &apiserver_args,
            dir,
            &mut janitor,
        )?
    };
    let mut processes = vec![etcd, apiserver];

    let url = format!("https://127.0.0.1:{apiserver_port}");
    let kubeconfig = kubeconfig::new_kubeconfig(
        &url,
        &pki.ca_cert_pem,
        "admin",
        Credentials::Token(admin_token),
    );
    let config = kubeconfig::client_config(kubeconfig.clone()).await?;
    let client = kube::Client::try_from(config.clone()).context("building an admin kube client")?;
    let ready = wait_for_apiserver(&client, || {
        processes
            .iter_mut()
            .try_for_each(ManagedProcess::ensure_running)
    })
    .await;
    if let Err(e) = ready {
        for p in processes.iter_mut().rev() {
            p.stop();
        }
        return Err(e);
    }
    Ok((processes, url, apiserver_args, kubeconfig, config))
}

async fn wait_for_apiserver(
    client: &kube::Client,
    mut check_running: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        check_running()?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .context("building the /readyz request")?;
        let last_error = match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => match system_namespaces_exist(client).await {
                Ok(true) => return Ok(()),
                Ok(false) => "the system namespaces do not exist yet".to_owned(),
                Err(e) => e.to_string(),
            },
            Ok(body) => body,
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("kube-apiserver was not ready within {READY_TIMEOUT:?}: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the API server has created `default` and `kube-system` (it does so shortly after it
/// reports ready).
async fn system_namespaces_exist(client: &kube::Client) -> Result<bool, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["default", "kube-system"] {
        if namespaces.get_opt(name).await?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check_running(local: &Local) -> anyhow::Result<()> {
    lock(&local.processes)
        .iter_mut()
        .try_for_each(ManagedProcess::ensure_running)
}

fn tail_of(local: &Local, name: &str) -> String {
    lock(&local.processes)
        .iter()
        .find(|p| p.name() == name)
        .map(|p| p.log_tail(40))
        .unwrap_or_default()
}

/// Starts a control plane on a thread of its own, so that it does not depend on the caller's
/// runtime (each `#[tokio::test]` has its own, and a shared control plane outlives them).
async fn start_detached(options: ControlPlaneOptions) -> anyhow::Result<ControlPlane> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("testbed-start".to_owned())
        .spawn(move || {
            let started = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the testbed start-up runtime")
                .and_then(|runtime| runtime.block_on(ControlPlane::from_env_or_start(options)));
            let _ = tx.send(started);
        })
        .context("spawning the testbed start-up thread")?;
    rx.await
        .context("the testbed start-up thread ended without an answer")?
}

/// A client for the kubeconfig at `path` (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let config = kubeconfig::client_config(kubeconfig::read(path)?).await?;
    kube::Client::try_from(config).context("building a kube client")
}

fn new_workdir() -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("arc-testbed-")
        .tempdir()
        .context("creating the control plane's temporary directory")
}

/// A free TCP port on 127.0.0.1 (free when asked; the suites bind it soon after).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("finding a free loopback port")?
        .port())
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
