//! The listener's configuration: `config.json` ([`ListenerConfigFile`], the format the manager
//! and ARC's controller write), checked key by key.
//!
//! Unknown keys are ignored so that files written by either controller load. A few optional
//! keys of our own (`health_addr`, `liveness_stale_after_seconds`,
//! `session_conflict_timeout_seconds`) are ignored by ARC's listener.

use std::path::Path;
use std::time::Duration;

use actions_client::key_vault::{
    self, AZURE_KEY_VAULT, KeyVault, KeyVaultConfig, VaultCredentials,
};
use actions_client::{GitHubConfig, Scope};
use k8s_reconcilers::listener_config::{
    EXPECTED_INTEGER, EXPECTED_STRING, KeyError, ListenerConfigFile, NOT_WHOLE,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// The `metrics` key: which metrics to register, with which labels (ARS `spec.listenerMetrics`).
pub use k8s_reconcilers::crd::MetricsConfig;
/// Environment variable holding the path of the config file.
pub use k8s_reconcilers::listener_config::PATH_ENV as CONFIG_PATH_ENV;

/// Largest value of `max_runners` (and ARC's default when the scale set sets none).
pub const MAX_RUNNERS_LIMIT: i64 = i32::MAX as i64;

/// Why a configuration could not be used. Every variant names the key (or file) and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `LISTENER_CONFIG_PATH` is not set.
    #[error(
        "{CONFIG_PATH_ENV} environment variable is not set; fix: set it to the path of the listener's config.json"
    )]
    PathNotSet,
    /// The file could not be read.
    #[error(
        "cannot read config file {path}: {source}; fix: mount the listener config secret at that path"
    )]
    Read {
        /// The path from `LISTENER_CONFIG_PATH`.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a JSON object.
    #[error(
        "config file {path} is not a JSON object: {message}; fix: write one JSON object with ARC's listener keys"
    )]
    Json {
        /// The path from `LISTENER_CONFIG_PATH`.
        path: String,
        /// The parser's message (never contains values of secret keys).
        message: String,
    },
    /// One key is wrong.
    #[error("config key `{key}`: {problem}; fix: {fix}")]
    Key {
        /// The JSON key at fault.
        key: String,
        /// What is wrong (never contains secret values).
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

impl ConfigError {
    fn key(key: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.to_owned(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl From<KeyError> for ConfigError {
    fn from(KeyError { key, problem }: KeyError) -> Self {
        let fix = if problem.ends_with(EXPECTED_STRING) {
            format!("write {key} as a JSON string")
        } else if problem.ends_with(EXPECTED_INTEGER) {
            format!("write {key} as a JSON integer without quotes")
        } else if problem.ends_with(NOT_WHOLE) {
            format!("write {key} as a JSON integer")
        } else if key == "metrics" {
            METRICS_FIX.to_owned()
        } else {
            format!("correct the value of {key}")
        };
        ConfigError::Key { key, problem, fix }
    }
}

const METRICS_FIX: &str = "use {\"counters\":{name:{\"labels\":[..]}},\"gauges\":{..},\"histograms\":{name:{\"labels\":[..],\"buckets\":[..]}}}";

/// Log level (`log_level`), case-insensitive in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

/// Log format (`log_format`), case-sensitive in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// logfmt-like text.
    Text,
}

/// Credentials for GitHub.
#[derive(Debug, Clone)]
pub enum GitHubCredentials {
    /// A personal access token (`github_token`).
    Pat(SecretString),
    /// A GitHub App (`github_app_id`, `github_app_installation_id`, `github_app_private_key`).
    App {
        /// App id or client id (JWT issuer).
        app_id: String,
        /// Installation id.
        installation_id: i64,
        /// PEM RSA private key.
        private_key: SecretString,
    },
    /// Still in Azure Key Vault: [`ListenerConfig::resolve_vault`] reads them.
    Vault(Box<VaultLookup>),
}

/// Where a vault holds the credentials (`vault_type` `azure_key_vault`): the Key Vault secret
/// (`vault_lookup_key`) and the client's settings (`azure_key_vault`).
#[derive(Debug, Clone)]
pub struct VaultLookup {
    /// Name of the Key Vault secret with ARC's credentials JSON.
    pub lookup_key: String,
    /// The Key Vault client's settings; its proxy is the listener's proxy environment.
    pub key_vault: KeyVaultConfig,
}

/// The validated listener configuration.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// `configure_url`, trimmed of surrounding `/`.
    pub configure_url: String,
    /// Credentials (`github_token` or the three `github_app_*` keys).
    pub credentials: GitHubCredentials,
    /// `ephemeral_runner_set_namespace`.
    pub ephemeral_runner_set_namespace: String,
    /// `ephemeral_runner_set_name`.
    pub ephemeral_runner_set_name: String,
    /// `max_runners` (0..=2^31-1).
    pub max_runners: i64,
    /// `min_runners` (minimum idle runners).
    pub min_runners: i64,
    /// `runner_scale_set_id` (non-zero).
    pub runner_scale_set_id: i64,
    /// `runner_scale_set_name`: the AutoscalingRunnerSet whose bounds the listener follows.
    pub runner_scale_set_name: String,
    /// `server_root_ca`: extra PEM CA certificates, if any.
    pub server_root_ca: Option<String>,
    /// `log_level`.
    pub log_level: LogLevel,
    /// `log_format`.
    pub log_format: LogFormat,
    /// `metrics_addr`; `None` means no metrics server and no recording.
    pub metrics_addr: Option<String>,
    /// `metrics_endpoint`, `/metrics` when empty.
    pub metrics_endpoint: String,
    /// `metrics`; `None` means the default set.
    pub metrics: Option<MetricsConfig>,
    /// `health_addr` (ours): `host:port` of `/healthz` and `/readyz`; `None` means no server.
    pub health_addr: Option<String>,
    /// `liveness_stale_after_seconds` (ours, default 180): liveness fails when no poll completed for this long.
    pub liveness_stale_after: Duration,
    /// `session_conflict_timeout_seconds` (ours, default 300): how long a 409 session conflict is retried.
    pub session_conflict_timeout: Duration,
}

/// Parts of `configure_url` used for metric labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigUrlParts {
    /// Enterprise slug (`…/enterprises/<e>`).
    pub enterprise: String,
    /// Organization.
    pub organization: String,
    /// Repository.
    pub repository: String,
}

impl ListenerConfig {
    /// Reads the file named by `LISTENER_CONFIG_PATH`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let path = std::env::var_os(CONFIG_PATH_ENV).ok_or(ConfigError::PathNotSet)?;
        if path.is_empty() {
            return Err(ConfigError::PathNotSet);
        }
        Self::from_file(Path::new(&path))
    }

    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            ConfigError::Json { message, .. } => ConfigError::Json {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config JSON text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            path: String::new(),
            message: e.to_string(),
        })?;
        if !value.is_object() {
            return Err(ConfigError::Json {
                path: String::new(),
                message: "the top level is not an object".into(),
            });
        }
        Self::validate(ListenerConfigFile::from_value(value)?)
    }

    fn validate(file: ListenerConfigFile) -> Result<Self, ConfigError> {
        let configure_url = file.configure_url.trim_matches('/').to_string();
        if configure_url.is_empty() {
            return Err(ConfigError::key(
                "configure_url",
                "is empty",
                "set it to the GitHub URL of the enterprise, organization or repository (spec.githubConfigUrl)",
            ));
        }
        parse_config_url(&configure_url)?;

        if file.ephemeral_runner_set_namespace.is_empty() {
            return Err(ConfigError::key(
                "ephemeral_runner_set_namespace",
                "is empty",
                "set it to the namespace of the AutoscalingRunnerSet",
            ));
        }
        if file.ephemeral_runner_set_name.is_empty() {
            return Err(ConfigError::key(
                "ephemeral_runner_set_name",
                "is empty",
                "set it to the name of the EphemeralRunnerSet to patch",
            ));
        }
        let runner_scale_set_id = file.runner_scale_set_id;
        if runner_scale_set_id <= 0 {
            return Err(ConfigError::key(
                "runner_scale_set_id",
                format!("is {runner_scale_set_id}, must be a positive id"),
                "set it to the scale set id from the AutoscalingRunnerSet annotation runner-scale-set-id",
            ));
        }
        let min_runners = file.min_runners;
        let max_runners = file.max_runners.unwrap_or(MAX_RUNNERS_LIMIT);
        if !(0..=MAX_RUNNERS_LIMIT).contains(&min_runners) {
            return Err(ConfigError::key(
                "min_runners",
                format!("is {min_runners}, must be between 0 and {MAX_RUNNERS_LIMIT}"),
                "set minRunners to a non-negative number",
            ));
        }
        if !(0..=MAX_RUNNERS_LIMIT).contains(&max_runners) {
            return Err(ConfigError::key(
                "max_runners",
                format!("is {max_runners}, must be between 0 and {MAX_RUNNERS_LIMIT}"),
                format!("set maxRunners within 0..={MAX_RUNNERS_LIMIT}, or leave it unset"),
            ));
        }
        if min_runners > max_runners {
            return Err(ConfigError::key(
                "min_runners",
                format!("({min_runners}) is greater than max_runners ({max_runners})"),
                "lower minRunners or raise maxRunners",
            ));
        }

        let vault = match file.vault_type.as_str() {
            "" => None,
            AZURE_KEY_VAULT => Some(key_vault_credentials(&file)?),
            other => {
                return Err(ConfigError::key(
                    "vault_type",
                    format!("unknown vault type {other:?}"),
                    "use \"\" (credentials in the config) or \"azure_key_vault\"",
                ));
            }
        };
        if vault.is_none() && !file.vault_lookup_key.is_empty() {
            return Err(ConfigError::key(
                "vault_lookup_key",
                "is set but vault_type is empty",
                "set vault_type, or remove vault_lookup_key",
            ));
        }
        let credentials = match vault {
            Some(vault) => vault,
            None => credentials(&file)?,
        };

        let server_root_ca = if file.server_root_ca.trim().is_empty() {
            None
        } else {
            if !file.server_root_ca.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::key(
                    "server_root_ca",
                    "contains no PEM certificate",
                    "set it to PEM text with one or more -----BEGIN CERTIFICATE----- blocks",
                ));
            }
            Some(file.server_root_ca)
        };

        let log_level = match file.log_level.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            other => {
                return Err(ConfigError::key(
                    "log_level",
                    format!("invalid log level {other:?}"),
                    "use debug, info, warn or error",
                ));
            }
        };
        let log_format = match file.log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(ConfigError::key(
                    "log_format",
                    format!("invalid log format {other:?}"),
                    "use json or text",
                ));
            }
        };

        let metrics_addr = address("metrics_addr", file.metrics_addr)?;
        let mut metrics_endpoint = file.metrics_endpoint;
        if metrics_endpoint.is_empty() {
            metrics_endpoint = "/metrics".into();
        } else if !metrics_endpoint.starts_with('/') {
            return Err(ConfigError::key(
                "metrics_endpoint",
                format!("{metrics_endpoint:?} is not an absolute URL path"),
                "start it with '/', e.g. /metrics",
            ));
        }
        let histograms = file
            .metrics
            .iter()
            .flat_map(|m| m.histograms.iter().flatten());
        for (name, h) in histograms {
            let buckets = h.buckets.as_deref().unwrap_or_default();
            let increasing = buckets.windows(2).all(|w| w[0] < w[1]);
            if !increasing || buckets.iter().any(|b| !b.is_finite()) {
                return Err(ConfigError::key(
                    "metrics",
                    format!("histogram {name}: buckets must be finite and strictly increasing"),
                    "list bucket upper bounds in increasing order, or omit buckets for the defaults",
                ));
            }
        }

        let health_addr = address("health_addr", file.health_addr)?;
        let liveness_stale_after = seconds(
            "liveness_stale_after_seconds",
            file.liveness_stale_after_seconds,
            180,
        )?;
        let session_conflict_timeout = seconds(
            "session_conflict_timeout_seconds",
            file.session_conflict_timeout_seconds,
            300,
        )?;

        Ok(ListenerConfig {
            configure_url,
            credentials,
            ephemeral_runner_set_namespace: file.ephemeral_runner_set_namespace,
            ephemeral_runner_set_name: file.ephemeral_runner_set_name,
            max_runners,
            min_runners,
            runner_scale_set_id,
            runner_scale_set_name: file.runner_scale_set_name,
            server_root_ca,
            log_level,
            log_format,
            metrics_addr,
            metrics_endpoint,
            metrics: file.metrics,
            health_addr,
            liveness_stale_after,
            session_conflict_timeout,
        })
    }

    /// Enterprise / organization / repository parsed from `configure_url`.
    pub fn url_parts(&self) -> ConfigUrlParts {
        parse_config_url(&self.configure_url).unwrap_or_default()
    }
}

fn key_vault_credentials(file: &ListenerConfigFile) -> Result<GitHubCredentials, ConfigError> {
    if file.vault_lookup_key.is_empty() {
        return Err(ConfigError::key(
            "vault_lookup_key",
            "is empty but vault_type is azure_key_vault",
            "set it to the name of the Key Vault secret with the GitHub credentials (githubConfigSecret)",
        ));
    }
    let Some(azure) = &file.azure_key_vault else {
        return Err(ConfigError::key(
            "azure_key_vault",
            "is not set but vault_type is azure_key_vault",
            "set tenant_id, client_id, url and certificate_path (spec.vaultConfig.azureKeyVault)",
        ));
    };
    Ok(GitHubCredentials::Vault(Box::new(VaultLookup {
        lookup_key: file.vault_lookup_key.clone(),
        key_vault: KeyVaultConfig {
            url: azure.url.clone(),
            tenant_id: azure.tenant_id.clone(),
            client_id: azure.client_id.clone(),
            certificate_path: azure.certificate_path.clone(),
            proxy: actions_client::ProxyConfig::from_env(),
            authority_host: None,
            root_ca_pem: None,
        },
    })))
}

impl ListenerConfig {
    /// Reads the credentials from Azure Key Vault when the config names a vault (as ARC's
    /// listener does at start); otherwise does nothing.
    pub async fn resolve_vault(&mut self) -> Result<(), actions_client::Error> {
        let GitHubCredentials::Vault(lookup) = &self.credentials else {
            return Ok(());
        };
        let vault = KeyVault::new(lookup.key_vault.clone())?;
        let value = vault.get_secret(&lookup.lookup_key).await?;
        self.credentials = match key_vault::github_credentials(&lookup.lookup_key, &value)? {
            VaultCredentials::Pat(token) => GitHubCredentials::Pat(token),
            VaultCredentials::App {
                app_id,
                installation_id,
                private_key,
            } => GitHubCredentials::App {
                app_id,
                installation_id,
                private_key,
            },
        };
        Ok(())
    }
}

fn credentials(file: &ListenerConfigFile) -> Result<GitHubCredentials, ConfigError> {
    let token = file.github_token.clone();
    let app_id = file.github_app_id.clone();
    let installation_id = file.github_app_installation_id;
    let private_key = file.github_app_private_key.clone();
    let app_complete =
        !app_id.is_empty() && installation_id > 0 && !private_key.expose_secret().is_empty();
    let has_token = !token.expose_secret().is_empty();
    if has_token && app_complete {
        return Err(ConfigError::key(
            "github_token",
            "both a PAT and GitHub App credentials are set",
            "keep either github_token or the github_app_* keys in the config secret, not both",
        ));
    }
    if has_token {
        return Ok(GitHubCredentials::Pat(token));
    }
    if app_complete {
        return Ok(GitHubCredentials::App {
            app_id,
            installation_id,
            private_key,
        });
    }
    let (key, problem): (&'static str, &str) =
        if app_id.is_empty() && installation_id == 0 && private_key.expose_secret().is_empty() {
            (
                "github_token",
                "no credentials: github_token and github_app_* are all empty",
            )
        } else if app_id.is_empty() {
            (
                "github_app_id",
                "is empty but other github_app_* keys are set",
            )
        } else if installation_id <= 0 {
            (
                "github_app_installation_id",
                "must be a positive installation id",
            )
        } else {
            (
                "github_app_private_key",
                "is empty but other github_app_* keys are set",
            )
        };
    Err(ConfigError::key(
        key,
        problem,
        "provide github_token, or all of github_app_id, github_app_installation_id and github_app_private_key",
    ))
}

/// `None` for an empty address, else the address if it is `host:port`.
fn address(key: &str, addr: String) -> Result<Option<String>, ConfigError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if port_ok {
        Ok(Some(addr))
    } else {
        Err(ConfigError::key(
            key,
            format!("{addr:?} is not host:port"),
            "use host:port, e.g. :8080 or 0.0.0.0:8080",
        ))
    }
}

fn seconds(key: &str, value: Option<i64>, default: u64) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(Duration::from_secs(default)),
        Some(s) if s > 0 => Ok(Duration::from_secs(s.unsigned_abs())),
        Some(s) => Err(ConfigError::key(
            key,
            format!("is {s}, must be positive"),
            format!("set a number of seconds > 0, or remove the key for the default {default}"),
        )),
    }
}

/// Splits a GitHub config URL into enterprise / organization / repository (the rules are
/// `actions_client::GitHubConfig`'s, so the listener accepts exactly what its client can use).
pub fn parse_config_url(url: &str) -> Result<ConfigUrlParts, ConfigError> {
    let config = GitHubConfig::parse(url).map_err(|e| {
        let problem = match e {
            actions_client::Error::Config { value, reason, .. } => format!("{value:?}: {reason}"),
            other => other.to_string(),
        };
        ConfigError::key(
            "configure_url",
            problem,
            "point it at an enterprise (https://host/enterprises/<e>), organization (https://host/<org>) or repository (https://host/<org>/<repo>)",
        )
    })?;
    Ok(match config.scope() {
        Scope::Enterprise { enterprise } => ConfigUrlParts {
            enterprise: enterprise.clone(),
            ..Default::default()
        },
        Scope::Organization { organization } => ConfigUrlParts {
            organization: organization.clone(),
            ..Default::default()
        },
        Scope::Repository { owner, repository } => ConfigUrlParts {
            organization: owner.clone(),
            repository: repository.clone(),
            ..Default::default()
        },
    })
}
