//! Microsoft identity platform token endpoint and Azure Key Vault's Get Secret, enough for a
//! client-certificate credential reading secrets (ARC's `vaultConfig: azure_key_vault`).
//!
//! * `POST /{tenant}/oauth2/v2.0/token` (form: `client_id`, `scope`, `grant_type=client_credentials`,
//!   `client_assertion_type`, `client_assertion`): the assertion's RS256 signature is verified
//!   against the certificate registered for the tenant and client, as are `aud` (this endpoint),
//!   `iss` = `sub` = client id, `exp`/`nbf` and the `x5t` (or `x5t#S256`) thumbprint. Answers
//!   `{"token_type":"Bearer","expires_in","ext_expires_in","access_token"}`, or the AADSTS error
//!   body `{"error","error_description","error_codes","timestamp","trace_id","correlation_id"}`.
//! * `GET /secrets/{name}[/{version}]?api-version=…` with `Authorization: Bearer {token}`:
//!   `{"value","id","attributes"}`, or `{"error":{"code","message"}}` (401 with a
//!   `WWW-Authenticate` challenge, 404 `SecretNotFound`).
//!
//! Tests register apps and secrets with [`KeyVaultHandle`], may make the next answers fail with
//! [`KeyVaultHandle::fail_next`], and count requests.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, Method, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

use crate::wire::json_response;

/// Lifetime of the access tokens issued.
const TOKEN_LIFETIME_SECS: i64 = 3599;

/// A generated client certificate: the PEM file a client mounts (certificate and RSA key), and
/// what the token endpoint checks.
#[derive(Clone)]
pub struct AzureCertificate {
    /// `CERTIFICATE` and `PRIVATE KEY` blocks, as `azureKeyVault.certificatePath` expects.
    pub pem: String,
    x5t: String,
    x5t_s256: String,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for AzureCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureCertificate")
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

impl AzureCertificate {
    /// A self-signed RSA-2048 certificate for `common_name`.
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let params = rcgen::CertificateParams::new(vec![common_name.to_owned()])?;
        let cert = params.self_signed(&key)?;
        let der = cert.der();
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        Ok(Self {
            pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
            public_key: key.public_key_raw().to_vec(),
        })
    }

    /// Base64url SHA-1 thumbprint.
    pub fn x5t(&self) -> &str {
        &self.x5t
    }
}

#[derive(Default)]
struct Inner {
    /// (tenant, client id) → certificate.
    apps: HashMap<(String, String), AzureCertificate>,
    secrets: HashMap<String, String>,
    /// access token → expiry (unix seconds).
    tokens: HashMap<String, i64>,
    fail_next: VecDeque<u16>,
    token_requests: u64,
    secret_requests: u64,
    /// Secret names requested, in order.
    requested: Vec<String>,
}

/// The token endpoint's and the vault's state.
#[derive(Clone, Default)]
pub(crate) struct AzureState(Arc<Mutex<Inner>>);

impl AzureState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Test access to the emulated identity platform and Key Vault.
#[derive(Clone)]
pub struct KeyVaultHandle(pub(crate) AzureState);

impl KeyVaultHandle {
    /// Registers `certificate` for app `client_id` in `tenant`.
    pub fn register_app(&self, tenant: &str, client_id: &str, certificate: &AzureCertificate) {
        self.0.lock().apps.insert(
            (tenant.to_owned(), client_id.to_owned()),
            certificate.clone(),
        );
    }

    /// Stores secret `name` with `value`.
    pub fn set_secret(&self, name: &str, value: &str) {
        self.0
            .lock()
            .secrets
            .insert(name.to_owned(), value.to_owned());
    }

    /// The next `count` token or secret requests answer `status` (429 carries `Retry-After: 0`).
    pub fn fail_next(&self, status: u16, count: usize) {
        self.0
            .lock()
            .fail_next
            .extend(std::iter::repeat_n(status, count));
    }

    /// Token requests received.
    pub fn token_requests(&self) -> u64 {
        self.0.lock().token_requests
    }

    /// Get Secret requests received.
    pub fn secret_requests(&self) -> u64 {
        self.0.lock().secret_requests
    }

    /// Names of the secrets requested, in order.
    pub fn requested_secrets(&self) -> Vec<String> {
        self.0.lock().requested.clone()
    }

    /// Every access token issued (for leak checks).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.0.lock().tokens.keys().cloned().collect()
    }
}

/// Answers the request when it is one of these endpoints.
pub(crate) fn handle(
    state: &AzureState,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let path = uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let kind = match segments.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] => Kind::Token((*tenant).to_owned()),
        ["secrets", name] | ["secrets", name, _] => Kind::Secret((*name).to_owned()),
        _ => return None,
    };
    let mut inner = state.lock();
    match &kind {
        Kind::Token(_) => inner.token_requests += 1,
        Kind::Secret(name) => {
            inner.secret_requests += 1;
            inner.requested.push(name.clone());
        }
    }
    if let Some(status) = inner.fail_next.pop_front() {
        let mut resp = match kind {
            Kind::Token(_) => aad_error(status, "temporarily_unavailable", 0, "Injected failure."),
            Kind::Secret(_) => vault_error(status, "ServiceUnavailable", "Injected failure."),
        };
        if status == 429 {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
        }
        return Some(resp);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let host = host.as_str();
    Some(match kind {
        Kind::Token(tenant) if method == Method::POST => token(&mut inner, &tenant, host, body),
        Kind::Secret(name) if method == Method::GET => secret(&mut inner, &name, headers),
        _ => vault_error(405, "BadRequest", "Method not allowed."),
    })
}

enum Kind {
    Token(String),
    Secret(String),
}

fn aad_error(status: u16, error: &str, code: u32, text: &str) -> Response {
    let now = Utc::now();
    let trace = uuid::Uuid::new_v4().to_string();
    let correlation = uuid::Uuid::new_v4().to_string();
    let description = if code == 0 {
        format!("{text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}")
    } else {
        format!(
            "AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {now}"
        )
    };
    let codes: Vec<u32> = if code == 0 { vec![] } else { vec![code] };
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": description,
            "error_codes": codes,
            "timestamp": now.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace,
            "correlation_id": correlation,
        }),
    )
}

fn vault_error(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

#[derive(Deserialize)]
struct AssertionHeader {
    x5t: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    aud: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    jti: Option<String>,
}

fn token(inner: &mut Inner, tenant: &str, host: &str, body: &[u8]) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return aad_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if field("scope") != "https://vault.azure.net/.default" {
        return aad_error(
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid.",
        );
    }
    if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return aad_error(
            400,
            "invalid_request",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        );
    }
    let client_id = field("client_id");
    let assertion = field("client_assertion");
    let Some(cert) = inner
        .apps
        .get(&(tenant.to_owned(), client_id.to_owned()))
        .cloned()
    else {
        if inner.apps.keys().all(|(t, _)| t != tenant) {
            return aad_error(
                400,
                "invalid_request",
                90002,
                &format!("Tenant '{tenant}' not found."),
            );
        }
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let header: Option<AssertionHeader> = assertion
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(header) = header else {
        return aad_error(
            400,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        );
    };
    let thumbprint_ok = header.x5t.as_deref() == Some(cert.x5t.as_str())
        || header.x5t_s256.as_deref() == Some(cert.x5t_s256.as_str());
    if !thumbprint_ok {
        return aad_error(
            401,
            "invalid_client",
            700027,
            &format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                header.x5t.unwrap_or_default()
            ),
        );
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 300;
    let audiences = [
        format!("https://{host}/{tenant}/oauth2/v2.0/token"),
        format!("http://{host}/{tenant}/oauth2/v2.0/token"),
    ];
    validation.set_audience(&audiences);
    validation.set_issuer(&[client_id]);
    let key = DecodingKey::from_rsa_der(&cert.public_key);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            let (code, text) = match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => (
                    700027,
                    "Client assertion failed signature validation.".to_owned(),
                ),
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => (
                    700024,
                    "Client assertion is not within its valid time range.".to_owned(),
                ),
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => (
                    700024,
                    "Client assertion is not within its valid time range.".to_owned(),
                ),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => (
                    700212,
                    format!(
                        "No matching federated identity record found for presented assertion audience. Expected {}.",
                        audiences[0]
                    ),
                ),
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => (
                    700021,
                    "Client assertion application identifier doesn't match 'client_id' parameter."
                        .to_owned(),
                ),
                _ => (50027, format!("JWT token is invalid or malformed ({e}).")),
            };
            return aad_error(401, "invalid_client", code, &text);
        }
    };
    if claims.sub.as_deref() != Some(client_id) || claims.iss.as_deref() != Some(client_id) {
        return aad_error(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        );
    }
    if claims.jti.as_deref().unwrap_or_default().is_empty() || claims.aud.is_none() {
        return aad_error(
            401,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed (no jti).",
        );
    }
    let now = Utc::now().timestamp();
    inner.tokens.retain(|_, exp| *exp > now);
    let access = format!("eyJ0eXAiOiJKV1Qi.kv-{}.sig", uuid::Uuid::new_v4().simple());
    inner
        .tokens
        .insert(access.clone(), now + TOKEN_LIFETIME_SECS);
    json_response(
        200,
        &json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECS,
            "ext_expires_in": TOKEN_LIFETIME_SECS,
            "access_token": access,
        }),
    )
}

fn secret(inner: &mut Inner, name: &str, headers: &HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let now = Utc::now().timestamp();
    if inner.tokens.get(bearer).is_none_or(|exp| *exp <= now) {
        let mut resp = vault_error(
            401,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer authorization=\"https://login.microsoftonline.com/common\", resource=\"https://vault.azure.net\"",
            ),
        );
        return resp;
    }
    match inner.secrets.get(name) {
        Some(value) => json_response(
            200,
            &json!({
                "value": value,
                "id": format!("https://vault.emulator/secrets/{name}/0123456789abcdef0123456789abcdef"),
                "attributes": {"enabled": true, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable"},
            }),
        ),
        None => vault_error(
            404,
            "SecretNotFound",
            &format!(
                "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command."
            ),
        ),
    }
}
