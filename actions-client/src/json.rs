//! Lenient JSON decoding as the Go client does it
//! (docs/architecture.md#urls-decoding-and-user-agent): BOM stripped, only the first value read,
//! case-insensitive keys, `null` as "absent", unknown keys logged and ignored.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Every key the protocol uses, in its canonical spelling.
const KNOWN_KEYS: &[&str] = &[
    // scale sets, groups, labels
    "id",
    "name",
    "runnerGroupId",
    "runnerGroupName",
    "labels",
    "runnerSetting",
    "createdOn",
    "runnerJitConfigUrl",
    "statistics",
    "type",
    "disableUpdate",
    "ephemeral",
    "isElastic",
    "size",
    "isDefaultGroup",
    "count",
    "value",
    "status",
    // statistics
    "totalAvailableJobs",
    "totalAcquiredJobs",
    "totalAssignedJobs",
    "totalRunningJobs",
    "totalRegisteredRunners",
    "totalBusyRunners",
    "totalIdleRunners",
    // sessions, runners, JIT
    "sessionId",
    "ownerName",
    "runnerScaleSet",
    "messageQueueUrl",
    "messageQueueAccessToken",
    "runnerScaleSetId",
    "runner",
    "encodedJITConfig",
    // messages
    "messageId",
    "messageType",
    "body",
    "runnerRequestId",
    "repositoryName",
    "jobId",
    "jobWorkflowRef",
    "jobDisplayName",
    "workflowRunId",
    "eventName",
    "requestLabels",
    "queueTime",
    "scaleSetAssignTime",
    "runnerAssignTime",
    "finishTime",
    "acquireJobUrl",
    "runnerId",
    "runnerName",
    "result",
    // errors and GitHub REST
    "typeName",
    "typeKey",
    "message",
    "errorCode",
    "eventId",
    "innerException",
    "$id",
    "customProperties",
    "documentation_url",
    "token",
    "expires_at",
    "url",
    "permissions",
    "repository_selection",
    "errors",
];

fn canonical(key: &str) -> Option<&'static str> {
    static TABLE: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            KNOWN_KEYS
                .iter()
                .map(|k| (k.to_ascii_lowercase(), *k))
                .collect()
        })
        .get(&key.to_ascii_lowercase())
        .copied()
}

/// Strips a leading UTF-8 byte-order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// The first JSON value of `bytes` (after a BOM), normalized; trailing bytes are ignored.
pub fn first_value(bytes: &[u8]) -> Result<Value, String> {
    let bytes = strip_bom(bytes);
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) => Ok(normalize(v)),
        Some(Err(e)) => Err(format!("not JSON: {e}")),
        None => Err("empty body".to_owned()),
    }
}

/// Decodes `bytes` leniently into `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    from_value(first_value(bytes)?)
}

/// Decodes a normalized value into `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| e.to_string())
}

/// Renames keys to their canonical spelling, drops `null` members, logs unknown keys.
pub fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, v) in map {
                if v.is_null() {
                    continue;
                }
                let key = match canonical(&key) {
                    Some(c) => c.to_owned(),
                    None => {
                        tracing::debug!(field = %key, "unknown field in a service response ignored");
                        key
                    }
                };
                out.insert(key, normalize(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

/// Parses a protocol timestamp: RFC 3339 with or without a zone; Go's zero time and "" are `None`.
pub fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let parsed = DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        });
    match parsed {
        Ok(t) if t.year() > 1 => Some(t),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(value = %raw, error = %e, "unparseable timestamp treated as unset");
            None
        }
    }
}

/// `deserialize_with` for optional timestamps.
pub fn opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw = Option::<Value>::deserialize(d)?;
    Ok(match raw {
        Some(Value::String(s)) => parse_time(&s),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_nulls_dropped() {
        let v = first_value(b"\xEF\xBB\xBF{\"RunnerSetting\":{\"DISABLEUPDATE\":true},\"labels\":null,\"x-new\":1} trailing").unwrap();
        assert_eq!(v["runnerSetting"]["disableUpdate"], Value::Bool(true));
        assert!(v.get("labels").is_none());
        assert_eq!(v["x-new"], 1);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("garbage"), None);
        let t = parse_time("2026-01-01T10:00:00.123Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T10:00:00.123+00:00");
        let offset = parse_time("2026-01-01T01:00:00.000-08:00").unwrap();
        assert_eq!(offset.to_rfc3339(), "2026-01-01T09:00:00+00:00");
        let zoneless = parse_time("2026-01-01T10:00:00").unwrap();
        assert_eq!(zoneless.to_rfc3339(), "2026-01-01T10:00:00+00:00");
    }

    #[test]
    fn empty_and_garbage() {
        assert!(first_value(b"").is_err());
        assert!(first_value(b"\xEF\xBB\xBF").is_err());
        assert!(first_value(b"<html>").is_err());
    }
}
