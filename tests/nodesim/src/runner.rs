//! The simulated runner: what `run.sh` of an ephemeral runner does, against the emulator's
//! runner side (`/_runner/…`). It reads `ACTIONS_RUNNER_INPUT_JITCONFIG`, finds the service from
//! the JIT config's `.runner` file (`ServerUrl`), presents the config, waits for its job, reports
//! it started, runs it for the job's duration, reports the result and exits 0.
//!
//! Exit codes (the real runner's): 0 after the job (whatever its result) or on SIGTERM; 1 when
//! the JIT config is missing, malformed or refused (used, unknown, registration deleted); 137
//! when killed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::workload::Signal;

/// The env var holding the encoded JIT config.
pub const JIT_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
/// How long one job request waits on the service (long poll).
const JOB_WAIT_MS: u64 = 20_000;

/// An HTTP(S) client for the runner side.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the runner's HTTP client: the system's roots plus the PEM file `extra_ca`, if any
/// (a real runner adds the CA of `NODE_EXTRA_CA_CERTS`/`RUNNER_UPDATE_CA_CERTS`).
pub(crate) fn http_client(extra_ca: Option<&std::path::Path>) -> anyhow::Result<HttpClient> {
    use anyhow::Context;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the runner CA file {}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.with_context(|| format!("parsing {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("adding the CA of {}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Connection {
    runner_name: String,
    runner_token: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    runner_request_id: i64,
    #[serde(rename = "durationMs")]
    duration_ms: u64,
    result: String,
}

/// Where the runner side lives: the origin of the JIT config's `ServerUrl`.
fn runner_base(encoded: &str) -> Result<url::Url, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let outer = engine
        .decode(encoded.trim())
        .map_err(|e| format!("{JIT_ENV} is not base64: {e}"))?;
    let outer: serde_json::Value = serde_json::from_slice(&outer)
        .map_err(|e| format!("{JIT_ENV} does not decode to a JSON object: {e}"))?;
    let runner_file = outer
        .get(".runner")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{JIT_ENV} has no .runner file"))?;
    let runner: serde_json::Value = engine
        .decode(runner_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("the .runner file of {JIT_ENV} is not base64 JSON"))?;
    let server = runner
        .get("ServerUrl")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("the .runner file of {JIT_ENV} has no ServerUrl"))?;
    let mut url = url::Url::parse(server)
        .map_err(|e| format!("ServerUrl {server:?} of the JIT config is not a URL: {e}"))?;
    url.set_path("/_runner/");
    url.set_query(None);
    Ok(url)
}

enum Outcome {
    Exit(i32),
    Signalled(Signal),
}

struct Call<'a> {
    http: &'a HttpClient,
    base: &'a url::Url,
    pod: &'a str,
}

impl Call<'_> {
    /// One request: `Ok((status, body))`, or a transport error text.
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Bytes), String> {
        let url = self
            .base
            .join(path)
            .map_err(|e| format!("runner API path {path}: {e}"))?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .header("user-agent", "nodesim-runner");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(b.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(
            Duration::from_millis(JOB_WAIT_MS) + Duration::from_secs(30),
            self.http.request(req),
        )
        .await
        .map_err(|_| format!("{} {path}: timed out", self.base))?
        .map_err(|e| format!("{}{path}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{}{path}: reading the body: {e}", self.base))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Retries transport errors and 5xx/429 with backoff until a definite answer or a signal.
    async fn retrying(
        &self,
        control: &mut mpsc::UnboundedReceiver<Signal>,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Bytes), Signal> {
        let mut delay = Duration::from_millis(200);
        loop {
            let attempt = self.send(method.clone(), path, token, body.clone());
            let result = tokio::select! {
                r = attempt => r,
                s = control.recv() => return Err(s.unwrap_or(Signal::Kill)),
            };
            match result {
                Ok((status, body)) if status < 500 && status != 429 => return Ok((status, body)),
                Ok((status, _)) => {
                    tracing::info!(
                        pod = self.pod,
                        path,
                        status,
                        "runner API answered an error; retrying"
                    )
                }
                Err(e) => {
                    tracing::info!(pod = self.pod, error = %e, "runner API unreachable; retrying")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                s = control.recv() => return Err(s.unwrap_or(Signal::Kill)),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Runs the simulated runner until it exits; returns its exit code.
pub(crate) async fn run(
    pod: String,
    http: HttpClient,
    jit: Option<SecretString>,
    mut control: mpsc::UnboundedReceiver<Signal>,
) -> i32 {
    match session(&pod, &http, jit, &mut control).await {
        Outcome::Exit(code) => code,
        Outcome::Signalled(Signal::Term) => 0,
        Outcome::Signalled(Signal::Kill) => 137,
    }
}

async fn session(
    pod: &str,
    http: &HttpClient,
    jit: Option<SecretString>,
    control: &mut mpsc::UnboundedReceiver<Signal>,
) -> Outcome {
    let Some(jit) = jit.filter(|j| !j.expose_secret().trim().is_empty()) else {
        tracing::warn!(pod, "{JIT_ENV} is not set; the runner cannot register");
        return Outcome::Exit(1);
    };
    let base = match runner_base(jit.expose_secret()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(pod, error = %e, "the runner's JIT config is unusable");
            return Outcome::Exit(1);
        }
    };
    let call = Call {
        http,
        base: &base,
        pod,
    };
    let body = serde_json::json!({ "encodedJITConfig": jit.expose_secret() });
    let (status, bytes) = match call
        .retrying(control, http::Method::POST, "connect", None, Some(body))
        .await
    {
        Ok(r) => r,
        Err(s) => return Outcome::Signalled(s),
    };
    if status != 200 {
        tracing::warn!(pod, status, body = %String::from_utf8_lossy(&bytes), "the service refused the runner's JIT config");
        return Outcome::Exit(1);
    }
    let connection: Connection = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(pod, error = %e, "the runner connect answer is malformed");
            return Outcome::Exit(1);
        }
    };
    let token = SecretString::from(connection.runner_token);
    tracing::info!(pod, runner = %connection.runner_name, "runner connected; waiting for a job");
    let job_path = format!("job?waitMs={JOB_WAIT_MS}");
    let job: Job = loop {
        let answer = call
            .retrying(
                control,
                http::Method::GET,
                &job_path,
                Some(token.expose_secret()),
                None,
            )
            .await;
        let (status, bytes) = match answer {
            Ok(r) => r,
            Err(Signal::Term) => {
                let _ = call
                    .send(
                        http::Method::POST,
                        "disconnect",
                        Some(token.expose_secret()),
                        None,
                    )
                    .await;
                return Outcome::Signalled(Signal::Term);
            }
            Err(s) => return Outcome::Signalled(s),
        };
        match status {
            200 => match serde_json::from_slice(&bytes) {
                Ok(job) => break job,
                Err(e) => {
                    tracing::warn!(pod, error = %e, "the runner's job answer is malformed");
                    return Outcome::Exit(1);
                }
            },
            204 => continue,
            _ => {
                tracing::warn!(pod, status, "the runner's registration is gone");
                return Outcome::Exit(1);
            }
        }
    };
    tracing::info!(
        pod,
        job = job.runner_request_id,
        duration_ms = job.duration_ms,
        "runner got a job"
    );
    match call
        .retrying(
            control,
            http::Method::POST,
            "started",
            Some(token.expose_secret()),
            None,
        )
        .await
    {
        Ok((204 | 200, _)) => {}
        Ok((status, _)) => tracing::warn!(pod, status, "reporting the job start failed"),
        Err(s) => return finish(&call, &token, "canceled", s).await,
    }
    let signal = tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(job.duration_ms)) => None,
        s = control.recv() => Some(s.unwrap_or(Signal::Kill)),
    };
    match signal {
        Some(s) => finish(&call, &token, "canceled", s).await,
        None => {
            let body = serde_json::json!({ "result": job.result });
            match call
                .retrying(
                    control,
                    http::Method::POST,
                    "completed",
                    Some(token.expose_secret()),
                    Some(body),
                )
                .await
            {
                Ok((204 | 200, _)) => {
                    tracing::info!(pod, job = job.runner_request_id, result = %job.result, "runner finished its job");
                }
                Ok((status, _)) => tracing::warn!(pod, status, "reporting the job result failed"),
                Err(s) => return Outcome::Signalled(s),
            }
            Outcome::Exit(0)
        }
    }
}

/// A signal during the job: on SIGTERM the job is reported canceled; on SIGKILL nothing is sent.
async fn finish(call: &Call<'_>, token: &SecretString, result: &str, signal: Signal) -> Outcome {
    if matches!(signal, Signal::Term) {
        let body = serde_json::json!({ "result": result });
        let _ = call
            .send(
                http::Method::POST,
                "completed",
                Some(token.expose_secret()),
                Some(body),
            )
            .await;
    }
    Outcome::Signalled(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_side_is_found_from_the_jit_config() {
        let engine = base64::engine::general_purpose::STANDARD;
        let runner = engine.encode(
            serde_json::json!({"ServerUrl": "http://127.0.0.1:4000/tenant/", "AgentName": "r"})
                .to_string(),
        );
        let jit = engine.encode(serde_json::json!({ ".runner": runner }).to_string());
        let base = runner_base(&jit).expect("base");
        assert_eq!(base.as_str(), "http://127.0.0.1:4000/_runner/");
        assert!(runner_base("not base64!").is_err());
        let no_runner = engine.encode("{}");
        assert!(
            runner_base(&no_runner)
                .expect_err("no .runner")
                .contains(".runner")
        );
    }
}
