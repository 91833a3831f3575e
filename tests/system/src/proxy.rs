//! A recording HTTP proxy (CONNECT tunnels and absolute-form forwarding) for the proxy
//! scenario: every connection goes to one upstream, whatever host it asked for.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct ProxyRecord {
    /// `CONNECT` or the forwarded method.
    pub method: String,
    /// Request target (`host:port` for CONNECT, the absolute URL otherwise).
    pub target: String,
}

/// A forward proxy on 127.0.0.1; stops when dropped.
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
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Proxy> {
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

    /// The proxy's URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What went through so far.
    pub fn records(&self) -> Vec<ProxyRecord> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut parts = text.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(ProxyRecord {
            method: method.clone(),
            target,
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
