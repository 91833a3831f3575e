//! Message queue (Q1 long-poll get, Q2 delete), authenticated with the message-queue token.

use axum::response::Response;

use crate::endpoint::Endpoint;
use crate::server::{Req, Shared};
use crate::wire::{ApiError, empty_response, json_response};

/// Decrements the in-flight poll count when the poll ends, even if the client went away.
struct PollGuard<'a> {
    shared: &'a Shared,
    session: String,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .mutate(|st, now| st.poll_in_flight(&self.session, -1, now));
    }
}

/// Resolves the mq token to its session and checks it belongs to this queue URL.
fn session_for(shared: &Shared, req: &Req, scale_set_id: i64) -> Result<String, ApiError> {
    let query_session = req.query("sessionId").ok_or_else(|| {
        ApiError::bad_request(
            "Query parameter sessionId is missing; use the messageQueueUrl exactly as the session returned it.",
        )
    })?;
    shared.mutate(|st, now| {
        let session = st.mq_session(req.bearer(), now)?;
        if !session.eq_ignore_ascii_case(query_session)
            || st.session_scale_set(&session) != Some(scale_set_id)
        {
            return Err(ApiError::Unauthorized);
        }
        Ok(session)
    })
}

fn max_capacity(req: &Req) -> Result<Option<i64>, ApiError> {
    match req.header("x-scalesetmaxcapacity") {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "Header X-ScaleSetMaxCapacity must be a decimal integer from 0 to 2147483647, got {v:?}."
            ))),
        },
    }
}

pub(crate) async fn handle(shared: &Shared, req: &Req) -> Result<Response, ApiError> {
    let scale_set_id = req.id(0, "runner scale set id")?;
    match req.endpoint {
        Endpoint::GetMessage => {
            let last = match req.query("lastMessageId") {
                None | Some("") => None,
                Some(v) => match v.parse::<i64>() {
                    Ok(0) => None,
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "Query parameter lastMessageId must be a non-negative integer, got {v:?}."
                        )));
                    }
                },
            };
            let capacity = max_capacity(req)?;
            let session = session_for(shared, req, scale_set_id)?;
            shared.mutate(|st, now| {
                st.record_capacity(scale_set_id, capacity);
                st.poll_in_flight(&session, 1, now);
            });
            let _guard = PollGuard {
                shared,
                session: session.clone(),
            };
            let hold = shared.read(|st, _| st.cfg.long_poll_hold);
            let deadline = crate::state::deadline_in(hold);
            let found = shared
                .wait_for(deadline, |st, now| {
                    if !st.session_is_active(&session, now) {
                        return Some(Err(st.session_gone_error(&session)));
                    }
                    st.next_message(&session, last).map(Ok)
                })
                .await;
            match found {
                Some(Ok(message)) => Ok(json_response(200, &message)),
                Some(Err(e)) => Err(e),
                None => Ok(empty_response(202)),
            }
        }
        Endpoint::DeleteMessage => {
            let message_id = req.id(1, "message id")?;
            let session = session_for(shared, req, scale_set_id)?;
            shared.mutate(|st, _| st.delete_message(&session, message_id))?;
            Ok(empty_response(204))
        }
        _ => Err(ApiError::not_found()),
    }
}
