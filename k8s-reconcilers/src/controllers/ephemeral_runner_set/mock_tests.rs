//! Reconcile-level tests of the EphemeralRunnerSet controller against a mocked API server
//! (`crate::testing_api`): each pins the requests of one path, in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use scaleset_core::time::Timestamp;
use serde_json::json;

use super::runners::RunnerView;
use super::{Settings, State, reconcile};
use crate::crd::{EphemeralRunner, EphemeralRunnerSet};
use crate::error::Error;
use crate::names::{annotations, finalizers};
use crate::testing_api::{
    Exchange, Harness, RUNNER_NS, SET_NAME, assert_waiting, cache, collection, deleting, from_json,
    object, read_credentials, runner, runner_set, status, with_status,
};

/// The controller's state and its runner watch cache.
struct Controller {
    state: Arc<State>,
    runner_watch: Writer<EphemeralRunner>,
}

impl Controller {
    /// The controller with `runners` in its watch cache.
    fn new(harness: &Harness, runners: &[EphemeralRunner]) -> Self {
        let (store, runner_watch) = cache(runners);
        let state = Arc::new(State {
            ctx: harness.ctx.clone(),
            settings: Settings::default(),
            runners: RunnerView::new(store),
            own_writes: crate::controllers::OwnWrites::default(),
            records: Default::default(),
            removed: Default::default(),
        });
        Self {
            state,
            runner_watch,
        }
    }

    /// The runner watch delivers `runner`.
    fn watch_delivers(&mut self, runner: &EphemeralRunner) {
        self.runner_watch
            .apply_watcher_event(&watcher::Event::Apply(runner.clone()));
        self.state.runners.seen(runner);
    }

    /// The runner watch delivers the deletion of `runner`.
    fn watch_deletes(&mut self, runner: &EphemeralRunner) {
        self.runner_watch
            .apply_watcher_event(&watcher::Event::Delete(runner.clone()));
        self.state.runners.seen(runner);
    }

    /// One reconcile of `set`, as the controller runs it once the set watch delivered it.
    fn pass(
        &mut self,
        set: &EphemeralRunnerSet,
    ) -> impl Future<Output = Result<Requeue, Error>> + use<> {
        reconcile(Arc::new(set.clone()), self.state.clone())
    }
}

/// `requeue` asks for a later pass: a status write that waits for
/// `scaleset_core::runner_set::ROUTINE_DELAY` (core's `status_write` computes the wait).
fn assert_status_deferred(requeue: Requeue) {
    assert_ne!(
        requeue,
        Requeue::await_change(),
        "a later pass writes the counters"
    );
}

fn runners_path() -> String {
    collection::<EphemeralRunner>(RUNNER_NS)
}

fn runner_path(name: &str) -> String {
    object::<EphemeralRunner>(RUNNER_NS, name)
}

fn set_status_patch(status_json: serde_json::Value, set: &EphemeralRunnerSet) -> Exchange {
    Exchange::merge_patch(status::<EphemeralRunnerSet>(RUNNER_NS, SET_NAME))
        .body_exact(json!({ "status": status_json }))
        .patched(set)
}

#[tokio::test]
async fn a_set_gets_its_finalizer_then_creates_one_runner_per_missing_replica() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let mut set = runner_set(scale_set, 3, 1);
    set.metadata.finalizers = None;
    let mut sets = Controller::new(&t, &[]);

    // Pass 1: the finalizer helper adds the set finalizer and nothing else.
    let first = t
        .api
        .run(
            vec![
                Exchange::json_patch(object::<EphemeralRunnerSet>(RUNNER_NS, SET_NAME))
                    .body_exact(json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers",
                         "value": [finalizers::EPHEMERAL_RUNNER_SET]},
                    ]))
                    .patched(&set),
            ],
            sets.pass(&set),
        )
        .await;
    assert_eq!(first.expect("pass 1"), Requeue::await_change());
    let set: EphemeralRunnerSet = t.api.answer(0);

    // Pass 2: three runners for `replicas: 3`, each stamped with patchID 1 and carrying both
    // runner finalizers; then the set's first status (a phase: written at once) records
    // patchID 1 as acted on.
    let new_runner = Exchange::create(runners_path()).body(json!({
        "metadata": {
            "generateName": "arc-runner-",
            "annotations": {annotations::PATCH_ID: "1"},
            "finalizers": [finalizers::EPHEMERAL_RUNNER, finalizers::RUNNER_REGISTRATION],
            "ownerReferences": [{"kind": "EphemeralRunnerSet", "name": SET_NAME, "uid": "ers-uid",
                                 "controller": true}],
        },
        "spec": {"runnerScaleSetId": scale_set},
    }));
    let second = t
        .api
        .run(
            vec![
                new_runner.clone(),
                new_runner.clone(),
                new_runner,
                set_status_patch(
                    json!({"currentReplicas": 0, "pendingEphemeralRunners": 0,
                           "runningEphemeralRunners": 0, "failedEphemeralRunners": 0,
                           "phase": "Running", "observedPatchID": 1}),
                    &set,
                ),
            ],
            sets.pass(&set),
        )
        .await;
    assert_eq!(second.expect("pass 2"), Requeue::await_change());
    assert_eq!(
        t.api.writes(),
        4,
        "one create per runner and one status write"
    );
    let created: Vec<EphemeralRunner> = (0..3).map(|i| t.api.answer(i)).collect();
    let set: EphemeralRunnerSet = t.api.answer(3);

    // Pass 3, before the watch delivers the creations: the set counts them all the same, but
    // a change of counters alone waits for the status delay.
    let third = t.api.run(vec![], sets.pass(&set)).await;
    assert_status_deferred(third.expect("pass 3"));

    // Pass 4, on the creations' watch events, once the delay is over: one write carries the
    // counters and the patchID acted on.
    for runner in &created {
        sets.watch_delivers(runner);
    }
    sets.state.records.update(&set, |r| {
        r.status_unwritten_since = Some(Timestamp::from_unix_seconds(0));
    });
    let fourth = t
        .api
        .run(
            vec![set_status_patch(
                json!({"currentReplicas": 3, "pendingEphemeralRunners": 3,
                       "runningEphemeralRunners": 0, "failedEphemeralRunners": 0,
                       "phase": "Running", "observedPatchID": 1}),
                &set,
            )],
            sets.pass(&set),
        )
        .await;
    assert_eq!(fourth.expect("pass 4"), Requeue::await_change());
    let set: EphemeralRunnerSet = t.api.answer(0);

    // Pass 5: nothing changed, nothing is written.
    let fifth = t.api.run(vec![], sets.pass(&set)).await;
    assert_eq!(fifth.expect("pass 5"), Requeue::await_change());
    assert!(t.calls().is_empty(), "scaling up needs no service call");
}

#[tokio::test]
async fn a_pass_before_the_watch_shows_its_deletions_deletes_no_more() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let set = runner_set(scale_set, 1, 0);
    let runners: Vec<EphemeralRunner> = ["arc-runner-a", "arc-runner-b", "arc-runner-c"]
        .into_iter()
        .map(|name| runner(&set, name, 0))
        .collect();
    let mut sets = Controller::new(&t, &runners);
    let counts = json!({"currentReplicas": 3, "pendingEphemeralRunners": 3,
                        "runningEphemeralRunners": 0, "failedEphemeralRunners": 0,
                        "phase": "Running", "observedPatchID": 0});

    // Pass 1: an authoritative scale-down from 3 to 1 deletes two never-registered runners.
    let first = t
        .api
        .run(
            vec![
                Exchange::delete_background(runner_path("arc-runner-a")),
                Exchange::delete_background(runner_path("arc-runner-b")),
                set_status_patch(counts.clone(), &set),
            ],
            sets.pass(&set),
        )
        .await;
    assert_eq!(first.expect("pass 1"), Requeue::await_change());
    let set: EphemeralRunnerSet = t.api.answer(2);

    // Pass 2, before the watch shows the deletions: the two count as deleting, so the third
    // runner stays; only the counters change, and they wait for the interval.
    let second = t.api.run(vec![], sets.pass(&set)).await;
    assert_status_deferred(second.expect("pass 2"));
    assert_eq!(t.api.writes(), 0, "no runner is deleted");
}

#[tokio::test]
async fn an_authoritative_scale_down_removes_idle_runners_and_spares_the_busy_one() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let idle_id = t.register(scale_set, "arc-runner-idle").await;
    let busy_id = t.register(scale_set, "arc-runner-busy").await;
    t.service.with(|s| s.busy_runners.push(busy_id));
    // patchID 0: "force this state", the only case in which live runners are removed.
    let mut set = runner_set(scale_set, 1, 0);
    set.status = Some(from_json(json!({
        "currentReplicas": 3, "pendingEphemeralRunners": 1, "runningEphemeralRunners": 2,
        "failedEphemeralRunners": 0, "phase": "Running", "observedPatchID": 4,
    })));
    let unregistered = runner(&set, "arc-runner-new", 4);
    let idle = with_status(
        runner(&set, "arc-runner-idle", 4),
        json!({"phase": "Running", "runnerId": idle_id}),
    );
    let busy = with_status(
        runner(&set, "arc-runner-busy", 4),
        json!({"phase": "Running", "runnerId": busy_id, "jobId": "job-1"}),
    );
    let result = t
        .api
        .run(
            vec![
                // The removals run side by side: the runner that never registered (first in
                // line) needs no service call, so its deletion goes before the idle one's.
                read_credentials(),
                Exchange::delete_background(runner_path("arc-runner-new")),
                Exchange::delete_background(runner_path("arc-runner-idle")),
            ],
            Controller::new(&t, &[busy, idle, unregistered]).pass(&set),
        )
        .await;
    // Recording patchID 0 as acted on waits for the status delay.
    assert_status_deferred(result.expect("pass"));
    assert_eq!(t.api.writes(), 2);
    assert_eq!(t.calls(), ["remove_runner"]);
    let left: Vec<i64> = t.service.with(|s| s.runners.keys().copied().collect());
    assert_eq!(left, [busy_id], "the runner with a job stays registered");
}

#[tokio::test]
async fn a_deleted_set_removes_idle_runners_waits_for_busy_ones_then_drops_its_finalizer() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let idle_id = t.register(scale_set, "arc-runner-idle").await;
    let busy_id = t.register(scale_set, "arc-runner-busy").await;
    let set = deleting(runner_set(scale_set, 2, 5));
    let idle = with_status(
        runner(&set, "arc-runner-idle", 5),
        json!({"phase": "Running", "runnerId": idle_id}),
    );
    let busy = with_status(
        runner(&set, "arc-runner-busy", 5),
        json!({"phase": "Running", "runnerId": busy_id, "jobId": "job-1"}),
    );
    let going = deleting(runner(&set, "arc-runner-going", 5));
    let listed = [idle, busy, going];
    let mut sets = Controller::new(&t, &listed);

    // Pass 1: the idle runner is removed from the service and deleted; the busy one keeps its
    // job, the one being deleted is left to its finalizers; an Event says what the set waits for.
    let first = t
        .api
        .run(
            vec![
                read_credentials(),
                Exchange::delete_background(runner_path("arc-runner-idle")),
                Exchange::create(collection::<Event>(RUNNER_NS)).body(json!({
                    "reason": "WaitingForJobs",
                    "note": "deletion waits for 1 runner(s) with a running job: arc-runner-busy",
                    "regarding": {"kind": "EphemeralRunnerSet", "name": SET_NAME},
                })),
            ],
            sets.pass(&set),
        )
        .await;
    assert_waiting(first, Duration::from_secs(30));
    assert_eq!(t.calls(), ["remove_runner"]);
    assert_eq!(t.service.with(|s| s.runners.len()), 1);

    // Pass 2: no runner left; the finalizer goes.
    for runner in &listed {
        sets.watch_deletes(runner);
    }
    let second = t
        .api
        .run(
            vec![
                Exchange::json_patch(object::<EphemeralRunnerSet>(RUNNER_NS, SET_NAME))
                    .body_exact(json!([
                        {"op": "test", "path": "/metadata/finalizers/0",
                         "value": finalizers::EPHEMERAL_RUNNER_SET},
                        {"op": "remove", "path": "/metadata/finalizers/0"},
                    ]))
                    .patched(&set),
            ],
            sets.pass(&set),
        )
        .await;
    assert_eq!(second.expect("pass 2"), Requeue::await_change());
    assert_eq!(t.api.writes(), 1);
}
