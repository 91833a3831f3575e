//! Message-session calls the listener relies on: what the client reports when the queue token
//! expires, the session expires or the scale set vanishes, and that a session survives a
//! cancelled long poll until it is deleted. The reaction to each is the listener's
//! (`scaleset_core::listener_policy`).

use std::time::Duration;

use actions_client::{ActionsClient, DEFAULT_RUNNER_GROUP_ID, Error, NewRunnerScaleSet};
use actions_emulator::{Emulator, Endpoint, Fault, FaultKind, JobSpec, SessionState};
use secrecy::ExposeSecret;

use crate::support::{self, assert_no_secrets, texts};

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

fn unauthorized(times: u32) -> Fault {
    Fault::on(
        Endpoint::GetMessage,
        FaultKind::Status {
            status: 401,
            retry_after: None,
            type_key: None,
            message: None,
        },
        times,
    )
}

#[tokio::test]
async fn an_expired_queue_token_is_reported_and_a_refresh_cures_it() {
    let (emu, client, id) = setup("refresh").await;
    let session = client.create_message_session(id, "helper").await.unwrap();
    let first_token = session.message_queue_access_token.clone();

    emu.expire_message_queue_token(id);
    let err = client.get_message(&session, 0, 3).await.unwrap_err();
    assert!(matches!(err, Error::TokenExpired(_)), "{err}");
    assert_no_secrets(&texts(&err), &[first_token.expose_secret()]);
    let fresh = client.refresh_message_session(id, &session).await.unwrap();
    assert_ne!(
        fresh.message_queue_access_token.expose_secret(),
        first_token.expose_secret()
    );
    assert!(client.get_message(&fresh, 0, 3).await.unwrap().is_none());

    // A partial refresh answer keeps the queue URL and session id.
    emu.inject(unauthorized(1));
    emu.inject(Fault::on(
        Endpoint::RefreshSession,
        FaultKind::Respond {
            status: 200,
            content_type: Some("application/json".into()),
            body: format!(
                r#"{{"messageQueueAccessToken":"{}"}}"#,
                fresh.message_queue_access_token.expose_secret()
            ),
        },
        1,
    ));
    assert!(client.get_message(&fresh, 0, 3).await.is_err());
    let partial = client.refresh_message_session(id, &fresh).await.unwrap();
    assert_eq!(partial.message_queue_url, fresh.message_queue_url);
    assert_eq!(partial.session_id, fresh.session_id);
    client.get_message(&partial, 0, 3).await.unwrap();
    client
        .delete_message_session(id, &partial.session_id)
        .await
        .unwrap();
    assert_eq!(active(&emu, id), 0);
}

#[tokio::test]
async fn an_expired_session_is_reported_as_not_found() {
    let (emu, client, id) = setup("expired").await;
    let session = client.create_message_session(id, "helper").await.unwrap();
    assert!(emu.expire_session(id));
    let err = client.get_message(&session, 0, 1).await.unwrap_err();
    assert!(matches!(err, Error::SessionNotFound(_)), "{err}");
    let again = client.create_message_session(id, "helper").await.unwrap();
    assert_ne!(again.session_id, session.session_id);
    assert_eq!(active(&emu, id), 1);
}

#[tokio::test]
async fn messages_carry_statistics_and_the_poll_sends_the_capacity() {
    let (emu, client, id) = setup("stats").await;
    let session = client.create_message_session(id, "helper").await.unwrap();
    emu.queue_job(JobSpec::with_labels(["stats"]));
    let message = loop {
        if let Some(m) = client.get_message(&session, 0, 2).await.unwrap() {
            break m;
        }
    };
    assert_eq!(message.statistics.unwrap().total_available_jobs, 1);
    emu.inject(Fault::on(
        Endpoint::GetMessage,
        FaultKind::Respond {
            status: 200,
            content_type: Some("application/json".into()),
            body: r#"{"messageId":99,"messageType":"RunnerScaleSetJobMessages"}"#.into(),
        },
        1,
    ));
    let bare = client
        .get_message(&session, message.message_id, 2)
        .await
        .unwrap()
        .unwrap();
    assert!(bare.statistics.is_none());
    let capacity: Vec<_> = emu
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == "get_message")
        .filter_map(|c| c.max_capacity)
        .collect();
    assert!(capacity.iter().all(|c| c == "2"), "{capacity:?}");
}

#[tokio::test]
async fn a_cancelled_long_poll_still_lets_the_session_be_deleted() {
    let emu = support::emulator(|c| c.long_poll_hold = Duration::from_secs(50)).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let set = client
        .create_runner_scale_set(&NewRunnerScaleSet::new("cancel", DEFAULT_RUNNER_GROUP_ID))
        .await
        .unwrap();
    let session = client
        .create_message_session(set.id, "helper")
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let polling = async {
        tokio::select! {
            r = client.get_message(&session, 0, 1) => Some(r),
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
    client
        .delete_message_session(set.id, &session.session_id)
        .await
        .unwrap();
    assert_eq!(emu.count(Endpoint::DeleteSession), 1);
    assert_eq!(active(&emu, set.id), 0);
}

#[tokio::test]
async fn a_scale_set_deleted_behind_our_back_is_reported() {
    let (emu, client, id) = setup("vanishing").await;
    let session = client.create_message_session(id, "helper").await.unwrap();
    assert!(emu.delete_scale_set_behind_back(id));
    let err = client.get_message(&session, 0, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::ScaleSetNotFound(_) | Error::SessionNotFound(_)),
        "{err}"
    );
    assert!(
        client
            .get_runner_scale_set_by_id(id)
            .await
            .unwrap()
            .is_none()
    );
}
