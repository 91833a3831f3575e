//! Every fault the emulator can inject, and what the client makes of it.

use std::time::Duration;

use actions_client::{
    ActionsClient, DEFAULT_RUNNER_GROUP_ID, Error, JitSetting, NewRunnerScaleSet,
};
use actions_emulator::{Emulator, Endpoint, Fault, FaultKind};
use secrecy::ExposeSecret;

use crate::support::{self, assert_no_secrets, texts};

fn status(status: u16, retry_after: Option<&str>, type_key: Option<&str>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after: retry_after.map(str::to_owned),
        type_key: type_key.map(str::to_owned),
        message: type_key.map(|_| "injected".to_owned()),
    }
}

fn respond(status: u16, content_type: Option<&str>, body: &str) -> FaultKind {
    FaultKind::Respond {
        status,
        content_type: content_type.map(str::to_owned),
        body: body.to_owned(),
    }
}

async fn setup() -> (Emulator, ActionsClient, i64) {
    let emu = support::emulator(|c| c.long_poll_hold = Duration::from_millis(500)).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let set = client
        .create_runner_scale_set(&NewRunnerScaleSet::new("faulty", DEFAULT_RUNNER_GROUP_ID))
        .await
        .unwrap();
    emu.reset_counters();
    (emu, client, set.id)
}

#[tokio::test]
async fn retryable_statuses_are_retried_with_retry_after() {
    let (emu, client, id) = setup().await;
    emu.inject(Fault::on(
        Endpoint::GetScaleSet,
        status(503, Some("1"), None),
        2,
    ));
    emu.inject(Fault::on(
        Endpoint::GetScaleSet,
        status(429, Some("0"), None),
        1,
    ));
    emu.inject(Fault::on(Endpoint::GetScaleSet, status(502, None, None), 1));
    assert!(
        client
            .get_runner_scale_set_by_id(id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(emu.count(Endpoint::GetScaleSet), 5);

    // Exhausted: the last status and body are reported.
    emu.reset_counters();
    emu.inject(Fault::on(
        Endpoint::GetScaleSet,
        status(500, None, Some("InternalServerErrorException")),
        9,
    ));
    let err = client.get_runner_scale_set_by_id(id).await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err}");
    assert_eq!(err.status(), Some(500));
    assert!(
        err.info()
            .unwrap()
            .exception
            .as_deref()
            .unwrap()
            .contains("InternalServerErrorException")
    );
    assert!(err.info().unwrap().activity_id.is_some(), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(emu.count(Endpoint::GetScaleSet), 5);
    emu.clear_faults();

    emu.reset_counters();
    emu.inject(Fault::on(
        Endpoint::GetScaleSet,
        status(429, Some("1"), None),
        9,
    ));
    let err = client.get_runner_scale_set_by_id(id).await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{err}"
    );
    assert_eq!(emu.count(Endpoint::GetScaleSet), 5);
    emu.clear_faults();

    // 501 and 4xx are not retried.
    for code in [501, 400, 404, 409] {
        emu.reset_counters();
        emu.inject(Fault::on(Endpoint::GetRunner, status(code, None, None), 1));
        let err = client.get_runner(1).await;
        assert_eq!(emu.count(Endpoint::GetRunner), 1, "{code}: {err:?}");
        emu.clear_faults();
    }
}

#[tokio::test]
async fn error_bodies_are_classified() {
    let (emu, client, id) = setup().await;
    let mut errors = Vec::new();
    let jit = JitSetting {
        name: "r".into(),
        work_folder: String::new(),
    };

    emu.inject(Fault::on(
        Endpoint::GenerateJitConfig,
        respond(400, Some("text/plain; charset=utf-8"), "plain words"),
        1,
    ));
    let err = client.generate_jit_config(id, &jit).await.unwrap_err();
    assert!(matches!(err, Error::Rejected(_)), "{err}");
    assert_eq!(err.info().unwrap().message, "plain words");
    errors.extend(texts(&err));

    emu.inject(Fault::on(
        Endpoint::GenerateJitConfig,
        status(400, None, None),
        1,
    ));
    let err = client.generate_jit_config(id, &jit).await.unwrap_err();
    assert_eq!(
        err.info().unwrap().message,
        "unknown error",
        "Content-Length: 0"
    );

    emu.inject(Fault::on(
        Endpoint::GenerateJitConfig,
        respond(502, Some("text/html"), "<html>bad gateway</html>"),
        9,
    ));
    let err = client.generate_jit_config(id, &jit).await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err}");
    assert!(
        err.to_string().contains("<html>bad gateway</html>"),
        "{err}"
    );
    emu.clear_faults();

    emu.inject(Fault::on(
        Endpoint::GenerateJitConfig,
        status(409, None, Some("TaskAgentExistsException")),
        1,
    ));
    assert!(matches!(
        client.generate_jit_config(id, &jit).await,
        Err(Error::RunnerExists(_))
    ));
    // The status does not matter for the exception rules.
    emu.inject(Fault::on(
        Endpoint::RemoveRunner,
        status(409, None, Some("TaskAgentJobStillRunningException")),
        1,
    ));
    assert!(matches!(
        client.remove_runner(5).await,
        Err(Error::JobStillRunning(_))
    ));
    emu.inject(Fault::on(
        Endpoint::GetRunner,
        status(404, None, Some("TaskAgentNotFoundException")),
        1,
    ));
    assert!(client.get_runner(5).await.unwrap().is_none());
    emu.inject(Fault::on(Endpoint::GetScaleSet, status(403, None, None), 1));
    let err = client.get_runner_scale_set_by_id(id).await.unwrap_err();
    assert!(matches!(err, Error::AuthFailed(_)), "{err}");
    errors.extend(texts(&err));

    // BOM on success and error bodies.
    emu.inject(Fault::on(Endpoint::GetScaleSet, FaultKind::BomPrefix, 1));
    assert!(
        client
            .get_runner_scale_set_by_id(id)
            .await
            .unwrap()
            .is_some()
    );
    emu.inject(Fault::on(
        Endpoint::GenerateJitConfig,
        FaultKind::BomPrefix,
        1,
    ));
    emu.inject(Fault::on(
        Endpoint::GenerateJitConfig,
        status(409, None, Some("TaskAgentExistsException")),
        1,
    ));
    assert!(matches!(
        client.generate_jit_config(id, &jit).await,
        Err(Error::RunnerExists(_))
    ));

    // Odd successful bodies.
    emu.inject(Fault::on(
        Endpoint::GetScaleSet,
        respond(200, Some("application/json"), "null"),
        1,
    ));
    assert!(
        client
            .get_runner_scale_set_by_id(id)
            .await
            .unwrap()
            .is_none()
    );
    emu.inject(Fault::on(
        Endpoint::ListScaleSets,
        respond(200, Some("application/json"), r#"{"count":1,"value":[]}"#),
        1,
    ));
    assert!(matches!(
        client.get_runner_scale_set(1, "faulty").await,
        Err(Error::BadResponse(_))
    ));
    emu.inject(Fault::on(
        Endpoint::ListScaleSets,
        respond(
            200,
            Some("application/json"),
            r#"{"count":2,"value":[{"id":1},{"id":2}]}"#,
        ),
        1,
    ));
    let err = client.get_runner_scale_set(1, "faulty").await.unwrap_err();
    assert!(err.to_string().contains("2 runner scale sets"), "{err}");
    emu.inject(Fault::on(
        Endpoint::ListScaleSets,
        respond(
            200,
            Some("application/json"),
            r#"{"count":0,"value":[{"id":1}]}"#,
        ),
        1,
    ));
    assert!(
        client
            .get_runner_scale_set(1, "faulty")
            .await
            .unwrap()
            .is_none()
    );
    emu.inject(Fault::on(
        Endpoint::RunnerGroups,
        respond(
            200,
            Some("application/json"),
            r#"{"Count":1,"Value":[{"ID":5,"NAME":"g","isdefaultgroup":false}]}"#,
        ),
        1,
    ));
    assert_eq!(client.get_runner_group_by_name("g").await.unwrap().id, 5);
    emu.inject(Fault::on(
        Endpoint::RunnersByName,
        respond(200, Some("application/json"), "<html>"),
        1,
    ));
    assert!(matches!(
        client.get_runner_by_name("x").await,
        Err(Error::BadResponse(_))
    ));
    emu.inject(Fault::on(
        Endpoint::CreateScaleSet,
        respond(201, Some("application/json"), r#"{"id":9}"#),
        1,
    ));
    let err = client
        .create_runner_scale_set(&NewRunnerScaleSet::new("x", 1))
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(201),
        "create must answer exactly 200: {err}"
    );

    // A call slower than the request timeout fails as a transport error (here without retries).
    let strict = support::pat_client(
        &emu,
        &emu.org_url("octo-org"),
        support::transport(|c| {
            c.request_timeout = Duration::from_millis(1500);
            c.retry = actions_client::RetryPolicy::none();
        }),
    );
    strict.get_runner_scale_set_by_id(id).await.unwrap();
    emu.inject(Fault::on(
        Endpoint::GetScaleSet,
        FaultKind::Delay { ms: 6000 },
        1,
    ));
    let err = strict.get_runner_scale_set_by_id(id).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err}");
    assert!(
        err.to_string().contains("no complete response within"),
        "{err}"
    );

    // A dropped connection is retried.
    emu.reset_counters();
    emu.inject(Fault::on(
        Endpoint::GetScaleSet,
        FaultKind::DropConnection,
        1,
    ));
    assert!(
        client
            .get_runner_scale_set_by_id(id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(emu.count(Endpoint::GetScaleSet), 2);
    assert_no_secrets(&errors, &[emu.pat().expose_secret()]);
}

#[tokio::test]
async fn message_faults() {
    let (emu, client, id) = setup().await;
    let session = client.create_message_session(id, "faults").await.unwrap();
    let envelope = |body: &str| {
        respond(
            200,
            Some("application/json"),
            &format!(
                r#"{{"messageId":7,"messageType":"RunnerScaleSetJobMessages","statistics":{{"totalAssignedJobs":3}},"body":{body}}}"#
            ),
        )
    };
    emu.inject(Fault::on(Endpoint::GetMessage, FaultKind::BomPrefix, 1));
    emu.inject(Fault::on(Endpoint::GetMessage, envelope(r#""[{\"messageType\":\"JobAssigned\",\"runnerRequestId\":5},{\"messageType\":\"Brand-new\"}]""#), 1));
    let m = client.get_message(&session, 0, 5).await.unwrap().unwrap();
    assert_eq!(m.message_id, 7);
    assert_eq!(m.jobs.len(), 1, "unknown element types are skipped");
    assert_eq!(m.statistics.unwrap().total_assigned_jobs, 3);

    emu.inject(Fault::on(Endpoint::GetMessage, respond(200, Some("application/json"), r#"{"messageId":10,"messageType":"RunnerScaleSetJobMessages","body":"[]","statistics":{"totalAssignedJobs":1,"totalFancyRunners":4},"someFutureField":true}"#), 1));
    let m = client.get_message(&session, 0, 5).await.unwrap().unwrap();
    assert_eq!(m.statistics.unwrap().total_assigned_jobs, 1);
    let log = support::log_text();
    assert!(
        log.contains("someFutureField") && log.contains("totalFancyRunners"),
        "unknown fields are logged"
    );

    emu.inject(Fault::on(
        Endpoint::GetMessage,
        respond(
            200,
            Some("application/json"),
            r#"{"messageId":8,"messageType":"SomethingElse","body":"x"}"#,
        ),
        1,
    ));
    let m = client.get_message(&session, 0, 5).await.unwrap().unwrap();
    assert_eq!(m.message_type, "SomethingElse");
    assert!(m.jobs.is_empty() && m.statistics.is_none());

    emu.inject(Fault::on(
        Endpoint::GetMessage,
        envelope(r#"{"not":"a string"}"#),
        1,
    ));
    let m = client.get_message(&session, 0, 5).await.unwrap().unwrap();
    assert_eq!(
        m.message_id, 7,
        "an undecodable body keeps the id, so it can be acked"
    );
    assert!(m.jobs.is_empty());
    assert_eq!(m.skipped.len(), 1, "{:?}", m.skipped);

    emu.inject(Fault::on(
        Endpoint::GetMessage,
        respond(
            200,
            Some("application/json"),
            r#"{"messageId":9,"messageType":"RunnerScaleSetJobMessages","body":""}"#,
        ),
        1,
    ));
    let m = client.get_message(&session, 0, 5).await.unwrap().unwrap();
    assert!(m.statistics.is_none(), "missing statistics is tolerated");

    // A long poll slower than the client's long-poll timeout is retried.
    let impatient = support::pat_client(
        &emu,
        &emu.org_url("octo-org"),
        support::transport(|c| c.long_poll_timeout = Duration::from_millis(2000)),
    );
    emu.reset_counters();
    emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::Delay { ms: 8000 },
        1,
    ));
    assert!(
        impatient
            .get_message(&session, 0, 5)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(emu.count(Endpoint::GetMessage), 2);
    let stuck = support::pat_client(
        &emu,
        &emu.org_url("octo-org"),
        support::transport(|c| {
            c.long_poll_timeout = Duration::from_millis(300);
            c.retry = actions_client::RetryPolicy::none();
        }),
    );
    emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::Delay { ms: 2000 },
        1,
    ));
    let err = stuck.get_message(&session, 0, 5).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err}");

    // Unknown message id on delete.
    let err = client.delete_message(&session, 424_242).await.unwrap_err();
    assert!(matches!(err, Error::Rejected(_)), "{err}");
    assert_eq!(err.status(), Some(404));
    assert_no_secrets(
        &texts(&err),
        &[session.message_queue_access_token.expose_secret()],
    );
}
