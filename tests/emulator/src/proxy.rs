//! A recording forward proxy (CONNECT tunnels and absolute-form forwarding) on 127.0.0.1 that
//! sends every connection to one upstream, whatever host was asked for, so that names like
//! `api.github.com` reach the emulator; the proxy scenarios of every suite use it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// The proxy; stops when dropped.
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
    /// Starts a proxy that sends every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
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
        Ok(Proxy {
            addr,
            records,
            task,
        })
    }

    /// The proxy's address on the host.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
