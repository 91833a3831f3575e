//! Runner groups, scale sets, JIT configs and runners (docs/architecture.md#operations).

use http::{Method, StatusCode};

use crate::classify::Target;
use crate::client::{ActionsClient, ServiceRequest};
use crate::decode;
use crate::error::{Error, ErrorInfo, Result};
use crate::types::{
    JitConfig, JitSetting, NewRunnerScaleSet, RunnerGroup, RunnerReference, RunnerScaleSet,
    RunnerScaleSetUpdate,
};
use crate::wire;

const SCALE_SETS: &str = "/_apis/runtime/runnerscalesets";
const AGENTS: &str = "/_apis/distributedtask/pools/0/agents";

impl ActionsClient {
    /// A1: the runner group named `name`. No group, or several, is an error. The default group
    /// ([`crate::DEFAULT_RUNNER_GROUP_ID`]) needs no lookup.
    pub async fn get_runner_group_by_name(&self, name: &str) -> Result<RunnerGroup> {
        let req = ServiceRequest::new(
            "get runner group by name",
            Method::GET,
            "/_apis/runtime/runnergroups/",
            StatusCode::OK,
            Target::RunnerGroup,
        )
        .param("groupName", name);
        let (call, reply) = self.service(req).await?;
        decode::runner_group(&call, &reply, name)
    }

    /// A2: the scale set named `name` in runner group `runner_group_id`; `None` when there is none.
    pub async fn get_runner_scale_set(
        &self,
        runner_group_id: i64,
        name: &str,
    ) -> Result<Option<RunnerScaleSet>> {
        let gid = runner_group_id.to_string();
        let req = ServiceRequest::new(
            "get runner scale set by name",
            Method::GET,
            SCALE_SETS,
            StatusCode::OK,
            Target::ScaleSet,
        )
        .param("runnerGroupId", &gid)
        .param("name", name);
        let (call, reply) = self.service(req).await?;
        decode::scale_set_by_name(&call, &reply, name)
    }

    /// P1 (an unmerged proposal of the Go library, not in the protocol's core set): every scale
    /// set, or those of one runner group. A service without it answers with an error. Elements
    /// that cannot be decoded are skipped with a warning.
    pub async fn list_runner_scale_sets(
        &self,
        runner_group_id: Option<i64>,
    ) -> Result<Vec<RunnerScaleSet>> {
        let gid = runner_group_id.map(|g| g.to_string());
        let mut req = ServiceRequest::new(
            "list runner scale sets",
            Method::GET,
            SCALE_SETS,
            StatusCode::OK,
            Target::ScaleSet,
        );
        if let Some(gid) = &gid {
            req = req.param("runnerGroupId", gid);
        }
        let (call, reply) = self.service(req).await?;
        decode::scale_sets(&call, &reply)
    }

    /// A3: the scale set with `id`; `None` for a `null` body or a not-found exception (a bare
    /// 404 without one stays an error: it may come from a stale service URL).
    pub async fn get_runner_scale_set_by_id(&self, id: i64) -> Result<Option<RunnerScaleSet>> {
        let req = ServiceRequest::new(
            "get runner scale set",
            Method::GET,
            format!("{SCALE_SETS}/{id}"),
            StatusCode::OK,
            Target::ScaleSet,
        );
        let (call, reply) = match self.service(req).await {
            Ok(ok) => ok,
            Err(Error::ScaleSetNotFound(i)) if i.exception.is_some() => return Ok(None),
            Err(e) => return Err(e),
        };
        decode::scale_set_by_id(&call, &reply)
    }

    /// A4: creates a scale set. Without labels the name is the only label; a scale set with
    /// neither a name nor labels is rejected before anything is sent.
    pub async fn create_runner_scale_set(&self, new: &NewRunnerScaleSet) -> Result<RunnerScaleSet> {
        let body = wire::create_body(new).ok_or_else(|| {
            Error::config(
                "runner scale set",
                "<no name, no labels>",
                "runner scale set must have a name or at least one label",
            )
        })?;
        let req = ServiceRequest::new(
            "create runner scale set",
            Method::POST,
            SCALE_SETS,
            StatusCode::OK,
            Target::ScaleSet,
        )
        .json(body);
        self.scale_set_reply(req).await
    }

    /// A5: patches a scale set (name, runner group, labels); absent fields are unchanged.
    pub async fn update_runner_scale_set(
        &self,
        id: i64,
        update: &RunnerScaleSetUpdate,
    ) -> Result<RunnerScaleSet> {
        let req = ServiceRequest::new(
            "update runner scale set",
            Method::PATCH,
            format!("{SCALE_SETS}/{id}"),
            StatusCode::OK,
            Target::ScaleSet,
        )
        .json(wire::update_body(update));
        self.scale_set_reply(req).await
    }

    async fn scale_set_reply(&self, req: ServiceRequest<'_>) -> Result<RunnerScaleSet> {
        let (call, reply) = self.service(req).await?;
        decode::scale_set(&call, &reply)
    }

    /// A6: deletes a scale set (exactly 204; a missing one is [`Error::ScaleSetNotFound`]).
    pub async fn delete_runner_scale_set(&self, id: i64) -> Result<()> {
        let req = ServiceRequest::new(
            "delete runner scale set",
            Method::DELETE,
            format!("{SCALE_SETS}/{id}"),
            StatusCode::NO_CONTENT,
            Target::ScaleSet,
        );
        self.service(req).await.map(|_| ())
    }

    /// A11: registers a just-in-time runner in the scale set. A duplicate name is
    /// [`Error::RunnerExists`].
    pub async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        setting: &JitSetting,
    ) -> Result<JitConfig> {
        let body = serde_json::to_vec(setting).map_err(|e| {
            Error::bad_response(ErrorInfo::new("generate JIT config", e.to_string()))
        })?;
        let req = ServiceRequest::new(
            "generate JIT config",
            Method::POST,
            format!("{SCALE_SETS}/{scale_set_id}/generatejitconfig"),
            StatusCode::OK,
            Target::ScaleSet,
        )
        .json(body);
        let (call, reply) = self.service(req).await?;
        decode::jit(&call, &reply)
    }

    /// A12: the runner with `id`; `None` when the service says it does not exist.
    pub async fn get_runner(&self, id: i64) -> Result<Option<RunnerReference>> {
        let req = ServiceRequest::new(
            "get runner",
            Method::GET,
            format!("{AGENTS}/{id}"),
            StatusCode::OK,
            Target::Runner,
        );
        let (call, reply) = match self.service(req).await {
            Ok(ok) => ok,
            Err(Error::RunnerNotFound(i)) if i.exception.is_some() => return Ok(None),
            Err(e) => return Err(e),
        };
        decode::runner(&call, &reply)
    }

    /// A13: the runner named `name`; `None` when there is none.
    pub async fn get_runner_by_name(&self, name: &str) -> Result<Option<RunnerReference>> {
        let req = ServiceRequest::new(
            "get runner by name",
            Method::GET,
            AGENTS,
            StatusCode::OK,
            Target::Runner,
        )
        .param("agentName", name);
        let (call, reply) = self.service(req).await?;
        decode::runner_by_name(&call, &reply, name)
    }

    /// A14: removes a runner. A runner the service reports unknown (204, or a not-found
    /// exception) counts as removed; a busy one is
    /// [`Error::JobStillRunning`] (try again later).
    pub async fn remove_runner(&self, id: i64) -> Result<()> {
        let req = ServiceRequest::new(
            "remove runner",
            Method::DELETE,
            format!("{AGENTS}/{id}"),
            StatusCode::NO_CONTENT,
            Target::Runner,
        );
        match self.service(req).await {
            Ok(_) => Ok(()),
            Err(Error::RunnerNotFound(i)) if i.exception.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
