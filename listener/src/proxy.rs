//! Proxy support for the Actions HTTP client: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`
//! (upper or lower case). HTTPS destinations go through an HTTP CONNECT tunnel; plain-HTTP
//! destinations are sent to the proxy in absolute form.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A TCP stream, direct, tunnelled, or to a forward proxy (then requests use absolute form).
pub struct ProxyStream {
    inner: TokioIo<TcpStream>,
    absolute_form: bool,
}

impl Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.inner.connected().proxy(self.absolute_form)
    }
}

/// Connector that consults the proxy environment for every destination.
#[derive(Clone)]
pub struct ProxyConnector {
    http: HttpConnector,
    matcher: Arc<Matcher>,
}

impl ProxyConnector {
    /// Reads the proxy variables from the environment.
    pub fn from_env() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        ProxyConnector {
            http,
            matcher: Arc::new(Matcher::from_env()),
        }
    }

    /// The `Proxy-Authorization` value for a plain-HTTP request to `uri`, if its proxy has
    /// credentials.
    pub fn forward_auth(&self, uri: &Uri) -> Option<http::HeaderValue> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        self.matcher
            .intercept(uri)
            .and_then(|i| i.basic_auth().cloned())
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let intercept = self.matcher.intercept(&dst);
        Box::pin(async move {
            match intercept {
                None => Ok(ProxyStream {
                    inner: http.call(dst).await?,
                    absolute_form: false,
                }),
                Some(proxy) if dst.scheme_str() == Some("https") => {
                    let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                    if let Some(auth) = proxy.basic_auth() {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    Ok(ProxyStream {
                        inner: tunnel.call(dst).await?,
                        absolute_form: false,
                    })
                }
                Some(proxy) => Ok(ProxyStream {
                    inner: http.call(proxy.uri().clone()).await?,
                    absolute_form: true,
                }),
            }
        })
    }
}
