//! An HTTP client of the runner API (`/_runner/…`) for simulated runner processes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::net::TcpStream;

use crate::jit::decode_jit_config;
use crate::model::{JobResult, RunnerConnection, RunnerJob};

/// Talks to the runner API of one emulator, over HTTP or HTTPS.
#[derive(Clone)]
pub struct RunnerClient {
    base: url::Url,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for RunnerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl RunnerClient {
    /// A client for the runner API at `runner_api_url` (`{url}/_runner/`). For `https`, pass
    /// the PEM of the CA to trust (the emulator's `ca_pem()`).
    pub fn new(runner_api_url: &str, ca_pem: Option<&str>) -> anyhow::Result<Self> {
        let mut base = url::Url::parse(runner_api_url)
            .with_context(|| format!("runner API URL {runner_api_url:?} is not a URL"))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let tls = match (base.scheme(), ca_pem) {
            ("http", _) => None,
            ("https", Some(pem)) => Some(tls_connector(pem)?),
            ("https", None) => bail!(
                "runner API URL {runner_api_url:?} is https: pass the emulator's CA certificate (PEM)"
            ),
            (other, _) => bail!("runner API URL scheme {other:?} is not http or https"),
        };
        Ok(Self { base, tls })
    }

    /// A client for the emulator that issued this JIT config (its `.runner` names the API).
    pub fn for_jit_config(encoded_jit_config: &str, ca_pem: Option<&str>) -> anyhow::Result<Self> {
        let info = decode_jit_config(encoded_jit_config).map_err(anyhow::Error::msg)?;
        Self::new(&info.runner_api_url, ca_pem)
    }

    /// `POST connect`: presents the JIT config (works once).
    pub async fn connect(&self, encoded_jit_config: &str) -> anyhow::Result<RunnerConnection> {
        let body = json!({"encodedJITConfig": encoded_jit_config}).to_string();
        let (status, bytes) = self.call(Method::POST, "connect", None, body).await?;
        expect_json(status, &bytes, "connect")
    }

    /// `GET job?waitMs=`: the job once picked up, or `None` after `wait` (at most 60 s).
    pub async fn job(
        &self,
        conn: &RunnerConnection,
        wait: Duration,
    ) -> anyhow::Result<Option<RunnerJob>> {
        let path = format!("job?waitMs={}", wait.as_millis());
        let (status, bytes) = self
            .call(Method::GET, &path, Some(conn), String::new())
            .await?;
        if status == 204 {
            return Ok(None);
        }
        expect_json(status, &bytes, "job").map(Some)
    }

    /// `POST started`.
    pub async fn started(&self, conn: &RunnerConnection) -> anyhow::Result<()> {
        self.no_content("started", conn, String::new()).await
    }

    /// `POST completed`, with the job's configured result unless `result` overrides it.
    pub async fn completed(
        &self,
        conn: &RunnerConnection,
        result: Option<JobResult>,
    ) -> anyhow::Result<()> {
        let body = result.map_or_else(String::new, |r| json!({"result": r}).to_string());
        self.no_content("completed", conn, body).await
    }

    /// `POST disconnect`.
    pub async fn disconnect(&self, conn: &RunnerConnection) -> anyhow::Result<()> {
        self.no_content("disconnect", conn, String::new()).await
    }

    async fn no_content(
        &self,
        path: &str,
        conn: &RunnerConnection,
        body: String,
    ) -> anyhow::Result<()> {
        let (status, bytes) = self.call(Method::POST, path, Some(conn), body).await?;
        if status == 204 {
            Ok(())
        } else {
            bail!(
                "runner API {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        conn: Option<&RunnerConnection>,
        body: String,
    ) -> anyhow::Result<(u16, Bytes)> {
        let url = self.base.join(path)?;
        let host = url
            .host_str()
            .context("runner API URL has no host")?
            .to_owned();
        let port = url
            .port_or_known_default()
            .context("runner API URL has no port")?;
        let mut req = Request::builder()
            .method(method)
            .uri(&url[url::Position::BeforePath..])
            .header("host", format!("{host}:{port}"))
            .header("content-type", "application/json");
        if let Some(c) = conn {
            req = req.header("authorization", format!("Bearer {}", c.runner_token));
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to the runner API at {host}:{port}"))?;
        match &self.tls {
            None => exchange(tcp, req).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .with_context(|| format!("{host:?} is not a valid TLS server name"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake with the emulator")?;
                exchange(stream, req).await
            }
        }
    }
}

fn expect_json<T: DeserializeOwned>(status: u16, bytes: &[u8], what: &str) -> anyhow::Result<T> {
    if status != 200 {
        bail!(
            "runner API {what} answered {status}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
    serde_json::from_slice(bytes).with_context(|| format!("runner API {what}: unexpected body"))
}

fn tls_connector(pem: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
        let cert: rustls::pki_types::CertificateDer<'static> =
            cert.context("the CA PEM holds an unreadable certificate")?;
        roots
            .add(cert)
            .context("the CA certificate is not usable")?;
    }
    if roots.is_empty() {
        bail!("the CA PEM holds no certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let mut conn = std::pin::pin!(conn);
    let mut exchange = std::pin::pin!(async move {
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    });
    tokio::select! {
        r = &mut exchange => r,
        c = &mut conn => {
            c?;
            exchange.await
        }
    }
}
