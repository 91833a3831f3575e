//! GitHub REST self-hosted runners of the configured scope (docs.github.com, "REST API endpoints
//! for self-hosted runners"): list them, page by page, and delete one. Authenticated with the PAT
//! or the App's installation token; `B` is `https://api.github.com` or `https://HOST/api/v3`.

use http::{Method, StatusCode, header};
use secrecy::SecretString;
use serde::Deserialize;

use crate::classify::{self, Target};
use crate::client::ActionsClient;
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::json;
use crate::transport::Call;

/// Runners asked for per page (GitHub's maximum).
pub const RUNNERS_PER_PAGE: usize = 100;

/// A self-hosted runner as GitHub's REST API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfHostedRunner {
    /// Runner id (the same id the Actions service gives the runner).
    pub id: i64,
    /// Runner name.
    pub name: String,
    /// `os`, e.g. `Linux`.
    pub os: String,
    /// `online` or `offline`.
    pub status: String,
    /// Whether it runs a job now.
    pub busy: bool,
    /// Label names.
    pub labels: Vec<String>,
    /// Runner group (organization and enterprise runners).
    pub runner_group_id: Option<i64>,
}

#[derive(Deserialize)]
struct PageWire {
    #[serde(default)]
    total_count: usize,
    #[serde(default)]
    runners: Vec<RunnerWire>,
}

#[derive(Deserialize)]
struct RunnerWire {
    id: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    busy: bool,
    #[serde(default)]
    labels: Vec<LabelWire>,
    #[serde(default)]
    runner_group_id: Option<i64>,
}

#[derive(Deserialize)]
struct LabelWire {
    #[serde(default)]
    name: String,
}

impl From<RunnerWire> for SelfHostedRunner {
    fn from(w: RunnerWire) -> Self {
        SelfHostedRunner {
            id: w.id,
            name: w.name,
            os: w.os,
            status: w.status,
            busy: w.busy,
            labels: w.labels.into_iter().map(|l| l.name).collect(),
            runner_group_id: w.runner_group_id,
        }
    }
}

impl ActionsClient {
    /// The token GitHub's REST API takes: the PAT, or a fresh installation token of the App.
    async fn rest_token(&self) -> Result<SecretString> {
        match &self.inner.credentials {
            Credentials::Pat(pat) => Ok(pat.clone()),
            Credentials::App(app) => self.chain().installation_token(app).await,
        }
    }

    fn rest_call(
        &self,
        operation: &'static str,
        method: Method,
        url: String,
        token: &SecretString,
    ) -> Call {
        Call::new(operation, method, url)
            .bearer(token)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header(header::USER_AGENT, &self.user_agent())
    }

    fn runners_url(&self) -> String {
        let github = &self.inner.github;
        format!("{}{}", github.api_base(), github.scope().runners_path())
    }

    /// Every self-hosted runner of the configured organization, repository or enterprise
    /// (`GET …/actions/runners`, [`RUNNERS_PER_PAGE`] a page until a short page or
    /// `total_count`).
    pub async fn list_self_hosted_runners(&self) -> Result<Vec<SelfHostedRunner>> {
        let token = self.rest_token().await?;
        let base = self.runners_url();
        let mut all = Vec::new();
        for page in 1usize.. {
            let url = format!("{base}?per_page={RUNNERS_PER_PAGE}&page={page}");
            let call = self.rest_call("list self-hosted runners", Method::GET, url, &token);
            let reply = self.inner.transport.send(&call).await?;
            if reply.status != StatusCode::OK {
                return Err(classify::error(&call, &reply, Target::GitHub));
            }
            let wire: PageWire = json::decode(&reply.body).map_err(|e| {
                Error::bad_response(call.info(format!("self-hosted runner list: {e}")))
            })?;
            let got = wire.runners.len();
            all.extend(wire.runners.into_iter().map(SelfHostedRunner::from));
            if got < RUNNERS_PER_PAGE || all.len() >= wire.total_count {
                break;
            }
        }
        Ok(all)
    }

    /// Deletes a self-hosted runner (`DELETE …/actions/runners/{id}`). One GitHub no longer
    /// knows (404) counts as deleted; one that still runs a job (422) is
    /// [`Error::JobStillRunning`].
    pub async fn delete_self_hosted_runner(&self, id: i64) -> Result<()> {
        let token = self.rest_token().await?;
        let url = format!("{}/{id}", self.runners_url());
        let call = self.rest_call("delete self-hosted runner", Method::DELETE, url, &token);
        let reply = self.inner.transport.send(&call).await?;
        match reply.status {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            StatusCode::UNPROCESSABLE_ENTITY => Err(Error::JobStillRunning(Box::new(
                classify::info(&call, &reply),
            ))),
            _ => Err(classify::error(&call, &reply, Target::GitHub)),
        }
    }
}
