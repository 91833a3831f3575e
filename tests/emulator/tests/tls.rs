//! HTTPS with the generated CA: trusted root, intermediate-only pool, unknown CA refused.
#![allow(clippy::unwrap_used)]

mod support;

use actions_emulator::{Emulator, EmulatorConfig};
use bytes::Bytes;
use http::Method;
use support::{Admin, Client};

#[tokio::test]
async fn https_with_the_generated_ca() {
    let emu = Emulator::start_tls(EmulatorConfig::default())
        .await
        .unwrap();
    assert!(emu.url().starts_with("https://127.0.0.1:"));
    let ca = emu.ca_pem().unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    // the whole credential chain and an Actions call over HTTPS, trusting the root CA
    let https = Client::https(ca);
    let admin = Admin::login(&emu, &https).await;
    assert!(admin.s.starts_with("https://"));
    let r = admin
        .call(
            Method::GET,
            "_apis/runtime/runnergroups/?groupName=Default",
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // an intermediate-only trust pool validates the served chain too (docs/architecture.md#tls)
    let inter = Client::https(emu.intermediate_pem().unwrap());
    let r = inter
        .send(
            Method::GET,
            &format!("{}/_emulator/state", emu.url()),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);

    // a client trusting another CA is refused
    let other = Emulator::start_tls(EmulatorConfig::default())
        .await
        .unwrap();
    let stranger = Client::https(other.ca_pem().unwrap());
    let err = stranger
        .try_send(
            Method::GET,
            &format!("{}/_emulator/state", emu.url()),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );

    // plain HTTP to the HTTPS port does not get an HTTP answer
    let plain = Client::http()
        .try_send(
            Method::GET,
            &format!("http://{}/_emulator/state", emu.addr()),
            &[],
            Bytes::new(),
        )
        .await;
    assert!(plain.is_err() || plain.unwrap().status >= 400);
}

#[tokio::test]
async fn https_speaks_http2_when_negotiated() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::sync::Arc;

    let emu = Emulator::start_tls(EmulatorConfig::default())
        .await
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut emu.ca_pem().unwrap().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(emu.addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("{}/_emulator", emu.url()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["url"], emu.url());
}
