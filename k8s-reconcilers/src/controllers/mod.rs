//! One reconciler per kind.
//!
//! Every controller module exposes the same entry point, which [`crate::run`] calls with a
//! [`Context`](crate::Context) built for that controller:
//!
//! ```ignore
//! pub async fn run(ctx: std::sync::Arc<crate::Context>) -> anyhow::Result<()>
//! ```
//!
//! It builds a `kube::runtime::Controller` (watching `ctx.options.watch_namespace` or all
//! namespaces), runs it with `Context::error_policy`, and returns when the stream ends.
//! Shared plumbing for all of them: [`crate::crd`], [`crate::names`], [`crate::meta`]
//! (merging, integrity hash), [`crate::github`] (`ctx.github.for_object(..)`), [`crate::metrics`].

pub mod autoscaling_listener;
pub mod autoscaling_runner_set;
pub mod cleanup_bound;
pub mod conditions;
pub mod ephemeral_runner;
pub mod ephemeral_runner_set;
pub mod orphaned_registrations;
mod own_writes;
pub(crate) mod recent;
pub mod runner_watch;

pub(crate) use own_writes::OwnWrites;

use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::{finalizer, watcher};

use crate::Context;

/// `Api` for a namespaced kind in the watched namespace (all namespaces when none is set).
pub fn watched_api<K>(ctx: &Context) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &ctx.options.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// How a controller's watches back off after a watch error: from 100 ms, doubling to 1 s, plus
/// up to as much again of jitter, and back to the start after 30 s without an error.
///
/// kube applies this backoff to the merged stream of all of a controller's watches, so an error
/// on any one of them pauses every one. With kube's default (client-go's 0.8 s to 30 s, reset
/// after 2 min) an API-server restart, after which each watch reports its expired resource
/// version in turn, left the controllers still for over a minute while runners finished their
/// jobs. A watch that keeps failing (RBAC removed, say) retries about once a second.
pub(crate) fn watch_backoff() -> ResetTimerBackoff<watcher::ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(30))
}

/// Runs a controller's result stream to its end. Its errors are the dispatch's (an object gone
/// from the cache, a watch error), not the reconciles', which the error policy handles; an
/// object gone from the cache leaves `queue` without a reconcile.
pub(crate) async fn drain<T, E1: 'static, E2: 'static>(
    queue: std::sync::Arc<crate::workqueue::WorkQueue>,
    results: impl futures::Stream<Item = Result<T, kube::runtime::controller::Error<E1, E2>>>,
) where
    kube::runtime::controller::Error<E1, E2>: std::fmt::Display,
{
    let controller = queue.name();
    results
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::ObjectNotFound(gone)) = &result {
                queue.dropped(&crate::workqueue::object_key(gone));
            }
            async move {
                if let Err(e) = result {
                    tracing::debug!(controller, error = %e, "reconcile dispatch");
                }
            }
        })
        .await;
}

/// What a watch can keep in a reflector cache.
pub(crate) trait Cacheable:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Cacheable for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The watch of a controller's own kind in `api`, with its cache, recorded in `queue` as
/// triggers; the same stream `Controller::new` builds.
pub(crate) fn watch_own<K>(
    api: Api<K>,
    queue: &std::sync::Arc<crate::workqueue::WorkQueue>,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    kube::runtime::reflector::Store<K>,
)
where
    K: Cacheable,
{
    use kube::runtime::WatchStreamExt;
    let (store, writer) = kube::runtime::reflector::store();
    let events = kube::runtime::reflector(writer, watcher(api, watcher::Config::default()))
        .applied_objects();
    (queue.watch_self(events), store)
}

/// A watch of `api` kept in a cache, without managed fields, and the objects it touches (deleted
/// ones too) as triggers.
pub(crate) fn watch_cached<K>(
    api: Api<K>,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    kube::runtime::reflector::Store<K>,
)
where
    K: Cacheable,
{
    use kube::runtime::WatchStreamExt;
    let (store, writer) = kube::runtime::reflector::store();
    let events = watcher(api, watcher::Config::default())
        .modify(drop_managed_fields)
        .reflect(writer)
        .touched_objects();
    (events, store)
}

/// The metadata watch of an owned kind in `api`, recorded in `queue` as triggers of the owners
/// of kind `Owner`; the same stream `Controller::owns` builds.
pub(crate) fn watch_owned<Owner, C>(
    api: Api<kube::core::PartialObjectMeta<C>>,
    queue: &std::sync::Arc<crate::workqueue::WorkQueue>,
) -> impl futures::Stream<Item = Result<kube::core::PartialObjectMeta<C>, watcher::Error>> + Send + 'static
where
    Owner: kube::Resource<DynamicType = ()> + 'static,
    C: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    use kube::runtime::WatchStreamExt;
    queue.watch_owners::<Owner, _, _, _>(watcher(api, watcher::Config::default()).touched_objects())
}

/// Whether a kube error is a 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A call whose object is already gone counts as done.
pub(crate) fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), crate::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes `name` (its dependents in the background), treating not-found as done.
pub(crate) async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<(), crate::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    ignore_not_found(
        api.delete(name, &kube::api::DeleteParams::background())
            .await,
    )
}

/// Drops `metadata.managedFields` from an object before a watch cache stores it: no reconciler
/// reads them, and they are about as large as the rest of a runner's pod or EphemeralRunner.
pub(crate) fn drop_managed_fields<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Namespace of an object, or an error naming it.
pub(crate) fn namespace_of(meta: &ObjectMeta) -> Result<String, crate::Error> {
    meta.namespace
        .clone()
        .ok_or_else(|| crate::Error::Unusable {
            what: format!(
                "object {:?} has no namespace",
                meta.name.as_deref().unwrap_or_default()
            ),
        })
}

/// The finalizer helper's result as the error policy sees it: the reconcile's own errors pass
/// through unchanged (so `Waiting` and configuration errors stay what they are), and an object
/// already gone when its finalizer is added or removed is done, not a failure.
pub(crate) fn finalizer_result(
    result: Result<Action, finalizer::Error<crate::Error>>,
) -> Result<Action, crate::Error> {
    use finalizer::Error as F;
    match result {
        Err(F::AddFinalizer(e) | F::RemoveFinalizer(e)) if is_not_found(&e) => {
            Ok(Action::await_change())
        }
        Err(F::ApplyFailed(e) | F::CleanupFailed(e)) => Err(e),
        Err(other) => Err(crate::Error::Finalizer(Box::new(other))),
        Ok(action) => Ok(action),
    }
}
