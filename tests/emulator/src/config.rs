//! Emulator configuration. Behaviours the protocol spec marks as inferred are knobs here.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The personal access token every default configuration accepts.
pub const DEFAULT_PAT: &str = "ghp_emulatorDefaultTestToken000000000000";

/// App id of the built-in test GitHub App ([`AppConfig::test_app`]).
pub const TEST_APP_ID: i64 = 123;
/// Client id of the built-in test GitHub App.
pub const TEST_APP_CLIENT_ID: &str = "Iv1.emulator0000test";
/// Installation id of the built-in test GitHub App.
pub const TEST_APP_INSTALLATION_ID: i64 = 456;
/// Private key (PKCS#1 PEM) of the built-in test GitHub App. A fixed test key, not a secret.
pub const TEST_APP_PRIVATE_KEY_PEM: &str = include_str!("testdata/app-key.pem");
/// Public key (SPKI PEM) of the built-in test GitHub App.
pub const TEST_APP_PUBLIC_KEY_PEM: &str = include_str!("testdata/app-key.pub.pem");

/// A GitHub App the emulator accepts JWTs from.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Numeric app id, accepted as the JWT `iss`.
    pub app_id: i64,
    /// Optional client id (`Iv1.…`), also accepted as the JWT `iss`.
    pub client_id: Option<String>,
    /// The installation the app may mint tokens for.
    pub installation_id: i64,
    /// PEM of the app's RSA public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
    pub public_key_pem: String,
}

impl AppConfig {
    /// The built-in test app: [`TEST_APP_ID`], [`TEST_APP_CLIENT_ID`], [`TEST_APP_INSTALLATION_ID`],
    /// signed with [`TEST_APP_PRIVATE_KEY_PEM`].
    pub fn test_app() -> Self {
        Self {
            app_id: TEST_APP_ID,
            client_id: Some(TEST_APP_CLIENT_ID.to_owned()),
            installation_id: TEST_APP_INSTALLATION_ID,
            public_key_pem: TEST_APP_PUBLIC_KEY_PEM.to_owned(),
        }
    }
}

/// The shape of admin tokens runner-registration hands out
/// (docs/architecture.md#credential-exchange, edge case 1 of
/// docs/architecture.md#protocol-edge-cases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AdminTokenStyle {
    /// A normal JWT with `exp` (what the real service issues).
    #[default]
    Standard,
    /// No `exp` claim (the Go client crashes); the emulator accepts it until revoked.
    WithoutExp,
    /// Header, claims and signature base64url **with** `=` padding (a Go parse error).
    PaddedBase64,
    /// A header without `alg` (a Go parse error).
    WithoutAlg,
}

/// An error the service answers with: status and VSS exception type key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSpec {
    /// HTTP status code.
    pub status: u16,
    /// Short exception name, e.g. `TaskAgentExistsException`; expanded into the full `typeName`.
    pub type_key: String,
}

impl ErrorSpec {
    /// Builds an error spec.
    pub fn new(status: u16, type_key: &str) -> Self {
        Self {
            status,
            type_key: type_key.to_owned(),
        }
    }
}

/// Everything that can be configured on an emulator. `Default` accepts [`DEFAULT_PAT`] and the
/// built-in test app, holds long polls 50 s and otherwise follows the protocol spec.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Port to bind on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Personal access tokens accepted by the registration-token endpoints (any scope).
    pub pats: Vec<SecretString>,
    /// GitHub Apps accepted by the installation-token endpoint.
    pub apps: Vec<AppConfig>,
    /// Extra runner groups besides `Default` (id 1); they get ids 2, 3, … in order.
    pub runner_groups: Vec<String>,
    /// Lifetime (`exp - iat`) of admin JWTs returned by runner-registration.
    pub admin_token_lifetime: Duration,
    /// Shape of admin tokens (fault knob for client tests).
    pub admin_token_style: AdminTokenStyle,
    /// Lifetime of installation access tokens.
    pub installation_token_lifetime: Duration,
    /// Lifetime of registration tokens.
    pub registration_token_lifetime: Duration,
    /// Lifetime of message-queue access tokens (401 on Q1, Q2, A10 afterwards).
    pub message_queue_token_lifetime: Duration,
    /// How long GET message holds before answering 202.
    pub long_poll_hold: Duration,
    /// A session with no poll, refresh or acquire for this long expires (spec: inferred).
    pub session_expiry: Duration,
    /// Allowed clock skew for App JWT `iat` in the future.
    pub app_jwt_clock_skew: Duration,
    /// Maximum `exp - iat` of an App JWT (GitHub: 10 minutes).
    pub app_jwt_max_lifetime: Duration,
    /// At most this many job messages per message envelope.
    pub max_jobs_per_message: usize,
    /// Scale sets keep labels beyond the name (github.com, GHES ≥ 3.21); false = GHES without the flag.
    pub custom_labels_enabled: bool,
    /// Answer to creating or renaming a scale set onto an existing name in the group (spec: inferred).
    pub duplicate_scale_set: ErrorSpec,
    /// Answer to an unknown scale set id: `None` = 200 with a literal `null` body, else this error (spec: inferred).
    pub scale_set_not_found: Option<ErrorSpec>,
    /// Answer on Q1, Q2, A10 and A8 when the session was deleted or expired (spec: inferred).
    pub session_gone: ErrorSpec,
    /// A session create from the owner of the live session replaces it instead of a conflict
    /// [inferred; edge case 7 of docs/architecture.md#protocol-edge-cases is a conflict for
    /// everyone].
    pub same_owner_replaces_session: bool,
    /// Answer to a second session while one is alive.
    pub session_conflict: ErrorSpec,
    /// DELETE of an unknown message id (spec: inferred).
    pub message_not_found: ErrorSpec,
    /// Reject Actions-service requests without `api-version=6.0-preview` with 400 (spec: inferred).
    pub require_api_version: bool,
    /// Reject request bodies whose `Content-Type` is not JSON with 415 (spec: inferred).
    pub require_json_content_type: bool,
    /// Serve GitHub REST paths by host like github.com does: at `/` only for hosted API hosts
    /// (`api.github.com`, `api.github.localhost`, `api.*.ghe.com` in `Host`), at `/api/v3` only
    /// for every other host (GHES). `false` serves both prefixes on every host.
    pub strict_github_hosts: bool,
    /// Offer no more jobs to a scale set than the last `X-ScaleSetMaxCapacity` it sent (0 = none)
    /// (spec, inferred: the header's exact server semantics are not public).
    pub respect_max_capacity: bool,
    /// Runners that connect are told their version is deprecated
    /// (docs/architecture.md#runner-version-deprecation) and get no job.
    pub runner_version_deprecated: bool,
    /// Acquired jobs become assigned after this delay.
    pub assign_delay: Duration,
    /// Jobs that are available but never acquired get acquired by the service after this delay;
    /// `None` = never (clients must call acquirejobs) (spec: inferred).
    pub auto_acquire_after: Option<Duration>,
    /// An assigned job no runner picks up within this time is canceled and requeued.
    pub runner_pickup_timeout: Duration,
    /// A runner that took a job and then stays silent (no start within this time, or no
    /// completion within the job's duration plus this time) is considered lost: the job fails
    /// (or, if not started, is reassigned) and the runner goes offline (spec: inferred).
    pub lost_runner_timeout: Duration,
    /// How many times a job is requeued after a pickup timeout before it stays canceled.
    pub max_requeues: u32,
    /// Interval of the background clock that drives timed transitions.
    pub tick_interval: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            pats: vec![SecretString::from(DEFAULT_PAT)],
            apps: vec![AppConfig::test_app()],
            runner_groups: Vec::new(),
            admin_token_lifetime: Duration::from_secs(3600),
            admin_token_style: AdminTokenStyle::Standard,
            installation_token_lifetime: Duration::from_secs(3600),
            registration_token_lifetime: Duration::from_secs(3600),
            message_queue_token_lifetime: Duration::from_secs(3600),
            long_poll_hold: Duration::from_secs(50),
            session_expiry: Duration::from_secs(300),
            app_jwt_clock_skew: Duration::from_secs(60),
            app_jwt_max_lifetime: Duration::from_secs(600),
            max_jobs_per_message: 50,
            custom_labels_enabled: true,
            duplicate_scale_set: ErrorSpec::new(409, "RunnerScaleSetExistsException"),
            scale_set_not_found: Some(ErrorSpec::new(404, "RunnerScaleSetNotFoundException")),
            session_gone: ErrorSpec::new(400, "TaskAgentSessionExpiredException"),
            same_owner_replaces_session: false,
            session_conflict: ErrorSpec::new(409, "TaskAgentSessionConflictException"),
            message_not_found: ErrorSpec::new(404, "TaskAgentMessageNotFoundException"),
            require_api_version: true,
            require_json_content_type: true,
            strict_github_hosts: true,
            respect_max_capacity: true,
            runner_version_deprecated: false,
            assign_delay: Duration::ZERO,
            auto_acquire_after: None,
            runner_pickup_timeout: Duration::from_secs(600),
            lost_runner_timeout: Duration::from_secs(600),
            max_requeues: 3,
            tick_interval: Duration::from_millis(50),
        }
    }
}
