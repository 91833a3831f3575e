//! A controller's own writes to the objects it reconciles that its watch cache may not show yet
//! (docs/architecture.md#own-writes-and-the-watch-cache).
//!
//! A pass that follows the controller's own write within milliseconds (another watch event of
//! the same object, or of one it owns) reads the object from the cache as it was before that
//! write, and would decide, and often write, the same thing again. A write that changed the
//! object is recorded with the `resourceVersion` it replaced and the one it produced; a pass
//! that finds the object at a version from before the write skips, since the write's own watch
//! event is on its way and starts another. "Before the write" is the replaced version, or any
//! version lower than the produced one: another client (the listener recording a job) may have
//! written in between the pass's read and its write, and the cache can show that version first.
//! Versions are compared as numbers only when both are numbers (Kubernetes' comparable
//! resource versions); otherwise only the replaced version counts.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::api::ObjectMeta;

/// What the controller's own writes to one object left behind.
#[derive(Default)]
struct Written {
    /// The `resourceVersion`s the writes replaced.
    replaced: HashSet<String>,
    /// The newest `resourceVersion` a write produced, when it is a number.
    produced: Option<u64>,
}

/// The controller's own writes, by object UID, that its cache may not show yet.
#[derive(Default)]
pub(crate) struct OwnWrites {
    written: Mutex<HashMap<String, Written>>,
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
            let mut written = self.lock();
            let record = written.entry(uid.clone()).or_default();
            record.replaced.insert(old.clone());
            if let Ok(new) = new.parse::<u64>() {
                record.produced = Some(record.produced.map_or(new, |p| p.max(new)));
            }
        }
    }

    /// Whether `cached` is a version of the object from before one of the controller's own
    /// writes; once the cache shows that write or a newer version, the record is forgotten.
    pub(crate) fn superseded(&self, cached: &ObjectMeta) -> bool {
        let Some(uid) = cached.uid.as_ref() else {
            return false;
        };
        let mut written = self.lock();
        let Some(record) = written.get(uid) else {
            return false;
        };
        let version = cached.resource_version.as_deref();
        let older = match (version.and_then(|v| v.parse::<u64>().ok()), record.produced) {
            (Some(cached), Some(produced)) => cached < produced,
            _ => false,
        };
        if older || version.is_some_and(|v| record.replaced.contains(v)) {
            return true;
        }
        written.remove(uid);
        false
    }

    /// Forgets the object (it is gone).
    pub(crate) fn forget(&self, meta: &ObjectMeta) {
        if let Some(uid) = meta.uid.as_ref() {
            self.lock().remove(uid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        crate::lock(&self.written)
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
    fn a_version_another_client_wrote_before_the_own_write_is_superseded_too() {
        // Read at 5, the listener wrote 6, the own write (on top of it) made 7: the cache may
        // show 6 first, which lacks what the pass wrote.
        let writes = OwnWrites::default();
        writes.wrote(&meta("5"), &meta("7"));
        assert!(writes.superseded(&meta("6")));
        assert!(writes.superseded(&meta("5")));
        assert!(
            !writes.superseded(&meta("8")),
            "a newer version ends the wait"
        );
        assert!(
            !writes.superseded(&meta("6")),
            "forgotten once the cache caught up"
        );
    }

    #[test]
    fn versions_that_are_not_numbers_are_matched_exactly() {
        let writes = OwnWrites::default();
        writes.wrote(&meta("a"), &meta("c"));
        assert!(writes.superseded(&meta("a")));
        assert!(!writes.superseded(&meta("b")));
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
