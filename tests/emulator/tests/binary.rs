//! The `actions-emulator` binary: prints its URL, serves (HTTPS with --tls), stops on SIGTERM
//! and SIGINT with exit code 0.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::Client;
use tokio::io::AsyncReadExt;

async fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(tls: bool, signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("url");
    let ca_file = dir.path().join("ca.pem");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_actions-emulator"));
    cmd.arg("--url-out")
        .arg(&url_file)
        .arg("--pat")
        .arg("ghp_extra")
        .arg("--hold-secs")
        .arg("1");
    if tls {
        cmd.arg("--tls").arg("--ca-out").arg(&ca_file);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = wait_for_file(&url_file).await;
    let client = if tls {
        Client::https(&std::fs::read_to_string(&ca_file).unwrap())
    } else {
        Client::http()
    };
    let r = client
        .send(Method::GET, &format!("{url}/_emulator"), &[], Bytes::new())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["url"], url.as_str());
    // the extra PAT is accepted
    let r = client
        .send(
            Method::POST,
            &format!("{url}/api/v3/orgs/o/actions/runners/registration-token"),
            &[("authorization", "Bearer ghp_extra")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 201);

    kill(
        Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()),
        signal,
    )
    .unwrap();
    let status = tokio::time::timeout(support::WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(out.contains(&format!("url: {url}")), "{out}");
    assert!(out.contains("stopped"), "{out}");
}

#[tokio::test]
async fn binary_http_stops_on_sigterm() {
    run(false, Signal::SIGTERM).await;
}

#[tokio::test]
async fn binary_https_stops_on_sigint() {
    run(true, Signal::SIGINT).await;
}
