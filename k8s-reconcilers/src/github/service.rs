//! The Actions service operations the controllers use, independent of the HTTP client.

use std::sync::Arc;

use futures::future::BoxFuture;
use scaleset_core::registrations::ListedRunner;
use secrecy::SecretString;

use super::ServiceConfig;

/// A runner group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerGroup {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// A runner scale set as the service returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleSet {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Runner group id.
    pub runner_group_id: i64,
    /// Runner group name.
    pub runner_group_name: String,
    /// Label names.
    pub labels: Vec<String>,
}

/// `CreateRunnerScaleSet` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewScaleSet {
    /// Name.
    pub name: String,
    /// Runner group id.
    pub runner_group_id: i64,
    /// Label names (all of type `System`).
    pub labels: Vec<String>,
}

/// `UpdateRunnerScaleSet` input; `None` fields are left unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScaleSetPatch {
    /// New name.
    pub name: Option<String>,
    /// New runner group id.
    pub runner_group_id: Option<i64>,
    /// New label names.
    pub labels: Option<Vec<String>>,
}

/// A registered runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerInfo {
    /// Runner id.
    pub id: i64,
    /// Runner name.
    pub name: String,
    /// Scale set it belongs to.
    pub runner_scale_set_id: i64,
}

/// A JIT runner configuration.
#[derive(Clone, Debug)]
pub struct JitConfig {
    /// The registered runner.
    pub runner: RunnerInfo,
    /// `encodedJITConfig`; a credential.
    pub encoded_jit_config: SecretString,
}

/// Class of a service failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// 404 or an explicit "not found".
    NotFound,
    /// `AgentExistsException`.
    RunnerExists,
    /// `JobStillRunningException`.
    JobStillRunning,
    /// 401/403 or a credential exchange failure: fix the credentials.
    Unauthorized,
    /// The input was refused (400/422).
    Invalid,
    /// 5xx, a bad answer: retry.
    Transient,
    /// No answer at all (connection refused, DNS, TLS, proxy, timeout, after the client's own
    /// retries): the host in `githubConfigUrl` may be wrong or out of reach.
    Unreachable,
    /// A rate limit (429, or a 403 that says so): retry after [`ServiceError::retry_after`].
    RateLimited,
    /// Building the client failed (bad CA, bad proxy URL, bad key).
    Configuration,
}

/// A failed service call; `message` never contains credentials.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct ServiceError {
    /// Class.
    pub kind: ServiceErrorKind,
    /// Operation name (as in docs/architecture.md#operations).
    pub operation: &'static str,
    /// What happened.
    pub message: String,
    /// How long the service asked to wait before the next call.
    pub retry_after: Option<std::time::Duration>,
}

impl ServiceError {
    /// Builds an error.
    pub fn new(
        kind: ServiceErrorKind,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Not found.
    pub fn is_not_found(&self) -> bool {
        self.kind == ServiceErrorKind::NotFound
    }

    /// `AgentExistsException`.
    pub fn is_runner_exists(&self) -> bool {
        self.kind == ServiceErrorKind::RunnerExists
    }

    /// `JobStillRunningException`.
    pub fn is_job_still_running(&self) -> bool {
        self.kind == ServiceErrorKind::JobStillRunning
    }
}

/// The Actions service operations the four controllers use.
pub trait ActionsService: Send + Sync {
    /// `GetRunnerGroupByName`: exactly one match required.
    fn get_runner_group_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RunnerGroup, ServiceError>>;
    /// `GetRunnerScaleSet(groupId, name)`: `None` when there is none.
    fn get_runner_scale_set<'a>(
        &'a self,
        runner_group_id: i64,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScaleSet>, ServiceError>>;
    /// `GetRunnerScaleSetById`: `None` on 404 or `null`.
    fn get_runner_scale_set_by_id(
        &self,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<ScaleSet>, ServiceError>>;
    /// `CreateRunnerScaleSet` with `disableUpdate: true`.
    fn create_runner_scale_set(
        &self,
        new: NewScaleSet,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>>;
    /// `UpdateRunnerScaleSet`.
    fn update_runner_scale_set(
        &self,
        id: i64,
        patch: ScaleSetPatch,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>>;
    /// `DeleteRunnerScaleSet`; a missing scale set counts as deleted.
    fn delete_runner_scale_set(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>>;
    /// `GenerateJitRunnerConfig` for a runner `name` with `work_folder`.
    fn generate_jit_runner_config<'a>(
        &'a self,
        scale_set_id: i64,
        name: &'a str,
        work_folder: &'a str,
    ) -> BoxFuture<'a, Result<JitConfig, ServiceError>>;
    /// `GetRunnerByName`: `None` when there is none.
    fn get_runner_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunnerInfo>, ServiceError>>;
    /// `RemoveRunner`.
    fn remove_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>>;
    /// GitHub REST "List self-hosted runners" of the `githubConfigUrl`'s organization,
    /// repository or enterprise, every page.
    fn list_self_hosted_runners(&self) -> BoxFuture<'_, Result<Vec<ListedRunner>, ServiceError>>;
    /// GitHub REST "Delete a self-hosted runner": one GitHub no longer knows counts as deleted;
    /// one that runs a job is [`ServiceErrorKind::JobStillRunning`].
    fn delete_self_hosted_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>>;
}

/// Builds a service client from resolved settings.
pub trait Connector: Send + Sync {
    /// Connects (or prepares a lazy client) for `config`.
    fn connect(
        &self,
        config: ServiceConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn ActionsService>, ServiceError>>;
}
