//! A mocked Kubernetes API server for reconcile-level unit tests, as kube-rs/controller-rs
//! does it: the controllers get a `kube::Client` over a `tower-test` mock service, and a
//! scenario lists the requests one reconcile pass must make, in order, each with the answer
//! the API server gives.
//!
//! [`ApiServer::run`] checks every request against the next [`Exchange`]: its verb (method and,
//! for a patch, the patch type), path, query where it matters and the relevant parts of its
//! body. It fails the test when a request differs, when the pass makes a request the scenario
//! does not list, when it returns before making all of them, or when it takes longer than
//! [`SCENARIO_TIMEOUT`]. The request sequence is the contract: it pins the reads and the writes
//! of each path, so a change to either breaks a test. These tests sit beside the suites under
//! `tests/suites`, which run the controllers against a real kube-apiserver.
//!
//! Answers are canned: a read answers what the test gives it, a create or server-side apply
//! echoes the request body, and a patch answers the object the test names with the request's
//! patch applied (a JSON patch whose `test` operations do not hold fails the test, as the API
//! server would refuse it). Nothing bumps `resourceVersion`.
//!
//! The Actions service is the in-memory [`MemoryService`], as in the real-API-server suites.
//! The fixtures build objects the way the controllers build them: the EphemeralRunnerSet and
//! the AutoscalingListener from an AutoscalingRunnerSet with its `desired` module, runners with
//! the set's `new_runner`.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::client::Body;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Context;
use crate::controllers::autoscaling_runner_set::desired;
use crate::controllers::ephemeral_runner_set::runners::new_runner;
use crate::crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet};
use crate::error::Error;
use crate::github::memory::MemoryService;
use crate::github::{ActionsService, GithubClients, NewScaleSet};
use crate::names::{annotations, finalizers};
use crate::options::ManagerOptions;

/// Longest a scenario may take; they take milliseconds, so reaching it means a hang.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(5);
/// Namespace of the AutoscalingRunnerSet, its EphemeralRunnerSet and runners.
pub const RUNNER_NS: &str = "runners";
/// Controller namespace: the listeners live here.
pub const CONTROLLER_NS: &str = "arc-system";
/// The credentials Secret the scale set names.
pub const CREDENTIALS: &str = "creds";
/// `githubConfigUrl` of the scale set.
pub const CONFIG_URL: &str = "https://github.com/org";
/// Name of the AutoscalingRunnerSet (and of its EphemeralRunnerSet).
pub const SET_NAME: &str = "arc";
/// Field manager of the controllers' server-side applies.
pub const FIELD_MANAGER: &str = "gha-runner-scale-set-controller";

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A request verb as the API server sees it: method, and the content type of a patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Get,
    List,
    Create,
    MergePatch,
    JsonPatch,
    Apply,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get | Verb::List => Method::GET,
            Verb::Create => Method::POST,
            Verb::MergePatch | Verb::JsonPatch | Verb::Apply => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }

    fn content_type(self) -> Option<&'static str> {
        match self {
            Verb::MergePatch => Some("application/merge-patch+json"),
            Verb::JsonPatch => Some("application/json-patch+json"),
            Verb::Apply => Some("application/apply-patch+yaml"),
            _ => None,
        }
    }

    fn writes(self) -> bool {
        !matches!(self, Verb::Get | Verb::List)
    }
}

/// How the API server answers an expected request.
#[derive(Clone, Debug)]
enum Reply {
    /// Not given: the scenario is incomplete.
    Unset,
    /// This status and JSON body.
    Json(StatusCode, Value),
    /// The request body (a name filled in from `generateName`).
    Echo,
    /// This object with the request's patch applied.
    Patched(Value),
}

/// One expected request and its answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    verb: Verb,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
    exact_body: bool,
    reply: Reply,
}

impl Exchange {
    fn new(verb: Verb, path: impl Into<String>, reply: Reply) -> Self {
        Self {
            verb,
            path: path.into(),
            query: Vec::new(),
            body: None,
            exact_body: false,
            reply,
        }
    }

    /// `GET` of one object; give the answer with [`Exchange::reply`] or [`Exchange::not_found`].
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Verb::Get, path, Reply::Unset)
    }

    /// `GET` of a collection; its label and field selectors must be exactly those given with
    /// [`Exchange::query`]. Give the items with [`Exchange::items`].
    pub fn list(path: impl Into<String>) -> Self {
        Self::new(Verb::List, path, Reply::Unset)
    }

    /// `POST` to a collection; answers the request body.
    pub fn create(path: impl Into<String>) -> Self {
        Self::new(Verb::Create, path, Reply::Echo)
    }

    /// A JSON merge patch; give the object it applies to with [`Exchange::patched`].
    pub fn merge_patch(path: impl Into<String>) -> Self {
        Self::new(Verb::MergePatch, path, Reply::Unset)
    }

    /// A JSON patch; give the object it applies to with [`Exchange::patched`].
    pub fn json_patch(path: impl Into<String>) -> Self {
        Self::new(Verb::JsonPatch, path, Reply::Unset)
    }

    /// A forced server-side apply by the controllers' field manager; answers the request body.
    pub fn apply(path: impl Into<String>) -> Self {
        Self::new(Verb::Apply, path, Reply::Echo)
            .query("fieldManager", FIELD_MANAGER)
            .query("force", "true")
    }

    /// `DELETE` of one object; answers a success Status.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(
            Verb::Delete,
            path,
            Reply::Json(
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ),
        )
    }

    /// A `DELETE` in the background (`propagationPolicy: Background`), as the controllers
    /// delete runners and their pods and Secrets.
    pub fn delete_background(path: impl Into<String>) -> Self {
        Self::delete(path).body(json!({"propagationPolicy": "Background"}))
    }

    /// The query must carry `key=value` (for a list: its selectors must be exactly these).
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The request body must include `expected`: every key of an expected object is in the
    /// actual one with an included value, arrays have the same length and included elements,
    /// other values are equal.
    pub fn body(mut self, expected: Value) -> Self {
        self.body = Some(expected);
        self.exact_body = false;
        self
    }

    /// The request body must equal `expected`.
    pub fn body_exact(mut self, expected: Value) -> Self {
        self.body = Some(expected);
        self.exact_body = true;
        self
    }

    /// Answers `object` with 200.
    pub fn reply(mut self, object: &impl Serialize) -> Self {
        self.reply = Reply::Json(StatusCode::OK, to_json(object));
        self
    }

    /// Answers a list of `items` with 200.
    pub fn items<K: Serialize>(mut self, items: &[K]) -> Self {
        let items: Vec<Value> = items.iter().map(to_json).collect();
        self.reply = Reply::Json(
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        );
        self
    }

    /// Answers `object` with 200, or 404 NotFound without one.
    pub fn found(self, object: Option<&impl Serialize>) -> Self {
        match object {
            Some(object) => self.reply(object),
            None => self.not_found(),
        }
    }

    /// Answers 404 NotFound.
    pub fn not_found(mut self) -> Self {
        self.reply = Reply::Json(
            StatusCode::NOT_FOUND,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{} not found", self.path), "reason": "NotFound", "code": 404,
            }),
        );
        self
    }

    /// Answers `object` with the request's patch applied to it.
    pub fn patched(mut self, object: &impl Serialize) -> Self {
        self.reply = Reply::Patched(to_json(object));
        self
    }

    fn describe(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{:?} {}?{}", self.verb, self.path, query.join("&"))
    }

    /// Checks `request` against this exchange and returns the answer.
    async fn serve(
        self,
        index: usize,
        request: Request<Body>,
        seq: usize,
    ) -> (Response<Body>, Value) {
        let (parts, body) = request.into_parts();
        let raw = body.collect_bytes().await.expect("request body");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let seen = format!("{} {} {}", parts.method, parts.uri, text);
        let expected = self.describe();
        let fail = |why: String| -> ! {
            panic!("request {index}: {why}\n  expected: {expected}\n  got:      {seen}")
        };
        if parts.method != self.verb.method() || parts.uri.path() != self.path {
            fail("another request than expected".into());
        }
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Some(wanted) = self.verb.content_type()
            && content_type != Some(wanted)
        {
            fail(format!("content type {content_type:?}, not {wanted}"));
        }
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        if self.verb == Verb::List {
            let selectors: Vec<&(String, String)> = query
                .iter()
                .filter(|(k, _)| k == "labelSelector" || k == "fieldSelector")
                .collect();
            let wanted: Vec<&(String, String)> = self.query.iter().collect();
            if selectors != wanted {
                fail(format!("list selectors {selectors:?}, not {wanted:?}"));
            }
        } else if let Some(missing) = self.query.iter().find(|pair| !query.contains(pair)) {
            fail(format!("query without {}={}", missing.0, missing.1));
        }
        let actual: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| fail(format!("body is not JSON: {e}")))
        };
        if let Some(wanted) = &self.body {
            let check = if self.exact_body {
                (actual == *wanted)
                    .then_some(())
                    .ok_or_else(|| format!("body differs: wanted exactly {wanted}"))
            } else {
                includes(&actual, wanted, "")
            };
            if let Err(why) = check {
                fail(why);
            }
        }
        let (status, answer) = match self.reply {
            Reply::Unset => fail("the scenario gives no answer for this request".into()),
            Reply::Json(status, value) => (status, value),
            Reply::Echo => {
                let mut object = actual;
                if object["metadata"]["name"].is_null()
                    && let Some(prefix) = object["metadata"]["generateName"].as_str()
                {
                    object["metadata"]["name"] = json!(format!("{prefix}{seq:05}"));
                }
                (StatusCode::OK, object)
            }
            Reply::Patched(mut object) => {
                match self.verb {
                    Verb::MergePatch => json_patch::merge(&mut object, &actual),
                    Verb::JsonPatch => {
                        let ops: json_patch::Patch = serde_json::from_value(actual)
                            .unwrap_or_else(|e| fail(format!("not a JSON patch: {e}")));
                        if let Err(e) = apply_json_patch(&mut object, ops) {
                            fail(format!("the JSON patch does not apply to the object: {e}"));
                        }
                    }
                    _ => fail("only patches answer a patched object".into()),
                }
                (StatusCode::OK, object)
            }
        };
        let bytes = serde_json::to_vec(&answer).expect("answer JSON");
        let response = Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("response");
        (response, answer)
    }
}

/// Applies a JSON patch as the API server does: a `test` for `null` holds where the path is
/// missing (the finalizer helper tests `/metadata/finalizers` that way).
fn apply_json_patch(
    object: &mut Value,
    ops: json_patch::Patch,
) -> Result<(), json_patch::PatchError> {
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(test) = &op
            && test.value.is_null()
            && object.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(object, &[op])?;
    }
    Ok(())
}

/// Whether `actual` includes `expected` (see [`Exchange::body`]); the error names the path.
fn includes(actual: &Value, expected: &Value, at: &str) -> Result<(), String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().try_for_each(|(k, v)| {
            let here = format!("{at}/{k}");
            match a.get(k) {
                Some(found) => includes(found, v, &here),
                None => Err(format!("body has no {here} (wanted {v})")),
            }
        }),
        (Value::Array(a), Value::Array(e)) if a.len() == e.len() => a
            .iter()
            .zip(e)
            .enumerate()
            .try_for_each(|(i, (a, e))| includes(a, e, &format!("{at}/{i}"))),
        _ if actual == expected => Ok(()),
        _ => Err(format!("body has {actual} at {at}, not {expected}")),
    }
}

fn to_json(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("fixture JSON")
}

/// The API server side of a mocked client.
pub struct ApiServer {
    handle: Handle,
    answers: Vec<Value>,
    /// Writes among the requests the last run served.
    writes: usize,
    seq: usize,
}

impl ApiServer {
    /// Runs `pass` (one reconcile) while serving exactly `exchanges`, in order, and returns
    /// what the pass returned. The pass lives on the heap: a reconcile future is too large for
    /// a test thread's stack in a debug build.
    pub fn run<'a, F: Future + 'a>(
        &'a mut self,
        exchanges: Vec<Exchange>,
        pass: F,
    ) -> LocalBoxFuture<'a, F::Output> {
        let pass = Box::pin(pass);
        Box::pin(self.serve_pass(exchanges, pass))
    }

    async fn serve_pass<F: Future + Unpin>(
        &mut self,
        exchanges: Vec<Exchange>,
        pass: F,
    ) -> F::Output {
        let expected: Vec<String> = exchanges.iter().map(Exchange::describe).collect();
        let writes = exchanges.iter().filter(|e| e.verb.writes()).count();
        let served = Cell::new(0usize);
        self.answers.clear();
        self.writes = 0;
        let scenario = async {
            tokio::select! {
                out = pass => out,
                never = serve(&mut self.handle, exchanges, &served, &mut self.answers, &mut self.seq) => match never {},
            }
        };
        let out = match tokio::time::timeout(SCENARIO_TIMEOUT, scenario).await {
            Ok(out) => out,
            Err(_) => panic!(
                "the pass did not return within {SCENARIO_TIMEOUT:?}; {} of {} expected requests served; next expected: {:?}",
                served.get(),
                expected.len(),
                expected.get(served.get())
            ),
        };
        assert_eq!(
            served.get(),
            expected.len(),
            "the pass returned after {} of {} expected requests; not made: {:#?}",
            served.get(),
            expected.len(),
            expected.get(served.get()..)
        );
        self.writes = writes;
        // A request still on its way through the client's buffer arrives now.
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        if let Some(Some((request, _))) = self.handle.next_request().now_or_never() {
            panic!(
                "a request after the pass returned: {} {}",
                request.method(),
                request.uri()
            );
        }
        out
    }

    /// The answer to the `index`th request of the last [`ApiServer::run`], as a `K`.
    pub fn answer<K: DeserializeOwned>(&self, index: usize) -> K {
        let value = self
            .answers
            .get(index)
            .unwrap_or_else(|| panic!("no answer {index}"))
            .clone();
        serde_json::from_value(value).expect("answer of the expected kind")
    }

    /// Writes (creates, patches, deletes) the last [`ApiServer::run`] served.
    pub fn writes(&self) -> usize {
        self.writes
    }
}

/// Serves `exchanges` in order, then fails on any further request.
async fn serve(
    handle: &mut Handle,
    exchanges: Vec<Exchange>,
    served: &Cell<usize>,
    answers: &mut Vec<Value>,
    seq: &mut usize,
) -> Infallible {
    let total = exchanges.len();
    for (index, exchange) in exchanges.into_iter().enumerate() {
        let Some((request, send)) = handle.next_request().await else {
            panic!("the client went away after {index} of {total} expected requests");
        };
        *seq += 1;
        let (response, answer) = exchange.serve(index, request, *seq).await;
        answers.push(answer);
        served.set(index + 1);
        send.send_response(response);
    }
    if let Some((request, _)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.unwrap_or_default();
        panic!(
            "unexpected request after the {total} expected: {} {} {}",
            parts.method,
            parts.uri,
            String::from_utf8_lossy(&body)
        );
    }
    futures::future::pending().await
}

/// A controller context over a mocked API server and the in-memory Actions service.
pub struct Harness {
    /// The controller's context.
    pub ctx: Arc<Context>,
    /// The Actions service.
    pub service: MemoryService,
    /// The API server.
    pub api: ApiServer,
}

impl Harness {
    /// A context for `controller` with ARC's default options, the controller namespace
    /// [`CONTROLLER_NS`] and the build version `dev`. Call it inside a Tokio runtime.
    pub fn new(controller: &'static str) -> Self {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(mock, "default");
        let service = MemoryService::new();
        let options = options(&service);
        let metrics = options.metrics.clone();
        let github = Arc::new(GithubClients::new(service.connector()));
        let ctx = Context::new(controller, client, Arc::new(options), github, metrics);
        Self {
            ctx,
            service,
            api: ApiServer {
                handle,
                answers: Vec::new(),
                writes: 0,
                seq: 0,
            },
        }
    }

    /// Creates a scale set on the Actions service and returns its id; the call log is cleared.
    pub async fn scale_set(&self) -> i64 {
        let set = self
            .service
            .create_runner_scale_set(NewScaleSet {
                name: SET_NAME.into(),
                runner_group_id: 1,
                labels: vec![SET_NAME.into()],
            })
            .await
            .expect("scale set");
        self.service.with(|s| s.calls.clear());
        set.id
    }

    /// Registers runner `name` in scale set `scale_set_id` and returns its id; the call log is
    /// cleared.
    pub async fn register(&self, scale_set_id: i64, name: &str) -> i64 {
        let jit = self
            .service
            .generate_jit_runner_config(scale_set_id, name, "")
            .await
            .expect("registration");
        self.service.with(|s| s.calls.clear());
        jit.runner.id
    }

    /// The Actions service calls so far.
    pub fn calls(&self) -> Vec<&'static str> {
        self.service.with(|s| s.calls.clone())
    }
}

fn options(service: &MemoryService) -> ManagerOptions {
    ManagerOptions::new(
        CONTROLLER_NS,
        "ghcr.io/arc-rs/controller:test",
        service.connector(),
    )
}

/// Path of the collection of `K` in `ns`.
pub fn collection<K: Resource<DynamicType = ()>>(ns: &str) -> String {
    K::url_path(&(), Some(ns))
}

/// Path of object `name` of kind `K` in `ns`.
pub fn object<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> String {
    format!("{}/{name}", collection::<K>(ns))
}

/// Path of the status subresource of object `name` of kind `K` in `ns`.
pub fn status<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> String {
    format!("{}/status", object::<K>(ns, name))
}

/// A Secret value as the API server encodes it (base64).
pub fn b64(text: &str) -> Value {
    to_json(&ByteString(text.as_bytes().to_vec()))
}

/// The current time, as the API server writes timestamps.
pub fn now() -> Value {
    json!(k8s_openapi::jiff::Timestamp::now().to_string())
}

/// The credentials Secret [`CREDENTIALS`] with a PAT.
pub fn credentials() -> Secret {
    from_json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": CREDENTIALS, "namespace": RUNNER_NS},
        "data": {"github_token": b64("ghp_test")},
    }))
}

/// The `GET` of the credentials Secret an Actions service client is built from.
pub fn read_credentials() -> Exchange {
    Exchange::get(object::<Secret>(RUNNER_NS, CREDENTIALS)).reply(&credentials())
}

/// A new AutoscalingRunnerSet [`SET_NAME`] in [`RUNNER_NS`], as the chart creates it (no
/// finalizer, nothing recorded).
pub fn autoscaling_runner_set() -> AutoscalingRunnerSet {
    from_json(json!({
        "apiVersion": "actions.github.com/v1alpha1", "kind": "AutoscalingRunnerSet",
        "metadata": {
            "name": SET_NAME, "namespace": RUNNER_NS, "uid": "ars-uid", "generation": 1,
            "resourceVersion": "1", "creationTimestamp": now(),
            "labels": {"app.kubernetes.io/version": "0.14.2"},
        },
        "spec": {
            "githubConfigUrl": CONFIG_URL, "githubConfigSecret": CREDENTIALS,
            "maxRunners": 5, "minRunners": 0,
            "template": {"spec": {"containers": [{
                "name": "runner", "image": "ghcr.io/actions/actions-runner:latest",
                "command": ["/home/runner/run.sh"],
            }]}},
        },
    }))
}

/// The AutoscalingRunnerSet with its finalizer and scale set `scale_set_id` recorded, as the
/// AutoscalingRunnerSet controller leaves it.
pub fn registered_runner_set(scale_set_id: i64) -> AutoscalingRunnerSet {
    let mut ars = autoscaling_runner_set();
    ars.metadata.finalizers = Some(vec![finalizers::AUTOSCALING_RUNNER_SET.into()]);
    let recorded = [
        (annotations::RUNNER_SCALE_SET_ID, scale_set_id.to_string()),
        (annotations::RUNNER_SCALE_SET_NAME, SET_NAME.to_owned()),
        (annotations::RUNNER_GROUP_NAME, "Default".to_owned()),
        (annotations::GITHUB_CONFIG_URL, CONFIG_URL.to_owned()),
        (annotations::INTEGRITY_HASH, desired::ars_hash(&ars)),
    ];
    ars.annotations_mut()
        .extend(recorded.map(|(k, v)| (k.to_owned(), v)));
    ars
}

/// The EphemeralRunnerSet of `ars` with scale set `scale_set_id`, as the AutoscalingRunnerSet
/// controller creates it, after the API server (UID) and the set controller (finalizer) had it,
/// with `replicas` and `patch_id` as the listener wrote them.
pub fn runner_set(scale_set_id: i64, replicas: i32, patch_id: i32) -> EphemeralRunnerSet {
    let ars = registered_runner_set(scale_set_id);
    let mut set = desired::runner_set(&ars, scale_set_id, &options(&MemoryService::new()));
    set.metadata.uid = Some("ers-uid".into());
    set.metadata.resource_version = Some("1".into());
    set.metadata.finalizers = Some(vec![finalizers::EPHEMERAL_RUNNER_SET.into()]);
    set.spec.replicas = replicas;
    set.spec.patch_id = patch_id;
    set
}

/// Runner `name` of `set`, as the set controller creates it (both finalizers, stamped with
/// `patch_id`), after the API server had it.
pub fn runner(set: &EphemeralRunnerSet, name: &str, patch_id: i64) -> EphemeralRunner {
    let mut er = new_runner(set, patch_id, &[]);
    er.metadata.name = Some(name.into());
    er.metadata.uid = Some(format!("{name}-uid"));
    er.metadata.resource_version = Some("1".into());
    er.metadata.creation_timestamp = Some(from_json(now()));
    er
}

/// `er` with `status` (ARC's JSON field names).
pub fn with_status(mut er: EphemeralRunner, status: Value) -> EphemeralRunner {
    er.status = Some(from_json(status));
    er
}

/// `object` being deleted (`deletionTimestamp` set).
pub fn deleting<K: Resource>(mut object: K) -> K {
    object.meta_mut().deletion_timestamp = Some(from_json(now()));
    object
}

/// The AutoscalingListener of `ars` with scale set `scale_set_id`, as the AutoscalingRunnerSet
/// controller creates it, after the API server had it (UID, no finalizer yet).
pub fn listener(scale_set_id: i64) -> AutoscalingListener {
    let ars = registered_runner_set(scale_set_id);
    let mut al = desired::listener(&ars, scale_set_id, &options(&MemoryService::new()));
    al.metadata.uid = Some("al-uid".into());
    al.metadata.resource_version = Some("1".into());
    al
}

/// Object `name` of kind `K` in `ns` with nothing but its name, for reads whose answer only
/// matters by its existence.
pub fn bare<K: Resource<DynamicType = ()> + DeserializeOwned>(ns: &str, name: &str) -> K {
    from_json(json!({
        "apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": ns},
    }))
}

/// `pod` with `status` (the kubelet's JSON).
pub fn pod_with_status(pod: Pod, status: Value) -> Pod {
    Pod {
        status: Some(from_json(status)),
        ..pod
    }
}

/// A watch cache that has listed `objects`, and its writer for later watch events.
pub fn cache<K>(objects: &[K]) -> (Store<K>, Writer<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    (store, writer)
}

/// `result` is the wait of a dependent step, of `wait`.
pub fn assert_waiting<T: std::fmt::Debug>(result: Result<T, Error>, wait: Duration) {
    match result {
        Err(Error::Waiting { retry_after, .. }) => assert_eq!(retry_after, wait),
        other => panic!("the pass must wait {wait:?}, not end with {other:?}"),
    }
}

/// A `K` from JSON.
pub fn from_json<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("fixture JSON")
}

/// The scenario runner itself fails a test for each kind of departure from the scenario.
mod tests {
    use kube::Api;

    use super::*;

    /// Reads the credentials Secret `times` times, then creates `body` as a Secret.
    async fn reads_then_creates(client: kube::Client, times: usize, body: Option<Secret>) {
        let api: Api<Secret> = Api::namespaced(client, RUNNER_NS);
        for _ in 0..times {
            api.get_opt(CREDENTIALS).await.expect("read");
        }
        if let Some(secret) = body {
            api.create(&Default::default(), &secret)
                .await
                .expect("create");
        }
    }

    #[tokio::test]
    async fn a_pass_as_listed_passes() {
        let mut t = Harness::new("test");
        let out = t
            .api
            .run(
                vec![
                    read_credentials(),
                    Exchange::create(collection::<Secret>(RUNNER_NS))
                        .body(json!({"metadata": {"name": CREDENTIALS}})),
                ],
                reads_then_creates(t.ctx.client.clone(), 1, Some(credentials())),
            )
            .await;
        assert_eq!(out, ());
        assert_eq!(t.api.writes(), 1);
        assert_eq!(
            t.api.answer::<Secret>(1).metadata.name.as_deref(),
            Some(CREDENTIALS)
        );
    }

    #[tokio::test]
    #[should_panic(expected = "unexpected request after the 1 expected")]
    async fn a_request_the_scenario_does_not_list_fails() {
        let mut t = Harness::new("test");
        let pass = reads_then_creates(t.ctx.client.clone(), 2, None);
        t.api.run(vec![read_credentials()], pass).await;
    }

    #[tokio::test]
    #[should_panic(expected = "the pass returned after 1 of 2 expected requests")]
    async fn a_request_the_pass_does_not_make_fails() {
        let mut t = Harness::new("test");
        let pass = reads_then_creates(t.ctx.client.clone(), 1, None);
        t.api
            .run(vec![read_credentials(), read_credentials()], pass)
            .await;
    }

    #[tokio::test]
    #[should_panic(expected = "another request than expected")]
    async fn another_request_fails() {
        let mut t = Harness::new("test");
        let pass = reads_then_creates(t.ctx.client.clone(), 0, Some(credentials()));
        t.api.run(vec![read_credentials()], pass).await;
    }

    #[tokio::test]
    #[should_panic(expected = "body has \"creds\" at /metadata/name, not \"other\"")]
    async fn another_body_fails() {
        let mut t = Harness::new("test");
        let pass = reads_then_creates(t.ctx.client.clone(), 0, Some(credentials()));
        let create = Exchange::create(collection::<Secret>(RUNNER_NS))
            .body(json!({"metadata": {"name": "other"}}));
        t.api.run(vec![create], pass).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "content type Some(\"application/merge-patch+json\"), not application/json-patch+json"
    )]
    async fn another_patch_type_fails() {
        let mut t = Harness::new("test");
        let api: Api<Secret> = Api::namespaced(t.ctx.client.clone(), RUNNER_NS);
        let pass = async move {
            let patch = kube::api::Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
            api.patch(CREDENTIALS, &Default::default(), &patch).await
        };
        let expected =
            Exchange::json_patch(object::<Secret>(RUNNER_NS, CREDENTIALS)).patched(&credentials());
        let _ = t.api.run(vec![expected], pass).await;
    }

    #[test]
    fn includes_compares_objects_by_subset_and_arrays_by_element() {
        let actual = json!({"a": 1, "b": [{"c": 2, "d": 3}], "e": null});
        assert_eq!(includes(&actual, &json!({"b": [{"c": 2}]}), ""), Ok(()));
        assert_eq!(includes(&actual, &json!({"e": null}), ""), Ok(()));
        assert!(includes(&actual, &json!({"b": []}), "").is_err());
        assert_eq!(
            includes(&actual, &json!({"f": 1}), ""),
            Err("body has no /f (wanted 1)".to_owned())
        );
    }
}
