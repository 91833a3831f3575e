//! What the client makes of each successful answer: one function per answer shape, shared by the
//! endpoint methods and the fuzz targets ([`crate::fuzzing`]). None of them panics, whatever the
//! bytes; every problem is an [`Error::BadResponse`] with the call's context.

use http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::classify::{self, Target};
use crate::client::ActionsClient;
use crate::error::{Error, Result};
use crate::github::AdminToken;
use crate::json;
use crate::jwt;
use crate::rest::SelfHostedRunner;
use crate::transport::{Call, Reply};
use crate::types::ScaleSetMessage;
use crate::types::{JitConfig, MessageSession, RunnerGroup, RunnerReference, RunnerScaleSet};
use crate::wire::{self, Found, List};

/// The `{count, value}` wrapper of a list answer.
fn list(call: &Call, reply: &Reply, what: &str) -> Result<List> {
    json::from_value(ActionsClient::value(call, reply)?)
        .map_err(|e| ActionsClient::bad(call, reply, format!("{what}: {e}")))
}

/// A1: the one runner group of a by-name list.
pub(crate) fn runner_group(call: &Call, reply: &Reply, name: &str) -> Result<RunnerGroup> {
    let list = list(call, reply, "runner group list")?;
    match wire::one::<RunnerGroup>(list, "runner groups")
        .map_err(|e| ActionsClient::bad(call, reply, e))?
    {
        Found::One(group) => Ok(group),
        Found::None => Err(Error::RunnerGroupNotFound(Box::new(
            call.info(format!("no runner group found with name {name:?}")),
        ))),
        Found::Many(n) => Err(ActionsClient::bad(
            call,
            reply,
            format!("{n} runner groups found with name {name:?}"),
        )),
    }
}

/// A2: the scale set of a by-name list, if any.
pub(crate) fn scale_set_by_name(
    call: &Call,
    reply: &Reply,
    name: &str,
) -> Result<Option<RunnerScaleSet>> {
    let list = list(call, reply, "scale set list")?;
    match wire::one::<RunnerScaleSet>(list, "runner scale sets")
        .map_err(|e| ActionsClient::bad(call, reply, e))?
    {
        Found::One(set) => Ok(Some(set)),
        Found::None => Ok(None),
        Found::Many(n) => Err(ActionsClient::bad(
            call,
            reply,
            format!("{n} runner scale sets found with name {name:?}"),
        )),
    }
}

/// P1: every decodable scale set of a list.
pub(crate) fn scale_sets(call: &Call, reply: &Reply) -> Result<Vec<RunnerScaleSet>> {
    Ok(wire::each(
        list(call, reply, "scale set list")?,
        "scale set",
    ))
}

/// A3: one scale set; `None` for an empty or `null` body.
pub(crate) fn scale_set_by_id(call: &Call, reply: &Reply) -> Result<Option<RunnerScaleSet>> {
    if json::strip_bom(&reply.body)
        .iter()
        .all(u8::is_ascii_whitespace)
    {
        return Ok(None);
    }
    match ActionsClient::value(call, reply)? {
        Value::Null => Ok(None),
        value => json::from_value(value)
            .map(Some)
            .map_err(|e| ActionsClient::bad(call, reply, format!("scale set: {e}"))),
    }
}

/// A4, A5: the created or updated scale set, which must have an id.
pub(crate) fn scale_set(call: &Call, reply: &Reply) -> Result<RunnerScaleSet> {
    let set: RunnerScaleSet = json::from_value(ActionsClient::value(call, reply)?)
        .map_err(|e| ActionsClient::bad(call, reply, format!("scale set: {e}")))?;
    if set.id <= 0 {
        return Err(ActionsClient::bad(
            call,
            reply,
            "scale set has no id".to_owned(),
        ));
    }
    Ok(set)
}

/// A11: a JIT config.
pub(crate) fn jit(call: &Call, reply: &Reply) -> Result<JitConfig> {
    wire::jit(ActionsClient::value(call, reply)?)
        .map_err(|e| ActionsClient::bad(call, reply, format!("JIT config: {e}")))
}

/// A12: one runner; `None` for a `null` body.
pub(crate) fn runner(call: &Call, reply: &Reply) -> Result<Option<RunnerReference>> {
    match ActionsClient::value(call, reply)? {
        Value::Null => Ok(None),
        value => json::from_value(value)
            .map(Some)
            .map_err(|e| ActionsClient::bad(call, reply, format!("runner: {e}"))),
    }
}

/// A13: the runner of a by-name list, if any.
pub(crate) fn runner_by_name(
    call: &Call,
    reply: &Reply,
    name: &str,
) -> Result<Option<RunnerReference>> {
    let list = list(call, reply, "runner list")?;
    match wire::one::<RunnerReference>(list, "runners")
        .map_err(|e| ActionsClient::bad(call, reply, e))?
    {
        Found::One(runner) => Ok(Some(runner)),
        Found::None => Ok(None),
        Found::Many(n) => Err(ActionsClient::bad(
            call,
            reply,
            format!("{n} runners found with name {name:?}"),
        )),
    }
}

/// R1: one page of GitHub's self-hosted runner list: its runners and `total_count`.
pub(crate) fn self_hosted_runners(
    call: &Call,
    reply: &Reply,
) -> Result<(Vec<SelfHostedRunner>, usize)> {
    let page: PageWire = json::from_value(ActionsClient::value(call, reply)?)
        .map_err(|e| ActionsClient::bad(call, reply, format!("self-hosted runner list: {e}")))?;
    Ok((
        page.runners
            .into_iter()
            .map(SelfHostedRunner::from)
            .collect(),
        page.total_count,
    ))
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

/// A7, A8: a session; `previous` fills what a partial refresh answer leaves out.
pub(crate) fn session(
    call: &Call,
    reply: &Reply,
    previous: Option<&MessageSession>,
) -> Result<MessageSession> {
    wire::session(ActionsClient::value(call, reply)?, previous)
        .map_err(|e| ActionsClient::bad(call, reply, format!("session: {e}")))
}

/// Q1: the answer of the message long poll, whatever its status: `None` for 202, the message for
/// 200, the classified error otherwise.
pub(crate) fn message(call: &Call, reply: &Reply) -> Result<Option<ScaleSetMessage>> {
    match reply.status {
        StatusCode::ACCEPTED => Ok(None),
        StatusCode::OK => {
            let value = ActionsClient::value(call, reply)?;
            wire::message(value)
                .map(Some)
                .map_err(|e| ActionsClient::bad(call, reply, format!("message: {e}")))
        }
        _ => Err(classify::error(call, reply, Target::Queue)),
    }
}

/// A10: the ids of the jobs acquired.
pub(crate) fn acquired_jobs(call: &Call, reply: &Reply) -> Result<Vec<i64>> {
    list(call, reply, "acquired jobs")?
        .value
        .into_iter()
        .map(|v| {
            v.as_i64().ok_or_else(|| {
                ActionsClient::bad(
                    call,
                    reply,
                    format!("acquired job id {v} is not an integer"),
                )
            })
        })
        .collect()
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct TokenWire {
    token: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RegistrationWire {
    url: String,
    token: String,
}

/// G1, G2: the `token` of an installation- or registration-token answer.
pub(crate) fn token(call: &Call, reply: &Reply) -> Result<SecretString> {
    let w: TokenWire = json::decode(&reply.body)
        .map_err(|e| Error::bad_response(call.info(format!("token response: {e}"))))?;
    if w.token.is_empty() {
        return Err(Error::bad_response(call.info("response has no token")));
    }
    Ok(SecretString::from(w.token))
}

/// G3: the Actions service URL and the admin token of a runner-registration answer.
pub(crate) fn admin_token(call: &Call, reply: &Reply) -> Result<AdminToken> {
    let w: RegistrationWire = json::decode(&reply.body).map_err(|e| {
        Error::bad_response(call.info(format!("runner registration response: {e}")))
    })?;
    if w.url.is_empty() {
        return Err(Error::bad_response(
            call.info("runner registration response: missing url"),
        ));
    }
    if w.token.is_empty() {
        return Err(Error::bad_response(
            call.info("runner registration response: missing token"),
        ));
    }
    let expires_at = match jwt::unverified_exp(&w.token) {
        Ok(Some(exp)) => Some(exp),
        Ok(None) => {
            tracing::warn!("admin token has no exp claim; it is refreshed before every call");
            None
        }
        Err(e) => {
            tracing::warn!(problem = %e, "admin token is not a readable JWT; it is refreshed before every call");
            None
        }
    };
    tracing::debug!(service_url = %w.url, ?expires_at, "admin token refreshed");
    Ok(AdminToken {
        service_url: w.url,
        token: SecretString::from(w.token),
        expires_at,
    })
}
