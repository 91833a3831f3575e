//! Sub-types shared by several of the four kinds (docs/architecture.md#crds).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMapKeySelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Extra labels and annotations for a generated child resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMeta {
    /// Labels added to the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Proxy settings for the controller, the listener and the runners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Proxy for plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<ProxyServerConfig>,
    /// Proxy for HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<ProxyServerConfig>,
    /// Hosts that bypass the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<Vec<String>>,
}

/// One proxy server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyServerConfig {
    /// Proxy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Name of a Secret with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_secret_ref: Option<String>,
}

/// A custom CA for the GitHub server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// Where the PEM bundle comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_from: Option<TlsCertificateSource>,
}

/// Source of a PEM bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsCertificateSource {
    /// ConfigMap key holding the PEM bundle, read from the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        schema_with = "super::markers::config_map_key_selector::<Option<ConfigMapKeySelector>>"
    )]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
}

/// Resolve `githubConfigSecret` from a vault instead of a Kubernetes Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultConfig {
    /// Vault type; only `azure_key_vault` is recognised, empty means none.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Azure Key Vault settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<AzureKeyVaultConfig>,
    /// Proxy used to reach the vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
}

/// Azure Key Vault client-certificate settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureKeyVaultConfig {
    /// Vault URL.
    pub url: String,
    /// Entra tenant id.
    pub tenant_id: String,
    /// App registration client id.
    pub client_id: String,
    /// Path inside the container to a PEM with certificate and key.
    pub certificate_path: String,
}

/// Listener metrics customisation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsConfig {
    /// Counters to expose, by metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<BTreeMap<String, CounterMetric>>,
    /// Gauges to expose, by metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauges: Option<BTreeMap<String, GaugeMetric>>,
    /// Histograms to expose, by metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<BTreeMap<String, HistogramMetric>>,
}

/// Labels of one counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CounterMetric {
    /// Label names.
    pub labels: Vec<String>,
}

/// Labels of one gauge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GaugeMetric {
    /// Label names.
    pub labels: Vec<String>,
}

/// Labels and buckets of one histogram.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistogramMetric {
    /// Label names.
    pub labels: Vec<String>,
    /// Bucket upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<f64>>,
}
