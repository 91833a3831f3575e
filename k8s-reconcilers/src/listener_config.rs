//! The listener's `config.json`: the AutoscalingListener reconciler writes it into the
//! listener's config Secret, the listener reads it (docs/architecture.md#listener-configuration).
//!
//! Keys and their order are ARC's, so ARC's listener can read what the manager writes and this
//! listener can read what ARC's controller writes; the last three keys are ours and ARC's
//! listener ignores them. Reading is as lenient as ARC's Go decoder: unknown keys are ignored,
//! missing keys and `null` take the zero value, and `github_app_id` may be a number. Whether the
//! values make sense is checked by the listener.

use secrecy::{ExposeSecret, SecretString};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::crd::MetricsConfig;

/// Key of `config.json` in the listener's config Secret, and its file name in the mount.
pub const FILE_NAME: &str = "config.json";

/// Environment variable telling the listener where `config.json` is.
pub const PATH_ENV: &str = "LISTENER_CONFIG_PATH";

/// End of the problem text of a key whose value is not a JSON string.
pub const EXPECTED_STRING: &str = "expected a string";

/// End of the problem text of a key whose value is not a JSON number.
pub const EXPECTED_INTEGER: &str = "expected an integer";

/// Problem text of an integer key whose number is fractional or out of the 64-bit range.
pub const NOT_WHOLE: &str = "is not a whole number in the 64-bit range";

/// The contents of `config.json`, field for field (and in order) the JSON keys.
///
/// Empty strings and zeros mean "not set", as in ARC. Secrets are written in clear (the file is
/// a Secret) but never appear in `Debug` output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListenerConfigFile {
    /// GitHub URL of the enterprise, organization or repository (`spec.githubConfigUrl`).
    #[serde(default, deserialize_with = "string")]
    pub configure_url: String,
    /// ARC's vault type; `""` means the credentials are in this file.
    #[serde(default, deserialize_with = "string")]
    pub vault_type: String,
    /// ARC's vault lookup key.
    #[serde(default, deserialize_with = "string")]
    pub vault_lookup_key: String,
    /// ARC's Azure Key Vault settings, with `vault_type` `azure_key_vault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<AzureKeyVaultFile>,
    /// GitHub App id or client id; `""` when a PAT is used.
    #[serde(default, deserialize_with = "string_or_number")]
    pub github_app_id: String,
    /// GitHub App installation id; 0 when a PAT is used.
    #[serde(default, deserialize_with = "integer")]
    pub github_app_installation_id: i64,
    /// GitHub App PEM private key.
    #[serde(default, serialize_with = "expose", deserialize_with = "secret")]
    pub github_app_private_key: SecretString,
    /// Personal access token.
    #[serde(default, serialize_with = "expose", deserialize_with = "secret")]
    pub github_token: SecretString,
    /// Namespace of the EphemeralRunnerSet the listener scales.
    #[serde(default, deserialize_with = "string")]
    pub ephemeral_runner_set_namespace: String,
    /// Name of the EphemeralRunnerSet the listener scales.
    #[serde(default, deserialize_with = "string")]
    pub ephemeral_runner_set_name: String,
    /// Largest runner count; `None` (missing or `null`) means no limit.
    #[serde(default, deserialize_with = "optional_integer")]
    pub max_runners: Option<i64>,
    /// Smallest runner count (idle runners).
    #[serde(default, deserialize_with = "integer")]
    pub min_runners: i64,
    /// Id of the runner scale set in the Actions service.
    #[serde(default, deserialize_with = "integer")]
    pub runner_scale_set_id: i64,
    /// Name of the AutoscalingRunnerSet; the listener follows its `minRunners` and `maxRunners`.
    #[serde(default, deserialize_with = "string")]
    pub runner_scale_set_name: String,
    /// Extra PEM CA certificates for the Actions service.
    #[serde(default, deserialize_with = "string")]
    pub server_root_ca: String,
    /// `debug`, `info`, `warn` or `error`.
    #[serde(default, deserialize_with = "string")]
    pub log_level: String,
    /// `json` or `text`.
    #[serde(default, deserialize_with = "string")]
    pub log_format: String,
    /// `host:port` of the metrics server; `""` turns metrics off.
    #[serde(default, deserialize_with = "string")]
    pub metrics_addr: String,
    /// URL path of the metrics.
    #[serde(default, deserialize_with = "string")]
    pub metrics_endpoint: String,
    /// Which metrics to register; `None` means ARC's default set.
    #[serde(default, deserialize_with = "metrics")]
    pub metrics: Option<MetricsConfig>,
    /// Ours: `host:port` of `/healthz` and `/readyz`; `""` means no health server.
    #[serde(default, deserialize_with = "string")]
    pub health_addr: String,
    /// Ours: liveness fails when no long poll completed for this many seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_integer"
    )]
    pub liveness_stale_after_seconds: Option<i64>,
    /// Ours: how many seconds a 409 session conflict is retried.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_integer"
    )]
    pub session_conflict_timeout_seconds: Option<i64>,
}

impl ListenerConfigFile {
    /// The config without `min_runners` and `max_runners`: what a listener process depends
    /// on. The listener follows the bounds on its AutoscalingRunnerSet without a restart
    /// (docs/architecture.md#runner-bounds).
    pub fn without_bounds(&self) -> Self {
        Self {
            min_runners: 0,
            max_runners: None,
            ..self.clone()
        }
    }
}

/// The `azure_key_vault` object of `config.json` (ARC's keys; the vault's proxy comes from the
/// listener's proxy environment, as in ARC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureKeyVaultFile {
    /// Microsoft Entra tenant id.
    #[serde(default, deserialize_with = "string")]
    pub tenant_id: String,
    /// Application (client) id.
    #[serde(default, deserialize_with = "string")]
    pub client_id: String,
    /// Vault URL.
    #[serde(default, deserialize_with = "string")]
    pub url: String,
    /// Path of the PEM file with the certificate and its key, inside the listener's container.
    #[serde(default, deserialize_with = "string")]
    pub certificate_path: String,
}

/// A key of `config.json` whose value has the wrong JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {problem}")]
pub struct KeyError {
    /// The JSON key.
    pub key: String,
    /// What is wrong, without the value itself (it may be a secret): "is a boolean, expected
    /// a string", [`NOT_WHOLE`], or "invalid: …" for `metrics`.
    pub problem: String,
}

impl ListenerConfigFile {
    /// Reads the file from a parsed JSON document; an error names the first key of the wrong
    /// JSON type.
    pub fn from_value(value: Value) -> Result<Self, KeyError> {
        serde_path_to_error::deserialize(value).map_err(|e| KeyError {
            key: e.path().to_string(),
            problem: e.into_inner().to_string(),
        })
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        other => Err(D::Error::custom(format!(
            "is {}, {EXPECTED_STRING}",
            type_name(&other)
        ))),
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => Ok(n.to_string()),
        other => string(other).map_err(D::Error::custom),
    }
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    string(d).map(SecretString::from)
}

fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

fn optional_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} {NOT_WHOLE}"))),
        other => Err(D::Error::custom(format!(
            "is {}, {EXPECTED_INTEGER}",
            type_name(&other)
        ))),
    }
}

fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    optional_integer(d).map(Option::unwrap_or_default)
}

fn metrics<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MetricsConfig>, D::Error> {
    Option::<MetricsConfig>::deserialize(Value::deserialize(d)?)
        .map_err(|e| D::Error::custom(format!("invalid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_name_the_key_and_the_type_but_not_the_value() {
        let e = ListenerConfigFile::from_value(serde_json::json!({"github_token": 42}))
            .expect_err("a number token");
        assert_eq!(
            e.to_string(),
            "config key `github_token`: is a number, expected a string"
        );
        let e = ListenerConfigFile::from_value(serde_json::json!({"max_runners": 1.5}))
            .expect_err("fractional");
        assert_eq!(e.key, "max_runners");
        assert_eq!(e.problem, format!("1.5 {NOT_WHOLE}"));
        let e = ListenerConfigFile::from_value(serde_json::json!({"metrics": {"counters": []}}))
            .expect_err("counters as a list");
        assert_eq!(e.key, "metrics");
        assert!(e.problem.starts_with("invalid: "), "{}", e.problem);
    }

    #[test]
    fn null_missing_and_numeric_app_id_read_as_arc_does() -> Result<(), KeyError> {
        let file = ListenerConfigFile::from_value(serde_json::json!({
            "configure_url": null, "github_app_id": 123, "max_runners": null, "other": [1],
        }))?;
        assert_eq!(file.configure_url, "");
        assert_eq!(file.github_app_id, "123");
        assert_eq!(file.max_runners, None);
        assert_eq!(file.min_runners, 0);
        Ok(())
    }
}
