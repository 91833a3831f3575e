//! The emulator's mutable state and every state transition. No I/O; callers hold the lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use crate::config::AdminTokenStyle;
use crate::config::EmulatorConfig;
use crate::faults::FaultEntry;
use crate::model::{
    JobPhase, JobRecord, JobResult, JobSpec, RunnerConnection, RunnerGroupRecord, RunnerJob,
    RunnerRecord, ScaleSetRecord, SessionRecord, SessionState, StateSnapshot, Statistics,
};
use crate::scope::{Scope, parse_config_url};
use crate::tokens::{self, AdminClaims};
use crate::wire::{ApiError, get_ci, list, ts, ts_opt};

/// Converts a std duration to chrono, saturating at 100 years (so sums never overflow).
pub fn td(d: Duration) -> TimeDelta {
    const CAP: TimeDelta = TimeDelta::days(36_500);
    TimeDelta::from_std(d).map_or(CAP, |t| t.min(CAP))
}

/// `t + d`, saturating at the latest representable time.
pub fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(td(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A tokio deadline `d` from now, saturating far in the future.
pub fn deadline_in(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

struct ExpiringToken<T> {
    value: T,
    expires_at: DateTime<Utc>,
}

#[derive(Default)]
struct MessageQueue {
    pending: VecDeque<Value>,
    messages: BTreeMap<i64, Vec<Value>>,
}

struct JitCredential {
    runner_id: i64,
    secret: String,
}

/// All mutable state.
pub struct State {
    /// Current configuration (mutable through the control API).
    pub cfg: EmulatorConfig,
    base_url: String,
    tenant: u64,
    admin_key: [u8; 32],
    admin_generation: u64,
    admin_tokens: HashMap<String, AdminClaims>,
    installation_tokens: HashMap<String, ExpiringToken<i64>>,
    registration_tokens: HashMap<String, ExpiringToken<Scope>>,
    groups: Vec<RunnerGroupRecord>,
    scale_sets: BTreeMap<i64, ScaleSetRecord>,
    next_scale_set_id: i64,
    sessions: BTreeMap<String, SessionRecord>,
    mq_tokens: HashMap<String, ExpiringToken<String>>,
    queues: HashMap<i64, MessageQueue>,
    next_message_id: i64,
    runners: BTreeMap<i64, RunnerRecord>,
    jit_credentials: HashMap<String, JitCredential>,
    runner_tokens: HashMap<String, i64>,
    next_runner_id: i64,
    jobs: BTreeMap<i64, JobRecord>,
    next_job_id: i64,
    /// Calls per endpoint.
    pub counters: BTreeMap<String, u64>,
    /// Installed faults.
    pub faults: Vec<FaultEntry>,
    /// Id of the next fault.
    pub next_fault_id: u64,
}

fn bearer_mismatch() -> ApiError {
    ApiError::github(401, "Bad credentials")
}

impl State {
    /// Fresh state for an emulator serving at `base_url` (no trailing slash).
    pub fn new(cfg: EmulatorConfig, base_url: String) -> Self {
        let mut groups = vec![RunnerGroupRecord {
            id: 1,
            name: "Default".to_owned(),
            is_default_group: true,
        }];
        for (i, name) in cfg.runner_groups.iter().enumerate() {
            groups.push(RunnerGroupRecord {
                id: i64::try_from(i).unwrap_or(i64::MAX - 2).saturating_add(2),
                name: name.clone(),
                is_default_group: false,
            });
        }
        Self {
            cfg,
            base_url,
            tenant: 1,
            admin_key: tokens::random_key(),
            admin_generation: 0,
            admin_tokens: HashMap::new(),
            installation_tokens: HashMap::new(),
            registration_tokens: HashMap::new(),
            groups,
            scale_sets: BTreeMap::new(),
            next_scale_set_id: 1,
            sessions: BTreeMap::new(),
            mq_tokens: HashMap::new(),
            queues: HashMap::new(),
            next_message_id: 1,
            runners: BTreeMap::new(),
            jit_credentials: HashMap::new(),
            runner_tokens: HashMap::new(),
            next_runner_id: 1,
            jobs: BTreeMap::new(),
            next_job_id: 1001,
            counters: BTreeMap::new(),
            faults: Vec::new(),
            next_fault_id: 1,
        }
    }

    /// The Actions service base URL `S` (with trailing slash).
    pub fn actions_url(&self) -> String {
        format!("{}/tenant/{}/", self.base_url, self.tenant)
    }

    /// The emulator's own base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The tenant number currently served.
    pub fn tenant(&self) -> u64 {
        self.tenant
    }

    // ---------------------------------------------------------------- GitHub REST

    /// G1: mints an installation token after the App JWT was verified.
    pub fn installation_token(
        &mut self,
        jwt: &str,
        installation_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let skew = td(self.cfg.app_jwt_clock_skew).num_seconds();
        let max = td(self.cfg.app_jwt_max_lifetime).num_seconds();
        let app = tokens::verify_app_jwt(&self.cfg.apps, jwt, now.timestamp(), skew, max)
            .map_err(|m| ApiError::github(401, m))?;
        if app.installation_id != installation_id {
            return Err(ApiError::github(404, "Not Found"));
        }
        let token = tokens::opaque("ghs_");
        let expires_at = later(now, self.cfg.installation_token_lifetime);
        self.installation_tokens.insert(
            token.clone(),
            ExpiringToken {
                value: installation_id,
                expires_at,
            },
        );
        Ok(json!({
            "token": token,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": {"organization_self_hosted_runners": "write", "administration": "write"},
            "repository_selection": "all",
        }))
    }

    fn check_github_token(&self, token: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
        if self.cfg.pats.iter().any(|p| p.expose_secret() == token) {
            return Ok(());
        }
        match self.installation_tokens.get(token) {
            Some(t) if t.expires_at > now => Ok(()),
            _ => Err(bearer_mismatch()),
        }
    }

    /// G2: a registration token for `scope`.
    pub fn registration_token(
        &mut self,
        bearer: &str,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        self.check_github_token(bearer, now)?;
        let token = tokens::opaque("AABF");
        let expires_at = later(now, self.cfg.registration_token_lifetime);
        self.registration_tokens.insert(
            token.clone(),
            ExpiringToken {
                value: scope,
                expires_at,
            },
        );
        Ok(
            json!({"token": token, "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
        )
    }

    /// G3: checks the RemoteAuth registration token and body, returns `S` and an admin JWT.
    pub fn runner_registration(
        &mut self,
        reg_token: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let scope = match self.registration_tokens.get(reg_token) {
            Some(t) if t.expires_at > now => t.value.clone(),
            _ => return Err(ApiError::github(401, "Bad credentials")),
        };
        let parsed: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::github(400, format!("Problems parsing JSON: {e}")))?;
        let url = parsed
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::github(422, "Invalid request.\n\n\"url\" wasn't supplied."))?;
        if parsed.get("runner_event").and_then(Value::as_str) != Some("register") {
            return Err(ApiError::github(
                422,
                "Invalid request.\n\n\"runner_event\" must be \"register\".",
            ));
        }
        let url_scope = parse_config_url(url).map_err(|m| ApiError::github(422, m))?;
        if !url_scope.same_as(&scope) {
            return Err(ApiError::github(
                403,
                format!(
                    "Registration token was issued for {scope}, not for the scope of {url:?} ({url_scope})"
                ),
            ));
        }
        let iat = now.timestamp();
        let claims = AdminClaims {
            iss: "actions-emulator".to_owned(),
            aud: scope.to_string(),
            iat,
            nbf: iat,
            exp: (self.cfg.admin_token_style != AdminTokenStyle::WithoutExp)
                .then(|| iat.saturating_add(td(self.cfg.admin_token_lifetime).num_seconds())),
            generation: self.admin_generation,
        };
        let token = tokens::mint_admin(&self.admin_key, &claims, self.cfg.admin_token_style)
            .map_err(|e| ApiError::Plain {
                status: 500,
                body: format!("minting admin token failed: {e}"),
            })?;
        let generation = self.admin_generation;
        self.admin_tokens
            .retain(|_, c| c.generation >= generation && c.exp.is_none_or(|exp| exp > iat));
        self.admin_tokens.insert(token.clone(), claims);
        Ok(json!({"url": self.actions_url(), "token": token, "token_schema": "OAuthAccessToken"}))
    }

    /// Checks `Authorization: Bearer {admin}` on Actions service calls.
    pub fn check_admin(&self, bearer: Option<&str>, now: DateTime<Utc>) -> Result<(), ApiError> {
        let token = bearer.ok_or(ApiError::Unauthorized)?;
        match self.admin_tokens.get(token) {
            Some(c)
                if c.generation >= self.admin_generation
                    && c.exp.is_none_or(|exp| exp > now.timestamp()) =>
            {
                Ok(())
            }
            _ => Err(ApiError::Unauthorized),
        }
    }

    /// Control: every admin token issued so far stops working.
    pub fn expire_admin_tokens(&mut self) {
        self.admin_generation += 1;
    }

    /// Control: `S` changes; the old tenant path stops answering.
    pub fn rotate_tenant(&mut self) {
        self.tenant += 1;
    }

    // ---------------------------------------------------------------- runner groups

    /// A1: groups with this name (case-insensitive), or all groups.
    pub fn runner_groups(&self, name: Option<&str>) -> Value {
        let values = self
            .groups
            .iter()
            .filter(|g| name.is_none_or(|n| g.name.eq_ignore_ascii_case(n)))
            .map(|g| {
                let size = self
                    .scale_sets
                    .values()
                    .filter(|s| s.runner_group_id == g.id)
                    .count();
                json!({"id": g.id, "name": g.name, "size": size, "isDefaultGroup": g.is_default_group})
            })
            .collect();
        list(values)
    }

    fn group_name(&self, id: i64) -> String {
        self.groups
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.name.clone())
            .unwrap_or_default()
    }

    // ---------------------------------------------------------------- scale sets

    /// Statistics of a scale set, computed from jobs and runners.
    pub fn statistics(&self, scale_set_id: i64) -> Statistics {
        let mut s = Statistics::default();
        for job in self
            .jobs
            .values()
            .filter(|j| j.scale_set_id == Some(scale_set_id))
        {
            match job.phase {
                JobPhase::Available => s.total_available_jobs += 1,
                JobPhase::Acquired => s.total_acquired_jobs += 1,
                JobPhase::Assigned | JobPhase::PickedUp => s.total_assigned_jobs += 1,
                JobPhase::Running => {
                    s.total_assigned_jobs += 1;
                    s.total_running_jobs += 1;
                }
                JobPhase::Queued | JobPhase::Completed => {}
            }
        }
        for runner in self
            .runners
            .values()
            .filter(|r| r.scale_set_id == scale_set_id)
        {
            s.total_registered_runners += 1;
            if runner.job.is_some() {
                s.total_busy_runners += 1;
            } else {
                s.total_idle_runners += 1;
            }
        }
        s
    }

    fn scale_set_json(&self, ss: &ScaleSetRecord, with_stats: bool) -> Value {
        let labels: Vec<Value> = ss
            .labels
            .iter()
            .map(|l| json!({"type": "System", "name": l}))
            .collect();
        let stats = if with_stats {
            json!(self.statistics(ss.id))
        } else {
            Value::Null
        };
        json!({
            "id": ss.id,
            "name": ss.name,
            "runnerGroupId": ss.runner_group_id,
            "runnerGroupName": self.group_name(ss.runner_group_id),
            "labels": labels,
            "runnerSetting": {"ephemeral": true, "isElastic": true, "disableUpdate": ss.disable_update},
            "createdOn": ts(ss.created_on),
            "runnerJitConfigUrl": format!("{}_apis/runtime/runnerscalesets/{}/generatejitconfig", self.actions_url(), ss.id),
            "statistics": stats,
        })
    }

    fn scale_set_not_found(&self, id: i64) -> Result<Value, ApiError> {
        match &self.cfg.scale_set_not_found {
            Some(spec) => Err(ApiError::from_spec(
                spec,
                format!("Runner scale set {id} not found."),
            )),
            None => Ok(Value::Null),
        }
    }

    fn require_scale_set(&self, id: i64) -> Result<&ScaleSetRecord, ApiError> {
        self.scale_sets.get(&id).ok_or_else(|| {
            let spec = self.cfg.scale_set_not_found.clone().unwrap_or_else(|| {
                crate::config::ErrorSpec::new(404, "RunnerScaleSetNotFoundException")
            });
            ApiError::from_spec(&spec, format!("Runner scale set {id} not found."))
        })
    }

    /// A2 / P1: scale sets filtered by group and name.
    pub fn list_scale_sets(&self, group: Option<i64>, name: Option<&str>) -> Value {
        let values = self
            .scale_sets
            .values()
            .filter(|s| group.is_none_or(|g| s.runner_group_id == g))
            .filter(|s| name.is_none_or(|n| s.name.eq_ignore_ascii_case(n)))
            .map(|s| self.scale_set_json(s, true))
            .collect();
        list(values)
    }

    /// A3.
    pub fn get_scale_set(&self, id: i64) -> Result<Value, ApiError> {
        match self.scale_sets.get(&id) {
            Some(ss) => Ok(self.scale_set_json(ss, true)),
            None => self.scale_set_not_found(id),
        }
    }

    fn name_taken(&self, group: i64, name: &str, except: Option<i64>) -> bool {
        self.scale_sets.values().any(|s| {
            s.runner_group_id == group && s.name.eq_ignore_ascii_case(name) && Some(s.id) != except
        })
    }

    /// A4.
    pub fn create_scale_set(&mut self, body: &[u8], now: DateTime<Utc>) -> Result<Value, ApiError> {
        let obj = parse_object(body)?;
        let fields = ScaleSetFields::parse(&obj)?;
        let name = fields.name.filter(|n| !n.is_empty()).ok_or_else(|| {
            ApiError::bad_request("Runner scale set name is required (field \"name\").")
        })?;
        let group = fields.runner_group_id.filter(|g| *g != 0).unwrap_or(1);
        if !self.groups.iter().any(|g| g.id == group) {
            return Err(ApiError::vss(
                404,
                "RunnerGroupNotFoundException",
                format!("Runner group {group} not found."),
            ));
        }
        if self.name_taken(group, &name, None) {
            return Err(ApiError::from_spec(
                &self.cfg.duplicate_scale_set,
                format!(
                    "A runner scale set named '{name}' already exists in runner group {group}."
                ),
            ));
        }
        let labels = self.effective_labels(&name, fields.labels.unwrap_or_default());
        let id = self.next_scale_set_id;
        self.next_scale_set_id += 1;
        let record = ScaleSetRecord {
            id,
            name,
            runner_group_id: group,
            labels,
            disable_update: fields.disable_update.unwrap_or(false),
            created_on: now,
            max_capacity: None,
            statistics: Statistics::default(),
        };
        let out = self.scale_set_json(&record, false);
        self.scale_sets.insert(id, record);
        self.queues.entry(id).or_default();
        Ok(out)
    }

    fn effective_labels(&self, name: &str, requested: Vec<String>) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        let source = if requested.is_empty() {
            vec![name.to_owned()]
        } else {
            requested
        };
        for l in source {
            if !l.is_empty() && !labels.iter().any(|x| x.eq_ignore_ascii_case(&l)) {
                labels.push(l);
            }
        }
        if !self.cfg.custom_labels_enabled {
            labels = vec![name.to_owned()];
        }
        labels
    }

    /// A5: merges non-zero fields.
    pub fn update_scale_set(&mut self, id: i64, body: &[u8]) -> Result<Value, ApiError> {
        let obj = parse_object(body)?;
        let fields = ScaleSetFields::parse(&obj)?;
        let current = self.require_scale_set(id)?.clone();
        let name = fields
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| current.name.clone());
        let group = fields
            .runner_group_id
            .filter(|g| *g != 0)
            .unwrap_or(current.runner_group_id);
        if !self.groups.iter().any(|g| g.id == group) {
            return Err(ApiError::vss(
                404,
                "RunnerGroupNotFoundException",
                format!("Runner group {group} not found."),
            ));
        }
        if self.name_taken(group, &name, Some(id)) {
            return Err(ApiError::from_spec(
                &self.cfg.duplicate_scale_set,
                format!(
                    "A runner scale set named '{name}' already exists in runner group {group}."
                ),
            ));
        }
        let labels = match fields.labels {
            Some(l) if !l.is_empty() => self.effective_labels(&name, l),
            _ => current.labels.clone(),
        };
        let record = ScaleSetRecord {
            name,
            runner_group_id: group,
            labels,
            disable_update: current.disable_update || fields.disable_update == Some(true),
            ..current
        };
        let out = self.scale_set_json(&record, true);
        self.scale_sets.insert(id, record);
        Ok(out)
    }

    /// A6 and the "lose a scale set" fault: removes the set, ends its sessions, drops its runners,
    /// requeues its waiting jobs and cancels its running ones.
    pub fn delete_scale_set(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), ApiError> {
        self.require_scale_set(id)?;
        self.scale_sets.remove(&id);
        self.queues.remove(&id);
        for s in self.sessions.values_mut().filter(|s| s.scale_set_id == id) {
            if s.state == SessionState::Active {
                s.state = SessionState::Deleted;
            }
        }
        let runner_ids: Vec<i64> = self
            .runners
            .values()
            .filter(|r| r.scale_set_id == id)
            .map(|r| r.id)
            .collect();
        for rid in runner_ids {
            self.drop_runner(rid);
        }
        for job in self
            .jobs
            .values_mut()
            .filter(|j| j.scale_set_id == Some(id))
        {
            match job.phase {
                JobPhase::Available | JobPhase::Acquired | JobPhase::Assigned => {
                    job.phase = JobPhase::Queued;
                    job.scale_set_id = None;
                }
                JobPhase::PickedUp | JobPhase::Running => {
                    job.phase = JobPhase::Completed;
                    job.result = Some(JobResult::Canceled);
                    job.completed_at = Some(now);
                }
                JobPhase::Queued | JobPhase::Completed => {}
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- sessions

    fn session_alive(&self, s: &SessionRecord, now: DateTime<Utc>) -> bool {
        s.state == SessionState::Active
            && (s.polls_in_flight > 0 || now - s.last_seen < td(self.cfg.session_expiry))
    }

    fn session_json(&self, s: &SessionRecord, token: &str) -> Value {
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

    fn new_mq_token(&mut self, session_id: &str, now: DateTime<Utc>) -> String {
        self.mq_tokens.retain(|_, t| t.value != session_id);
        let token = tokens::opaque("mq_");
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

    fn session_gone(&self, id: &str) -> ApiError {
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

    // ---------------------------------------------------------------- message queue

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
        let found = queue
            .messages
            .range(floor.saturating_add(1)..)
            .next()
            .map(|(id, body)| (*id, body.clone()));
        let (id, items) = match found {
            Some(m) => m,
            None if !queue.pending.is_empty() => {
                let n = queue.pending.len().min(max);
                let items: Vec<Value> = queue.pending.drain(..n).collect();
                let id = self.next_message_id.max(floor.saturating_add(1));
                self.next_message_id = id + 1;
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

    /// Q2.
    pub fn delete_message(&mut self, session_id: &str, message_id: i64) -> Result<(), ApiError> {
        let removed = self
            .session_scale_set(session_id)
            .and_then(|ss| self.queues.get_mut(&ss))
            .and_then(|q| q.messages.remove(&message_id));
        match removed {
            Some(_) => Ok(()),
            None => Err(ApiError::from_spec(
                &self.cfg.message_not_found,
                format!("Message {message_id} was not found."),
            )),
        }
    }

    fn emit(&mut self, scale_set_id: i64, message: Value) {
        if let Some(q) = self.queues.get_mut(&scale_set_id) {
            q.pending.push_back(message);
        }
    }

    fn job_message(&self, kind: &str, job: &JobRecord) -> Value {
        let spec = &job.spec;
        let mut m = json!({
            "messageType": kind,
            "runnerRequestId": job.id,
            "repositoryName": spec.repository,
            "ownerName": spec.owner,
            "jobId": job.job_id,
            "jobWorkflowRef": format!("{}/{}/{}@{}", spec.owner, spec.repository, spec.workflow_path, spec.git_ref),
            "jobDisplayName": spec.display_name,
            "workflowRunId": job.workflow_run_id,
            "eventName": spec.event_name,
            "requestLabels": spec.labels,
            "queueTime": ts(job.queued_at),
            "scaleSetAssignTime": ts_opt(job.assigned_at),
            "runnerAssignTime": ts_opt(job.runner_assigned_at),
            "finishTime": ts_opt(job.completed_at),
        });
        if let Value::Object(obj) = &mut m {
            match kind {
                "JobAvailable" => {
                    let ss = job.scale_set_id.unwrap_or(0);
                    obj.insert(
                        "acquireJobUrl".into(),
                        json!(format!(
                            "{}_apis/runtime/runnerscalesets/{ss}/acquirejobs",
                            self.actions_url()
                        )),
                    );
                }
                "JobStarted" | "JobCompleted" => {
                    obj.insert("runnerId".into(), json!(job.runner_id.unwrap_or(0)));
                    obj.insert(
                        "runnerName".into(),
                        json!(job.runner_name.clone().unwrap_or_default()),
                    );
                    if kind == "JobCompleted" {
                        obj.insert(
                            "result".into(),
                            json!(job.result.unwrap_or(JobResult::Canceled).as_str()),
                        );
                    }
                }
                _ => {}
            }
        }
        m
    }

    fn emit_job(&mut self, kind: &str, job_id: i64) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let Some(ss) = job.scale_set_id else {
            return;
        };
        let m = self.job_message(kind, job);
        self.emit(ss, m);
    }

    // ---------------------------------------------------------------- jobs

    /// Queues a job; it is offered to a matching scale set on the next advance.
    pub fn queue_job(&mut self, spec: JobSpec, now: DateTime<Utc>) -> i64 {
        let id = self.next_job_id;
        self.next_job_id += 1;
        self.jobs.insert(
            id,
            JobRecord {
                id,
                job_id: uuid::Uuid::new_v4().to_string(),
                workflow_run_id: 5000 + id,
                spec,
                phase: JobPhase::Queued,
                scale_set_id: None,
                runner_id: None,
                runner_name: None,
                requeues: 0,
                result: None,
                queued_at: now,
                available_at: None,
                acquired_at: None,
                assigned_at: None,
                runner_assigned_at: None,
                started_at: None,
                completed_at: None,
            },
        );
        id
    }

    /// Cancels a job that has not started (it completes as `canceled`).
    pub fn cancel_job(&mut self, job_id: i64, now: DateTime<Utc>) -> bool {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        if matches!(job.phase, JobPhase::Completed) {
            return false;
        }
        let was_offered = job.scale_set_id.is_some();
        job.phase = JobPhase::Completed;
        job.result = Some(JobResult::Canceled);
        job.completed_at = Some(now);
        let runner = job.runner_id;
        if was_offered {
            self.emit_job("JobCompleted", job_id);
        }
        if let Some(rid) = runner {
            self.drop_runner(rid);
        }
        true
    }

    /// A10: acquires the ids still available to this scale set.
    pub fn acquire_jobs(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        if self.session_scale_set(session_id) != Some(scale_set_id) {
            return Err(ApiError::Unauthorized);
        }
        let ids: Vec<i64> = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "The request body must be a JSON array of runnerRequestId integers: {e}"
            ))
        })?;
        let mut acquired = Vec::new();
        for id in ids {
            if let Some(job) = self.jobs.get_mut(&id)
                && job.phase == JobPhase::Available
                && job.scale_set_id == Some(scale_set_id)
            {
                job.phase = JobPhase::Acquired;
                job.acquired_at = Some(now);
                acquired.push(json!(id));
            }
        }
        Ok(list(acquired))
    }

    /// L1 (legacy): the jobs currently offered to a scale set; `None` when there are none (204).
    pub fn acquirable_jobs(&self, scale_set_id: i64) -> Result<Option<Value>, ApiError> {
        self.require_scale_set(scale_set_id)?;
        let values: Vec<Value> = self
            .jobs
            .values()
            .filter(|j| j.phase == JobPhase::Available && j.scale_set_id == Some(scale_set_id))
            .map(|j| {
                let mut m = self.job_message("JobAvailable", j);
                if let Value::Object(o) = &mut m {
                    o.retain(|k, _| {
                        matches!(
                            k.as_str(),
                            "acquireJobUrl"
                                | "messageType"
                                | "runnerRequestId"
                                | "repositoryName"
                                | "ownerName"
                                | "jobWorkflowRef"
                                | "eventName"
                                | "requestLabels"
                        )
                    });
                }
                m
            })
            .collect();
        Ok((!values.is_empty()).then(|| list(values)))
    }

    fn matches(ss: &ScaleSetRecord, labels: &[String]) -> bool {
        labels
            .iter()
            .all(|l| ss.labels.iter().any(|s| s.eq_ignore_ascii_case(l)))
    }

    fn load(&self, scale_set_id: i64) -> i64 {
        let n = self
            .jobs
            .values()
            .filter(|j| {
                j.scale_set_id == Some(scale_set_id)
                    && !matches!(j.phase, JobPhase::Queued | JobPhase::Completed)
            })
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// Runs every due transition: session expiry, offers, auto-acquire, assignment, runner pickup,
    /// pickup timeouts. Idempotent; called after every mutation and by the background clock.
    /// Returns whether anything changed.
    pub fn advance(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        let expiry = td(self.cfg.session_expiry);
        for s in self.sessions.values_mut() {
            if s.state == SessionState::Active
                && s.polls_in_flight == 0
                && now - s.last_seen >= expiry
            {
                s.state = SessionState::Expired;
                changed = true;
            }
        }
        changed |= self.offer_queued(now);
        if let Some(after) = self.cfg.auto_acquire_after {
            let after = td(after);
            for job in self.jobs.values_mut() {
                if job.phase == JobPhase::Available
                    && job.available_at.is_some_and(|t| now - t >= after)
                {
                    job.phase = JobPhase::Acquired;
                    job.acquired_at = Some(now);
                    changed = true;
                }
            }
        }
        let delay = td(self.cfg.assign_delay);
        let to_assign: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| {
                j.phase == JobPhase::Acquired && j.acquired_at.is_some_and(|t| now - t >= delay)
            })
            .map(|j| j.id)
            .collect();
        changed |= !to_assign.is_empty();
        for id in to_assign {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.phase = JobPhase::Assigned;
                job.assigned_at = Some(now);
            }
            self.emit_job("JobAssigned", id);
        }
        changed |= self.pick_up(now);
        changed |= self.pickup_timeouts(now);
        changed |= self.lost_runners(now);
        changed
    }

    /// Runners that took a job and then fell silent: a running job past its duration plus
    /// `lost_runner_timeout` fails, a picked-up job not started within the timeout goes back to
    /// assigned; the runner goes offline (registered, removable with A14).
    fn lost_runners(&mut self, now: DateTime<Utc>) -> bool {
        let timeout = self.cfg.lost_runner_timeout;
        let lost: Vec<(i64, i64)> = self
            .jobs
            .values()
            .filter_map(|j| {
                let rid = j.runner_id?;
                let overdue = match j.phase {
                    JobPhase::Running => j
                        .started_at
                        .is_some_and(|t| now >= later(later(t, j.spec.duration), timeout)),
                    JobPhase::PickedUp => j
                        .runner_assigned_at
                        .is_some_and(|t| now >= later(t, timeout)),
                    _ => false,
                };
                overdue.then_some((j.id, rid))
            })
            .collect();
        for (job_id, rid) in &lost {
            let Some(job) = self.jobs.get_mut(job_id) else {
                continue;
            };
            if job.phase == JobPhase::Running {
                job.phase = JobPhase::Completed;
                job.result = Some(JobResult::Failed);
                job.completed_at = Some(now);
                self.emit_job("JobCompleted", *job_id);
            } else {
                job.phase = JobPhase::Assigned;
                job.runner_id = None;
                job.runner_name = None;
                job.runner_assigned_at = None;
            }
            if let Some(r) = self.runners.get_mut(rid) {
                r.job = None;
                r.connected_at = None;
            }
            self.runner_tokens.retain(|_, r| r != rid);
        }
        !lost.is_empty()
    }

    fn offer_queued(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        let queued: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.phase == JobPhase::Queued)
            .map(|j| j.id)
            .collect();
        for id in queued {
            let Some(labels) = self.jobs.get(&id).map(|j| j.spec.labels.clone()) else {
                continue;
            };
            let mut candidates: Vec<(bool, i64)> = self
                .scale_sets
                .values()
                .filter(|ss| Self::matches(ss, &labels))
                .filter(|ss| {
                    !self.cfg.respect_max_capacity
                        || ss.max_capacity.is_none_or(|c| self.load(ss.id) < c)
                })
                .map(|ss| {
                    let has_session = self
                        .sessions
                        .values()
                        .any(|s| s.scale_set_id == ss.id && s.state == SessionState::Active);
                    (!has_session, ss.id)
                })
                .collect();
            candidates.sort();
            let Some((_, ss)) = candidates.first().copied() else {
                continue;
            };
            if let Some(job) = self.jobs.get_mut(&id) {
                job.phase = JobPhase::Available;
                job.scale_set_id = Some(ss);
                job.available_at = Some(now);
                job.acquired_at = None;
                job.assigned_at = None;
                job.runner_assigned_at = None;
            }
            self.emit_job("JobAvailable", id);
            changed = true;
        }
        changed
    }

    fn pick_up(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        let idle: Vec<(i64, i64)> = self
            .runners
            .values()
            .filter(|r| r.connected_at.is_some() && r.job.is_none())
            .map(|r| (r.id, r.scale_set_id))
            .collect();
        for (rid, ss) in idle {
            let Some(job_id) = self
                .jobs
                .values()
                .find(|j| j.phase == JobPhase::Assigned && j.scale_set_id == Some(ss))
                .map(|j| j.id)
            else {
                continue;
            };
            let name = self
                .runners
                .get(&rid)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.phase = JobPhase::PickedUp;
                job.runner_id = Some(rid);
                job.runner_name = Some(name);
                job.runner_assigned_at = Some(now);
            }
            if let Some(r) = self.runners.get_mut(&rid) {
                r.job = Some(job_id);
            }
            changed = true;
        }
        changed
    }

    fn pickup_timeouts(&mut self, now: DateTime<Utc>) -> bool {
        let timeout = td(self.cfg.runner_pickup_timeout);
        let expired: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| {
                j.phase == JobPhase::Assigned && j.assigned_at.is_some_and(|t| now - t >= timeout)
            })
            .map(|j| j.id)
            .collect();
        let changed = !expired.is_empty();
        for id in expired {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            job.result = Some(JobResult::Canceled);
            job.completed_at = Some(now);
            let snapshot = job.clone();
            let m = self.job_message("JobCompleted", &snapshot);
            if let Some(ss) = snapshot.scale_set_id {
                self.emit(ss, m);
            }
            let max = self.cfg.max_requeues;
            if let Some(job) = self.jobs.get_mut(&id) {
                if job.requeues < max {
                    job.requeues += 1;
                    job.phase = JobPhase::Queued;
                    job.scale_set_id = None;
                    job.result = None;
                    job.completed_at = None;
                } else {
                    job.phase = JobPhase::Completed;
                }
            }
        }
        changed
    }

    // ---------------------------------------------------------------- runners

    fn runner_json(&self, r: &RunnerRecord) -> Value {
        json!({
            "id": r.id,
            "name": r.name,
            "runnerScaleSetId": r.scale_set_id,
            "status": if r.connected_at.is_some() { "online" } else { "offline" },
            "busy": r.job.is_some(),
            "ephemeral": true,
        })
    }

    /// A11.
    pub fn generate_jit(
        &mut self,
        scale_set_id: i64,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let obj = parse_object(body)?;
        let name = match get_ci(&obj, "name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "Field \"name\" must be a non-empty string.",
                ));
            }
        };
        let work_folder = match get_ci(&obj, "workFolder") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Field \"workFolder\" must be a string.",
                ));
            }
        };
        let ss = self.require_scale_set(scale_set_id)?.clone();
        if self
            .runners
            .values()
            .any(|r| r.name.eq_ignore_ascii_case(&name))
        {
            return Err(ApiError::vss(
                409,
                "TaskAgentExistsException",
                format!("Runner '{name}' already exists."),
            ));
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let client_id = uuid::Uuid::new_v4().to_string();
        let secret = tokens::opaque("");
        let encoded = self.encode_jit(id, &name, &ss, &work_folder, &client_id, &secret);
        self.jit_credentials.insert(
            client_id,
            JitCredential {
                runner_id: id,
                secret,
            },
        );
        let record = RunnerRecord {
            id,
            name,
            scale_set_id,
            work_folder,
            registered_at: now,
            connected_at: None,
            job: None,
        };
        let runner =
            json!({"id": record.id, "name": record.name, "runnerScaleSetId": scale_set_id});
        self.runners.insert(id, record);
        Ok(json!({"runner": runner, "encodedJITConfig": encoded}))
    }

    fn encode_jit(
        &self,
        id: i64,
        name: &str,
        ss: &ScaleSetRecord,
        work_folder: &str,
        client_id: &str,
        secret: &str,
    ) -> String {
        let s = self.actions_url();
        let runner = json!({
            "AgentId": id.to_string(),
            "AgentName": name,
            "PoolId": 0,
            "PoolName": self.group_name(ss.runner_group_id),
            "ServerUrl": s,
            "GitHubUrl": self.base_url,
            "WorkFolder": if work_folder.is_empty() { "_work" } else { work_folder },
            "Ephemeral": true,
            "DisableUpdate": ss.disable_update,
            "RunnerScaleSetId": ss.id,
            "EmulatorRunnerApiUrl": format!("{}/_runner/", self.base_url),
        });
        let credentials = json!({
            "Scheme": "OAuth",
            "Data": {
                "ClientId": client_id,
                "AuthorizationUrl": format!("{s}_apis/oauth2/token/{client_id}"),
                "RequireFipsCryptography": "True",
            }
        });
        let rsa = json!({"d": secret, "exponent": "AQAB"});
        let files = json!({
            ".runner": STANDARD.encode(runner.to_string()),
            ".credentials": STANDARD.encode(credentials.to_string()),
            ".credentials_rsaparams": STANDARD.encode(rsa.to_string()),
        });
        STANDARD.encode(files.to_string())
    }

    /// A12.
    pub fn get_runner(&self, id: i64) -> Result<Value, ApiError> {
        self.runners
            .get(&id)
            .map(|r| self.runner_json(r))
            .ok_or_else(|| {
                ApiError::vss(
                    404,
                    "TaskAgentNotFoundException",
                    format!("No runner with id {id} exists."),
                )
            })
    }

    /// A13.
    pub fn runners_by_name(&self, name: Option<&str>) -> Value {
        let values = self
            .runners
            .values()
            .filter(|r| name.is_none_or(|n| r.name.eq_ignore_ascii_case(n)))
            .map(|r| self.runner_json(r))
            .collect();
        list(values)
    }

    /// A14: 204 for unknown or idle runners, JobStillRunning for busy ones.
    pub fn remove_runner(&mut self, id: i64) -> Result<(), ApiError> {
        if let Some(r) = self.runners.get(&id)
            && r.job.is_some()
        {
            return Err(ApiError::vss(
                400,
                "TaskAgentJobStillRunningException",
                format!("Runner {} is still running a job.", r.name),
            ));
        }
        self.drop_runner(id);
        Ok(())
    }

    fn drop_runner(&mut self, id: i64) {
        self.runners.remove(&id);
        self.jit_credentials.retain(|_, c| c.runner_id != id);
        self.runner_tokens.retain(|_, r| *r != id);
    }

    // ---------------------------------------------------------------- runner side

    /// A simulated runner presents its JIT config; works once.
    pub fn runner_connect(
        &mut self,
        encoded: &str,
        now: DateTime<Utc>,
    ) -> Result<RunnerConnection, ApiError> {
        let invalid = || ApiError::Plain {
            status: 401,
            body: "JIT configuration is invalid, unknown or already used.".to_owned(),
        };
        let (client_id, secret) = decode_jit(encoded).ok_or_else(invalid)?;
        let cred = self.jit_credentials.get(&client_id).ok_or_else(invalid)?;
        if cred.secret != secret {
            return Err(invalid());
        }
        let runner_id = cred.runner_id;
        self.jit_credentials.remove(&client_id);
        let deprecated = self.cfg.runner_version_deprecated;
        let runner = self.runners.get_mut(&runner_id).ok_or_else(invalid)?;
        if deprecated {
            return Ok(RunnerConnection {
                runner_id,
                runner_name: runner.name.clone(),
                scale_set_id: runner.scale_set_id,
                runner_token: String::new(),
                version_deprecated: true,
            });
        }
        runner.connected_at = Some(now);
        let token = tokens::opaque("rt_");
        let conn = RunnerConnection {
            runner_id,
            runner_name: runner.name.clone(),
            scale_set_id: runner.scale_set_id,
            runner_token: token.clone(),
            version_deprecated: false,
        };
        self.runner_tokens.insert(token, runner_id);
        Ok(conn)
    }

    fn runner_for_token(&self, token: &str) -> Result<i64, ApiError> {
        self.runner_tokens
            .get(token)
            .copied()
            .ok_or(ApiError::Plain {
                status: 404,
                body: "Runner is not registered (removed, completed or never connected)."
                    .to_owned(),
            })
    }

    /// The job picked up by the runner, if any yet.
    pub fn runner_job(&self, token: &str) -> Result<Option<RunnerJob>, ApiError> {
        let rid = self.runner_for_token(token)?;
        let job = self
            .runners
            .get(&rid)
            .and_then(|r| r.job)
            .and_then(|j| self.jobs.get(&j));
        Ok(job.map(|j| RunnerJob {
            runner_request_id: j.id,
            job_id: j.job_id.clone(),
            duration: j.spec.duration,
            result: j.spec.result,
            labels: j.spec.labels.clone(),
        }))
    }

    fn runner_current_job(&self, token: &str) -> Result<(i64, i64), ApiError> {
        let rid = self.runner_for_token(token)?;
        let job = self
            .runners
            .get(&rid)
            .and_then(|r| r.job)
            .ok_or(ApiError::Plain {
                status: 409,
                body: "Runner has no job.".to_owned(),
            })?;
        Ok((rid, job))
    }

    /// The runner reports that its job started (`JobStarted`).
    pub fn runner_started(&mut self, token: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
        let (_, job_id) = self.runner_current_job(token)?;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Err(ApiError::not_found());
        };
        if job.phase != JobPhase::PickedUp {
            return Err(ApiError::Plain {
                status: 409,
                body: format!("Job {job_id} is {:?}, not waiting to start.", job.phase),
            });
        }
        job.phase = JobPhase::Running;
        job.started_at = Some(now);
        self.emit_job("JobStarted", job_id);
        Ok(())
    }

    /// The runner reports completion (`JobCompleted`); the ephemeral runner is deregistered.
    pub fn runner_completed(
        &mut self,
        token: &str,
        result: Option<JobResult>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let (rid, job_id) = self.runner_current_job(token)?;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Err(ApiError::not_found());
        };
        if job.phase == JobPhase::PickedUp {
            job.started_at = Some(now);
            job.phase = JobPhase::Running;
            self.emit_job("JobStarted", job_id);
        }
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Err(ApiError::not_found());
        };
        job.phase = JobPhase::Completed;
        job.result = Some(result.unwrap_or(job.spec.result));
        job.completed_at = Some(now);
        self.emit_job("JobCompleted", job_id);
        self.drop_runner(rid);
        Ok(())
    }

    /// The runner goes away without finishing its job: a picked-up job goes back to assigned, a
    /// running one fails (`JobCompleted{result:"failed"}`, as when GitHub loses a runner). The
    /// runner stays registered, offline, until removed (A14).
    pub fn runner_disconnect(&mut self, token: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
        let rid = self.runner_for_token(token)?;
        let job_id = self.runners.get(&rid).and_then(|r| r.job);
        if let Some(job_id) = job_id
            && let Some(job) = self.jobs.get_mut(&job_id)
        {
            match job.phase {
                JobPhase::PickedUp => {
                    job.phase = JobPhase::Assigned;
                    job.runner_id = None;
                    job.runner_name = None;
                    job.runner_assigned_at = None;
                }
                JobPhase::Running => {
                    job.phase = JobPhase::Completed;
                    job.result = Some(JobResult::Failed);
                    job.completed_at = Some(now);
                    self.emit_job("JobCompleted", job_id);
                }
                _ => {}
            }
        }
        if let Some(r) = self.runners.get_mut(&rid) {
            r.job = None;
            r.connected_at = None;
        }
        self.runner_tokens.retain(|_, r| *r != rid);
        Ok(())
    }

    // ---------------------------------------------------------------- faults

    /// Installs a fault; returns its id.
    pub fn add_fault(&mut self, fault: crate::faults::Fault) -> u64 {
        let id = self.next_fault_id;
        self.next_fault_id += 1;
        self.faults.push(FaultEntry {
            id,
            fault,
            fired: 0,
        });
        id
    }

    /// Removes one fault; false if it was not installed (or already used up).
    pub fn remove_fault(&mut self, id: u64) -> bool {
        let before = self.faults.len();
        self.faults.retain(|f| f.id != id);
        self.faults.len() != before
    }

    // ---------------------------------------------------------------- snapshot

    /// A full snapshot (no secrets).
    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            actions_url: self.actions_url(),
            runner_groups: self.groups.clone(),
            scale_sets: self
                .scale_sets
                .values()
                .map(|s| ScaleSetRecord {
                    statistics: self.statistics(s.id),
                    ..s.clone()
                })
                .collect(),
            sessions: self.sessions.values().cloned().collect(),
            runners: self.runners.values().cloned().collect(),
            jobs: self.jobs.values().cloned().collect(),
            counters: self.counters.clone(),
        }
    }
}

fn decode_jit(encoded: &str) -> Option<(String, String)> {
    let outer: Map<String, Value> =
        serde_json::from_slice(&STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let file = |name: &str| -> Option<Value> {
        let b64 = outer.get(name)?.as_str()?;
        serde_json::from_slice(&STANDARD.decode(b64).ok()?).ok()
    };
    let creds = file(".credentials")?;
    let client_id = creds.get("Data")?.get("ClientId")?.as_str()?.to_owned();
    let rsa = file(".credentials_rsaparams")?;
    let secret = rsa.get("d")?.as_str()?.to_owned();
    Some((client_id, secret))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

/// Scale-set fields read leniently from a create or update body.
struct ScaleSetFields {
    name: Option<String>,
    runner_group_id: Option<i64>,
    labels: Option<Vec<String>>,
    disable_update: Option<bool>,
}

impl ScaleSetFields {
    fn parse(obj: &Map<String, Value>) -> Result<Self, ApiError> {
        let name = match get_ci(obj, "name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::bad_request("Field \"name\" must be a string.")),
        };
        let runner_group_id = match get_ci(obj, "runnerGroupId") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Field \"runnerGroupId\" must be an integer, got {v}."
                ))
            })?),
        };
        let labels = match get_ci(obj, "labels") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let label = item
                        .as_object()
                        .and_then(|o| get_ci(o, "name"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "Each label must be an object {{\"type\",\"name\"}}, got {item}."
                            ))
                        })?;
                    out.push(label.to_owned());
                }
                Some(out)
            }
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "Field \"labels\" must be an array, got {v}."
                )));
            }
        };
        let disable_update = match get_ci(obj, "runnerSetting") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => match get_ci(o, "disableUpdate") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(v) => {
                    return Err(ApiError::bad_request(format!(
                        "Field \"runnerSetting.disableUpdate\" must be a boolean, got {v}."
                    )));
                }
            },
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "Field \"runnerSetting\" must be an object, got {v}."
                )));
            }
        };
        Ok(Self {
            name,
            runner_group_id,
            labels,
            disable_update,
        })
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
