//! Random requests (paths from the endpoint vocabulary, odd queries, headers and bodies, real and
//! fake credentials) never make the emulator fail: no 5xx, no dropped connection, and it keeps
//! serving afterwards.
#![allow(clippy::unwrap_used)]

mod support;

use http::Method;
use proptest::prelude::*;
use support::{Admin, Client};

const SEGMENTS: &[&str] = &[
    "tenant",
    "1",
    "2",
    "_apis",
    "_APIS",
    "runtime",
    "runnergroups",
    "runnerscalesets",
    "sessions",
    "acquirejobs",
    "acquirablejobs",
    "generatejitconfig",
    "distributedtask",
    "pools",
    "0",
    "agents",
    "queue",
    "_runner",
    "connect",
    "job",
    "started",
    "completed",
    "api",
    "v3",
    "orgs",
    "repos",
    "enterprises",
    "octo-org",
    "actions",
    "runners",
    "registration-token",
    "runner-registration",
    "app",
    "installations",
    "456",
    "access_tokens",
    "_emulator",
    "state",
    "faults",
    "jobs",
    "cancel",
    "%zz",
    "-1",
    "99999999999999999999",
    "",
    "..",
    "é",
    "00000000-0000-0000-0000-000000000000",
];
const QUERIES: &[&str] = &[
    "",
    "?api-version=6.0-preview",
    "?api-version=",
    "?groupName=Default&api-version=6.0-preview",
    "?name=a+b&runnerGroupId=x&api-version=6.0-preview",
    "?lastMessageId=-5&sessionId=%zz",
    "?agentName=&api-version=6.0-preview",
    "?waitMs=10",
    "?waitMs=abc",
    "?&&==&",
];
const BODIES: &[&str] = &[
    "",
    "{}",
    "[]",
    "null",
    "{bad",
    "[1,2,\"x\"]",
    r#"{"name":{"a":1}}"#,
    r#"{"name":"n","labels":[{"name":null}],"RunnerSetting":{"disableUpdate":1}}"#,
    r#"{"url":"http://127.0.0.1/octo-org","runner_event":"register"}"#,
    r#"{"encodedJITConfig":"e30="}"#,
    r#"{"labels":["x"],"durationMs":-1}"#,
    r#"{"endpoint":null,"kind":{"type":"bogus"}}"#,
    "\u{0}\u{1}",
    "9999999999999999999999",
];
const METHODS: &[&str] = &["GET", "POST", "PATCH", "DELETE", "PUT"];
const TEMPLATES: &[(&str, &str)] = &[
    ("GET", "tenant/1/_apis/runtime/runnergroups/"),
    ("GET", "tenant/1/_apis/runtime/runnerscalesets"),
    ("POST", "tenant/1/_apis/runtime/runnerscalesets"),
    ("GET", "tenant/1/_apis/runtime/runnerscalesets/{}"),
    ("PATCH", "tenant/1/_apis/runtime/runnerscalesets/{}"),
    ("DELETE", "tenant/1/_apis/runtime/runnerscalesets/{}"),
    ("POST", "tenant/1/_apis/runtime/runnerscalesets/{}/sessions"),
    (
        "PATCH",
        "tenant/1/_apis/runtime/runnerscalesets/{}/sessions/{}",
    ),
    (
        "DELETE",
        "tenant/1/_apis/runtime/runnerscalesets/{}/sessions/{}",
    ),
    (
        "POST",
        "tenant/1/_apis/runtime/runnerscalesets/{}/acquirejobs",
    ),
    (
        "GET",
        "tenant/1/_apis/runtime/runnerscalesets/{}/acquirablejobs",
    ),
    (
        "POST",
        "tenant/1/_apis/runtime/runnerscalesets/{}/generatejitconfig",
    ),
    ("GET", "tenant/1/_apis/distributedtask/pools/0/agents"),
    ("GET", "tenant/1/_apis/distributedtask/pools/0/agents/{}"),
    ("DELETE", "tenant/1/_apis/distributedtask/pools/0/agents/{}"),
    ("GET", "queue/{}"),
    ("DELETE", "queue/{}/{}"),
    ("POST", "_runner/connect"),
    ("GET", "_runner/job"),
    ("POST", "_runner/completed"),
    ("POST", "api/v3/orgs/{}/actions/runners/registration-token"),
    ("POST", "api/v3/app/installations/{}/access_tokens"),
    ("POST", "api/v3/actions/runner-registration"),
    ("POST", "_emulator/jobs"),
    ("POST", "_emulator/jobs/{}/cancel"),
    ("POST", "_emulator/faults"),
    ("DELETE", "_emulator/faults/{}"),
    ("POST", "_emulator/scalesets/{}/session/expire"),
    ("PATCH", "_emulator/config"),
    ("POST", "_emulator/scalesets/{}/messages"),
];
const IDS: &[&str] = &[
    "1",
    "2",
    "0",
    "-1",
    "x",
    "99999999999999999999",
    "%20",
    "1.5",
];

fn request() -> impl Strategy<Value = (usize, Vec<usize>, usize, usize, usize)> {
    (
        0..METHODS.len(),
        proptest::collection::vec(0..SEGMENTS.len(), 0..8),
        0..QUERIES.len(),
        0..BODIES.len(),
        0..4usize,
    )
}

#[test]
fn random_requests_never_fail_the_emulator() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let emu = rt.block_on(support::emulator());
    let http = Client::http();
    let (admin, mq) = rt.block_on(async {
        let admin = Admin::login(&emu, &http).await;
        let ss = admin.create_scale_set("fuzz", &["fuzz"]).await;
        let session = admin.create_session(ss, "fuzz").await;
        (admin.token.clone(), session.token.clone())
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
    runner
        .run(&request(), |(m, segs, q, b, auth)| {
            let template = segs
                .first()
                .filter(|i| *i % 4 != 0)
                .map(|i| TEMPLATES[i % TEMPLATES.len()]);
            let (method_name, path, auth) = match template {
                Some((method, t)) => {
                    let mut t = t.to_owned();
                    for i in segs.iter().skip(1) {
                        t = t.replacen("{}", IDS[i % IDS.len()], 1);
                    }
                    (
                        method,
                        t.replace("{}", "1"),
                        if auth == 0 { 1 } else { auth },
                    )
                }
                None => (
                    METHODS[m],
                    segs.iter()
                        .map(|i| SEGMENTS[*i])
                        .collect::<Vec<_>>()
                        .join("/"),
                    auth,
                ),
            };
            let url = format!("{}/{}{}", emu.url(), path, QUERIES[q]);
            let auth = match auth {
                0 => String::new(),
                1 => format!("Bearer {admin}"),
                2 => format!("Bearer {mq}"),
                _ => "RemoteAuth garbage".to_owned(),
            };
            let method = Method::from_bytes(method_name.as_bytes()).unwrap();
            let r = rt.block_on(http.try_send(
                method.clone(),
                &url,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                BODIES[b],
            ));
            match r {
                Ok(r) => {
                    prop_assert!(
                        r.status < 500,
                        "{method} {url} {:?} -> {} {}",
                        BODIES[b],
                        r.status,
                        r.text()
                    )
                }
                Err(e) => {
                    // URLs that are not valid request targets never reach the emulator
                    prop_assert!(url.parse::<http::Uri>().is_err(), "{method} {url}: {e:#}");
                }
            }
            Ok(())
        })
        .unwrap();
    let state = rt.block_on(http.send(
        Method::GET,
        &format!("{}/_emulator/state", emu.url()),
        &[],
        bytes::Bytes::new(),
    ));
    assert_eq!(state.status, 200);
}
