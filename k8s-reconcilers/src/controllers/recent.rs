//! Keys remembered for a minute: what a pass did that the watch events after it do not show
//! yet, for the passes that follow.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a key is remembered: far longer than the watch events and passes that follow the
/// change it stands for take, even with a backlog.
const MEMORY: Duration = Duration::from_secs(60);

/// Keys remembered for [`MEMORY`] after they were inserted.
#[derive(Debug)]
pub(crate) struct Recent<K>(Mutex<HashMap<K, Instant>>);

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Recent(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash> Recent<K> {
    /// Whether `key` was inserted within the last minute.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.age(key).is_some()
    }

    /// How long ago `key` was inserted, if within the last minute.
    pub(crate) fn age(&self, key: &K) -> Option<Duration> {
        crate::lock(&self.0)
            .get(key)
            .map(Instant::elapsed)
            .filter(|age| *age < MEMORY)
    }

    /// Remembers `key` from now, forgetting the keys inserted long ago.
    pub(crate) fn insert(&self, key: K) {
        let now = Instant::now();
        let mut keys = crate::lock(&self.0);
        keys.retain(|_, at| now.duration_since(*at) < MEMORY);
        keys.insert(key, now);
    }

    /// Remembers `key` as inserted `age` ago.
    #[cfg(test)]
    pub(crate) fn insert_aged(&self, key: K, age: Duration) {
        crate::lock(&self.0).insert(key, Instant::now() - age);
    }
}

/// Registration ids the EphemeralRunnerSet controller removed from the service to scale down,
/// for the EphemeralRunner controller: their runners need no second `RemoveRunner`, and a
/// runner pod that exits because its registration went is the runner's end, not a failure to
/// retry.
pub(crate) type RemovedRegistrations = Recent<i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_remembered_until_it_is_a_minute_old() {
        let recent = Recent::default();
        recent.insert(7_i64);
        assert!(recent.contains(&7));
        assert!(!recent.contains(&8));
        recent.insert_aged(8, MEMORY);
        assert!(!recent.contains(&8), "a key a minute old is forgotten");
        recent.insert(9);
        assert!(!crate::lock(&recent.0).contains_key(&8), "and dropped");
    }
}
