//! Fault injection: per endpoint, N times or at a rate.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A fault to inject into matching calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Endpoint name (see [`crate::Endpoint::as_str`]); `None` matches every GitHub, Actions
    /// service and message-queue endpoint (never the runner side or the control API).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// Fire this many times, then disappear; `None` = until cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// Probability per matching call (0.0 to 1.0); `None` = always.
    #[serde(default)]
    pub rate: Option<f64>,
}

impl Fault {
    /// A fault on one endpoint that fires `times` times.
    pub fn on(endpoint: crate::Endpoint, kind: FaultKind, times: u32) -> Self {
        Self {
            endpoint: Some(endpoint.as_str().to_owned()),
            kind,
            times: Some(times),
            rate: None,
        }
    }

    /// A fault on one endpoint that fires on every call until removed.
    pub fn always(endpoint: crate::Endpoint, kind: FaultKind) -> Self {
        Self {
            endpoint: Some(endpoint.as_str().to_owned()),
            kind,
            times: None,
            rate: None,
        }
    }

    /// A fault on every GitHub, Actions service and message-queue endpoint until removed.
    pub fn everywhere(kind: FaultKind) -> Self {
        Self {
            endpoint: None,
            kind,
            times: None,
            rate: None,
        }
    }

    /// Fires only with this probability (0.0 to 1.0) per matching call.
    pub fn with_rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate.clamp(0.0, 1.0));
        self
    }
}

impl FaultKind {
    /// A bare status with an empty body (`Content-Length: 0`): 500, 503, 401 (token expiry), …
    pub fn status(status: u16) -> Self {
        FaultKind::Status {
            status,
            retry_after: None,
            type_key: None,
            message: None,
        }
    }

    /// A status with `Retry-After: {seconds}` (429, 503, 403 rate limits).
    pub fn retry_after(status: u16, seconds: u64) -> Self {
        FaultKind::Status {
            status,
            retry_after: Some(seconds.to_string()),
            type_key: None,
            message: None,
        }
    }

    /// A status with a VSS exception body, e.g. `(404, "TaskAgentSessionExpiredException")` or
    /// `(409, "TaskAgentSessionConflictException")`.
    pub fn exception(status: u16, type_key: &str, message: &str) -> Self {
        FaultKind::Status {
            status,
            retry_after: None,
            type_key: Some(type_key.to_owned()),
            message: Some(message.to_owned()),
        }
    }

    /// GitHub's primary rate limit spent: `status` (403 or 429) with `x-ratelimit-remaining: 0`,
    /// `x-ratelimit-reset` `reset_in` from now (epoch seconds) and "API rate limit exceeded".
    pub fn rate_limit_spent(status: u16, reset_in: Duration) -> Self {
        FaultKind::RateLimit {
            status,
            reset_in_secs: Some(reset_in.as_secs()),
            secondary: false,
        }
    }

    /// GitHub's secondary rate limit without a wait: `status` (403 or 429) whose body says "You
    /// have exceeded a secondary rate limit", no `Retry-After` and no rate-limit headers.
    pub fn secondary_rate_limit(status: u16) -> Self {
        FaultKind::RateLimit {
            status,
            reset_in_secs: None,
            secondary: true,
        }
    }

    /// A 200 whose JSON body is cut off.
    pub fn malformed_body() -> Self {
        FaultKind::Respond {
            status: 200,
            content_type: Some("application/json".to_owned()),
            body: "{\"count\":1,\"value\":[{".to_owned(),
        }
    }

    /// A `text/plain` error body.
    pub fn text(status: u16, body: &str) -> Self {
        FaultKind::Respond {
            status,
            content_type: Some("text/plain; charset=utf-8".to_owned()),
            body: body.to_owned(),
        }
    }

    /// Handle the call normally after a delay.
    pub fn slow(delay: Duration) -> Self {
        FaultKind::Delay {
            ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The kinds of fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FaultKind {
    /// Answer with this status instead of handling the call. With `typeKey`, the body is a VSS
    /// exception; otherwise it is empty (`Content-Length: 0`). `retryAfter` sets `Retry-After`.
    #[serde(rename_all = "camelCase")]
    Status {
        /// HTTP status, e.g. 500, 503, 429, 401, 403, 404, 409.
        status: u16,
        /// `Retry-After` header value (seconds or HTTP date).
        #[serde(default)]
        retry_after: Option<String>,
        /// VSS exception type key for the body.
        #[serde(default)]
        type_key: Option<String>,
        /// Exception message.
        #[serde(default)]
        message: Option<String>,
    },
    /// Answer with exactly this status, content type and body (malformed bodies, text/plain
    /// errors, count/value mismatches, unknown message types, …).
    #[serde(rename_all = "camelCase")]
    Respond {
        /// HTTP status.
        status: u16,
        /// `Content-Type` header; none when absent.
        #[serde(default)]
        content_type: Option<String>,
        /// Raw body.
        body: String,
    },
    /// A GitHub rate-limit answer (a `Retry-After` form is [`FaultKind::retry_after`]): with
    /// `resetInSecs`, the primary limit spent (`x-ratelimit-remaining: 0`, `x-ratelimit-reset`
    /// that many seconds from now, "API rate limit exceeded"); with `secondary`, the secondary
    /// limit's message and no wait; with neither, "API rate limit exceeded" alone.
    #[serde(rename_all = "camelCase")]
    RateLimit {
        /// 403 or 429.
        status: u16,
        /// Seconds from now to `x-ratelimit-reset`.
        #[serde(default)]
        reset_in_secs: Option<u64>,
        /// The secondary limit's message instead of the primary's.
        #[serde(default)]
        secondary: bool,
    },
    /// Wait this long, then handle the call normally.
    #[serde(rename_all = "camelCase")]
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Send the status line and headers, then break the connection mid-body.
    DropConnection,
    /// Handle normally but prefix the body with a UTF-8 BOM.
    BomPrefix,
}

/// An installed fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultEntry {
    /// Id for removal.
    pub id: u64,
    /// The fault.
    pub fault: Fault,
    /// How many times it has fired.
    pub fired: u32,
}

/// What a request has to do because of faults.
#[derive(Debug, Default)]
pub struct FaultPlan {
    /// Total delay before anything else.
    pub delay: Duration,
    /// A replacement answer (first matching terminal fault).
    pub terminal: Option<FaultKind>,
    /// Prefix the real body with a BOM.
    pub bom: bool,
}

/// Evaluates the installed faults for one call, consuming `times` budgets. Faults without an
/// endpoint match only when `wildcard` is true (the runner side opts out).
pub fn plan(entries: &mut Vec<FaultEntry>, endpoint: &str, wildcard: bool) -> FaultPlan {
    let mut plan = FaultPlan::default();
    let mut rng = rand::rng();
    for entry in entries.iter_mut() {
        match entry.fault.endpoint.as_deref() {
            Some(e) if e != endpoint => continue,
            None if !wildcard => continue,
            _ => {}
        }
        if entry.fault.times.is_some_and(|t| entry.fired >= t) {
            continue;
        }
        if let Some(rate) = entry.fault.rate
            && rng.random::<f64>() >= rate
        {
            continue;
        }
        match &entry.fault.kind {
            FaultKind::Delay { ms } => {
                plan.delay = plan.delay.saturating_add(Duration::from_millis(*ms));
            }
            FaultKind::BomPrefix => plan.bom = true,
            kind => {
                if plan.terminal.is_some() {
                    continue;
                }
                plan.terminal = Some(kind.clone());
            }
        }
        entry.fired += 1;
    }
    entries.retain(|e| e.fault.times.is_none_or(|t| e.fired < t));
    plan
}
