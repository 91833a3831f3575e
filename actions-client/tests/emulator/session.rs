//! The session helper: token refresh, re-creation, conflicts, close and drop.

use std::time::Duration;

use actions_client::{
    ActionsClient, DEFAULT_RUNNER_GROUP_ID, Error, NewRunnerScaleSet, ScaleSetSession,
    SessionOptions,
};
use actions_emulator::{Emulator, Endpoint, Fault, FaultKind, JobSpec, SessionState};
use secrecy::ExposeSecret;

use crate::support::{self, assert_no_secrets, texts};

fn quick() -> SessionOptions {
    SessionOptions {
        conflict_timeout: Duration::from_secs(60),
        conflict_min_delay: Duration::from_millis(50),
        conflict_max_delay: Duration::from_millis(500),
    }
}

async fn setup(name: &str) -> (Emulator, ActionsClient, i64) {
    let emu = support::emulator(|c| c.long_poll_hold = Duration::from_millis(500)).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let set = client
        .create_runner_scale_set(&NewRunnerScaleSet::new(name, DEFAULT_RUNNER_GROUP_ID))
        .await
        .unwrap();
    (emu, client, set.id)
}

fn active(emu: &Emulator, id: i64) -> usize {
    emu.snapshot()
        .sessions
        .iter()
        .filter(|s| s.scale_set_id == id && s.state == SessionState::Active)
        .count()
}

#[tokio::test]
async fn queue_token_expiry_refreshes_once_per_call() {
    let (emu, client, id) = setup("refresh").await;
    let session = ScaleSetSession::open(client.clone(), id, "helper", quick())
        .await
        .unwrap();
    let first_token = session.session().message_queue_access_token;
    assert_eq!(session.statistics().unwrap().total_assigned_jobs, 0);

    emu.reset_counters();
    emu.expire_message_queue_token(id);
    assert!(session.get_message(0, 3).await.unwrap().is_none());
    assert_eq!(emu.count(Endpoint::RefreshSession), 1);
    assert_eq!(emu.count(Endpoint::GetMessage), 2);
    assert_ne!(
        session.session().message_queue_access_token.expose_secret(),
        first_token.expose_secret()
    );

    let job = emu.queue_job(JobSpec::with_labels(["refresh"]));
    let message = loop {
        if let Some(m) = session.get_message(0, 3).await.unwrap() {
            if !m.available_request_ids().is_empty() {
                break m;
            }
            session.delete_message(m.message_id).await.unwrap();
        }
    };
    emu.expire_message_queue_token(id);
    session.delete_message(message.message_id).await.unwrap();
    assert_eq!(emu.count(Endpoint::RefreshSession), 2);
    emu.expire_message_queue_token(id);
    assert_eq!(session.acquire_jobs(&[job]).await.unwrap(), [job]);
    assert_eq!(emu.count(Endpoint::RefreshSession), 3);
    let acquire = emu
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == "acquire_jobs")
        .count();
    assert_eq!(acquire, 2, "one 401, one retry");

    // A second 401 in a row is surfaced.
    emu.reset_counters();
    emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::Status {
            status: 401,
            retry_after: None,
            type_key: None,
            message: None,
        },
        2,
    ));
    let err = session.get_message(0, 3).await.unwrap_err();
    assert!(matches!(err, Error::TokenExpired(_)), "{err}");
    assert_eq!(emu.count(Endpoint::RefreshSession), 1);
    assert_eq!(emu.count(Endpoint::GetMessage), 2);

    // A partial refresh answer keeps the queue URL and session id.
    let before = session.session();
    emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::Status {
            status: 401,
            retry_after: None,
            type_key: None,
            message: None,
        },
        1,
    ));
    emu.inject(Fault::on(
        Endpoint::RefreshSession,
        FaultKind::Respond {
            status: 200,
            content_type: Some("application/json".into()),
            body: format!(
                r#"{{"messageQueueAccessToken":"{}"}}"#,
                before.message_queue_access_token.expose_secret()
            ),
        },
        1,
    ));
    session.get_message(0, 3).await.unwrap();
    let after = session.session();
    assert_eq!(after.message_queue_url, before.message_queue_url);
    assert_eq!(after.session_id, before.session_id);
    assert_no_secrets(&texts(&err), &[first_token.expose_secret()]);
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_gone_session_is_recreated() {
    let (emu, client, id) = setup("recreate").await;
    let session = ScaleSetSession::open(client, id, "helper", quick())
        .await
        .unwrap();
    let old = session.session().session_id;
    emu.reset_counters();
    assert!(emu.expire_session(id));
    assert!(session.get_message(0, 1).await.unwrap().is_none());
    assert_eq!(emu.count(Endpoint::CreateSession), 1);
    assert_ne!(session.session().session_id, old);
    assert_eq!(active(&emu, id), 1);

    // Gone while refreshing the token: re-created as well.
    emu.reset_counters();
    emu.expire_message_queue_token(id);
    assert!(emu.expire_session(id));
    assert!(session.get_message(0, 1).await.unwrap().is_none());
    assert_eq!(emu.count(Endpoint::CreateSession), 1);
    session.close().await.unwrap();
    assert_eq!(active(&emu, id), 0);
    session.close().await.unwrap();
    assert!(matches!(
        session.get_message(0, 1).await,
        Err(Error::SessionNotFound(_))
    ));
}

#[tokio::test]
async fn conflicts_are_retried_for_a_bounded_time() {
    let (emu, client, id) = setup("conflict").await;
    let held = client.create_message_session(id, "old-pod").await.unwrap();

    let impatient = ScaleSetSession::open(
        client.clone(),
        id,
        "new-pod",
        SessionOptions {
            conflict_timeout: Duration::ZERO,
            ..quick()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(impatient, Error::SessionConflict(_)),
        "{impatient}"
    );

    emu.reset_counters();
    let releaser = {
        let client = client.clone();
        let held = held.session_id.clone();
        let emu_url = emu.url().to_owned();
        tokio::spawn(async move {
            let _ = emu_url;
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.delete_message_session(id, &held).await
        })
    };
    let session = ScaleSetSession::open(client.clone(), id, "new-pod", quick())
        .await
        .unwrap();
    releaser.await.unwrap().unwrap();
    assert!(emu.count(Endpoint::CreateSession) >= 2);
    assert_eq!(session.session().owner_name, "new-pod");

    // Bounded: a session that never goes away ends in the conflict error.
    let err = ScaleSetSession::open(
        client,
        id,
        "third",
        SessionOptions {
            conflict_timeout: Duration::from_millis(300),
            ..quick()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::SessionConflict(_)), "{err}");
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_dropped_session_is_deleted() {
    let (emu, client, id) = setup("dropped").await;
    let session = ScaleSetSession::open(client, id, "helper", quick())
        .await
        .unwrap();
    assert_eq!(active(&emu, id), 1);
    drop(session);
    emu.wait_until(Duration::from_secs(60), |s| {
        s.sessions
            .iter()
            .filter(|x| x.scale_set_id == id)
            .all(|x| x.state == SessionState::Deleted)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn statistics_follow_the_latest_message() {
    let (emu, client, id) = setup("stats").await;
    let session = ScaleSetSession::open(client, id, "helper", quick())
        .await
        .unwrap();
    emu.queue_job(JobSpec::with_labels(["stats"]));
    let message = loop {
        if let Some(m) = session.get_message(0, 2).await.unwrap() {
            break m;
        }
    };
    assert_eq!(session.statistics(), message.statistics);
    assert_eq!(message.statistics.unwrap().total_available_jobs, 1);
    // A message without statistics keeps the last known ones.
    emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::Respond {
            status: 200,
            content_type: Some("application/json".into()),
            body: r#"{"messageId":99,"messageType":"RunnerScaleSetJobMessages"}"#.into(),
        },
        1,
    ));
    let bare = session
        .get_message(message.message_id, 2)
        .await
        .unwrap()
        .unwrap();
    assert!(bare.statistics.is_none());
    assert_eq!(session.statistics(), message.statistics);
    let capacity: Vec<_> = emu
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == "get_message")
        .filter_map(|c| c.max_capacity)
        .collect();
    assert!(capacity.iter().all(|c| c == "2"), "{capacity:?}");
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_long_poll_still_lets_close_delete_the_session() {
    let emu = support::emulator(|c| c.long_poll_hold = Duration::from_secs(50)).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let set = client
        .create_runner_scale_set(&NewRunnerScaleSet::new("cancel", DEFAULT_RUNNER_GROUP_ID))
        .await
        .unwrap();
    let session = ScaleSetSession::open(client, set.id, "helper", quick())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let polling = async {
        tokio::select! {
            r = session.get_message(0, 1) => Some(r),
            _ = stopped => None,
        }
    };
    let waiter = async {
        emu.wait_until(Duration::from_secs(60), |s| {
            s.sessions
                .iter()
                .any(|x| x.scale_set_id == set.id && x.polls_in_flight > 0)
        })
        .await
        .unwrap();
        let _ = stop.send(());
    };
    let (outcome, ()) = tokio::join!(polling, waiter);
    assert!(outcome.is_none(), "the poll was cancelled, not answered");
    session.close().await.unwrap();
    assert_eq!(emu.count(Endpoint::DeleteSession), 1);
    assert_eq!(active(&emu, set.id), 0);
}

#[tokio::test]
async fn a_scale_set_deleted_behind_our_back_is_reported() {
    let (emu, client, id) = setup("vanishing").await;
    let session = ScaleSetSession::open(client.clone(), id, "helper", quick())
        .await
        .unwrap();
    assert!(emu.delete_scale_set_behind_back(id));
    let err = session.get_message(0, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::ScaleSetNotFound(_) | Error::SessionNotFound(_)),
        "{err}"
    );
    assert!(
        emu.count(Endpoint::CreateSession) <= 2,
        "no re-creation loop"
    );
    assert!(
        client
            .get_runner_scale_set_by_id(id)
            .await
            .unwrap()
            .is_none()
    );
    session.close().await.unwrap();
}
