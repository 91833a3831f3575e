//! AutoscalingListener reconciler (controllers.md 5): the listener's ServiceAccount, Role,
//! RoleBinding, proxy and config Secrets and its pod; restarts by cause with backoff from
//! `scaleset_core::listener_lifecycle`; deletion of all of them.

pub mod config;
mod pod;
mod resources;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use scaleset_core::listener_lifecycle::{
    ExitClass, LifecyclePolicy, ListenerAction, ListenerHistory, ListenerPod, decide,
};
use scaleset_core::time::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Context;
use crate::crd::{AutoscalingListener, AutoscalingRunnerSet};
use crate::error::Error;
use crate::github::resolve::{proxy_settings, read_ca, read_credentials};
use crate::metrics::ScaleSetLabels;
use crate::names::{
    LISTENER_CONTAINER, annotations, finalizers, labels, listener_config_secret_name,
    listener_proxy_secret_name,
};

pub use pod::merge_template;

/// Controller name (metrics label).
pub const CONTROLLER: &str = "autoscalinglistener";
/// AutoscalingListener annotation holding the listener restart history (JSON).
pub const RESTART_HISTORY_ANNOTATION: &str = "actions.github.com/listener-restart-history";
/// Field manager of server-side applies.
const FIELD_MANAGER: &str = "gha-runner-scale-set-controller";
/// Steady-state re-check: Secrets are not watched, so rotated credentials reach the config
/// Secret (and restart the listener) within this time.
const RECHECK: Duration = Duration::from_secs(120);
/// Requeue while deleting children (ARC: 1 s).
const CLEANUP_WAIT: Duration = Duration::from_secs(1);

/// Runs the AutoscalingListener controller until its watch streams end.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let ns = ctx.options.controller_namespace.clone();
    let listeners: Api<AutoscalingListener> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let roles: Api<Role> = super::watched_api(&ctx);
    let bindings: Api<RoleBinding> = super::watched_api(&ctx);
    let selector = watcher::Config::default().labels(&format!(
        "{},{}",
        labels::LISTENER_NAME,
        labels::LISTENER_NAMESPACE
    ));
    Controller::new(listeners, watcher::Config::default())
        .trigger_backoff(super::watch_backoff())
        .owns(pods, watcher::Config::default())
        .owns(accounts, watcher::Config::default())
        .watches(roles, selector.clone(), |r: Role| by_labels(r.labels()))
        .watches(bindings, selector, |r: RoleBinding| by_labels(r.labels()))
        .graceful_shutdown_on(ctx.options.shutdown.signal())
        .run(reconcile, Context::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "autoscalinglistener controller event");
            }
        })
        .await;
    Ok(())
}

fn by_labels(
    l: &std::collections::BTreeMap<String, String>,
) -> Option<ObjectRef<AutoscalingListener>> {
    let name = l.get(labels::LISTENER_NAME)?;
    let ns = l.get(labels::LISTENER_NAMESPACE)?;
    Some(ObjectRef::new(name).within(ns))
}

/// One reconcile pass.
pub async fn reconcile(al: Arc<AutoscalingListener>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.instrumented(&*al, reconcile_inner(al.clone(), &ctx))
        .await
}

async fn reconcile_inner(al: Arc<AutoscalingListener>, ctx: &Context) -> Result<Action, Error> {
    let api: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &super::namespace_of(al.meta())?);
    let result = finalizer(&api, finalizers::AUTOSCALING_LISTENER, al, |event| async {
        match event {
            Finalizer::Apply(al) => apply(&al, ctx).await,
            Finalizer::Cleanup(al) => cleanup(&al, ctx).await.map(|()| Action::await_change()),
        }
    })
    .await;
    super::finalizer_result(result)
}

fn gauge_labels(al: &AutoscalingListener) -> ScaleSetLabels {
    ScaleSetLabels::new(
        &al.name_any(),
        &al.namespace().unwrap_or_default(),
        al.spec.github_config_url.as_deref().unwrap_or_default(),
    )
}

async fn ssa<K>(ctx: &Context, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    Ok(api
        .patch(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

fn hash_of<K: Resource>(obj: &K) -> String {
    obj.annotations()
        .get(annotations::INTEGRITY_HASH)
        .cloned()
        .unwrap_or_default()
}

async fn apply(al: &AutoscalingListener, ctx: &Context) -> Result<Action, Error> {
    let ars_ns = al
        .spec
        .autoscaling_runner_set_namespace
        .clone()
        .unwrap_or_default();
    let ars_name = al
        .spec
        .autoscaling_runner_set_name
        .clone()
        .unwrap_or_default();
    let al_ns = super::namespace_of(al.meta())?;
    let ars = if ars_ns.is_empty() || ars_name.is_empty() {
        None
    } else {
        Api::<AutoscalingRunnerSet>::namespaced(ctx.client.clone(), &ars_ns)
            .get_opt(&ars_name)
            .await?
    };
    let Some(ars) = ars else {
        tracing::info!(listener = %al.name_any(), "its AutoscalingRunnerSet is gone; deleting the listener");
        Api::<AutoscalingListener>::namespaced(ctx.client.clone(), &al_ns)
            .delete(&al.name_any(), &DeleteParams::default())
            .await?;
        return Ok(Action::await_change());
    };
    let owner = resources::Owner {
        namespace: &ars_ns,
        name: &ars_name,
    };
    let excluded = &ctx.options.exclude_label_propagation_prefixes;

    ssa(ctx, &resources::service_account(al, &owner, excluded)).await?;
    let role = ssa(ctx, &resources::role(al, &owner, excluded)).await?;
    let binding = ssa(ctx, &resources::role_binding(al, &owner, excluded)).await?;
    let mut dependencies = vec![hash_of(&role), hash_of(&binding)];
    if let Some(proxy) = &al.spec.proxy {
        let settings = proxy_settings(&ctx.client, &ars_ns, proxy).await?;
        let secret = ssa(ctx, &resources::proxy_secret(al, &owner, &settings)).await?;
        dependencies.push(hash_of(&secret));
    }
    let credentials = read_credentials(
        &ctx.client,
        &ars_ns,
        ars.spec.github_config_secret.as_deref().unwrap_or_default(),
    )
    .await?;
    let root_ca = match &al.spec.github_server_tls {
        Some(tls) => read_ca(&ctx.client, &ars_ns, tls).await?,
        None => None,
    };
    let json = config::config_json(al, &credentials, root_ca.as_deref(), &ctx.options)?;
    let secret = ssa(ctx, &resources::config_secret(al, json, excluded)).await?;
    dependencies.push(hash_of(&secret));

    let deps: Vec<&str> = dependencies.iter().map(String::as_str).collect();
    let desired = pod::listener_pod(al, &ctx.options, &deps);
    let desired_hash = hash_of(&desired);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &al_ns);
    let live = pods.get_opt(&al.name_any()).await?;
    let observed = live.as_ref().map_or(ListenerPod::Missing, observe_pod);
    let live_hash = live.as_ref().map(hash_of).unwrap_or_default();
    let history: ListenerHistory = al
        .annotations()
        .get(RESTART_HISTORY_ANNOTATION)
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default();
    let policy = LifecyclePolicy::default();
    let now = now();
    let gauge = ctx
        .metrics
        .running_listeners
        .get_or_create(&gauge_labels(al))
        .clone();
    match decide(&observed, &live_hash, &desired_hash, &history, now, &policy) {
        ListenerAction::Create => {
            gauge.set(0);
            match pods.create(&PostParams::default(), &desired).await {
                Ok(_) => tracing::info!(listener = %al.name_any(), "listener pod created"),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            Ok(Action::await_change())
        }
        ListenerAction::Delete { record } => {
            gauge.set(0);
            if let Some(class) = record {
                let ran_for = match observed {
                    ListenerPod::Terminated { ran_for, .. } => ran_for,
                    _ => Duration::ZERO,
                };
                let history = history.record(class, ran_for, &live_hash, now, &policy);
                let value = serde_json::to_string(&history).map_err(|source| Error::Serialize {
                    what: "listener restart history",
                    source,
                })?;
                let patch =
                    json!({"metadata": {"annotations": {RESTART_HISTORY_ANNOTATION: value}}});
                Api::<AutoscalingListener>::namespaced(ctx.client.clone(), &al_ns)
                    .patch(
                        &al.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                tracing::warn!(listener = %al.name_any(), ?class, failures = history.consecutive_failures,
                    "listener exited; its pod is replaced after a backoff by cause");
            }
            match pods.delete(&al.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            Ok(Action::await_change())
        }
        ListenerAction::Wait(Some(d)) => Ok(Action::requeue(d)),
        ListenerAction::Wait(None) => Ok(Action::requeue(RECHECK)),
        ListenerAction::Healthy => {
            gauge.set(1);
            Ok(Action::requeue(RECHECK))
        }
    }
}

fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    Timestamp::from_unix_millis(millis)
}

/// Classifies the live listener pod.
fn observe_pod(pod: &Pod) -> ListenerPod {
    if pod.metadata.deletion_timestamp.is_some() {
        return ListenerPod::Deleting;
    }
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == LISTENER_CONTAINER));
    let state = container.and_then(|c| c.state.as_ref());
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        let ran_for = match (&t.started_at, &t.finished_at) {
            (Some(s), Some(f)) => {
                Duration::from_secs(u64::try_from(f.0.as_second() - s.0.as_second()).unwrap_or(0))
            }
            _ => Duration::ZERO,
        };
        return ListenerPod::Terminated {
            class: ExitClass::from_termination_message(t.message.as_deref().unwrap_or_default()),
            ran_for,
        };
    }
    let reason = status.reason.as_deref().unwrap_or_default();
    if reason == "Evicted"
        || reason.starts_with("OutOf")
        || reason == "NodeLost"
        || reason == "Terminated"
        || (status.phase.as_deref() == Some("Failed") && state.is_none())
    {
        return ListenerPod::ClusterLost;
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        ListenerPod::Running
    } else {
        ListenerPod::Pending
    }
}

/// Deletes the listener's children; `Err(Waiting)` while any still exists.
async fn cleanup(al: &AutoscalingListener, ctx: &Context) -> Result<(), Error> {
    let al_ns = super::namespace_of(al.meta())?;
    let ars_ns = al
        .spec
        .autoscaling_runner_set_namespace
        .clone()
        .unwrap_or_default();
    let name = al.name_any();
    let mut remaining = 0;
    let pod_left = delete_if_present::<Pod>(ctx, &al_ns, &name).await?;
    if !pod_left {
        ctx.metrics
            .running_listeners
            .get_or_create(&gauge_labels(al))
            .set(0);
    }
    remaining += usize::from(pod_left);
    remaining += usize::from(
        delete_if_present::<Secret>(ctx, &al_ns, &listener_config_secret_name(&name)).await?,
    );
    if al.spec.proxy.is_some() {
        remaining += usize::from(
            delete_if_present::<Secret>(ctx, &al_ns, &listener_proxy_secret_name(&name)).await?,
        );
    }
    if !ars_ns.is_empty() {
        remaining += usize::from(delete_if_present::<RoleBinding>(ctx, &ars_ns, &name).await?);
        remaining += usize::from(delete_if_present::<Role>(ctx, &ars_ns, &name).await?);
    }
    remaining += usize::from(delete_if_present::<ServiceAccount>(ctx, &al_ns, &name).await?);
    if remaining > 0 {
        return Err(Error::Waiting {
            what: format!("{remaining} listener resources to be deleted"),
            retry_after: CLEANUP_WAIT,
        });
    }
    Ok(())
}

/// Deletes an object unless it is gone or already being deleted; `true` if it still exists.
async fn delete_if_present<K>(ctx: &Context, ns: &str, name: &str) -> Result<bool, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(false);
    };
    if obj.meta().deletion_timestamp.is_none() {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}
