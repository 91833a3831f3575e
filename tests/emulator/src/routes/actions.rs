//! Actions service side (A1 to A14, L1): runner groups, scale sets, sessions, jobs, runners.

use axum::response::Response;
use serde_json::Value;

use crate::endpoint::Endpoint;
use crate::server::{Req, Shared};
use crate::wire::{ApiError, empty_response, json_response};

fn check_common(shared: &Shared, req: &Req) -> Result<(), ApiError> {
    let tenant = req.params.first().map(String::as_str).unwrap_or_default();
    let (current, require_version) =
        shared.read(|st, _| (st.tenant().to_string(), st.cfg.require_api_version));
    if tenant != current {
        return Err(ApiError::not_found());
    }
    if req.endpoint == Endpoint::AcquireJobs {
        shared.mutate(|st, now| st.mq_session(req.bearer(), now))?;
    } else {
        shared.read(|st, now| st.check_admin(req.bearer(), now))?;
    }
    if require_version && req.query("api-version").is_none_or(str::is_empty) {
        return Err(ApiError::vss(
            400,
            "VssVersionNotSpecifiedException",
            format!(
                "No api-version was supplied for the {} request. Add the query parameter api-version=6.0-preview.",
                req.method
            ),
        ));
    }
    super::require_json(shared, req)
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> Result<Response, ApiError> {
    use Endpoint as E;
    check_common(shared, req)?;
    let ok = |v: Value| Ok(json_response(200, &v));
    match req.endpoint {
        E::RunnerGroups => ok(shared.read(|st, _| st.runner_groups(req.query("groupName")))),
        E::ListScaleSets => {
            let group = match req.query("runnerGroupId") {
                None | Some("") => None,
                Some(g) => Some(g.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Query parameter runnerGroupId must be an integer, got {g:?}."
                    ))
                })?),
            };
            ok(shared.read(|st, _| st.list_scale_sets(group, req.query("name"))))
        }
        E::GetScaleSet => {
            let id = req.id(1, "runner scale set id")?;
            ok(shared.read(|st, _| st.get_scale_set(id))?)
        }
        E::CreateScaleSet => ok(shared.mutate(|st, now| st.create_scale_set(&req.body, now))?),
        E::UpdateScaleSet => {
            let id = req.id(1, "runner scale set id")?;
            ok(shared.mutate(|st, _| st.update_scale_set(id, &req.body))?)
        }
        E::DeleteScaleSet => {
            let id = req.id(1, "runner scale set id")?;
            shared.mutate(|st, now| st.delete_scale_set(id, now))?;
            Ok(empty_response(204))
        }
        E::CreateSession => {
            let id = req.id(1, "runner scale set id")?;
            ok(shared.mutate(|st, now| st.create_session(id, &req.body, now))?)
        }
        E::RefreshSession => {
            let id = req.id(1, "runner scale set id")?;
            let sid = req.params.get(2).cloned().unwrap_or_default();
            ok(shared.mutate(|st, now| st.refresh_session(id, &sid, now))?)
        }
        E::DeleteSession => {
            let id = req.id(1, "runner scale set id")?;
            let sid = req.params.get(2).cloned().unwrap_or_default();
            shared.mutate(|st, _| st.delete_session(id, &sid))?;
            Ok(empty_response(204))
        }
        E::AcquireJobs => {
            let id = req.id(1, "runner scale set id")?;
            ok(shared.mutate(|st, now| {
                let session = st.mq_session(req.bearer(), now)?;
                st.acquire_jobs(id, &session, &req.body, now)
            })?)
        }
        E::AcquirableJobs => {
            let id = req.id(1, "runner scale set id")?;
            match shared.read(|st, _| st.acquirable_jobs(id))? {
                Some(v) => ok(v),
                None => Ok(empty_response(204)),
            }
        }
        E::GenerateJitConfig => {
            let id = req.id(1, "runner scale set id")?;
            ok(shared.mutate(|st, now| st.generate_jit(id, &req.body, now))?)
        }
        E::GetRunner => {
            let id = req.id(1, "runner id")?;
            ok(shared.read(|st, _| st.get_runner(id))?)
        }
        E::RunnersByName => ok(shared.read(|st, _| st.runners_by_name(req.query("agentName")))),
        E::RemoveRunner => {
            let id = req.id(1, "runner id")?;
            shared.mutate(|st, _| st.remove_runner(id))?;
            Ok(empty_response(204))
        }
        _ => Err(ApiError::not_found()),
    }
}
