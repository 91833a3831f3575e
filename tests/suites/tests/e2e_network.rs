//! End-to-end network set-ups of ARC's e2e suite: an HTTP proxy between the controllers and the
//! Actions service (`proxy` values), and a self-signed CA (the emulator over HTTPS, its CA given
//! by `githubServerTLS` from a ConfigMap, mounted into runners). Each ends with the leak check.

use std::time::Duration;

use serde_json::json;
use system::{Proxy, ScaleSetSpec, System, SystemOptions};

async fn finish(sys: System, outcome: anyhow::Result<()>) {
    if let Err(e) = sys.finish(outcome).await {
        panic!("{e:#}");
    }
}

#[tokio::test]
async fn proxy_carries_the_actions_traffic() {
    let sys = System::shared(SystemOptions::new("e2e-proxy"))
        .await
        .expect("system");
    let outcome = async {
        let proxy = Proxy::start(sys.emulator().addr()).await?;
        let set = sys
            .install_scale_set(
                ScaleSetSpec::new("arc-proxy")
                    .values(json!({ "proxy": { "http": { "url": proxy.url() } } })),
            )
            .await?;
        let jobs = sys.run_jobs(&set, 2, Duration::from_secs(1), 0).await?;
        let targets: Vec<String> = proxy.records().into_iter().map(|r| r.target).collect();
        for (who, part) in [
            ("the manager's JIT configs", "generatejitconfig"),
            ("the manager's scale-set calls", "runnerscalesets"),
            ("the listener's message polls", "/queue/"),
        ] {
            anyhow::ensure!(
                targets.iter().any(|t| t.contains(part)),
                "{who} did not go through the proxy; it saw {targets:?}"
            );
        }
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
