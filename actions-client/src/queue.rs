//! Message sessions, the message queue and job acquisition
//! (docs/architecture.md#message-session-and-long-poll, docs/architecture.md#acquiring-jobs).
//!
//! These calls are stateless: the caller passes the [`MessageSession`] and decides what to do
//! about an expired token, a lost session or a conflict (the listener: its error policy in
//! `scaleset_core::listener_policy`).

use http::{Method, StatusCode, header};

use crate::classify::{self, Target};
use crate::client::{ActionsClient, ServiceRequest};
use crate::decode;
use crate::error::{Error, Result};
use crate::transport::Call;
use crate::types::{MessageSession, ScaleSetMessage};
use crate::urls;
use crate::wire;

fn sessions(scale_set_id: i64) -> String {
    format!("/_apis/runtime/runnerscalesets/{scale_set_id}/sessions")
}

impl ActionsClient {
    /// A7: opens a message session for the scale set. Another live session is
    /// [`Error::SessionConflict`].
    pub async fn create_message_session(
        &self,
        scale_set_id: i64,
        owner: &str,
    ) -> Result<MessageSession> {
        let req = ServiceRequest::new(
            "create session",
            Method::POST,
            sessions(scale_set_id),
            StatusCode::OK,
            Target::SessionCreate,
        )
        .json(wire::session_body(owner));
        let (call, reply) = self.service(req).await?;
        decode::session(&call, &reply, None)
    }

    /// A8: a new message-queue token. Fields a partial answer leaves out keep the values of
    /// `session`.
    pub async fn refresh_message_session(
        &self,
        scale_set_id: i64,
        session: &MessageSession,
    ) -> Result<MessageSession> {
        let req = ServiceRequest::new(
            "refresh session",
            Method::PATCH,
            format!("{}/{}", sessions(scale_set_id), session.session_id),
            StatusCode::OK,
            Target::Session,
        );
        let (call, reply) = self.service(req).await?;
        decode::session(&call, &reply, Some(session))
    }

    /// A9: closes a message session.
    pub async fn delete_message_session(&self, scale_set_id: i64, session_id: &str) -> Result<()> {
        let req = ServiceRequest::new(
            "delete session",
            Method::DELETE,
            format!("{}/{session_id}", sessions(scale_set_id)),
            StatusCode::NO_CONTENT,
            Target::Session,
        );
        self.service(req).await.map(|_| ())
    }

    /// Q1: long-polls for the next message after `last_message_id` (0 = none processed yet),
    /// telling the service this client can run `max_capacity` runners. `Ok(None)` when the poll
    /// ended without a message (202). A 401 is [`Error::TokenExpired`].
    pub async fn get_message(
        &self,
        session: &MessageSession,
        last_message_id: i64,
        max_capacity: i64,
    ) -> Result<Option<ScaleSetMessage>> {
        let url = urls::get_message_url(&session.message_queue_url, last_message_id)
            .map_err(|e| Error::bad_response(crate::error::ErrorInfo::new("get message", e)))?;
        let mut call = Call::new("get message", Method::GET, url)
            .bearer(&session.message_queue_access_token)
            .header(header::ACCEPT, "application/json; api-version=6.0-preview")
            .header(header::USER_AGENT, &self.user_agent())
            .header(
                header::HeaderName::from_static("x-scalesetmaxcapacity"),
                &max_capacity
                    .clamp(0, crate::types::UNBOUNDED_CAPACITY)
                    .to_string(),
            );
        call.long_poll = true;
        let reply = self.inner.transport.send(&call).await?;
        decode::message(&call, &reply)
    }

    /// Q2: acknowledges (deletes) a message. A 401 is [`Error::TokenExpired`].
    pub async fn delete_message(&self, session: &MessageSession, message_id: i64) -> Result<()> {
        let url = urls::delete_message_url(&session.message_queue_url, message_id)
            .map_err(|e| Error::bad_response(crate::error::ErrorInfo::new("delete message", e)))?;
        let call = Call::new("delete message", Method::DELETE, url)
            .bearer(&session.message_queue_access_token)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, &self.user_agent());
        let reply = self.inner.transport.send(&call).await?;
        if reply.status != StatusCode::NO_CONTENT {
            return Err(classify::error(&call, &reply, Target::Queue));
        }
        Ok(())
    }

    /// A10: acquires jobs by `runnerRequestId` with the session's token; returns the ids actually
    /// acquired (possibly a subset). A 401 is [`Error::TokenExpired`].
    pub async fn acquire_jobs(
        &self,
        scale_set_id: i64,
        session: &MessageSession,
        request_ids: &[i64],
    ) -> Result<Vec<i64>> {
        let body = serde_json::to_vec(request_ids).unwrap_or_else(|_| b"[]".to_vec());
        let mut req = ServiceRequest::new(
            "acquire jobs",
            Method::POST,
            format!("/_apis/runtime/runnerscalesets/{scale_set_id}/acquirejobs"),
            StatusCode::OK,
            Target::Queue,
        )
        .json(body);
        req.token = Some(&session.message_queue_access_token);
        let (call, reply) = self.service(req).await?;
        decode::acquired_jobs(&call, &reply)
    }
}
