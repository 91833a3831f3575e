//! Bad input over raw HTTP: malformed JSON, wrong types, missing or wrong tokens, unknown ids.
//! Each gets a status and an error body naming the problem; the emulator keeps serving.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use http::Method;
use support::{Admin, Client, emulator};

#[tokio::test]
async fn actions_service_rejects_bad_bodies_naming_the_field() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("bad", &["bad"]).await;
    let create = "_apis/runtime/runnerscalesets";
    let cases: Vec<(Method, String, &str, u16, &str, &str)> = vec![
        (
            Method::POST,
            create.into(),
            "{bad",
            400,
            "ArgumentException",
            "not valid JSON",
        ),
        (
            Method::POST,
            create.into(),
            "[]",
            400,
            "ArgumentException",
            "JSON object",
        ),
        (
            Method::POST,
            create.into(),
            "{}",
            400,
            "ArgumentException",
            "name",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":5}"#,
            400,
            "ArgumentException",
            "\"name\"",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":"x","runnerGroupId":"one"}"#,
            400,
            "ArgumentException",
            "runnerGroupId",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":"x","runnerGroupId":1.5}"#,
            400,
            "ArgumentException",
            "runnerGroupId",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":"x","labels":"gpu"}"#,
            400,
            "ArgumentException",
            "labels",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":"x","labels":[1]}"#,
            400,
            "ArgumentException",
            "label",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":"x","RunnerSetting":{"disableUpdate":"yes"}}"#,
            400,
            "ArgumentException",
            "disableUpdate",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":"x","RunnerSetting":[]}"#,
            400,
            "ArgumentException",
            "runnerSetting",
        ),
        (
            Method::POST,
            create.into(),
            r#"{"name":"x","runnerGroupId":99}"#,
            404,
            "RunnerGroupNotFoundException",
            "99",
        ),
        (
            Method::PATCH,
            format!("{create}/{ss}"),
            "{bad",
            400,
            "ArgumentException",
            "JSON",
        ),
        (
            Method::PATCH,
            format!("{create}/{ss}"),
            r#"{"runnerGroupId":42}"#,
            404,
            "RunnerGroupNotFoundException",
            "42",
        ),
        (
            Method::PATCH,
            format!("{create}/777"),
            r#"{"name":"y"}"#,
            404,
            "RunnerScaleSetNotFoundException",
            "777",
        ),
        (
            Method::GET,
            format!("{create}/abc"),
            "",
            400,
            "ArgumentException",
            "\"abc\"",
        ),
        (
            Method::GET,
            format!("{create}?runnerGroupId=abc"),
            "",
            400,
            "ArgumentException",
            "runnerGroupId",
        ),
        (
            Method::POST,
            format!("{create}/{ss}/sessions"),
            "{bad",
            400,
            "ArgumentException",
            "JSON",
        ),
        (
            Method::POST,
            format!("{create}/{ss}/sessions"),
            r#"{"ownerName":3}"#,
            400,
            "ArgumentException",
            "ownerName",
        ),
        (
            Method::PATCH,
            format!("{create}/{ss}/sessions/not-a-session"),
            "",
            400,
            "TaskAgentSessionExpiredException",
            "not-a-session",
        ),
        (
            Method::DELETE,
            format!("{create}/{ss}/sessions/not-a-session"),
            "",
            400,
            "TaskAgentSessionExpiredException",
            "not-a-session",
        ),
        (
            Method::POST,
            format!("{create}/{ss}/generatejitconfig"),
            "{}",
            400,
            "ArgumentException",
            "name",
        ),
        (
            Method::POST,
            format!("{create}/{ss}/generatejitconfig"),
            r#"{"name":""}"#,
            400,
            "ArgumentException",
            "name",
        ),
        (
            Method::POST,
            format!("{create}/{ss}/generatejitconfig"),
            r#"{"name":"r","workFolder":3}"#,
            400,
            "ArgumentException",
            "workFolder",
        ),
        (
            Method::POST,
            format!("{create}/{ss}/generatejitconfig"),
            "\u{1}\u{2}",
            400,
            "ArgumentException",
            "JSON",
        ),
        (
            Method::GET,
            "_apis/distributedtask/pools/0/agents/abc".into(),
            "",
            400,
            "ArgumentException",
            "runner id",
        ),
        (
            Method::DELETE,
            format!("{create}/xyz"),
            "",
            400,
            "ArgumentException",
            "xyz",
        ),
    ];
    for (method, path, body, status, type_key, mentions) in cases {
        let r = admin.call(method.clone(), &path, body).await;
        r.assert_vss(status, type_key);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(mentions),
            "{method} {path} {body}: message {message:?} should mention {mentions:?}"
        );
    }
    // invalid UTF-8
    let r = http
        .send(
            Method::POST,
            &support::api(&admin.s, create),
            &[
                ("authorization", &format!("Bearer {}", admin.token)),
                ("content-type", "application/json"),
            ],
            Bytes::from_static(b"\xff\xfe{"),
        )
        .await;
    r.assert_vss(400, "ArgumentException");
    // still serving, state intact
    assert_eq!(emu.snapshot().scale_sets.len(), 1);
}

#[tokio::test]
async fn queue_and_acquire_reject_bad_input() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("badq", &["badq"]).await;
    let session = admin.create_session(ss, "l").await;
    for body in [r#"{"ids":[1]}"#, r#"["a"]"#, "{bad", "[1.5]"] {
        let r = session.acquire(&http, &admin.s, body).await;
        r.assert_vss(400, "ArgumentException");
    }
    for last in ["abc", "-1"] {
        let r = http
            .send(
                Method::GET,
                &format!("{}&lastMessageId={last}", session.queue_url),
                &[("authorization", &format!("Bearer {}", session.token))],
                Bytes::new(),
            )
            .await;
        r.assert_vss(400, "ArgumentException");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("lastMessageId")
        );
    }
    let (path, query) = session.queue_url.split_once('?').unwrap();
    let r = http
        .send(
            Method::DELETE,
            &format!("{path}/abc?{query}"),
            &[("authorization", &format!("Bearer {}", session.token))],
            Bytes::new(),
        )
        .await;
    r.assert_vss(400, "ArgumentException");
    // missing or wrong tokens on the queue
    for auth in ["", "Bearer wrong", "Basic Zm9vOmJhcg=="] {
        let r = http
            .send(
                Method::GET,
                &session.queue_url,
                &[("authorization", auth)],
                Bytes::new(),
            )
            .await;
        r.assert_empty(401);
    }
    // a queue token used for another scale set's queue
    let other = admin.create_scale_set("badq2", &["badq2"]).await;
    let s2 = admin.create_session(other, "l2").await;
    let r = http
        .send(
            Method::GET,
            &s2.queue_url,
            &[("authorization", &format!("Bearer {}", session.token))],
            Bytes::new(),
        )
        .await;
    r.assert_empty(401);
}

#[tokio::test]
async fn github_side_rejects_bad_input() {
    let emu = emulator().await;
    let http = Client::http();
    let url = format!("{}/app/installations/abc/access_tokens", emu.api_base());
    let r = http
        .send(
            Method::POST,
            &url,
            &[("authorization", "Bearer x.y.z")],
            Bytes::new(),
        )
        .await;
    r.assert_github_error(404);
    let url = format!("{}/app/installations/1/access_tokens", emu.api_base());
    for auth in ["", "token abc", "Bearer"] {
        let r = http
            .send(Method::POST, &url, &[("authorization", auth)], Bytes::new())
            .await;
        r.assert_github_error(401);
    }
    let url = format!("{}/actions/runner-registration", emu.api_base());
    for (auth, ct, body, status) in [
        ("", "application/json", "{}", 401),
        ("RemoteAuth nope", "application/json", "{}", 401),
    ] {
        let r = http
            .send(
                Method::POST,
                &url,
                &[("authorization", auth), ("content-type", ct)],
                body,
            )
            .await;
        r.assert_github_error(status);
    }
    let reg = http
        .send(
            Method::POST,
            &format!(
                "{}/orgs/o/actions/runners/registration-token",
                emu.api_base()
            ),
            &[(
                "authorization",
                &format!("token {}", actions_emulator::DEFAULT_PAT),
            )],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        reg.status, 201,
        "the `token` scheme works on GitHub REST too"
    );
    let token = reg.json()["token"].as_str().unwrap().to_owned();
    for (body, status, mentions) in [
        ("{bad", 400, "JSON"),
        (r#"{"runner_event":"register"}"#, 422, "url"),
        (r#"{"url":5,"runner_event":"register"}"#, 422, "url"),
        (r#"{"url":"http://x/o"}"#, 422, "runner_event"),
        (
            r#"{"url":"not a url","runner_event":"register"}"#,
            422,
            "invalid config URL",
        ),
    ] {
        let r = http
            .send(
                Method::POST,
                &url,
                &[
                    ("authorization", &format!("RemoteAuth {token}")),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await;
        r.assert_github_error(status);
        assert!(
            r.json()["message"].as_str().unwrap().contains(mentions),
            "{}",
            r.text()
        );
    }
}

#[tokio::test]
async fn runner_side_and_control_api_reject_bad_input() {
    let emu = emulator().await;
    let http = Client::http();
    let base = emu.url().to_owned();
    let post = |path: &str, auth: &str, body: &str| {
        let (http, url, auth, body) = (
            http.clone(),
            format!("{base}{path}"),
            auth.to_owned(),
            body.to_owned(),
        );
        async move {
            http.send(
                Method::POST,
                &url,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let r = post("/_runner/connect", "", "{}").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("encodedJITConfig"));
    let r = post(
        "/_runner/connect",
        "",
        r#"{"encodedJITConfig":"bm90IGEgSklU"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(post("/_runner/started", "", "").await.status, 401);
    assert_eq!(
        post("/_runner/started", "Bearer rt_unknown", "")
            .await
            .status,
        404
    );
    assert_eq!(
        post(
            "/_runner/completed",
            "Bearer rt_unknown",
            r#"{"result":"maybe"}"#
        )
        .await
        .status,
        400
    );

    let r = post("/_emulator/jobs", "", "{bad").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("JobSpec"));
    let r = post("/_emulator/jobs", "", r#"{"labels":"x"}"#).await;
    assert_eq!(r.status, 400);
    let r = post(
        "/_emulator/faults",
        "",
        r#"{"endpoint":"nope","kind":{"type":"dropConnection"}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("get_message"),
        "lists known names"
    );
    let r = post("/_emulator/jobs/abc/cancel", "", "").await;
    assert_eq!(r.status, 400);
    let r = post("/_emulator/jobs/424242/cancel", "", "").await;
    assert_eq!(r.status, 404);
    let r = post("/_emulator/nothing", "", "").await;
    assert_eq!(r.status, 404);
    let r = http
        .send(
            Method::PATCH,
            &format!("{base}/_emulator/config"),
            &[],
            r#"{"longPollHold":5}"#,
        )
        .await;
    assert_eq!(r.status, 400, "unknown config keys are named: {}", r.text());
    assert!(r.text().contains("longPollHold"));
    // still serving
    let r = http
        .send(
            Method::GET,
            &format!("{base}/_emulator/state"),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
}
