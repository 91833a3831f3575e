//! Endpoint conformance over raw HTTP against docs/architecture.md#operations: paths, methods,
//! query parameters, headers, JSON shapes, status codes and error bodies.
#![allow(clippy::unwrap_used)]

mod support;

use actions_emulator::{
    DEFAULT_PAT, Emulator, EmulatorConfig, TEST_APP_CLIENT_ID, TEST_APP_ID,
    TEST_APP_INSTALLATION_ID, TEST_APP_PRIVATE_KEY_PEM,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use support::{Admin, Client, api, emulator};

fn app_jwt(iss: &str, iat_offset: i64, lifetime: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let iat = now + iat_offset;
    let claims = json!({"iss": iss, "iat": iat, "exp": iat + lifetime});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_APP_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap()
}

async fn post_empty(http: &Client, url: &str, auth: &str) -> support::Raw {
    http.send(
        Method::POST,
        url,
        &[
            ("authorization", auth),
            ("content-type", "application/vnd.github+json"),
        ],
        Bytes::new(),
    )
    .await
}

#[tokio::test]
async fn github_app_installation_token() {
    let emu = emulator().await;
    let http = Client::http();
    let url = format!(
        "{}/app/installations/{TEST_APP_INSTALLATION_ID}/access_tokens",
        emu.api_base()
    );
    for iss in [TEST_APP_CLIENT_ID.to_owned(), TEST_APP_ID.to_string()] {
        let r = post_empty(&http, &url, &format!("Bearer {}", app_jwt(&iss, -60, 600))).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        assert!(v["token"].as_str().unwrap().starts_with("ghs_"));
        assert!(v["expires_at"].is_string());
        assert!(r.header("x-github-request-id").is_some());
        // the installation token works for a registration token
        let reg = post_empty(
            &http,
            &format!(
                "{}/repos/octo-org/app/actions/runners/registration-token",
                emu.api_base()
            ),
            &format!("Bearer {}", v["token"].as_str().unwrap()),
        )
        .await;
        assert_eq!(reg.status, 201, "{}", reg.text());
    }
    // exp - iat over 10 minutes, expired, iat in the future beyond the skew, unknown issuer
    for jwt in [
        app_jwt(TEST_APP_CLIENT_ID, -60, 660),
        app_jwt(TEST_APP_CLIENT_ID, -700, 600),
        app_jwt(TEST_APP_CLIENT_ID, 300, 300),
        app_jwt("Iv1.unknown", -60, 600),
        "not.a.jwt".to_owned(),
    ] {
        post_empty(&http, &url, &format!("Bearer {jwt}"))
            .await
            .assert_github_error(401);
    }
    // extreme claims are refused, not overflowed
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_APP_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    let extreme = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"iss": TEST_APP_CLIENT_ID, "iat": i64::MIN, "exp": i64::MAX}),
        &key,
    )
    .unwrap();
    post_empty(&http, &url, &format!("Bearer {extreme}"))
        .await
        .assert_github_error(401);
    // wrong installation
    let other = format!("{}/app/installations/999/access_tokens", emu.api_base());
    post_empty(
        &http,
        &other,
        &format!("Bearer {}", app_jwt(TEST_APP_CLIENT_ID, -60, 600)),
    )
    .await
    .assert_github_error(404);
    // a JWT signed with another key
    let mut parts: Vec<String> = app_jwt(TEST_APP_CLIENT_ID, -60, 600)
        .split('.')
        .map(str::to_owned)
        .collect();
    parts[2] = URL_SAFE_NO_PAD.encode([7u8; 256]);
    post_empty(&http, &url, &format!("Bearer {}", parts.join(".")))
        .await
        .assert_github_error(401);
}

#[tokio::test]
async fn registration_tokens_for_every_scope_and_host_rule() {
    let emu = emulator().await;
    let http = Client::http();
    let auth = format!("Bearer {DEFAULT_PAT}");
    for scope in ["repos/octo-org/app", "orgs/octo-org", "enterprises/acme"] {
        let url = format!(
            "{}/{scope}/actions/runners/registration-token",
            emu.api_base()
        );
        let r = post_empty(&http, &url, &auth).await;
        assert_eq!(r.status, 201, "{scope}: {}", r.text());
        let v = r.json();
        assert!(!v["token"].as_str().unwrap().is_empty());
        assert!(
            chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).is_ok(),
            "{v}"
        );
    }
    let url = format!(
        "{}/orgs/octo-org/actions/runners/registration-token",
        emu.api_base()
    );
    post_empty(&http, &url, "Bearer ghp_wrong")
        .await
        .assert_github_error(401);
    post_empty(&http, &url, "").await.assert_github_error(401);
    // 127.0.0.1 is not a hosted host: no REST API at the root (GHES rules)
    let root = format!(
        "{}/orgs/octo-org/actions/runners/registration-token",
        emu.url()
    );
    assert_eq!(post_empty(&http, &root, &auth).await.status, 404);
    // hosted API hosts serve at the root and not under /api/v3
    for host in ["api.github.com", "api.acme.ghe.com", "api.github.localhost"] {
        let r = http
            .send(
                Method::POST,
                &root,
                &[("host", host), ("authorization", &auth)],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 201, "{host}: {}", r.text());
        let r = http
            .send(
                Method::POST,
                &url,
                &[("host", host), ("authorization", &auth)],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 404, "{host} under /api/v3");
    }
    // only POST
    let r = http
        .send(Method::GET, &url, &[("authorization", &auth)], Bytes::new())
        .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn runner_registration_returns_s_and_an_admin_jwt_with_exp() {
    let emu = Emulator::start(EmulatorConfig {
        admin_token_lifetime: std::time::Duration::from_secs(90),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    assert_eq!(admin.s, format!("{}/tenant/1/", emu.url()));
    assert!(admin.s.ends_with('/'));
    let parts: Vec<&str> = admin.token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert!(header["alg"].is_string());
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 90);

    // registration token checks: scheme, body, scope
    let reg = post_empty(
        &http,
        &format!(
            "{}/repos/octo-org/app/actions/runners/registration-token",
            emu.api_base()
        ),
        &format!("Bearer {DEFAULT_PAT}"),
    )
    .await
    .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reg_url = format!("{}/actions/runner-registration", emu.api_base());
    let send = |auth: String, body: String| {
        let http = http.clone();
        let reg_url = reg_url.clone();
        async move {
            http.send(
                Method::POST,
                &reg_url,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let good_body = format!(
        "{{\"url\":\"{}\",\"runner_event\":\"register\"}}\n",
        emu.repo_url("octo-org", "app")
    );
    send(format!("Bearer {reg}"), good_body.clone())
        .await
        .assert_github_error(401);
    send("RemoteAuth wrong".into(), good_body.clone())
        .await
        .assert_github_error(401);
    send(
        format!("RemoteAuth {reg}"),
        format!(
            "{{\"url\":\"{}\",\"runner_event\":\"remove\"}}",
            emu.repo_url("octo-org", "app")
        ),
    )
    .await
    .assert_github_error(422);
    send(
        format!("RemoteAuth {reg}"),
        format!(
            "{{\"url\":\"{}/a/b/c\",\"runner_event\":\"register\"}}",
            emu.url()
        ),
    )
    .await
    .assert_github_error(422);
    send(
        format!("RemoteAuth {reg}"),
        format!(
            "{{\"url\":\"{}\",\"runner_event\":\"register\"}}",
            emu.org_url("other-org")
        ),
    )
    .await
    .assert_github_error(403);
    send(format!("RemoteAuth {reg}"), "{not json".into())
        .await
        .assert_github_error(400);
    // trailing slash stripped (docs/architecture.md#configuration-url-and-api-base) and the repo
    // scope matches
    let r = send(
        format!("RemoteAuth {reg}"),
        format!(
            "{{\"url\":\"{}/\",\"runner_event\":\"register\"}}",
            emu.repo_url("octo-org", "app")
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.json()["url"].is_string() && r.json()["token"].is_string());
}

#[tokio::test]
async fn actions_service_auth_api_version_and_content_type() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let url = api(&admin.s, "_apis/runtime/runnerscalesets");
    // no token, wrong token, PAT: 401 with an empty body
    for auth in ["", "Bearer nope", &format!("Bearer {DEFAULT_PAT}")] {
        let r = http
            .send(Method::GET, &url, &[("authorization", auth)], Bytes::new())
            .await;
        r.assert_empty(401);
        assert!(r.header("activityid").is_some());
    }
    // missing api-version
    let r = http
        .send(
            Method::GET,
            &format!("{}_apis/runtime/runnerscalesets", admin.s),
            &[("authorization", &format!("Bearer {}", admin.token))],
            Bytes::new(),
        )
        .await;
    r.assert_vss(400, "VssVersionNotSpecifiedException");
    // a JSON body needs a JSON content type
    let r = http
        .send(
            Method::POST,
            &url,
            &[
                ("authorization", &format!("Bearer {}", admin.token)),
                ("content-type", "text/plain"),
            ],
            "{\"name\":\"x\"}",
        )
        .await;
    assert_eq!(r.status, 415, "{}", r.text());
    // every response carries an ActivityId; unknown paths are 404, wrong methods 405
    let r = admin.call(Method::GET, "_apis/runtime/nothing", "").await;
    assert_eq!(r.status, 404);
    let r = admin
        .call(Method::PUT, "_apis/runtime/runnerscalesets/1", "{}")
        .await;
    assert_eq!(r.status, 405);
    // legacy double slash collapses (docs/architecture.md#acquiring-jobs)
    let r = http
        .send(
            Method::GET,
            &format!(
                "{}/_apis/runtime/runnergroups/?api-version=6.0-preview",
                admin.s
            ),
            &[("authorization", &format!("Bearer {}", admin.token))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn runner_groups() {
    let emu = emulator().await;
    let admin = Admin::login(&emu, &Client::http()).await;
    let r = admin
        .call(
            Method::GET,
            "_apis/runtime/runnergroups/?groupName=gpu-pool",
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"count": 1, "value": [{"id": 2, "name": "gpu-pool", "size": 0, "isDefaultGroup": false}]})
    );
    let r = admin
        .call(
            Method::GET,
            "_apis/runtime/runnergroups/?groupName=Default",
            "",
        )
        .await;
    assert_eq!(r.json()["value"][0]["id"], 1);
    assert_eq!(r.json()["value"][0]["isDefaultGroup"], true);
    let r = admin
        .call(
            Method::GET,
            "_apis/runtime/runnergroups/?groupName=nope",
            "",
        )
        .await;
    assert_eq!(r.json(), json!({"count": 0, "value": []}));
}

#[tokio::test]
async fn scale_set_crud() {
    let emu = emulator().await;
    let admin = Admin::login(&emu, &Client::http()).await;
    let create = json!({
        "name": "linux-x64", "runnerGroupId": 1,
        "labels": [{"type": "System", "name": "linux-x64"}, {"type": "System", "name": "gpu"}],
        "RunnerSetting": {"disableUpdate": true}, "createdOn": "0001-01-01T00:00:00Z"
    });
    let r = admin
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets",
            &create.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "create is exactly 200: {}", r.text());
    let v = r.json();
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["name"], "linux-x64");
    assert_eq!(v["runnerGroupId"], 1);
    assert_eq!(v["runnerGroupName"], "Default");
    assert_eq!(
        v["labels"],
        json!([{"type": "System", "name": "linux-x64"}, {"type": "System", "name": "gpu"}])
    );
    assert_eq!(v["runnerSetting"]["disableUpdate"], true);
    assert!(chrono::DateTime::parse_from_rfc3339(v["createdOn"].as_str().unwrap()).is_ok());
    assert!(
        v["runnerJitConfigUrl"]
            .as_str()
            .unwrap()
            .ends_with("/generatejitconfig")
    );

    // duplicate name in the group (configurable; 409 by default)
    let r = admin
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets",
            &create.to_string(),
        )
        .await;
    r.assert_vss(409, "RunnerScaleSetExistsException");

    // by name: count 1, count 0
    let r = admin
        .call(
            Method::GET,
            "_apis/runtime/runnerscalesets?runnerGroupId=1&name=linux-x64",
            "",
        )
        .await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["value"][0]["id"], id);
    assert!(r.json()["value"][0]["statistics"].is_object());
    let r = admin
        .call(
            Method::GET,
            "_apis/runtime/runnerscalesets?runnerGroupId=2&name=linux-x64",
            "",
        )
        .await;
    assert_eq!(r.json(), json!({"count": 0, "value": []}));
    // names decode with form rules: + is a space, %2B a plus
    let r = admin
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets",
            r#"{"name":"c++ set","RunnerSetting":{}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin
        .call(
            Method::GET,
            "_apis/runtime/runnerscalesets?name=c%2B%2B+set&runnerGroupId=1",
            "",
        )
        .await;
    assert_eq!(r.json()["count"], 1, "{}", r.text());

    // by id
    let r = admin
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "linux-x64");
    admin
        .call(Method::GET, "_apis/runtime/runnerscalesets/999", "")
        .await
        .assert_vss(404, "RunnerScaleSetNotFoundException");

    // PATCH: regroup, rename; RunnerSetting {} changes nothing; labels untouched
    let r = admin
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            r#"{"runnerGroupId":2,"RunnerSetting":{},"createdOn":"0001-01-01T00:00:00Z"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["runnerGroupName"], "gpu-pool");
    assert_eq!(r.json()["runnerSetting"]["disableUpdate"], true);
    let r = admin
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            r#"{"name":"linux-x64-v2","RunnerSetting":{},"createdOn":"0001-01-01T00:00:00Z"}"#,
        )
        .await;
    assert_eq!(r.json()["name"], "linux-x64-v2");
    assert_eq!(r.json()["runnerGroupId"], 2);
    assert_eq!(r.json()["labels"].as_array().unwrap().len(), 2);

    // DELETE: exactly 204, then gone
    admin
        .call(
            Method::DELETE,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            "",
        )
        .await
        .assert_empty(204);
    admin
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            "",
        )
        .await
        .assert_vss(404, "RunnerScaleSetNotFoundException");
    admin
        .call(
            Method::DELETE,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            "",
        )
        .await
        .assert_vss(404, "RunnerScaleSetNotFoundException");
}

#[tokio::test]
async fn scale_set_labels_and_null_mode() {
    // GHES without the custom-labels flag drops extra labels silently; by-id may answer null
    let emu = Emulator::start(EmulatorConfig {
        custom_labels_enabled: false,
        scale_set_not_found: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::login(&emu, &Client::http()).await;
    let r = admin
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets",
            r#"{"name":"ghes","labels":[{"type":"System","name":"ghes"},{"type":"System","name":"gpu"}],"runnersetting":{"disableUpdate":true}}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["labels"],
        json!([{"type": "System", "name": "ghes"}])
    );
    assert_eq!(
        r.json()["runnerSetting"]["disableUpdate"],
        true,
        "any key case binds"
    );
    let r = admin
        .call(Method::GET, "_apis/runtime/runnerscalesets/77", "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "null");
}

#[tokio::test]
async fn sessions_create_refresh_delete_conflict() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("sess", &["sess"]).await;
    let s1 = admin.create_session(ss, "listener-a").await;
    let v = &s1.json;
    assert_eq!(v["ownerName"], "listener-a");
    assert_eq!(v["runnerScaleSet"]["id"], ss);
    assert_eq!(v["runnerScaleSet"]["name"], "sess");
    assert!(
        s1.queue_url.contains("?sessionId="),
        "mq URL carries a query"
    );
    assert!(url::Url::parse(&s1.queue_url).is_ok());
    assert_ne!(s1.id, "00000000-0000-0000-0000-000000000000");
    for k in [
        "totalAvailableJobs",
        "totalAcquiredJobs",
        "totalAssignedJobs",
        "totalRunningJobs",
        "totalRegisteredRunners",
        "totalBusyRunners",
        "totalIdleRunners",
    ] {
        assert!(v["statistics"][k].is_i64(), "{k}");
    }
    // a second session while one is alive
    let r = admin
        .call(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions"),
            r#"{"sessionId":"00000000-0000-0000-0000-000000000000","ownerName":"listener-b"}"#,
        )
        .await;
    r.assert_vss(409, "TaskAgentSessionConflictException");
    // refresh: complete object, new token, old one rejected
    let r = admin
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions/{}", s1.id),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s2 = support::Session::from_json(ss, &r.json());
    assert_eq!(s2.id, s1.id);
    assert_eq!(s2.queue_url, s1.queue_url);
    assert_ne!(s2.token, s1.token);
    assert!(r.json()["statistics"].is_object() && r.json()["runnerScaleSet"].is_object());
    s1.get_message(&http, 0, "5").await.assert_empty(401);
    assert_eq!(s2.get_message(&http, 0, "5").await.status, 202);
    // delete: 204, then create works
    admin
        .call(
            Method::DELETE,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions/{}", s1.id),
            "",
        )
        .await
        .assert_empty(204);
    admin
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions/{}", s1.id),
            "",
        )
        .await
        .assert_vss(400, "TaskAgentSessionExpiredException");
    let s3 = admin.create_session(ss, "listener-b").await;
    assert_ne!(s3.id, s1.id);
    // a session for an unknown scale set
    admin
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets/4242/sessions",
            r#"{"ownerName":"x"}"#,
        )
        .await
        .assert_vss(404, "RunnerScaleSetNotFoundException");
}

#[tokio::test]
async fn message_queue_shape_capacity_and_batching() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("q", &["q"]).await;
    let session = admin.create_session(ss, "listener-q").await;
    // idle: 202, empty body
    session
        .get_message(&http, 0, "2147483647")
        .await
        .assert_empty(202);
    assert_eq!(
        emu.snapshot().scale_set(ss).unwrap().max_capacity,
        Some(2_147_483_647)
    );
    // a bad capacity header
    let r = session.get_message(&http, 0, "lots").await;
    r.assert_vss(400, "ArgumentException");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("X-ScaleSetMaxCapacity")
    );
    // the mq URL's query must survive (sessionId)
    let (path, _) = session.queue_url.split_once('?').unwrap();
    let r = http
        .send(
            Method::GET,
            path,
            &[("authorization", &format!("Bearer {}", session.token))],
            Bytes::new(),
        )
        .await;
    r.assert_vss(400, "ArgumentException");
    // the admin token is not a queue token
    let r = http
        .send(
            Method::GET,
            &session.queue_url,
            &[("authorization", &format!("Bearer {}", admin.token))],
            Bytes::new(),
        )
        .await;
    r.assert_empty(401);

    // 120 jobs: at most 50 per message, statistics count all of them
    for _ in 0..120 {
        emu.queue_job(actions_emulator::JobSpec::with_labels(["q"]));
    }
    let mut last = 0;
    let mut seen = 0;
    let mut sizes = Vec::new();
    while seen < 120 {
        let (id, items, stats) = session.next_message(&http, last).await;
        assert!(id > last, "message ids increase");
        assert_eq!(stats["totalAvailableJobs"], 120);
        assert!(items.len() <= 50);
        assert!(items.iter().all(|i| i["messageType"] == "JobAvailable"));
        sizes.push(items.len());
        seen += items.len();
        assert_eq!(session.delete_message(&http, id).await.status, 204);
        last = id;
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    // deleting an unknown message
    session
        .delete_message(&http, 99_999)
        .await
        .assert_vss(404, "TaskAgentMessageNotFoundException");
}

#[tokio::test]
async fn capacity_zero_holds_offers_until_raised() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("cap", &["cap"]).await;
    let session = admin.create_session(ss, "listener-cap").await;
    session.get_message(&http, 0, "0").await.assert_empty(202);
    let job = emu.queue_job(actions_emulator::JobSpec::with_labels(["cap"]));
    session.get_message(&http, 0, "0").await.assert_empty(202);
    assert_eq!(
        emu.snapshot().job(job).unwrap().phase,
        actions_emulator::JobPhase::Queued
    );
    let r = session.get_message(&http, 0, "1").await;
    assert_eq!(r.status, 200, "raised capacity shows on the next poll");
}

#[tokio::test]
async fn acquire_jobs_subset_and_empty() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("acq", &["acq"]).await;
    let session = admin.create_session(ss, "listener-acq").await;
    let a = emu.queue_job(actions_emulator::JobSpec::with_labels(["acq"]));
    let b = emu.queue_job(actions_emulator::JobSpec::with_labels(["other-label"]));
    let r = session.acquire(&http, &admin.s, "[]").await;
    assert_eq!(r.json(), json!({"count": 0, "value": []}));
    let r = session
        .acquire(&http, &admin.s, &format!("[{a},{b},777]"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"count": 1, "value": [a]}),
        "only the acquirable subset"
    );
    let r = session.acquire(&http, &admin.s, &format!("[{a}]")).await;
    assert_eq!(r.json()["count"], 0, "already acquired");
    // the admin token does not work here
    let r = http
        .send(
            Method::POST,
            &api(
                &admin.s,
                &format!("_apis/runtime/runnerscalesets/{ss}/acquirejobs"),
            ),
            &[
                ("authorization", &format!("Bearer {}", admin.token)),
                ("content-type", "application/json"),
            ],
            "[]",
        )
        .await;
    r.assert_empty(401);
    // legacy acquirablejobs: 204 when empty
    let r = admin
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{ss}/acquirablejobs"),
            "",
        )
        .await;
    r.assert_empty(204);
}

#[tokio::test]
async fn jit_config_and_runners() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("jit", &["jit"]).await;
    let r = admin
        .call(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{ss}/generatejitconfig"),
            r#"{"name":"runner-1a2b3c4d","workFolder":""}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let rid = v["runner"]["id"].as_i64().unwrap();
    assert_eq!(v["runner"]["name"], "runner-1a2b3c4d");
    assert_eq!(v["runner"]["runnerScaleSetId"], ss);
    // base64(JSON of file name -> base64(file))
    let files: Value = serde_json::from_slice(
        &STANDARD
            .decode(v["encodedJITConfig"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    for f in [".runner", ".credentials", ".credentials_rsaparams"] {
        let content = STANDARD.decode(files[f].as_str().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&content).unwrap();
    }
    let runner: Value =
        serde_json::from_slice(&STANDARD.decode(files[".runner"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(runner["AgentId"], rid.to_string());
    assert_eq!(runner["AgentName"], "runner-1a2b3c4d");
    let info =
        actions_emulator::decode_jit_config(v["encodedJITConfig"].as_str().unwrap()).unwrap();
    assert_eq!(info.runner_id, rid);
    assert_eq!(info.scale_set_id, ss);
    assert_eq!(info.server_url, admin.s);
    assert_eq!(info.runner_api_url, format!("{}/_runner/", emu.url()));
    assert!(actions_emulator::decode_jit_config("bm9wZQ==").is_err());

    // duplicate name
    admin
        .call(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{ss}/generatejitconfig"),
            r#"{"name":"runner-1a2b3c4d","workFolder":""}"#,
        )
        .await
        .assert_vss(409, "AgentExistsException");
    // by id, by name
    let r = admin
        .call(
            Method::GET,
            &format!("_apis/distributedtask/pools/0/agents/{rid}"),
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], rid);
    assert_eq!(r.json()["runnerScaleSetId"], ss);
    let r = admin
        .call(
            Method::GET,
            "_apis/distributedtask/pools/0/agents?agentName=runner-1a2b3c4d",
            "",
        )
        .await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["value"][0]["name"], "runner-1a2b3c4d");
    let r = admin
        .call(
            Method::GET,
            "_apis/distributedtask/pools/0/agents?agentName=nobody",
            "",
        )
        .await;
    assert_eq!(r.json(), json!({"count": 0, "value": []}));
    admin
        .call(Method::GET, "_apis/distributedtask/pools/0/agents/9999", "")
        .await
        .assert_vss(404, "AgentNotFoundException");
    // remove: 204, and 204 again for the now-unknown runner
    for _ in 0..2 {
        admin
            .call(
                Method::DELETE,
                &format!("_apis/distributedtask/pools/0/agents/{rid}"),
                "",
            )
            .await
            .assert_empty(204);
    }
    // JIT for an unknown scale set
    admin
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets/4242/generatejitconfig",
            r#"{"name":"r","workFolder":""}"#,
        )
        .await
        .assert_vss(404, "RunnerScaleSetNotFoundException");
}

#[tokio::test]
async fn counters_and_call_log_over_the_control_api() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    admin
        .call(
            Method::GET,
            "_apis/runtime/runnergroups/?groupName=Default",
            "",
        )
        .await;
    let r = http
        .send(
            Method::GET,
            &format!("{}/_emulator/counters", emu.url()),
            &[],
            Bytes::new(),
        )
        .await;
    let c = r.json();
    assert_eq!(c["registration_token"], 1);
    assert_eq!(c["runner_registration"], 1);
    assert_eq!(c["runner_groups"], 1);
    let r = http
        .send(
            Method::GET,
            &format!("{}/_emulator/calls", emu.url()),
            &[],
            Bytes::new(),
        )
        .await;
    let calls = r.json();
    let last = calls.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["endpoint"], "runner_groups");
    assert_eq!(last["authScheme"], "Bearer");
    assert_eq!(last["status"], 200);
    assert!(
        !last.to_string().contains(&admin.token),
        "no credentials in the call log"
    );
    let r = http
        .send(
            Method::DELETE,
            &format!("{}/_emulator/counters", emu.url()),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(emu.counters().is_empty());
}

/// Every credential the emulator accepts or hands out is listed by `issued_secrets`, for the
/// bad-input campaign's leak check (#20 item 5): the PAT, the App key, registration and admin
/// tokens, a session's queue token and a JIT config with the runner secret inside it.
#[tokio::test]
async fn issued_secrets_list_every_credential_handed_out() {
    use secrecy::ExposeSecret;
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let id = admin.create_scale_set("leaky", &["leaky"]).await;
    let session = admin.create_session(id, "owner").await;
    let (_, jit) = admin.jit(id, "runner-1").await;
    let issued = emu.issued_secrets();
    let has = |kind: &str, value: &str| {
        issued
            .iter()
            .any(|(k, s)| *k == kind && s.expose_secret() == value)
    };
    let kinds: Vec<&str> = issued.iter().map(|(k, _)| *k).collect();
    assert!(has("PAT", DEFAULT_PAT), "{kinds:?}");
    assert!(
        has("GitHub App private key", TEST_APP_PRIVATE_KEY_PEM),
        "{kinds:?}"
    );
    assert!(has("admin token", &admin.token), "{kinds:?}");
    assert!(has("message queue token", &session.token), "{kinds:?}");
    assert!(has("JIT config", &jit), "{kinds:?}");
    assert!(kinds.contains(&"registration token"), "{kinds:?}");
    assert!(kinds.contains(&"JIT runner secret"), "{kinds:?}");
}
