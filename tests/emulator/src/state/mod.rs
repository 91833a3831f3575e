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
    /// Envelopes pushed verbatim through the control API (poison messages and the like).
    raw: BTreeMap<i64, Value>,
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
    /// Bumped whenever a runner's job wait can end: a runner got a job, or lost its token.
    /// Only such changes wake the runners' job waits ([`crate::server::Shared`]).
    pub(crate) runner_jobs_epoch: u64,
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
    /// Every credential issued so far, with its kind (see [`State::issued_secrets`]).
    issued: Vec<(&'static str, String)>,
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
            issued: Vec::new(),
            next_runner_id: 1,
            jobs: BTreeMap::new(),
            next_job_id: 1001,
            counters: BTreeMap::new(),
            faults: Vec::new(),
            next_fault_id: 1,
            runner_jobs_epoch: 0,
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

    /// Every credential this emulator issued (installation, registration, admin, message-queue
    /// and runner tokens, JIT configs and the secrets inside them) with its kind, oldest first,
    /// including those that expired or were used up.
    pub fn issued_secrets(&self) -> &[(&'static str, String)] {
        &self.issued
    }

    fn issue(&mut self, kind: &'static str, value: &str) {
        self.issued.push((kind, value.to_owned()));
    }

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

mod github;
mod jobs;
mod runners;
mod scale_sets;
mod sessions;

#[cfg(test)]
mod tests;
