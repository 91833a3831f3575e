//! A stateful emulator of GitHub's REST and Actions service APIs for tests and the demo.
//!
//! [`Emulator::start`] serves HTTP on a free 127.0.0.1 port ([`Emulator::start_tls`] serves
//! HTTPS with a generated CA). [`Emulator::url`] is the GitHub host: a client configured with
//! `{url}/my-org` (or `{url}/my-org/my-repo`, `{url}/enterprises/acme`) finds the REST API under
//! `{url}/api/v3` (GHES rules, docs/architecture.md#configuration-url-and-api-base) and learns the
//! Actions service URL `{url}/tenant/1/` from runner-registration. Jobs are queued with
//! [`Emulator::queue_job`]; simulated runners use [`Emulator::runner_connect`] or the HTTP runner
//! API (`/_runner/…`). Everything is also reachable over the JSON control API (`/_emulator/…`). See
//! README.md.

#![warn(missing_docs)]

mod azure;
mod config;
mod endpoint;
mod faults;
mod jit;
mod model;
pub mod proxy;
mod routes;
mod runner_client;
mod scope;
mod server;
mod state;
mod tls;
mod tokens;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

pub use azure::{AzureCertificate, KeyVaultHandle};
pub use config::{
    AdminTokenStyle, AppConfig, DEFAULT_PAT, EmulatorConfig, ErrorSpec, TEST_APP_CLIENT_ID,
    TEST_APP_ID, TEST_APP_INSTALLATION_ID, TEST_APP_PRIVATE_KEY_PEM, TEST_APP_PUBLIC_KEY_PEM,
};
pub use endpoint::{Endpoint, Family};
pub use faults::{Fault, FaultEntry, FaultKind};
pub use jit::{JitInfo, decode_jit_config};
pub use model::{
    JobPhase, JobRecord, JobResult, JobSpec, RunnerConnection, RunnerGroupRecord, RunnerJob,
    RunnerRecord, ScaleSetRecord, SessionRecord, SessionState, StateSnapshot, Statistics,
};
pub use routes::control::ConfigPatch;
pub use runner_client::RunnerClient;
pub use scope::{Scope, parse_config_url};
pub use server::{CallRecord, UNMATCHED};
pub use wire::{ApiError, vss_body};

use server::Shared;
use state::State;

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    url: String,
    ca_pem: Option<String>,
    intermediate_pem: Option<String>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// The emulated Microsoft identity platform and Azure Key Vault (same host and port).
    pub fn key_vault(&self) -> KeyVaultHandle {
        KeyVaultHandle(self.shared.azure.clone())
    }

    /// Starts an HTTP emulator on 127.0.0.1 (`cfg.port`, 0 = a free port).
    pub async fn start(cfg: EmulatorConfig) -> anyhow::Result<Self> {
        Self::start_inner(cfg, None).await
    }

    /// Starts an HTTPS emulator with a freshly generated CA (see [`Emulator::ca_pem`]).
    pub async fn start_tls(cfg: EmulatorConfig) -> anyhow::Result<Self> {
        let tls = tls::TlsMaterial::generate()?;
        Self::start_inner(cfg, Some(tls)).await
    }

    /// Starts an HTTP emulator on its own thread and runtime, so it outlives the caller's
    /// runtime (shared fixtures used by many `#[tokio::test]`s). Callable from sync code.
    pub fn start_detached(cfg: EmulatorConfig) -> anyhow::Result<Self> {
        Self::detached(cfg, false)
    }

    /// [`Emulator::start_detached`] with HTTPS.
    pub fn start_tls_detached(cfg: EmulatorConfig) -> anyhow::Result<Self> {
        Self::detached(cfg, true)
    }

    fn detached(cfg: EmulatorConfig, tls: bool) -> anyhow::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("actions-emulator".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::Error::from(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = if tls {
                        Self::start_tls(cfg).await
                    } else {
                        Self::start(cfg).await
                    };
                    let cancel = started.as_ref().ok().map(|e| e.cancel.clone());
                    if tx.send(started).is_err() {
                        return;
                    }
                    if let Some(cancel) = cancel {
                        cancel.cancelled().await;
                    }
                });
            })?;
        rx.recv()
            .map_err(|_| anyhow::anyhow!("the emulator thread ended before it started serving"))?
    }

    async fn start_inner(
        cfg: EmulatorConfig,
        tls: Option<tls::TlsMaterial>,
    ) -> anyhow::Result<Self> {
        let (listener, addr) = server::bind(cfg.port).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        let shared = Shared::new(State::new(cfg, url.clone()));
        let cancel = CancellationToken::new();
        let (ca_pem, intermediate_pem, acceptor) = match tls {
            Some(t) => (Some(t.ca_pem), Some(t.intermediate_pem), Some(t.acceptor)),
            None => (None, None, None),
        };
        server::serve(shared.clone(), listener, acceptor, cancel.clone());
        Ok(Self {
            shared,
            addr,
            url,
            ca_pem,
            intermediate_pem,
            cancel,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Config URL of an organization: `{url}/{org}`.
    pub fn org_url(&self, org: &str) -> String {
        format!("{}/{org}", self.url)
    }

    /// Config URL of a repository: `{url}/{owner}/{repo}`.
    pub fn repo_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}", self.url)
    }

    /// Config URL of an enterprise: `{url}/enterprises/{enterprise}`.
    pub fn enterprise_url(&self, enterprise: &str) -> String {
        format!("{}/enterprises/{enterprise}", self.url)
    }

    /// The GitHub REST API base `B` for this host (GHES form): `{url}/api/v3`.
    pub fn api_base(&self) -> String {
        format!("{}/api/v3", self.url)
    }

    /// The current Actions service base URL `S` (ends with `/`).
    pub fn actions_url(&self) -> String {
        self.shared.read(|st, _| st.actions_url())
    }

    /// The default PAT every default configuration accepts ([`DEFAULT_PAT`]).
    pub fn pat(&self) -> SecretString {
        SecretString::from(DEFAULT_PAT)
    }

    /// Root CA certificate (PEM) of an HTTPS emulator; `None` for HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Intermediate CA certificate (PEM) of an HTTPS emulator; `None` for HTTP.
    pub fn intermediate_pem(&self) -> Option<&str> {
        self.intermediate_pem.as_deref()
    }

    /// Everything the emulator knows (no secrets).
    pub fn snapshot(&self) -> StateSnapshot {
        self.shared.read(|st, _| st.snapshot())
    }

    /// Waits until every job in `ids` is completed, re-checking on every state change without
    /// a snapshot, which copies every job and scale set (a bench's thousands of them, on
    /// every change); returns the jobs still open after `timeout`, with their phase.
    pub async fn wait_jobs_completed(
        &self,
        ids: &[i64],
        timeout: Duration,
    ) -> Result<(), Vec<(i64, Option<JobPhase>)>> {
        let deadline = state::deadline_in(timeout);
        let done = self
            .shared
            .wait_for(deadline, |st, _| st.open_jobs(ids).is_empty().then_some(()))
            .await;
        match done {
            Some(()) => Ok(()),
            None => Err(self.shared.read(|st, _| st.open_jobs(ids))),
        }
    }

    /// Waits until `pred` holds for a snapshot, re-checking on every state change; returns the
    /// snapshot, or an error with the last snapshot's summary after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&StateSnapshot) -> bool,
    ) -> anyhow::Result<StateSnapshot> {
        let deadline = state::deadline_in(timeout);
        let found = self
            .shared
            .wait_for(deadline, |st, _| {
                let snap = st.snapshot();
                pred(&snap).then_some(snap)
            })
            .await;
        found.ok_or_else(|| {
            let snap = self.snapshot();
            anyhow::anyhow!(
                "condition not met within {timeout:?}; scale sets {:?}, jobs {:?}",
                snap.scale_sets
                    .iter()
                    .map(|s| (s.id, &s.name, s.statistics))
                    .collect::<Vec<_>>(),
                snap.jobs
                    .iter()
                    .map(|j| (j.id, j.phase))
                    .collect::<Vec<_>>()
            )
        })
    }

    /// Queues a job; returns its `runnerRequestId`.
    pub fn queue_job(&self, spec: JobSpec) -> i64 {
        self.shared.mutate(|st, now| st.queue_job(spec, now))
    }

    /// Cancels an unfinished job (`JobCompleted{result:"canceled"}` if it was offered).
    pub fn cancel_job(&self, id: i64) -> bool {
        self.shared.mutate(|st, now| st.cancel_job(id, now))
    }

    /// Installs a fault; returns its id.
    pub fn inject(&self, fault: Fault) -> u64 {
        self.shared.read(|st, _| st.add_fault(fault))
    }

    /// Removes one fault.
    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.read(|st, _| st.remove_fault(id))
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.read(|st, _| st.faults.clear());
    }

    /// The installed faults with how often each fired.
    pub fn faults(&self) -> Vec<FaultEntry> {
        self.shared.read(|st, _| st.faults.clone())
    }

    /// Every admin token issued so far stops working (401 on `S`).
    pub fn expire_admin_tokens(&self) {
        self.shared.mutate(|st, _| st.expire_admin_tokens());
    }

    /// Expires the active session of a scale set; false if it had none.
    pub fn expire_session(&self, scale_set_id: i64) -> bool {
        self.shared.mutate(|st, _| st.expire_session(scale_set_id))
    }

    /// Expires the message-queue token of a scale set's session (401 until A8 refreshes it).
    pub fn expire_message_queue_token(&self, scale_set_id: i64) -> bool {
        self.shared
            .mutate(|st, now| st.expire_message_queue_token(scale_set_id, now))
    }

    /// Deletes a scale set as if someone else did (sessions end, runners go, jobs requeue).
    pub fn delete_scale_set_behind_back(&self, scale_set_id: i64) -> bool {
        self.shared
            .mutate(|st, now| st.delete_scale_set(scale_set_id, now).is_ok())
    }

    /// Stores a message envelope verbatim in a scale set's queue (a poison message, an unknown
    /// `messageType`, a `body` that is not a string, no `statistics`, …). It is delivered and
    /// redelivered like any message until deleted. Returns its `messageId` (set on objects), or
    /// `None` for an unknown scale set.
    pub fn push_raw_message(&self, scale_set_id: i64, envelope: serde_json::Value) -> Option<i64> {
        self.shared
            .mutate(|st, _| st.push_raw_message(scale_set_id, envelope))
    }

    /// Changes `S` (the old one answers 404); returns the new one.
    pub fn rotate_actions_url(&self) -> String {
        self.shared.mutate(|st, _| {
            st.rotate_tenant();
            st.actions_url()
        })
    }

    /// Moves the emulator's clock forward (token, session and pickup expiry) and runs the due
    /// transitions, so tests need not sleep.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance_clock(by);
    }

    /// Changes the configuration of the running emulator.
    pub fn update_config(&self, f: impl FnOnce(&mut EmulatorConfig)) {
        self.shared.mutate(|st, _| f(&mut st.cfg));
    }

    /// Every credential the emulator knows and a system under test must never write to a log, an
    /// Event or a status: the PATs it accepts, the test App's private key, and every token it
    /// issued (installation, registration, admin, message-queue and runner tokens, JIT configs and
    /// the secrets inside them), expired or not; each with its kind.
    pub fn issued_secrets(&self) -> Vec<(&'static str, SecretString)> {
        self.shared.read(|st, _| {
            let accepted = st
                .cfg
                .pats
                .iter()
                .map(|p| ("PAT", p.clone()))
                .chain(std::iter::once((
                    "GitHub App private key",
                    SecretString::from(TEST_APP_PRIVATE_KEY_PEM),
                )));
            accepted
                .chain(
                    st.issued_secrets()
                        .iter()
                        .map(|(kind, v)| (*kind, SecretString::from(v.clone()))),
                )
                .collect()
        })
    }

    /// Calls per endpoint name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.shared.read(|st, _| st.counters.clone())
    }

    /// Calls counted for one endpoint.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.shared
            .read(|st, _| st.counters.get(endpoint.as_str()).copied().unwrap_or(0))
    }

    /// The call log (last 10 000 calls), oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.calls()
    }

    /// Clears counters and the call log.
    pub fn reset_counters(&self) {
        self.shared.reset_calls();
    }

    /// Runner side: present a JIT config (works once).
    pub fn runner_connect(&self, encoded_jit_config: &str) -> Result<RunnerConnection, ApiError> {
        self.shared
            .mutate(|st, now| st.runner_connect(encoded_jit_config, now))
    }

    /// Runner side: the job given to this runner, waiting up to `wait` for one.
    pub async fn runner_job(
        &self,
        conn: &RunnerConnection,
        wait: Duration,
    ) -> Result<Option<RunnerJob>, ApiError> {
        let deadline = state::deadline_in(wait);
        let found = self
            .shared
            .wait_for_runner_job(deadline, |st, _| match st.runner_job(&conn.runner_token) {
                Ok(Some(j)) => Some(Ok(j)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .await;
        found.transpose()
    }

    /// Runner side: the job started (`JobStarted`).
    pub fn runner_started(&self, conn: &RunnerConnection) -> Result<(), ApiError> {
        self.shared
            .mutate(|st, now| st.runner_started(&conn.runner_token, now))
    }

    /// Runner side: the job finished (`JobCompleted`, the job's configured result unless
    /// `result` overrides it); the ephemeral runner is deregistered.
    pub fn runner_completed(
        &self,
        conn: &RunnerConnection,
        result: Option<JobResult>,
    ) -> Result<(), ApiError> {
        self.shared
            .mutate(|st, now| st.runner_completed(&conn.runner_token, result, now))
    }

    /// Runner side: the runner goes away; a job it picked up but did not start is reassigned,
    /// a running one fails.
    pub fn runner_disconnect(&self, conn: &RunnerConnection) -> Result<(), ApiError> {
        self.shared
            .mutate(|st, now| st.runner_disconnect(&conn.runner_token, now))
    }

    /// Stops the server (also done by `Drop`).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
