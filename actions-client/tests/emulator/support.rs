//! Test support: clients against the emulator, a captured tracing log, and a small HTTP proxy
//! (CONNECT tunnels and absolute-form forwarding) that records what went through it.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actions_client::{
    ActionsClient, Credentials, Error, ProxyConfig, RetryPolicy, Transport, TransportConfig,
};
use actions_emulator::{Emulator, EmulatorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every line the crate logged (all tests of this binary), at trace level.
pub fn log_text() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUF: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUF.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per binary).
pub fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("actions_client=trace")
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// Fails if any of `texts` or the captured log contains a secret or a token-shaped string.
pub fn assert_no_secrets(texts: &[String], secrets: &[&str]) {
    let log = log_text();
    let mut all: Vec<&str> = texts.iter().map(String::as_str).collect();
    all.push(&log);
    for text in all {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !text.contains(secret),
                "a secret leaked into: {}",
                text.chars().take(400).collect::<String>()
            );
        }
        for shape in [
            "eyJ",
            "ghp_",
            "ghs_",
            "BEGIN RSA PRIVATE",
            "BEGIN PRIVATE",
            "Bearer ",
            "RemoteAuth ",
        ] {
            assert!(
                !text.contains(shape),
                "token-shaped text {shape:?} in: {}",
                text.chars().take(400).collect::<String>()
            );
        }
    }
}

/// Error text in both renderings.
pub fn texts(err: &Error) -> Vec<String> {
    vec![err.to_string(), format!("{err:?}")]
}

/// Fast retries for tests (10 ms, 20 ms, …).
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
    }
}

/// A transport config with no proxy, fast retries and short timeouts.
pub fn transport_config() -> TransportConfig {
    TransportConfig {
        proxy: ProxyConfig::none(),
        root_ca_pem: None,
        system_roots: false,
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        long_poll_timeout: Duration::from_secs(60),
        retry: fast_retry(),
    }
}

/// A transport from [`transport_config`] adjusted by `f`.
pub fn transport(f: impl FnOnce(&mut TransportConfig)) -> Transport {
    let mut cfg = transport_config();
    f(&mut cfg);
    Transport::new(cfg).expect("transport")
}

/// A PAT client for `config_url` on `transport`.
pub fn pat_client(emu: &Emulator, config_url: &str, transport: Transport) -> ActionsClient {
    ActionsClient::builder(config_url, Credentials::pat(emu.pat()).expect("pat"))
        .transport(transport)
        .force_ghes(false)
        .build()
        .expect("client")
}

/// An HTTP emulator with `f` applied to the default config.
pub async fn emulator(f: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    init_logging();
    let mut cfg = EmulatorConfig::default();
    f(&mut cfg);
    Emulator::start(cfg).await.expect("emulator")
}

/// One request seen by the proxy.
#[derive(Clone, Debug)]
pub struct ProxyRecord {
    /// `CONNECT` or the forwarded method.
    pub method: String,
    /// Request target (`host:port` for CONNECT, the absolute URL otherwise).
    pub target: String,
    /// `Proxy-Authorization` header.
    pub auth: Option<String>,
}

/// A forward proxy on 127.0.0.1 that sends every connection to `upstream`, whatever host was
/// asked for (so that names like `api.github.com` reach the emulator).
pub struct Proxy {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<ProxyRecord>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts the proxy.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let records = Arc::new(Mutex::new(Vec::new()));
        let log = records.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, upstream, log).await;
                });
            }
        });
        Proxy {
            addr,
            records,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:password@127.0.0.1:PORT`.
    pub fn url_with_auth(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// What went through so far.
    pub fn records(&self) -> Vec<ProxyRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    log: Arc<Mutex<Vec<ProxyRecord>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(pos) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if head.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ProxyRecord {
            method: method.clone(),
            target,
            auth,
        });
    let mut server = TcpStream::connect(upstream).await?;
    if method == "CONNECT" {
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        server.write_all(&head[end..]).await?;
    } else {
        server.write_all(&head).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
