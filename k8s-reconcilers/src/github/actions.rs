//! The production [`Connector`]: [`ActionsService`] over `actions_client::ActionsClient`.

use std::sync::Arc;

use actions_client::{
    ActionsClient, Credentials as ClientCredentials, JitSetting, NewRunnerScaleSet,
    RunnerReference, RunnerScaleSet, RunnerScaleSetUpdate, SystemInfo, Transport, TransportConfig,
};
use futures::future::BoxFuture;
use scaleset_core::registrations::ListedRunner;

use super::{
    ActionsService, Connector, Credentials, JitConfig, NewScaleSet, RunnerGroup, RunnerInfo,
    ScaleSet, ScaleSetPatch, ServiceConfig, ServiceError, ServiceErrorKind,
};

/// Builds `actions_client` clients: PAT or GitHub App credentials, the object's proxy and
/// custom root CA, and a user agent naming the controller.
#[derive(Debug, Clone)]
pub struct ActionsClientConnector {
    version: String,
}

impl ActionsClientConnector {
    /// A connector reporting `version` in the user agent.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            version: version.into(),
        }
    }

    fn build(&self, config: &ServiceConfig) -> Result<ActionsClient, ServiceError> {
        let configuration = |e: actions_client::Error| {
            ServiceError::new(ServiceErrorKind::Configuration, "Connect", e.to_string())
        };
        let credentials = match &config.credentials {
            Credentials::Pat(token) => ClientCredentials::pat(token.clone()),
            Credentials::App {
                app_id,
                installation_id,
                private_key,
            } => ClientCredentials::app(app_id.clone(), *installation_id, private_key),
        }
        .map_err(configuration)?;
        let transport = if config.proxy.is_none() && config.root_ca_pem.is_none() {
            Transport::shared()
        } else {
            let mut transport = TransportConfig {
                root_ca_pem: config.root_ca_pem.clone(),
                ..TransportConfig::default()
            };
            if let Some(proxy) = &config.proxy {
                transport.proxy.http = proxy.http.clone();
                transport.proxy.https = proxy.https.clone();
                transport.proxy.no_proxy = proxy.no_proxy.clone();
            }
            Transport::new(transport)
        }
        .map_err(configuration)?;
        ActionsClient::builder(config.config_url.clone(), credentials)
            .transport(transport)
            .system_info(SystemInfo {
                version: self.version.clone(),
                subsystem: "controller".to_owned(),
                ..SystemInfo::default()
            })
            .build()
            .map_err(configuration)
    }
}

impl Connector for ActionsClientConnector {
    fn connect(
        &self,
        config: ServiceConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn ActionsService>, ServiceError>> {
        let built = self.build(&config);
        Box::pin(async move {
            let client: Arc<dyn ActionsService> = Arc::new(ClientService {
                client: built?,
                config_url: scaleset_core::naming::without_userinfo(&config.config_url),
            });
            Ok(client)
        })
    }
}

/// [`ActionsService`] over one `ActionsClient`.
struct ClientService {
    client: ActionsClient,
    /// The object's `githubConfigUrl` without any user information, for error messages.
    config_url: String,
}

impl ClientService {
    /// [`service_error`], where a call that got no answer names the URL and the fix.
    fn error(&self, operation: &'static str, e: actions_client::Error) -> ServiceError {
        let mut error = service_error(operation, e);
        if error.kind == ServiceErrorKind::Unreachable {
            error.message = format!(
                "spec.githubConfigUrl {:?}: the Actions service could not be reached ({}); check the host and port in githubConfigUrl, DNS, spec.proxy and network policies between the controller and the host",
                self.config_url, error.message
            );
        }
        error
    }
}

/// Maps a client error to the controllers' classes; the text never holds a credential.
fn service_error(operation: &'static str, e: actions_client::Error) -> ServiceError {
    use actions_client::Error as E;
    let retry_after = match &e {
        E::RateLimited { retry_after, .. } => *retry_after,
        _ => None,
    };
    let kind = match &e {
        E::Config { .. } => ServiceErrorKind::Configuration,
        E::RateLimited { .. } => ServiceErrorKind::RateLimited,
        E::ScaleSetNotFound(_)
        | E::RunnerGroupNotFound(_)
        | E::RunnerNotFound(_)
        | E::SessionNotFound(_) => ServiceErrorKind::NotFound,
        E::JobStillRunning(_) => ServiceErrorKind::JobStillRunning,
        E::RunnerExists(_) => ServiceErrorKind::RunnerExists,
        E::AuthFailed(_) => ServiceErrorKind::Unauthorized,
        E::Rejected(_) | E::SessionConflict(_) => ServiceErrorKind::Invalid,
        E::Transport(_) => ServiceErrorKind::Unreachable,
        _ => ServiceErrorKind::Transient,
    };
    let mut error = ServiceError::new(kind, operation, e.to_string());
    error.retry_after = retry_after;
    error
}

fn scale_set(set: RunnerScaleSet) -> ScaleSet {
    ScaleSet {
        labels: set.labels.into_iter().map(|l| l.name).collect(),
        id: set.id,
        name: set.name,
        runner_group_id: set.runner_group_id,
        runner_group_name: set.runner_group_name,
    }
}

fn runner(r: RunnerReference) -> RunnerInfo {
    RunnerInfo {
        id: r.id,
        name: r.name,
        runner_scale_set_id: r.runner_scale_set_id,
    }
}

impl ActionsService for ClientService {
    fn get_runner_group_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RunnerGroup, ServiceError>> {
        Box::pin(async move {
            let g = self
                .client
                .get_runner_group_by_name(name)
                .await
                .map_err(|e| self.error("GetRunnerGroupByName", e))?;
            Ok(RunnerGroup {
                id: g.id,
                name: g.name,
            })
        })
    }

    fn get_runner_scale_set<'a>(
        &'a self,
        runner_group_id: i64,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScaleSet>, ServiceError>> {
        Box::pin(async move {
            self.client
                .get_runner_scale_set(runner_group_id, name)
                .await
                .map(|s| s.map(scale_set))
                .map_err(|e| self.error("GetRunnerScaleSet", e))
        })
    }

    fn get_runner_scale_set_by_id(
        &self,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<ScaleSet>, ServiceError>> {
        Box::pin(async move {
            match self.client.get_runner_scale_set_by_id(id).await {
                Ok(s) => Ok(s.map(scale_set)),
                Err(actions_client::Error::ScaleSetNotFound(_)) => Ok(None),
                Err(e) => Err(self.error("GetRunnerScaleSetById", e)),
            }
        })
    }

    fn create_runner_scale_set(
        &self,
        new: NewScaleSet,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>> {
        Box::pin(async move {
            let request =
                NewRunnerScaleSet::new(new.name, new.runner_group_id).with_labels(new.labels);
            self.client
                .create_runner_scale_set(&request)
                .await
                .map(scale_set)
                .map_err(|e| self.error("CreateRunnerScaleSet", e))
        })
    }

    fn update_runner_scale_set(
        &self,
        id: i64,
        patch: ScaleSetPatch,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>> {
        Box::pin(async move {
            let update = RunnerScaleSetUpdate {
                name: patch.name,
                runner_group_id: patch.runner_group_id,
                labels: patch.labels.map(|names| {
                    names
                        .into_iter()
                        .map(actions_client::Label::system)
                        .collect()
                }),
                disable_update: true,
            };
            self.client
                .update_runner_scale_set(id, &update)
                .await
                .map(scale_set)
                .map_err(|e| self.error("UpdateRunnerScaleSet", e))
        })
    }

    fn delete_runner_scale_set(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        Box::pin(async move {
            match self.client.delete_runner_scale_set(id).await {
                Ok(()) | Err(actions_client::Error::ScaleSetNotFound(_)) => Ok(()),
                Err(e) => Err(self.error("DeleteRunnerScaleSet", e)),
            }
        })
    }

    fn generate_jit_runner_config<'a>(
        &'a self,
        scale_set_id: i64,
        name: &'a str,
        work_folder: &'a str,
    ) -> BoxFuture<'a, Result<JitConfig, ServiceError>> {
        Box::pin(async move {
            let setting = JitSetting {
                name: name.to_owned(),
                work_folder: work_folder.to_owned(),
            };
            let jit = self
                .client
                .generate_jit_config(scale_set_id, &setting)
                .await
                .map_err(|e| self.error("GenerateJitRunnerConfig", e))?;
            Ok(JitConfig {
                runner: runner(jit.runner),
                encoded_jit_config: jit.encoded_jit_config,
            })
        })
    }

    fn get_runner_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunnerInfo>, ServiceError>> {
        Box::pin(async move {
            self.client
                .get_runner_by_name(name)
                .await
                .map(|r| r.map(runner))
                .map_err(|e| self.error("GetRunnerByName", e))
        })
    }

    fn remove_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        Box::pin(async move {
            self.client
                .remove_runner(id)
                .await
                .map_err(|e| self.error("RemoveRunner", e))
        })
    }

    fn list_self_hosted_runners(&self) -> BoxFuture<'_, Result<Vec<ListedRunner>, ServiceError>> {
        Box::pin(async move {
            let all = self
                .client
                .list_self_hosted_runners()
                .await
                .map_err(|e| self.error("ListSelfHostedRunners", e))?;
            Ok(all
                .into_iter()
                .map(|r| ListedRunner {
                    id: r.id,
                    name: r.name,
                    busy: r.busy,
                    labels: r.labels,
                    runner_group_id: r.runner_group_id,
                })
                .collect())
        })
    }

    fn delete_self_hosted_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        Box::pin(async move {
            self.client
                .delete_self_hosted_runner(id)
                .await
                .map_err(|e| self.error("DeleteSelfHostedRunner", e))
        })
    }
}
