//! GitHub REST side (G1 to G3): installation tokens, registration tokens, runner registration.

use axum::response::Response;

use crate::endpoint::Endpoint;
use crate::scope::Scope;
use crate::server::{Req, Shared};
use crate::wire::{ApiError, json_response};

pub(crate) fn handle(shared: &Shared, req: &Req) -> Result<Response, ApiError> {
    match req.endpoint {
        Endpoint::InstallationToken => {
            let (scheme, jwt) = req.auth().ok_or_else(|| {
                ApiError::github(
                    401,
                    "A JSON web token could not be decoded (no Authorization: Bearer header)",
                )
            })?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::github(
                    401,
                    "A JSON web token could not be decoded (use Authorization: Bearer {app JWT})",
                ));
            }
            let iid = req
                .params
                .first()
                .and_then(|p| p.parse::<i64>().ok())
                .ok_or_else(|| ApiError::github(404, "Not Found"))?;
            let body = shared.mutate(|st, now| st.installation_token(jwt, iid, now))?;
            Ok(json_response(201, &body))
        }
        Endpoint::RegistrationToken => {
            let (scheme, token) = req
                .auth()
                .ok_or_else(|| ApiError::github(401, "Requires authentication"))?;
            if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")) {
                return Err(ApiError::github(401, "Bad credentials"));
            }
            let p = &req.params;
            let scope = match p.first().map(String::as_str) {
                Some("repos") => Scope::Repository {
                    owner: p.get(1).cloned().unwrap_or_default(),
                    repo: p.get(2).cloned().unwrap_or_default(),
                },
                Some("orgs") => Scope::Organization(p.get(1).cloned().unwrap_or_default()),
                _ => Scope::Enterprise(p.get(1).cloned().unwrap_or_default()),
            };
            let body = shared.mutate(|st, now| st.registration_token(token, scope, now))?;
            Ok(json_response(201, &body))
        }
        Endpoint::RunnerRegistration => {
            let (scheme, token) = req
                .auth()
                .ok_or_else(|| ApiError::github(401, "Requires authentication"))?;
            if !scheme.eq_ignore_ascii_case("remoteauth") {
                return Err(ApiError::github(
                    401,
                    "Bad credentials (runner-registration takes Authorization: RemoteAuth {registration token})",
                ));
            }
            super::require_json(shared, req)?;
            let body = shared.mutate(|st, now| st.runner_registration(token, &req.body, now))?;
            Ok(json_response(201, &body))
        }
        Endpoint::ListSelfHostedRunners | Endpoint::DeleteSelfHostedRunner => {
            let (scheme, token) = req
                .auth()
                .ok_or_else(|| ApiError::github(401, "Requires authentication"))?;
            if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")) {
                return Err(ApiError::github(401, "Bad credentials"));
            }
            if req.endpoint == Endpoint::DeleteSelfHostedRunner {
                let id = req
                    .params
                    .first()
                    .and_then(|p| p.parse::<i64>().ok())
                    .ok_or_else(|| ApiError::github(404, "Not Found"))?;
                shared.mutate(|st, now| st.delete_self_hosted_runner(token, id, now))?;
                return Ok(crate::wire::empty_response(204));
            }
            let number = |key: &str, default: usize| {
                req.query(key)
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(default)
            };
            let (per_page, page) = (
                number("per_page", 30).clamp(1, 100),
                number("page", 1).max(1),
            );
            let body =
                shared.read(|st, now| st.list_self_hosted_runners(token, per_page, page, now))?;
            Ok(json_response(200, &body))
        }
        _ => Err(ApiError::not_found()),
    }
}
