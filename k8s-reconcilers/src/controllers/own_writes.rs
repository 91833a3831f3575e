//! A controller's own writes to the objects it reconciles that its watch cache may not show yet
//! (docs/architecture.md#own-writes-and-the-watch-cache).
//!
//! A pass that follows the controller's own write within milliseconds (another watch event of
//! the same object, or of one it owns) reads the object from the cache as it was before that
//! write, and would decide, and often write, the same thing again. A write that changed the
//! object is recorded with the `resourceVersion` it replaced; a pass that finds the object at
//! such a version skips, since the write's own watch event is on its way and starts another.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::api::ObjectMeta;

/// The `resourceVersion`s, by object UID, that the controller's own writes replaced.
#[derive(Default)]
pub(crate) struct OwnWrites {
    replaced: Mutex<HashMap<String, HashSet<String>>>,
}

impl OwnWrites {
    /// Records a write that turned `before` into `after`; a write that changed nothing is
    /// not recorded, since no watch event follows it.
    pub(crate) fn wrote(&self, before: &ObjectMeta, after: &ObjectMeta) {
        let (Some(uid), Some(old), Some(new)) = (
            before.uid.as_ref(),
            before.resource_version.as_ref(),
            after.resource_version.as_ref(),
        ) else {
            return;
        };
        if old != new {
            self.lock()
                .entry(uid.clone())
                .or_default()
                .insert(old.clone());
        }
    }

    /// Whether `cached` is a version of the object that one of the controller's own writes
    /// replaced; once the cache shows a newer one, the record is forgotten.
    pub(crate) fn superseded(&self, cached: &ObjectMeta) -> bool {
        let Some(uid) = cached.uid.as_ref() else {
            return false;
        };
        let mut replaced = self.lock();
        let Some(versions) = replaced.get(uid) else {
            return false;
        };
        if cached
            .resource_version
            .as_ref()
            .is_some_and(|rv| versions.contains(rv))
        {
            return true;
        }
        replaced.remove(uid);
        false
    }

    /// Forgets the object (it is gone).
    pub(crate) fn forget(&self, meta: &ObjectMeta) {
        if let Some(uid) = meta.uid.as_ref() {
            self.lock().remove(uid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        crate::lock(&self.replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(rv: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some("u".into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_copy_older_than_an_own_write_is_superseded_until_a_newer_one_shows() {
        let writes = OwnWrites::default();
        writes.wrote(&meta("1"), &meta("2"));
        writes.wrote(&meta("2"), &meta("3"));
        assert!(writes.superseded(&meta("1")));
        assert!(writes.superseded(&meta("2")));
        assert!(!writes.superseded(&meta("3")));
        assert!(
            !writes.superseded(&meta("1")),
            "forgotten once the cache caught up"
        );
    }

    #[test]
    fn a_write_that_changed_nothing_is_not_recorded() {
        let writes = OwnWrites::default();
        writes.wrote(&meta("1"), &meta("1"));
        assert!(!writes.superseded(&meta("1")));
        writes.wrote(&meta("1"), &meta("2"));
        writes.forget(&meta("1"));
        assert!(!writes.superseded(&meta("1")));
    }
}
