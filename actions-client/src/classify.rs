//! Turning an unexpected response into an [`Error`] (docs/architecture.md#errors-and-retries).

use http::{StatusCode, header};

use crate::error::{Error, ErrorInfo};
use crate::json;
use std::time::Duration;

use crate::retry::parse_retry_after;
use crate::transport::{Call, Reply};
use crate::wire::Exception;

/// What the failed endpoint is about; decides what a bare 404 or 409 means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// GitHub REST (credential exchange).
    GitHub,
    /// A scale set.
    ScaleSet,
    /// A runner group.
    RunnerGroup,
    /// Session create.
    SessionCreate,
    /// Session refresh or delete.
    Session,
    /// Message queue calls and acquire jobs (mq token).
    Queue,
    /// A runner.
    Runner,
}

const MAX_TEXT: usize = 1000;

fn truncate(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn header_text(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The context of a failed response: status, ids, exception name and message.
pub(crate) fn info(call: &Call, reply: &Reply) -> ErrorInfo {
    let mut info = call.info(String::new());
    info.status = Some(reply.status.as_u16());
    info.activity_id = header_text(reply, "ActivityId");
    info.request_id = header_text(reply, "X-GitHub-Request-Id");
    let empty_declared = reply
        .headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0");
    let body = json::strip_bom(&reply.body);
    let text = String::from_utf8_lossy(body);
    let is_text = reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/plain"));
    info.message = if empty_declared || text.trim().is_empty() {
        "unknown error".to_owned()
    } else if is_text {
        truncate(&text)
    } else {
        match json::decode::<Exception>(body) {
            Ok(e) => {
                if !e.type_name.is_empty() {
                    info.exception = Some(call.redact(truncate(&e.type_name)));
                }
                truncate(&e.message)
            }
            Err(_) => format!("unreadable error body: {}", truncate(&text)),
        }
    };
    info.message = call.redact(info.message);
    info
}

/// Whether `reply` is a rate limit, and how long it asks to wait (GitHub's REST documentation
/// on rate limits; docs/architecture.md#errors-and-retries).
///
/// A rate limit is a 429, or a 403 with a `Retry-After`, with `x-ratelimit-remaining: 0`, or
/// whose body speaks of a "secondary rate limit" or says "rate limit exceeded". The wait is the
/// `Retry-After`, else the time until `x-ratelimit-reset` (epoch seconds) when the limit is
/// spent; `Some(None)` when the answer names no wait (the caller then waits at least a minute,
/// longer for repeats: `scaleset_core::failure::rate_limit_wait`).
pub(crate) fn rate_limit(reply: &Reply) -> Option<Option<Duration>> {
    let code = reply.status.as_u16();
    if code != 429 && code != 403 {
        return None;
    }
    let retry_after = header_text(reply, "retry-after").and_then(|v| parse_retry_after(&v));
    let spent = header_text(reply, "x-ratelimit-remaining").is_some_and(|v| v.trim() == "0");
    let text = String::from_utf8_lossy(&reply.body).to_ascii_lowercase();
    let says_so = RATE_LIMIT_WORDS.iter().any(|w| text.contains(w));
    if code == 403 && retry_after.is_none() && !spent && !says_so {
        return None;
    }
    let until_reset = || {
        let reset: i64 = header_text(reply, "x-ratelimit-reset")?
            .trim()
            .parse()
            .ok()?;
        let wait = reset.saturating_sub(chrono::Utc::now().timestamp());
        Some(Duration::from_secs(u64::try_from(wait).unwrap_or(0)))
    };
    Some(retry_after.or_else(|| spent.then(until_reset).flatten()))
}

/// What the body of a GitHub rate-limit answer says (lower case).
const RATE_LIMIT_WORDS: [&str; 2] = ["secondary rate limit", "rate limit exceeded"];

/// Classifies a response whose status the call did not expect.
pub(crate) fn error(call: &Call, reply: &Reply, target: Target) -> Error {
    let info = info(call, reply);
    let status = reply.status;
    let exception = info.exception.clone().unwrap_or_default();
    let boxed = Box::new(info);
    if target == Target::Queue && status == StatusCode::UNAUTHORIZED {
        return Error::TokenExpired(boxed);
    }
    if exception.contains("AgentExistsException") {
        return Error::RunnerExists(boxed);
    }
    if exception.contains("AgentNotFoundException") {
        return Error::RunnerNotFound(boxed);
    }
    if exception.contains("JobStillRunningException") {
        return Error::JobStillRunning(boxed);
    }
    if exception.contains("SessionConflictException") {
        return Error::SessionConflict(boxed);
    }
    if exception.contains("Session")
        && ["Expired", "Deleted", "NotFound"]
            .iter()
            .any(|w| exception.contains(w))
    {
        return Error::SessionNotFound(boxed);
    }
    if exception.contains("RunnerScaleSetNotFound") {
        return Error::ScaleSetNotFound(boxed);
    }
    if exception.contains("RunnerGroupNotFound") {
        return Error::RunnerGroupNotFound(boxed);
    }
    if let Some(retry_after) = rate_limit(reply) {
        return Error::RateLimited {
            retry_after,
            info: boxed,
        };
    }
    match status.as_u16() {
        401 | 403 => Error::AuthFailed(boxed),
        404 if exception.contains("MessageNotFound") => Error::Rejected(boxed),
        404 => match target {
            Target::ScaleSet => Error::ScaleSetNotFound(boxed),
            Target::Session | Target::Queue => Error::SessionNotFound(boxed),
            Target::Runner => Error::RunnerNotFound(boxed),
            Target::RunnerGroup => Error::RunnerGroupNotFound(boxed),
            Target::GitHub | Target::SessionCreate => Error::Rejected(boxed),
        },
        409 if target == Target::SessionCreate => Error::SessionConflict(boxed),
        500..=599 => Error::Server(boxed),
        _ => Error::Rejected(boxed),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Method};
    use secrecy::SecretString;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Bytes::from(body.to_owned()),
        }
    }

    fn call() -> Call {
        Call::new("remove runner", Method::DELETE, "http://s/x".into())
            .bearer(&SecretString::from("sekret-token"))
    }

    fn exc(type_name: &str) -> String {
        format!(
            r#"{{"$id":"1","typeName":"{type_name}, GitHub.DistributedTask.WebApi","message":"m"}}"#
        )
    }

    #[test]
    fn substring_rules_win_over_status() {
        let e = error(
            &call(),
            &reply(
                404,
                &[],
                &exc("GitHub.DistributedTask.WebApi.TaskAgentNotFoundException"),
            ),
            Target::Runner,
        );
        assert!(matches!(e, Error::RunnerNotFound(_)), "{e}");
        let e = error(
            &call(),
            &reply(400, &[], &exc("TaskAgentJobStillRunningException")),
            Target::Runner,
        );
        assert!(matches!(e, Error::JobStillRunning(_)), "{e}");
        let e = error(
            &call(),
            &reply(409, &[], &exc("TaskAgentExistsException")),
            Target::Runner,
        );
        assert!(matches!(e, Error::RunnerExists(_)), "{e}");
        let e = error(
            &call(),
            &reply(409, &[], &exc("TaskAgentSessionConflictException")),
            Target::SessionCreate,
        );
        assert!(matches!(e, Error::SessionConflict(_)), "{e}");
        let e = error(
            &call(),
            &reply(400, &[], &exc("TaskAgentSessionExpiredException")),
            Target::Queue,
        );
        assert!(matches!(e, Error::SessionNotFound(_)), "{e}");
        let e = error(
            &call(),
            &reply(404, &[], &exc("TaskAgentMessageNotFoundException")),
            Target::Queue,
        );
        assert!(matches!(e, Error::Rejected(_)), "{e}");
        let e = error(&call(), &reply(401, &[], &exc("Whatever")), Target::Queue);
        assert!(matches!(e, Error::TokenExpired(_)), "{e}");
    }

    #[test]
    fn body_variants() {
        let e = error(
            &call(),
            &reply(
                500,
                &[("content-type", "text/plain"), ("ActivityId", "act-1")],
                "boom sekret-token",
            ),
            Target::Runner,
        );
        let text = e.to_string();
        assert!(matches!(e, Error::Server(_)));
        assert!(text.contains("boom [REDACTED]"), "{text}");
        assert!(text.contains("act-1"), "{text}");
        assert!(!text.contains("sekret-token"));
        let e = error(
            &call(),
            &reply(502, &[("content-length", "0")], ""),
            Target::Runner,
        );
        assert_eq!(e.info().unwrap().message, "unknown error");
        let e = error(
            &call(),
            &reply(400, &[], "<html>proxy</html>"),
            Target::Runner,
        );
        assert!(
            e.to_string().contains("unreadable error body: <html>"),
            "{e}"
        );
        let e = error(
            &call(),
            &reply(
                401,
                &[("X-GitHub-Request-Id", "GH1")],
                "\u{feff}{\"message\":\"Bad credentials\",\"documentation_url\":\"x\"}",
            ),
            Target::GitHub,
        );
        assert!(matches!(e, Error::AuthFailed(_)));
        assert_eq!(e.info().unwrap().message, "Bad credentials");
        assert_eq!(e.info().unwrap().request_id.as_deref(), Some("GH1"));
        assert_eq!(e.status(), Some(401));
        let e = error(
            &call(),
            &reply(429, &[("retry-after", "9")], ""),
            Target::Runner,
        );
        assert!(matches!(e, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 9));
        let e = error(&call(), &reply(404, &[], ""), Target::ScaleSet);
        assert!(matches!(e, Error::ScaleSetNotFound(_)));
    }

    /// The exception name is as much the service's text as its message: an echo of the call's
    /// credential in either is redacted (found by the fuzz targets: a body that is an array
    /// decodes positionally, its first string becoming `typeName`).
    #[test]
    fn exception_names_are_redacted_too() {
        for body in [
            r#"{"typeName":"Bad sekret-token","message":"m"}"#,
            r#"["{\"message\":\"echo sekret-token\"}"]"#,
        ] {
            let e = error(&call(), &reply(422, &[], body), Target::Runner);
            let text = format!("{e} {e:?}");
            assert!(!text.contains("sekret-token"), "{text}");
            assert!(text.contains("[REDACTED]"), "{text}");
        }
    }

    /// A 403 is a rate limit, not a credential problem, when GitHub says so in any of its ways;
    /// otherwise it stays an authentication failure.
    #[test]
    fn rate_limits_on_403() {
        let wait = |e: &Error| match e {
            Error::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let e = error(
            &call(),
            &reply(403, &[("retry-after", "30")], ""),
            Target::GitHub,
        );
        assert_eq!(wait(&e), Some(Some(Duration::from_secs(30))));
        let reset = (chrono::Utc::now().timestamp() + 120).to_string();
        let e = error(
            &call(),
            &reply(
                403,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset),
                ],
                r#"{"message":"API rate limit exceeded for installation ID 1."}"#,
            ),
            Target::GitHub,
        );
        let after = wait(&e).flatten().unwrap();
        assert!(after > Duration::from_secs(100) && after <= Duration::from_secs(120));
        let e = error(
            &call(),
            &reply(
                403,
                &[],
                r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#,
            ),
            Target::GitHub,
        );
        assert_eq!(
            wait(&e),
            Some(None),
            "no wait named: the caller's policy decides"
        );
        assert!(e.to_string().contains("rate limited"), "{e}");
        let e = error(
            &call(),
            &reply(
                403,
                &[("x-ratelimit-remaining", "4999")],
                r#"{"message":"Resource not accessible by integration"}"#,
            ),
            Target::GitHub,
        );
        assert!(matches!(e, Error::AuthFailed(_)), "{e:?}");
        let e = error(&call(), &reply(429, &[], ""), Target::Queue);
        assert_eq!(wait(&e), Some(None));
    }

    /// Each documented form on its own: the primary limit's message without its headers, a
    /// spent limit on a 429, a reset already past, an HTTP-date `Retry-After`; the token the
    /// call carried never reaches the text.
    #[test]
    fn rate_limit_forms_one_by_one() {
        let limited = |status, headers: &[(&str, &str)], body: &str| match error(
            &call(),
            &reply(status, headers, body),
            Target::GitHub,
        ) {
            Error::RateLimited { retry_after, info } => {
                assert!(!info.to_string().contains("sekret-token"), "{info}");
                Some(retry_after)
            }
            _ => None,
        };
        let primary = r#"{"message":"API rate limit exceeded for user ID 1. sekret-token"}"#;
        assert_eq!(limited(403, &[], primary), Some(None));
        assert_eq!(
            limited(401, &[], primary),
            None,
            "a 401 is never a rate limit"
        );
        let soon = (chrono::Utc::now().timestamp() + 30).to_string();
        let spent = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", soon.as_str()),
        ];
        let wait = limited(429, &spent, "").flatten().unwrap();
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        let past = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")];
        assert_eq!(limited(403, &past, ""), Some(Some(Duration::ZERO)));
        assert_eq!(
            limited(403, &[("x-ratelimit-remaining", "0")], ""),
            Some(None),
            "spent without a reset time"
        );
        let date = [("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")];
        assert_eq!(limited(403, &date, ""), Some(Some(Duration::ZERO)));
        assert_eq!(
            limited(
                403,
                &[("retry-after", "12")],
                r#"{"message":"Bad credentials"}"#
            ),
            Some(Some(Duration::from_secs(12))),
            "the header decides over the body"
        );
        let secondary =
            "You have exceeded a SECONDARY RATE LIMIT and have been temporarily blocked";
        assert_eq!(
            limited(403, &[("content-type", "text/plain")], secondary),
            Some(None)
        );
        assert_eq!(
            limited(403, &[], r#"{"message":"Must have admin rights"}"#),
            None
        );
    }
}
