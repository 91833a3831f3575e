//! Reading an emulator JIT config the way a simulated runner process needs it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a runner learns from its `encodedJITConfig` (the `.runner` file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitInfo {
    /// Runner (agent) id.
    pub runner_id: i64,
    /// Runner name.
    pub runner_name: String,
    /// Scale set id.
    pub scale_set_id: i64,
    /// Actions service URL `S`.
    pub server_url: String,
    /// The emulator's base URL.
    pub github_url: String,
    /// Base of the runner API, `{url}/_runner/`: POST `connect` here with the JIT config.
    pub runner_api_url: String,
}

/// Decodes an emulator-issued `encodedJITConfig` (base64 JSON of base64 files).
pub fn decode_jit_config(encoded: &str) -> Result<JitInfo, String> {
    let err =
        |what: &str| format!("encodedJITConfig: {what}; pass the value the JIT call returned");
    let outer = STANDARD
        .decode(encoded.trim())
        .map_err(|_| err("not base64"))?;
    let outer: Map<String, Value> =
        serde_json::from_slice(&outer).map_err(|_| err("not a JSON object of files"))?;
    let runner = outer
        .get(".runner")
        .and_then(Value::as_str)
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| err("no readable .runner file"))?;
    let text = |k: &str| runner.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(JitInfo {
        runner_id: text("AgentId")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(".runner lacks AgentId"))?,
        runner_name: text("AgentName").ok_or_else(|| err(".runner lacks AgentName"))?,
        scale_set_id: runner
            .get("RunnerScaleSetId")
            .and_then(Value::as_i64)
            .ok_or_else(|| err(".runner lacks RunnerScaleSetId"))?,
        server_url: text("ServerUrl").ok_or_else(|| err(".runner lacks ServerUrl"))?,
        github_url: text("GitHubUrl").ok_or_else(|| err(".runner lacks GitHubUrl"))?,
        runner_api_url: text("EmulatorRunnerApiUrl")
            .ok_or_else(|| err(".runner lacks EmulatorRunnerApiUrl (not from this emulator)"))?,
    })
}
