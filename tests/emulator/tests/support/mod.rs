//! Raw HTTP for the emulator suites: hyper's low-level client over a fresh TCP (or TLS)
//! connection per request, and the credential chain spelled out call by call. Deliberately not
//! actions-client, so the emulator and the client cannot share a mistake.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use actions_emulator::{DEFAULT_PAT, Emulator};
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Generous bound for waiting on conditions.
pub const WAIT: Duration = Duration::from_secs(60);

/// A response: status, headers and the whole body.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Raw {
    /// The body as JSON (panics with the body text otherwise).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// Asserts a VSS exception body with this status and a `typeName` containing `type_key`.
    pub fn assert_vss(&self, status: u16, type_key: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        let type_name = v["typeName"].as_str().unwrap_or_default();
        assert!(
            type_name.contains(type_key),
            "typeName {type_name:?} lacks {type_key}"
        );
        assert!(
            type_name.starts_with("GitHub.DistributedTask.WebApi."),
            "{type_name}"
        );
        assert!(
            v["typeKey"].as_str().is_some_and(|k| k.ends_with(type_key)),
            "typeKey {} lacks {type_key}",
            v["typeKey"]
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert_eq!(v["$id"], "1");
        assert!(v.get("innerException").is_some_and(Value::is_null));
    }

    /// Asserts a GitHub REST error body `{"message","documentation_url"}`.
    pub fn assert_github_error(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["documentation_url"].is_string(), "{v}");
    }

    /// Asserts an empty body.
    pub fn assert_empty(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert!(self.body.is_empty(), "expected empty body: {}", self.text());
    }
}

/// How to reach the emulator.
#[derive(Clone)]
pub struct Client {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Client {
    /// Plain HTTP.
    pub fn http() -> Self {
        Self { tls: None }
    }

    /// HTTPS trusting only the given PEM certificates.
    pub fn https(trusted_pem: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut trusted_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
        }
    }

    /// Sends one request on a fresh connection; `Err` on transport failure.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Raw> {
        let uri: http::Uri = url.parse()?;
        let host = uri.host().unwrap().to_owned();
        let port = uri.port_u16().unwrap();
        let stream = TcpStream::connect((host.as_str(), port)).await?;
        let body: Bytes = body.into();
        let mut builder = Request::builder().method(method).uri(
            uri.path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
        );
        let mut has_host = false;
        for (k, v) in headers {
            has_host |= k.eq_ignore_ascii_case("host");
            builder = builder.header(*k, *v);
        }
        if !has_host {
            builder = builder.header("host", format!("{host}:{port}"));
        }
        let req = builder.body(Full::new(body))?;
        match &self.tls {
            None => exchange(stream, req).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())?;
                exchange(tls.connect(name, stream).await?, req).await
            }
        }
    }

    /// Sends one request; panics on transport failure.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Raw {
        self.try_send(method.clone(), url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
    }
}

/// One request on a connection driven in the same task, so dropping the future (or aborting
/// its task) closes the connection like a client going away.
async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> anyhow::Result<Raw>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let mut conn = std::pin::pin!(conn);
    let mut exchange = std::pin::pin!(async move {
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok(Raw {
            status,
            headers,
            body,
        })
    });
    tokio::select! {
        r = &mut exchange => r,
        c = &mut conn => {
            c?;
            exchange.await
        }
    }
}

/// Appends `api-version=6.0-preview` to an Actions service path.
pub fn api(s: &str, path: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{s}{path}{sep}api-version=6.0-preview")
}

/// A client that went through the credential chain: admin token and `S`.
pub struct Admin {
    pub client: Client,
    pub s: String,
    pub token: String,
}

impl Admin {
    /// G2 (PAT, org scope) then G3, all raw.
    pub async fn login(emu: &Emulator, client: &Client) -> Admin {
        let reg = client
            .send(
                Method::POST,
                &format!(
                    "{}/orgs/octo-org/actions/runners/registration-token",
                    emu.api_base()
                ),
                &[
                    ("authorization", &format!("Bearer {DEFAULT_PAT}")),
                    ("content-type", "application/vnd.github.v3+json"),
                ],
                Bytes::new(),
            )
            .await;
        assert_eq!(reg.status, 201, "{}", reg.text());
        let reg_token = reg.json()["token"].as_str().unwrap().to_owned();
        let body = format!(
            "{{\"url\":\"{}\",\"runner_event\":\"register\"}}\n",
            emu.org_url("octo-org")
        );
        let r = client
            .send(
                Method::POST,
                &format!("{}/actions/runner-registration", emu.api_base()),
                &[
                    ("authorization", &format!("RemoteAuth {reg_token}")),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        Admin {
            client: client.clone(),
            s: v["url"].as_str().unwrap().to_owned(),
            token: v["token"].as_str().unwrap().to_owned(),
        }
    }

    /// An Actions service call with the admin token, `api-version` and JSON content type.
    pub async fn call(&self, method: Method, path: &str, body: &str) -> Raw {
        self.client
            .send(
                method,
                &api(&self.s, path),
                &[
                    ("authorization", &format!("Bearer {}", self.token)),
                    ("content-type", "application/json"),
                ],
                body.to_owned(),
            )
            .await
    }

    /// Creates a scale set with these labels (the name first); returns its id.
    pub async fn create_scale_set(&self, name: &str, labels: &[&str]) -> i64 {
        let labels: Vec<Value> = labels
            .iter()
            .map(|l| serde_json::json!({"type": "System", "name": l}))
            .collect();
        let body = serde_json::json!({
            "name": name, "runnerGroupId": 1, "labels": labels,
            "RunnerSetting": {"disableUpdate": true}, "createdOn": "0001-01-01T00:00:00Z"
        });
        let r = self
            .call(
                Method::POST,
                "_apis/runtime/runnerscalesets",
                &body.to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["id"].as_i64().unwrap()
    }

    /// Creates a session; returns it.
    pub async fn create_session(&self, scale_set_id: i64, owner: &str) -> Session {
        let r = self
            .call(
                Method::POST,
                &format!("_apis/runtime/runnerscalesets/{scale_set_id}/sessions"),
                &format!(
                    "{{\"sessionId\":\"00000000-0000-0000-0000-000000000000\",\"ownerName\":\"{owner}\"}}"
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        Session::from_json(scale_set_id, &r.json())
    }

    /// Generates a JIT config; returns (runner id, encodedJITConfig).
    pub async fn jit(&self, scale_set_id: i64, name: &str) -> (i64, String) {
        let r = self
            .call(
                Method::POST,
                &format!("_apis/runtime/runnerscalesets/{scale_set_id}/generatejitconfig"),
                &format!("{{\"name\":\"{name}\",\"workFolder\":\"\"}}"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        (
            v["runner"]["id"].as_i64().unwrap(),
            v["encodedJITConfig"].as_str().unwrap().to_owned(),
        )
    }
}

/// A message session as the client keeps it.
#[derive(Clone, Debug)]
pub struct Session {
    pub scale_set_id: i64,
    pub id: String,
    pub queue_url: String,
    pub token: String,
    pub json: Value,
}

impl Session {
    /// From a create or refresh response.
    pub fn from_json(scale_set_id: i64, v: &Value) -> Self {
        Self {
            scale_set_id,
            id: v["sessionId"].as_str().unwrap().to_owned(),
            queue_url: v["messageQueueUrl"].as_str().unwrap().to_owned(),
            token: v["messageQueueAccessToken"].as_str().unwrap().to_owned(),
            json: v.clone(),
        }
    }

    /// Q1 with `lastMessageId` merged into the query when > 0.
    pub async fn get_message(&self, client: &Client, last: i64, capacity: &str) -> Raw {
        let url = if last > 0 {
            format!("{}&lastMessageId={last}", self.queue_url)
        } else {
            self.queue_url.clone()
        };
        client
            .send(
                Method::GET,
                &url,
                &[
                    ("authorization", &format!("Bearer {}", self.token)),
                    ("accept", "application/json; api-version=6.0-preview"),
                    ("x-scalesetmaxcapacity", capacity),
                ],
                Bytes::new(),
            )
            .await
    }

    /// Q1 until a 200 arrives (202s are retried); returns (message id, job messages, statistics).
    pub async fn next_message(&self, client: &Client, last: i64) -> (i64, Vec<Value>, Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self.get_message(client, last, "10").await;
            match r.status {
                200 => {
                    let v = r.json();
                    assert_eq!(v["messageType"], "RunnerScaleSetJobMessages");
                    let body = v["body"].as_str().expect("body is a JSON string");
                    let items: Vec<Value> = serde_json::from_str(body).unwrap();
                    assert!(v["statistics"].is_object(), "statistics on every message");
                    return (
                        v["messageId"].as_i64().unwrap(),
                        items,
                        v["statistics"].clone(),
                    );
                }
                202 => assert!(r.body.is_empty()),
                s => panic!("get message: {s} {}", r.text()),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message within {WAIT:?}"
            );
        }
    }

    /// Q2.
    pub async fn delete_message(&self, client: &Client, id: i64) -> Raw {
        let (path, query) = self.queue_url.split_once('?').unwrap();
        client
            .send(
                Method::DELETE,
                &format!("{path}/{id}?{query}"),
                &[
                    ("authorization", &format!("Bearer {}", self.token)),
                    ("content-type", "application/json"),
                ],
                Bytes::new(),
            )
            .await
    }

    /// A10 with the mq token.
    pub async fn acquire(&self, client: &Client, s: &str, ids: &str) -> Raw {
        client
            .send(
                Method::POST,
                &api(
                    s,
                    &format!(
                        "_apis/runtime/runnerscalesets/{}/acquirejobs",
                        self.scale_set_id
                    ),
                ),
                &[
                    ("authorization", &format!("Bearer {}", self.token)),
                    ("content-type", "application/json"),
                ],
                ids.to_owned(),
            )
            .await
    }
}

/// An emulator with a short long-poll hold, for suites.
pub async fn emulator() -> Emulator {
    Emulator::start(actions_emulator::EmulatorConfig {
        long_poll_hold: Duration::from_millis(300),
        runner_groups: vec!["gpu-pool".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap()
}
