//! Entry points for fuzzing the client's decoding of the service's answers: the message long
//! poll and its batch bodies, acquire-jobs answers, sessions, scale sets, runner groups, runner
//! lists, GitHub's self-hosted runner pages, JIT configs, the GitHub token and registration
//! answers, and the error bodies of every one of them (docs/architecture.md#fuzzing-and-the-bad-input-campaign).
//!
//! Each [`Answer`] runs the same decoding function the endpoint method runs on a real reply, so
//! a target that feeds it bytes fuzzes the production code. [`check`] is the oracle: no panic
//! (the fuzzer sees one), and every failure a typed [`Error`] with the call's context that never
//! repeats the credential the call carried.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use secrecy::SecretString;

use crate::classify::{self, Target};
use crate::decode;
use crate::error::Error;
use crate::transport::{Call, Reply};
use crate::types::MessageSession;

/// The credential every fuzzed call carries; [`check`] fails when an error repeats it.
pub const FUZZ_SECRET: &str = "fuzz-credential-7c1e9b";

/// One kind of service answer, decoded as its endpoint method decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Q1: the message long poll (202, a message envelope with its batch body, or an error).
    Message,
    /// A10: the ids of the acquired jobs.
    AcquireJobs,
    /// A7: a new message session.
    CreateSession,
    /// A8: a refreshed session (partial answers keep the previous values).
    RefreshSession,
    /// A1: a runner-group list filtered by name.
    RunnerGroup,
    /// A2: a scale-set list filtered by name.
    ScaleSetByName,
    /// P1: every scale set.
    ScaleSets,
    /// A3: one scale set by id.
    ScaleSetById,
    /// A4, A5: a created or updated scale set.
    ScaleSet,
    /// A11: a JIT config.
    Jit,
    /// A12: one runner.
    Runner,
    /// A13: a runner list filtered by name.
    RunnerByName,
    /// R1: a page of GitHub's self-hosted runner list.
    SelfHostedRunners,
    /// G1, G2: an installation or registration token.
    Token,
    /// G3: the runner registration (Actions service URL and admin token).
    Registration,
}

impl Answer {
    /// Every answer kind.
    pub const ALL: [Answer; 15] = [
        Answer::Message,
        Answer::AcquireJobs,
        Answer::CreateSession,
        Answer::RefreshSession,
        Answer::RunnerGroup,
        Answer::ScaleSetByName,
        Answer::ScaleSets,
        Answer::ScaleSetById,
        Answer::ScaleSet,
        Answer::Jit,
        Answer::Runner,
        Answer::RunnerByName,
        Answer::SelfHostedRunners,
        Answer::Token,
        Answer::Registration,
    ];

    /// A short name (the seed corpus folder's).
    pub fn name(self) -> &'static str {
        match self {
            Answer::Message => "message",
            Answer::AcquireJobs => "acquire_jobs",
            Answer::CreateSession => "create_session",
            Answer::RefreshSession => "refresh_session",
            Answer::RunnerGroup => "runner_group",
            Answer::ScaleSetByName => "scale_set_by_name",
            Answer::ScaleSets => "scale_sets",
            Answer::ScaleSetById => "scale_set_by_id",
            Answer::ScaleSet => "scale_set",
            Answer::Jit => "jit",
            Answer::Runner => "runner",
            Answer::RunnerByName => "runner_by_name",
            Answer::SelfHostedRunners => "self_hosted_runners",
            Answer::Token => "token",
            Answer::Registration => "registration",
        }
    }

    /// The status a successful answer has (the message poll takes any status itself).
    pub fn success_status(self) -> u16 {
        match self {
            Answer::Token => 201,
            _ => 200,
        }
    }

    fn target(self) -> Target {
        match self {
            Answer::Message | Answer::AcquireJobs => Target::Queue,
            Answer::CreateSession => Target::SessionCreate,
            Answer::RefreshSession => Target::Session,
            Answer::RunnerGroup => Target::RunnerGroup,
            Answer::ScaleSetByName
            | Answer::ScaleSets
            | Answer::ScaleSetById
            | Answer::ScaleSet
            | Answer::Jit => Target::ScaleSet,
            Answer::Runner | Answer::RunnerByName => Target::Runner,
            Answer::Token | Answer::Registration | Answer::SelfHostedRunners => Target::GitHub,
        }
    }

    fn accepts(self, status: StatusCode) -> bool {
        match self {
            Answer::Message => true,
            Answer::Registration => status.is_success(),
            _ => status.as_u16() == self.success_status(),
        }
    }
}

/// One answer to decode: status, headers and body.
#[derive(Clone, Debug)]
pub struct Input {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<&'static str>,
    /// `Retry-After`, if any.
    pub retry_after: Option<&'static str>,
    /// Sends `x-ratelimit-remaining: 0` with an unreadable `x-ratelimit-reset`.
    pub rate_limit_exhausted: bool,
    /// The body.
    pub body: Vec<u8>,
}

const STATUSES: [u16; 12] = [200, 201, 202, 204, 400, 401, 403, 404, 409, 422, 429, 503];
const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("text/plain; charset=utf-8"),
    None,
    Some("application/json; charset=utf-8"),
];
const RETRY_AFTERS: [Option<&str>; 4] = [
    None,
    Some("3"),
    Some("Wed, 21 Oct 2015 07:28:00 GMT"),
    Some("-1"),
];

impl Input {
    /// A successful JSON answer of `answer` with `body`.
    pub fn ok(answer: Answer, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: answer.success_status(),
            content_type: CONTENT_TYPES[0],
            retry_after: None,
            rate_limit_exhausted: false,
            body: body.into(),
        }
    }

    /// Raw fuzz bytes as an answer of `answer`. Bytes that start like JSON (`{`, `[`, `"`,
    /// `n`, whitespace or a BOM) are the body of a successful JSON answer, so that a seed corpus
    /// of plain answer bodies works as it is; otherwise the first byte picks the status (mostly
    /// the successful one), the second the headers, and the rest is the body.
    pub fn from_bytes(answer: Answer, data: &[u8]) -> Self {
        if let Some(b'{' | b'[' | b'"' | b'n' | b' ' | b'\n' | b'\t' | 0xEF) = data.first() {
            return Self::ok(answer, data);
        }
        let pick = data.first().copied().unwrap_or(0);
        let headers = data.get(1).copied().unwrap_or(0);
        let status = match pick % 32 {
            n if n < 20 => answer.success_status(),
            n => STATUSES[usize::from(n - 20) % STATUSES.len()],
        };
        Self {
            status,
            content_type: CONTENT_TYPES[usize::from(headers & 3)],
            retry_after: RETRY_AFTERS[usize::from((headers >> 2) & 3)],
            rate_limit_exhausted: headers & 16 != 0,
            body: data.get(2..).unwrap_or_default().to_vec(),
        }
    }

    /// The statuses worth trying besides the successful one.
    pub fn statuses() -> &'static [u16] {
        &STATUSES
    }

    /// This input with another status and content type (an error body).
    pub fn with_status(mut self, status: u16, content_type: Option<&'static str>) -> Self {
        self.status = status;
        self.content_type = content_type;
        self
    }

    fn reply(&self) -> Reply {
        let mut headers = HeaderMap::new();
        if let Some(ct) = self.content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Some(ra) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(ra));
        }
        if self.rate_limit_exhausted {
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("x-ratelimit-reset", HeaderValue::from_static("soon"));
        }
        Reply {
            status: StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK),
            headers,
            body: Bytes::from(self.body.clone()),
        }
    }
}

fn previous_session() -> MessageSession {
    MessageSession {
        session_id: "2b5a5d0e-0000-0000-0000-000000000001".to_owned(),
        owner_name: "listener".to_owned(),
        runner_scale_set: None,
        message_queue_url: "https://pipelines.example/queue".to_owned(),
        message_queue_access_token: SecretString::from(FUZZ_SECRET),
        statistics: None,
    }
}

/// Decodes `input` as `answer`, as the endpoint method does with a reply (an unexpected status
/// is classified like any failed call); the decoded value is dropped.
pub fn decode(answer: Answer, input: &Input) -> Result<(), Error> {
    let call = Call::new(
        answer.name(),
        Method::GET,
        "https://service.example/x".to_owned(),
    )
    .bearer(&SecretString::from(FUZZ_SECRET));
    let reply = input.reply();
    if !answer.accepts(reply.status) {
        return Err(classify::error(&call, &reply, answer.target()));
    }
    match answer {
        Answer::Message => decode::message(&call, &reply).map(drop),
        Answer::AcquireJobs => decode::acquired_jobs(&call, &reply).map(drop),
        Answer::CreateSession => decode::session(&call, &reply, None).map(drop),
        Answer::RefreshSession => {
            decode::session(&call, &reply, Some(&previous_session())).map(drop)
        }
        Answer::RunnerGroup => decode::runner_group(&call, &reply, "default").map(drop),
        Answer::ScaleSetByName => decode::scale_set_by_name(&call, &reply, "set").map(drop),
        Answer::ScaleSets => decode::scale_sets(&call, &reply).map(drop),
        Answer::ScaleSetById => decode::scale_set_by_id(&call, &reply).map(drop),
        Answer::ScaleSet => decode::scale_set(&call, &reply).map(drop),
        Answer::Jit => decode::jit(&call, &reply).map(drop),
        Answer::Runner => decode::runner(&call, &reply).map(drop),
        Answer::RunnerByName => decode::runner_by_name(&call, &reply, "runner").map(drop),
        Answer::SelfHostedRunners => decode::self_hosted_runners(&call, &reply).map(drop),
        Answer::Token => decode::token(&call, &reply).map(drop),
        Answer::Registration => decode::admin_token(&call, &reply).map(drop),
    }
}

/// The oracle of every target: decodes `input` as `answer` and checks that a failure is a typed
/// error of a call (not a configuration or transport error), carries the call's operation and
/// the answer's status, and does not repeat [`FUZZ_SECRET`]. A panic propagates.
pub fn check(answer: Answer, input: &Input) -> Result<(), String> {
    let Err(error) = decode(answer, input) else {
        return Ok(());
    };
    let Some(info) = error.info() else {
        return Err(format!(
            "{answer:?}: an error without call context: {error:?}"
        ));
    };
    if matches!(error, Error::Config { .. } | Error::Transport(_)) {
        return Err(format!("{answer:?}: not an answer's error: {error:?}"));
    }
    if info.operation != answer.name() {
        return Err(format!(
            "{answer:?}: error names operation {:?}",
            info.operation
        ));
    }
    let expected_ok = answer.accepts(StatusCode::from_u16(input.status).unwrap_or(StatusCode::OK))
        && answer != Answer::Message;
    if expected_ok && !matches!(error, Error::BadResponse(_) | Error::RunnerGroupNotFound(_)) {
        return Err(format!(
            "{answer:?}: a successful status decoded into {error:?} instead of a bad response"
        ));
    }
    if !expected_ok && info.status != Some(input.status) && !matches!(error, Error::BadResponse(_))
    {
        return Err(format!(
            "{answer:?}: error lost the status {}: {error:?}",
            input.status
        ));
    }
    let text = format!("{error} {error:?}");
    if text.contains(FUZZ_SECRET) {
        return Err(format!(
            "{answer:?}: the error repeats the call's credential (status {})",
            input.status
        ));
    }
    Ok(())
}

/// [`check`] on raw fuzz bytes ([`Input::from_bytes`]): the body of a fuzz target.
pub fn run(answer: Answer, data: &[u8]) -> Result<(), String> {
    check(answer, &Input::from_bytes(answer, data))
}

/// The coverage-guided targets of `actions-client/fuzz` and the answers each decodes every
/// input as (its seed corpus: the `fuzz/seeds` folders of those answers).
pub const TARGETS: [(&str, &[Answer]); 5] = [
    ("message", &[Answer::Message]),
    ("jobs", &[Answer::AcquireJobs]),
    (
        "registration",
        &[
            Answer::Token,
            Answer::Registration,
            Answer::Jit,
            Answer::CreateSession,
            Answer::RefreshSession,
        ],
    ),
    (
        "runners",
        &[
            Answer::Runner,
            Answer::RunnerByName,
            Answer::SelfHostedRunners,
        ],
    ),
    (
        "scale_sets",
        &[
            Answer::RunnerGroup,
            Answer::ScaleSetByName,
            Answer::ScaleSets,
            Answer::ScaleSetById,
            Answer::ScaleSet,
        ],
    ),
];

/// The body of the `errors` target: `data` as an error answer (the first byte picks the status
/// among [`Input::statuses`], the second the content type) of every answer kind.
pub fn run_errors(data: &[u8]) -> Result<(), String> {
    let pick = usize::from(data.first().copied().unwrap_or(0));
    let ct = usize::from(data.get(1).copied().unwrap_or(0));
    let body = data.get(2..).unwrap_or_default();
    for answer in Answer::ALL {
        let input = Input::ok(answer, body).with_status(
            STATUSES[pick % STATUSES.len()],
            CONTENT_TYPES[ct % CONTENT_TYPES.len()],
        );
        check(answer, &input)?;
    }
    Ok(())
}
