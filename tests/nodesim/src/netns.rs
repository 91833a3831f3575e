//! A network namespace per pod, as a node gives every pod its own network: two pods can listen
//! on the same port. The simulated node has no pod network to the host, so its "kube-proxy" puts
//! the host's services into each pod's loopback instead: for every host port the simulator
//! forwards (the API server's, and those added with [`crate::NodeSimulator::forward_host_port`],
//! such as the Actions-service emulator's), the pod finds a listener on its own
//! `127.0.0.1:<port>` whose connections go to the host's `127.0.0.1:<port>`. Addresses, URLs and
//! certificates stay as they are on the host.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How often a pod's network picks up newly forwarded host ports.
const REFRESH: Duration = Duration::from_millis(300);

/// The host ports forwarded into every pod network.
pub(crate) type HostPorts = Arc<Mutex<BTreeSet<u16>>>;

/// One pod's network namespace and the forwarders into it.
pub(crate) struct PodNetwork {
    name: String,
    task: JoinHandle<()>,
}

async fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl PodNetwork {
    /// Creates namespace `name` with its loopback up and starts forwarding `ports` into it
    /// (the forwarded ports of a running pod follow the set).
    pub(crate) async fn create(name: &str, ports: HostPorts) -> Result<Self, String> {
        // A namespace left by a killed simulator goes first.
        let _ = ip(&["netns", "delete", name]).await;
        ip(&["netns", "add", name]).await?;
        ip(&["-n", name, "link", "set", "lo", "up"]).await?;
        let mut forwarded = BTreeSet::new();
        let first = forward_new(name, &ports, &mut forwarded).await?;
        let ns = name.to_owned();
        let task = tokio::spawn(async move {
            let mut tasks = first;
            loop {
                tokio::time::sleep(REFRESH).await;
                match forward_new(&ns, &ports, &mut forwarded).await {
                    Ok(more) => tasks.extend(more),
                    Err(e) => tracing::warn!(netns = %ns, error = %e, "forwarding a host port"),
                }
                tasks.retain(|t| !t.is_finished());
            }
        });
        Ok(Self {
            name: name.to_owned(),
            task,
        })
    }

    /// The namespace's path, for `podman run --network ns:<path>`.
    pub(crate) fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Stops the forwarders and deletes the namespace.
    pub(crate) async fn remove(self) {
        self.task.abort();
        if let Err(e) = ip(&["netns", "delete", &self.name]).await {
            tracing::warn!(netns = %self.name, error = %e, "deleting a pod network");
        }
    }
}

/// Starts a forwarder for every port of `ports` not yet in `forwarded`.
async fn forward_new(
    ns: &str,
    ports: &HostPorts,
    forwarded: &mut BTreeSet<u16>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let wanted: Vec<u16> = ports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .copied()
        .filter(|p| !forwarded.contains(p))
        .collect();
    let mut tasks = Vec::new();
    for port in wanted {
        let listener = listen_in(ns, port).await?;
        forwarded.insert(port);
        tasks.push(tokio::spawn(forward(listener, port)));
    }
    Ok(tasks)
}

/// A listener on `127.0.0.1:port` inside namespace `ns`: a short-lived thread enters the
/// namespace and binds; the socket stays in that namespace.
async fn listen_in(ns: &str, port: u16) -> Result<TcpListener, String> {
    let path = format!("/run/netns/{ns}");
    // A thread of its own, which ends in the namespace: no pooled thread is left inside it.
    let bind = move || -> Result<std::net::TcpListener, String> {
        let file = std::fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering {path}: {e}"))?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("listening on 127.0.0.1:{port} in {path}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("127.0.0.1:{port} in {path}: {e}"))?;
        Ok(listener)
    };
    let listener = tokio::task::spawn_blocking(move || {
        std::thread::spawn(bind)
            .join()
            .map_err(|_| "the namespace thread panicked".to_owned())?
    })
    .await
    .map_err(|e| format!("the namespace thread failed: {e}"))??;
    TcpListener::from_std(listener).map_err(|e| format!("127.0.0.1:{port} in {ns}: {e}"))
}

/// Relays each connection to the host's `127.0.0.1:port`.
async fn forward(listener: TcpListener, port: u16) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
