//! What the AutoscalingListener reconciler observes: its children compared with what it would
//! apply, and the listener pod, as inputs of `scaleset_core::listener_lifecycle`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;
use kube::api::Api;
use kube::core::NamespaceResourceScope;
use scaleset_core::listener_lifecycle::{Child, ListenerPodObservation};
use scaleset_core::pod::PodPhase;
use serde::de::DeserializeOwned;

use super::super::ephemeral_runner::observe::container_state;
use crate::Context;
use crate::error::Error;
use crate::meta::Map;
use crate::names::LISTENER_CONTAINER;

/// The children the reconciler would apply now.
pub struct Desired {
    /// The ServiceAccount.
    pub service_account: ServiceAccount,
    /// The Role.
    pub role: Role,
    /// The RoleBinding.
    pub role_binding: RoleBinding,
    /// The proxy Secret, with a proxy.
    pub proxy_secret: Option<Secret>,
    /// The config Secret.
    pub config_secret: Secret,
    /// Integrity hash of its config without the runner bounds, which the listener follows
    /// without a restart: the pod depends on this, not on the whole Secret.
    pub config_for_pod: String,
}

/// Reads an object; `None` when it does not exist.
pub async fn get<K>(ctx: &Context, ns: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?)
}

/// Whether an object exists and is being deleted, for cleanup (content does not matter).
pub async fn existence<K>(ctx: &Context, ns: &str, name: &str) -> Result<Child, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let live: Option<K> = get(ctx, ns, name).await?;
    Ok(match live {
        None => Child::Missing,
        Some(k) if k.meta().deletion_timestamp.is_some() => Child::Deleting,
        Some(_) => Child::Current,
    })
}

/// Compares the live object with the desired one: the labels, annotations (the integrity hash
/// among them) and owner references it sets must be on the live object, and its content
/// (`same_content`) must be equal. Labels or annotations dropped from the desired object are
/// removed at the next apply another difference causes.
async fn child<K>(
    ctx: &Context,
    desired: &K,
    same_content: impl Fn(&K, &K) -> bool,
) -> Result<Child, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let meta = desired.meta();
    let (ns, name) = (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    let Some(live) = get::<K>(ctx, ns, name).await? else {
        return Ok(Child::Missing);
    };
    let have = live.meta();
    if have.deletion_timestamp.is_some() {
        return Ok(Child::Deleting);
    }
    let contains = |have: &Option<Map>, want: &Option<Map>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let owners = meta.owner_references.iter().flatten().all(|o| {
        have.owner_references
            .as_ref()
            .is_some_and(|refs| refs.contains(o))
    });
    let current = contains(&have.labels, &meta.labels)
        && contains(&have.annotations, &meta.annotations)
        && owners
        && same_content(&live, desired);
    Ok(if current {
        Child::Current
    } else {
        Child::Stale
    })
}

/// The state of each desired child: ServiceAccount, Role, RoleBinding, proxy Secret (with a
/// proxy), config Secret.
pub async fn children(
    ctx: &Context,
    desired: &Desired,
) -> Result<(Child, Child, Child, Option<Child>, Child), Error> {
    let same_data = |a: &Secret, b: &Secret| a.data == b.data;
    let proxy = match &desired.proxy_secret {
        Some(secret) => Some(child(ctx, secret, same_data).await?),
        None => None,
    };
    Ok((
        child(ctx, &desired.service_account, |_, _| true).await?,
        child(ctx, &desired.role, |a, b| a.rules == b.rules).await?,
        child(ctx, &desired.role_binding, |a, b| {
            a.role_ref == b.role_ref && a.subjects == b.subjects
        })
        .await?,
        proxy,
        child(ctx, &desired.config_secret, same_data).await?,
    ))
}

/// What the controller sees of the listener pod.
pub fn pod(pod: &Pod) -> ListenerPodObservation {
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == LISTENER_CONTAINER);
    let terminated = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let ran_for = terminated
        .and_then(|t| Some((t.started_at.as_ref()?, t.finished_at.as_ref()?)))
        .map(|(s, f)| {
            Duration::from_secs(u64::try_from(f.0.as_second() - s.0.as_second()).unwrap_or(0))
        })
        .unwrap_or_default();
    ListenerPodObservation {
        deleting: pod.metadata.deletion_timestamp.is_some(),
        phase: PodPhase::parse(status.phase.as_deref().unwrap_or_default()),
        reason: status.reason.clone().unwrap_or_default(),
        listener: container.map(container_state).unwrap_or_default(),
        termination_message: terminated
            .and_then(|t| t.message.clone())
            .unwrap_or_default(),
        ran_for,
    }
}
