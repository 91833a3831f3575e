//! The AutoscalingRunnerSet controller's view of its EphemeralRunnerSet and AutoscalingListeners
//! (docs/architecture.md#children-from-the-watch-cache): the watch caches that trigger its
//! passes, read through to the API server only when the cache may not show the controller's
//! own writes yet.
//!
//! A pass reads its children from the caches when they hold the desired ones and none of them is
//! a version from before one of this controller's patches or deletions. Otherwise (a child just
//! created, patched or deleted by this controller, or not there at all) it reads them from the
//! API server, as every pass did before: a decision to create, replace or delete a child is
//! never taken on a copy older than this controller's last write to it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kube::api::{Api, ObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::deletion;
use crate::Context;
use crate::controllers::OwnWrites;
use crate::crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunnerSet};
use crate::error::Error;

/// Watch caches of the children and this controller's writes they may not show yet.
pub(crate) struct Children {
    runner_sets: Store<EphemeralRunnerSet>,
    listeners: Store<AutoscalingListener>,
    /// Patches of children.
    patched: OwnWrites,
    /// UIDs of children this controller deleted that the caches still held at the last look.
    deleted: Mutex<HashSet<String>>,
}

impl Children {
    /// A view over the two caches.
    pub(crate) fn new(
        runner_sets: Store<EphemeralRunnerSet>,
        listeners: Store<AutoscalingListener>,
    ) -> Self {
        Self {
            runner_sets,
            listeners,
            patched: OwnWrites::default(),
            deleted: Mutex::default(),
        }
    }

    /// A view whose caches stay empty, so every read goes to the API server.
    #[cfg(test)]
    pub(crate) fn uncached() -> Self {
        Self::new(
            kube::runtime::reflector::store().0,
            kube::runtime::reflector::store().0,
        )
    }

    /// Records a patch of a child that turned `before` into `after`.
    pub(crate) fn patched(&self, before: &ObjectMeta, after: &ObjectMeta) {
        self.patched.wrote(before, after);
    }

    /// Records the deletion of a child.
    pub(crate) fn deleted(&self, meta: &ObjectMeta) {
        if let Some(uid) = &meta.uid {
            crate::lock(&self.deleted).insert(uid.clone());
        }
    }

    /// Whether the cached `meta` shows every write of this controller to that child.
    fn current(&self, meta: &ObjectMeta) -> bool {
        let deleted = crate::lock(&self.deleted);
        !self.patched.superseded(meta) && meta.uid.as_ref().is_none_or(|u| !deleted.contains(u))
    }

    /// Forgets the deletions the caches no longer show.
    fn prune_deleted(&self) {
        let mut deleted = crate::lock(&self.deleted);
        if deleted.is_empty() {
            return;
        }
        let cached: HashSet<String> = self
            .runner_sets
            .state()
            .iter()
            .filter_map(|r| r.uid())
            .chain(self.listeners.state().iter().filter_map(|l| l.uid()))
            .collect();
        deleted.retain(|uid| cached.contains(uid));
    }

    /// The ARS's EphemeralRunnerSet (same namespace and name).
    pub(crate) async fn runner_set(
        &self,
        ars: &AutoscalingRunnerSet,
        ctx: &Context,
    ) -> Result<Option<EphemeralRunnerSet>, Error> {
        self.prune_deleted();
        let ns = super::namespace(ars)?;
        let name = ars.name_any();
        if let Some(cached) = self.runner_sets.get(&ObjectRef::new(&name).within(&ns))
            && self.current(cached.meta())
        {
            return Ok(Some(Arc::unwrap_or_clone(cached)));
        }
        Ok(
            Api::<EphemeralRunnerSet>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&name)
                .await?,
        )
    }

    /// The ARS's listeners: those labelled as its own, and the one of the desired name.
    pub(crate) async fn listeners(
        &self,
        ars: &AutoscalingRunnerSet,
        ctx: &Context,
        desired_name: &str,
    ) -> Result<Vec<AutoscalingListener>, Error> {
        let cached: Vec<AutoscalingListener> = self
            .listeners
            .state()
            .into_iter()
            .filter(|l| deletion::is_listener_of(l, ars) || l.name_any() == desired_name)
            .map(Arc::unwrap_or_clone)
            .collect();
        if cached.iter().any(|l| l.name_any() == desired_name)
            && cached.iter().all(|l| self.current(l.meta()))
        {
            return Ok(cached);
        }
        let mut listeners = deletion::listeners_of(ars, ctx).await?;
        if !listeners.iter().any(|l| l.name_any() == desired_name)
            && let Some(al) = Api::<AutoscalingListener>::namespaced(
                ctx.client.clone(),
                &ctx.options.controller_namespace,
            )
            .get_opt(desired_name)
            .await?
        {
            // Same name but not labelled as ours (e.g. created by another tool): replaced.
            listeners.push(al);
        }
        Ok(listeners)
    }
}
