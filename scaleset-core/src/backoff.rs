//! The one retry backoff of the workspace: exponential growth from a base to a cap, with the
//! jitter's random draw passed in so that the computation stays pure.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Exponential backoff: `base × 2^(n-1)` after the n-th consecutive failure, at most `max`, less
/// a random part of at most `jitter` of it (so a delay never exceeds the cap, and retries from
/// many processes spread out).
///
/// ```
/// use scaleset_core::backoff::Backoff;
/// use std::time::Duration;
/// let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
/// assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
/// assert_eq!(b.delay(3, 0.0), Duration::from_secs(4));
/// assert_eq!(b.delay(50, 0.0), Duration::from_secs(15));
/// let jittered = b.with_jitter(0.5);
/// assert_eq!(jittered.delay(3, 0.5), Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Largest fraction of a delay (0 to 1) that jitter takes away.
    pub jitter: f64,
}

impl Backoff {
    /// Doubling from `base` up to `max`, without jitter.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            jitter: 0.0,
        }
    }

    /// The same backoff with up to `fraction` of each delay taken away at random.
    pub const fn with_jitter(self, fraction: f64) -> Self {
        Backoff {
            jitter: fraction,
            ..self
        }
    }

    /// The delay after the `failures`-th consecutive failure (1 is the first; 0 counts as 1).
    /// `random` is a draw from `[0, 1)`; values outside are clamped.
    pub fn delay(&self, failures: u32, random: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let fraction = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        full.saturating_sub(full.mul_f64(fraction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let b = Backoff::new(5 * MS, 1000 * MS);
        let delays: Vec<_> = (1..=10).map(|n| b.delay(n, 0.9)).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000].map(|n| n * MS)
        );
        assert_eq!(b.delay(0, 0.0), 5 * MS);
        assert_eq!(b.delay(u32::MAX, 0.0), 1000 * MS);
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(40, 0.0), Duration::MAX);
    }

    #[test]
    fn jitter_only_shortens() {
        let b = Backoff::new(100 * MS, 400 * MS).with_jitter(0.25);
        assert_eq!(b.delay(1, 0.0), 100 * MS);
        assert_eq!(b.delay(1, 1.0), 75 * MS);
        assert_eq!(b.delay(5, 1.0), 300 * MS);
        assert_eq!(b.delay(1, -3.0), 100 * MS);
        assert_eq!(b.delay(1, 7.0), 75 * MS);
        assert_eq!(b.with_jitter(9.0).delay(1, 0.5), 50 * MS);
    }

    proptest! {
        /// With jitter the n-th delay lies in `[(1 - jitter) × d, d]` where d is the delay without
        /// jitter, d never exceeds the cap, and d never shrinks as failures continue.
        #[test]
        fn delays_grow_stay_capped_and_jitter_within_bounds(
            base_ms in 1u32..10_000,
            cap_ms in 1u32..1_000_000,
            jitter in 0.0f64..=1.0,
            random in 0.0f64..1.0,
            n in 1u32..64,
        ) {
            let plain = Backoff::new(base_ms * MS, cap_ms * MS);
            let d = plain.delay(n, random);
            prop_assert!(d <= cap_ms * MS);
            prop_assert!(plain.delay(n + 1, random) >= d);
            let j = plain.with_jitter(jitter).delay(n, random);
            prop_assert!(j <= d);
            prop_assert!(j.as_secs_f64() >= d.as_secs_f64() * (1.0 - jitter) - 1e-9);
        }
    }
}
