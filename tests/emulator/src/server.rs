//! The HTTP(S) server: shared state, accept loop, and the dispatcher that counts calls, applies
//! faults and hands requests to the route handlers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderMap, HeaderValue, Method, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::endpoint::{Endpoint, Family, RouteError, route};
use crate::faults::{self, FaultKind};
use crate::routes;
use crate::state::State;
use crate::wire::{ApiError, empty_response, text_response, vss_body};

/// Counter and call-log name of requests that matched no endpoint (wrong path or method).
pub const UNMATCHED: &str = "unmatched";

/// Calls kept in the call log.
const CALL_LOG_LIMIT: usize = 10_000;
/// Largest request body accepted.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One call as the emulator saw it (secrets left out), for tests asserting on request shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// Endpoint name.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    /// Response status.
    pub status: u16,
    /// Authorization scheme (`Bearer`, `RemoteAuth`, …), never the credential.
    pub auth_scheme: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// `X-ScaleSetMaxCapacity` header.
    pub max_capacity: Option<String>,
    /// When it arrived.
    pub at: DateTime<Utc>,
}

/// State shared by the server tasks and the library handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// [`State::runner_jobs_epoch`] as last published: the runners' job waits watch this
    /// instead of every change. A thousand idle runners each woke on every change, which made
    /// the test bed's own CPU time grow with the square of the runners.
    runner_jobs: watch::Sender<u64>,
    offset: Mutex<TimeDelta>,
    calls: Mutex<VecDeque<CallRecord>>,
    /// The identity platform's token endpoint and Key Vault (crate::azure).
    pub(crate) azure: crate::azure::AzureState,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(state: State) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            changed: watch::channel(0).0,
            runner_jobs: watch::channel(0).0,
            offset: Mutex::new(TimeDelta::zero()),
            calls: Mutex::new(VecDeque::new()),
            azure: crate::azure::AzureState::default(),
        })
    }

    /// The emulator's clock: wall time plus the offset from [`Shared::advance_clock`].
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        now.checked_add_signed(*lock(&self.offset)).unwrap_or(now)
    }

    /// Moves the emulator's clock forward and runs the due transitions.
    pub(crate) fn advance_clock(&self, by: Duration) {
        {
            let mut o = lock(&self.offset);
            *o = o.checked_add(&crate::state::td(by)).unwrap_or(*o);
        }
        self.mutate(|_, _| ());
    }

    /// Reads the state without notifying waiters.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&mut State, DateTime<Utc>) -> R) -> R {
        let now = self.now();
        f(&mut lock(&self.state), now)
    }

    /// Mutates the state, runs due transitions and wakes every waiter of changes (long polls),
    /// and the runners' job waits when [`State::runner_jobs_epoch`] moved.
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut State, DateTime<Utc>) -> R) -> R {
        let now = self.now();
        let (r, epoch) = {
            let mut st = lock(&self.state);
            let r = f(&mut st, now);
            st.advance(now);
            (r, st.runner_jobs_epoch)
        };
        self.notify();
        self.publish_runner_jobs(epoch);
        r
    }

    /// Runs due transitions; wakes waiters only when something changed.
    pub(crate) fn tick(&self) {
        let now = self.now();
        let (changed, epoch) = {
            let mut st = lock(&self.state);
            (st.advance(now), st.runner_jobs_epoch)
        };
        if changed {
            self.notify();
            self.publish_runner_jobs(epoch);
        }
    }

    fn publish_runner_jobs(&self, epoch: u64) {
        self.runner_jobs.send_if_modified(|published| {
            let new = *published != epoch;
            *published = epoch;
            new
        });
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every later change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn record_call(&self, call: CallRecord) {
        let mut calls = lock(&self.calls);
        if calls.len() >= CALL_LOG_LIMIT {
            calls.pop_front();
        }
        calls.push_back(call);
    }

    /// The call log, oldest first.
    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        lock(&self.calls).iter().cloned().collect()
    }

    /// Empties the call log and the counters.
    pub(crate) fn reset_calls(&self) {
        lock(&self.calls).clear();
        lock(&self.state).counters.clear();
    }

    /// Waits until `check` returns `Some` or `deadline` passes, re-checking on every change.
    pub(crate) async fn wait_for<R>(
        &self,
        deadline: tokio::time::Instant,
        check: impl FnMut(&mut State, DateTime<Utc>) -> Option<R>,
    ) -> Option<R> {
        self.wait_on(self.subscribe(), deadline, check).await
    }

    /// [`Shared::wait_for`] for a check of a runner's job ([`State::runner_job`]), re-checking
    /// only when one can have changed ([`State::runner_jobs_epoch`]).
    pub(crate) async fn wait_for_runner_job<R>(
        &self,
        deadline: tokio::time::Instant,
        check: impl FnMut(&mut State, DateTime<Utc>) -> Option<R>,
    ) -> Option<R> {
        self.wait_on(self.runner_jobs.subscribe(), deadline, check)
            .await
    }

    async fn wait_on<R>(
        &self,
        mut rx: watch::Receiver<u64>,
        deadline: tokio::time::Instant,
        mut check: impl FnMut(&mut State, DateTime<Utc>) -> Option<R>,
    ) -> Option<R> {
        loop {
            rx.borrow_and_update();
            if let Some(r) = self.read(&mut check) {
                return Some(r);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.read(&mut check),
            }
        }
    }
}

/// A request as the handlers see it: method, path parameters, decoded query, headers, body.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) endpoint: Endpoint,
    pub(crate) params: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Req {
    /// A query parameter (keys compare case-insensitively, as on the .NET service).
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Authorization: {scheme} {credential}` split, the scheme as sent.
    pub(crate) fn auth(&self) -> Option<(&str, &str)> {
        let v = self.header(header::AUTHORIZATION.as_str())?.trim();
        let (scheme, cred) = v.split_once(' ')?;
        Some((scheme, cred.trim()))
    }

    /// The credential of a `Bearer` authorization (scheme compared case-insensitively).
    pub(crate) fn bearer(&self) -> Option<&str> {
        self.auth()
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, c)| c)
    }

    /// Path parameter `i` parsed as an integer, or a 400 naming it.
    pub(crate) fn id(&self, i: usize, what: &str) -> Result<i64, ApiError> {
        let raw = self.params.get(i).map(String::as_str).unwrap_or_default();
        raw.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "The {what} in the path must be an integer, got {raw:?}."
            ))
        })
    }
}

fn activity_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-0000-0000-000000000000"))
}

fn fault_response(kind: FaultKind, family: Family) -> Response {
    match kind {
        FaultKind::Status {
            status,
            retry_after,
            type_key,
            message,
        } => {
            let mut resp = match (type_key, message) {
                (Some(t), m) => crate::wire::json_response(
                    status,
                    &vss_body(&t, m.as_deref().unwrap_or("Injected fault.")),
                ),
                (None, Some(m)) if family == Family::GitHub => {
                    ApiError::github(status, m).into_response()
                }
                (None, Some(m)) => text_response(status, m),
                (None, None) => empty_response(status),
            };
            if let Some(ra) = retry_after
                && let Ok(v) = HeaderValue::from_str(&ra)
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        FaultKind::Respond {
            status,
            content_type,
            body,
        } => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = http::StatusCode::from_u16(status)
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(ct) = content_type
                && let Ok(v) = HeaderValue::from_str(&ct)
            {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp
        }
        FaultKind::DropConnection => {
            let stream = futures::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"count\":")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection drop",
                )),
            ]);
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        FaultKind::RateLimit {
            status,
            reset_in_secs,
            secondary,
        } => rate_limit_response(status, reset_in_secs, secondary),
        FaultKind::Delay { .. } | FaultKind::BomPrefix => empty_response(500),
    }
}

/// GitHub's rate-limit answer (docs.github.com, "Rate limits for the REST API").
fn rate_limit_response(status: u16, reset_in_secs: Option<u64>, secondary: bool) -> Response {
    let message = if secondary {
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    } else {
        "API rate limit exceeded for installation ID 1."
    };
    let mut resp = ApiError::github(status, message).into_response();
    if let Some(secs) = reset_in_secs {
        let reset = chrono::Utc::now().timestamp() + i64::try_from(secs).unwrap_or(i64::MAX / 2);
        let headers = resp.headers_mut();
        for (name, value) in [
            ("x-ratelimit-limit", "5000".to_owned()),
            ("x-ratelimit-remaining", "0".to_owned()),
            ("x-ratelimit-used", "5000".to_owned()),
            ("x-ratelimit-resource", "core".to_owned()),
            ("x-ratelimit-reset", reset.to_string()),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    resp
}

async fn with_bom(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let mut out = Vec::with_capacity(bytes.len() + 3);
    out.extend_from_slice(b"\xEF\xBB\xBF");
    out.extend_from_slice(&bytes);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

fn decode_query(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The single axum handler: everything goes through here.
async fn dispatch(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return text_response(413, "Request body too large or unreadable.".to_owned());
    };
    let path = parts.uri.path();
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        let mut resp = routes::control::handle(&shared, &parts.method, path, &body).await;
        resp.headers_mut().insert("ActivityId", activity_id());
        return resp;
    }
    if let Some(resp) = crate::azure::handle(
        &shared.azure,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
    ) {
        return resp;
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let strict = shared.read(|st, _| st.cfg.strict_github_hosts);
    let route = match route(&parts.method, path, &host, strict) {
        Ok(r) => r,
        Err(e) => {
            let (status, text) = match e {
                RouteError::NotFound => (404, "Not Found"),
                RouteError::MethodNotAllowed => (405, "Method Not Allowed"),
            };
            tracing::debug!(method = %parts.method, path, status, "unmatched request");
            shared.read(|st, _| *st.counters.entry(UNMATCHED.to_owned()).or_insert(0) += 1);
            shared.record_call(CallRecord {
                endpoint: UNMATCHED.to_owned(),
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                status,
                auth_scheme: None,
                content_type: None,
                user_agent: None,
                max_capacity: None,
                at: shared.now(),
            });
            let mut resp = text_response(status, text.to_owned());
            resp.headers_mut().insert("ActivityId", activity_id());
            return resp;
        }
    };
    let endpoint = route.endpoint;
    let family = endpoint.family();
    let plan = shared.read(|st, _| {
        *st.counters.entry(endpoint.as_str().to_owned()).or_insert(0) += 1;
        faults::plan(&mut st.faults, endpoint.as_str(), family != Family::Runner)
    });
    let header_text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut call = CallRecord {
        endpoint: endpoint.as_str().to_owned(),
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        status: 0,
        auth_scheme: header_text("authorization")
            .and_then(|a| a.split_whitespace().next().map(str::to_owned)),
        content_type: header_text("content-type"),
        user_agent: header_text("user-agent"),
        max_capacity: header_text("x-scalesetmaxcapacity"),
        at: shared.now(),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let mut resp = match plan.terminal {
        Some(kind) => fault_response(kind, family),
        None => {
            let req = Req {
                method: parts.method.clone(),
                endpoint,
                params: route.params,
                query: decode_query(&parts.uri),
                headers: parts.headers.clone(),
                body,
            };
            routes::handle(&shared, req)
                .await
                .unwrap_or_else(ApiError::into_response)
        }
    };
    if plan.bom {
        resp = with_bom(resp).await;
    }
    resp.headers_mut().insert("ActivityId", activity_id());
    if family == Family::GitHub {
        resp.headers_mut()
            .insert("X-GitHub-Request-Id", activity_id());
    }
    call.status = resp.status().as_u16();
    tracing::debug!(endpoint = %endpoint, method = %call.method, status = call.status, "request");
    shared.record_call(call);
    resp
}

/// TLS material for HTTPS serving.
pub(crate) type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// Starts serving on `listener` until `cancel` fires. Returns the server task.
pub(crate) fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // Responses are gzip-compressed for clients that ask (as GitHub's front ends do).
    let router = Router::new()
        .fallback(dispatch)
        .with_state(shared.clone())
        .layer(tower_http::compression::CompressionLayer::new().gzip(true));
    let tick_cancel = cancel.clone();
    let tick_shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let interval = tick_shared.read(|st, _| st.cfg.tick_interval);
            tokio::select! {
                () = tick_cancel.cancelled() => break,
                () = tokio::time::sleep(interval.max(Duration::from_millis(5))) => tick_shared.tick(),
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                a = listener.accept() => a,
            };
            let Ok((stream, _peer)) = accepted else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(router.clone());
            let cancel = cancel.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await
                        else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            _ = conn => {}
                        }
                    }
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            () = cancel.cancelled() => {}
                            _ = conn => {}
                        }
                    }
                }
            });
        }
    })
}

/// Binds 127.0.0.1 on `port` (0 = any free port).
pub(crate) async fn bind(port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        anyhow::anyhow!(
            "binding 127.0.0.1:{port} failed: {e}; pick another port or 0 for any free one"
        )
    })?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}
