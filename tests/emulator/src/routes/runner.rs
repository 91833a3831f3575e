//! The simulated runner's API (`/_runner/…`): connect with the JIT config, fetch the job, report
//! start and completion. Calls after connect use `Authorization: Bearer {runnerToken}`.

use std::time::Duration;

use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::endpoint::Endpoint;
use crate::model::JobResult;
use crate::server::{Req, Shared};
use crate::wire::{ApiError, empty_response, json_response};

/// Longest `waitMs` honoured on `GET /_runner/job`.
const MAX_JOB_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectBody {
    #[serde(alias = "encodedJITConfig", alias = "jitConfig")]
    encoded_jit_config: String,
}

#[derive(Default, Deserialize)]
struct CompletedBody {
    #[serde(default)]
    result: Option<JobResult>,
}

fn runner_token(req: &Req) -> Result<&str, ApiError> {
    req.bearer().ok_or(ApiError::Plain {
        status: 401,
        body: "Send Authorization: Bearer {runnerToken} from POST /_runner/connect.".to_owned(),
    })
}

fn bad(message: String) -> ApiError {
    ApiError::Plain {
        status: 400,
        body: message,
    }
}

pub(crate) async fn handle(shared: &Shared, req: &Req) -> Result<Response, ApiError> {
    match req.endpoint {
        Endpoint::RunnerConnect => {
            let body: ConnectBody = serde_json::from_slice(&req.body).map_err(|e| {
                bad(format!(
                    "Body must be {{\"encodedJITConfig\": \"<the runner's JIT config>\"}}: {e}"
                ))
            })?;
            let conn = shared.mutate(|st, now| st.runner_connect(&body.encoded_jit_config, now))?;
            Ok(json_response(200, &json!(conn)))
        }
        Endpoint::RunnerJob => {
            let token = runner_token(req)?.to_owned();
            let wait = match req.query("waitMs") {
                None | Some("") => Duration::ZERO,
                Some(v) => Duration::from_millis(v.parse::<u64>().map_err(|_| {
                    bad(format!(
                        "Query parameter waitMs must be a non-negative integer, got {v:?}."
                    ))
                })?),
            };
            let deadline = crate::state::deadline_in(wait.min(MAX_JOB_WAIT));
            let found = shared
                .wait_for_runner_job(deadline, |st, _| match st.runner_job(&token) {
                    Ok(Some(job)) => Some(Ok(job)),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                })
                .await;
            match found {
                Some(Ok(job)) => Ok(json_response(200, &json!(job))),
                Some(Err(e)) => Err(e),
                None => Ok(empty_response(204)),
            }
        }
        Endpoint::RunnerStarted => {
            let token = runner_token(req)?;
            shared.mutate(|st, now| st.runner_started(token, now))?;
            Ok(empty_response(204))
        }
        Endpoint::RunnerCompleted => {
            let token = runner_token(req)?;
            let body: CompletedBody = if req.body.is_empty() {
                CompletedBody::default()
            } else {
                serde_json::from_slice(&req.body).map_err(|e| {
                    bad(format!(
                        "Body must be empty or {{\"result\": \"succeeded\"|\"failed\"|\"canceled\"}}: {e}"
                    ))
                })?
            };
            shared.mutate(|st, now| st.runner_completed(token, body.result, now))?;
            Ok(empty_response(204))
        }
        Endpoint::RunnerDisconnect => {
            let token = runner_token(req)?;
            shared.mutate(|st, now| st.runner_disconnect(token, now))?;
            Ok(empty_response(204))
        }
        _ => Err(ApiError::not_found()),
    }
}
