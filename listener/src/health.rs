//! Liveness and readiness, and the HTTP servers for health and metrics (the listener's, and the
//! manager's, which runs the same server code).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Shared health state: the loop reports progress, the probes read it.
#[derive(Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    last_progress: Mutex<Instant>,
    ready: AtomicBool,
    stale_after: Duration,
}

impl Health {
    /// Liveness fails when no progress was reported for `stale_after` (counted from now at first).
    pub fn new(stale_after: Duration) -> Self {
        Health {
            inner: Arc::new(HealthInner {
                last_progress: Mutex::new(Instant::now()),
                ready: AtomicBool::new(false),
                stale_after,
            }),
        }
    }

    /// A long poll completed (or the service answered a session attempt).
    pub fn progress(&self) {
        *self
            .inner
            .last_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Readiness: true once a session exists.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether a session exists.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// `Ok` while alive, else how long since the last progress.
    pub fn liveness(&self) -> Result<(), Duration> {
        let since = self
            .inner
            .last_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if since > self.inner.stale_after {
            Err(since)
        } else {
            Ok(())
        }
    }
}

async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    match health.liveness() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(since) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no poll completed for {}s\n", since.as_secs()),
        ),
    }
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no message session yet\n")
    }
}

/// Router with `/healthz` (liveness) and `/readyz` (readiness).
pub fn health_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Something that renders itself in the OpenMetrics text format.
pub trait OpenMetrics: Send + Sync + 'static {
    /// The exposition text.
    fn encode(&self) -> Result<String, std::fmt::Error>;
}

impl OpenMetrics for Metrics {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        Metrics::encode(self)
    }
}

impl OpenMetrics for prometheus_client::registry::Registry {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, self)?;
        Ok(out)
    }
}

async fn scrape<M: OpenMetrics>(State(metrics): State<Arc<M>>) -> impl IntoResponse {
    match metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

/// Router serving `metrics` at `path` only (the listener's and the manager's).
pub fn metrics_router<M: OpenMetrics>(metrics: Arc<M>, path: &str) -> Router {
    Router::new()
        .route(path, get(scrape::<M>))
        .with_state(metrics)
}

/// Normalises Go-style `:8080` to `0.0.0.0:8080`.
pub fn bind_addr(addr: &str) -> String {
    if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    }
}

/// Binds `addr` and serves `router` until `shutdown`.
pub async fn serve(
    addr: &str,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(bind_addr(addr)).await?;
    Ok(tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }))
}
