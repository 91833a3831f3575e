//! GitHub REST self-hosted runners of the configured scope (docs.github.com, "REST API endpoints
//! for self-hosted runners"): list them, page by page, and delete one. Authenticated with the PAT
//! or the App's installation token; `B` is `https://api.github.com` or `https://HOST/api/v3`.

use http::{Method, StatusCode, header};
use secrecy::SecretString;

use crate::classify::{self, Target};
use crate::client::ActionsClient;
use crate::credentials::Credentials;
use crate::decode;
use crate::error::{Error, Result};
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
            let (runners, total_count) = decode::self_hosted_runners(&call, &reply)?;
            let got = runners.len();
            all.extend(runners);
            if got < RUNNERS_PER_PAGE || all.len() >= total_count {
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
