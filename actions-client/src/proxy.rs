//! Proxy selection (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`) and the connector that applies it:
//! HTTPS destinations through an HTTP CONNECT tunnel, plain-HTTP destinations in absolute form.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tower::Service;

use crate::error::{Error, Result};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which proxy to use for which destination. Proxy URLs may carry credentials, hence secret.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// Proxy for `http://` destinations.
    pub http: Option<SecretString>,
    /// Proxy for `https://` destinations (reached with CONNECT).
    pub https: Option<SecretString>,
    /// Destinations that bypass the proxy: `*`, host names (matching subdomains too), `.suffix`,
    /// `host:port`, IP addresses and CIDR ranges.
    pub no_proxy: Vec<String>,
    /// Also proxy `localhost` and loopback addresses (Go never does; useful with local proxies).
    pub proxy_loopback: bool,
}

impl ProxyConfig {
    /// No proxy at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// From `HTTP_PROXY`/`http_proxy`, `HTTPS_PROXY`/`https_proxy` and `NO_PROXY`/`no_proxy`
    /// (upper case wins).
    pub fn from_env() -> Self {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .filter(|v| !v.trim().is_empty())
        };
        Self {
            http: var(["HTTP_PROXY", "http_proxy"]).map(SecretString::from),
            https: var(["HTTPS_PROXY", "https_proxy"]).map(SecretString::from),
            no_proxy: var(["NO_PROXY", "no_proxy"])
                .map(|v| split_list(&v))
                .unwrap_or_default(),
            proxy_loopback: false,
        }
    }

    /// Whether any proxy is configured.
    pub fn is_enabled(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The compiled rules.
pub(crate) struct ProxyRules {
    matcher: Matcher,
    host_ports: Vec<(String, u16)>,
    proxy_loopback: bool,
    enabled: bool,
}

/// Where to send one request.
pub(crate) struct Route {
    /// The proxy's URI.
    pub proxy: Uri,
    /// `Proxy-Authorization` for the proxy, from its URL's userinfo.
    pub auth: Option<HeaderValue>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Route({}://{})",
            self.proxy.scheme_str().unwrap_or("http"),
            self.proxy
                .authority()
                .map(|a| a.host().to_owned())
                .unwrap_or_default()
        )
    }
}

impl ProxyRules {
    pub(crate) fn new(config: &ProxyConfig) -> Result<Self> {
        for (field, value) in [("HTTP_PROXY", &config.http), ("HTTPS_PROXY", &config.https)] {
            if let Some(value) = value {
                let text = value.expose_secret();
                let with_scheme = if text.contains("://") {
                    text.to_owned()
                } else {
                    format!("http://{text}")
                };
                let parsed = url::Url::parse(&with_scheme).map_err(|e| {
                    Error::config(
                        field,
                        "<proxy URL, not shown: it may contain credentials>",
                        format!("not a URL ({e}); write it as http://[user:password@]host:port"),
                    )
                })?;
                if parsed.scheme() != "http" {
                    return Err(Error::config(
                        field,
                        format!("{}://…", parsed.scheme()),
                        "only http:// proxies are supported (HTTPS destinations are tunnelled with CONNECT); write the proxy URL as http://host:port",
                    ));
                }
            }
        }
        let mut domains = Vec::new();
        let mut host_ports = Vec::new();
        for entry in &config.no_proxy {
            match split_host_port(entry) {
                Some((host, port)) => host_ports.push((host, port)),
                None => domains.push(entry.clone()),
            }
        }
        let mut builder = Matcher::builder().no(domains.join(","));
        if let Some(http) = &config.http {
            builder = builder.http(http.expose_secret());
        }
        if let Some(https) = &config.https {
            builder = builder.https(https.expose_secret());
        }
        Ok(Self {
            matcher: builder.build(),
            host_ports,
            proxy_loopback: config.proxy_loopback,
            enabled: config.is_enabled(),
        })
    }

    /// The proxy for `dst`, or `None` to connect directly.
    pub(crate) fn route(&self, dst: &Uri) -> Option<Route> {
        if !self.enabled {
            return None;
        }
        let host = dst.host()?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if !self.proxy_loopback && is_loopback(bare) {
            return None;
        }
        let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        if self
            .host_ports
            .iter()
            .any(|(h, p)| *p == port && host_matches(h, bare))
        {
            return None;
        }
        let intercept = self.matcher.intercept(dst)?;
        Some(Route {
            proxy: intercept.uri().clone(),
            auth: intercept.basic_auth().cloned(),
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn split_host_port(entry: &str) -> Option<(String, u16)> {
    if entry.parse::<IpAddr>().is_ok() || entry.contains('/') {
        return None;
    }
    let (host, port) = entry.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port))
}

fn host_matches(rule: &str, host: &str) -> bool {
    let rule = rule.trim_start_matches('.');
    if let (Ok(a), Ok(b)) = (rule.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return a == b;
    }
    host.eq_ignore_ascii_case(rule)
        || (host.len() > rule.len()
            && host
                .to_ascii_lowercase()
                .ends_with(&rule.to_ascii_lowercase())
            && host.as_bytes()[host.len() - rule.len() - 1] == b'.')
}

/// A TCP stream, direct, tunnelled, or to a forward proxy (then requests use absolute form).
pub(crate) struct ProxyStream {
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

/// Connector that routes every destination by [`ProxyRules`].
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    rules: Arc<ProxyRules>,
}

impl ProxyConnector {
    pub(crate) fn new(http: HttpConnector, rules: Arc<ProxyRules>) -> Self {
        Self { http, rules }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let route = self.rules.route(&dst);
        Box::pin(async move {
            match route {
                None => {
                    let inner = http.call(dst).await?;
                    Ok(ProxyStream {
                        inner,
                        absolute_form: false,
                    })
                }
                Some(route) if dst.scheme_str() == Some("https") => {
                    tracing::trace!(?route, "tunnelling through proxy");
                    let mut tunnel = Tunnel::new(route.proxy, http);
                    if let Some(auth) = route.auth {
                        tunnel = tunnel.with_auth(auth);
                    }
                    let inner = tunnel.call(dst).await?;
                    Ok(ProxyStream {
                        inner,
                        absolute_form: false,
                    })
                }
                Some(route) => {
                    tracing::trace!(?route, "forwarding through proxy");
                    let inner = http.call(route.proxy).await?;
                    Ok(ProxyStream {
                        inner,
                        absolute_form: true,
                    })
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rules(no: &[&str], loopback: bool) -> ProxyRules {
        ProxyRules::new(&ProxyConfig {
            http: Some(SecretString::from("http://user:pw@proxy.local:3128")),
            https: Some(SecretString::from("http://proxy.local:3129")),
            no_proxy: no.iter().map(|s| s.to_string()).collect(),
            proxy_loopback: loopback,
        })
        .unwrap()
    }

    fn via(r: &ProxyRules, url: &str) -> Option<String> {
        r.route(&url.parse().unwrap()).map(|r| r.proxy.to_string())
    }

    #[test]
    fn no_proxy_rules() {
        let r = rules(
            &[
                "example.com",
                ".corp.net",
                "10.0.0.0/8",
                "192.168.1.7",
                "api.github.com:8443",
            ],
            false,
        );
        assert_eq!(via(&r, "http://example.com/"), None);
        assert_eq!(via(&r, "http://www.example.com/"), None);
        assert!(via(&r, "http://notexample.com/").is_some());
        assert_eq!(via(&r, "https://a.corp.net/"), None);
        assert_eq!(via(&r, "https://10.2.3.4/"), None);
        assert!(via(&r, "https://11.2.3.4/").is_some());
        assert_eq!(via(&r, "https://192.168.1.7/"), None);
        assert_eq!(via(&r, "https://api.github.com:8443/"), None);
        assert!(via(&r, "https://api.github.com/").is_some());
        assert_eq!(via(&r, "http://127.0.0.1:1/"), None);
        assert_eq!(via(&r, "http://localhost:1/"), None);
        assert_eq!(
            via(&r, "https://github.com/").as_deref(),
            Some("http://proxy.local:3129/")
        );
        let http = r.route(&"http://github.com/".parse().unwrap()).unwrap();
        assert!(http.auth.is_some());
        assert!(!format!("{http:?}").contains("pw"));
        let all = rules(&["*"], false);
        assert_eq!(via(&all, "https://github.com/"), None);
        let lo = rules(&[], true);
        assert!(via(&lo, "http://127.0.0.1:1/").is_some());
    }

    #[test]
    fn bad_proxy_url_hides_credentials() {
        let err = ProxyRules::new(&ProxyConfig {
            https: Some(SecretString::from("socks5://u:secretpw@h:1")),
            ..ProxyConfig::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("HTTPS_PROXY"), "{err}");
        assert!(err.contains("socks5://"), "{err}");
        let tls_proxy = ProxyRules::new(&ProxyConfig {
            https: Some(SecretString::from("https://proxy:443")),
            ..ProxyConfig::default()
        });
        assert!(tls_proxy.is_err());
        assert!(!err.contains("secretpw"), "{err}");
        assert!(!ProxyConfig::none().is_enabled());
    }
}
