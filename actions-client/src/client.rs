//! [`ActionsClient`]: construction and the request plumbing shared by every endpoint.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{Method, StatusCode, header};
use secrecy::SecretString;
use serde_json::Value;

use crate::classify::{self, Target};
use crate::config::GitHubConfig;
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::github::{AdminTokens, Chain};
use crate::json;
use crate::transport::{Call, Reply, Transport};
use crate::urls;
use crate::user_agent::SystemInfo;

/// Refresh the admin token when it expires within this margin.
pub const ADMIN_TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Builds an [`ActionsClient`].
#[derive(Debug)]
pub struct ClientBuilder {
    config_url: String,
    credentials: Credentials,
    transport: Option<Transport>,
    system: SystemInfo,
    force_ghes: Option<bool>,
}

impl ClientBuilder {
    /// Uses `transport` (share one per process) instead of [`Transport::shared`].
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Sets who is calling (serialized into the `User-Agent`).
    pub fn system_info(mut self, system: SystemInfo) -> Self {
        self.system = system;
        self
    }

    /// Overrides `GITHUB_ACTIONS_FORCE_GHES` (`true` = GHES rules for every host).
    pub fn force_ghes(mut self, force: bool) -> Self {
        self.force_ghes = Some(force);
        self
    }

    /// Validates the configuration. No network I/O happens until the first call.
    pub fn build(self) -> Result<ActionsClient> {
        let github = match self.force_ghes {
            Some(force) => GitHubConfig::parse_with(&self.config_url, force)?,
            None => GitHubConfig::parse(&self.config_url)?,
        };
        let transport = match self.transport {
            Some(t) => t,
            None => Transport::shared()?,
        };
        Ok(ActionsClient {
            inner: Arc::new(Inner {
                github,
                credentials: self.credentials,
                transport,
                system: RwLock::new(self.system),
                admin: AdminTokens::new(ADMIN_TOKEN_REFRESH_MARGIN),
            }),
        })
    }
}

pub(crate) struct Inner {
    pub github: GitHubConfig,
    pub credentials: Credentials,
    pub transport: Transport,
    pub system: RwLock<SystemInfo>,
    pub admin: AdminTokens,
}

/// Client of GitHub's credential exchange and the Actions service's scale-set APIs.
///
/// Cheap to clone; clones share the admin token. Every method is safe to call concurrently.
#[derive(Clone)]
pub struct ActionsClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ActionsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionsClient")
            .field("config_url", &self.inner.github.config_url())
            .field("credentials", &self.inner.credentials.kind())
            .finish()
    }
}

/// What one Actions-service request is.
pub(crate) struct ServiceRequest<'a> {
    pub operation: &'static str,
    pub method: Method,
    pub path: String,
    pub params: Vec<(&'a str, &'a str)>,
    pub body: Option<Vec<u8>>,
    pub expect: StatusCode,
    pub target: Target,
    /// Replaces the admin token (acquire jobs uses the message-queue token).
    pub token: Option<&'a SecretString>,
}

impl<'a> ServiceRequest<'a> {
    pub(crate) fn new(
        operation: &'static str,
        method: Method,
        path: impl Into<String>,
        expect: StatusCode,
        target: Target,
    ) -> Self {
        Self {
            operation,
            method,
            path: path.into(),
            params: Vec::new(),
            body: None,
            expect,
            target,
            token: None,
        }
    }

    pub(crate) fn param(mut self, key: &'a str, value: &'a str) -> Self {
        self.params.push((key, value));
        self
    }

    pub(crate) fn json(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }
}

impl ActionsClient {
    /// Starts building a client for `config_url` (repository, organization or enterprise URL).
    pub fn builder(config_url: impl Into<String>, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            config_url: config_url.into(),
            credentials,
            transport: None,
            system: SystemInfo::default(),
            force_ghes: None,
        }
    }

    /// The parsed configuration URL.
    pub fn config(&self) -> &GitHubConfig {
        &self.inner.github
    }

    /// The transport in use.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The current `User-Agent` value.
    pub fn user_agent(&self) -> String {
        self.inner
            .system
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .user_agent()
    }

    /// Sets the scale set id reported in the `User-Agent`.
    pub fn set_scale_set_id(&self, id: i64) {
        self.inner
            .system
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .scale_set_id = id;
    }

    /// The Actions service URL `S` learnt at the last admin-token refresh, if any.
    pub fn service_url(&self) -> Option<String> {
        self.inner.admin.service_url()
    }

    /// Forgets the admin token; the next Actions-service call runs the credential chain again.
    pub fn invalidate_admin_token(&self) {
        self.inner.admin.invalidate();
    }

    /// A runner registration token for the configured scope (exchanging the App's installation
    /// token first when the credentials are an App).
    pub async fn registration_token(&self) -> Result<SecretString> {
        self.chain().registration_token().await
    }

    pub(crate) fn chain(&self) -> Chain {
        Chain {
            github: self.inner.github.clone(),
            credentials: self.inner.credentials.clone(),
            transport: self.inner.transport.clone(),
            user_agent: self.user_agent(),
        }
    }

    /// Sends an Actions-service request (admin-token precheck first) and checks the status.
    ///
    /// A 401 on an admin-token call (the token was revoked, or `S` moved) refreshes the admin
    /// token once and retries; the Go client does not, and stays stuck until the token expires.
    pub(crate) async fn service(&self, req: ServiceRequest<'_>) -> Result<(Call, Reply)> {
        let admin = self.inner.admin.get(|| self.chain()).await?;
        match self.attempt(&req, &admin).await {
            Err(Error::AuthFailed(info)) if req.token.is_none() && info.status == Some(401) => {
                tracing::info!(
                    operation = req.operation,
                    "admin token rejected; refreshing it once"
                );
                self.inner.admin.invalidate_if(&admin.token);
                let admin = self.inner.admin.get(|| self.chain()).await?;
                self.attempt(&req, &admin).await
            }
            other => other,
        }
    }

    async fn attempt(
        &self,
        req: &ServiceRequest<'_>,
        admin: &crate::github::AdminToken,
    ) -> Result<(Call, Reply)> {
        let url = urls::service_url(&admin.service_url, &req.path, &req.params)
            .map_err(|e| Error::bad_response(crate::error::ErrorInfo::new(req.operation, e)))?;
        let token = req.token.unwrap_or(&admin.token);
        let mut call = Call::new(req.operation, req.method.clone(), url)
            .bearer(token)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, &self.user_agent());
        if let Some(body) = &req.body {
            call = call.body(body.clone());
        }
        let reply = self.inner.transport.send(&call).await?;
        if reply.status != req.expect {
            return Err(classify::error(&call, &reply, req.target));
        }
        Ok((call, reply))
    }

    /// Decodes the JSON body of a successful reply.
    pub(crate) fn value(call: &Call, reply: &Reply) -> Result<Value> {
        json::first_value(&reply.body).map_err(|e| {
            let mut info = classify::info(call, reply);
            info.message = call.redact(format!("response body: {e}"));
            Error::bad_response(info)
        })
    }

    /// Maps a decoding problem of a successful reply to [`Error::BadResponse`].
    pub(crate) fn bad(call: &Call, reply: &Reply, problem: String) -> Error {
        let mut info = classify::info(call, reply);
        info.message = call.redact(problem);
        Error::bad_response(info)
    }
}
