//! Message sessions (A7 to A9) and the message queue (Q1, Q2).

use super::*;

impl State {
    pub(super) fn session_alive(&self, s: &SessionRecord, now: DateTime<Utc>) -> bool {
        s.state == SessionState::Active
            && (s.polls_in_flight > 0 || now - s.last_seen < td(self.cfg.session_expiry))
    }

    pub(super) fn session_json(&self, s: &SessionRecord, token: &str) -> Value {
        let scale_set = self
            .scale_sets
            .get(&s.scale_set_id)
            .map(|ss| self.scale_set_json(ss, false))
            .unwrap_or_else(|| json!({"id": s.scale_set_id}));
        json!({
            "sessionId": s.id,
            "ownerName": s.owner_name,
            "runnerScaleSet": scale_set,
            "messageQueueUrl": format!("{}/queue/{}?sessionId={}", self.base_url, s.scale_set_id, s.id),
            "messageQueueAccessToken": token,
            "statistics": self.statistics(s.scale_set_id),
        })
    }

    pub(super) fn new_mq_token(&mut self, session_id: &str, now: DateTime<Utc>) -> String {
        self.mq_tokens.retain(|_, t| t.value != session_id);
        let token = tokens::opaque("mq_");
        self.issue("message queue token", &token);
        self.mq_tokens.insert(
            token.clone(),
            ExpiringToken {
                value: session_id.to_owned(),
                expires_at: later(now, self.cfg.message_queue_token_lifetime),
            },
        );
        token
    }

    /// A7.
    pub fn create_session(
        &mut self,
        scale_set_id: i64,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let obj = parse_object(body)?;
        let owner = match get_ci(&obj, "ownerName") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Field \"ownerName\" must be a string.",
                ));
            }
        };
        let ss_name = self.require_scale_set(scale_set_id)?.name.clone();
        let live: Option<(String, String)> = self
            .sessions
            .values()
            .find(|s| s.scale_set_id == scale_set_id && self.session_alive(s, now))
            .map(|s| (s.id.clone(), s.owner_name.clone()));
        if let Some((old_id, old_owner)) = &live
            && self.cfg.same_owner_replaces_session
            && old_owner == &owner
        {
            if let Some(old) = self.sessions.get_mut(old_id) {
                old.state = SessionState::Deleted;
            }
            let old_id = old_id.clone();
            self.mq_tokens.retain(|_, t| t.value != old_id);
        } else if let Some((_, existing_owner)) = live {
            return Err(ApiError::from_spec(
                &self.cfg.session_conflict,
                format!(
                    "The runner scale set {ss_name} already has an active session for owner {existing_owner}."
                ),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let token = self.new_mq_token(&id, now);
        let record = SessionRecord {
            id: id.clone(),
            scale_set_id,
            owner_name: owner,
            state: SessionState::Active,
            created_at: now,
            last_seen: now,
            token_expires_at: later(now, self.cfg.message_queue_token_lifetime),
            refreshes: 0,
            polls_in_flight: 0,
        };
        let out = self.session_json(&record, &token);
        self.sessions.insert(id, record);
        Ok(out)
    }

    pub(super) fn session_gone(&self, id: &str) -> ApiError {
        ApiError::from_spec(
            &self.cfg.session_gone,
            format!("The session {id} has expired or was deleted."),
        )
    }

    /// A8: a new message-queue token; the old one stops working.
    pub fn refresh_session(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let alive = match self.sessions.get(session_id) {
            Some(s) if s.scale_set_id == scale_set_id => self.session_alive(s, now),
            _ => false,
        };
        if !alive {
            return Err(self.session_gone(session_id));
        }
        let token = self.new_mq_token(session_id, now);
        let expires = later(now, self.cfg.message_queue_token_lifetime);
        let record = match self.sessions.get_mut(session_id) {
            Some(s) => {
                s.last_seen = now;
                s.refreshes += 1;
                s.token_expires_at = expires;
                s.clone()
            }
            None => return Err(self.session_gone(session_id)),
        };
        Ok(self.session_json(&record, &token))
    }

    /// A9.
    pub fn delete_session(&mut self, scale_set_id: i64, session_id: &str) -> Result<(), ApiError> {
        match self.sessions.get_mut(session_id) {
            Some(s) if s.scale_set_id == scale_set_id => {
                if s.state == SessionState::Active {
                    s.state = SessionState::Deleted;
                }
                self.mq_tokens.retain(|_, t| t.value != session_id);
                Ok(())
            }
            _ => Err(self.session_gone(session_id)),
        }
    }

    /// Control: expire the active session of a scale set (its token then gives `session_gone`).
    pub fn expire_session(&mut self, scale_set_id: i64) -> bool {
        let mut found = false;
        for s in self
            .sessions
            .values_mut()
            .filter(|s| s.scale_set_id == scale_set_id && s.state == SessionState::Active)
        {
            s.state = SessionState::Expired;
            found = true;
        }
        found
    }

    /// Control: the message-queue token of a scale set's session expires now.
    pub fn expire_message_queue_token(&mut self, scale_set_id: i64, now: DateTime<Utc>) -> bool {
        let ids: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.scale_set_id == scale_set_id && s.state == SessionState::Active)
            .map(|s| s.id.clone())
            .collect();
        let mut found = false;
        for t in self.mq_tokens.values_mut() {
            if ids.contains(&t.value) {
                t.expires_at = now;
                found = true;
            }
        }
        for s in self.sessions.values_mut().filter(|s| ids.contains(&s.id)) {
            s.token_expires_at = now;
        }
        found
    }

    /// Resolves a message-queue token to its live session id (401 or `session_gone` otherwise).
    pub fn mq_session(
        &mut self,
        bearer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, ApiError> {
        let token = bearer.ok_or(ApiError::Unauthorized)?;
        let session_id = match self.mq_tokens.get(token) {
            Some(t) if t.expires_at > now => t.value.clone(),
            _ => return Err(ApiError::Unauthorized),
        };
        let alive = self
            .sessions
            .get(&session_id)
            .is_some_and(|s| self.session_alive(s, now));
        if !alive {
            if let Some(s) = self.sessions.get_mut(&session_id)
                && s.state == SessionState::Active
            {
                s.state = SessionState::Expired;
            }
            return Err(self.session_gone(&session_id));
        }
        if let Some(s) = self.sessions.get_mut(&session_id) {
            s.last_seen = now;
        }
        Ok(session_id)
    }

    /// Whether a session is active and not expired.
    pub fn session_is_active(&self, session_id: &str, now: DateTime<Utc>) -> bool {
        self.sessions
            .get(session_id)
            .is_some_and(|s| self.session_alive(s, now))
    }

    /// The configured "session gone" error for a session id.
    pub fn session_gone_error(&self, session_id: &str) -> ApiError {
        self.session_gone(session_id)
    }

    /// Marks a long poll as started or finished on a session.
    pub fn poll_in_flight(&mut self, session_id: &str, delta: i32, now: DateTime<Utc>) {
        if let Some(s) = self.sessions.get_mut(session_id) {
            s.polls_in_flight = s.polls_in_flight.saturating_add_signed(delta);
            s.last_seen = now;
        }
    }

    /// The scale set of a session.
    pub fn session_scale_set(&self, session_id: &str) -> Option<i64> {
        self.sessions.get(session_id).map(|s| s.scale_set_id)
    }

    /// Records `X-ScaleSetMaxCapacity` for a scale set.
    pub fn record_capacity(&mut self, scale_set_id: i64, capacity: Option<i64>) {
        if let (Some(ss), Some(c)) = (self.scale_sets.get_mut(&scale_set_id), capacity) {
            ss.max_capacity = Some(c);
        }
    }

    /// Q1 without waiting: the next message for the session, if any.
    pub fn next_message(
        &mut self,
        session_id: &str,
        last_message_id: Option<i64>,
    ) -> Option<Value> {
        let ss_id = self.session_scale_set(session_id)?;
        let max = self.cfg.max_jobs_per_message.max(1);
        let queue = self.queues.get_mut(&ss_id)?;
        let floor = last_message_id.unwrap_or(0);
        let above = floor.saturating_add(1);
        let raw = queue
            .raw
            .range(above..)
            .next()
            .map(|(id, v)| (*id, v.clone()));
        let found = queue
            .messages
            .range(above..)
            .next()
            .map(|(id, body)| (*id, body.clone()));
        if let Some((raw_id, envelope)) = raw
            && found.as_ref().is_none_or(|(id, _)| raw_id < *id)
        {
            return Some(envelope);
        }
        let (id, items) = match found {
            Some(m) => m,
            None if !queue.pending.is_empty() => {
                let n = queue.pending.len().min(max);
                let items: Vec<Value> = queue.pending.drain(..n).collect();
                let id = self.next_message_id.max(above);
                self.next_message_id = id.saturating_add(1);
                queue.messages.insert(id, items.clone());
                (id, items)
            }
            None => return None,
        };
        let body = serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned());
        Some(json!({
            "messageId": id,
            "messageType": "RunnerScaleSetJobMessages",
            "body": body,
            "statistics": self.statistics(ss_id),
        }))
    }

    /// Control: stores an envelope verbatim in a scale set's queue (delivered and redelivered
    /// like any message until deleted). `messageId` is set on objects; returns it.
    pub fn push_raw_message(&mut self, scale_set_id: i64, mut envelope: Value) -> Option<i64> {
        let queue = self.queues.get_mut(&scale_set_id)?;
        let id = self.next_message_id;
        self.next_message_id = id.saturating_add(1);
        if let Value::Object(o) = &mut envelope {
            o.insert("messageId".to_owned(), json!(id));
        }
        queue.raw.insert(id, envelope);
        Some(id)
    }

    /// Q2.
    pub fn delete_message(&mut self, session_id: &str, message_id: i64) -> Result<(), ApiError> {
        let removed = self
            .session_scale_set(session_id)
            .and_then(|ss| self.queues.get_mut(&ss))
            .and_then(|q| {
                q.messages
                    .remove(&message_id)
                    .map(|_| ())
                    .or_else(|| q.raw.remove(&message_id).map(|_| ()))
            });
        match removed {
            Some(_) => Ok(()),
            None => Err(ApiError::from_spec(
                &self.cfg.message_not_found,
                format!("Message {message_id} was not found."),
            )),
        }
    }
}
