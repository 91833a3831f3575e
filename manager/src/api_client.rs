//! The manager's connection to the API server: every request and watch multiplexed over one
//! HTTP/2 connection, as client-go's clients (ARC's among them) do. kube's default stack speaks
//! HTTP/1.1, which holds one TLS connection per request in flight and per watch: about 50 with
//! 1,000 runners, each with its own buffers (docs/architecture.md#memory).

use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use tower::retry::RetryLayer;
use tower::util::BoxService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// The service a [`ClientBuilder`] starts from, whichever transport is under it.
pub type BaseService = BoxService<Request<Body>, Response<Box<DynBody>>, BoxError>;

/// How often an idle connection is pinged, and how long a ping may go unanswered before the
/// connection is dropped and its requests and watches fail over to a new one (client-go: 30 s
/// and 15 s). One connection carries everything, so a dead one must not go unnoticed.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes the API server may send on the connection before the manager reads them. Each
/// stream has its own window (hyper's 2 MiB); the connection's is large enough that a few
/// watches whose consumers lag cannot use it up and stall every other request (Go's transport,
/// client-go's, allows 1 GiB). Memory is spent only on data actually waiting to be read.
const CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;

/// A client builder for `config` over one HTTP/2 connection (the API server offers `h2` by
/// ALPN; a server that does not still gets HTTP/1.1). Through a proxy, kube's own stack.
pub fn builder(config: kube::Config) -> anyhow::Result<ClientBuilder<BaseService>> {
    if config.proxy_url.is_some() {
        return Ok(ClientBuilder::try_from(config)?);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client: HyperClient<_, Body> = HyperClient::builder(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .http2_keep_alive_interval(PING_INTERVAL)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(client)
        .map_response(|response| {
            response.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
            })
        })
        .boxed();
    Ok(ClientBuilder::new(service, config.default_namespace))
}
