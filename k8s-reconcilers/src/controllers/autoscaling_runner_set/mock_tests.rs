//! Reconcile-level tests of the AutoscalingRunnerSet controller against a mocked API server
//! (`crate::testing_api`): each pins the requests of one path, in order.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::json;

use super::{RECHECK, State, desired, reconcile};
use crate::crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunnerSet};
use crate::names::{annotations, finalizers, listener_name};
use crate::testing_api::{
    CONFIG_URL, CONTROLLER_NS, Exchange, Harness, RUNNER_NS, SET_NAME, assert_waiting,
    autoscaling_runner_set, collection, deleting, listener, object, read_credentials,
    registered_runner_set, runner_set, status,
};

fn listener_of_set() -> String {
    listener_name(SET_NAME, RUNNER_NS, "", CONFIG_URL)
}

fn ars_path() -> String {
    object::<AutoscalingRunnerSet>(RUNNER_NS, SET_NAME)
}

fn runner_set_path() -> String {
    object::<EphemeralRunnerSet>(RUNNER_NS, SET_NAME)
}

/// The listeners of the set, found by its scale-set labels in the controller namespace.
fn list_listeners(items: &[AutoscalingListener]) -> Exchange {
    Exchange::list(collection::<AutoscalingListener>(CONTROLLER_NS))
        .query(
            "labelSelector",
            "actions.github.com/scale-set-name=arc,actions.github.com/scale-set-namespace=runners",
        )
        .items(items)
}

/// The GET of the runner set, answering `found` or 404.
fn get_runner_set(found: Option<&EphemeralRunnerSet>) -> Exchange {
    Exchange::get(runner_set_path()).found(found)
}

/// What every pass reads first: the runner set, the listeners by label, and the listener by
/// name when the labels found none.
fn observe(
    runner_set: Option<&EphemeralRunnerSet>,
    listeners: &[AutoscalingListener],
) -> Vec<Exchange> {
    let mut reads = vec![get_runner_set(runner_set), list_listeners(listeners)];
    if listeners.is_empty() {
        reads.push(
            Exchange::get(object::<AutoscalingListener>(
                CONTROLLER_NS,
                &listener_of_set(),
            ))
            .not_found(),
        );
    }
    reads
}

/// What each deletion step reads: the listeners, then the runner set.
fn deletion_look(
    listeners: &[AutoscalingListener],
    runner_set: Option<&EphemeralRunnerSet>,
) -> Vec<Exchange> {
    vec![list_listeners(listeners), get_runner_set(runner_set)]
}

/// A pass that stores the spec hash of `ars` and sets the phase Pending (two writes).
fn mark_pending(ars: &AutoscalingRunnerSet) -> [Exchange; 2] {
    let hash = desired::ars_hash(ars);
    let mut hashed = ars.clone();
    hashed
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(annotations::INTEGRITY_HASH.into(), hash.clone());
    [
        Exchange::merge_patch(ars_path())
            .body_exact(json!({"metadata": {"annotations": {annotations::INTEGRITY_HASH: hash}}}))
            .patched(ars),
        Exchange::merge_patch(status::<AutoscalingRunnerSet>(RUNNER_NS, SET_NAME))
            .body_exact(json!({"status": {"phase": "Pending"}}))
            .patched(&hashed),
    ]
}

#[tokio::test]
async fn a_new_scale_set_gets_its_finalizer_first() {
    let mut t = Harness::new(super::CONTROLLER);
    let ars = autoscaling_runner_set();
    let mut exchanges = observe(None, &[]);
    exchanges.push(
        Exchange::json_patch(ars_path())
            .body_exact(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers",
                 "value": [finalizers::AUTOSCALING_RUNNER_SET]},
            ]))
            .patched(&ars),
    );
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars), State::uncached(t.ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("pass"), Action::await_change());
    assert_eq!(t.api.writes(), 1);
    assert!(t.calls().is_empty(), "no service call before the finalizer");
}

#[tokio::test]
async fn a_scale_set_is_registered_then_gets_its_runner_set_and_listener() {
    let mut t = Harness::new(super::CONTROLLER);
    let mut ars = autoscaling_runner_set();
    ars.metadata.finalizers = Some(vec![finalizers::AUTOSCALING_RUNNER_SET.into()]);
    let ctx = t.ctx.clone();

    // Pass 1: the spec hash is stored and the phase set to Pending.
    let mut exchanges = observe(None, &[]);
    exchanges.extend(mark_pending(&ars));
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars), State::uncached(ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("pass 1"), Action::await_change());
    let ars: AutoscalingRunnerSet = t.api.answer(4);

    // Pass 2: the credentials are read, the scale set is looked up and created on the service
    // (default runner group), and its id, names and URL are recorded in one patch.
    let mut exchanges = observe(None, &[]);
    exchanges.extend([
        read_credentials(),
        Exchange::merge_patch(ars_path())
            .body_exact(json!({
                "metadata": {
                    "annotations": {
                        annotations::RUNNER_SCALE_SET_ID: "101",
                        annotations::RUNNER_SCALE_SET_NAME: SET_NAME,
                        annotations::RUNNER_GROUP_NAME: "Default",
                        annotations::GITHUB_CONFIG_URL: CONFIG_URL,
                    },
                    "labels": {"actions.github.com/organization": "org"},
                },
                "spec": {"runnerScaleSetName": SET_NAME},
            }))
            .patched(&ars),
    ]);
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars), State::uncached(ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("pass 2"), Action::await_change());
    assert_eq!(
        t.calls(),
        ["get_runner_scale_set", "create_runner_scale_set"]
    );
    let scale_set = t.service.with(|s| s.scale_sets.get(&101).cloned());
    assert_eq!(
        scale_set.map(|s| (s.name, s.runner_group_id, s.labels)),
        Some((SET_NAME.to_owned(), 1, vec![SET_NAME.to_owned()]))
    );
    let ars: AutoscalingRunnerSet = t.api.answer(4);

    // Pass 3: recording the scale set added a label and `runnerScaleSetName`, which the spec
    // hash covers: Pending again, with the new hash.
    let mut exchanges = observe(None, &[]);
    exchanges.extend(mark_pending(&ars));
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars), State::uncached(ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("pass 3"), Action::await_change());
    let ars: AutoscalingRunnerSet = t.api.answer(4);

    // Pass 4: the scale set is read back by id (the credentials are still resolved) and the
    // runner set created, owned by the ARS, for scale set 101.
    let mut exchanges = observe(None, &[]);
    exchanges.push(Exchange::create(collection::<EphemeralRunnerSet>(RUNNER_NS)).body(json!({
        "metadata": {
            "name": SET_NAME,
            "ownerReferences": [{"kind": "AutoscalingRunnerSet", "name": SET_NAME, "uid": "ars-uid",
                                 "controller": true}],
        },
        "spec": {"ephemeralRunnerSpec": {"runnerScaleSetId": 101, "githubConfigUrl": CONFIG_URL}},
    })));
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars.clone()), State::uncached(ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("pass 4"), Action::await_change());
    let created_set: EphemeralRunnerSet = t.api.answer(3);
    assert_eq!(
        t.calls()[2..],
        ["get_runner_scale_set_by_id"],
        "one read of the recorded scale set"
    );

    // Pass 5, on the runner set's watch event: the listener, in the controller namespace.
    let mut exchanges = observe(Some(&created_set), &[]);
    exchanges.push(
        Exchange::create(collection::<AutoscalingListener>(CONTROLLER_NS)).body(json!({
            "metadata": {"name": listener_of_set(), "namespace": CONTROLLER_NS},
            "spec": {
                "autoscalingRunnerSetName": SET_NAME, "autoscalingRunnerSetNamespace": RUNNER_NS,
                "ephemeralRunnerSetName": SET_NAME, "runnerScaleSetId": 101,
                "githubConfigUrl": CONFIG_URL, "maxRunners": 5, "minRunners": 0,
            },
        })),
    );
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars.clone()), State::uncached(ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("pass 5"), Action::await_change());
    let created_listener: AutoscalingListener = t.api.answer(3);

    // Pass 6, on the listener's watch event: the status says Running.
    let mut exchanges = observe(Some(&created_set), std::slice::from_ref(&created_listener));
    exchanges.push(
        Exchange::merge_patch(status::<AutoscalingRunnerSet>(RUNNER_NS, SET_NAME))
            .body_exact(json!({"status": {
                "currentRunners": 0, "phase": "Running", "pendingEphemeralRunners": 0,
                "runningEphemeralRunners": 0, "failedEphemeralRunners": 0,
            }}))
            .patched(&ars),
    );
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars), State::uncached(ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("pass 6"), Action::requeue(RECHECK));
    let ars: AutoscalingRunnerSet = t.api.answer(2);

    // Pass 7: converged; two reads, no write, no service call (the scale set was read once).
    let result = t
        .api
        .run(
            observe(Some(&created_set), std::slice::from_ref(&created_listener)),
            reconcile(Arc::new(ars), State::uncached(ctx)),
        )
        .await;
    assert_eq!(result.expect("pass 7"), Action::requeue(RECHECK));
    assert_eq!(t.calls().len(), 3, "{:?}", t.calls());
}

#[tokio::test]
async fn a_deleted_scale_set_goes_in_order_listener_runners_service_then_finalizer() {
    let mut t = Harness::new(super::CONTROLLER);
    let scale_set = t.scale_set().await;
    let ars = deleting(registered_runner_set(scale_set));
    let runners = runner_set(scale_set, 2, 7);
    let al = listener(scale_set);
    let ctx = t.ctx.clone();

    // Pass 1: the listener is deleted first; the pass waits for it to go.
    let mut exchanges = observe(Some(&runners), std::slice::from_ref(&al));
    exchanges.extend(deletion_look(std::slice::from_ref(&al), Some(&runners)));
    exchanges.push(Exchange::delete(object::<AutoscalingListener>(
        CONTROLLER_NS,
        &listener_of_set(),
    )));
    exchanges.extend(deletion_look(&[deleting(al)], Some(&runners)));
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars.clone()), State::uncached(ctx.clone())),
        )
        .await;
    assert_waiting(result, Duration::from_secs(5));
    assert_eq!(t.api.writes(), 1);

    // Pass 2: the runner set is scaled to zero (so no runner is created), then deleted.
    let mut at_zero = runners.clone();
    at_zero.spec.replicas = 0;
    at_zero.spec.patch_id = 0;
    let mut exchanges = observe(Some(&runners), &[]);
    exchanges.extend(deletion_look(&[], Some(&runners)));
    exchanges.push(
        Exchange::merge_patch(runner_set_path())
            .body_exact(json!({"spec": {"replicas": null, "patchID": 0}}))
            .patched(&runners),
    );
    exchanges.extend(deletion_look(&[], Some(&at_zero)));
    exchanges.push(Exchange::delete(runner_set_path()));
    exchanges.extend(deletion_look(&[], Some(&deleting(at_zero))));
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars.clone()), State::uncached(ctx.clone())),
        )
        .await;
    assert_waiting(result, Duration::from_secs(5));
    assert_eq!(t.api.writes(), 2);
    assert!(
        t.calls().is_empty(),
        "the scale set stays while runners may run"
    );

    // Pass 3: the scale set is deleted on the service and its id dropped, then the finalizer.
    let mut forgotten = ars.clone();
    forgotten
        .metadata
        .annotations
        .get_or_insert_default()
        .remove(annotations::RUNNER_SCALE_SET_ID);
    let mut exchanges = observe(None, &[]);
    exchanges.extend(deletion_look(&[], None));
    exchanges.extend([
        read_credentials(),
        Exchange::merge_patch(ars_path())
            .body_exact(
                json!({"metadata": {"annotations": {annotations::RUNNER_SCALE_SET_ID: null}}}),
            )
            .patched(&ars),
    ]);
    exchanges.extend(deletion_look(&[], None));
    exchanges.push(
        Exchange::json_patch(ars_path())
            .body_exact(json!([
                {"op": "test", "path": "/metadata/finalizers/0",
                 "value": finalizers::AUTOSCALING_RUNNER_SET},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ]))
            .patched(&forgotten),
    );
    let result = t
        .api
        .run(exchanges, reconcile(Arc::new(ars), State::uncached(ctx)))
        .await;
    assert_eq!(result.expect("pass 3"), Action::await_change());
    assert_eq!(t.api.writes(), 2);
    assert_eq!(t.calls(), ["delete_runner_scale_set"]);
    assert!(t.service.with(|s| s.scale_sets.is_empty()));
}

/// An ARS named beyond the label-value limit, stored before the CRD refused such names (#20):
/// a pass reports it (condition, no service call, no label selector built from the name), and
/// its deletion removes the finalizer without one either.
#[tokio::test]
async fn a_name_beyond_the_label_limit_is_reported_and_deleted_without_a_selector() {
    let mut t = Harness::new(super::CONTROLLER);
    let name = format!("n{}", "a".repeat(69));
    let mut ars = autoscaling_runner_set();
    ars.metadata.name = Some(name.clone());
    ars.metadata.finalizers = Some(vec![finalizers::AUTOSCALING_RUNNER_SET.into()]);
    let ars_path = object::<AutoscalingRunnerSet>(RUNNER_NS, &name);
    let observe = || {
        vec![
            Exchange::get(object::<EphemeralRunnerSet>(RUNNER_NS, &name)).not_found(),
            Exchange::get(object::<AutoscalingListener>(
                CONTROLLER_NS,
                &listener_name(&name, RUNNER_NS, "", CONFIG_URL),
            ))
            .not_found(),
        ]
    };

    let mut exchanges = observe();
    exchanges.push(
        Exchange::merge_patch(status::<AutoscalingRunnerSet>(RUNNER_NS, &name)).patched(&ars),
    );
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(ars.clone()), State::uncached(t.ctx.clone())),
        )
        .await;
    match result {
        Err(crate::Error::Config(message)) => assert!(
            message.contains("metadata.name") && message.contains("choose a shorter name"),
            "{message}"
        ),
        other => panic!("expected the name to be refused: {other:?}"),
    }
    assert_eq!(t.api.writes(), 1, "the condition only");

    let mut exchanges = observe();
    exchanges.push(Exchange::get(object::<EphemeralRunnerSet>(RUNNER_NS, &name)).not_found());
    exchanges.push(
        Exchange::json_patch(ars_path)
            .body_exact(json!([
                {"op": "test", "path": "/metadata/finalizers/0",
                 "value": finalizers::AUTOSCALING_RUNNER_SET},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ]))
            .patched(&ars),
    );
    let result = t
        .api
        .run(
            exchanges,
            reconcile(Arc::new(deleting(ars)), State::uncached(t.ctx.clone())),
        )
        .await;
    assert_eq!(result.expect("deletion"), Action::await_change());
    assert!(t.calls().is_empty(), "nothing reached the service");
}
