//! AutoscalingListener reconciler (docs/architecture.md#autoscalinglistener-reconciler): the
//! listener's ServiceAccount, Role, RoleBinding, proxy and config Secrets and its pod; restarts
//! by cause with backoff from `scaleset_core::listener_lifecycle`; deletion of all of them.
//!
//! Each pass observes (the children compared with what it would apply, the listener pod),
//! asks `listener_step`, `classify_pod` and `decide`, and carries out their answer: a pass
//! whose children are as desired writes none of them.

pub mod config;
#[cfg(test)]
mod mock_tests;
mod observe;
mod pod;
pub mod resources;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{NamespaceResourceScope, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use scaleset_core::listener_lifecycle::{
    Child, LifecyclePolicy, ListenerAction, ListenerChild, ListenerHistory, ListenerObservation,
    ListenerPod, ListenerStep, ars_reference, classify_pod, decide, listener_step,
};
use scaleset_core::naming::is_dns1123_subdomain;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ephemeral_runner::observe::now;
use crate::Context;
use crate::crd::{AutoscalingListener, AutoscalingRunnerSet};
use crate::error::Error;
use crate::github::resolve::{proxy_settings, read_ca, read_object_credentials};
use crate::meta::integrity_hash;
use crate::metrics::ScaleSetLabels;
use crate::names::{
    annotations, finalizers, labels, listener_config_secret_name, listener_proxy_secret_name,
};
use observe::Desired;

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
    let pods: Api<PartialObjectMeta<Pod>> = Api::namespaced(ctx.client.clone(), &ns);
    let accounts: Api<PartialObjectMeta<ServiceAccount>> = Api::namespaced(ctx.client.clone(), &ns);
    let roles: Api<Role> = super::watched_api(&ctx);
    let bindings: Api<RoleBinding> = super::watched_api(&ctx);
    let selector = watcher::Config::default().labels(&format!(
        "{},{}",
        labels::LISTENER_NAME,
        labels::LISTENER_NAMESPACE
    ));
    let queue = ctx.queue.clone();
    let (listeners, store) = super::watch_own(listeners, &queue);
    let results = Controller::for_stream(listeners, store)
        .trigger_backoff(super::watch_backoff())
        .owns_stream(super::watch_owned::<AutoscalingListener, _>(pods, &queue))
        .owns_stream(super::watch_owned::<AutoscalingListener, _>(
            accounts, &queue,
        ))
        .watches(
            roles,
            selector.clone(),
            queue.mapped(|r: Role| by_labels(r.labels())),
        )
        .watches(
            bindings,
            selector,
            queue.mapped(|r: RoleBinding| by_labels(r.labels())),
        )
        .graceful_shutdown_on(ctx.options.shutdown.signal())
        .run(reconcile, Context::error_policy, ctx);
    super::drain(queue, results).await;
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
            Finalizer::Cleanup(al) => {
                if let Err(e) = cleanup(&al, ctx).await {
                    // Nothing here waits for a job: a child that does not go (a foreign
                    // finalizer, a lost node, no permission) is reported after the grace period.
                    let left = format!("children of listener {}", al.name_any());
                    super::cleanup_bound::abandon_after_grace(ctx, &*al, e, &left).await?;
                }
                Ok(Action::await_change())
            }
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

async fn ssa<K>(ctx: &Context, obj: &K) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

fn hash_of<K: Resource>(obj: &K) -> String {
    obj.annotations()
        .get(annotations::INTEGRITY_HASH)
        .cloned()
        .unwrap_or_default()
}

/// The children the listener would have now; reads the credentials, CA and proxy settings.
async fn desired(
    al: &AutoscalingListener,
    ars: &AutoscalingRunnerSet,
    owner: &resources::Owner<'_>,
    ctx: &Context,
) -> Result<Desired, Error> {
    let excluded = &ctx.options.exclude_label_propagation_prefixes;
    let proxy_secret = match &al.spec.proxy {
        Some(proxy) => {
            let settings = proxy_settings(&ctx.client, owner.namespace, proxy).await?;
            Some(resources::proxy_secret(al, owner, &settings))
        }
        None => None,
    };
    let credentials = read_object_credentials(
        &ctx.client,
        owner.namespace,
        ars.spec.github_config_secret.as_deref().unwrap_or_default(),
        ars.spec.vault_config.as_ref(),
    )
    .await?;
    let root_ca = match &al.spec.github_server_tls {
        Some(tls) => read_ca(&ctx.client, owner.namespace, tls).await?,
        None => None,
    };
    let config = config::listener_config(al, &credentials, root_ca.as_deref(), &ctx.options)?;
    let json = config::to_json(&config)?;
    Ok(Desired {
        config_for_pod: integrity_hash(&config.without_bounds()),
        service_account: resources::service_account(al, owner, excluded),
        role: resources::role(al, owner, excluded),
        role_binding: resources::role_binding(al, owner, excluded),
        proxy_secret,
        config_secret: resources::config_secret(al, json, excluded),
    })
}

async fn apply(al: &AutoscalingListener, ctx: &Context) -> Result<Action, Error> {
    let (ars_ns, ars_name) = ars_reference(
        al.spec.autoscaling_runner_set_namespace.as_deref(),
        al.spec.autoscaling_runner_set_name.as_deref(),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let al_ns = super::namespace_of(al.meta())?;
    let ars: Option<AutoscalingRunnerSet> = observe::get(ctx, ars_ns, ars_name).await?;
    let owner = resources::Owner {
        namespace: ars_ns,
        name: ars_name,
    };
    let desired = match &ars {
        Some(ars) => Some(desired(al, ars, &owner, ctx).await?),
        None => None,
    };
    let (service_account, role, role_binding, proxy_secret, config_secret) = match &desired {
        Some(d) => observe::children(ctx, d).await?,
        None => (
            Child::Missing,
            Child::Missing,
            Child::Missing,
            None,
            Child::Missing,
        ),
    };
    let observation = ListenerObservation {
        deleting: false,
        ars_exists: ars.is_some(),
        service_account,
        role,
        role_binding,
        proxy_secret,
        config_secret,
        pod: Child::Missing,
    };
    let step = listener_step(&observation);
    let (ListenerStep::Apply(children), Some(desired)) = (&step, &desired) else {
        return match step {
            ListenerStep::DeleteSelf => {
                let note = format!(
                    "spec.autoscalingRunnerSetNamespace {ars_ns:?} and spec.autoscalingRunnerSetName \
                     {ars_name:?} name no AutoscalingRunnerSet: deleting this listener (an \
                     AutoscalingRunnerSet that exists creates its own listener again)"
                );
                tracing::warn!(listener = %al.name_any(), "{note}");
                ctx.publish(
                    &al.object_ref(&()),
                    EventType::Warning,
                    "AutoscalingRunnerSetNotFound",
                    &note,
                )
                .await;
                Api::<AutoscalingListener>::namespaced(ctx.client.clone(), &al_ns)
                    .delete(&al.name_any(), &DeleteParams::default())
                    .await?;
                Ok(Action::await_change())
            }
            ListenerStep::WaitForDeletion(child) => Err(Error::Waiting {
                what: format!("the listener's {child:?} to be deleted"),
                retry_after: CLEANUP_WAIT,
            }),
            other => Err(Error::Waiting {
                what: format!("a cleanup step outside cleanup: {other:?}"),
                retry_after: RECHECK,
            }),
        };
    };
    for child in children {
        match child {
            ListenerChild::ServiceAccount => ssa(ctx, &desired.service_account).await?,
            ListenerChild::Role => ssa(ctx, &desired.role).await?,
            ListenerChild::RoleBinding => ssa(ctx, &desired.role_binding).await?,
            ListenerChild::ProxySecret => {
                if let Some(secret) = &desired.proxy_secret {
                    ssa(ctx, secret).await?;
                }
            }
            ListenerChild::ConfigSecret => ssa(ctx, &desired.config_secret).await?,
        }
    }
    if !children.is_empty() {
        tracing::debug!(listener = %al.name_any(), ?children, "listener children applied");
    }
    handle_pod(al, desired, &al_ns, ctx).await
}

/// Creates, replaces or keeps the listener pod, by `decide`.
async fn handle_pod(
    al: &AutoscalingListener,
    desired: &Desired,
    al_ns: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let mut dependencies = vec![hash_of(&desired.role), hash_of(&desired.role_binding)];
    dependencies.extend(desired.proxy_secret.as_ref().map(hash_of));
    dependencies.push(desired.config_for_pod.clone());
    let deps: Vec<&str> = dependencies.iter().map(String::as_str).collect();
    let desired_pod = pod::listener_pod(al, &ctx.options, &deps);
    let desired_hash = hash_of(&desired_pod);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), al_ns);
    let live = pods.get_opt(&al.name_any()).await?;
    let observed = live
        .as_ref()
        .map_or(ListenerPod::Missing, |p| classify_pod(&observe::pod(p)));
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
            match pods.create(&PostParams::default(), &desired_pod).await {
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
                Api::<AutoscalingListener>::namespaced(ctx.client.clone(), al_ns)
                    .patch(
                        &al.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                tracing::warn!(listener = %al.name_any(), ?class, failures = history.consecutive_failures,
                    "listener exited; its pod is replaced after a backoff by cause");
            }
            super::delete_ignoring_missing(&pods, &al.name_any()).await?;
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

/// Deletes the listener's pod and children; `Err(Waiting)` while any still exists, `Ok` when
/// none is left (the finalizer helper then removes the finalizer).
async fn cleanup(al: &AutoscalingListener, ctx: &Context) -> Result<(), Error> {
    let al_ns = super::namespace_of(al.meta())?;
    // The Role and RoleBinding are in the AutoscalingRunnerSet's namespace; a listener that names
    // no usable one has none.
    let ars_ns = al
        .spec
        .autoscaling_runner_set_namespace
        .as_deref()
        .filter(|ns| is_dns1123_subdomain(ns));
    let name = al.name_any();
    let config_name = listener_config_secret_name(&name);
    let proxy_name = listener_proxy_secret_name(&name);
    ctx.metrics
        .running_listeners
        .get_or_create(&gauge_labels(al))
        .set(0);
    let service_account = observe::existence::<ServiceAccount>(ctx, &al_ns, &name).await?;
    let (role, role_binding) = match ars_ns {
        Some(ns) => (
            observe::existence::<Role>(ctx, ns, &name).await?,
            observe::existence::<RoleBinding>(ctx, ns, &name).await?,
        ),
        None => (Child::Missing, Child::Missing),
    };
    let observation = ListenerObservation {
        deleting: true,
        ars_exists: true,
        service_account,
        role,
        role_binding,
        proxy_secret: match al.spec.proxy {
            Some(_) => Some(observe::existence::<Secret>(ctx, &al_ns, &proxy_name).await?),
            None => None,
        },
        config_secret: observe::existence::<Secret>(ctx, &al_ns, &config_name).await?,
        pod: observe::existence::<Pod>(ctx, &al_ns, &name).await?,
    };
    // Everything still there, terminating or not, for the report if the deletion gives up.
    let left: Vec<String> = [
        ("Pod", Some(observation.pod)),
        ("ServiceAccount", Some(observation.service_account)),
        ("Role", Some(observation.role)),
        ("RoleBinding", Some(observation.role_binding)),
        ("ProxySecret", observation.proxy_secret),
        ("ConfigSecret", Some(observation.config_secret)),
    ]
    .into_iter()
    .filter(|(_, child)| child.is_some_and(|c| c != Child::Missing))
    .map(|(kind, _)| kind.to_owned())
    .collect();
    let (pod, children) = match listener_step(&observation) {
        ListenerStep::RemoveFinalizer => return Ok(()),
        ListenerStep::DeleteChildren { pod, children } => (pod, children),
        other => {
            return Err(Error::Waiting {
                what: format!("an apply step during cleanup: {other:?}"),
                retry_after: CLEANUP_WAIT,
            });
        }
    };
    if pod {
        delete::<Pod>(ctx, &al_ns, &name).await?;
    }
    for child in &children {
        match child {
            ListenerChild::ConfigSecret => delete::<Secret>(ctx, &al_ns, &config_name).await?,
            ListenerChild::ProxySecret => delete::<Secret>(ctx, &al_ns, &proxy_name).await?,
            ListenerChild::RoleBinding => {
                delete::<RoleBinding>(ctx, ars_ns.unwrap_or_default(), &name).await?;
            }
            ListenerChild::Role => delete::<Role>(ctx, ars_ns.unwrap_or_default(), &name).await?,
            ListenerChild::ServiceAccount => {
                delete::<ServiceAccount>(ctx, &al_ns, &name).await?;
            }
        }
    }
    Err(Error::Waiting {
        what: format!("listener resources to be deleted: {}", left.join(", ")),
        retry_after: CLEANUP_WAIT,
    })
}

/// Deletes an object; one already gone is fine.
async fn delete<K>(ctx: &Context, ns: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    super::delete_ignoring_missing(&Api::<K>::namespaced(ctx.client.clone(), ns), name).await
}
