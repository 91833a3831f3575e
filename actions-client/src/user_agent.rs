//! The JSON `User-Agent` (docs/architecture.md#urls-decoding-and-user-agent).

use serde::Serialize;

/// Who is calling; serialized into the `User-Agent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemInfo {
    /// Product, e.g. `arc-rs`.
    pub system: String,
    /// Product version.
    pub version: String,
    /// Product commit.
    pub commit_sha: String,
    /// Scale set id; 0 until it exists (kept current by the client).
    pub scale_set_id: i64,
    /// Component, e.g. `listener` or `controller`.
    pub subsystem: String,
}

impl Default for SystemInfo {
    fn default() -> Self {
        Self {
            system: "arc-rs".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit_sha: option_env!("ARC_RS_COMMIT_SHA")
                .unwrap_or("unknown")
                .to_owned(),
            scale_set_id: 0,
            subsystem: "actions-client".to_owned(),
        }
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    system: &'a str,
    version: &'a str,
    commit_sha: &'a str,
    scale_set_id: i64,
    subsystem: &'a str,
    build_version: &'a str,
    build_commit_sha: &'a str,
    kind: &'a str,
}

impl SystemInfo {
    /// The header value: compact JSON in the spec's key order, built by this crate.
    pub fn user_agent(&self) -> String {
        serde_json::to_string(&Wire {
            system: &self.system,
            version: &self.version,
            commit_sha: &self.commit_sha,
            scale_set_id: self.scale_set_id,
            subsystem: &self.subsystem,
            build_version: env!("CARGO_PKG_VERSION"),
            build_commit_sha: option_env!("ARC_RS_COMMIT_SHA").unwrap_or("unknown"),
            kind: "scaleset",
        })
        .unwrap_or_else(|_| format!("{}/{}", self.system, self.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order() {
        let info = SystemInfo {
            system: "arc-rs".into(),
            version: "1.2.3".into(),
            commit_sha: "abc".into(),
            scale_set_id: 42,
            subsystem: "listener".into(),
        };
        let ua = info.user_agent();
        assert!(
            ua.starts_with(r#"{"system":"arc-rs","version":"1.2.3","commit_sha":"abc","scale_set_id":42,"subsystem":"listener","build_version":""#),
            "{ua}"
        );
        assert!(ua.ends_with(r#","kind":"scaleset"}"#), "{ua}");
    }
}
