//! The emulated endpoints and how request paths map onto them (docs/architecture.md#operations).

use std::fmt;
use std::str::FromStr;

use http::Method;
use serde::{Deserialize, Serialize};

/// Every endpoint the emulator serves outside its control API. The names (see [`Endpoint::as_str`])
/// key call counters and fault targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Endpoint {
    /// G1 `POST B/app/installations/{iid}/access_tokens`.
    InstallationToken,
    /// G2 `POST B/{repos/o/r | orgs/o | enterprises/e}/actions/runners/registration-token`.
    RegistrationToken,
    /// G3 `POST B/actions/runner-registration`.
    RunnerRegistration,
    /// A1 `GET S/_apis/runtime/runnergroups/?groupName=`.
    RunnerGroups,
    /// A2 / P1 `GET S/_apis/runtime/runnerscalesets?runnerGroupId=&name=`.
    ListScaleSets,
    /// A3 `GET S/_apis/runtime/runnerscalesets/{id}`.
    GetScaleSet,
    /// A4 `POST S/_apis/runtime/runnerscalesets`.
    CreateScaleSet,
    /// A5 `PATCH S/_apis/runtime/runnerscalesets/{id}`.
    UpdateScaleSet,
    /// A6 `DELETE S/_apis/runtime/runnerscalesets/{id}`.
    DeleteScaleSet,
    /// A7 `POST S/_apis/runtime/runnerscalesets/{id}/sessions`.
    CreateSession,
    /// A8 `PATCH S/_apis/runtime/runnerscalesets/{id}/sessions/{sid}`.
    RefreshSession,
    /// A9 `DELETE S/_apis/runtime/runnerscalesets/{id}/sessions/{sid}`.
    DeleteSession,
    /// A10 `POST S/_apis/runtime/runnerscalesets/{id}/acquirejobs`.
    AcquireJobs,
    /// L1 (legacy) `GET S/_apis/runtime/runnerscalesets/{id}/acquirablejobs`.
    AcquirableJobs,
    /// A11 `POST S/_apis/runtime/runnerscalesets/{id}/generatejitconfig`.
    GenerateJitConfig,
    /// A12 `GET S/_apis/distributedtask/pools/0/agents/{id}`.
    GetRunner,
    /// A13 `GET S/_apis/distributedtask/pools/0/agents?agentName=`.
    RunnersByName,
    /// A14 `DELETE S/_apis/distributedtask/pools/0/agents/{id}`.
    RemoveRunner,
    /// Q1 `GET M` (long poll).
    GetMessage,
    /// Q2 `DELETE M/{messageId}`.
    DeleteMessage,
    /// Runner side: present a JIT config.
    RunnerConnect,
    /// Runner side: fetch the job (long poll).
    RunnerJob,
    /// Runner side: report start.
    RunnerStarted,
    /// Runner side: report completion.
    RunnerCompleted,
    /// Runner side: go away without finishing.
    RunnerDisconnect,
    /// GitHub REST: list the self-hosted runners of an organization, repository or enterprise.
    ListSelfHostedRunners,
    /// GitHub REST: delete a self-hosted runner.
    DeleteSelfHostedRunner,
}

impl Endpoint {
    /// All endpoints.
    pub const ALL: [Endpoint; 27] = [
        Endpoint::InstallationToken,
        Endpoint::RegistrationToken,
        Endpoint::RunnerRegistration,
        Endpoint::RunnerGroups,
        Endpoint::ListScaleSets,
        Endpoint::GetScaleSet,
        Endpoint::CreateScaleSet,
        Endpoint::UpdateScaleSet,
        Endpoint::DeleteScaleSet,
        Endpoint::CreateSession,
        Endpoint::RefreshSession,
        Endpoint::DeleteSession,
        Endpoint::AcquireJobs,
        Endpoint::AcquirableJobs,
        Endpoint::GenerateJitConfig,
        Endpoint::GetRunner,
        Endpoint::RunnersByName,
        Endpoint::RemoveRunner,
        Endpoint::GetMessage,
        Endpoint::DeleteMessage,
        Endpoint::RunnerConnect,
        Endpoint::RunnerJob,
        Endpoint::RunnerStarted,
        Endpoint::RunnerCompleted,
        Endpoint::RunnerDisconnect,
        Endpoint::ListSelfHostedRunners,
        Endpoint::DeleteSelfHostedRunner,
    ];

    /// The stable snake_case name used by counters, faults and the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::InstallationToken => "installation_token",
            Endpoint::RegistrationToken => "registration_token",
            Endpoint::RunnerRegistration => "runner_registration",
            Endpoint::RunnerGroups => "runner_groups",
            Endpoint::ListScaleSets => "list_scale_sets",
            Endpoint::GetScaleSet => "get_scale_set",
            Endpoint::CreateScaleSet => "create_scale_set",
            Endpoint::UpdateScaleSet => "update_scale_set",
            Endpoint::DeleteScaleSet => "delete_scale_set",
            Endpoint::CreateSession => "create_session",
            Endpoint::RefreshSession => "refresh_session",
            Endpoint::DeleteSession => "delete_session",
            Endpoint::AcquireJobs => "acquire_jobs",
            Endpoint::AcquirableJobs => "acquirable_jobs",
            Endpoint::GenerateJitConfig => "generate_jit_config",
            Endpoint::GetRunner => "get_runner",
            Endpoint::RunnersByName => "runners_by_name",
            Endpoint::RemoveRunner => "remove_runner",
            Endpoint::GetMessage => "get_message",
            Endpoint::DeleteMessage => "delete_message",
            Endpoint::RunnerConnect => "runner_connect",
            Endpoint::RunnerJob => "runner_job",
            Endpoint::RunnerStarted => "runner_started",
            Endpoint::RunnerCompleted => "runner_completed",
            Endpoint::RunnerDisconnect => "runner_disconnect",
            Endpoint::ListSelfHostedRunners => "list_self_hosted_runners",
            Endpoint::DeleteSelfHostedRunner => "delete_self_hosted_runner",
        }
    }

    /// Which family the endpoint belongs to.
    pub fn family(self) -> Family {
        match self {
            Endpoint::InstallationToken
            | Endpoint::RegistrationToken
            | Endpoint::RunnerRegistration
            | Endpoint::ListSelfHostedRunners
            | Endpoint::DeleteSelfHostedRunner => Family::GitHub,
            Endpoint::GetMessage | Endpoint::DeleteMessage => Family::Queue,
            Endpoint::RunnerConnect
            | Endpoint::RunnerJob
            | Endpoint::RunnerStarted
            | Endpoint::RunnerCompleted
            | Endpoint::RunnerDisconnect => Family::Runner,
            _ => Family::Actions,
        }
    }
}

/// Endpoint families (docs/architecture.md#wire-protocol), plus the emulator's runner side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// GitHub REST (credential exchange).
    GitHub,
    /// Actions service `S`.
    Actions,
    /// Message queue `M`.
    Queue,
    /// The simulated runner's API.
    Runner,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.as_str()).collect();
                format!("unknown endpoint {s:?}; known: {}", names.join(", "))
            })
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> Self {
        e.as_str().to_owned()
    }
}

impl TryFrom<String> for Endpoint {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A request path resolved to an endpoint and its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Path parameters in order (ids, names, tenant).
    pub params: Vec<String>,
}

/// Why a path did not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this path.
    NotFound,
    /// The path exists but not with this method.
    MethodNotAllowed,
}

/// Whether `host` (a `Host` header value) is a hosted GitHub API host, which serves the REST
/// paths at `/` instead of `/api/v3` (docs/architecture.md#configuration-url-and-api-base).
pub fn is_hosted_api_host(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let lower = name.to_ascii_lowercase();
    lower == "api.github.com"
        || lower == "api.github.localhost"
        || (lower.starts_with("api.") && name.ends_with(".ghe.com"))
}

/// Collapses repeated `/` (legacy clients sent `S` + `/_apis/...` with `S` ending in `/`).
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut last_slash = false;
    for c in path.chars() {
        if c == '/' {
            if !last_slash {
                out.push(c);
            }
            last_slash = true;
        } else {
            out.push(c);
            last_slash = false;
        }
    }
    out
}

fn pick(
    method: &Method,
    options: &[(Method, Endpoint)],
    params: Vec<String>,
) -> Result<Route, RouteError> {
    options
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, endpoint)| Route {
            endpoint: *endpoint,
            params,
        })
        .ok_or(RouteError::MethodNotAllowed)
}

/// Resolves a GitHub REST path (after the `/` or `/api/v3` prefix).
fn route_github(method: &Method, segs: &[&str]) -> Result<Route, RouteError> {
    let post = |e: Endpoint, params: Vec<String>| pick(method, &[(Method::POST, e)], params);
    match segs {
        ["app", "installations", iid, "access_tokens"] => {
            post(Endpoint::InstallationToken, vec![(*iid).to_owned()])
        }
        [
            "repos",
            owner,
            repo,
            "actions",
            "runners",
            "registration-token",
        ] => post(
            Endpoint::RegistrationToken,
            vec!["repos".into(), (*owner).to_owned(), (*repo).to_owned()],
        ),
        ["orgs", org, "actions", "runners", "registration-token"] => post(
            Endpoint::RegistrationToken,
            vec!["orgs".into(), (*org).to_owned()],
        ),
        [
            "enterprises",
            ent,
            "actions",
            "runners",
            "registration-token",
        ] => post(
            Endpoint::RegistrationToken,
            vec!["enterprises".into(), (*ent).to_owned()],
        ),
        ["actions", "runner-registration"] => post(Endpoint::RunnerRegistration, vec![]),
        ["repos", owner, repo, "actions", "runners"] => pick(
            method,
            &[(Method::GET, Endpoint::ListSelfHostedRunners)],
            vec!["repos".into(), (*owner).to_owned(), (*repo).to_owned()],
        ),
        ["orgs" | "enterprises", name, "actions", "runners"] => pick(
            method,
            &[(Method::GET, Endpoint::ListSelfHostedRunners)],
            vec![segs[0].to_owned(), (*name).to_owned()],
        ),
        ["repos", _, _, "actions", "runners", id]
        | ["orgs" | "enterprises", _, "actions", "runners", id] => pick(
            method,
            &[(Method::DELETE, Endpoint::DeleteSelfHostedRunner)],
            vec![(*id).to_owned()],
        ),
        _ => Err(RouteError::NotFound),
    }
}

/// Resolves an Actions service path after `/tenant/{n}/_apis/` (segments lower-cased).
fn route_actions(method: &Method, segs: &[&str], raw: &[&str]) -> Result<Route, RouteError> {
    use Endpoint as E;
    let p = |i: usize| raw.get(i).map(|s| (*s).to_owned()).unwrap_or_default();
    match segs {
        ["runtime", "runnergroups"] => pick(method, &[(Method::GET, E::RunnerGroups)], vec![]),
        ["runtime", "runnerscalesets"] => pick(
            method,
            &[
                (Method::GET, E::ListScaleSets),
                (Method::POST, E::CreateScaleSet),
            ],
            vec![],
        ),
        ["runtime", "runnerscalesets", _] => pick(
            method,
            &[
                (Method::GET, E::GetScaleSet),
                (Method::PATCH, E::UpdateScaleSet),
                (Method::DELETE, E::DeleteScaleSet),
            ],
            vec![p(2)],
        ),
        ["runtime", "runnerscalesets", _, "sessions"] => {
            pick(method, &[(Method::POST, E::CreateSession)], vec![p(2)])
        }
        ["runtime", "runnerscalesets", _, "sessions", _] => pick(
            method,
            &[
                (Method::PATCH, E::RefreshSession),
                (Method::DELETE, E::DeleteSession),
            ],
            vec![p(2), p(4)],
        ),
        ["runtime", "runnerscalesets", _, "acquirejobs"] => {
            pick(method, &[(Method::POST, E::AcquireJobs)], vec![p(2)])
        }
        ["runtime", "runnerscalesets", _, "acquirablejobs"] => {
            pick(method, &[(Method::GET, E::AcquirableJobs)], vec![p(2)])
        }
        ["runtime", "runnerscalesets", _, "generatejitconfig"] => {
            pick(method, &[(Method::POST, E::GenerateJitConfig)], vec![p(2)])
        }
        ["distributedtask", "pools", "0", "agents"] => {
            pick(method, &[(Method::GET, E::RunnersByName)], vec![])
        }
        ["distributedtask", "pools", "0", "agents", _] => pick(
            method,
            &[
                (Method::GET, E::GetRunner),
                (Method::DELETE, E::RemoveRunner),
            ],
            vec![p(4)],
        ),
        _ => Err(RouteError::NotFound),
    }
}

/// Resolves a request. `strict_hosts` applies the hosted/GHES prefix rule to GitHub REST paths.
/// Control-API paths (`/_emulator/…`) are not endpoints and give [`RouteError::NotFound`].
pub fn route(
    method: &Method,
    path: &str,
    host: &str,
    strict_hosts: bool,
) -> Result<Route, RouteError> {
    let path = normalize_path(path);
    let trimmed = path.trim_start_matches('/');
    let trailing_slash = trimmed.ends_with('/');
    let raw: Vec<&str> = trimmed.trim_end_matches('/').split('/').collect();
    let hosted = is_hosted_api_host(host);
    match raw.as_slice() {
        ["tenant", tenant, apis, rest @ ..] if apis.eq_ignore_ascii_case("_apis") => {
            let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
            let lower_refs: Vec<&str> = lower.iter().map(String::as_str).collect();
            let mut r = route_actions(method, &lower_refs, rest)?;
            r.params.insert(0, (*tenant).to_owned());
            Ok(r)
        }
        ["queue", ss] if !trailing_slash => pick(
            method,
            &[(Method::GET, Endpoint::GetMessage)],
            vec![(*ss).to_owned()],
        ),
        ["queue", ss, mid] if !trailing_slash => pick(
            method,
            &[(Method::DELETE, Endpoint::DeleteMessage)],
            vec![(*ss).to_owned(), (*mid).to_owned()],
        ),
        ["_runner", "connect"] => pick(method, &[(Method::POST, Endpoint::RunnerConnect)], vec![]),
        ["_runner", "job"] => pick(method, &[(Method::GET, Endpoint::RunnerJob)], vec![]),
        ["_runner", "started"] => pick(method, &[(Method::POST, Endpoint::RunnerStarted)], vec![]),
        ["_runner", "completed"] => {
            pick(method, &[(Method::POST, Endpoint::RunnerCompleted)], vec![])
        }
        ["_runner", "disconnect"] => pick(
            method,
            &[(Method::POST, Endpoint::RunnerDisconnect)],
            vec![],
        ),
        ["api", "v3", rest @ ..] if !trailing_slash && (!strict_hosts || !hosted) => {
            route_github(method, rest)
        }
        rest if !trailing_slash && (!strict_hosts || hosted) => route_github(method, rest),
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_spec_paths() {
        let r = |m: Method, p: &str| route(&m, p, "127.0.0.1:1234", true).map(|r| r.endpoint);
        assert_eq!(
            r(Method::GET, "/tenant/1/_apis/runtime/runnergroups/"),
            Ok(Endpoint::RunnerGroups)
        );
        assert_eq!(
            r(
                Method::POST,
                "/tenant/1//_apis/runtime/runnerscalesets/4/acquirejobs"
            ),
            Ok(Endpoint::AcquireJobs)
        );
        assert_eq!(
            r(
                Method::DELETE,
                "/tenant/1/_apis/distributedtask/pools/0/agents/3"
            ),
            Ok(Endpoint::RemoveRunner)
        );
        assert_eq!(
            r(Method::PUT, "/tenant/1/_apis/runtime/runnerscalesets/4"),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            r(
                Method::POST,
                "/api/v3/orgs/o/actions/runners/registration-token"
            ),
            Ok(Endpoint::RegistrationToken)
        );
        assert_eq!(
            r(Method::POST, "/orgs/o/actions/runners/registration-token"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(
                &Method::POST,
                "/orgs/o/actions/runners/registration-token",
                "api.github.com",
                true
            )
            .map(|r| r.endpoint),
            Ok(Endpoint::RegistrationToken)
        );
        assert_eq!(
            route(
                &Method::POST,
                "/api/v3/actions/runner-registration",
                "api.acme.ghe.com",
                true
            ),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn hosted_api_hosts() {
        assert!(is_hosted_api_host("api.github.com"));
        assert!(is_hosted_api_host("API.GitHub.com:443"));
        assert!(is_hosted_api_host("api.acme.ghe.com"));
        assert!(!is_hosted_api_host("127.0.0.1:8080"));
        assert!(!is_hosted_api_host("ghes.example.com"));
    }
}
