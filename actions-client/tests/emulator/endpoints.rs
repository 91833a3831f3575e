//! Every endpoint with a PAT over plain HTTP, checked against the emulator's state and call log.

use std::time::Duration;

use actions_client::{
    DEFAULT_RUNNER_GROUP_ID, Error, JitSetting, JobMessage, NewRunnerScaleSet,
    RunnerScaleSetUpdate, SystemInfo,
};
use actions_emulator::{Endpoint, JobPhase, JobSpec};
use secrecy::ExposeSecret;

use crate::support::{self, assert_no_secrets, texts};

#[tokio::test]
async fn every_endpoint_with_a_pat() {
    let emu = support::emulator(|c| {
        c.runner_groups = vec!["gpu-pool".into()];
        c.long_poll_hold = Duration::from_secs(1);
    })
    .await;
    let client = actions_client::ActionsClient::builder(
        emu.org_url("octo-org"),
        actions_client::Credentials::pat(emu.pat()).unwrap(),
    )
    .transport(support::transport(|_| {}))
    .system_info(SystemInfo {
        subsystem: "endpoint-test".into(),
        ..SystemInfo::default()
    })
    .force_ghes(false)
    .build()
    .unwrap();
    let mut errors = Vec::new();

    // A1
    let group = client.get_runner_group_by_name("gpu-pool").await.unwrap();
    assert_eq!((group.id, group.name.as_str()), (2, "gpu-pool"));
    let missing = client.get_runner_group_by_name("nope").await.unwrap_err();
    assert!(
        matches!(missing, Error::RunnerGroupNotFound(_)),
        "{missing}"
    );
    errors.extend(texts(&missing));

    // A2, A4, A3, A5
    assert!(
        client
            .get_runner_scale_set(DEFAULT_RUNNER_GROUP_ID, "set-a")
            .await
            .unwrap()
            .is_none()
    );
    let new =
        NewRunnerScaleSet::new("set-a", DEFAULT_RUNNER_GROUP_ID).with_labels(["set-a", "gpu"]);
    let created = client.create_runner_scale_set(&new).await.unwrap();
    assert!(created.id > 0);
    assert_eq!(created.label_names(), ["set-a", "gpu"]);
    assert!(created.runner_setting.disable_update);
    client.set_scale_set_id(created.id);
    let by_name = client
        .get_runner_scale_set(DEFAULT_RUNNER_GROUP_ID, "set-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name.id, created.id);
    let by_id = client
        .get_runner_scale_set_by_id(created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id.name, "set-a");
    let record = emu.snapshot();
    let record = record.scale_set(created.id).unwrap();
    assert_eq!(record.labels, ["set-a", "gpu"]);
    assert!(record.disable_update);

    let dup = client.create_runner_scale_set(&new).await.unwrap_err();
    assert_eq!(dup.status(), Some(409), "{dup}");
    errors.extend(texts(&dup));

    let renamed = client
        .update_runner_scale_set(
            created.id,
            &RunnerScaleSetUpdate {
                name: Some("set-b".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "set-b");
    let regrouped = client
        .update_runner_scale_set(
            created.id,
            &RunnerScaleSetUpdate {
                runner_group_id: Some(group.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(regrouped.runner_group_id, 2);
    assert_eq!(regrouped.runner_group_name, "gpu-pool");
    assert_eq!(regrouped.name, "set-b", "a regroup keeps the name");
    let all = client.list_runner_scale_sets(None).await.unwrap();
    assert!(all.iter().any(|s| s.id == created.id));
    let in_group = client.list_runner_scale_sets(Some(group.id)).await.unwrap();
    assert_eq!(
        in_group.iter().map(|s| s.id).collect::<Vec<_>>(),
        [created.id]
    );
    assert!(
        client
            .list_runner_scale_sets(Some(DEFAULT_RUNNER_GROUP_ID))
            .await
            .unwrap()
            .is_empty()
    );

    // A11 – A14
    let jit = client
        .generate_jit_config(
            created.id,
            &JitSetting {
                name: "runner-1".into(),
                work_folder: "/work".into(),
            },
        )
        .await
        .unwrap();
    assert!(jit.runner.id > 0);
    assert_eq!(jit.runner.runner_scale_set_id, created.id);
    let exists = client
        .generate_jit_config(
            created.id,
            &JitSetting {
                name: "runner-1".into(),
                work_folder: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(exists, Error::RunnerExists(_)), "{exists}");
    errors.extend(texts(&exists));
    let runner = client.get_runner(jit.runner.id).await.unwrap().unwrap();
    assert_eq!(runner.name, "runner-1");
    assert!(client.get_runner(987_654).await.unwrap().is_none());
    let named = client
        .get_runner_by_name("runner-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(named.id, jit.runner.id);
    assert!(client.get_runner_by_name("ghost").await.unwrap().is_none());
    assert_eq!(
        emu.snapshot()
            .runners
            .iter()
            .find(|r| r.id == jit.runner.id)
            .unwrap()
            .work_folder,
        "/work"
    );

    // A7 – A10, Q1, Q2
    let session = client
        .create_message_session(created.id, "endpoint-test-listener")
        .await
        .unwrap();
    assert!(session.statistics.is_some());
    let conflict = client
        .create_message_session(created.id, "someone-else")
        .await
        .unwrap_err();
    assert!(matches!(conflict, Error::SessionConflict(_)), "{conflict}");
    errors.extend(texts(&conflict));

    let job_id = emu.queue_job(JobSpec::with_labels(["gpu"]));
    let mut last = 0;
    let available = loop {
        if let Some(message) = client.get_message(&session, last, 10).await.unwrap() {
            last = message.message_id;
            client
                .delete_message(&session, message.message_id)
                .await
                .unwrap();
            let ids = message.available_request_ids();
            if !ids.is_empty() {
                break ids;
            }
        }
    };
    assert_eq!(available, [job_id]);
    let acquired = client
        .acquire_jobs(created.id, &session, &available)
        .await
        .unwrap();
    assert_eq!(acquired, [job_id]);
    assert!(
        client
            .acquire_jobs(created.id, &session, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let assigned = loop {
        match client.get_message(&session, last, 10).await.unwrap() {
            Some(m) => {
                last = m.message_id;
                client.delete_message(&session, m.message_id).await.unwrap();
                if m.jobs.iter().any(
                    |j| matches!(j, JobMessage::Assigned(a) if a.job.runner_request_id == job_id),
                ) {
                    break m;
                }
            }
            None => continue,
        }
    };
    assert_eq!(assigned.statistics.unwrap().total_assigned_jobs, 1);

    // The runner picks the job up: removing it is refused while it runs.
    let conn = emu
        .runner_connect(jit.encoded_jit_config.expose_secret())
        .unwrap();
    let job = emu
        .runner_job(&conn, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.runner_request_id, job_id);
    emu.runner_started(&conn).unwrap();
    let busy = client.remove_runner(jit.runner.id).await.unwrap_err();
    assert!(matches!(busy, Error::JobStillRunning(_)), "{busy}");
    // The same refusal through GitHub's REST API, which lists the runner as busy.
    let busy = client
        .delete_self_hosted_runner(jit.runner.id)
        .await
        .unwrap_err();
    assert!(matches!(busy, Error::JobStillRunning(_)), "{busy}");
    let listed = client.list_self_hosted_runners().await.unwrap();
    assert!(
        listed.iter().any(|r| r.id == jit.runner.id && r.busy),
        "{listed:?}"
    );
    errors.extend(texts(&busy));
    let started = loop {
        if let Some(m) = client.get_message(&session, last, 10).await.unwrap() {
            last = m.message_id;
            client.delete_message(&session, m.message_id).await.unwrap();
            if let Some(s) = m.started().next() {
                break s.clone();
            }
        }
    };
    assert_eq!(started.runner_id, jit.runner.id);
    assert_eq!(started.runner_name, "runner-1");
    emu.runner_completed(&conn, None).unwrap();
    emu.wait_until(Duration::from_secs(60), |s| {
        s.job(job_id)
            .is_some_and(|j| j.phase == JobPhase::Completed)
    })
    .await
    .unwrap();

    // A 202 after the hold.
    let idle = loop {
        match client.get_message(&session, last, 0).await.unwrap() {
            Some(m) => {
                last = m.message_id;
                client.delete_message(&session, m.message_id).await.unwrap();
            }
            None => break true,
        }
    };
    assert!(idle);

    let refreshed = client
        .refresh_message_session(created.id, &session)
        .await
        .unwrap();
    assert_eq!(refreshed.session_id, session.session_id);
    assert_ne!(
        refreshed.message_queue_access_token.expose_secret(),
        session.message_queue_access_token.expose_secret()
    );
    assert!(client.get_message(&refreshed, last, 1).await.is_ok());
    client
        .delete_message_session(created.id, &refreshed.session_id)
        .await
        .unwrap();
    assert!(
        emu.snapshot()
            .sessions
            .iter()
            .filter(|s| s.id == refreshed.session_id)
            .all(|s| s.state == actions_emulator::SessionState::Deleted)
    );
    let gone = client.get_message(&refreshed, last, 1).await.unwrap_err();
    assert!(
        matches!(gone, Error::TokenExpired(_) | Error::SessionNotFound(_)),
        "{gone}"
    );

    let idle_runner = client
        .generate_jit_config(
            created.id,
            &JitSetting {
                name: "runner-2".into(),
                work_folder: String::new(),
            },
        )
        .await
        .unwrap();
    client.remove_runner(idle_runner.runner.id).await.unwrap();
    client.remove_runner(idle_runner.runner.id).await.unwrap();
    assert!(
        client
            .get_runner(idle_runner.runner.id)
            .await
            .unwrap()
            .is_none()
    );

    // A6
    client.delete_runner_scale_set(created.id).await.unwrap();
    assert!(
        client
            .get_runner_scale_set_by_id(created.id)
            .await
            .unwrap()
            .is_none()
    );

    // Wire details from the emulator's call log.
    let calls = emu.calls();
    let polls: Vec<_> = calls
        .iter()
        .filter(|c| c.endpoint == "get_message")
        .collect();
    assert!(
        polls
            .iter()
            .any(|c| c.max_capacity.as_deref() == Some("10"))
    );
    assert!(polls.iter().any(|c| c.max_capacity.as_deref() == Some("0")));
    assert!(polls.iter().any(|c| c.uri.contains("lastMessageId=")));
    for call in &calls {
        let ua = call.user_agent.as_deref().unwrap_or_default();
        assert!(ua.contains(r#""system":"arc-rs""#), "{ua}");
        assert!(ua.contains(r#""subsystem":"endpoint-test""#), "{ua}");
        assert!(ua.ends_with(r#""kind":"scaleset"}"#), "{ua}");
        match call.endpoint.as_str() {
            "registration_token" => assert!(call.uri.starts_with("/api/v3/orgs/octo-org/")),
            "runner_registration" => {
                assert_eq!(call.auth_scheme.as_deref(), Some("RemoteAuth"));
                assert_eq!(call.uri, "/api/v3/actions/runner-registration");
            }
            "get_message" | "delete_message" => {}
            "list_self_hosted_runners" | "delete_self_hosted_runner" => {
                assert!(
                    call.uri
                        .starts_with("/api/v3/orgs/octo-org/actions/runners")
                );
                assert_eq!(call.auth_scheme.as_deref(), Some("Bearer"));
            }
            _ => {
                assert!(call.uri.contains("api-version=6.0-preview"), "{}", call.uri);
                assert_eq!(call.content_type.as_deref(), Some("application/json"));
                assert_eq!(call.auth_scheme.as_deref(), Some("Bearer"));
            }
        }
    }
    let first_create = calls
        .iter()
        .find(|c| c.endpoint == "create_scale_set")
        .unwrap();
    assert!(
        first_create
            .user_agent
            .as_deref()
            .unwrap_or_default()
            .contains(r#""scale_set_id":0"#)
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.endpoint == "delete_scale_set")
            .all(|c| c
                .user_agent
                .as_deref()
                .unwrap_or_default()
                .contains(&format!(r#""scale_set_id":{}"#, created.id)))
    );
    assert_eq!(
        emu.count(Endpoint::RunnerRegistration),
        1,
        "one admin token for everything"
    );
    assert_no_secrets(
        &errors,
        &[
            emu.pat().expose_secret(),
            session.message_queue_access_token.expose_secret(),
            jit.encoded_jit_config.expose_secret(),
        ],
    );
}

#[tokio::test]
async fn repository_and_enterprise_scopes_use_ghes_paths() {
    let emu = support::emulator(|_| {}).await;
    for (url, prefix) in [
        (
            emu.repo_url("octo-org", "app"),
            "/api/v3/repos/octo-org/app/",
        ),
        (
            format!("{}/", emu.enterprise_url("acme")),
            "/api/v3/enterprises/acme/",
        ),
    ] {
        emu.reset_counters();
        let client = support::pat_client(&emu, &url, support::transport(|_| {}));
        assert!(!client.config().is_hosted());
        assert!(
            client
                .get_runner_scale_set(DEFAULT_RUNNER_GROUP_ID, "x")
                .await
                .unwrap()
                .is_none()
        );
        let calls = emu.calls();
        let reg = calls
            .iter()
            .find(|c| c.endpoint == "registration_token")
            .unwrap();
        assert!(reg.uri.starts_with(prefix), "{} vs {prefix}", reg.uri);
        assert_eq!(client.service_url().unwrap(), emu.actions_url());
    }
}

/// GitHub's REST self-hosted runner endpoints over HTTP, backed by the runners the Actions
/// service registered: more runners than a page (two list requests), each with its scale set's
/// runner group and labels; a REST delete removes the registration on the service side too, and
/// deleting it again counts as done.
#[tokio::test]
async fn self_hosted_runners_over_rest_follow_pages() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let set = client
        .create_runner_scale_set(&NewRunnerScaleSet::new("rest-set", DEFAULT_RUNNER_GROUP_ID))
        .await
        .unwrap();
    let total = actions_client::RUNNERS_PER_PAGE + 1;
    let mut ids = Vec::new();
    for i in 0..total {
        let setting = JitSetting {
            name: format!("rest-set-runner-{i}"),
            work_folder: String::new(),
        };
        ids.push(
            client
                .generate_jit_config(set.id, &setting)
                .await
                .unwrap()
                .runner
                .id,
        );
    }
    emu.reset_counters();
    let listed = client.list_self_hosted_runners().await.unwrap();
    assert_eq!(listed.len(), total);
    assert_eq!(emu.count(Endpoint::ListSelfHostedRunners), 2, "two pages");
    let first = &listed[0];
    assert_eq!(first.runner_group_id, Some(DEFAULT_RUNNER_GROUP_ID));
    assert!(first.labels.iter().any(|l| l == "rest-set"), "{first:?}");
    assert!(!first.busy && first.os == "Linux" && first.status == "offline");

    client.delete_self_hosted_runner(ids[0]).await.unwrap();
    assert!(
        client.get_runner(ids[0]).await.unwrap().is_none(),
        "gone on the service"
    );
    client.delete_self_hosted_runner(ids[0]).await.unwrap();
    let left = client.list_self_hosted_runners().await.unwrap();
    assert_eq!(left.len(), total - 1);
    assert!(left.iter().all(|r| r.id != ids[0]));
}
