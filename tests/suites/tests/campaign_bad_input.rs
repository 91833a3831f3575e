//! The standing bad-input campaign (#20 items 4 and 5; docs/architecture.md#fuzzing-and-the-bad-input-campaign).
//!
//! A whole system (control plane with an audit log of every ServiceAccount request, emulator,
//! node simulator, manager and listeners from the charts) runs a healthy scale set. Next to it,
//! batches of generated AutoscalingRunnerSets are applied: mutations drawn over the CRD's own
//! schema (a field dropped, re-typed or pushed to an extreme) and over what users get wrong
//! (bad URLs, missing or garbled credential Secrets, odd pod templates, long names). After each
//! batch: the healthy set still runs jobs; every generated object is deleted within
//! [`DELETE_BOUND`] and leaves no registration on the emulator; the manager comes back to a
//! broken object less often in the second half of the observation than in the first (the audit
//! log), instead of looping. Then the emulator answers malformed bodies, cut connections and
//! errors while the healthy set runs jobs. At the end: no manager restart, no panic in any
//! manager or listener log, and no credential (the PAT, the App key, every token the emulator
//! issued, every value the campaign planted in a Secret) in any log line, Event or status.
//!
//! The counts (inputs tried, refused at admission, reported by a Condition or Warning Event,
//! running as valid input, silent, crashed) are printed. One batch uses a fixed seed, the others
//! a fresh one that is printed; `ARC_CAMPAIGN_SEED=<n>` replays it.
//!
//! A second test runs the listener binary on generated malformed config files.

use std::collections::BTreeMap;
use std::time::Duration;

use actions_emulator::{Endpoint, Fault, FaultKind, TEST_APP_PRIVATE_KEY_PEM};
use anyhow::Context;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_reconcilers::crd::{
    AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet,
};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use system::{ScaleSet, ScaleSetSpec, System, SystemOptions, wait_for};
use testbed::{AuditLog, AuditPolicy};

/// The seed of the first batch; the others take a fresh one (printed) or `ARC_CAMPAIGN_SEED`.
const FIXED_SEED: u64 = 0x20_20_20;
/// Batches of generated AutoscalingRunnerSets, and inputs per batch.
const BATCHES: usize = 3;
const BATCH: usize = 8;
/// How long a batch is watched before it is deleted (the two halves are compared).
const OBSERVE: Duration = Duration::from_secs(24);
/// How long the deletion of a generated object may take.
const DELETE_BOUND: Duration = Duration::from_secs(90);
/// Requests about one object in the second half of its observation that count as a slow,
/// backed-off retry whatever the first half had.
const RETRY_FLOOR: usize = 3;

fn seeds() -> Vec<u64> {
    let varying: u64 = std::env::var("ARC_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let mut seeds = vec![FIXED_SEED];
    seeds.extend((1..BATCHES as u64).map(|i| varying.wrapping_add(i)));
    eprintln!(
        "campaign seeds: fixed {FIXED_SEED}, varying {varying} (replay: ARC_CAMPAIGN_SEED={varying})"
    );
    seeds
}

fn ars_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.github.com", "v1alpha1", "AutoscalingRunnerSet"),
        "autoscalingrunnersets",
    )
}

/// One generated input: the AutoscalingRunnerSet, the Secrets it comes with, and the secret
/// values it planted (which must never show up anywhere).
struct Input {
    name: String,
    what: Vec<String>,
    ars: Value,
    secrets: Vec<Value>,
    planted: Vec<String>,
}

impl Input {
    /// The name the scale set is registered under: `spec.runnerScaleSetName`, or the
    /// AutoscalingRunnerSet's name when that is empty or missing.
    fn scale_set_name(&self) -> &str {
        self.ars["spec"]["runnerScaleSetName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.name)
    }
}

/// How an input ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// The API server refused it (the CRD's schema or rules).
    Refused(String),
    /// A `Ready=False` Condition or a Warning Event about it.
    Reported(String),
    /// Accepted and listening on the service: a valid input after all.
    Running,
    /// Accepted, not running, and not reported (with what its status says): what #20 item 1
    /// is to end.
    Silent(String),
}

/// A leaf of the CRD's schema under `spec`: its path and type.
#[derive(Clone, Debug)]
struct SchemaField {
    path: Vec<String>,
    kind: String,
}

fn schema_fields(schema: &Value, path: &mut Vec<String>, out: &mut Vec<SchemaField>) {
    let kind = schema["type"].as_str().unwrap_or("object").to_owned();
    if !path.is_empty() {
        out.push(SchemaField {
            path: path.clone(),
            kind: kind.clone(),
        });
    }
    // Pod templates have hundreds of fields; the campaign goes three levels deep into them.
    if path.len() >= 3 {
        return;
    }
    if let Some(props) = schema["properties"].as_object() {
        for (key, sub) in props {
            path.push(key.clone());
            schema_fields(sub, path, out);
            path.pop();
        }
    }
}

async fn crd_fields(client: &kube::Client) -> anyhow::Result<Vec<SchemaField>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get("autoscalingrunnersets.actions.github.com")
        .await
        .context("reading the AutoscalingRunnerSet CRD")?;
    let crd = serde_json::to_value(crd)?;
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut out = Vec::new();
    schema_fields(schema, &mut Vec::new(), &mut out);
    anyhow::ensure!(!out.is_empty(), "the CRD has no spec schema");
    Ok(out)
}

fn pointer_mut<'a>(root: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut at = root;
    for key in path {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()?
            .entry(key.clone())
            .or_insert(Value::Null);
    }
    Some(at)
}

fn remove_path(root: &mut Value, path: &[String]) {
    if let Some((last, parent)) = path.split_last()
        && let Some(Value::Object(map)) = parent
            .iter()
            .try_fold(&mut *root, |at, k| at.get_mut(k.as_str()))
    {
        map.remove(last);
    }
}

fn extreme(rng: &mut StdRng, kind: &str) -> Value {
    let wrong_type = rng.random_bool(0.4);
    match (kind, wrong_type) {
        ("integer" | "number", false) => [
            json!(-1),
            json!(0),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(i64::from(i32::MAX) + 1),
        ][rng.random_range(0..5)]
        .clone(),
        ("string", false) => [
            json!(""),
            json!("x".repeat(300)),
            json!("ünïcødé-名前-\u{202e}"),
            json!(".."),
            json!("-leading-dash"),
            json!("with space/and:colon"),
        ][rng.random_range(0..6)]
        .clone(),
        ("array", false) => {
            [json!([]), json!(vec!["same"; 50]), json!([null])][rng.random_range(0..3)].clone()
        }
        ("boolean", false) => json!(true),
        ("object", false) => {
            [json!({}), json!({"unknownField": 1})][rng.random_range(0..2)].clone()
        }
        _ => [
            json!("not-a-number"),
            json!(42),
            json!({"nested": true}),
            json!(["list"]),
            json!(false),
        ][rng.random_range(0..5)]
        .clone(),
    }
}

fn bad_url(rng: &mut StdRng, org_url: &str) -> (Value, &'static str) {
    let cases: [(Value, &str); 10] = [
        (json!(""), "an empty githubConfigUrl"),
        (json!("not a url"), "a githubConfigUrl that is no URL"),
        (
            json!("ftp://127.0.0.1/octo-org"),
            "a githubConfigUrl with scheme ftp",
        ),
        (
            json!("http://127.0.0.1:1/octo-org"),
            "a githubConfigUrl whose host refuses connections",
        ),
        (
            json!("https://github.com/"),
            "a githubConfigUrl without an owner",
        ),
        (
            json!(format!("{org_url}/repo/extra/path")),
            "a githubConfigUrl with extra path segments",
        ),
        (
            json!(format!("{org_url}{}", "a".repeat(300))),
            "a 300-character owner in githubConfigUrl",
        ),
        (
            json!("http://[::1"),
            "an unparseable host in githubConfigUrl",
        ),
        (
            json!("https://user:campaign-url-password@127.0.0.1:1/o"),
            "credentials inside githubConfigUrl",
        ),
        (
            json!(format!("{org_url}-that-does-not-exist")),
            "an organization the service does not know",
        ),
    ];
    cases[rng.random_range(0..cases.len())].clone()
}

/// A credential Secret problem: (githubConfigSecret value, Secrets to create, planted values, what).
fn bad_secret(rng: &mut StdRng, name: &str, ns: &str) -> (String, Vec<Value>, Vec<String>, String) {
    let secret = |data: Value| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-cred"), "namespace": ns},
            "stringData": data})
    };
    let planted_pat = format!("ghp_campaign{:016x}", rng.random::<u64>());
    let planted_key = format!(
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEcampaign{:032x}garbledkeymaterial\n-----END RSA PRIVATE KEY-----\n",
        rng.random::<u128>()
    );
    match rng.random_range(0..7) {
        0 => (
            format!("{name}-absent"),
            vec![],
            vec![],
            "a githubConfigSecret that does not exist".into(),
        ),
        1 => (
            format!("{name}-cred"),
            vec![secret(json!({}))],
            vec![],
            "a credential Secret without any key".into(),
        ),
        2 => (
            format!("{name}-cred"),
            vec![secret(json!({"github_token": ""}))],
            vec![],
            "an empty github_token".into(),
        ),
        3 => (
            format!("{name}-cred"),
            vec![secret(json!({"github_token": planted_pat}))],
            vec![planted_pat],
            "a github_token the service rejects".into(),
        ),
        4 => (
            format!("{name}-cred"),
            vec![secret(
                json!({"github_app_id": "not-a-number", "github_app_installation_id": "x", "github_app_private_key": planted_key}),
            )],
            vec![planted_key],
            "a GitHub App with a non-numeric id and a garbled private key".into(),
        ),
        5 => (
            format!("{name}-cred"),
            vec![secret(
                json!({"github_app_id": "1", "github_app_installation_id": "1", "github_app_private_key": TEST_APP_PRIVATE_KEY_PEM, "github_token": planted_pat}),
            )],
            vec![planted_pat],
            "both a PAT and a GitHub App in one Secret, the App unknown to the service".into(),
        ),
        _ => (
            String::new(),
            vec![],
            vec![],
            "an empty githubConfigSecret".into(),
        ),
    }
}

fn odd_template(rng: &mut StdRng, ars: &mut Value) -> String {
    let template = pointer_mut(ars, &["spec".into(), "template".into()]);
    let Some(template) = template else {
        return "no template".into();
    };
    let cases = [
        (
            json!({"spec": {"containers": []}}),
            "a template without containers",
        ),
        (
            json!({"spec": {"containers": [{"name": "not-runner", "image": "busybox"}]}}),
            "a template without a runner container",
        ),
        (
            json!({"spec": {"containers": [{"name": "runner", "image": ""}]}}),
            "a runner container with an empty image",
        ),
        (
            json!({"spec": {"containers": [{"name": "Runner_Bad!", "image": "x"}]}}),
            "an invalid container name",
        ),
        (
            json!({"spec": {"containers": [{"name": "runner", "image": "x", "resources": {"limits": {"cpu": "-1"}}}]}}),
            "a negative CPU limit",
        ),
        (
            json!({"metadata": {"labels": {"bad label!": "x"}}, "spec": {"containers": [{"name": "runner", "image": "x"}]}}),
            "an invalid label key on the template",
        ),
        (
            json!({"spec": {"restartPolicy": "Always", "containers": [{"name": "runner", "image": "x"}]}}),
            "restartPolicy Always on a runner",
        ),
        (json!({}), "an empty template"),
    ];
    let (value, what) = cases[rng.random_range(0..cases.len())].clone();
    *template = value;
    what.to_owned()
}

/// Generates input `index` of a batch from the healthy set's rendered AutoscalingRunnerSet.
fn generate(
    rng: &mut StdRng,
    index: usize,
    base: &Value,
    fields: &[SchemaField],
    org_url: &str,
) -> Input {
    let ns = base["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let name = format!("camp-{index}-{:04x}", rng.random::<u16>());
    // The chart's labels (the version gate reads them), renamed; not its annotations, which name
    // the healthy set's own Secret and Role to clean up.
    let base_name = base["metadata"]["name"].as_str().unwrap_or_default();
    let mut labels = base["metadata"]["labels"].clone();
    if let Some(map) = labels.as_object_mut() {
        for value in map.values_mut() {
            if value.as_str() == Some(base_name) {
                *value = json!(name);
            }
        }
    }
    let mut ars = json!({
        "apiVersion": base["apiVersion"], "kind": "AutoscalingRunnerSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": base["spec"].clone(),
    });
    ars["spec"]["runnerScaleSetName"] = json!(name);
    ars["spec"]["maxRunners"] = json!(2);
    let mut input = Input {
        name: name.clone(),
        what: Vec::new(),
        ars,
        secrets: Vec::new(),
        planted: Vec::new(),
    };
    for _ in 0..rng.random_range(1..3) {
        match rng.random_range(0..10) {
            0..=3 => {
                let field = &fields[rng.random_range(0..fields.len())];
                let mut path = vec!["spec".to_owned()];
                path.extend(field.path.iter().cloned());
                if rng.random_bool(0.3) {
                    remove_path(&mut input.ars, &path);
                    input
                        .what
                        .push(format!("spec.{} removed", field.path.join(".")));
                } else {
                    let value = extreme(rng, &field.kind);
                    input
                        .what
                        .push(format!("spec.{} = {}", field.path.join("."), short(&value)));
                    if let Some(at) = pointer_mut(&mut input.ars, &path) {
                        *at = value;
                    }
                }
            }
            4 | 5 => {
                let (url, what) = bad_url(rng, org_url);
                input.ars["spec"]["githubConfigUrl"] = url;
                input.what.push(what.to_owned());
                if what.starts_with("credentials inside") {
                    input.planted.push("campaign-url-password".to_owned());
                }
            }
            6 | 7 => {
                let (secret, objects, planted, what) = bad_secret(rng, &name, &ns);
                input.ars["spec"]["githubConfigSecret"] = json!(secret);
                // A second credential problem replaces the first one's Secret of the same name.
                input.secrets.retain(|earlier| {
                    objects
                        .iter()
                        .all(|o| o["metadata"]["name"] != earlier["metadata"]["name"])
                });
                input.secrets.extend(objects);
                input.planted.extend(planted);
                input.what.push(what);
            }
            8 => {
                let what = odd_template(rng, &mut input.ars);
                input.what.push(what);
            }
            _ => {
                let (field, value, what) = [
                    (
                        "runnerScaleSetName",
                        json!("n".repeat(213)),
                        "a 213-character runnerScaleSetName",
                    ),
                    (
                        "runnerScaleSetName",
                        json!("scale set ünïcødé/名前"),
                        "a runnerScaleSetName with spaces, a slash and unicode",
                    ),
                    ("minRunners", json!(5), "minRunners above maxRunners"),
                    ("maxRunners", json!(-3), "a negative maxRunners"),
                    (
                        "runnerGroup",
                        json!("group-that-does-not-exist"),
                        "a runner group the service does not know",
                    ),
                    (
                        "runnerScaleSetLabels",
                        json!(["", "x".repeat(300)]),
                        "an empty and a 300-character label",
                    ),
                ][rng.random_range(0..6)]
                .clone();
                input.ars["spec"][field] = value;
                input.what.push(what.to_owned());
            }
        }
    }
    // A large minRunners with no smaller maxRunners would have the manager start that many
    // runners on this machine; it is kept an invalid min-above-max input instead.
    let spec = &mut input.ars["spec"];
    if let Some(min) = spec["minRunners"].as_i64()
        && min > 2
        && spec["maxRunners"].as_i64().is_none_or(|max| max >= min)
    {
        spec["maxRunners"] = json!(2);
        input
            .what
            .push("maxRunners = 2 (below minRunners)".to_owned());
    }
    input
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        format!(
            "{}… ({} chars)",
            &text[..text.char_indices().nth(30).map_or(text.len(), |(i, _)| i)],
            text.len()
        )
    } else {
        text
    }
}

/// The counts the campaign reports.
#[derive(Default, Debug)]
struct Counts {
    tried: usize,
    refused: usize,
    reported: usize,
    running: usize,
    silent: Vec<String>,
    crashed: usize,
}

/// Where a text came from (a log line, an Event, a status), for the leak check.
struct Text {
    location: String,
    text: String,
}

/// The pieces of `secret` worth searching for: the whole value, and each long line of a
/// multi-line one (a PEM key leaks line by line too).
fn pieces(secret: &str) -> Vec<&str> {
    let mut out = vec![secret.trim()];
    if secret.contains('\n') {
        out.extend(
            secret
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 24 && !l.starts_with("-----")),
        );
    }
    out.retain(|p| p.len() >= 8);
    out
}

/// Every place a secret shows up: "kind at location", never the secret itself.
fn leaks(texts: &[Text], secrets: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, secret) in secrets {
        let pieces = pieces(secret);
        for text in texts {
            if pieces.iter().any(|p| text.text.contains(p)) {
                out.push(format!("a {kind} in {}", text.location));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_leak_check_finds_a_planted_secret_without_printing_it() {
    let key = TEST_APP_PRIVATE_KEY_PEM.to_owned();
    let one_line = key.lines().nth(3).unwrap_or_default().to_owned();
    let texts = vec![
        Text {
            location: "manager log line 7".into(),
            text: "level=info msg=ok".into(),
        },
        Text {
            location: "listener log line 3".into(),
            text: "token=AABF12345678 rejected".into(),
        },
        Text {
            location: "Event ns/x".into(),
            text: format!("bad key line {one_line}"),
        },
    ];
    let secrets = vec![
        ("registration token".to_owned(), "AABF12345678".to_owned()),
        ("GitHub App private key".to_owned(), key),
        ("short".to_owned(), "abc".to_owned()),
    ];
    let found = leaks(&texts, &secrets);
    assert_eq!(
        found,
        [
            "a GitHub App private key in Event ns/x",
            "a registration token in listener log line 3"
        ]
    );
    assert!(
        found
            .iter()
            .all(|f| !f.contains("AABF12345678") && !f.contains(&one_line))
    );
}

/// Lines of the manager and listener logs, every Event, every status and Event write the audit
/// log recorded, and the statuses of the ARC objects (`statuses` were sampled before objects
/// were deleted).
async fn texts(sys: &System, audit: &AuditLog, statuses: &[Text]) -> anyhow::Result<Vec<Text>> {
    let mut out = Vec::new();
    for (pod, container, log) in sys.all_controller_logs() {
        for (i, line) in log.lines().enumerate() {
            out.push(Text {
                location: format!("the {container} log of {pod}, line {}", i + 1),
                text: line.to_owned(),
            });
        }
    }
    for ns in [sys.runner_namespace(), sys.controller_namespace()] {
        let events: Api<Event> = Api::namespaced(sys.client(), ns);
        for e in events.list(&ListParams::default()).await?.items {
            out.push(Text {
                location: format!(
                    "Event {ns}/{} ({:?} {:?})",
                    e.metadata.name.clone().unwrap_or_default(),
                    e.type_,
                    e.reason
                ),
                text: serde_json::to_string(
                    &json!({"message": e.message, "reason": e.reason, "note": e.involved_object}),
                )?,
            });
        }
    }
    // Every status and Event write, from the audit log's request bodies.
    for e in audit.events()? {
        if let Some(body) = e.request_object {
            let sub = e.subresource.map(|s| format!("/{s}")).unwrap_or_default();
            out.push(Text {
                location: format!(
                    "a {} of {}{sub} {}/{} by {} at {}",
                    e.verb,
                    e.resource,
                    e.namespace.unwrap_or_default(),
                    e.name.unwrap_or_default(),
                    e.user,
                    e.at
                ),
                text: body,
            });
        }
    }
    out.extend(statuses.iter().map(|s| Text {
        location: s.location.clone(),
        text: s.text.clone(),
    }));
    Ok(out)
}

/// The `status` of every AutoscalingRunnerSet, EphemeralRunnerSet, EphemeralRunner,
/// AutoscalingListener and pod of the system's namespaces now.
async fn sample_statuses(sys: &System, out: &mut Vec<Text>) -> anyhow::Result<()> {
    async fn kind<K>(
        client: &kube::Client,
        ns: &str,
        label: &str,
        out: &mut Vec<Text>,
    ) -> anyhow::Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + k8s_openapi::serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        for o in api.list(&ListParams::default()).await?.items {
            let value = serde_json::to_value(&o)?;
            out.push(Text {
                location: format!(
                    "the status of {label} {ns}/{}",
                    value["metadata"]["name"].as_str().unwrap_or_default()
                ),
                text: value["status"].to_string(),
            });
        }
        Ok(())
    }
    let client = sys.client();
    for ns in [sys.runner_namespace(), sys.controller_namespace()] {
        kind::<AutoscalingRunnerSet>(&client, ns, "AutoscalingRunnerSet", out).await?;
        kind::<EphemeralRunnerSet>(&client, ns, "EphemeralRunnerSet", out).await?;
        kind::<EphemeralRunner>(&client, ns, "EphemeralRunner", out).await?;
        kind::<AutoscalingListener>(&client, ns, "AutoscalingListener", out).await?;
        kind::<Pod>(&client, ns, "pod", out).await?;
    }
    Ok(())
}

/// A Warning Event about `name`, or its `Ready=False` Condition: the report, if any.
async fn report(sys: &System, name: &str) -> anyhow::Result<Option<String>> {
    let events: Api<Event> = Api::namespaced(sys.client(), sys.runner_namespace());
    for e in events.list(&ListParams::default()).await?.items {
        if e.type_.as_deref() == Some("Warning") && e.involved_object.name.as_deref() == Some(name)
        {
            return Ok(Some(format!(
                "Warning Event {}: {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )));
        }
    }
    let sets: Api<AutoscalingRunnerSet> = Api::namespaced(sys.client(), sys.runner_namespace());
    let Some(set) = sets.get_opt(name).await? else {
        return Ok(None);
    };
    let conditions = set.status.and_then(|s| s.conditions).unwrap_or_default();
    Ok(conditions
        .into_iter()
        .find(|c| c.status == "False" && !c.message.is_empty())
        .map(|c| format!("Condition {}=False {}: {}", c.type_, c.reason, c.message)))
}

/// Requests of the manager about `name` (the object, its status, its Events and the objects
/// named after it) in the first and the second half of `[from, from + OBSERVE)`.
fn request_halves(
    events: &[testbed::AuditEvent],
    manager: &str,
    ns: &str,
    name: &str,
    from: chrono::DateTime<chrono::Utc>,
) -> (usize, usize, BTreeMap<String, usize>) {
    let half = chrono::Duration::from_std(OBSERVE / 2).unwrap_or_default();
    let mut halves = (0, 0, BTreeMap::new());
    for e in events {
        let about = e.namespace.as_deref() == Some(ns)
            && e.name.as_deref().is_some_and(|n| {
                n == name
                    || n.starts_with(&format!("{name}."))
                    || n.starts_with(&format!("{name}-"))
            });
        if e.user != manager || !about || e.at < from {
            continue;
        }
        if e.at < from + half {
            halves.0 += 1;
        } else if e.at < from + half + half {
            halves.1 += 1;
            let sub = e
                .subresource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            *halves
                .2
                .entry(format!("{} {}{sub}", e.verb, e.resource))
                .or_insert(0) += 1;
        }
    }
    halves
}

fn restarts(pods: &[Pod], container: &str) -> i32 {
    pods.iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| c.name == container)
        .map(|c| c.restart_count)
        .sum()
}

async fn create(client: &kube::Client, object: &Value) -> Result<(), String> {
    let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let result = if object["kind"] == "Secret" {
        let secret: Secret = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
        Api::<Secret>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .map(drop)
    } else {
        let dynamic: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ars_resource())
            .create(&PostParams::default(), &dynamic)
            .await
            .map(drop)
    };
    result.map_err(|e| match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    })
}

/// Runs one batch; returns the outcomes, the hot loops found and the deletion problems.
async fn batch(
    sys: &System,
    audit: &AuditLog,
    healthy: &ScaleSet,
    inputs: &[Input],
    statuses: &mut Vec<Text>,
    jobs: &mut Vec<i64>,
) -> anyhow::Result<(Vec<Outcome>, Vec<String>, Vec<String>)> {
    let client = sys.client();
    let started = chrono::Utc::now();
    let mut outcomes = Vec::new();
    for input in inputs {
        for secret in &input.secrets {
            create(&client, secret)
                .await
                .map_err(anyhow::Error::msg)
                .context("creating a campaign Secret")?;
        }
        outcomes.push(match create(&client, &input.ars).await {
            Ok(()) => Outcome::Silent(String::new()),
            Err(message) => Outcome::Refused(message),
        });
    }
    // The healthy set runs jobs while the batch is watched.
    let watch = tokio::time::sleep(OBSERVE);
    let healthy_jobs = sys.run_jobs(healthy, 2, Duration::from_secs(1), 0);
    let (_, ran) = tokio::join!(watch, healthy_jobs);
    jobs.extend(ran.context("the healthy scale set did not run its jobs next to the batch")?);
    sample_statuses(sys, statuses).await?;
    let events = audit.events()?;
    let manager = format!(
        "system:serviceaccount:{}:{}",
        sys.controller_namespace(),
        sys.controller_service_account()
    );
    let snapshot = sys.emulator().snapshot();
    let mut hot = Vec::new();
    for (input, outcome) in inputs.iter().zip(outcomes.iter_mut()) {
        if matches!(outcome, Outcome::Refused(_)) {
            continue;
        }
        let scale_set_name = input.scale_set_name();
        let running = snapshot
            .scale_set_by_name(scale_set_name)
            .is_some_and(|s| snapshot.active_session(s.id).is_some());
        *outcome = match report(sys, &input.name).await? {
            Some(report) => Outcome::Reported(report),
            None if running => Outcome::Running,
            None => {
                let sets: Api<AutoscalingRunnerSet> =
                    Api::namespaced(sys.client(), sys.runner_namespace());
                let status = sets
                    .get_opt(&input.name)
                    .await?
                    .and_then(|s| s.status)
                    .map(|s| serde_json::to_string(&s).unwrap_or_default());
                Outcome::Silent(format!(
                    "status {}; {} on the service",
                    status.as_deref().unwrap_or("none"),
                    if snapshot.scale_set_by_name(scale_set_name).is_some() {
                        "registered"
                    } else {
                        "not registered"
                    }
                ))
            }
        };
        let (first, second, by_verb) = request_halves(
            &events,
            &manager,
            sys.runner_namespace(),
            &input.name,
            started,
        );
        eprintln!(
            "campaign: {}: {first} manager requests about it in the first {}s, {second} in the next",
            input.name,
            (OBSERVE / 2).as_secs()
        );
        // A running input settles; a broken one must back off.
        let broken = !matches!(outcome, Outcome::Running);
        if broken && second >= RETRY_FLOOR && second >= first {
            hot.push(format!(
                "{} ({}): {first} manager requests in the first {}s, {second} in the next ({by_verb:?})",
                input.name,
                input.what.join("; "),
                (OBSERVE / 2).as_secs()
            ));
        }
    }
    // Deletion: everything goes within the bound and leaves no registration.
    let api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        sys.runner_namespace(),
        &ars_resource(),
    );
    for input in inputs {
        match api.delete(&input.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e).context("deleting a campaign AutoscalingRunnerSet"),
        }
    }
    let mut stuck = Vec::new();
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let gone = wait_for(
        DELETE_BOUND,
        "every campaign AutoscalingRunnerSet to be gone",
        || async {
            let left = api.list(&ListParams::default()).await?.items;
            Ok(!left
                .iter()
                .any(|o| names.contains(&o.metadata.name.as_deref().unwrap_or_default())))
        },
    )
    .await;
    if gone.is_err() {
        for o in api.list(&ListParams::default()).await?.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            if let Some(input) = inputs.iter().find(|i| i.name == name) {
                stuck.push(format!(
                    "{name} ({}) still exists {}s after its deletion (finalizers {:?})",
                    input.what.join("; "),
                    DELETE_BOUND.as_secs(),
                    o.metadata.finalizers
                ));
            }
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), sys.runner_namespace());
    for input in inputs {
        for secret in &input.secrets {
            let name = secret["metadata"]["name"].as_str().unwrap_or_default();
            let _ = secrets.delete(name, &DeleteParams::default()).await;
        }
    }
    let snapshot = sys.emulator().snapshot();
    for input in inputs {
        let scale_set_name = input.scale_set_name();
        if let Some(set) = snapshot.scale_set_by_name(scale_set_name) {
            let runners = snapshot
                .runners
                .iter()
                .filter(|r| r.scale_set_id == set.id)
                .count();
            stuck.push(format!(
                "{} ({}): scale set {} and {runners} runners left on the service after the deletion",
                input.name,
                input.what.join("; "),
                set.id
            ));
        }
    }
    Ok((outcomes, hot, stuck))
}

/// Malformed and failing service answers while the healthy set runs jobs: the emulator's fault
/// modes, each a few times. Returns how many faults fired.
async fn service_faults(
    sys: &System,
    healthy: &ScaleSet,
    jobs: &mut Vec<i64>,
) -> anyhow::Result<u32> {
    let emulator = sys.emulator();
    let faults = [
        Fault::on(Endpoint::GetMessage, FaultKind::malformed_body(), 2),
        Fault::on(
            Endpoint::GetMessage,
            FaultKind::Respond {
                status: 200,
                content_type: Some("application/json".into()),
                body: r#"{"messageId":"NaN","messageType":"RunnerScaleSetJobMessages","body":[1,{"messageType":7}]}"#.into(),
            },
            1,
        ),
        Fault::on(Endpoint::GetMessage, FaultKind::DropConnection, 1),
        Fault::on(
            Endpoint::AcquireJobs,
            FaultKind::Respond {
                status: 200,
                content_type: Some("application/json".into()),
                body: r#"{"count":"two","value":{"x":1}}"#.into(),
            },
            1,
        ),
        Fault::on(Endpoint::GenerateJitConfig, FaultKind::text(502, "<html>bad gateway</html>"), 2),
        Fault::on(Endpoint::GenerateJitConfig, FaultKind::malformed_body(), 1),
        Fault::on(Endpoint::RefreshSession, FaultKind::retry_after(429, 1), 1),
        Fault::on(
            Endpoint::RunnerRegistration,
            FaultKind::Respond {
                status: 200,
                content_type: Some("application/json".into()),
                body: r#"{"url":"","token":{}}"#.into(),
            },
            1,
        ),
        Fault::everywhere(FaultKind::BomPrefix).with_rate(0.3),
    ];
    let ids: Vec<u64> = faults.iter().cloned().map(|f| emulator.inject(f)).collect();
    emulator.expire_admin_tokens();
    let ran = sys.run_jobs(healthy, 3, Duration::from_secs(1), 0).await;
    let fired: u32 = emulator.faults().iter().map(|f| f.fired).sum::<u32>()
        + (faults.len() - emulator.faults().len()) as u32;
    for id in ids {
        emulator.remove_fault(id);
    }
    jobs.extend(
        ran.context("the healthy scale set did not run jobs through malformed service answers")?,
    );
    Ok(fired)
}

#[tokio::test]
async fn bad_input_never_crashes_sticks_or_leaks() {
    let audit = AuditLog::new(AuditPolicy::ServiceAccounts).expect("audit log");
    let sys = System::start_audited(&audit, &[], SystemOptions::new("camp"))
        .await
        .expect("system");
    let outcome = campaign(&sys, &audit).await;
    if let Err(e) = sys.finish(outcome).await {
        panic!("{e:#}");
    }
}

async fn campaign(sys: &System, audit: &AuditLog) -> anyhow::Result<()> {
    let healthy = sys
        .install_scale_set(ScaleSetSpec::new("camp-healthy"))
        .await?;
    let base = healthy
        .objects
        .iter()
        .find(|o| o["kind"] == "AutoscalingRunnerSet")
        .context("the chart rendered no AutoscalingRunnerSet")?
        .clone();
    let fields = crd_fields(&sys.client()).await?;
    let org_url = sys.emulator().org_url(system::ORG);
    let mut counts = Counts::default();
    let mut statuses = Vec::new();
    let mut jobs = Vec::new();
    let mut hot = Vec::new();
    let mut stuck = Vec::new();
    let mut planted = Vec::new();
    let mut refused = BTreeMap::new();
    for (b, seed) in seeds().into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(seed);
        let inputs: Vec<Input> = (0..BATCH)
            .map(|i| generate(&mut rng, b * BATCH + i, &base, &fields, &org_url))
            .collect();
        for input in &inputs {
            planted.extend(input.planted.iter().cloned());
        }
        let (outcomes, batch_hot, batch_stuck) =
            batch(sys, audit, &healthy, &inputs, &mut statuses, &mut jobs).await?;
        sys.stage(&format!("campaign batch {b} (seed {seed}) done"));
        hot.extend(batch_hot);
        stuck.extend(batch_stuck);
        for (input, outcome) in inputs.iter().zip(outcomes) {
            counts.tried += 1;
            let what = input.what.join("; ");
            match outcome {
                Outcome::Refused(message) => {
                    counts.refused += 1;
                    refused.insert(format!("{} ({what})", input.name), message);
                }
                Outcome::Reported(report) => {
                    counts.reported += 1;
                    eprintln!("campaign: {} ({what}) reported: {report}", input.name);
                }
                Outcome::Running => counts.running += 1,
                Outcome::Silent(state) => counts
                    .silent
                    .push(format!("{} ({what}): {state}", input.name)),
            }
        }
    }
    let fired = service_faults(sys, &healthy, &mut jobs).await?;
    sample_statuses(sys, &mut statuses).await?;

    // Crashes: a restarted manager, or a panic in any manager or listener log.
    let manager_restarts = restarts(&sys.manager_pods().await?, "manager");
    let panics: Vec<String> = sys
        .all_controller_logs()
        .into_iter()
        .filter(|(_, _, log)| log.contains("panicked at"))
        .map(|(pod, container, _)| format!("the {container} log of {pod}"))
        .collect();
    counts.crashed = usize::try_from(manager_restarts).unwrap_or(usize::MAX) + panics.len();

    // Secrets: nothing the emulator knows or the campaign planted shows anywhere.
    let mut secrets: Vec<(String, String)> = sys
        .emulator()
        .issued_secrets()
        .into_iter()
        .map(|(kind, s)| (kind.to_owned(), s.expose_secret().to_owned()))
        .collect();
    secrets.extend(
        planted
            .into_iter()
            .map(|p| ("credential planted by the campaign".to_owned(), p)),
    );
    let texts = texts(sys, audit, &statuses).await?;
    let leaked = leaks(&texts, &secrets);

    eprintln!(
        "campaign: {} inputs tried, {} refused at admission, {} reported, {} running as valid input, {} neither refused nor reported, {} crashed; {} retry loops that do not back off; {} service faults fired; {} texts checked against {} secrets",
        counts.tried,
        counts.refused,
        counts.reported,
        counts.running,
        counts.silent.len(),
        counts.crashed,
        hot.len(),
        fired,
        texts.len(),
        secrets.len()
    );
    for (input, message) in &refused {
        eprintln!("campaign: refused {input}: {}", short(&json!(message)));
    }
    for input in &counts.silent {
        eprintln!("campaign: neither refused nor reported: {input}");
    }

    for loop_ in &hot {
        eprintln!("campaign: retry loop that does not back off: {loop_}");
    }
    // Every failed check is reported at once.
    let mut failures = Vec::new();
    if counts.tried != BATCHES * BATCH {
        failures.push(format!(
            "{} of {} inputs tried",
            counts.tried,
            BATCHES * BATCH
        ));
    }
    if counts.crashed != 0 {
        failures.push(format!(
            "crashes: {manager_restarts} manager restarts; panics in {panics:?}"
        ));
    }
    if !leaked.is_empty() {
        failures.push(format!("secrets leaked:\n  {}", leaked.join("\n  ")));
    }
    if !stuck.is_empty() {
        failures.push(format!("deletion problems:\n  {}", stuck.join("\n  ")));
    }
    if !hot.is_empty() {
        failures.push(format!(
            "retry loops that do not back off:\n  {}",
            hot.join("\n  ")
        ));
    }
    if !counts.silent.is_empty() {
        failures.push(format!(
            "inputs neither refused nor reported:\n  {}",
            counts.silent.join("\n  ")
        ));
    }
    if fired == 0 {
        failures.push("no service fault fired".to_owned());
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    sys.uninstall_scale_set(&healthy).await?;
    sys.leak_check(&healthy, &jobs).await
}

/// The listener binary on generated malformed config files: a config error (exit code 2) that
/// names the key or the file, never a panic, never the token or the key.
#[tokio::test]
async fn listener_rejects_malformed_config_files() {
    let binaries = tokio::task::spawn_blocking(|| system::build_binaries(false))
        .await
        .expect("join")
        .expect("binaries");
    let dir = tempfile_dir();
    let token = "ghp_campaignlistenertoken0123456789";
    let base = json!({"configure_url": "http://127.0.0.1:9/octo-org", "vault_type": "", "vault_lookup_key": "",
        "github_app_id": "", "github_app_installation_id": 0, "github_app_private_key": "",
        "github_token": token,
        "ephemeral_runner_set_namespace": "ns", "ephemeral_runner_set_name": "set",
        "max_runners": 3, "min_runners": 0, "runner_scale_set_id": 1,
        "runner_scale_set_name": "set", "server_root_ca": "", "log_level": "info",
        "log_format": "json", "metrics_endpoint": "", "metrics": null});
    let keys: Vec<String> = base
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    // A cluster that is not there: a config the listener accepts gets as far as its first call.
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\", insecure-skip-tls-verify: true}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .expect("write kubeconfig");
    let mut rng = StdRng::seed_from_u64(FIXED_SEED);
    let (mut tried, mut refused, mut ran) = (0, 0, 0);
    let mut problems = Vec::new();
    for i in 0..40 {
        let mut config = base.clone();
        let mut what = Vec::new();
        let text = match rng.random_range(0..10) {
            0 => {
                what.push("a truncated file".to_owned());
                let t = config.to_string();
                t[..rng.random_range(0..t.len())].to_owned()
            }
            1 => {
                what.push("a JSON array".to_owned());
                "[1,2,3]".to_owned()
            }
            2 => {
                what.push("an App key of garbage and no token".to_owned());
                config["github_token"] = json!("");
                config["github_app_id"] = json!("12");
                config["github_app_installation_id"] = json!(3);
                config["github_app_private_key"] = json!(
                    "-----BEGIN RSA PRIVATE KEY-----\nGARBAGEcampaignlistenerkey0123456789\n-----END RSA PRIVATE KEY-----"
                );
                config.to_string()
            }
            _ => {
                for _ in 0..rng.random_range(1..3) {
                    let key = keys[rng.random_range(0..keys.len())].clone();
                    if rng.random_bool(0.3) {
                        config.as_object_mut().map(|m| m.remove(&key));
                        what.push(format!("{key} removed"));
                    } else {
                        let value = extreme(
                            &mut rng,
                            if config[&key].is_string() {
                                "string"
                            } else if config[&key].is_number() {
                                "integer"
                            } else {
                                "object"
                            },
                        );
                        what.push(format!("{key} = {}", short(&value)));
                        config[&key] = value;
                    }
                }
                config.to_string()
            }
        };
        let path = dir.join(format!("config-{i}.json"));
        std::fs::write(&path, text).expect("write config");
        tried += 1;
        let child = tokio::process::Command::new(&binaries.listener)
            .env("LISTENER_CONFIG_PATH", &path)
            .env("KUBECONFIG", &kubeconfig)
            .env("LISTENER_TERMINATION_LOG", dir.join("termination.log"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the listener");
        let output = tokio::time::timeout(Duration::from_secs(3), child.wait_with_output()).await;
        let what = what.join("; ");
        let Ok(output) = output else {
            // Still running: a config it accepts (the service it names refuses connections);
            // dropping the child killed it.
            ran += 1;
            continue;
        };
        let output = output.expect("listener output");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if all.contains("panicked") || output.status.code() == Some(101) {
            problems.push(format!("config {i} ({what}): the listener panicked"));
        }
        if all.contains(token) || all.contains("GARBAGEcampaignlistenerkey") {
            problems.push(format!(
                "config {i} ({what}): the listener printed a credential"
            ));
        }
        if output.status.code() == Some(2) {
            refused += 1;
            if !(all.contains("config file") || keys.iter().any(|k| all.contains(k.as_str()))) {
                problems.push(format!(
                    "config {i} ({what}): the error names no key or file"
                ));
            }
        } else {
            ran += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "listener configs: {tried} tried, {refused} refused with a config error, {ran} accepted"
    );
    assert!(refused > 0, "no config was refused");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("arc-campaign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
