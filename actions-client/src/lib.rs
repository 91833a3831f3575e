//! Client for GitHub's REST credential exchange and the Actions service's runner scale set APIs.
//!
//! It speaks the Actions service's wire protocol (summarised in
//! docs/architecture.md#wire-protocol): a PAT or GitHub App is exchanged for a registration token,
//! the registration token for the Actions service URL and an admin token (refreshed before it
//! expires, one refresh for any number of concurrent callers), and the admin token authenticates
//! runner-group, scale-set, session, JIT and runner calls. Message sessions long-poll a queue with
//! their own token.
//!
//! * [`ActionsClient`]: every endpoint, stateless with respect to sessions.
//! * [`Transport`]: one pooled HTTPS client per process, with proxies, extra CAs, timeouts and
//!   bounded retries.
//! * [`Error`]: one enum to match on; no variant ever carries a credential.
//!
//! # A minimal autoscaler loop
//!
//! ```no_run
//! use actions_client::{
//!     ActionsClient, Credentials, JitSetting, NewRunnerScaleSet, DEFAULT_RUNNER_GROUP_ID,
//! };
//! use secrecy::SecretString;
//!
//! # async fn run() -> Result<(), actions_client::Error> {
//! let credentials = Credentials::pat(SecretString::from(std::env::var("GITHUB_TOKEN").unwrap_or_default()))?;
//! let client = ActionsClient::builder("https://github.com/octo-org/app", credentials).build()?;
//!
//! // Reuse the scale set if it exists, otherwise create it.
//! let scale_set = match client.get_runner_scale_set(DEFAULT_RUNNER_GROUP_ID, "linux-x64").await? {
//!     Some(set) => set,
//!     None => {
//!         let new = NewRunnerScaleSet::new("linux-x64", DEFAULT_RUNNER_GROUP_ID)
//!             .with_labels(["linux-x64", "gpu"]);
//!         client.create_runner_scale_set(&new).await?
//!     }
//! };
//! client.set_scale_set_id(scale_set.id);
//!
//! let session = client.create_message_session(scale_set.id, "my-listener").await?;
//! let max_runners = 10;
//! let mut runners = 0;
//! let mut last_message_id = 0;
//! loop {
//!     let Some(message) = client.get_message(&session, last_message_id, max_runners).await? else {
//!         continue; // 202: nothing new; keep the last known target
//!     };
//!     last_message_id = message.message_id;
//!     client.delete_message(&session, message.message_id).await?;
//!     let available = message.available_request_ids();
//!     if !available.is_empty() {
//!         client.acquire_jobs(scale_set.id, &session, &available).await?;
//!     }
//!     let assigned = message.statistics.map_or(0, |s| s.total_assigned_jobs);
//!     while runners < assigned.min(max_runners) {
//!         runners += 1;
//!         let jit = client
//!             .generate_jit_config(scale_set.id, &JitSetting { name: format!("runner-{runners}"), work_folder: String::new() })
//!             .await?;
//!         // Start a runner with `jit.encoded_jit_config` (ACTIONS_RUNNER_INPUT_JITCONFIG).
//!         let _ = jit;
//!     }
//!     # break;
//! }
//! client.delete_message_session(scale_set.id, &session.session_id).await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod classify;
mod client;
mod config;
mod credentials;
mod decode;
mod error;
pub mod fuzzing;
mod github;
mod json;
mod jwt;
pub mod key_vault;
mod proxy;
mod queue;
mod rest;
mod retry;
mod service;
mod transport;
mod types;
mod urls;
mod user_agent;
mod wire;

pub use client::{ADMIN_TOKEN_REFRESH_MARGIN, ActionsClient, ClientBuilder};
pub use config::{FORCE_GHES_ENV, GitHubConfig, Scope};
pub use credentials::{APP_JWT_BACKDATE_SECS, APP_JWT_LIFETIME_SECS, Credentials, GitHubApp};
pub use error::{Error, ErrorInfo, Result};
pub use jwt::unverified_exp;
pub use proxy::ProxyConfig;
pub use rest::{RUNNERS_PER_PAGE, SelfHostedRunner};
pub use retry::RetryPolicy;
pub use transport::{Transport, TransportConfig};
pub use types::{
    DEFAULT_RUNNER_GROUP_ID, DEFAULT_RUNNER_GROUP_NAME, JOB_MESSAGES_TYPE, JitConfig, JitSetting,
    JobAssigned, JobAvailable, JobCompleted, JobInfo, JobMessage, JobMessageKind, JobStarted,
    Label, MessageSession, NewRunnerScaleSet, RunnerGroup, RunnerReference, RunnerScaleSet,
    RunnerScaleSetUpdate, RunnerSetting, ScaleSetMessage, Statistics, UNBOUNDED_CAPACITY,
};
pub use urls::API_VERSION;
pub use user_agent::SystemInfo;
