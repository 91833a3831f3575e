//! The HTTP transport: hyper's pooled client over rustls and the proxy connector, with
//! per-attempt timeouts and the bounded retry policy. Build one per process and share it.

use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};

use crate::classify::rate_limit;
use crate::error::{Error, ErrorInfo, Result};
use crate::proxy::{ProxyConfig, ProxyConnector, ProxyRules};
use crate::retry::{RetryMode, RetryPolicy, is_retryable_status, retry_after};

/// Largest response body read.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Transport settings.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Proxies (default: from the environment).
    pub proxy: ProxyConfig,
    /// Extra trusted root (or intermediate) CA certificates, PEM.
    pub root_ca_pem: Option<String>,
    /// Trust the operating system's roots as well (default true).
    pub system_roots: bool,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout per attempt, body included.
    pub request_timeout: Duration,
    /// Per-attempt timeout of the message long poll; keep it above the service's hold (~50 s).
    pub long_poll_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            proxy: ProxyConfig::from_env(),
            root_ca_pem: None,
            system_roots: true,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(100),
            long_poll_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

type HyperClient = Client<HttpsConnector<ProxyConnector>, Full<Bytes>>;

struct Inner {
    client: HyperClient,
    rules: Arc<ProxyRules>,
    config: TransportConfig,
}

/// A shared HTTP client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("proxy", &self.inner.config.proxy.is_enabled())
            .field("root_ca", &self.inner.config.root_ca_pem.is_some())
            .finish()
    }
}

/// One request to send.
pub(crate) struct Call {
    pub operation: &'static str,
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub long_poll: bool,
    pub mode: RetryMode,
    /// The credential sent, so that no echo of it can reach an error.
    pub secret: Option<SecretString>,
}

impl Call {
    pub(crate) fn new(operation: &'static str, method: Method, url: String) -> Self {
        Self {
            operation,
            method,
            url,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            long_poll: false,
            mode: RetryMode::Standard,
            secret: None,
        }
    }

    pub(crate) fn bearer(mut self, token: &SecretString) -> Self {
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())) {
            v.set_sensitive(true);
            self.headers.insert(header::AUTHORIZATION, v);
        }
        self.secret = Some(token.clone());
        self
    }

    pub(crate) fn auth_scheme(mut self, scheme: &str, token: &SecretString) -> Self {
        if let Ok(mut v) = HeaderValue::from_str(&format!("{scheme} {}", token.expose_secret())) {
            v.set_sensitive(true);
            self.headers.insert(header::AUTHORIZATION, v);
        }
        self.secret = Some(token.clone());
        self
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Bytes::from(body);
        self
    }

    /// Context for an error about this call.
    pub(crate) fn info(&self, message: impl Into<String>) -> ErrorInfo {
        ErrorInfo {
            operation: self.operation,
            method: Some(self.method.to_string()),
            url: Some(self.url.clone()),
            message: self.redact(message.into()),
            ..ErrorInfo::default()
        }
    }

    pub(crate) fn redact(&self, text: String) -> String {
        match &self.secret {
            Some(s) if !s.expose_secret().is_empty() => {
                text.replace(s.expose_secret(), "[REDACTED]")
            }
            _ => text,
        }
    }
}

/// A received response, body read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

enum Attempt {
    Status(Reply),
    Transport { message: String, retry: bool },
}

impl Transport {
    /// Builds a transport; fails on a bad CA bundle or proxy URL.
    pub fn new(config: TransportConfig) -> Result<Self> {
        if config.long_poll_timeout < Duration::from_secs(60) {
            tracing::warn!(
                long_poll_timeout = ?config.long_poll_timeout,
                "long-poll timeout is shorter than the service's ~50 s hold; idle polls will time out and be retried"
            );
        }
        let tls = tls_config(&config)?;
        let rules = Arc::new(ProxyRules::new(&config.proxy)?);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(ProxyConnector::new(http, rules.clone()));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(100)
            .build(https);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                rules,
                config,
            }),
        })
    }

    /// The process-wide transport with default settings (proxy from the environment, system
    /// roots), built on first use.
    pub fn shared() -> Result<Self> {
        static SHARED: OnceLock<std::result::Result<Transport, Error>> = OnceLock::new();
        SHARED
            .get_or_init(|| Transport::new(TransportConfig::default()))
            .clone()
    }

    /// The settings.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Sends `call` with the retry policy. Returns the final response whatever its status (after
    /// retries ran out on a retryable status too), or a transport error.
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply> {
        let policy = self.inner.config.retry;
        let mut retries = 0usize;
        loop {
            let failure = match self.attempt(call).await {
                Ok(reply) => match rate_limit(&reply) {
                    // A rate limit is retried here only when its wait is short; otherwise the
                    // caller's policy schedules the next attempt (a minute or more when the
                    // answer names no wait) instead of a call blocking for minutes.
                    Some(Some(wait)) if wait <= policy.max_retry_after => Attempt::Status(reply),
                    Some(_) => return Ok(reply),
                    None if !is_retryable_status(reply.status, call.mode) => return Ok(reply),
                    None => Attempt::Status(reply),
                },
                Err(e) => e,
            };
            let retryable = match &failure {
                Attempt::Status(_) => true,
                Attempt::Transport { retry, .. } => *retry,
            };
            if !retryable || retries >= policy.max_retries {
                return match failure {
                    Attempt::Status(reply) => Ok(reply),
                    Attempt::Transport { message, .. } => {
                        Err(Error::Transport(Box::new(call.info(message))))
                    }
                };
            }
            retries += 1;
            let wait = match &failure {
                Attempt::Status(r) => {
                    tracing::debug!(
                        operation = call.operation,
                        status = r.status.as_u16(),
                        "retrying"
                    );
                    let asked = rate_limit(r).flatten();
                    policy.delay(retries, asked.or_else(|| retry_after(r.status, &r.headers)))
                }
                Attempt::Transport { message, .. } => {
                    tracing::debug!(operation = call.operation, error = %message, "retrying");
                    policy.delay(retries, None)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, call: &Call) -> std::result::Result<Reply, Attempt> {
        let timeout = if call.long_poll {
            self.inner.config.long_poll_timeout
        } else {
            self.inner.config.request_timeout
        };
        match tokio::time::timeout(timeout, self.once(call)).await {
            Ok(result) => result,
            Err(_) => Err(Attempt::Transport {
                message: format!("no complete response within {timeout:?}"),
                retry: true,
            }),
        }
    }

    async fn once(&self, call: &Call) -> std::result::Result<Reply, Attempt> {
        let uri: http::Uri = call.url.parse().map_err(|e| Attempt::Transport {
            message: format!("invalid URL: {e}"),
            retry: false,
        })?;
        let mut builder = Request::builder().method(call.method.clone()).uri(&uri);
        if let Some(headers) = builder.headers_mut() {
            headers.extend(call.headers.clone());
            headers
                .entry(header::ACCEPT_ENCODING)
                .or_insert(HeaderValue::from_static("gzip"));
            if uri.scheme_str() == Some("http")
                && let Some(route) = self.inner.rules.route(&uri)
                && let Some(auth) = route.auth
            {
                headers.insert(header::PROXY_AUTHORIZATION, auth);
            }
        }
        let request =
            builder
                .body(Full::new(call.body.clone()))
                .map_err(|e| Attempt::Transport {
                    message: format!("invalid request: {e}"),
                    retry: false,
                })?;
        let response = self
            .inner
            .client
            .request(request)
            .await
            .map_err(|e| transport_error(&e))?;
        let (mut parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| Attempt::Transport {
                message: format!("reading the response body failed: {e}"),
                retry: true,
            })?
            .to_bytes();
        let body =
            decode_content(&mut parts.headers, body).map_err(|message| Attempt::Transport {
                message,
                retry: true,
            })?;
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Undoes a `Content-Encoding: gzip` (we ask for it, spec sec. 12) and drops the header; other
/// bodies pass through unchanged.
fn decode_content(headers: &mut HeaderMap, body: Bytes) -> std::result::Result<Bytes, String> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body);
    }
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(flate2::read::GzDecoder::new(&body[..]), MAX_BODY as u64 + 1),
        &mut decoded,
    )
    .map_err(|e| format!("decoding the gzip response body failed: {e}"))?;
    if decoded.len() > MAX_BODY {
        return Err(format!(
            "the gzip response body expands beyond {MAX_BODY} bytes"
        ));
    }
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    Ok(Bytes::from(decoded))
}

fn transport_error(e: &(dyn StdError + 'static)) -> Attempt {
    let mut message = e.to_string();
    let mut retry = true;
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        if is_certificate_error(s) {
            retry = false;
        }
        source = s.source();
    }
    if is_certificate_error(e) {
        retry = false;
    }
    Attempt::Transport { message, retry }
}

fn is_certificate_error(e: &(dyn StdError + 'static)) -> bool {
    let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    });
    matches!(
        tls,
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

fn tls_config(config: &TransportConfig) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if config.system_roots {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(pem) = &config.root_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| {
                Error::config(
                    "root CA bundle",
                    "<PEM>",
                    format!("unreadable PEM ({e}); provide PEM-encoded CA certificates"),
                )
            })?;
            roots.add(cert).map_err(|e| {
                Error::config(
                    "root CA bundle",
                    "<PEM>",
                    format!("certificate rejected ({e}); provide CA certificates"),
                )
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::config(
                "root CA bundle",
                "<PEM>",
                "contains no CERTIFICATE block; provide PEM-encoded CA certificates",
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("TLS", "default protocol versions", e.to_string()))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gzip_bodies_are_decoded_and_others_pass_through() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(br#"{"count":0,"value":[]}"#).unwrap();
        let compressed = Bytes::from(encoder.finish().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let body = decode_content(&mut headers, compressed.clone()).unwrap();
        assert_eq!(&body[..], br#"{"count":0,"value":[]}"#);
        assert!(headers.get(header::CONTENT_ENCODING).is_none());
        let plain = decode_content(&mut HeaderMap::new(), compressed.clone()).unwrap();
        assert_eq!(plain, compressed, "no Content-Encoding: untouched");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let err = decode_content(&mut headers, Bytes::from_static(b"not gzip")).unwrap_err();
        assert!(err.contains("gzip"), "{err}");
    }

    #[test]
    fn bad_ca_bundle_is_a_config_error() {
        let err = Transport::new(TransportConfig {
            root_ca_pem: Some("not pem".into()),
            proxy: ProxyConfig::none(),
            ..TransportConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    field: "root CA bundle",
                    ..
                }
            ),
            "{err}"
        );
    }
}
