//! Azure Key Vault as the source of GitHub credentials (ARC's `vaultConfig` with
//! `type: azure_key_vault`).
//!
//! The Microsoft identity platform's client-credentials flow with a certificate: an RS256 client
//! assertion (header `x5t` and `x5t#S256`, claims `aud` = token endpoint, `iss` = `sub` =
//! client id, `jti`, `nbf`, `exp`) is exchanged at `{authority}/{tenant}/oauth2/v2.0/token` for
//! an access token with scope `https://vault.azure.net/.default`, which reads
//! `GET {vault}/secrets/{name}?api-version=7.4`. The token is cached until five minutes before
//! it expires; 429 and 5xx are retried with backoff by the [`Transport`], which also applies the
//! proxy and the CA bundle.
//!
//! Why not the Azure SDK for Rust (`azure_identity`, `azure_security_keyvault_secrets`): at the
//! time of writing they are beta releases built on `reqwest` and `typespec`, which would bring a
//! second HTTP stack and TLS configuration next to this crate's [`Transport`] (proxy rules,
//! extra CAs, retries, secret redaction). The two requests are small, so they are spoken here.
//!
//! Nothing secret (the assertion, the access token, the private key, a secret's value) reaches an
//! error or a log line.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use http::header;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{Error, ErrorInfo, Result};
use crate::proxy::ProxyConfig;
use crate::transport::{Call, Transport, TransportConfig};

/// ARC's vault type name.
pub const AZURE_KEY_VAULT: &str = "azure_key_vault";

/// The environment variable naming the Microsoft identity platform host (as the Azure SDKs read
/// it); unset means [`DEFAULT_AUTHORITY_HOST`].
pub const AUTHORITY_HOST_ENV: &str = "AZURE_AUTHORITY_HOST";

/// The public cloud's authority host.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// Scope of the access token: Key Vault's data plane.
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";

/// Key Vault REST API version of the Get Secret call.
pub const KEY_VAULT_API_VERSION: &str = "7.4";

/// `client_assertion_type` of a certificate credential.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion.
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// A cached access token is renewed this long before it expires.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Settings of an Azure Key Vault client (ARC's `azureKeyVault` plus what the environment gives).
#[derive(Clone, Debug, Default)]
pub struct KeyVaultConfig {
    /// Vault URL, e.g. `https://my-vault.vault.azure.net/` (`azureKeyVault.url`).
    pub url: String,
    /// Microsoft Entra tenant id (`azureKeyVault.tenantId`).
    pub tenant_id: String,
    /// Application (client) id of the app registration (`azureKeyVault.clientId`).
    pub client_id: String,
    /// Path of a PEM file with the certificate and its private key
    /// (`azureKeyVault.certificatePath`).
    pub certificate_path: String,
    /// Proxy towards the identity platform and the vault (`vaultConfig.proxy`).
    pub proxy: ProxyConfig,
    /// Identity platform host; `None` reads [`AUTHORITY_HOST_ENV`], then
    /// [`DEFAULT_AUTHORITY_HOST`].
    pub authority_host: Option<String>,
    /// Extra PEM CA certificates trusted besides the system roots.
    pub root_ca_pem: Option<String>,
}

/// The client certificate: its private key and thumbprints.
#[derive(Clone)]
pub struct ClientCertificate {
    key: EncodingKey,
    x5t: String,
    x5t_s256: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t", &self.x5t)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

const CERT_FIELD: &str = "azureKeyVault.certificatePath";

impl ClientCertificate {
    /// Reads the PEM file at `path`.
    pub fn from_file(path: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                CERT_FIELD,
                path,
                format!(
                    "cannot read the certificate file ({e}); mount a PEM file with the certificate and its private key at this path (listenerTemplate volumes for the listener)"
                ),
            )
        })?;
        Self::from_pem(&text, path)
    }

    /// Parses PEM text with the certificate (the first `CERTIFICATE` block is the one registered
    /// with the app) and an unencrypted RSA private key; `path` names it in errors.
    pub fn from_pem(text: &str, path: &str) -> Result<Self> {
        let bad = |reason: String| Error::config(CERT_FIELD, path, reason);
        let cert = CertificateDer::pem_slice_iter(text.as_bytes())
            .next()
            .ok_or_else(|| {
                bad("no CERTIFICATE block; the PEM file must hold the certificate and its private key".into())
            })?
            .map_err(|e| bad(format!("unreadable CERTIFICATE block ({e})")))?;
        let key_block = pem_blocks(text)
            .into_iter()
            .find(|(label, _)| label.ends_with("PRIVATE KEY"))
            .ok_or_else(|| {
                bad("no PRIVATE KEY block; the PEM file must hold the certificate and its private key".into())
            })?;
        if key_block.0.contains("ENCRYPTED") {
            return Err(bad(
                "the private key is encrypted; store it unencrypted in the mounted file".into(),
            ));
        }
        if key_block.0 == "EC PRIVATE KEY" {
            return Err(bad(
                "the private key is an EC key; use a certificate with an RSA key".into(),
            ));
        }
        let key = EncodingKey::from_rsa_pem(key_block.1.as_bytes()).map_err(|e| {
            bad(format!(
                "the private key is not an RSA key in PKCS#1 or PKCS#8 PEM form ({e})"
            ))
        })?;
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert);
        Ok(Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        })
    }

    /// Base64url SHA-1 thumbprint of the certificate (`x5t`).
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// Base64url SHA-256 thumbprint of the certificate (`x5t#S256`).
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// The client assertion for `client_id` at token endpoint `audience`, valid from `now_unix`
    /// for ten minutes.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now_unix: i64,
    ) -> Result<SecretString> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let claims = AssertionClaims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid_v4(),
            nbf: now_unix,
            iat: now_unix,
            exp: now_unix + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| {
                Error::config(
                    CERT_FIELD,
                    "<private key>",
                    format!("signing the client assertion failed ({e})"),
                )
            })
    }
}

/// A random version-4 UUID as text (for `jti`).
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The time is unique enough for a replay guard when the RNG fails.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        b[..8].copy_from_slice(&nanos.to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The PEM blocks of `text`: label and the block's full text.
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_owned();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            break;
        };
        let stop = start + end + end_marker.len();
        out.push((label, rest[start..stop].to_owned()));
        rest = &rest[stop..];
    }
    out
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<Value>,
}

#[derive(Deserialize)]
struct SecretReply {
    value: Option<String>,
}

struct CachedToken {
    token: SecretString,
    renew_at: Instant,
}

/// A Key Vault client authenticated with a client certificate.
pub struct KeyVault {
    transport: Transport,
    certificate: ClientCertificate,
    client_id: String,
    token_url: String,
    vault_url: String,
    token: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVault")
            .field("vault_url", &self.vault_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish()
    }
}

fn required<'a>(field: &'static str, value: &'a str, fix: &str) -> Result<&'a str> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::config(field, "", format!("is not set; {fix}")));
    }
    Ok(value)
}

impl KeyVault {
    /// Validates `config` (as ARC does: tenant, client, URL and a readable certificate) and
    /// builds the client. Nothing is requested yet.
    pub fn new(config: KeyVaultConfig) -> Result<Self> {
        let tenant = required(
            "azureKeyVault.tenantId",
            &config.tenant_id,
            "set it to the Microsoft Entra tenant (directory) id",
        )?;
        let client_id = required(
            "azureKeyVault.clientId",
            &config.client_id,
            "set it to the application (client) id of the app registration",
        )?;
        let url = required(
            "azureKeyVault.url",
            &config.url,
            "set it to the vault URL, e.g. https://my-vault.vault.azure.net/",
        )?;
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::config(
                "azureKeyVault.url",
                url,
                format!(
                    "not a URL ({e}); use the vault URL, e.g. https://my-vault.vault.azure.net/"
                ),
            )
        })?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
            return Err(Error::config(
                "azureKeyVault.url",
                url,
                "use an https:// vault URL, e.g. https://my-vault.vault.azure.net/",
            ));
        }
        let path = required(
            CERT_FIELD,
            &config.certificate_path,
            "set it to the path of the mounted PEM file with the certificate and its private key",
        )?;
        let certificate = ClientCertificate::from_file(path)?;
        let authority = match &config.authority_host {
            Some(host) => host.clone(),
            None => std::env::var(AUTHORITY_HOST_ENV)
                .ok()
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned()),
        };
        let authority = authority.trim().trim_end_matches('/').to_owned();
        url::Url::parse(&authority).map_err(|e| {
            Error::config(
                AUTHORITY_HOST_ENV,
                authority.clone(),
                format!("not a URL ({e}); unset it or use e.g. {DEFAULT_AUTHORITY_HOST}"),
            )
        })?;
        let transport = Transport::new(TransportConfig {
            proxy: config.proxy.clone(),
            root_ca_pem: config.root_ca_pem.clone(),
            ..TransportConfig::default()
        })?;
        Ok(Self {
            transport,
            certificate,
            client_id: client_id.to_owned(),
            token_url: format!("{authority}/{tenant}/oauth2/v2.0/token"),
            vault_url: url.trim_end_matches('/').to_owned(),
            token: Mutex::new(None),
        })
    }

    /// The token endpoint (the assertion's audience).
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The value of secret `name` (latest version).
    pub async fn get_secret(&self, name: &str) -> Result<SecretString> {
        if name.is_empty()
            || name.len() > 127
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::config(
                "githubConfigSecret",
                name,
                "is not a Key Vault secret name (1 to 127 letters, digits and dashes); name the Key Vault secret that holds the credentials JSON",
            ));
        }
        let token = self.access_token().await?;
        let url = format!(
            "{}/secrets/{name}?api-version={KEY_VAULT_API_VERSION}",
            self.vault_url
        );
        let call = Call::new("get key vault secret", Method::GET, url).bearer(&token);
        let reply = self.transport.send(&call).await?;
        if !reply.status.is_success() {
            if reply.status.as_u16() == 401 {
                *self.token.lock().await = None;
            }
            return Err(status_error(
                &call,
                reply.status.as_u16(),
                &reply.body,
                vault_error,
            ));
        }
        let parsed: SecretReply = serde_json::from_slice(&reply.body).map_err(|e| {
            Error::bad_response(call.info(format!("the body is not a Key Vault secret ({e})")))
        })?;
        parsed
            .value
            .map(SecretString::from)
            .ok_or_else(|| Error::bad_response(call.info(format!("secret {name:?} has no value"))))
    }

    async fn access_token(&self) -> Result<SecretString> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.token.clone());
        }
        let assertion = self.certificate.assertion(
            &self.client_id,
            &self.token_url,
            chrono::Utc::now().timestamp(),
        )?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", KEY_VAULT_SCOPE)
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_assertion_type", JWT_BEARER)
            .append_pair("client_assertion", assertion.expose_secret())
            .finish();
        let mut call = Call::new("azure token", Method::POST, self.token_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(body.into_bytes());
        call.secret = Some(assertion);
        let reply = self.transport.send(&call).await?;
        if !reply.status.is_success() {
            return Err(status_error(
                &call,
                reply.status.as_u16(),
                &reply.body,
                aad_error,
            ));
        }
        let parsed: TokenReply = serde_json::from_slice(&reply.body).map_err(|e| {
            Error::bad_response(call.info(format!("the body is not a token response ({e})")))
        })?;
        let token = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::bad_response(call.info("the token response has no access_token"))
            })?;
        let lifetime = match parsed.expires_in {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(0);
        let renew_at =
            Instant::now() + Duration::from_secs(lifetime).saturating_sub(TOKEN_REFRESH_MARGIN);
        let token = SecretString::from(token);
        *cached = Some(CachedToken {
            token: token.clone(),
            renew_at,
        });
        Ok(token)
    }
}

/// The identity platform's error body: `error` and `error_description` (AADSTS code and text).
fn aad_error(body: &Value) -> Option<String> {
    let code = body.get("error")?.as_str()?;
    let description = body
        .get("error_description")
        .and_then(Value::as_str)
        .and_then(|d| d.lines().next())
        .unwrap_or_default();
    // The trace and correlation ids and the timestamp differ with every call; an error that
    // ends up in a condition must not change with each retry.
    let description = description
        .split(" Trace ID:")
        .next()
        .unwrap_or_default()
        .trim_end();
    Some(format!("{code}: {description}"))
}

/// Key Vault's error body: `{"error":{"code","message"}}`.
fn vault_error(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(format!("{code}: {message}"))
}

fn status_error(
    call: &Call,
    status: u16,
    body: &[u8],
    describe: fn(&Value) -> Option<String>,
) -> Error {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .as_ref()
        .and_then(describe)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    let hint = match (call.operation, status) {
        ("azure token", 400 | 401) => {
            "; check azureKeyVault.tenantId, azureKeyVault.clientId and that the certificate at azureKeyVault.certificatePath is registered with the app"
        }
        (_, 401) => "; the access token was not accepted by the vault",
        (_, 403) => "; grant the app permission to get secrets in this vault",
        (_, 404) => "; create the secret in the vault or fix githubConfigSecret",
        _ => "",
    };
    let info = ErrorInfo {
        status: Some(status),
        ..call.info(format!("{message}{hint}"))
    };
    match status {
        401 | 403 => Error::AuthFailed(Box::new(info)),
        429 => Error::RateLimited {
            retry_after: None,
            info: Box::new(info),
        },
        500..=599 => Error::Server(Box::new(info)),
        400 if call.operation == "azure token" => Error::AuthFailed(Box::new(info)),
        _ => Error::Rejected(Box::new(info)),
    }
}

/// GitHub credentials read from a Key Vault secret's JSON (ARC's app config keys).
#[derive(Clone)]
pub enum VaultCredentials {
    /// `github_token`.
    Pat(SecretString),
    /// `github_app_id`, `github_app_installation_id`, `github_app_private_key`.
    App {
        /// App id or client id.
        app_id: String,
        /// Installation id.
        installation_id: i64,
        /// PEM private key.
        private_key: SecretString,
    },
}

impl fmt::Debug for VaultCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultCredentials::Pat(_) => f.write_str("VaultCredentials::Pat([REDACTED])"),
            VaultCredentials::App {
                app_id,
                installation_id,
                ..
            } => write!(
                f,
                "VaultCredentials::App {{ app_id: {app_id:?}, installation_id: {installation_id}, private_key: [REDACTED] }}"
            ),
        }
    }
}

fn json_object(
    name: &str,
    value: &SecretString,
    expected: &str,
) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(value.expose_secret()) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Error::config(
            "githubConfigSecret",
            name,
            format!("the Key Vault secret's value is not a JSON object; store {expected}"),
        )),
    }
}

const APP_JSON: &str = r#"{"github_token":"…"} or {"github_app_id":"…","github_app_installation_id":123,"github_app_private_key":"-----BEGIN …"}"#;

/// Reads ARC's app config JSON from the value of Key Vault secret `name`: a PAT or the three
/// App keys, not both.
pub fn github_credentials(name: &str, value: &SecretString) -> Result<VaultCredentials> {
    let map = json_object(name, value, APP_JSON)?;
    let bad = |reason: String| Error::config("githubConfigSecret", name, reason);
    let text = |key: &str| -> Result<String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) if key == "github_app_id" => Ok(n.to_string()),
            Some(_) => Err(bad(format!("key {key} is not a string; store {APP_JSON}"))),
        }
    };
    let installation_id = match map.get("github_app_installation_id") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(-1),
        Some(_) => -1,
    };
    if installation_id < 0 {
        return Err(bad(
            "key github_app_installation_id is not a positive integer; store the numeric installation id".into(),
        ));
    }
    let token = text("github_token")?;
    let app_id = text("github_app_id")?;
    let key = text("github_app_private_key")?;
    let has_app = !app_id.is_empty() && installation_id > 0 && !key.is_empty();
    match (!token.is_empty(), has_app) {
        (true, true) => Err(bad(
            "both PAT and GitHub App credentials provided; keep either github_token or the github_app_* keys".into(),
        )),
        (false, false) => Err(bad(format!(
            "no credentials provided in the Key Vault secret; store {APP_JSON}"
        ))),
        (true, false) => Ok(VaultCredentials::Pat(SecretString::from(token))),
        (false, true) => Ok(VaultCredentials::App {
            app_id,
            installation_id,
            private_key: SecretString::from(key),
        }),
    }
}

/// Reads `{"username","password"}` from the value of Key Vault secret `name` (a proxy's
/// `credentialSecretRef` with a vault).
pub fn proxy_credentials(name: &str, value: &SecretString) -> Result<(String, SecretString)> {
    let expected = r#"{"username":"…","password":"…"}"#;
    let map = json_object(name, value, expected)?;
    let get = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (user, password) = (get("username"), get("password"));
    if user.is_empty() && password.is_empty() {
        return Err(Error::config(
            "proxy credentialSecretRef",
            name,
            format!("the Key Vault secret has neither username nor password; store {expected}"),
        ));
    }
    Ok((user, SecretString::from(password)))
}

#[cfg(test)]
mod tests;
