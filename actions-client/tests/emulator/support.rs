//! Test support: clients against the emulator, a captured tracing log, and the emulator's
//! recording proxy.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actions_client::{
    ActionsClient, Credentials, Error, ProxyConfig, RetryPolicy, Transport, TransportConfig,
};
use actions_emulator::{Emulator, EmulatorConfig};

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

pub use actions_emulator::proxy::Proxy;
