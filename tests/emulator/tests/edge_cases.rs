//! The ten protocol edge cases (docs/architecture.md#protocol-edge-cases), from the server side,
//! over raw HTTP.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use actions_emulator::{
    Emulator, EmulatorConfig, Endpoint, Fault, FaultKind, JobPhase, JobResult, JobSpec,
    SessionState,
};
use bytes::Bytes;
use http::Method;
use serde_json::json;
use support::{Admin, Client, WAIT, api, emulator};

/// Edge case 1: admin tokens expire by `exp`, can be revoked, and `S` may change on refresh.
#[tokio::test]
async fn e01_admin_token_expiry_and_changed_s() {
    let emu = Emulator::start(EmulatorConfig {
        admin_token_lifetime: Duration::from_secs(90),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let groups = "_apis/runtime/runnergroups/?groupName=Default";
    assert_eq!(admin.call(Method::GET, groups, "").await.status, 200);
    emu.advance_clock(Duration::from_secs(31));
    assert_eq!(
        admin.call(Method::GET, groups, "").await.status,
        200,
        "59 s left: still valid on the server; refreshing is the client's job"
    );
    emu.advance_clock(Duration::from_secs(60));
    admin.call(Method::GET, groups, "").await.assert_empty(401);
    let fresh = Admin::login(&emu, &http).await;
    assert_eq!(fresh.call(Method::GET, groups, "").await.status, 200);

    emu.expire_admin_tokens();
    fresh.call(Method::GET, groups, "").await.assert_empty(401);

    let renewed = Admin::login(&emu, &http).await;
    let new_s = emu.rotate_actions_url();
    assert_ne!(new_s, renewed.s);
    assert_eq!(
        renewed.call(Method::GET, groups, "").await.status,
        404,
        "the old S stops answering"
    );
    let after = Admin::login(&emu, &http).await;
    assert_eq!(after.s, new_s, "runner-registration hands out the new S");
    assert_eq!(after.call(Method::GET, groups, "").await.status, 200);

    // a refresh returning an admin token without exp (fault), served exactly as configured
    let bad = r#"{"url":"http://127.0.0.1:1/","token":"eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}"#;
    emu.inject(Fault::on(
        Endpoint::RunnerRegistration,
        FaultKind::Respond {
            status: 201,
            content_type: Some("application/json".into()),
            body: bad.into(),
        },
        1,
    ));
    let reg = http
        .send(
            Method::POST,
            &format!(
                "{}/orgs/octo-org/actions/runners/registration-token",
                emu.api_base()
            ),
            &[(
                "authorization",
                &format!("Bearer {}", actions_emulator::DEFAULT_PAT),
            )],
            Bytes::new(),
        )
        .await;
    let r = http
        .send(
            Method::POST,
            &format!("{}/actions/runner-registration", emu.api_base()),
            &[
                (
                    "authorization",
                    &format!("RemoteAuth {}", reg.json()["token"].as_str().unwrap()),
                ),
                ("content-type", "application/json"),
            ],
            format!(
                "{{\"url\":\"{}\",\"runner_event\":\"register\"}}",
                emu.org_url("octo-org")
            ),
        )
        .await;
    assert_eq!(r.text(), bad);
}

/// Edge case 2: runner-registration answers 401/403 N times (propagation delay), then succeeds.
#[tokio::test]
async fn e02_runner_registration_propagation_delay() {
    let emu = emulator().await;
    let http = Client::http();
    emu.inject(Fault::on(
        Endpoint::RunnerRegistration,
        FaultKind::status(401),
        2,
    ));
    emu.inject(Fault::on(
        Endpoint::RunnerRegistration,
        FaultKind::Status {
            status: 403,
            retry_after: None,
            type_key: None,
            message: Some("Registration token not yet valid".into()),
        },
        1,
    ));
    let reg = http
        .send(
            Method::POST,
            &format!(
                "{}/orgs/octo-org/actions/runners/registration-token",
                emu.api_base()
            ),
            &[(
                "authorization",
                &format!("Bearer {}", actions_emulator::DEFAULT_PAT),
            )],
            Bytes::new(),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = format!(
        "{{\"url\":\"{}\",\"runner_event\":\"register\"}}",
        emu.org_url("octo-org")
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http
            .send(
                Method::POST,
                &format!("{}/actions/runner-registration", emu.api_base()),
                &[
                    ("authorization", &format!("RemoteAuth {reg}")),
                    ("content-type", "application/json"),
                ],
                body.clone(),
            )
            .await;
        if r.status == 403 {
            r.assert_github_error(403);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![401, 401, 403, 201]);
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 4);
}

/// Edge case 3: an expired mq token gives 401 on Q1, Q2 and A10; one PATCH makes all three work.
#[tokio::test]
async fn e03_message_queue_token_expiry_on_all_three_calls() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("mq", &["mq"]).await;
    let session = admin.create_session(ss, "listener-mq").await;
    emu.queue_job(JobSpec::with_labels(["mq"]));
    let (mid, _, _) = session.next_message(&http, 0).await;

    assert!(emu.expire_message_queue_token(ss));
    session.get_message(&http, 0, "1").await.assert_empty(401);
    session.delete_message(&http, mid).await.assert_empty(401);
    session
        .acquire(&http, &admin.s, "[]")
        .await
        .assert_empty(401);

    let r = admin
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions/{}", session.id),
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let refreshed = support::Session::from_json(ss, &r.json());
    assert_eq!(
        refreshed.queue_url, session.queue_url,
        "complete object on refresh"
    );
    assert_eq!(refreshed.get_message(&http, 0, "1").await.status, 200);
    assert_eq!(refreshed.delete_message(&http, mid).await.status, 204);
    assert_eq!(refreshed.acquire(&http, &admin.s, "[]").await.status, 200);
    assert_eq!(emu.count(Endpoint::RefreshSession), 1);

    // a token that outlives its lifetime is rejected the same way
    emu.update_config(|c| c.message_queue_token_lifetime = Duration::from_secs(30));
    let r = admin
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions/{}", session.id),
            "",
        )
        .await;
    let short = support::Session::from_json(ss, &r.json());
    emu.advance_clock(Duration::from_secs(31));
    short.get_message(&http, 0, "1").await.assert_empty(401);
}

/// Edge case 4: the long poll holds, answers 202 with an empty body, wakes up for new messages, and
/// a client that goes away is forgotten.
#[tokio::test]
async fn e04_long_poll() {
    let emu = Emulator::start(EmulatorConfig {
        long_poll_hold: Duration::from_secs(30),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("lp", &["lp"]).await;
    let session = admin.create_session(ss, "listener-lp").await;

    let poll = {
        let (http, session) = (http.clone(), session.clone());
        tokio::spawn(async move { session.get_message(&http, 0, "3").await })
    };
    emu.wait_until(WAIT, |s| {
        s.active_session(ss).is_some_and(|x| x.polls_in_flight == 1)
    })
    .await
    .unwrap();
    emu.queue_job(JobSpec::with_labels(["lp"]));
    let r = poll.await.unwrap();
    assert_eq!(
        r.status, 200,
        "a held poll returns as soon as a message exists"
    );

    // a poll abandoned by its client
    let abandoned = {
        let (http, session) = (http.clone(), session.clone());
        tokio::spawn(async move { session.get_message(&http, 99, "3").await })
    };
    emu.wait_until(WAIT, |s| {
        s.active_session(ss).is_some_and(|x| x.polls_in_flight == 1)
    })
    .await
    .unwrap();
    abandoned.abort();
    emu.wait_until(WAIT, |s| {
        s.active_session(ss).is_some_and(|x| x.polls_in_flight == 0)
    })
    .await
    .unwrap();

    // idle: 202 with an empty body after the hold (shortened)
    emu.update_config(|c| c.long_poll_hold = Duration::from_millis(200));
    session.get_message(&http, 99, "3").await.assert_empty(202);
    // session DELETE after the poll still works
    admin
        .call(
            Method::DELETE,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions/{}", session.id),
            "",
        )
        .await
        .assert_empty(204);
}

/// Edge case 5: lastMessageId, query preservation and redelivery of unacknowledged messages.
#[tokio::test]
async fn e05_last_message_id_and_redelivery() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("rd", &["rd"]).await;
    let session = admin.create_session(ss, "listener-rd").await;
    let j1 = emu.queue_job(JobSpec::with_labels(["rd"]));
    let (m1, items, _) = session.next_message(&http, 0).await;
    assert_eq!(items[0]["runnerRequestId"], j1);
    // not deleted: the same message again, also after a "restart" (new session)
    let (again, _, _) = session.next_message(&http, 0).await;
    assert_eq!(again, m1);
    // lastMessageId skips it; with nothing newer the poll ends idle
    session.get_message(&http, m1, "1").await.assert_empty(202);
    // a newer message is delivered past lastMessageId, the old one stays until deleted
    let j2 = emu.queue_job(JobSpec::with_labels(["rd"]));
    let (m2, items, _) = session.next_message(&http, m1).await;
    assert!(m2 > m1);
    assert_eq!(items[0]["runnerRequestId"], j2);
    let (first, _, _) = session.next_message(&http, 0).await;
    assert_eq!(
        first, m1,
        "without lastMessageId: the first undeleted message"
    );
    // the query string goes after the id on DELETE; a mismatching sessionId is refused
    assert_eq!(session.delete_message(&http, m1).await.status, 204);
    let (path, _) = session.queue_url.split_once('?').unwrap();
    let r = http
        .send(
            Method::DELETE,
            &format!("{path}/{m2}?sessionId=00000000-0000-0000-0000-000000000001"),
            &[("authorization", &format!("Bearer {}", session.token))],
            Bytes::new(),
        )
        .await;
    r.assert_empty(401);
    let (first, _, _) = session.next_message(&http, 0).await;
    assert_eq!(first, m2);
}

/// Edge cases 6 and 10: the envelope, zero timestamps on a canceled JobCompleted, and a job no
/// runner takes being reassigned up to `max_requeues` times.
#[tokio::test]
async fn e06_e10_reassignment_and_zero_timestamps() {
    let emu = Emulator::start(EmulatorConfig {
        long_poll_hold: Duration::from_millis(200),
        runner_pickup_timeout: Duration::from_secs(10),
        max_requeues: 3,
        auto_acquire_after: Some(Duration::ZERO),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("rq", &["rq"]).await;
    let session = admin.create_session(ss, "listener-rq").await;
    let job = emu.queue_job(JobSpec::with_labels(["rq"]));

    let mut kinds = Vec::new();
    let mut last = 0;
    for round in 0..4 {
        emu.wait_until(WAIT, |s| {
            s.job(job)
                .is_some_and(|j| j.phase == JobPhase::Assigned && j.requeues == round)
        })
        .await
        .unwrap();
        emu.advance_clock(Duration::from_secs(11));
        emu.wait_until(WAIT, |s| {
            s.job(job)
                .is_some_and(|j| j.requeues > round || j.phase == JobPhase::Completed)
        })
        .await
        .unwrap();
        loop {
            let r = session.get_message(&http, last, "5").await;
            if r.status == 202 {
                break;
            }
            let v = r.json();
            let items: Vec<serde_json::Value> =
                serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
            for item in &items {
                kinds.push(item["messageType"].as_str().unwrap().to_owned());
                if item["messageType"] == "JobCompleted" {
                    assert_eq!(item["result"], "canceled");
                    assert_eq!(item["runnerAssignTime"], "0001-01-01T00:00:00Z");
                    assert_eq!(item["runnerId"], 0);
                }
            }
            last = v["messageId"].as_i64().unwrap();
            assert_eq!(session.delete_message(&http, last).await.status, 204);
        }
    }
    let completed = kinds.iter().filter(|k| *k == "JobCompleted").count();
    let assigned = kinds.iter().filter(|k| *k == "JobAssigned").count();
    assert_eq!(completed, 4, "{kinds:?}");
    assert_eq!(assigned, 4, "{kinds:?}");
    let rec = emu.snapshot().job(job).unwrap().clone();
    assert_eq!(rec.phase, JobPhase::Completed);
    assert_eq!(rec.result, Some(JobResult::Canceled));
    assert_eq!(rec.requeues, 3);
}

/// Edge case 7: session conflict until the old session is deleted or expires.
#[tokio::test]
async fn e07_session_conflict_until_expiry() {
    let emu = Emulator::start(EmulatorConfig {
        long_poll_hold: Duration::from_millis(200),
        session_expiry: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::login(&emu, &Client::http()).await;
    let ss = admin.create_scale_set("cf", &["cf"]).await;
    let crashed = admin.create_session(ss, "pod-a").await;
    let path = format!("_apis/runtime/runnerscalesets/{ss}/sessions");
    let body = r#"{"sessionId":"00000000-0000-0000-0000-000000000000","ownerName":"pod-a"}"#;
    admin
        .call(Method::POST, &path, body)
        .await
        .assert_vss(409, "TaskAgentSessionConflictException");
    emu.advance_clock(Duration::from_secs(121));
    let r = admin.call(Method::POST, &path, body).await;
    assert_eq!(r.status, 200, "exactly 200 after expiry: {}", r.text());
    let snap = emu.snapshot();
    let old = snap.sessions.iter().find(|s| s.id == crashed.id).unwrap();
    assert_eq!(old.state, SessionState::Expired);
    // the expired session's queue answers with the configured "session gone" error
    crashed
        .get_message(&Client::http(), 0, "1")
        .await
        .assert_vss(400, "TaskAgentSessionExpiredException");

    // [inferred] knob: the same owner may take over its own live session
    emu.update_config(|c| c.same_owner_replaces_session = true);
    let current = emu.snapshot().active_session(ss).unwrap().id.clone();
    let other = r#"{"sessionId":"00000000-0000-0000-0000-000000000000","ownerName":"pod-b"}"#;
    admin
        .call(Method::POST, &path, other)
        .await
        .assert_vss(409, "TaskAgentSessionConflictException");
    let r = admin.call(Method::POST, &path, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let snap = emu.snapshot();
    assert_ne!(snap.active_session(ss).unwrap().id, current);
    assert_eq!(
        snap.sessions
            .iter()
            .find(|s| s.id == current)
            .unwrap()
            .state,
        SessionState::Deleted
    );
}

/// Edge case 8: list responses always have `count` equal to the items; by-id of an unknown set
/// follows the configured mode (404 here, `null` in the conformance suite).
#[tokio::test]
async fn e08_count_matches_value() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    for n in ["a", "b"] {
        admin.create_scale_set(n, &[n]).await;
    }
    admin.jit(1, "r-1").await;
    admin.jit(2, "r-2").await;
    for path in [
        "_apis/runtime/runnergroups/",
        "_apis/runtime/runnerscalesets?runnerGroupId=1",
        "_apis/distributedtask/pools/0/agents",
    ] {
        let v = admin.call(Method::GET, path, "").await.json();
        assert_eq!(
            v["count"].as_u64().unwrap(),
            v["value"].as_array().unwrap().len() as u64,
            "{path}: {v}"
        );
    }
    // a count/value mismatch can be injected for client tests, byte for byte
    let bad = r#"{"count":1,"value":[]}"#;
    emu.inject(Fault::on(
        Endpoint::ListScaleSets,
        FaultKind::Respond {
            status: 200,
            content_type: Some("application/json".into()),
            body: bad.into(),
        },
        1,
    ));
    assert_eq!(
        admin
            .call(Method::GET, "_apis/runtime/runnerscalesets?name=a", "")
            .await
            .text(),
        bad
    );
}

/// Edge case 9: error body variants, BOM, and retryable bursts with Retry-After.
#[tokio::test]
async fn e09_error_bodies_and_bursts() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let path = "_apis/runtime/runnergroups/?groupName=Default";
    emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        FaultKind::text(500, "upstream broke"),
        1,
    ));
    let r = admin.call(Method::GET, path, "").await;
    assert_eq!(r.status, 500);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.text(), "upstream broke");

    emu.inject(Fault::on(Endpoint::RunnerGroups, FaultKind::status(502), 1));
    let r = admin.call(Method::GET, path, "").await;
    r.assert_empty(502);
    assert_eq!(r.header("content-length").as_deref(), Some("0"));

    emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        FaultKind::Respond {
            status: 502,
            content_type: Some("text/html".into()),
            body: "<html>Bad Gateway</html>".into(),
        },
        1,
    ));
    assert_eq!(
        admin.call(Method::GET, path, "").await.text(),
        "<html>Bad Gateway</html>"
    );

    emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        FaultKind::exception(404, "TaskAgentNotFoundException", "gone"),
        1,
    ));
    admin
        .call(Method::GET, path, "")
        .await
        .assert_vss(404, "TaskAgentNotFoundException");

    // BOM on a success body and on an error body
    emu.inject(Fault::on(Endpoint::RunnerGroups, FaultKind::BomPrefix, 1));
    let r = admin.call(Method::GET, path, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..3], b"\xEF\xBB\xBF");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.body[3..]).unwrap()["count"],
        1
    );
    emu.inject(Fault::on(Endpoint::GetScaleSet, FaultKind::BomPrefix, 1));
    let r = admin
        .call(Method::GET, "_apis/runtime/runnerscalesets/404", "")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(&r.body[..3], b"\xEF\xBB\xBF");

    // a burst of 429 with Retry-After, then success
    emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        FaultKind::retry_after(429, 7),
        4,
    ));
    for _ in 0..4 {
        let r = admin.call(Method::GET, path, "").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after").as_deref(), Some("7"));
    }
    assert_eq!(admin.call(Method::GET, path, "").await.status, 200);
    assert!(emu.faults().is_empty(), "used-up faults disappear");
}

/// Edge case 10: runner lifecycle races: JIT name collision recovery, removal of a busy runner, a
/// scale set deleted behind the client's back.
#[tokio::test]
async fn e10_runner_races_and_lost_scale_set() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("race", &["race"]).await;
    let session = admin.create_session(ss, "listener-race").await;
    let (rid, _) = admin.jit(ss, "dup").await;
    let jit_path = format!("_apis/runtime/runnerscalesets/{ss}/generatejitconfig");
    admin
        .call(Method::POST, &jit_path, r#"{"name":"dup","workFolder":""}"#)
        .await
        .assert_vss(409, "AgentExistsException");
    // recovery: lookup by name, same scale set, remove, retry
    let found = admin
        .call(
            Method::GET,
            "_apis/distributedtask/pools/0/agents?agentName=dup",
            "",
        )
        .await
        .json();
    assert_eq!(found["value"][0]["runnerScaleSetId"], ss);
    admin
        .call(
            Method::DELETE,
            &format!("_apis/distributedtask/pools/0/agents/{rid}"),
            "",
        )
        .await
        .assert_empty(204);
    let r = admin
        .call(Method::POST, &jit_path, r#"{"name":"dup","workFolder":""}"#)
        .await;
    assert_eq!(r.status, 200);

    // the scale set disappears: its session's queue, the set and its runners are gone
    let job = emu.queue_job(JobSpec::with_labels(["race"]));
    assert!(emu.delete_scale_set_behind_back(ss));
    session
        .get_message(&http, 0, "1")
        .await
        .assert_vss(400, "TaskAgentSessionExpiredException");
    admin
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{ss}"),
            "",
        )
        .await
        .assert_vss(404, "RunnerScaleSetNotFoundException");
    let snap = emu.snapshot();
    assert!(snap.runners.is_empty());
    assert_eq!(
        snap.job(job).unwrap().phase,
        JobPhase::Queued,
        "back in the queue"
    );
    // a re-created set with the same labels gets the job
    let ss2 = admin.create_scale_set("race", &["race"]).await;
    let s2 = admin.create_session(ss2, "listener-race").await;
    let (_, items, _) = s2.next_message(&http, 0).await;
    assert_eq!(items[0]["runnerRequestId"], job);
    let _ = json!({});
    let _ = api;
}

/// Edge case 1 (token shapes): admin tokens without `exp`, with padded base64, or without `alg`,
/// for client tests; the emulator itself accepts each of them.
#[tokio::test]
async fn e01_admin_token_shapes() {
    use actions_emulator::AdminTokenStyle;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let emu = emulator().await;
    let http = Client::http();
    for style in [
        AdminTokenStyle::WithoutExp,
        AdminTokenStyle::PaddedBase64,
        AdminTokenStyle::WithoutAlg,
        AdminTokenStyle::Standard,
    ] {
        emu.update_config(|c| c.admin_token_style = style);
        let admin = Admin::login(&emu, &http).await;
        let parts: Vec<&str> = admin.token.split('.').collect();
        assert_eq!(parts.len(), 3, "{style:?}");
        let decode = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).unwrap())
                .unwrap()
        };
        let (header, claims) = (decode(parts[0]), decode(parts[1]));
        match style {
            AdminTokenStyle::WithoutExp => assert!(claims.get("exp").is_none()),
            AdminTokenStyle::PaddedBase64 => {
                assert!(admin.token.contains('='), "padded: {}", admin.token)
            }
            AdminTokenStyle::WithoutAlg => assert!(header.get("alg").is_none()),
            AdminTokenStyle::Standard => {
                assert!(claims["exp"].is_i64() && header["alg"] == "HS256")
            }
        }
        let r = admin
            .call(
                Method::GET,
                "_apis/runtime/runnergroups/?groupName=Default",
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{style:?}");
    }
    // a token without exp lives until revoked
    emu.update_config(|c| c.admin_token_style = AdminTokenStyle::WithoutExp);
    let forever = Admin::login(&emu, &http).await;
    emu.advance_clock(Duration::from_secs(86_400 * 30));
    let groups = "_apis/runtime/runnergroups/?groupName=Default";
    assert_eq!(forever.call(Method::GET, groups, "").await.status, 200);
    emu.expire_admin_tokens();
    forever
        .call(Method::GET, groups, "")
        .await
        .assert_empty(401);
}

/// Edge cases 5 and 6: a poison message (body that is not a JSON array, unknown envelope type,
/// missing statistics) is redelivered on every poll and after a "restart" until deleted.
#[tokio::test]
async fn e05_e06_poison_messages_are_redelivered_until_deleted() {
    let emu = emulator().await;
    let http = Client::http();
    let admin = Admin::login(&emu, &http).await;
    let ss = admin.create_scale_set("poison", &["poison"]).await;
    let session = admin.create_session(ss, "l").await;
    let poison = emu
        .push_raw_message(
            ss,
            json!({"messageType": "RunnerScaleSetJobMessages", "body": "[{not json"}),
        )
        .unwrap();
    let r = http
        .send(
            Method::POST,
            &format!("{}/_emulator/scalesets/{ss}/messages", emu.url()),
            &[],
            r#"{"messageType":"SomethingNew","body":[1,2]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let odd = r.json()["messageId"].as_i64().unwrap();
    for _ in 0..2 {
        let v = session.get_message(&http, 0, "1").await.json();
        assert_eq!(v["messageId"], poison);
        assert_eq!(v["body"], "[{not json");
        assert!(v.get("statistics").is_none());
    }
    let v = session.get_message(&http, poison, "1").await.json();
    assert_eq!(v["messageId"], odd);
    assert_eq!(v["messageType"], "SomethingNew");
    assert_eq!(v["body"], json!([1, 2]));
    // a restarted listener (new session) still gets the poison message first
    admin
        .call(
            Method::DELETE,
            &format!("_apis/runtime/runnerscalesets/{ss}/sessions/{}", session.id),
            "",
        )
        .await
        .assert_empty(204);
    let session = admin.create_session(ss, "l").await;
    assert_eq!(
        session.get_message(&http, 0, "1").await.json()["messageId"],
        poison
    );
    assert_eq!(session.delete_message(&http, poison).await.status, 204);
    assert_eq!(
        session.get_message(&http, 0, "1").await.json()["messageId"],
        odd
    );
    assert_eq!(session.delete_message(&http, odd).await.status, 204);
    session.get_message(&http, 0, "1").await.assert_empty(202);
    assert!(emu.push_raw_message(4242, json!({})).is_none());
}
