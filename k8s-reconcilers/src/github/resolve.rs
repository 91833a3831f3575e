//! Resolution of an object's service settings from Kubernetes: the credentials Secret (ARC's
//! keys), proxy credential Secrets and the TLS ConfigMap
//! (docs/architecture.md#credentials-proxy-and-ca).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::crd::{EphemeralRunnerSpec, ProxyConfig, TlsConfig, VaultConfig};
use crate::error::Error;

use super::vault;

/// Credentials for the Actions service, from ARC's Secret keys.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// `github_token`.
    Pat(SecretString),
    /// `github_app_id` (id or client id), `github_app_installation_id`, `github_app_private_key`.
    App {
        /// App id or client id.
        app_id: String,
        /// Installation id.
        installation_id: i64,
        /// PEM private key.
        private_key: SecretString,
    },
}

impl Credentials {
    /// Reads and validates ARC's keys from a Secret's data (`secret` names it in errors).
    pub fn from_secret_data(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Self, Error> {
        let text = |key: &str| -> Result<String, Error> {
            match data.get(key) {
                None => Ok(String::new()),
                Some(bytes) => String::from_utf8(bytes.clone()).map_err(|_| {
                    Error::Unavailable(format!("Secret {secret}: key {key} is not valid UTF-8"))
                }),
            }
        };
        let token = text("github_token")?;
        let app_id = text("github_app_id")?;
        let installation = text("github_app_installation_id")?;
        let key = text("github_app_private_key")?;
        let installation_id = if installation.trim().is_empty() {
            0
        } else {
            installation.trim().parse::<i64>().map_err(|_| {
                Error::Unavailable(format!(
                    "Secret {secret}: github_app_installation_id {:?} is not an integer; set it to the numeric installation id",
                    installation.trim()
                ))
            })?
        };
        let has_token = !token.is_empty();
        let has_app = !app_id.is_empty() && installation_id > 0 && !key.is_empty();
        match (has_token, has_app) {
            (true, true) => Err(Error::Unavailable(format!(
                "Secret {secret}: both PAT and GitHub App credentials provided; keep either github_token or github_app_id/github_app_installation_id/github_app_private_key"
            ))),
            (false, false) => Err(Error::Unavailable(format!(
                "Secret {secret}: no credentials provided; set github_token, or github_app_id, github_app_installation_id and github_app_private_key"
            ))),
            (true, false) => Ok(Credentials::Pat(SecretString::from(token))),
            (false, true) => Ok(Credentials::App {
                app_id,
                installation_id,
                private_key: SecretString::from(key),
            }),
        }
    }

    fn digest_into(&self, hasher: &mut Sha256) {
        match self {
            Credentials::Pat(token) => {
                hasher.update(b"pat\0");
                hasher.update(token.expose_secret().as_bytes());
            }
            Credentials::App {
                app_id,
                installation_id,
                private_key,
            } => {
                hasher.update(b"app\0");
                hasher.update(app_id.as_bytes());
                hasher.update(installation_id.to_le_bytes());
                hasher.update(private_key.expose_secret().as_bytes());
            }
        }
        hasher.update(b"\0");
    }
}

/// Proxy URLs with credentials inserted (hence secret), and the bypass list.
#[derive(Clone, Debug, Default)]
pub struct ProxySettings {
    /// `http_proxy`.
    pub http: Option<SecretString>,
    /// `https_proxy`.
    pub https: Option<SecretString>,
    /// `no_proxy` entries.
    pub no_proxy: Vec<String>,
}

/// Everything needed to build a service client for one object.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// `githubConfigUrl`.
    pub config_url: String,
    /// Namespace of the object (part of the cache key, as in ARC).
    pub namespace: String,
    /// Credentials.
    pub credentials: Credentials,
    /// Proxy, when configured.
    pub proxy: Option<ProxySettings>,
    /// Extra root CAs (PEM), when configured.
    pub root_ca_pem: Option<String>,
}

impl ServiceConfig {
    /// A digest of every input, so that a rotated Secret or CA gives a different key.
    pub fn cache_key(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.config_url, &self.namespace] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        self.credentials.digest_into(&mut h);
        if let Some(p) = &self.proxy {
            for url in [&p.http, &p.https] {
                h.update(
                    url.as_ref()
                        .map(|u| u.expose_secret().as_bytes())
                        .unwrap_or_default(),
                );
                h.update(b"\0");
            }
            h.update(p.no_proxy.join(",").as_bytes());
        }
        h.update(b"\0");
        h.update(self.root_ca_pem.as_deref().unwrap_or_default().as_bytes());
        hex::encode(h.finalize())
    }
}

/// The fields of an AutoscalingRunnerSet, EphemeralRunnerSet or EphemeralRunner that select
/// its service client.
#[derive(Clone, Copy, Debug)]
pub struct ObjectSettings<'a> {
    /// Namespace of the object: Secrets and ConfigMaps are read from it.
    pub namespace: &'a str,
    /// `githubConfigUrl`.
    pub config_url: &'a str,
    /// `githubConfigSecret`.
    pub secret: &'a str,
    /// `proxy`.
    pub proxy: Option<&'a ProxyConfig>,
    /// `githubServerTLS`.
    pub tls: Option<&'a TlsConfig>,
    /// `vaultConfig`.
    pub vault: Option<&'a VaultConfig>,
}

impl<'a> ObjectSettings<'a> {
    /// Everything that names the objects a config is resolved from (not their contents).
    pub(crate) fn cache_key(&self) -> String {
        let json = |v: Result<String, serde_json::Error>| v.unwrap_or_default();
        format!(
            "{}\0{}\0{}\0{}\0{}\0{}",
            self.namespace,
            self.config_url,
            self.secret,
            json(serde_json::to_string(&self.proxy)),
            json(serde_json::to_string(&self.tls)),
            json(serde_json::to_string(&self.vault)),
        )
    }

    /// The settings of an EphemeralRunner's spec (also an EphemeralRunnerSet's runner spec) in
    /// `namespace`.
    pub fn for_runner_spec(namespace: &'a str, spec: &'a EphemeralRunnerSpec) -> Self {
        Self {
            namespace,
            config_url: &spec.github_config_url,
            secret: &spec.github_config_secret,
            proxy: spec.proxy.as_ref(),
            tls: spec.github_server_tls.as_ref(),
            vault: spec.vault_config.as_ref(),
        }
    }
}

/// Reads the credentials Secret, proxy Secrets and TLS ConfigMap of an object (never cached).
pub async fn resolve_service_config(
    kube: &kube::Client,
    object: ObjectSettings<'_>,
) -> Result<ServiceConfig, Error> {
    if object.config_url.trim().is_empty() {
        return Err(Error::Config(
            "spec.githubConfigUrl is empty; set it to https://<host>/<org>, https://<host>/<org>/<repo> or https://<host>/enterprises/<enterprise>".into(),
        ));
    }
    scaleset_core::naming::ConfigUrl::parse(object.config_url)
        .map_err(|e| Error::Config(e.to_string()))?;
    let source = vault::source(kube, object.namespace, object.vault).await?;
    let credentials = source_credentials(kube, object.namespace, object.secret, &source).await?;
    let proxy = match object.proxy {
        Some(p) => {
            Some(proxy_settings_for(kube, object.namespace, p, "spec.proxy", &source).await?)
        }
        None => None,
    };
    let root_ca_pem = match object.tls {
        Some(tls) => read_ca(kube, object.namespace, tls).await?,
        None => None,
    };
    Ok(ServiceConfig {
        config_url: object.config_url.to_owned(),
        namespace: object.namespace.to_owned(),
        credentials,
        proxy,
        root_ca_pem,
    })
}

/// Reads the GitHub credentials `githubConfigSecret` names: a Secret in `namespace`, or with
/// `vaultConfig` a Key Vault secret.
pub async fn read_object_credentials(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
    vault: Option<&VaultConfig>,
) -> Result<Credentials, Error> {
    let source = vault::source(kube, namespace, vault).await?;
    source_credentials(kube, namespace, name, &source).await
}

async fn source_credentials(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
    source: &vault::Source,
) -> Result<Credentials, Error> {
    match source {
        vault::Source::Kubernetes => read_credentials(kube, namespace, name).await,
        vault::Source::Azure(kv) => vault::credentials(kv, name).await,
    }
}

/// Reads and validates the credentials Secret `name` in `namespace`.
pub async fn read_credentials(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Credentials, Error> {
    if name.trim().is_empty() {
        return Err(Error::Config(
            "spec.githubConfigSecret is empty; set it to the name of a Secret with github_token or GitHub App keys".into(),
        ));
    }
    let data = read_secret(kube, namespace, name, "spec.githubConfigSecret").await?;
    Credentials::from_secret_data(&format!("{namespace}/{name}"), &data)
}

/// Refuses a name the API server could not look up (it would fail as a malformed request,
/// which reads as a transient error, rather than as "not found").
fn check_object_name(kind: &str, field: &str, name: &str) -> Result<(), Error> {
    if scaleset_core::naming::is_dns1123_subdomain(name) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{field} {name:?} is not a {kind} name; use at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    )))
}

async fn read_secret(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    check_object_name("Secret", field, name)?;
    let api: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    let secret = api.get_opt(name).await?.ok_or_else(|| {
        Error::Unavailable(format!(
            "Secret {namespace}/{name} (named in {field}) was not found; create it or fix {field}"
        ))
    })?;
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    Ok(data)
}

/// Turns a ProxyConfig into URLs with `username:password` from the credential Secrets.
pub async fn proxy_settings(
    kube: &kube::Client,
    namespace: &str,
    proxy: &ProxyConfig,
) -> Result<ProxySettings, Error> {
    proxy_settings_for(
        kube,
        namespace,
        proxy,
        "spec.proxy",
        &vault::Source::Kubernetes,
    )
    .await
}

/// [`proxy_settings`] for the proxy at `prefix` (`spec.proxy`, `spec.vaultConfig.proxy`), its
/// credentials from Kubernetes Secrets or Key Vault secrets (`source`).
pub(crate) async fn proxy_settings_for(
    kube: &kube::Client,
    namespace: &str,
    proxy: &ProxyConfig,
    prefix: &str,
    source: &vault::Source,
) -> Result<ProxySettings, Error> {
    let mut out = ProxySettings {
        no_proxy: proxy.no_proxy.clone().unwrap_or_default(),
        ..Default::default()
    };
    for (scheme, server, slot) in [
        ("http", proxy.http.as_ref(), &mut out.http),
        ("https", proxy.https.as_ref(), &mut out.https),
    ] {
        let Some(server) = server else { continue };
        let raw = server.url.as_deref().unwrap_or_default();
        if raw.is_empty() {
            continue;
        }
        let field = format!("{prefix}.{scheme}.url");
        let mut url = url::Url::parse(raw).map_err(|e| {
            Error::Config(format!(
                "{field} {raw:?} is not a URL ({e}); use http://host:port"
            ))
        })?;
        if let Some(secret) = server
            .credential_secret_ref
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            let field = format!("{prefix}.{scheme}.credentialSecretRef");
            let (user, password) = match source {
                vault::Source::Kubernetes => {
                    let data = read_secret(kube, namespace, secret, &field).await?;
                    let get = |k: &str| {
                        String::from_utf8_lossy(data.get(k).map(Vec::as_slice).unwrap_or_default())
                            .into_owned()
                    };
                    (get("username"), SecretString::from(get("password")))
                }
                vault::Source::Azure(kv) => vault::proxy_user(kv, secret, &field).await?,
            };
            let bad = || {
                Error::Unavailable(format!(
                    "{field}: cannot put the credentials of secret {secret:?} into {raw:?}"
                ))
            };
            url.set_username(&user).map_err(|()| bad())?;
            url.set_password(Some(password.expose_secret()))
                .map_err(|()| bad())?;
        }
        *slot = Some(SecretString::from(url.to_string()));
    }
    Ok(out)
}

/// Reads the PEM bundle named by `githubServerTLS.certificateFrom.configMapKeyRef`.
pub async fn read_ca(
    kube: &kube::Client,
    namespace: &str,
    tls: &TlsConfig,
) -> Result<Option<String>, Error> {
    let Some(selector) = tls
        .certificate_from
        .as_ref()
        .and_then(|c| c.config_map_key_ref.as_ref())
    else {
        return Ok(None);
    };
    let name = selector.name.as_str();
    if name.is_empty() {
        return Err(Error::Config(
            "spec.githubServerTLS.certificateFrom.configMapKeyRef.name is empty; fix: name the ConfigMap that holds the CA bundle".to_owned(),
        ));
    }
    check_object_name(
        "ConfigMap",
        "spec.githubServerTLS.certificateFrom.configMapKeyRef.name",
        name,
    )?;
    let api: Api<ConfigMap> = Api::namespaced(kube.clone(), namespace);
    let cm = api.get_opt(name).await?.ok_or_else(|| {
        Error::Unavailable(format!(
            "ConfigMap {namespace}/{name} (spec.githubServerTLS.certificateFrom.configMapKeyRef) was not found; create it with the CA bundle under key {:?}",
            selector.key
        ))
    })?;
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .cloned()
        .ok_or_else(|| {
            Error::Unavailable(format!(
                "ConfigMap {namespace}/{name} has no key {:?} (spec.githubServerTLS.certificateFrom.configMapKeyRef.key); add the PEM bundle under that key",
                selector.key
            ))
        })?;
    Ok(Some(pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn arc_secret_keys() {
        assert!(matches!(
            Credentials::from_secret_data("s", &data(&[("github_token", "t")])),
            Ok(Credentials::Pat(_))
        ));
        let app = data(&[
            ("github_app_id", "123"),
            ("github_app_installation_id", "456"),
            ("github_app_private_key", "KEY"),
        ]);
        assert!(matches!(
            Credentials::from_secret_data("s", &app),
            Ok(Credentials::App {
                installation_id: 456,
                ..
            })
        ));
        let mut both = app.clone();
        both.insert("github_token".into(), b"t".to_vec());
        let err = Credentials::from_secret_data("ns/s", &both).expect_err("both");
        assert!(err.to_string().contains("both PAT and GitHub App"), "{err}");
        let err = Credentials::from_secret_data("ns/s", &data(&[("github_app_id", "1")]))
            .expect_err("none");
        assert!(err.to_string().contains("ns/s") && err.to_string().contains("no credentials"));
        let err = Credentials::from_secret_data("s", &data(&[("github_app_installation_id", "x")]))
            .expect_err("bad id");
        assert!(err.to_string().contains("github_app_installation_id"));
    }

    #[test]
    fn a_name_the_api_server_cannot_look_up_is_refused_naming_the_field() {
        assert!(check_object_name("Secret", "spec.githubConfigSecret", "creds.v1").is_ok());
        let err = check_object_name("Secret", "spec.githubConfigSecret", "with space/and:colon")
            .expect_err("not a name");
        assert!(matches!(err, Error::Config(_)));
        let text = err.to_string();
        assert!(
            text.contains("spec.githubConfigSecret") && text.contains("\"with space/and:colon\""),
            "{text}"
        );
    }

    #[test]
    fn cache_key_changes_with_rotation_and_hides_the_secret() {
        let cfg = |token: &str| ServiceConfig {
            config_url: "https://github.com/org".into(),
            namespace: "ns".into(),
            credentials: Credentials::Pat(SecretString::from(token.to_owned())),
            proxy: None,
            root_ca_pem: None,
        };
        assert_eq!(cfg("a").cache_key(), cfg("a").cache_key());
        assert_ne!(cfg("a").cache_key(), cfg("b").cache_key());
        assert!(!cfg("ghp_secret").cache_key().contains("ghp_secret"));
        assert!(!format!("{:?}", cfg("ghp_secret")).contains("ghp_secret"));
    }
}
