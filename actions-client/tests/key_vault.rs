//! The Key Vault client against the emulated identity platform and Key Vault over HTTPS: the
//! client-certificate token exchange, Get Secret, the token cache, retries, a proxy, and the
//! errors of a wrong certificate and a missing secret (without any secret in them).

#![allow(clippy::unwrap_used)]

use actions_client::Error;
use actions_client::ProxyConfig;
use actions_client::key_vault::{KeyVault, KeyVaultConfig};
use actions_emulator::proxy::Proxy;
use actions_emulator::{AzureCertificate, Emulator, EmulatorConfig};
use secrecy::{ExposeSecret, SecretString};

const TENANT: &str = "8f3c1c4e-tenant";
const CLIENT: &str = "5a1d7e9b-client";
const GITHUB_JSON: &str = r#"{"github_token":"ghp_fromTheVault"}"#;

struct Setup {
    emu: Emulator,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let emu = Emulator::start_tls(EmulatorConfig::default())
            .await
            .unwrap();
        let cert = AzureCertificate::generate("arc").unwrap();
        emu.key_vault().register_app(TENANT, CLIENT, &cert);
        emu.key_vault().set_secret("github-creds", GITHUB_JSON);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), &cert.pem).unwrap();
        Self { emu, dir }
    }

    fn config(&self) -> KeyVaultConfig {
        KeyVaultConfig {
            url: format!("{}/", self.emu.url()),
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            certificate_path: self
                .dir
                .path()
                .join("cert.pem")
                .to_string_lossy()
                .into_owned(),
            proxy: ProxyConfig::none(),
            authority_host: Some(self.emu.url().to_owned()),
            root_ca_pem: self.emu.ca_pem().map(str::to_owned),
        }
    }
}

fn assert_no_secret(text: &str, vault: &Setup) {
    for token in vault.emu.key_vault().issued_tokens() {
        assert!(!text.contains(&token), "access token in {text}");
    }
    assert!(!text.contains("eyJ"), "a JWT in {text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(!text.contains("ghp_fromTheVault"), "{text}");
}

#[tokio::test]
async fn reads_a_secret_and_reuses_the_token() {
    let s = Setup::new().await;
    let vault = KeyVault::new(s.config()).unwrap();
    let value = vault.get_secret("github-creds").await.unwrap();
    assert_eq!(value.expose_secret(), GITHUB_JSON);
    vault.get_secret("github-creds").await.unwrap();
    let kv = s.emu.key_vault();
    assert_eq!(kv.token_requests(), 1, "the token is cached");
    assert_eq!(kv.secret_requests(), 2);
    assert!(!format!("{vault:?}").contains("eyJ"));
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried() {
    let s = Setup::new().await;
    let vault = KeyVault::new(s.config()).unwrap();
    s.emu.key_vault().fail_next(429, 2);
    let value = vault.get_secret("github-creds").await.unwrap();
    assert_eq!(value.expose_secret(), GITHUB_JSON);
    let kv = s.emu.key_vault();
    assert_eq!(
        kv.token_requests() + kv.secret_requests(),
        4,
        "two 429s, then the token and the secret"
    );
}

#[tokio::test]
async fn a_certificate_the_app_does_not_know_is_rejected_with_the_fix() {
    let s = Setup::new().await;
    let other = AzureCertificate::generate("other").unwrap();
    std::fs::write(s.dir.path().join("cert.pem"), &other.pem).unwrap();
    let vault = KeyVault::new(s.config()).unwrap();
    let err = vault.get_secret("github-creds").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::AuthFailed(_)), "{text}");
    assert!(
        text.contains("AADSTS700027") && text.contains("azureKeyVault.certificatePath"),
        "{text}"
    );
    assert_no_secret(&text, &s);
    assert_eq!(s.emu.key_vault().secret_requests(), 0);
}

#[tokio::test]
async fn a_wrong_client_id_and_a_missing_secret_are_explained() {
    let s = Setup::new().await;
    let mut config = s.config();
    config.client_id = "unknown-client".into();
    let err = KeyVault::new(config)
        .unwrap()
        .get_secret("github-creds")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AADSTS700016"), "{err}");
    let vault = KeyVault::new(s.config()).unwrap();
    let err = vault.get_secret("no-such-secret").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("SecretNotFound") && text.contains("githubConfigSecret"),
        "{text}"
    );
    assert_no_secret(&text, &s);
    let err = vault.get_secret("bad/name").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                field: "githubConfigSecret",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn through_an_authenticating_proxy() {
    let s = Setup::new().await;
    let proxy = Proxy::start(s.emu.addr()).await.unwrap();
    let mut config = s.config();
    config.proxy = ProxyConfig {
        https: Some(SecretString::from(proxy.url_with_auth("u", "pr0xy-pw"))),
        proxy_loopback: true,
        ..ProxyConfig::default()
    };
    let vault = KeyVault::new(config).unwrap();
    vault.get_secret("github-creds").await.unwrap();
    let records = proxy.records();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r.method == "CONNECT"), "{records:?}");
}
