//! Reconcile-level tests of the EphemeralRunner controller against a mocked API server
//! (`crate::testing_api`): each pins the requests of one path, in order.

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::controller::Action as Requeue;
use scaleset_core::time::Timestamp;
use serde_json::json;

use super::{Settings, State, reconcile};
use crate::crd::EphemeralRunner;
use crate::error::Error;
use crate::names::finalizers::{EPHEMERAL_RUNNER, RUNNER_REGISTRATION};
use crate::testing_api::{
    Exchange, Harness, RUNNER_NS, b64, cache, collection, deleting, from_json, object,
    read_credentials, runner, runner_set, status, with_status,
};

const NAME: &str = "arc-runner-abcde";

/// The controller's state.
struct Controller {
    state: Arc<State>,
}

impl Controller {
    /// The controller of `harness` whose pod watch has listed `pods`.
    fn new(harness: &Harness, pods: &[Pod]) -> Self {
        let (pod_store, _) = cache(pods);
        let state = Arc::new(State {
            ctx: harness.ctx.clone(),
            settings: Settings::default(),
            pod_store,
            released: super::deletion::Released::default(),
            removed: Default::default(),
            own_writes: crate::controllers::OwnWrites::default(),
            made: super::observe::Made::since(super::observe::now() + super::START_MARGIN),
        });
        Self { state }
    }

    /// The controller of `harness`, started before the runners it will see were created.
    fn started_earlier(harness: &Harness) -> Self {
        let mut controller = Self::new(harness, &[]);
        if let Some(state) = Arc::get_mut(&mut controller.state) {
            state.made = super::observe::Made::since(Timestamp::from_unix_seconds(0));
        }
        controller
    }

    /// One reconcile of `er`, as the controller runs it once the runner watch delivered it.
    fn pass(
        &mut self,
        er: &EphemeralRunner,
    ) -> impl Future<Output = Result<Requeue, Error>> + use<> {
        reconcile(Arc::new(er.clone()), self.state.clone())
    }
}

/// The runner pod in `phase`, its runner container terminated with `code` and `reason`.
fn exited_pod(phase: &str, code: i32, reason: &str) -> Pod {
    runner_pod(json!({
        "phase": phase,
        "containerStatuses": [{"name": "runner", "image": "runner", "imageID": "", "ready": false,
                               "restartCount": 0,
                               "state": {"terminated": {"exitCode": code, "reason": reason}}}],
    }))
}

/// A runner of the set of scale set `scale_set_id`, as the set controller creates it.
fn new_runner(scale_set_id: i64) -> EphemeralRunner {
    runner(&runner_set(scale_set_id, 1, 1), NAME, 1)
}

/// The runner pod as the controller creates it for runner `er`, with `status`.
fn runner_pod(status: serde_json::Value) -> Pod {
    from_json(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": NAME, "namespace": RUNNER_NS, "uid": "pod-uid",
                     "labels": {"actions-ephemeral-runner": "True"},
                     "ownerReferences": [{"apiVersion": "actions.github.com/v1alpha1",
                                          "kind": "EphemeralRunner", "name": NAME,
                                          "uid": format!("{NAME}-uid"), "controller": true}]},
        "spec": {"containers": [{"name": "runner", "image": "runner"}]},
        "status": status,
    }))
}

/// What a pass does for runner `er` without JIT Secret or pod: look for the Secret, check the
/// runner on the API server, read the credentials, register runner `runner_id` on the service,
/// then write the JIT Secret and the pod, which carries the registration (two writes).
fn register_and_start(er: &EphemeralRunner, scale_set_id: i64, runner_id: i64) -> Vec<Exchange> {
    let mut exchanges = vec![
        Exchange::get(object::<Secret>(RUNNER_NS, NAME)).not_found(),
        Exchange::get(object::<EphemeralRunner>(RUNNER_NS, NAME)).reply(er),
    ];
    exchanges.extend(start_known(er, scale_set_id, runner_id));
    exchanges
}

/// [`register_and_start`] for a runner the controller has known since its creation: no reads
/// before the registration.
fn start_known(er: &EphemeralRunner, scale_set_id: i64, runner_id: i64) -> Vec<Exchange> {
    let owner = json!([{"kind": "EphemeralRunner", "name": NAME, "uid": er.metadata.uid, "controller": true}]);
    vec![
        read_credentials(),
        Exchange::create(collection::<Secret>(RUNNER_NS)).body(json!({
            "metadata": {"name": NAME, "ownerReferences": owner},
            "data": {
                "jitToken": b64(&format!("jit-{runner_id}")),
                "runnerId": b64(&runner_id.to_string()),
                "runnerName": b64(NAME),
                "scaleSetId": b64(&scale_set_id.to_string()),
            },
        })),
        Exchange::create(collection::<Pod>(RUNNER_NS)).body(json!({
            "metadata": {
                "name": NAME,
                "labels": {"actions-ephemeral-runner": "True"},
                "annotations": {"actions.github.com/runner-id": runner_id.to_string(),
                                "actions.github.com/runner-name": NAME},
                "ownerReferences": owner,
            },
            "spec": {"containers": [{
                "name": "runner",
                "env": [
                    {"name": "ACTIONS_RUNNER_INPUT_JITCONFIG",
                     "valueFrom": {"secretKeyRef": {"name": NAME, "key": "jitToken"}}},
                    {"name": "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT",
                     "value": "actions-runner-controller/dev"},
                    {"name": "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE", "value": "1"},
                ],
            }]},
        })),
    ]
}

#[tokio::test]
async fn a_runner_without_finalizers_gets_them_then_registers_and_starts() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let mut bare = new_runner(scale_set);
    bare.metadata.finalizers = None;
    let mut runners = Controller::new(&t, &[]);

    // Pass 1: the finalizer helper adds the main finalizer and nothing else.
    let first = t
        .api
        .run(
            vec![
                Exchange::json_patch(object::<EphemeralRunner>(RUNNER_NS, NAME))
                    .body_exact(json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": [EPHEMERAL_RUNNER]},
                    ]))
                    .patched(&bare),
            ],
            runners.pass(&bare),
        )
        .await;
    assert_eq!(first.expect("pass 1"), Requeue::await_change());
    let with_main: EphemeralRunner = t.api.answer(0);
    assert_eq!(t.api.writes(), 1);

    // Pass 2: the registration finalizer, then on to the registration and the pod.
    let mut exchanges = vec![
        Exchange::json_patch(object::<EphemeralRunner>(RUNNER_NS, NAME))
            .body_exact(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": [EPHEMERAL_RUNNER]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": RUNNER_REGISTRATION},
            ]))
            .patched(&with_main),
    ];
    let mut both = with_main.clone();
    both.metadata.finalizers = Some(vec![EPHEMERAL_RUNNER.into(), RUNNER_REGISTRATION.into()]);
    exchanges.extend(register_and_start(&both, scale_set, scale_set + 1));
    let second = t.api.run(exchanges, runners.pass(&with_main)).await;
    assert_eq!(second.expect("pass 2"), Requeue::await_change());
    assert_eq!(t.api.writes(), 3);
    assert_eq!(t.calls(), ["generate_jit_runner_config"]);
}

#[tokio::test]
async fn a_new_runner_gets_a_jit_config_a_secret_and_a_pod_in_one_pass_with_two_writes() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let er = new_runner(scale_set);
    // The in-memory service numbers everything it creates: the runner comes after the set.
    let runner_id = scale_set + 1;
    let result = t
        .api
        .run(
            register_and_start(&er, scale_set, runner_id),
            Controller::new(&t, &[]).pass(&er),
        )
        .await;
    assert_eq!(result.expect("pass"), Requeue::await_change());
    assert_eq!(t.api.writes(), 2, "writes for a new runner");
    assert_eq!(t.calls(), ["generate_jit_runner_config"]);
    let registered = t.service.with(|s| s.runners.get(&runner_id).cloned());
    assert_eq!(
        registered.map(|r| (r.name, r.runner_scale_set_id)),
        Some((NAME.to_owned(), scale_set))
    );
}

#[tokio::test]
async fn a_runner_created_after_the_controller_started_is_registered_without_reads() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let er = new_runner(scale_set);
    let mut runners = Controller::started_earlier(&t);
    let result = t
        .api
        .run(
            start_known(&er, scale_set, scale_set + 1),
            runners.pass(&er),
        )
        .await;
    assert_eq!(result.expect("pass"), Requeue::await_change());
    assert_eq!(t.api.writes(), 2);

    let secret: Secret = t.api.answer(1);
    let pod: Pod = t.api.answer(2);

    // A later pass whose pod watch has not delivered the pod yet reads the Secret this
    // controller made, then the pod.
    let again = t
        .api
        .run(
            vec![
                Exchange::get(object::<Secret>(RUNNER_NS, NAME)).reply(&secret),
                Exchange::get(object::<Pod>(RUNNER_NS, NAME)).reply(&pod),
            ],
            runners.pass(&er),
        )
        .await;
    assert_eq!(again.expect("pass 2"), Requeue::await_change());
    assert_eq!(
        t.calls(),
        ["generate_jit_runner_config"],
        "one registration"
    );
}

#[tokio::test]
async fn a_running_pod_is_mirrored_into_the_status_with_its_registration_in_one_write() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let runner_id = scale_set + 1;
    let er = with_status(new_runner(scale_set), json!({"phase": "Pending"}));
    let mut pod = runner_pod(json!({
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "runner", "image": "runner", "imageID": "", "ready": true,
                               "restartCount": 0, "state": {"running": {}}}],
    }));
    pod.metadata.annotations = Some(
        [
            (
                "actions.github.com/runner-id".to_owned(),
                runner_id.to_string(),
            ),
            ("actions.github.com/runner-name".to_owned(), NAME.to_owned()),
        ]
        .into(),
    );
    let result = t
        .api
        .run(
            vec![
                Exchange::merge_patch(status::<EphemeralRunner>(RUNNER_NS, NAME))
                    .body_exact(json!({"status": {
                        "phase": "Running", "ready": true, "reason": null, "message": null,
                        "runnerId": runner_id, "runnerName": NAME,
                    }}))
                    .patched(&er),
            ],
            Controller::new(&t, &[pod]).pass(&er),
        )
        .await;
    assert_eq!(result.expect("pass"), Requeue::await_change());
    assert!(t.calls().is_empty());
}

#[tokio::test]
async fn a_runner_whose_job_completed_is_deleted_in_one_pass_and_its_pod_and_secret_left_to_the_collector()
 {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let runner_id = t.register(scale_set, NAME).await;
    let er = with_status(
        new_runner(scale_set),
        json!({"phase": "Running", "ready": true, "runnerId": runner_id, "runnerName": NAME,
               "jobId": "job-1"}),
    );
    let pod = exited_pod("Succeeded", 0, "Completed");
    let mut runners = Controller::new(&t, std::slice::from_ref(&pod));
    let gone = deleting(er.clone());
    let result = t
        .api
        .run(
            // A runner that completed is deleted without reading it or its pod again; the pod
            // and the JIT Secret are the garbage collector's (the cached pod names its owner).
            deleted_in_one_pass(&gone),
            runners.pass(&er),
        )
        .await;
    assert_eq!(result.expect("pass"), Requeue::await_change());
    assert_eq!(t.api.writes(), 2, "writes for a finished runner");
    // The service removed the registration with the job: no RemoveRunner.
    assert!(t.calls().is_empty());

    // The watch events of the deletion still show the finalizers: they cost no request.
    let after = t.api.run(vec![], runners.pass(&gone)).await;
    assert_eq!(after.expect("released"), Requeue::await_change());
}

#[tokio::test]
async fn a_deleted_runner_without_pod_is_removed_from_the_service_then_released() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let runner_id = t.register(scale_set, NAME).await;
    let er = deleting(with_status(
        new_runner(scale_set),
        json!({"phase": "Pending", "runnerId": runner_id, "runnerName": NAME}),
    ));
    let mut runners = Controller::new(&t, &[]);
    let result = t
        .api
        .run(
            vec![
                read_credentials(),
                // RemoveRunner on the service happens here; then the JIT Secret, if any, is
                // read to see whether the deletion orphaned it.
                Exchange::get(object::<Secret>(RUNNER_NS, NAME)).not_found(),
                both_finalizers_removed(&er),
            ],
            runners.pass(&er),
        )
        .await;
    assert_eq!(result.expect("pass"), Requeue::await_change());
    assert_eq!(t.api.writes(), 1, "both finalizers in one patch");
    assert_eq!(t.calls(), ["remove_runner"]);
    assert!(t.service.with(|s| s.runners.is_empty()));

    let after = t.api.run(vec![], runners.pass(&er)).await;
    assert_eq!(after.expect("released"), Requeue::await_change());
}

/// A runner deleted by its own pass, which carries the deletion on: the delete, whose answer
/// `gone` is the runner with its deletion timestamp, then both finalizers at once.
fn deleted_in_one_pass(gone: &EphemeralRunner) -> Vec<Exchange> {
    vec![
        Exchange::delete_background(object::<EphemeralRunner>(RUNNER_NS, NAME)).reply(gone),
        both_finalizers_removed(gone),
    ]
}

/// The patch that drops both finalizers of `er` (registration at 1, main at 0) at once.
fn both_finalizers_removed(er: &EphemeralRunner) -> Exchange {
    Exchange::json_patch(object::<EphemeralRunner>(RUNNER_NS, NAME))
        .body_exact(json!([
            {"op": "test", "path": "/metadata/finalizers/1", "value": RUNNER_REGISTRATION},
            {"op": "remove", "path": "/metadata/finalizers/1"},
            {"op": "test", "path": "/metadata/finalizers/0", "value": EPHEMERAL_RUNNER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]))
        .patched(er)
}

/// A runner the set scaled down `ago`: its registration removed by the set, whose deletion of
/// the runner may come before or after the runner's pod exits for want of a registration.
fn scaled_down(
    t: &Harness,
    runner_id: i64,
    ago: std::time::Duration,
) -> (EphemeralRunner, Controller) {
    let er = with_status(
        new_runner(1),
        json!({"phase": "Running", "ready": true, "runnerId": runner_id, "runnerName": NAME}),
    );
    let pod = exited_pod("Failed", 1, "Error");
    let runners = Controller::new(t, std::slice::from_ref(&pod));
    runners.state.removed.insert_aged(runner_id, ago);
    (er, runners)
}

#[tokio::test]
async fn a_runner_the_set_scaled_down_is_released_without_a_second_removal() {
    let mut t = Harness::new(super::CONTROLLER);
    let (er, mut runners) = scaled_down(&t, 77, std::time::Duration::ZERO);
    let er = deleting(er);
    let result = t
        .api
        .run(
            vec![
                // Its pod goes now, not at the garbage collector's pace.
                Exchange::delete_background(object::<Pod>(RUNNER_NS, NAME)),
                both_finalizers_removed(&er),
            ],
            runners.pass(&er),
        )
        .await;
    assert_eq!(result.expect("pass"), Requeue::await_change());
    assert_eq!(t.api.writes(), 2);
    assert!(t.calls().is_empty(), "no RemoveRunner: the set removed it");
}

#[tokio::test]
async fn a_runner_whose_registration_the_set_removed_is_deleted_if_the_set_does_not() {
    let mut t = Harness::new(super::CONTROLLER);
    let (er, mut runners) = scaled_down(&t, 77, std::time::Duration::from_secs(1));
    // The set's deletion comes next: no request, no retry, a look again when it is overdue.
    let waiting = t.api.run(vec![], runners.pass(&er)).await;
    assert!(
        matches!(&waiting, Ok(r) if *r != Requeue::await_change()),
        "{waiting:?}"
    );

    let grace = scaleset_core::ephemeral_runner::SET_DELETION_GRACE;
    let (er, mut runners) = scaled_down(&t, 77, grace);
    let gone = deleting(er.clone());
    let result = t
        .api
        .run(
            // No fresh read and no retry: the exit is the runner's end.
            deleted_in_one_pass(&gone),
            runners.pass(&er),
        )
        .await;
    assert_eq!(result.expect("pass"), Requeue::await_change());
    assert_eq!(t.api.writes(), 2);
    assert!(t.calls().is_empty(), "no RemoveRunner: the set removed it");
}
