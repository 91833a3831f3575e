//! End-to-end network set-ups of ARC's e2e suite: an HTTP proxy between the controllers and
//! GitHub (`proxy` values), and a self-signed CA (the emulator over HTTPS, its CA given
//! by `githubServerTLS` from a ConfigMap, mounted into runners). Each ends with the leak check.

use std::time::Duration;

use serde_json::json;
use system::{Proxy, ScaleSetSpec, System, SystemOptions};

async fn finish(sys: System, outcome: anyhow::Result<()>) {
    if let Err(e) = sys.finish(outcome).await {
        panic!("{e:#}");
    }
}

/// Clients never proxy loopback addresses (as Go's `net/http` does not), so the config URL names
/// a host that does not resolve: the GitHub calls of the manager and of the listener (token
/// exchange) can only succeed through the proxy, which sends every connection to the emulator.
/// The Actions service URL the emulator hands out stays on 127.0.0.1 and is reached directly.
/// The proxy records the first request of each connection: each process's first is its
/// registration-token request.
#[tokio::test]
async fn proxy_carries_the_github_traffic() {
    let sys = System::shared(SystemOptions::new("e2e-proxy"))
        .await
        .expect("system");
    let outcome = async {
        let proxy = Proxy::start(sys.emulator().addr()).await?;
        sys.sim().forward_host_port(proxy.addr().port());
        let url = format!(
            "http://github.proxy.invalid:{}/{}",
            sys.emulator().addr().port(),
            system::ORG
        );
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-proxy").values(json!({
                "githubConfigUrl": url,
                "proxy": { "http": { "url": proxy.url() } },
            })))
            .await?;
        let jobs = sys.run_jobs(&set, 2, Duration::from_secs(1), 0).await?;
        let targets: Vec<String> = proxy.records().into_iter().map(|r| r.target).collect();
        let exchanges = targets
            .iter()
            .filter(|t| t.contains("github.proxy.invalid") && t.contains("registration-token"))
            .count();
        anyhow::ensure!(
            exchanges >= 2,
            "expected the manager's and the listener's token exchanges through the proxy; it saw {targets:?}"
        );
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn self_signed_ca() {
    let mut options = SystemOptions::new("e2e-tls");
    options.tls = true;
    let sys = System::shared(options).await.expect("system");
    let outcome = async {
        anyhow::ensure!(
            sys.emulator().url().starts_with("https://"),
            "the emulator is not on HTTPS"
        );
        let set = sys.install_scale_set(ScaleSetSpec::new("arc-tls")).await?;
        let jobs = sys.run_jobs(&set, 2, Duration::from_secs(1), 0).await?;
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}
