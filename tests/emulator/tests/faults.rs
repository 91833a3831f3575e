//! Fault injection, each kind, through the library and through the control API.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use actions_emulator::{Endpoint, Fault, FaultKind};
use bytes::Bytes;
use http::Method;
use serde_json::json;
use support::{Admin, Client, emulator};

const GROUPS: &str = "_apis/runtime/runnergroups/?groupName=Default";

#[tokio::test]
async fn status_faults_fire_n_times_then_vanish() {
    let emu = emulator().await;
    let admin = Admin::login(&emu, &Client::http()).await;
    for (kind, status) in [
        (FaultKind::status(500), 500),
        (FaultKind::status(503), 503),
        (FaultKind::status(401), 401),
        (FaultKind::retry_after(403, 3), 403),
        (FaultKind::retry_after(429, 3), 429),
        (
            FaultKind::exception(404, "TaskAgentSessionExpiredException", "session gone"),
            404,
        ),
        (
            FaultKind::exception(409, "TaskAgentSessionConflictException", "busy"),
            409,
        ),
    ] {
        emu.inject(Fault::on(Endpoint::RunnerGroups, kind, 2));
        for _ in 0..2 {
            let r = admin.call(Method::GET, GROUPS, "").await;
            assert_eq!(r.status, status);
            assert!(r.header("activityid").is_some());
        }
        assert_eq!(admin.call(Method::GET, GROUPS, "").await.status, 200);
    }
    // other endpoints are untouched by an endpoint fault
    emu.inject(Fault::always(
        Endpoint::RunnerGroups,
        FaultKind::status(500),
    ));
    let r = admin
        .call(Method::GET, "_apis/runtime/runnerscalesets", "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(emu.faults().len(), 1);
    assert_eq!(emu.faults()[0].fired, 0);
    emu.clear_faults();
}

#[tokio::test]
async fn malformed_body_connection_drop_and_slow_response() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;

    emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        FaultKind::malformed_body(),
        1,
    ));
    let r = admin.call(Method::GET, GROUPS, "").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());

    emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        FaultKind::DropConnection,
        1,
    ));
    let r = http
        .try_send(
            Method::GET,
            &support::api(&admin.s, GROUPS),
            &[("authorization", &format!("Bearer {}", admin.token))],
            Bytes::new(),
        )
        .await;
    assert!(r.is_err(), "the connection breaks mid-body: {r:?}");

    // a slow response still completes with the real answer; the fault records that it fired
    let id = emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        FaultKind::slow(Duration::from_millis(200)),
        1,
    ));
    let fired_before = emu.faults().iter().find(|f| f.id == id).map(|f| f.fired);
    assert_eq!(fired_before, Some(0));
    let r = admin.call(Method::GET, GROUPS, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"], 1);
    assert!(emu.faults().iter().all(|f| f.id != id), "used up");
}

#[tokio::test]
async fn rates_and_wildcards() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    // rate 0 never fires, rate 1 always does
    emu.inject(Fault::always(Endpoint::RunnerGroups, FaultKind::status(500)).with_rate(0.0));
    for _ in 0..5 {
        assert_eq!(admin.call(Method::GET, GROUPS, "").await.status, 200);
    }
    emu.clear_faults();
    emu.inject(Fault::everywhere(FaultKind::status(503)).with_rate(1.0));
    assert_eq!(admin.call(Method::GET, GROUPS, "").await.status, 503);
    assert_eq!(
        admin
            .call(Method::GET, "_apis/runtime/runnerscalesets", "")
            .await
            .status,
        503
    );
    // the runner side and the control API are not hit by wildcard faults
    let r = http
        .send(
            Method::GET,
            &format!("{}/_emulator/state", emu.url()),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = http
        .send(
            Method::POST,
            &format!("{}/_runner/connect", emu.url()),
            &[("content-type", "application/json")],
            r#"{"encodedJITConfig":"x"}"#,
        )
        .await;
    assert_eq!(r.status, 401);
    emu.clear_faults();
}

#[tokio::test]
async fn faults_and_expiry_through_the_control_api() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let base = emu.url().to_owned();
    let fault = json!({
        "endpoint": "runner_groups",
        "kind": {"type": "status", "status": 429, "retryAfter": "2"},
        "times": 1
    });
    let r = http
        .send(
            Method::POST,
            &format!("{base}/_emulator/faults"),
            &[("content-type", "application/json")],
            fault.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fid = r.json()["id"].as_u64().unwrap();
    let listed = http
        .send(
            Method::GET,
            &format!("{base}/_emulator/faults"),
            &[],
            Bytes::new(),
        )
        .await
        .json();
    assert_eq!(listed[0]["id"], fid);
    let r = admin.call(Method::GET, GROUPS, "").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("2"));

    let raw = json!({"endpoint": "runner_groups", "kind": {"type": "respond", "status": 200, "contentType": "application/json", "body": "{\"count\":0,\"value\":[{}]}"}});
    let fid = http
        .send(
            Method::POST,
            &format!("{base}/_emulator/faults"),
            &[],
            raw.to_string(),
        )
        .await
        .json()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        admin.call(Method::GET, GROUPS, "").await.text(),
        "{\"count\":0,\"value\":[{}]}"
    );
    let r = http
        .send(
            Method::DELETE,
            &format!("{base}/_emulator/faults/{fid}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(admin.call(Method::GET, GROUPS, "").await.status, 200);

    // token, session and scale-set controls
    let ss = admin.create_scale_set("ctl", &["ctl"]).await;
    let session = admin.create_session(ss, "l").await;
    let post = |path: String| {
        let http = http.clone();
        async move { http.send(Method::POST, &path, &[], Bytes::new()).await }
    };
    assert_eq!(
        post(format!(
            "{base}/_emulator/scalesets/{ss}/message-queue-token/expire"
        ))
        .await
        .status,
        204
    );
    session.get_message(&http, 0, "1").await.assert_empty(401);
    assert_eq!(
        post(format!("{base}/_emulator/scalesets/{ss}/session/expire"))
            .await
            .status,
        204
    );
    assert_eq!(
        post(format!("{base}/_emulator/scalesets/{ss}/session/expire"))
            .await
            .status,
        404
    );
    assert_eq!(
        post(format!("{base}/_emulator/admin-tokens/expire"))
            .await
            .status,
        204
    );
    admin.call(Method::GET, GROUPS, "").await.assert_empty(401);
    let admin = Admin::login(&emu, &http).await;
    let r = http
        .send(
            Method::DELETE,
            &format!("{base}/_emulator/scalesets/{ss}"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 204);
    admin
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{ss}"),
            "",
        )
        .await
        .assert_vss(404, "RunnerScaleSetNotFoundException");
    let r = post(format!("{base}/_emulator/actions-url/rotate")).await;
    assert!(
        r.json()["actionsUrl"]
            .as_str()
            .unwrap()
            .ends_with("/tenant/2/")
    );
    let r = http
        .send(
            Method::POST,
            &format!("{base}/_emulator/clock/advance"),
            &[],
            r#"{"ms":1000}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = http
        .send(
            Method::PATCH,
            &format!("{base}/_emulator/config"),
            &[],
            r#"{"longPollHoldMs":100,"maxJobsPerMessage":2}"#,
        )
        .await;
    assert_eq!(r.status, 204);
}
