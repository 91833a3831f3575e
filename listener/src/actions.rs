//! [`ScaleSetService`] over HTTP: the admin-token chain (PAT or GitHub App → registration token →
//! runner-registration) and the session, queue and acquire calls of actions-protocol.md §3–§6.
//!
//! Errors are classified for the loop: 409 on session create is a conflict, 401 on a queue call is
//! an expired queue token, 404 on a session is a dropped session, 401/403 from GitHub's REST API is
//! a permanent auth failure, 5xx/429/transport failures are transient.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{GitHubCredentials, ListenerConfig};
use crate::proxy::ProxyConnector;
use crate::service::{Message, ScaleSetService, ServiceError, Session, Statistics};

const API_VERSION: &str = "6.0-preview";
const POLL_TIMEOUT: Duration = Duration::from_secs(300);
const CALL_TIMEOUT: Duration = Duration::from_secs(100);

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `server_root_ca` could not be used.
    #[error("config key `server_root_ca`: {0}; fix: provide PEM-encoded CA certificates")]
    RootCa(String),
    /// The TLS stack could not be set up.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// `configure_url` could not be turned into an API base.
    #[error("config key `configure_url`: {0}")]
    Url(String),
    /// The GitHub App private key is unusable.
    #[error("config key `github_app_private_key`: {0}; fix: provide the app's PEM RSA private key")]
    AppKey(String),
}

#[derive(Clone)]
struct Admin {
    base: String,
    token: SecretString,
    expires_at: i64,
}

struct Inner {
    http: Client<HttpsConnector<ProxyConnector>, Full<Bytes>>,
    proxy: ProxyConnector,
    config_url: String,
    api_base: String,
    registration_path: String,
    credentials: GitHubCredentials,
    app_key: Option<jsonwebtoken::EncodingKey>,
    scale_set_id: i64,
    user_agent: String,
    admin: Mutex<Option<Admin>>,
}

/// The Actions service for one scale set. Cheap to clone.
#[derive(Clone)]
pub struct ActionsService {
    inner: Arc<Inner>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn describe(&self, what: &str) -> String {
        let activity = self
            .headers
            .get("ActivityId")
            .or_else(|| self.headers.get("X-GitHub-Request-Id"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let body = String::from_utf8_lossy(strip_bom(&self.body));
        let exception = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .map(|v| {
                format!(
                    "{} {}",
                    v["typeName"].as_str().unwrap_or_default(),
                    v["message"].as_str().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| body.chars().take(200).collect());
        format!(
            "{what}: status {} (activity {activity:?}): {}",
            self.status,
            exception.trim()
        )
    }

    fn type_name(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(strip_bom(&self.body))
            .ok()
            .and_then(|v| v["typeName"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, what: &str) -> Result<T, ServiceError> {
        serde_json::from_slice(strip_bom(&self.body))
            .map_err(|e| ServiceError::Malformed(format!("{what}: {e}")))
    }
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(b)
}

/// Maps a status that is not the expected one; `queue` calls treat 401 as queue-token expiry.
fn classify(reply: &Reply, what: &str, queue: bool) -> ServiceError {
    let text = reply.describe(what);
    let type_name = reply.type_name();
    match reply.status.as_u16() {
        401 if queue => ServiceError::QueueTokenExpired(text),
        409 if type_name.contains("SessionConflict") || what == "create session" => {
            ServiceError::SessionConflict(text)
        }
        404 if type_name.contains("RunnerScaleSetNotFound") => ServiceError::ScaleSetNotFound(text),
        404 => ServiceError::SessionGone(text),
        400 if type_name.contains("SessionExpired") || type_name.contains("SessionDeleted") => {
            ServiceError::SessionGone(text)
        }
        s if s == 429 || (500..600).contains(&s) => ServiceError::Transient(text),
        _ => ServiceError::Transient(text),
    }
}

/// API base `B` for a config URL (actions-protocol.md §2.2).
pub fn api_base(config_url: &str) -> Result<String, String> {
    let url = url::Url::parse(config_url).map_err(|e| format!("{config_url:?}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{config_url:?} has no host"))?;
    let host_port = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let lower = host_port.to_ascii_lowercase();
    let hosted = std::env::var_os("GITHUB_ACTIONS_FORCE_GHES").is_none()
        && (lower == "github.com"
            || lower == "www.github.com"
            || lower == "github.localhost"
            || host_port.ends_with(".ghe.com"));
    Ok(if !hosted {
        format!("{}://{host_port}/api/v3", url.scheme())
    } else if lower == "www.github.com" {
        format!("{}://api.github.com", url.scheme())
    } else {
        format!("{}://api.{host_port}", url.scheme())
    })
}

fn registration_path(config_url: &str) -> Result<String, String> {
    let url = url::Url::parse(config_url).map_err(|e| e.to_string())?;
    let segments: Vec<&str> = url.path().trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [e, ent] if e.eq_ignore_ascii_case("enterprises") => Ok(format!(
            "/enterprises/{ent}/actions/runners/registration-token"
        )),
        [org] if !org.is_empty() => Ok(format!("/orgs/{org}/actions/runners/registration-token")),
        [org, repo] => Ok(format!(
            "/repos/{org}/{repo}/actions/runners/registration-token"
        )),
        _ => Err(format!(
            "{config_url:?}: invalid config URL, should point to an enterprise, org, or repository"
        )),
    }
}

fn jwt_exp(token: &str) -> Option<i64> {
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value["exp"].as_f64().map(|f| f as i64)
}

fn with_api_version(url: &str) -> String {
    if url.contains("api-version=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&api-version={API_VERSION}")
    } else {
        format!("{url}?api-version={API_VERSION}")
    }
}

fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody {
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    message_queue_url: String,
    #[serde(default)]
    message_queue_access_token: String,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageBody {
    message_id: i64,
    #[serde(default)]
    message_type: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
struct RegistrationBody {
    #[serde(default)]
    url: String,
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
struct AcquiredBody {
    #[serde(default)]
    value: Vec<i64>,
}

impl ActionsService {
    /// A client for `config`'s URL, credentials and CA. No network I/O happens here.
    pub async fn connect(config: &ListenerConfig) -> Result<Self, ConnectError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(pem) = &config.server_root_ca {
            let mut reader = std::io::Cursor::new(pem.as_bytes());
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut reader) {
                let cert = cert.map_err(|e| ConnectError::RootCa(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ConnectError::RootCa(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(ConnectError::RootCa("no certificate found".into()));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let proxy = ProxyConnector::from_env();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(proxy.clone());
        let http = Client::builder(TokioExecutor::new()).build(connector);
        let app_key = match &config.credentials {
            GitHubCredentials::App { private_key, .. } => Some(
                jsonwebtoken::EncodingKey::from_rsa_pem(private_key.expose_secret().as_bytes())
                    .map_err(|e| ConnectError::AppKey(e.to_string()))?,
            ),
            GitHubCredentials::Pat(_) => None,
        };
        let user_agent = serde_json::json!({
            "system": "arc-rs", "version": env!("CARGO_PKG_VERSION"), "commit_sha": "unknown",
            "scale_set_id": config.runner_scale_set_id, "subsystem": "ghalistener",
            "build_version": env!("CARGO_PKG_VERSION"), "build_commit_sha": "unknown", "kind": "scaleset",
        })
        .to_string();
        Ok(ActionsService {
            inner: Arc::new(Inner {
                http,
                proxy,
                config_url: config.configure_url.clone(),
                api_base: api_base(&config.configure_url).map_err(ConnectError::Url)?,
                registration_path: registration_path(&config.configure_url)
                    .map_err(ConnectError::Url)?,
                credentials: config.credentials.clone(),
                app_key,
                scale_set_id: config.runner_scale_set_id,
                user_agent,
                admin: Mutex::new(None),
            }),
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
        what: &str,
    ) -> Result<Reply, ServiceError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header(header::USER_AGENT, &self.inner.user_agent);
        if let Some(auth) = url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| self.inner.proxy.forward_auth(&u))
        {
            builder = builder.header(header::PROXY_AUTHORIZATION, auth);
        }
        for (name, value) in headers {
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| ServiceError::Malformed(format!("{what}: invalid header {name}")))?;
            if name.eq_ignore_ascii_case("authorization") {
                value.set_sensitive(true);
            }
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ServiceError::Malformed(format!("{what}: building the request: {e}")))?;
        let call = async {
            let response = self.inner.http.request(request).await.map_err(|e| {
                ServiceError::Transient(format!(
                    "{what}: {e} ({:?})",
                    std::error::Error::source(&e)
                ))
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ServiceError::Transient(format!("{what}: reading the body: {e}")))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| ServiceError::Transient(format!("{what}: no answer within {timeout:?}")))?
    }

    async fn github_token(&self) -> Result<SecretString, ServiceError> {
        let (app_id, installation_id) = match &self.inner.credentials {
            GitHubCredentials::Pat(token) => return Ok(token.clone()),
            GitHubCredentials::App {
                app_id,
                installation_id,
                ..
            } => (app_id.clone(), *installation_id),
        };
        let key = self
            .inner
            .app_key
            .as_ref()
            .ok_or_else(|| ServiceError::Unauthorized("no GitHub App key".into()))?;
        let iat = chrono::Utc::now().timestamp() - 60;
        let claims = serde_json::json!({"iss": app_id, "iat": iat, "exp": iat + 540});
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            key,
        )
        .map_err(|e| ServiceError::Unauthorized(format!("signing the GitHub App JWT: {e}")))?;
        let url = join(
            &self.inner.api_base,
            &format!("/app/installations/{installation_id}/access_tokens"),
        );
        let what = "installation token";
        let reply = self
            .send(
                Method::POST,
                &url,
                &[
                    ("authorization", format!("Bearer {jwt}")),
                    ("content-type", "application/vnd.github+json".into()),
                ],
                None,
                CALL_TIMEOUT,
                what,
            )
            .await?;
        match reply.status.as_u16() {
            201 => Ok(SecretString::from(reply.json::<TokenBody>(what)?.token)),
            401 | 403 | 404 => Err(ServiceError::Unauthorized(reply.describe(what))),
            _ => Err(classify(&reply, what, false)),
        }
    }

    async fn refresh_admin(&self) -> Result<Admin, ServiceError> {
        let github = self.github_token().await?;
        let what = "registration token";
        let reply = self
            .send(
                Method::POST,
                &join(&self.inner.api_base, &self.inner.registration_path),
                &[
                    (
                        "authorization",
                        format!("Bearer {}", github.expose_secret()),
                    ),
                    ("content-type", "application/vnd.github.v3+json".into()),
                ],
                None,
                CALL_TIMEOUT,
                what,
            )
            .await?;
        let registration = match reply.status.as_u16() {
            201 => reply.json::<TokenBody>(what)?.token,
            401 | 403 | 404 => return Err(ServiceError::Unauthorized(reply.describe(what))),
            _ => return Err(classify(&reply, what, false)),
        };
        let what = "runner registration";
        let body = serde_json::json!({"url": self.inner.config_url, "runner_event": "register"});
        let reply = self
            .send(
                Method::POST,
                &join(&self.inner.api_base, "/actions/runner-registration"),
                &[
                    ("authorization", format!("RemoteAuth {registration}")),
                    ("content-type", "application/json".into()),
                ],
                Some(format!("{body}\n").into_bytes()),
                CALL_TIMEOUT,
                what,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(match reply.status.as_u16() {
                401 | 403 => ServiceError::Transient(reply.describe(what)),
                _ => classify(&reply, what, false),
            });
        }
        let found: RegistrationBody = reply.json(what)?;
        if found.url.is_empty() || found.token.is_empty() {
            return Err(ServiceError::Malformed(format!(
                "{what}: missing url or token"
            )));
        }
        let expires_at = jwt_exp(&found.token).unwrap_or(0);
        tracing::debug!(expires_at, "refreshed the Actions service admin token");
        Ok(Admin {
            base: found.url,
            token: SecretString::from(found.token),
            expires_at,
        })
    }

    /// The admin token, refreshed (single-flight) when within 60 s of expiry.
    async fn admin(&self) -> Result<Admin, ServiceError> {
        let mut guard = self.inner.admin.lock().await;
        let now = chrono::Utc::now().timestamp();
        if let Some(admin) = guard.as_ref().filter(|a| now + 60 <= a.expires_at) {
            return Ok(admin.clone());
        }
        let fresh = self.refresh_admin().await?;
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    async fn forget_admin(&self) {
        *self.inner.admin.lock().await = None;
    }

    async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<Reply, ServiceError> {
        let admin = self.admin().await?;
        let url = with_api_version(&join(&admin.base, path));
        let reply = self
            .send(
                method,
                &url,
                &[
                    (
                        "authorization",
                        format!("Bearer {}", admin.token.expose_secret()),
                    ),
                    ("content-type", "application/json".into()),
                ],
                body,
                CALL_TIMEOUT,
                what,
            )
            .await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            self.forget_admin().await;
            return Err(ServiceError::Transient(reply.describe(what)));
        }
        Ok(reply)
    }

    fn session_from(body: SessionBody, what: &str) -> Result<Session, ServiceError> {
        if body.session_id.is_empty() || body.message_queue_url.is_empty() {
            return Err(ServiceError::Malformed(format!(
                "{what}: session without sessionId or messageQueueUrl"
            )));
        }
        Ok(Session {
            id: body.session_id,
            message_queue_url: body.message_queue_url,
            message_queue_token: SecretString::from(body.message_queue_access_token),
            statistics: body.statistics,
        })
    }

    fn sessions_path(&self) -> String {
        format!(
            "/_apis/runtime/runnerscalesets/{}/sessions",
            self.inner.scale_set_id
        )
    }
}

impl ScaleSetService for ActionsService {
    async fn create_session(&self, owner: &str) -> Result<Session, ServiceError> {
        let what = "create session";
        let body = serde_json::json!({"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": owner});
        let reply = self
            .admin_call(
                Method::POST,
                &self.sessions_path(),
                Some(body.to_string().into_bytes()),
                what,
            )
            .await?;
        match reply.status.as_u16() {
            200 => Self::session_from(reply.json(what)?, what),
            404 => Err(ServiceError::ScaleSetNotFound(reply.describe(what))),
            _ => Err(classify(&reply, what, false)),
        }
    }

    async fn refresh_session(&self, session: &Session) -> Result<Session, ServiceError> {
        let what = "refresh session";
        let path = format!("{}/{}", self.sessions_path(), session.id);
        let reply = self.admin_call(Method::PATCH, &path, None, what).await?;
        match reply.status.as_u16() {
            200 => Self::session_from(reply.json(what)?, what),
            _ => Err(classify(&reply, what, false)),
        }
    }

    async fn delete_session(&self, session: &Session) -> Result<(), ServiceError> {
        let what = "delete session";
        let path = format!("{}/{}", self.sessions_path(), session.id);
        let reply = self.admin_call(Method::DELETE, &path, None, what).await?;
        match reply.status.as_u16() {
            204 | 200 | 404 => Ok(()),
            _ => Err(classify(&reply, what, false)),
        }
    }

    async fn get_message(
        &self,
        session: &Session,
        last_message_id: i64,
        max_capacity: i64,
    ) -> Result<Option<Message>, ServiceError> {
        let what = "get message";
        let mut url = session.message_queue_url.clone();
        if last_message_id > 0 {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("lastMessageId={last_message_id}"));
        }
        let reply = self
            .send(
                Method::GET,
                &url,
                &[
                    (
                        "authorization",
                        format!("Bearer {}", session.message_queue_token.expose_secret()),
                    ),
                    (
                        "accept",
                        format!("application/json; api-version={API_VERSION}"),
                    ),
                    ("x-scalesetmaxcapacity", max_capacity.to_string()),
                ],
                None,
                POLL_TIMEOUT,
                what,
            )
            .await?;
        match reply.status.as_u16() {
            202 | 204 => Ok(None),
            200 => {
                let m: MessageBody = reply.json(what)?;
                if m.message_type != "RunnerScaleSetJobMessages" {
                    tracing::warn!(message_id = m.message_id, message_type = %m.message_type, "unexpected message type; treating the body as job messages");
                }
                Ok(Some(Message {
                    id: m.message_id,
                    statistics: m.statistics,
                    body: m.body.unwrap_or_default(),
                }))
            }
            _ => Err(classify(&reply, what, true)),
        }
    }

    async fn delete_message(&self, session: &Session, message_id: i64) -> Result<(), ServiceError> {
        let what = "delete message";
        let (path, query) = match session.message_queue_url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (session.message_queue_url.as_str(), None),
        };
        let mut url = format!("{}/{message_id}", path.trim_end_matches('/'));
        if let Some(q) = query {
            url = format!("{url}?{q}");
        }
        let reply = self
            .send(
                Method::DELETE,
                &url,
                &[
                    (
                        "authorization",
                        format!("Bearer {}", session.message_queue_token.expose_secret()),
                    ),
                    ("content-type", "application/json".into()),
                ],
                None,
                CALL_TIMEOUT,
                what,
            )
            .await?;
        match reply.status.as_u16() {
            204 | 200 => Ok(()),
            _ => Err(classify(&reply, what, true)),
        }
    }

    async fn acquire_jobs(
        &self,
        session: &Session,
        request_ids: &[i64],
    ) -> Result<Vec<i64>, ServiceError> {
        let what = "acquire jobs";
        let admin = self.admin().await?;
        let url = with_api_version(&join(
            &admin.base,
            &format!(
                "/_apis/runtime/runnerscalesets/{}/acquirejobs",
                self.inner.scale_set_id
            ),
        ));
        let body = serde_json::to_vec(request_ids)
            .map_err(|e| ServiceError::Malformed(format!("{what}: {e}")))?;
        let reply = self
            .send(
                Method::POST,
                &url,
                &[
                    (
                        "authorization",
                        format!("Bearer {}", session.message_queue_token.expose_secret()),
                    ),
                    ("content-type", "application/json".into()),
                ],
                Some(body),
                CALL_TIMEOUT,
                what,
            )
            .await?;
        match reply.status.as_u16() {
            200 => Ok(reply.json::<AcquiredBody>(what)?.value),
            _ => Err(classify(&reply, what, true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_bases() {
        assert_eq!(
            api_base("https://github.com/org").as_deref(),
            Ok("https://api.github.com")
        );
        assert_eq!(
            api_base("https://www.github.com/org").as_deref(),
            Ok("https://api.github.com")
        );
        assert_eq!(
            api_base("https://acme.ghe.com/org").as_deref(),
            Ok("https://api.acme.ghe.com")
        );
        assert_eq!(
            api_base("http://127.0.0.1:8080/org/repo").as_deref(),
            Ok("http://127.0.0.1:8080/api/v3")
        );
        assert_eq!(
            registration_path("https://github.com/enterprises/acme").as_deref(),
            Ok("/enterprises/acme/actions/runners/registration-token")
        );
        assert_eq!(
            registration_path("https://github.com/o/r").as_deref(),
            Ok("/repos/o/r/actions/runners/registration-token")
        );
    }

    #[test]
    fn reads_exp_without_verifying() {
        let claims =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1767225960}"#);
        assert_eq!(
            jwt_exp(&format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig")),
            Some(1767225960)
        );
        assert_eq!(jwt_exp("garbage"), None);
    }

    #[test]
    fn query_keeps_the_queue_url_query() {
        assert_eq!(
            with_api_version("http://x/a?b=1"),
            "http://x/a?b=1&api-version=6.0-preview"
        );
        assert_eq!(
            with_api_version("http://x/a"),
            "http://x/a?api-version=6.0-preview"
        );
    }
}
