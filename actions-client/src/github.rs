//! The GitHub REST credential exchange (docs/architecture.md#credential-exchange) and the
//! admin-token cache with single-flight refresh.

use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use http::{Method, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};

use crate::classify::{self, Target};
use crate::config::GitHubConfig;
use crate::credentials::{Credentials, GitHubApp};
use crate::decode;
use crate::error::Result;
use crate::retry::RetryMode;
use crate::transport::{Call, Reply, Transport};
use crate::wire;

/// The Actions service base `S` and its admin token.
#[derive(Clone)]
pub(crate) struct AdminToken {
    pub service_url: String,
    pub token: SecretString,
    /// `exp` of the token; `None` when it had none (then every call refreshes).
    pub expires_at: Option<i64>,
}

impl AdminToken {
    fn is_fresh(&self, now: i64, margin: Duration) -> bool {
        self.expires_at
            .is_some_and(|exp| now.saturating_add(margin.as_secs() as i64) < exp)
    }
}

/// Everything the credential chain needs, detached from the client (no reference cycle).
#[derive(Clone)]
pub(crate) struct Chain {
    pub github: GitHubConfig,
    pub credentials: Credentials,
    pub transport: Transport,
    pub user_agent: String,
}

impl Chain {
    async fn post(&self, call: Call, expect: fn(StatusCode) -> bool) -> Result<(Call, Reply)> {
        let reply = self.transport.send(&call).await?;
        if !expect(reply.status) {
            return Err(classify::error(&call, &reply, Target::GitHub));
        }
        Ok((call, reply))
    }

    /// G1: an installation access token for the App.
    pub async fn installation_token(&self, app: &GitHubApp) -> Result<SecretString> {
        let jwt = app.jwt(chrono::Utc::now().timestamp())?;
        let url = format!(
            "{}/app/installations/{}/access_tokens",
            self.github.api_base(),
            app.installation_id()
        );
        let call = Call::new("installation token", Method::POST, url)
            .bearer(&jwt)
            .header(header::CONTENT_TYPE, "application/vnd.github+json")
            .header(header::USER_AGENT, &self.user_agent);
        let (call, reply) = self.post(call, |s| s == StatusCode::CREATED).await?;
        decode::token(&call, &reply)
    }

    /// G2: a runner registration token for the configured scope.
    pub async fn registration_token(&self) -> Result<SecretString> {
        let credential = match &self.credentials {
            Credentials::Pat(pat) => pat.clone(),
            Credentials::App(app) => self.installation_token(app).await?,
        };
        let call = Call::new(
            "registration token",
            Method::POST,
            self.github.registration_token_url(),
        )
        .bearer(&credential)
        .header(header::CONTENT_TYPE, "application/vnd.github.v3+json")
        .header(header::USER_AGENT, &self.user_agent);
        let (call, reply) = self.post(call, |s| s == StatusCode::CREATED).await?;
        decode::token(&call, &reply)
    }

    /// G1–G3: the Actions service URL and a fresh admin token.
    pub async fn admin_token(self) -> Result<AdminToken> {
        let registration = self.registration_token().await?;
        let url = format!("{}/actions/runner-registration", self.github.api_base());
        let mut call = Call::new("runner registration", Method::POST, url)
            .auth_scheme("RemoteAuth", &registration)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, &self.user_agent)
            .body(wire::registration_body(self.github.config_url()));
        call.mode = RetryMode::Registration;
        let (call, reply) = self.post(call, |s| s.is_success()).await?;
        decode::admin_token(&call, &reply)
    }
}

type Flight = Shared<BoxFuture<'static, Result<AdminToken>>>;

#[derive(Default)]
struct State {
    current: Option<AdminToken>,
    flight: Option<(u64, Flight)>,
    flights: u64,
}

/// The cached admin token. Concurrent callers that find it stale share one refresh; the lock is
/// never held across a request.
pub(crate) struct AdminTokens {
    state: Mutex<State>,
    margin: Duration,
}

impl AdminTokens {
    pub(crate) fn new(margin: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            margin,
        }
    }

    /// A token that is valid for more than the margin, refreshing it through `chain` if needed.
    pub(crate) async fn get(&self, chain: impl FnOnce() -> Chain) -> Result<AdminToken> {
        let (id, flight) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(current) = &state.current
                && current.is_fresh(chrono::Utc::now().timestamp(), self.margin)
            {
                return Ok(current.clone());
            }
            match &state.flight {
                Some((id, flight)) => (*id, flight.clone()),
                None => {
                    state.flights += 1;
                    let id = state.flights;
                    let flight = chain().admin_token().boxed().shared();
                    state.flight = Some((id, flight.clone()));
                    (id, flight)
                }
            }
        };
        let result = flight.await;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.flight.as_ref().is_some_and(|(f, _)| *f == id) {
            state.flight = None;
            if let Ok(token) = &result {
                state.current = Some(token.clone());
            }
        }
        result
    }

    /// The Actions service URL of the current token, if any.
    pub(crate) fn service_url(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.current.as_ref().map(|t| t.service_url.clone())
    }

    /// Drops the cached token if it is still `token` (so that a newer one is kept).
    pub(crate) fn invalidate_if(&self, token: &SecretString) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == token.expose_secret())
        {
            state.current = None;
        }
    }

    /// Drops the cached token so that the next call refreshes.
    pub(crate) fn invalidate(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.current = None;
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("service_url", &self.service_url)
            .field("token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_margin_is_inclusive() {
        let t = AdminToken {
            service_url: String::new(),
            token: SecretString::from("x"),
            expires_at: Some(1000),
        };
        let m = Duration::from_secs(60);
        assert!(t.is_fresh(939, m));
        assert!(!t.is_fresh(940, m), "now + 60 == exp refreshes");
        assert!(!t.is_fresh(941, m), "59 s left refreshes");
        let none = AdminToken {
            expires_at: None,
            ..t
        };
        assert!(!none.is_fresh(0, m));
        assert!(!format!("{none:?}").contains("\"x\""));
    }
}
