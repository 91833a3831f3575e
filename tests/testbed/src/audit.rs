//! The API server's audit log: the flags that turn it on for a local control plane, and a reader
//! of its JSON lines. `cargo xtask bench` counts the manager's requests with it; the bad-input
//! campaign (tests/suites/tests/campaign_bad_input.rs) measures how often the manager comes back
//! to a broken object.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// What the audit log records (at level `Metadata`, stage `ResponseComplete` and `Panic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditPolicy {
    /// Every create, update, patch, delete and deletecollection, by anyone.
    Writes,
    /// [`AuditPolicy::Writes`], and the gets and lists of ServiceAccounts (the manager's and the
    /// listeners' reads): what `cargo xtask bench` counts.
    WritesAndServiceAccountReads,
    /// Every request of a ServiceAccount (the manager and the listeners) except watches:
    /// reads too, so that a retry loop that only reads shows. The bodies of their Event and
    /// status writes are logged as well (level `Request`), so that every status and Event
    /// written can be checked, not only the last.
    ServiceAccounts,
}

impl AuditPolicy {
    fn yaml(self) -> &'static str {
        match self {
            AuditPolicy::Writes => {
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: Metadata\n  verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]\n- level: None\n"
            }
            AuditPolicy::WritesAndServiceAccountReads => {
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: Metadata\n  verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]\n- level: Metadata\n  userGroups: [\"system:serviceaccounts\"]\n  verbs: [\"get\", \"list\"]\n- level: None\n"
            }
            AuditPolicy::ServiceAccounts => {
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: None\n  verbs: [\"watch\"]\n- level: Request\n  userGroups: [\"system:serviceaccounts\"]\n  verbs: [\"create\", \"update\", \"patch\"]\n  resources:\n  - group: \"\"\n    resources: [\"events\", \"pods/status\"]\n  - group: \"events.k8s.io\"\n    resources: [\"events\"]\n  - group: \"actions.github.com\"\n    resources: [\"*/status\"]\n- level: Metadata\n  userGroups: [\"system:serviceaccounts\"]\n- level: None\n"
            }
        }
    }
}

/// An audit log in a directory of its own: [`AuditLog::apiserver_args`] go into
/// `ControlPlaneOptions::extra_apiserver_args`.
#[derive(Debug)]
pub struct AuditLog {
    dir: tempfile::TempDir,
    policy: AuditPolicy,
}

/// One audit event, as far as the tests read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// `user.username`, e.g. `system:serviceaccount:<ns>:<name>`.
    pub user: String,
    /// `verb` (get, list, create, patch, …).
    pub verb: String,
    /// `objectRef.resource`.
    pub resource: String,
    /// `objectRef.subresource`, if any.
    pub subresource: Option<String>,
    /// `objectRef.namespace`, if any.
    pub namespace: Option<String>,
    /// `objectRef.name`, if any.
    pub name: Option<String>,
    /// `requestReceivedTimestamp`.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The request body (`requestObject`, JSON) when the policy logs it.
    pub request_object: Option<String>,
}

impl AuditEvent {
    /// `verb resource[/subresource]`, e.g. `patch ephemeralrunners/status`.
    pub fn request(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{} {}/{sub}", self.verb, self.resource),
            None => format!("{} {}", self.verb, self.resource),
        }
    }
}

impl AuditLog {
    /// A new, empty audit log recording what `policy` says.
    pub fn new(policy: AuditPolicy) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("arc-rs-audit-")
            .tempdir()
            .context("creating the audit log's directory")?;
        std::fs::write(dir.path().join("audit-policy.yaml"), policy.yaml())
            .context("writing the audit policy")?;
        Ok(Self { dir, policy })
    }

    /// The policy.
    pub fn policy(&self) -> AuditPolicy {
        self.policy
    }

    /// The log file the API server writes.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// The kube-apiserver flags that write this log (JSON lines).
    pub fn apiserver_args(&self) -> Vec<String> {
        vec![
            format!(
                "--audit-policy-file={}",
                self.dir.path().join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", self.path().display()),
            "--audit-log-format=json".to_owned(),
        ]
    }

    /// The log's size now (an offset for [`AuditLog::events_between`]).
    pub fn len(&self) -> u64 {
        std::fs::metadata(self.path()).map_or(0, |m| m.len())
    }

    /// Whether nothing was logged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The completed requests logged between two offsets ([`AuditLog::len`]).
    pub fn events_between(&self, start: u64, end: u64) -> anyhow::Result<Vec<AuditEvent>> {
        read_events(&self.path(), start, end)
    }

    /// Every completed request logged so far.
    pub fn events(&self) -> anyhow::Result<Vec<AuditEvent>> {
        read_events(&self.path(), 0, u64::MAX)
    }
}

fn read_events(path: &Path, start: u64, end: u64) -> anyhow::Result<Vec<AuditEvent>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let start = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = usize::try_from(end).unwrap_or(usize::MAX).min(bytes.len());
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Ok(bytes[start..end.max(start)]
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|e| e["stage"] == "ResponseComplete" || e["stage"] == "Panic")
        .filter_map(|e| {
            let at = e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?
                .with_timezone(&chrono::Utc);
            let object = &e["objectRef"];
            Some(AuditEvent {
                user: text(&e["user"]["username"]).unwrap_or_default(),
                verb: text(&e["verb"]).unwrap_or_default(),
                resource: text(&object["resource"]).unwrap_or_default(),
                subresource: text(&object["subresource"]),
                namespace: text(&object["namespace"]),
                name: text(&object["name"]),
                at,
                request_object: e
                    .get("requestObject")
                    .filter(|o| !o.is_null())
                    .map(Value::to_string),
            })
        })
        .collect())
}
