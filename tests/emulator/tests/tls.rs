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

    // an intermediate-only trust pool validates the served chain too (spec §8)
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
