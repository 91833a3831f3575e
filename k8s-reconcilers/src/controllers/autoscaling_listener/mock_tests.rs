//! Reconcile-level tests of the AutoscalingListener controller against a mocked API server
//! (`crate::testing_api`): each pins the requests of one path, in order.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use scaleset_core::listener_lifecycle::{ExitClass, ListenerHistory};
use serde_json::json;

use super::{RECHECK, RESTART_HISTORY_ANNOTATION, reconcile};
use crate::crd::{AutoscalingListener, AutoscalingRunnerSet};
use crate::names::{finalizers, listener_config_secret_name};
use crate::testing_api::{
    CONTROLLER_NS, Exchange, Harness, RUNNER_NS, SET_NAME, assert_waiting, bare, collection,
    deleting, listener, object, pod_with_status, read_credentials, registered_runner_set,
};

const SCALE_SET: i64 = 7;

/// The listener as the AutoscalingRunnerSet controller creates it, with its finalizer.
fn finalized_listener() -> AutoscalingListener {
    let mut al = listener(SCALE_SET);
    al.metadata.finalizers = Some(vec![finalizers::AUTOSCALING_LISTENER.into()]);
    al
}

/// The children of a listener as a start pass applied them, and its pod as it created it.
struct Children {
    service_account: ServiceAccount,
    role: Role,
    role_binding: RoleBinding,
    config: Secret,
    pod: Pod,
}

/// What every pass of a listener whose scale set exists reads first: the AutoscalingRunnerSet,
/// the credentials, and each child (`None`: not found).
fn observe(children: Option<&Children>) -> Vec<Exchange> {
    let name = listener(SCALE_SET).name_any();
    vec![
        Exchange::get(object::<AutoscalingRunnerSet>(RUNNER_NS, SET_NAME))
            .reply(&registered_runner_set(SCALE_SET)),
        read_credentials(),
        Exchange::get(object::<ServiceAccount>(CONTROLLER_NS, &name))
            .found(children.map(|c| &c.service_account)),
        Exchange::get(object::<Role>(RUNNER_NS, &name)).found(children.map(|c| &c.role)),
        Exchange::get(object::<RoleBinding>(RUNNER_NS, &name))
            .found(children.map(|c| &c.role_binding)),
        Exchange::get(object::<Secret>(
            CONTROLLER_NS,
            &listener_config_secret_name(&name),
        ))
        .found(children.map(|c| &c.config)),
    ]
}

/// A pass that finds no child and no pod: it applies the ServiceAccount, Role, RoleBinding and
/// config Secret, then creates the pod (five writes).
fn start(al: &AutoscalingListener) -> Vec<Exchange> {
    let name = al.name_any();
    let owner =
        json!([{"kind": "AutoscalingListener", "name": name, "uid": "al-uid", "controller": true}]);
    let rbac_labels = json!({
        "auto-scaling-listener-name": name, "auto-scaling-listener-namespace": CONTROLLER_NS,
        "actions.github.com/scale-set-name": SET_NAME,
        "actions.github.com/scale-set-namespace": RUNNER_NS,
    });
    let mut exchanges = observe(None);
    exchanges.extend([
        Exchange::apply(object::<ServiceAccount>(CONTROLLER_NS, &name)).body(json!({
            "metadata": {"name": name, "namespace": CONTROLLER_NS, "ownerReferences": owner},
        })),
        Exchange::apply(object::<Role>(RUNNER_NS, &name)).body(json!({
            "metadata": {"name": name, "namespace": RUNNER_NS, "labels": rbac_labels},
            "rules": [
                {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunnersets"],
                 "resourceNames": [SET_NAME], "verbs": ["patch"]},
                {"apiGroups": ["actions.github.com"],
                 "resources": ["ephemeralrunners", "ephemeralrunners/status"], "verbs": ["patch"]},
                {"apiGroups": ["actions.github.com"], "resources": ["autoscalingrunnersets"],
                 "resourceNames": [SET_NAME], "verbs": ["get", "list", "watch"]},
            ],
        })),
        Exchange::apply(object::<RoleBinding>(RUNNER_NS, &name)).body(json!({
            "metadata": {"name": name, "namespace": RUNNER_NS, "labels": rbac_labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": CONTROLLER_NS}],
        })),
        Exchange::apply(object::<Secret>(
            CONTROLLER_NS,
            &listener_config_secret_name(&name),
        ))
        .body(json!({"metadata": {"ownerReferences": owner}})),
        Exchange::get(object::<Pod>(CONTROLLER_NS, &name)).not_found(),
        create_pod(al),
    ]);
    exchanges
}

/// The creation of the listener pod.
fn create_pod(al: &AutoscalingListener) -> Exchange {
    let name = al.name_any();
    Exchange::create(collection::<Pod>(CONTROLLER_NS)).body(json!({
        "metadata": {"name": name, "namespace": CONTROLLER_NS},
        "spec": {
            "serviceAccountName": name,
            "restartPolicy": "Never",
            "volumes": [{"name": "listener-config",
                         "secret": {"secretName": listener_config_secret_name(&name)}}],
            "containers": [{"name": "listener", "image": "ghcr.io/arc-rs/controller:test",
                            "command": ["/ghalistener"]}],
        },
    }))
}

/// Runs the start pass of `al` and returns what it applied and created.
async fn started(t: &mut Harness, al: &AutoscalingListener) -> Children {
    let result = t
        .api
        .run(start(al), reconcile(Arc::new(al.clone()), t.ctx.clone()))
        .await;
    assert_eq!(result.expect("start"), Action::await_change());
    Children {
        service_account: t.api.answer(6),
        role: t.api.answer(7),
        role_binding: t.api.answer(8),
        config: t.api.answer(9),
        pod: t.api.answer(11),
    }
}

/// The listener pod after its listener container exited with `message`.
fn exited(pod: &Pod, message: &str) -> Pod {
    pod_with_status(
        pod.clone(),
        json!({
            "phase": "Failed",
            "containerStatuses": [{
                "name": "listener", "image": "listener", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": message,
                                         "startedAt": "2026-01-01T00:00:00Z",
                                         "finishedAt": "2026-01-01T00:00:30Z"}},
            }],
        }),
    )
}

/// A pass that finds the children current and the listener exited with `message`: the exit
/// is recorded in the listener's restart history, then the pod deleted (two writes). Returns
/// the listener with that history.
async fn failed_pass(
    t: &mut Harness,
    al: &AutoscalingListener,
    children: &Children,
    message: &str,
) -> AutoscalingListener {
    let name = al.name_any();
    let mut exchanges = observe(Some(children));
    exchanges.extend([
        Exchange::get(object::<Pod>(CONTROLLER_NS, &name)).reply(&exited(&children.pod, message)),
        Exchange::merge_patch(object::<AutoscalingListener>(CONTROLLER_NS, &name))
            .body(json!({"metadata": {"annotations": {}}}))
            .patched(al),
        Exchange::delete_background(object::<Pod>(CONTROLLER_NS, &name)),
    ]);
    let result = t
        .api
        .run(exchanges, reconcile(Arc::new(al.clone()), t.ctx.clone()))
        .await;
    assert_eq!(result.expect("failed pod"), Action::await_change());
    assert_eq!(t.api.writes(), 2);
    t.api.answer(7)
}

fn history(al: &AutoscalingListener) -> ListenerHistory {
    let text = al
        .annotations()
        .get(RESTART_HISTORY_ANNOTATION)
        .expect("restart history");
    serde_json::from_str(text).expect("history JSON")
}

#[tokio::test]
async fn a_listener_gets_its_finalizer_then_its_account_rbac_config_and_pod() {
    let mut t = Harness::new(super::CONTROLLER);
    let al = listener(SCALE_SET);
    let result = t
        .api
        .run(
            vec![
                Exchange::json_patch(object::<AutoscalingListener>(CONTROLLER_NS, &al.name_any()))
                    .body_exact(json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers",
                         "value": [finalizers::AUTOSCALING_LISTENER]},
                    ]))
                    .patched(&al),
            ],
            reconcile(Arc::new(al.clone()), t.ctx.clone()),
        )
        .await;
    assert_eq!(result.expect("pass 1"), Action::await_change());
    let al: AutoscalingListener = t.api.answer(0);

    let children = started(&mut t, &al).await;
    assert_eq!(t.api.writes(), 5);

    // With everything as desired and the pod running, a pass only reads.
    let running = pod_with_status(
        children.pod.clone(),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "listener", "image": "listener", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"running": {}},
        }]}),
    );
    let mut exchanges = observe(Some(&children));
    exchanges.push(Exchange::get(object::<Pod>(CONTROLLER_NS, &al.name_any())).reply(&running));
    let result = t
        .api
        .run(exchanges, reconcile(Arc::new(al), t.ctx.clone()))
        .await;
    assert_eq!(result.expect("steady"), Action::requeue(RECHECK));
    assert!(
        t.calls().is_empty(),
        "the listener controller never calls the service"
    );
}

#[tokio::test]
async fn a_listener_that_exited_transiently_is_recreated_at_once() {
    let mut t = Harness::new(super::CONTROLLER);
    let al = finalized_listener();
    let children = started(&mut t, &al).await;
    let al = failed_pass(
        &mut t,
        &al,
        &children,
        "arc-listener-exit=transient: connection reset",
    )
    .await;
    let recorded = history(&al);
    assert_eq!(
        (recorded.consecutive_failures, recorded.last_class),
        (1, Some(ExitClass::Transient))
    );

    // The first transient exit restarts without delay.
    let mut exchanges = observe(Some(&children));
    exchanges.extend([
        Exchange::get(object::<Pod>(CONTROLLER_NS, &al.name_any())).not_found(),
        create_pod(&al),
    ]);
    let result = t
        .api
        .run(exchanges, reconcile(Arc::new(al), t.ctx.clone()))
        .await;
    assert_eq!(result.expect("recreate"), Action::await_change());
    assert_eq!(t.api.writes(), 1);
}

#[tokio::test]
async fn a_listener_refused_by_the_service_waits_a_minute_before_its_pod_is_recreated() {
    let mut t = Harness::new(super::CONTROLLER);
    let al = finalized_listener();
    let children = started(&mut t, &al).await;
    let al = failed_pass(
        &mut t,
        &al,
        &children,
        "arc-listener-exit=auth: 401 Bad credentials",
    )
    .await;
    assert_eq!(history(&al).last_class, Some(ExitClass::Auth));

    // A deterministic exit waits 60 s from the exit: the pass reads and creates nothing.
    let mut exchanges = observe(Some(&children));
    exchanges.push(Exchange::get(object::<Pod>(CONTROLLER_NS, &al.name_any())).not_found());
    let result = t
        .api
        .run(exchanges, reconcile(Arc::new(al), t.ctx.clone()))
        .await
        .expect("wait");
    assert!(
        (0..1000).any(|ms| result == Action::requeue(Duration::from_millis(60_000 - ms))),
        "the pass must requeue about 60 s after the exit, not {result:?}"
    );
}

#[tokio::test]
async fn a_deleted_listener_deletes_its_pod_and_children_then_drops_its_finalizer() {
    let mut t = Harness::new(super::CONTROLLER);
    let al = deleting(finalized_listener());
    let name = al.name_any();
    let config = listener_config_secret_name(&name);

    // Pass 1: the pod first, then the children in reverse order of creation; wait for them.
    let mut exchanges = vec![
        Exchange::get(object::<ServiceAccount>(CONTROLLER_NS, &name))
            .reply(&bare::<ServiceAccount>(CONTROLLER_NS, &name)),
        Exchange::get(object::<Role>(RUNNER_NS, &name)).reply(&bare::<Role>(RUNNER_NS, &name)),
        Exchange::get(object::<RoleBinding>(RUNNER_NS, &name))
            .reply(&bare::<RoleBinding>(RUNNER_NS, &name)),
        Exchange::get(object::<Secret>(CONTROLLER_NS, &config))
            .reply(&bare::<Secret>(CONTROLLER_NS, &config)),
        Exchange::get(object::<Pod>(CONTROLLER_NS, &name))
            .reply(&bare::<Pod>(CONTROLLER_NS, &name)),
    ];
    exchanges.extend([
        Exchange::delete_background(object::<Pod>(CONTROLLER_NS, &name)),
        Exchange::delete_background(object::<Secret>(CONTROLLER_NS, &config)),
        Exchange::delete_background(object::<RoleBinding>(RUNNER_NS, &name)),
        Exchange::delete_background(object::<Role>(RUNNER_NS, &name)),
        Exchange::delete_background(object::<ServiceAccount>(CONTROLLER_NS, &name)),
    ]);
    let result = t
        .api
        .run(exchanges, reconcile(Arc::new(al.clone()), t.ctx.clone()))
        .await;
    assert_waiting(result, Duration::from_secs(1));
    assert_eq!(t.api.writes(), 5);

    // Pass 2: all gone; the finalizer goes.
    let exchanges = vec![
        Exchange::get(object::<ServiceAccount>(CONTROLLER_NS, &name)).not_found(),
        Exchange::get(object::<Role>(RUNNER_NS, &name)).not_found(),
        Exchange::get(object::<RoleBinding>(RUNNER_NS, &name)).not_found(),
        Exchange::get(object::<Secret>(CONTROLLER_NS, &config)).not_found(),
        Exchange::get(object::<Pod>(CONTROLLER_NS, &name)).not_found(),
        Exchange::json_patch(object::<AutoscalingListener>(CONTROLLER_NS, &name))
            .body_exact(json!([
                {"op": "test", "path": "/metadata/finalizers/0",
                 "value": finalizers::AUTOSCALING_LISTENER},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ]))
            .patched(&al),
    ];
    let result = t
        .api
        .run(exchanges, reconcile(Arc::new(al), t.ctx.clone()))
        .await;
    assert_eq!(result.expect("pass 2"), Action::await_change());
    assert_eq!(t.api.writes(), 1);
}
