//! Time as a value: decisions never read a clock, callers pass `now` in.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A point in time, milliseconds since the Unix epoch.
///
/// Reconcilers convert Kubernetes timestamps into this type; the core never reads a clock.
///
/// ```
/// use scaleset_core::time::Timestamp;
/// use std::time::Duration;
/// let t = Timestamp::from_unix_seconds(100);
/// assert_eq!(t + Duration::from_secs(5), Timestamp::from_unix_millis(105_000));
/// assert_eq!(Timestamp::from_unix_seconds(105).saturating_duration_since(t), Duration::from_secs(5));
/// assert_eq!(t.saturating_duration_since(Timestamp::from_unix_seconds(105)), Duration::ZERO);
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// From whole seconds since the Unix epoch.
    pub const fn from_unix_seconds(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        let diff = self.0.saturating_sub(earlier.0);
        Duration::from_millis(u64::try_from(diff).unwrap_or(0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, rhs: Duration) -> Timestamp {
        let millis = i64::try_from(rhs.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }
}
