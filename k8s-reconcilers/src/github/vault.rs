//! `vaultConfig`: the GitHub credentials (and the proxy credentials of `spec.proxy`) read from
//! Azure Key Vault instead of Kubernetes Secrets, as ARC 0.12+ does
//! (docs/architecture.md#credentials-proxy-and-ca).
//!
//! `githubConfigSecret` names a Key Vault secret whose value is ARC's JSON (`github_token`, or
//! `github_app_id`, `github_app_installation_id`, `github_app_private_key`); a proxy's
//! `credentialSecretRef` names one with `{"username","password"}`. The vault itself is reached
//! through `vaultConfig.proxy`, whose credentials come from Kubernetes Secrets (as in ARC). The
//! certificate file must be readable by the manager (mounted into its pod); the identity
//! platform host comes from `AZURE_AUTHORITY_HOST` (default login.microsoftonline.com). Clients
//! are cached per vault settings and certificate contents, so the access token is reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use actions_client::key_vault::{
    self, AZURE_KEY_VAULT, KeyVault, KeyVaultConfig, VaultCredentials,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::resolve::{Credentials, ProxySettings};
use crate::crd::VaultConfig;
use crate::error::Error;

/// The vault of an object, when `vaultConfig.type` selects one.
pub(crate) enum Source {
    /// Kubernetes Secrets in the object's namespace.
    Kubernetes,
    /// Azure Key Vault.
    Azure(Arc<KeyVault>),
}

/// Whether `vault` selects a vault (a non-empty `type`), after checking the type.
pub(crate) fn vault_type(vault: Option<&VaultConfig>) -> Result<Option<&'static str>, Error> {
    match vault.and_then(|v| v.type_.as_deref()).unwrap_or_default() {
        "" => Ok(None),
        AZURE_KEY_VAULT => Ok(Some(AZURE_KEY_VAULT)),
        other => Err(Error::Config(format!(
            "spec.vaultConfig.type {other:?} is unknown; the only vault type is azure_key_vault, or leave it empty"
        ))),
    }
}

/// The credentials source of an object: Kubernetes, or the Key Vault client for `vault` (its
/// proxy resolved from Kubernetes Secrets in `namespace`).
pub(crate) async fn source(
    kube: &kube::Client,
    namespace: &str,
    vault: Option<&VaultConfig>,
) -> Result<Source, Error> {
    let (Some(_), Some(vault)) = (vault_type(vault)?, vault) else {
        return Ok(Source::Kubernetes);
    };
    let azure = vault.azure_key_vault.clone().ok_or_else(|| {
        Error::Config(
            "spec.vaultConfig.azureKeyVault is not set but spec.vaultConfig.type is azure_key_vault; set azureKeyVault.url, tenantId, clientId and certificatePath".into(),
        )
    })?;
    let proxy = match &vault.proxy {
        Some(p) => Some(
            super::resolve::proxy_settings_for(
                kube,
                namespace,
                p,
                "spec.vaultConfig.proxy",
                &Source::Kubernetes,
            )
            .await?,
        ),
        None => None,
    };
    let mut config = KeyVaultConfig {
        url: azure.url,
        tenant_id: azure.tenant_id,
        client_id: azure.client_id,
        certificate_path: azure.certificate_path,
        proxy: proxy
            .map(to_client_proxy)
            .unwrap_or_else(actions_client::ProxyConfig::none),
        authority_host: None,
        root_ca_pem: None,
    };
    apply_test_overrides(&mut config);
    let key = cache_key(&config);
    if let Some(found) = crate::lock(cache()).get(&key).cloned() {
        return Ok(Source::Azure(found));
    }
    let client = Arc::new(KeyVault::new(config).map_err(client_error)?);
    crate::lock(cache()).insert(key, client.clone());
    Ok(Source::Azure(client))
}

fn to_client_proxy(p: ProxySettings) -> actions_client::ProxyConfig {
    actions_client::ProxyConfig {
        http: p.http,
        https: p.https,
        no_proxy: p.no_proxy,
        proxy_loopback: false,
    }
}

fn cache() -> &'static Mutex<HashMap<String, Arc<KeyVault>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<KeyVault>>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Everything that went into a client, the certificate file's contents included (a rotated
/// certificate gives a new client).
fn cache_key(c: &KeyVaultConfig) -> String {
    let mut h = Sha256::new();
    for part in [&c.url, &c.tenant_id, &c.client_id, &c.certificate_path] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    for url in [&c.proxy.http, &c.proxy.https] {
        h.update(
            url.as_ref()
                .map(|u| u.expose_secret().as_bytes())
                .unwrap_or_default(),
        );
        h.update(b"\0");
    }
    h.update(c.proxy.no_proxy.join(",").as_bytes());
    h.update(c.authority_host.as_deref().unwrap_or_default().as_bytes());
    h.update(c.root_ca_pem.as_deref().unwrap_or_default().as_bytes());
    h.update(std::fs::read(&c.certificate_path).unwrap_or_default());
    hex::encode(h.finalize())
}

/// A Key Vault client error as a reconcile error: bad settings are the object's configuration
/// (`spec.vaultConfig.…`); anything the vault or the identity platform said may heal (a
/// certificate registered, a secret created) and is retried in minutes.
fn client_error(e: actions_client::Error) -> Error {
    match e {
        actions_client::Error::Config {
            field,
            value,
            reason,
        } => {
            let field = if field.starts_with("azureKeyVault.") {
                format!("spec.vaultConfig.{field}")
            } else {
                format!("spec.vaultConfig ({field})")
            };
            Error::Config(format!("{field} {value:?}: {reason}"))
        }
        other => Error::Unavailable(format!("Azure Key Vault (spec.vaultConfig): {other}")),
    }
}

/// The value of Key Vault secret `name`, named by `field`.
async fn get(vault: &KeyVault, name: &str, field: &str) -> Result<SecretString, Error> {
    if name.trim().is_empty() {
        return Err(Error::Config(format!(
            "{field} is empty; with spec.vaultConfig set it names the Key Vault secret"
        )));
    }
    vault.get_secret(name).await.map_err(|e| match e {
        actions_client::Error::Config { .. } => Error::Config(format!("{field}: {e}")),
        other => Error::Unavailable(format!(
            "Azure Key Vault (spec.vaultConfig), secret {name:?} named by {field}: {other}"
        )),
    })
}

/// The GitHub credentials in Key Vault secret `name` (`spec.githubConfigSecret`).
pub(crate) async fn credentials(vault: &KeyVault, name: &str) -> Result<Credentials, Error> {
    let field = "spec.githubConfigSecret";
    let value = get(vault, name, field).await?;
    match key_vault::github_credentials(name, &value) {
        Ok(VaultCredentials::Pat(token)) => Ok(Credentials::Pat(token)),
        Ok(VaultCredentials::App {
            app_id,
            installation_id,
            private_key,
        }) => Ok(Credentials::App {
            app_id,
            installation_id,
            private_key,
        }),
        Err(e) => Err(Error::Unavailable(format!(
            "Key Vault secret {name:?} ({field}): {e}"
        ))),
    }
}

/// The `username` and `password` in Key Vault secret `name` (a proxy's `credentialSecretRef`).
pub(crate) async fn proxy_user(
    vault: &KeyVault,
    name: &str,
    field: &str,
) -> Result<(String, SecretString), Error> {
    let value = get(vault, name, field).await?;
    key_vault::proxy_credentials(name, &value)
        .map_err(|e| Error::Unavailable(format!("Key Vault secret {name:?} ({field}): {e}")))
}

/// Test settings of one vault URL: the identity platform host and extra CAs.
#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Debug)]
pub struct TestVault {
    /// The identity platform host (instead of `AZURE_AUTHORITY_HOST`).
    pub authority_host: String,
    /// Extra PEM CAs trusted towards it and the vault.
    pub root_ca_pem: Option<String>,
}

#[cfg(any(test, feature = "testing"))]
fn test_vaults() -> &'static Mutex<HashMap<String, TestVault>> {
    static VAULTS: OnceLock<Mutex<HashMap<String, TestVault>>> = OnceLock::new();
    VAULTS.get_or_init(Mutex::default)
}

/// Makes clients of the vault at `vault_url` use `settings` (tests run many emulators in one
/// process, so the environment variable cannot serve them all).
#[cfg(any(test, feature = "testing"))]
pub fn register_test_vault(vault_url: &str, settings: TestVault) {
    crate::lock(test_vaults()).insert(vault_url.trim_end_matches('/').to_owned(), settings);
}

#[cfg(any(test, feature = "testing"))]
fn apply_test_overrides(config: &mut KeyVaultConfig) {
    if let Some(t) = crate::lock(test_vaults()).get(config.url.trim_end_matches('/')) {
        config.authority_host = Some(t.authority_host.clone());
        config.root_ca_pem = t.root_ca_pem.clone();
    }
}

#[cfg(not(any(test, feature = "testing")))]
fn apply_test_overrides(_: &mut KeyVaultConfig) {}
