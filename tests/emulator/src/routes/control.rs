//! The control API under `/_emulator/…` (JSON): state, jobs, faults, token and session expiry,
//! scale-set loss, clock, counters and the call log. Never counted, never faulted.

use std::time::Duration;

use axum::response::Response;
use http::Method;
use serde::Deserialize;
use serde_json::json;

use crate::faults::Fault;
use crate::model::JobSpec;
use crate::server::Shared;
use crate::wire::{empty_response, json_response};

/// Runtime-adjustable configuration knobs (`PATCH /_emulator/config`); absent keys are unchanged.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigPatch {
    /// [`crate::EmulatorConfig::long_poll_hold`] in ms.
    pub long_poll_hold_ms: Option<u64>,
    /// [`crate::EmulatorConfig::admin_token_lifetime`] in seconds.
    pub admin_token_lifetime_secs: Option<u64>,
    /// [`crate::EmulatorConfig::message_queue_token_lifetime`] in seconds.
    pub message_queue_token_lifetime_secs: Option<u64>,
    /// [`crate::EmulatorConfig::session_expiry`] in seconds.
    pub session_expiry_secs: Option<u64>,
    /// [`crate::EmulatorConfig::runner_pickup_timeout`] in ms.
    pub runner_pickup_timeout_ms: Option<u64>,
    /// [`crate::EmulatorConfig::auto_acquire_after`] in ms; a negative value turns it off.
    pub auto_acquire_after_ms: Option<i64>,
    /// [`crate::EmulatorConfig::custom_labels_enabled`].
    pub custom_labels_enabled: Option<bool>,
    /// [`crate::EmulatorConfig::max_jobs_per_message`].
    pub max_jobs_per_message: Option<usize>,
    /// [`crate::EmulatorConfig::max_requeues`].
    pub max_requeues: Option<u32>,
    /// [`crate::EmulatorConfig::lost_runner_timeout`] in ms.
    pub lost_runner_timeout_ms: Option<u64>,
    /// [`crate::EmulatorConfig::runner_version_deprecated`].
    pub runner_version_deprecated: Option<bool>,
}

impl ConfigPatch {
    /// Applies the present keys.
    pub fn apply(&self, cfg: &mut crate::EmulatorConfig) {
        if let Some(v) = self.long_poll_hold_ms {
            cfg.long_poll_hold = Duration::from_millis(v);
        }
        if let Some(v) = self.admin_token_lifetime_secs {
            cfg.admin_token_lifetime = Duration::from_secs(v);
        }
        if let Some(v) = self.message_queue_token_lifetime_secs {
            cfg.message_queue_token_lifetime = Duration::from_secs(v);
        }
        if let Some(v) = self.session_expiry_secs {
            cfg.session_expiry = Duration::from_secs(v);
        }
        if let Some(v) = self.runner_pickup_timeout_ms {
            cfg.runner_pickup_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.auto_acquire_after_ms {
            cfg.auto_acquire_after = u64::try_from(v).ok().map(Duration::from_millis);
        }
        if let Some(v) = self.custom_labels_enabled {
            cfg.custom_labels_enabled = v;
        }
        if let Some(v) = self.max_jobs_per_message {
            cfg.max_jobs_per_message = v.max(1);
        }
        if let Some(v) = self.max_requeues {
            cfg.max_requeues = v;
        }
        if let Some(v) = self.lost_runner_timeout_ms {
            cfg.lost_runner_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.runner_version_deprecated {
            cfg.runner_version_deprecated = v;
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    ms: u64,
}

/// A control-API error: status and message, rendered as `{"error": message}`.
struct ControlError(u16, String);

fn error(status: u16, message: String) -> ControlError {
    ControlError(status, message)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ControlError> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| error(400, format!("invalid body, expected {shape}: {e}")))
}

fn id(raw: &str, what: &str) -> Result<i64, ControlError> {
    raw.parse()
        .map_err(|_| error(400, format!("{what} must be an integer, got {raw:?}")))
}

fn found(ok: bool, what: String) -> Result<Response, ControlError> {
    if ok {
        Ok(empty_response(204))
    } else {
        Err(error(404, format!("{what} not found")))
    }
}

/// Handles one control request.
pub(crate) async fn handle(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response {
    route(shared, method, path, body).unwrap_or_else(|ControlError(status, message)| {
        json_response(status, &json!({"error": message}))
    })
}

fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Response, ControlError> {
    let segs: Vec<&str> = path
        .trim_start_matches("/_emulator")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let m = method.clone();
    Ok(match (m, segs.as_slice()) {
        (Method::GET, []) => {
            let (url, actions) = shared.read(|st, _| (st.base_url().to_owned(), st.actions_url()));
            json_response(200, &json!({"url": url, "actionsUrl": actions}))
        }
        (Method::GET, ["state"]) => json_response(200, &json!(shared.read(|st, _| st.snapshot()))),
        (Method::GET, ["counters"]) => {
            json_response(200, &json!(shared.read(|st, _| st.counters.clone())))
        }
        (Method::DELETE, ["counters"]) => {
            shared.reset_calls();
            empty_response(204)
        }
        (Method::GET, ["calls"]) => json_response(200, &json!(shared.calls())),
        (Method::POST, ["jobs"]) => {
            let spec: JobSpec = parse(body, "a JobSpec {labels, durationMs, result, ...}")?;
            let id = shared.mutate(|st, now| st.queue_job(spec, now));
            json_response(200, &json!({"id": id}))
        }
        (Method::POST, ["jobs", job, "cancel"]) => {
            let job = id(job, "job id")?;
            found(
                shared.mutate(|st, now| st.cancel_job(job, now)),
                format!("unfinished job {job}"),
            )?
        }
        (Method::GET, ["faults"]) => {
            json_response(200, &json!(shared.read(|st, _| st.faults.clone())))
        }
        (Method::POST, ["faults"]) => {
            let fault: Fault = parse(body, "a Fault {endpoint, kind: {type, ...}, times, rate}")?;
            if let Some(e) = &fault.endpoint
                && let Err(msg) = e.parse::<crate::Endpoint>()
            {
                return Err(error(400, msg));
            }
            let fid = shared.read(|st, _| st.add_fault(fault));
            json_response(200, &json!({"id": fid}))
        }
        (Method::DELETE, ["faults"]) => {
            shared.read(|st, _| st.faults.clear());
            empty_response(204)
        }
        (Method::DELETE, ["faults", fid]) => {
            let fid = id(fid, "fault id")?;
            let fid = u64::try_from(fid).unwrap_or(u64::MAX);
            found(
                shared.read(|st, _| st.remove_fault(fid)),
                format!("fault {fid}"),
            )?
        }
        (Method::POST, ["admin-tokens", "expire"]) => {
            shared.mutate(|st, _| st.expire_admin_tokens());
            empty_response(204)
        }
        (Method::POST, ["actions-url", "rotate"]) => {
            let url = shared.mutate(|st, _| {
                st.rotate_tenant();
                st.actions_url()
            });
            json_response(200, &json!({"actionsUrl": url}))
        }
        (Method::POST, ["scalesets", ss, "session", "expire"]) => {
            let ss = id(ss, "scale set id")?;
            found(
                shared.mutate(|st, _| st.expire_session(ss)),
                format!("active session of scale set {ss}"),
            )?
        }
        (Method::POST, ["scalesets", ss, "message-queue-token", "expire"]) => {
            let ss = id(ss, "scale set id")?;
            found(
                shared.mutate(|st, now| st.expire_message_queue_token(ss, now)),
                format!("active session of scale set {ss}"),
            )?
        }
        (Method::POST, ["scalesets", ss, "messages"]) => {
            let ss = id(ss, "scale set id")?;
            let envelope: serde_json::Value = parse(body, "a message envelope (any JSON)")?;
            match shared.mutate(|st, _| st.push_raw_message(ss, envelope)) {
                Some(mid) => json_response(200, &json!({"messageId": mid})),
                None => return Err(error(404, format!("scale set {ss} not found"))),
            }
        }
        (Method::DELETE, ["scalesets", ss]) => {
            let ss = id(ss, "scale set id")?;
            found(
                shared.mutate(|st, now| st.delete_scale_set(ss, now).is_ok()),
                format!("scale set {ss}"),
            )?
        }
        (Method::POST, ["clock", "advance"]) => {
            let b: AdvanceBody = parse(body, "{\"ms\": <integer>}")?;
            shared.advance_clock(Duration::from_millis(b.ms));
            empty_response(204)
        }
        (Method::PATCH, ["config"]) => {
            let patch: ConfigPatch = parse(body, "a config patch (see README)")?;
            shared.mutate(|st, _| patch.apply(&mut st.cfg));
            empty_response(204)
        }
        (m, _) => {
            return Err(error(
                404,
                format!("no control endpoint {m} {path}; see tests/emulator/README.md"),
            ));
        }
    })
}
