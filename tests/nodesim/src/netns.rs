//! A network namespace per pod, as a node gives every pod its own network: two pods can listen
//! on the same port, and each pod has its own address.
//!
//! Addresses: a veth pair joins each pod to the host. The pod's end is `eth0` with one address
//! of [`POD_SUBNET`] (a /32) and a default route through [`GATEWAY`], a link-local address that
//! the host's end answers by proxy ARP (the layout Calico gives pods); the host reaches the pod
//! through a /32 route over the host's end. Adding that route is how an address is taken: the
//! kernel refuses a second route to the same address, so concurrent simulators never share one.
//! The host reaches every pod at its address (`status.podIP`); pods reach the host's addresses.
//!
//! The host's loopback services: for every host port the simulator forwards (the API server's,
//! and those added with [`crate::NodeSimulator::forward_host_port`], such as the
//! Actions-service emulator's), the pod finds a listener on its own `127.0.0.1:<port>` whose
//! connections go to the host's `127.0.0.1:<port>`, as a node's "kube-proxy" would make a
//! Service reachable. Addresses, URLs and certificates of those services stay as on the host.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How often a pod's network picks up newly forwarded host ports.
const REFRESH: Duration = Duration::from_millis(300);

/// Where pod addresses come from: 10.244.0.0/16, the usual pod network of a first node.
pub const POD_SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 244, 0, 0), 16);
/// Every pod's default gateway, answered by the host's end of its veth.
const GATEWAY: &str = "169.254.1.1";

/// The host ports forwarded into every pod network.
pub(crate) type HostPorts = Arc<Mutex<BTreeSet<u16>>>;

/// One pod's network namespace, its address and the forwarders into it.
pub(crate) struct PodNetwork {
    name: String,
    address: Ipv4Addr,
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
    /// Creates namespace `nodesim-<id>` with its loopback up and an address of its own, and
    /// starts forwarding `ports` into it (the forwarded ports of a running pod follow the set).
    /// `id` is at most 12 characters, as it names the host's end of the veth too.
    pub(crate) async fn create(id: &str, ports: HostPorts) -> Result<Self, String> {
        let name = format!("nodesim-{id}");
        let name = name.as_str();
        // A namespace left by a killed simulator goes first, and its veth and route with it.
        let _ = ip(&["netns", "delete", name]).await;
        ip(&["netns", "add", name]).await?;
        ip(&["-n", name, "link", "set", "lo", "up"]).await?;
        let address = match connect(name, &format!("nsv{id}")).await {
            Ok(address) => address,
            Err(e) => {
                let _ = ip(&["netns", "delete", name]).await;
                return Err(e);
            }
        };
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
            address,
            task,
        })
    }

    /// The pod's address.
    pub(crate) fn address(&self) -> Ipv4Addr {
        self.address
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

/// Joins namespace `ns` to the host by a veth pair (`host_end` on the host, `eth0` in the
/// pod), takes a free address of [`POD_SUBNET`] for it and routes between the two.
async fn connect(ns: &str, host_end: &str) -> Result<Ipv4Addr, String> {
    ip(&[
        "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ])
    .await?;
    // Proxy ARP answers for the gateway only on an interface that forwards; without it the
    // host reaches no pod on a machine where IP forwarding is off (nothing else needs it on).
    for setting in ["proxy_arp", "forwarding"] {
        let path = format!("/proc/sys/net/ipv4/conf/{host_end}/{setting}");
        std::fs::write(&path, "1").map_err(|e| format!("writing {path}: {e}"))?;
    }
    ip(&["link", "set", host_end, "up"]).await?;
    let address = take_address(host_end).await?;
    let cidr = format!("{address}/32");
    ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"]).await?;
    ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
    ip(&[
        "-n", ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link",
    ])
    .await?;
    ip(&[
        "-n", ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0",
    ])
    .await?;
    Ok(address)
}

/// Takes the first free address of [`POD_SUBNET`] after a random start by adding the host's
/// route to it over `host_end`; an address whose route exists belongs to another pod.
async fn take_address(host_end: &str) -> Result<Ipv4Addr, String> {
    let (base, prefix) = POD_SUBNET;
    let size = 1u32 << (32 - prefix);
    let start = rand::random::<u32>() % size;
    for step in 0..size {
        let offset = (start + step) % size;
        // Neither the network's nor the broadcast address.
        if offset == 0 || offset == size - 1 {
            continue;
        }
        let address = Ipv4Addr::from(u32::from(base) + offset);
        let route = format!("{address}/32");
        match ip(&["route", "add", &route, "dev", host_end]).await {
            Ok(()) => return Ok(address),
            Err(e) if e.contains("File exists") => continue,
            Err(e) => return Err(e),
        }
    }
    Err(format!(
        "every address of {base}/{prefix} is taken; fix: delete the namespaces that killed \
         simulators left (ip netns list | grep nodesim-)"
    ))
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
