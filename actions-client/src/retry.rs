//! The transport retry policy (docs/architecture.md#errors-and-retries).

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use scaleset_core::backoff::Backoff;

/// Bounded exponential backoff: waits `min_delay × 2^i`, capped at `max_delay`; `Retry-After`
/// on 429/503 replaces the wait (capped at `max_retry_after`). A rate limit (a 429, or a 403
/// that says so) is retried by the transport only when it asks for at most `max_retry_after`; a
/// longer or unnamed wait is the caller's to schedule (`Error::RateLimited`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (4 = five attempts; 0 disables retries).
    pub max_retries: usize,
    /// First wait.
    pub min_delay: Duration,
    /// Largest computed wait.
    pub max_delay: Duration,
    /// Largest `Retry-After` waited out inside a call (a 503's longer one is cut to it; a rate
    /// limit asking for longer goes back to the caller).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before the `retry`-th retry (1 is the first): the server's `Retry-After`
    /// (capped at [`RetryPolicy::max_retry_after`]) when it sent one, else the backoff.
    pub(crate) fn delay(&self, retry: usize, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(after) => after.min(self.max_retry_after),
            None => Backoff::new(self.min_delay, self.max_delay)
                .delay(u32::try_from(retry).unwrap_or(u32::MAX), 0.0),
        }
    }
}

/// Which statuses a call retries besides the standard set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryMode {
    /// 429 and 5xx except 501.
    Standard,
    /// Standard plus 401 and 403 (runner-registration, docs/architecture.md#credential-exchange).
    Registration,
}

pub(crate) fn is_retryable_status(status: StatusCode, mode: RetryMode) -> bool {
    let code = status.as_u16();
    code == 429
        || ((500..600).contains(&code) && code != 501)
        || !(100..600).contains(&code)
        || (mode == RetryMode::Registration && (code == 401 || code == 403))
}

/// `Retry-After` (delta-seconds or HTTP-date) on a 429 or 503.
pub(crate) fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    parse_retry_after(headers.get(http::header::RETRY_AFTER)?.to_str().ok()?)
}

pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let s = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::OK);
        for c in [429, 500, 502, 503, 504, 599] {
            assert!(is_retryable_status(s(c), RetryMode::Standard), "{c}");
        }
        for c in [200, 400, 401, 403, 404, 409, 501] {
            assert!(!is_retryable_status(s(c), RetryMode::Standard), "{c}");
        }
        assert!(is_retryable_status(s(401), RetryMode::Registration));
        assert!(is_retryable_status(s(403), RetryMode::Registration));
        assert!(!is_retryable_status(s(404), RetryMode::Registration));
    }

    #[test]
    fn delays_double_to_the_cap_unless_the_server_says_when() {
        let policy = RetryPolicy::default();
        let secs = Duration::from_secs;
        let delays: Vec<_> = (1..=6).map(|n| policy.delay(n, None)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30].map(secs));
        assert_eq!(policy.delay(1, Some(secs(7))), secs(7));
        assert_eq!(policy.delay(1, Some(secs(6000))), secs(60));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("3"),
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_after(StatusCode::BAD_GATEWAY, &h), None);
    }
}
