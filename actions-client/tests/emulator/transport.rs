//! HTTPS with a custom CA, HTTP CONNECT and absolute-form proxying, hosted URL rules.

use actions_client::{DEFAULT_RUNNER_GROUP_ID, Error, NewRunnerScaleSet, ProxyConfig};
use actions_emulator::{Emulator, EmulatorConfig, Endpoint};
use secrecy::{ExposeSecret, SecretString};

use crate::support::{self, Proxy, assert_no_secrets, texts};

async fn tls_emulator() -> Emulator {
    support::init_logging();
    Emulator::start_tls(EmulatorConfig::default())
        .await
        .unwrap()
}

async fn round_trip(client: &actions_client::ActionsClient) -> Result<(), Error> {
    let set = client
        .create_runner_scale_set(&NewRunnerScaleSet::new(
            format!("set-{}", rand_suffix()),
            DEFAULT_RUNNER_GROUP_ID,
        ))
        .await?;
    let session = client
        .create_message_session(set.id, "transport-test")
        .await?;
    client
        .delete_message_session(set.id, &session.session_id)
        .await?;
    client.delete_runner_scale_set(set.id).await
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test]
async fn https_with_a_custom_root_or_intermediate_ca() {
    let emu = tls_emulator().await;
    assert!(emu.url().starts_with("https://"));
    let ca = emu.ca_pem().unwrap().to_owned();
    let root = support::pat_client(
        &emu,
        &emu.org_url("octo-org"),
        support::transport(|c| c.root_ca_pem = Some(ca.clone())),
    );
    round_trip(&root).await.unwrap();
    assert!(root.service_url().unwrap().starts_with("https://"));

    let intermediate = emu.intermediate_pem().unwrap().to_owned();
    let client = support::pat_client(
        &emu,
        &emu.org_url("octo-org"),
        support::transport(|c| c.root_ca_pem = Some(intermediate)),
    );
    round_trip(&client).await.unwrap();

    // Without the CA the certificate is refused, and that is not retried.
    emu.reset_counters();
    let untrusted = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let err = untrusted.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(emu.count(Endpoint::RegistrationToken), 0);
    assert_no_secrets(&texts(&err), &[emu.pat().expose_secret()]);
}

#[tokio::test]
async fn https_through_an_authenticating_connect_proxy() {
    let emu = tls_emulator().await;
    let proxy = Proxy::start(emu.addr()).await.expect("proxy");
    let ca = emu.ca_pem().unwrap().to_owned();
    let proxy_url = proxy.url_with_auth("arc", "pr0xy-pa55");
    let client = support::pat_client(
        &emu,
        &emu.org_url("octo-org"),
        support::transport(|c| {
            c.root_ca_pem = Some(ca);
            c.proxy = ProxyConfig {
                https: Some(SecretString::from(proxy_url.clone())),
                proxy_loopback: true,
                ..ProxyConfig::default()
            };
        }),
    );
    round_trip(&client).await.unwrap();
    let records = proxy.records();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r.method, "CONNECT");
        assert_eq!(r.target, emu.addr().to_string());
        // base64("arc:pr0xy-pa55")
        assert_eq!(r.auth.as_deref(), Some("Basic YXJjOnByMHh5LXBhNTU="));
    }
    assert_no_secrets(
        &[format!("{client:?}"), format!("{:?}", client.transport())],
        &["pr0xy-pa55"],
    );
}

#[tokio::test]
async fn http_through_a_forward_proxy_and_no_proxy_rules() {
    let emu = support::emulator(|_| {}).await;
    let proxy = Proxy::start(emu.addr()).await.expect("proxy");
    let via_proxy = |no_proxy: Vec<String>| {
        support::transport(|c| {
            c.proxy = ProxyConfig {
                http: Some(SecretString::from(proxy.url_with_auth("u", "secret-pw"))),
                no_proxy,
                proxy_loopback: true,
                ..ProxyConfig::default()
            };
        })
    };
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), via_proxy(vec![]));
    round_trip(&client).await.unwrap();
    let records = proxy.records();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r.method != "CONNECT"));
    assert!(
        records
            .iter()
            .any(|r| r.target.starts_with(&format!("{}/api/v3/", emu.url()))),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r.auth.as_deref() == Some("Basic dTpzZWNyZXQtcHc="))
    );

    // host:port, IP and CIDR entries bypass the proxy.
    for rule in [
        emu.addr().to_string(),
        "127.0.0.1".to_owned(),
        "127.0.0.0/8".to_owned(),
    ] {
        let before = proxy.records().len();
        let client = support::pat_client(
            &emu,
            &emu.org_url("octo-org"),
            via_proxy(vec![rule.clone()]),
        );
        round_trip(&client).await.unwrap();
        assert_eq!(
            proxy.records().len(),
            before,
            "rule {rule} should bypass the proxy"
        );
    }
    // Loopback is never proxied unless asked for.
    let before = proxy.records().len();
    let client = support::pat_client(
        &emu,
        &emu.org_url("octo-org"),
        support::transport(|c| {
            c.proxy = ProxyConfig {
                http: Some(SecretString::from(proxy.url())),
                ..ProxyConfig::default()
            }
        }),
    );
    round_trip(&client).await.unwrap();
    assert_eq!(proxy.records().len(), before);
    assert_no_secrets(&[], &["secret-pw"]);
}

#[tokio::test]
async fn hosted_github_com_and_ghe_com_rules_through_the_proxy() {
    let emu = support::emulator(|_| {}).await;
    let proxy = Proxy::start(emu.addr()).await.expect("proxy");
    for (config_url, api_host, prefix) in [
        (
            "http://github.com/octo-org",
            "api.github.com",
            "/orgs/octo-org/",
        ),
        (
            "http://www.github.com/octo-org/app/",
            "api.github.com",
            "/repos/octo-org/app/",
        ),
        (
            "http://acme.ghe.com/enterprises/acme",
            "api.acme.ghe.com",
            "/enterprises/acme/",
        ),
    ] {
        emu.reset_counters();
        let client = support::pat_client(
            &emu,
            config_url,
            support::transport(|c| {
                c.proxy = ProxyConfig {
                    http: Some(SecretString::from(proxy.url())),
                    ..ProxyConfig::default()
                }
            }),
        );
        assert!(client.config().is_hosted());
        assert!(
            client
                .get_runner_scale_set(DEFAULT_RUNNER_GROUP_ID, "x")
                .await
                .unwrap()
                .is_none(),
            "{config_url}"
        );
        let calls = emu.calls();
        let reg = calls
            .iter()
            .find(|c| c.endpoint == "registration_token")
            .unwrap();
        // Through a forward proxy the emulator logs the absolute-form target.
        let reg_prefix = format!("http://{api_host}{prefix}");
        assert!(
            reg.uri.starts_with(&reg_prefix),
            "{config_url}: {}",
            reg.uri
        );
        let registration = calls
            .iter()
            .find(|c| c.endpoint == "runner_registration")
            .unwrap();
        assert_eq!(
            registration.uri,
            format!("http://{api_host}/actions/runner-registration")
        );
        assert!(
            proxy
                .records()
                .iter()
                .any(|r| r.target.starts_with(&format!("http://{api_host}/"))),
            "{config_url}: {:?}",
            proxy.records()
        );
        // S is on loopback, so the service calls went direct.
        assert_eq!(client.service_url().unwrap(), emu.actions_url());
    }
}

/// Runs `env_proxy_child` in a child process with the proxy environment set.
#[tokio::test]
async fn proxy_environment_variables_are_honoured() {
    let emu = support::emulator(|_| {}).await;
    let proxy = Proxy::start(emu.addr()).await.expect("proxy");
    let exe = std::env::current_exe().unwrap();
    let output = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "transport::env_proxy_child",
            "--ignored",
            "--nocapture",
        ])
        .env("AC_TEST_CONFIG_URL", "http://acme.invalid/octo-org")
        .env("AC_TEST_PAT", emu.pat().expose_secret())
        .env("HTTP_PROXY", proxy.url())
        .env("http_proxy", "http://127.0.0.1:9")
        .env("NO_PROXY", "example.com")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        proxy.records().iter().any(|r| r
            .target
            .starts_with("http://acme.invalid/api/v3/orgs/octo-org/")),
        "{:?}",
        proxy.records()
    );
    assert_eq!(emu.count(Endpoint::RegistrationToken), 1);

    // NO_PROXY covering the host sends the call direct, where `.invalid` never resolves.
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "transport::env_proxy_child", "--ignored"])
        .env("AC_TEST_CONFIG_URL", "http://acme.invalid/octo-org")
        .env("AC_TEST_PAT", emu.pat().expose_secret())
        .env("AC_TEST_EXPECT_FAILURE", "1")
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "example.com, .invalid")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(emu.count(Endpoint::RegistrationToken), 1);
}

#[tokio::test]
#[ignore = "run by proxy_environment_variables_are_honoured in a child process"]
async fn env_proxy_child() {
    let url = std::env::var("AC_TEST_CONFIG_URL").unwrap();
    let pat = std::env::var("AC_TEST_PAT").unwrap();
    let transport = actions_client::Transport::new(actions_client::TransportConfig {
        proxy: ProxyConfig::from_env(),
        retry: actions_client::RetryPolicy::none(),
        system_roots: false,
        ..actions_client::TransportConfig::default()
    })
    .unwrap();
    let client = actions_client::ActionsClient::builder(
        url,
        actions_client::Credentials::pat(SecretString::from(pat)).unwrap(),
    )
    .transport(transport)
    .build()
    .unwrap();
    let result = client.registration_token().await;
    if std::env::var_os("AC_TEST_EXPECT_FAILURE").is_some() {
        assert!(matches!(result, Err(Error::Transport(_))), "{result:?}");
    } else {
        result.unwrap();
    }
}
