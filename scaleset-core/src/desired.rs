//! Desired runner count and the EphemeralRunnerSet patch sequence
//! (docs/architecture.md#desired-count).
//!
//! `minRunners` is the minimum number of *idle* runners (ADR 2023-11-02): the target is
//! `min(minRunners + totalAssignedJobs, maxRunners)`. Each step also yields the `patchID` the
//! listener writes next to `spec.replicas`; `0` means "authoritative: force this state" and is
//! what allows the EphemeralRunnerSet controller to delete surplus idle runners.
//!
//! ```
//! use scaleset_core::desired::{Bounds, Scaler};
//! let mut scaler = Scaler::new(Bounds::new(1, 3)?);
//! let first = scaler.step(0);                  // session start
//! assert_eq!((first.target, first.patch_id), (1, 0));
//! let busy = scaler.step(2);                   // two jobs assigned
//! assert_eq!((busy.target, busy.patch_id), (3, 1));
//! scaler.mark_dirty();                         // JobCompleted handled
//! assert_eq!(scaler.step(0).patch_id, 2);
//! assert_eq!(scaler.step(0).patch_id, 0);      // resting at the floor: force
//! # Ok::<(), scaleset_core::desired::BoundsError>(())
//! ```

use serde::{Deserialize, Serialize};

/// Largest `maxRunners` ARC accepts (`MaxInt32`); also the value used when it is unset.
pub const MAX_RUNNERS_LIMIT: u32 = i32::MAX as u32;

/// Validated `minRunners` / `maxRunners` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    min_runners: u32,
    max_runners: u32,
}

/// Why a `minRunners` / `maxRunners` pair is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// `minRunners` is above `maxRunners`.
    #[error(
        "minRunners {min} cannot be greater than maxRunners {max}: lower minRunners or raise maxRunners"
    )]
    MinAboveMax {
        /// The `minRunners` value.
        min: u32,
        /// The `maxRunners` value.
        max: u32,
    },
    /// A value above 2147483647.
    #[error("{field} {value} is above 2147483647: use a value between 0 and 2147483647")]
    TooLarge {
        /// `minRunners` or `maxRunners`.
        field: &'static str,
        /// The rejected value.
        value: u64,
    },
}

impl Bounds {
    /// Checks `min <= max <= 2^31-1`.
    pub fn new(min_runners: u32, max_runners: u32) -> Result<Self, BoundsError> {
        for (field, value) in [("minRunners", min_runners), ("maxRunners", max_runners)] {
            if value > MAX_RUNNERS_LIMIT {
                return Err(BoundsError::TooLarge {
                    field,
                    value: u64::from(value),
                });
            }
        }
        if min_runners > max_runners {
            return Err(BoundsError::MinAboveMax {
                min: min_runners,
                max: max_runners,
            });
        }
        Ok(Bounds {
            min_runners,
            max_runners,
        })
    }

    /// From the optional ARS fields, with ARC's defaults (0 and 2147483647).
    ///
    /// ```
    /// use scaleset_core::desired::Bounds;
    /// let b = Bounds::from_spec(None, Some(5))?;
    /// assert_eq!((b.min_runners(), b.max_runners()), (0, 5));
    /// assert!(Bounds::from_spec(Some(-1), None).is_err());
    /// # Ok::<(), scaleset_core::desired::BoundsError>(())
    /// ```
    pub fn from_spec(
        min_runners: Option<i64>,
        max_runners: Option<i64>,
    ) -> Result<Self, BoundsError> {
        let conv = |field: &'static str, v: i64| {
            u32::try_from(v).map_err(|_| BoundsError::TooLarge {
                field,
                value: v.unsigned_abs(),
            })
        };
        let min = conv("minRunners", min_runners.unwrap_or(0))?;
        let max = conv(
            "maxRunners",
            max_runners.unwrap_or(i64::from(MAX_RUNNERS_LIMIT)),
        )?;
        Bounds::new(min, max)
    }

    /// Minimum idle runners.
    pub fn min_runners(self) -> u32 {
        self.min_runners
    }

    /// Upper bound on runners.
    pub fn max_runners(self) -> u32 {
        self.max_runners
    }
}

/// `min(minRunners + assigned, maxRunners)`, saturating.
///
/// ```
/// use scaleset_core::desired::{target_runners, Bounds};
/// let b = Bounds::new(0, 5)?;
/// assert_eq!(target_runners(b, 6), 5);
/// assert_eq!(target_runners(Bounds::new(2, 10)?, 3), 5);
/// # Ok::<(), scaleset_core::desired::BoundsError>(())
/// ```
pub fn target_runners(bounds: Bounds, assigned_jobs: u64) -> u32 {
    let wanted = u64::from(bounds.min_runners).saturating_add(assigned_jobs);
    u32::try_from(wanted.min(u64::from(bounds.max_runners))).unwrap_or(bounds.max_runners)
}

/// One desired-count result: what the listener writes into the EphemeralRunnerSet spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `spec.replicas`.
    pub target: u32,
    /// `spec.patchID`; 0 means "authoritative, force the state".
    pub patch_id: i64,
}

/// The listener's scaler state: last target, patch sequence, and whether job events arrived.
///
/// Call [`Scaler::step`] at session start (initial statistics), on new bounds and after every
/// empty long poll (with the last known statistics), and [`Scaler::message_step`] after every
/// handled message batch; report each decision that reached the set with [`Scaler::written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaler {
    bounds: Bounds,
    last_target: Option<u32>,
    patch_seq: Option<i64>,
    dirty: bool,
    /// A JobCompleted was handled since the last decision that reached the set.
    completed_unwritten: bool,
    /// The last decision that reached the set.
    written: Option<Decision>,
    /// The next step forces its count ([`Scaler::set_bounds`]).
    forced: bool,
}

impl Scaler {
    /// A scaler before its first step; the first step always yields `patchID` 0.
    pub fn new(bounds: Bounds) -> Self {
        Scaler {
            bounds,
            last_target: None,
            patch_seq: None,
            dirty: false,
            completed_unwritten: false,
            written: None,
            forced: false,
        }
    }

    /// The bounds in use.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// New bounds (the ARS's `minRunners` or `maxRunners` changed). The next step uses them
    /// and forces its count (`patchID` 0), so idle runners above a lower bound go at once; a
    /// positive `patchID` would leave them to drain, and idle runners have no job to finish.
    /// ARC's listener restarts on new bounds, and its first step is a forced one too.
    pub fn set_bounds(&mut self, bounds: Bounds) {
        if bounds != self.bounds {
            self.bounds = bounds;
            self.forced = true;
        }
    }

    /// Records that a JobStarted was handled since the last step.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Records that a JobCompleted was handled since the last step.
    pub fn mark_completed(&mut self) {
        self.dirty = true;
        self.completed_unwritten = true;
    }

    /// Records that `decision` reached the set (its patch succeeded).
    pub fn written(&mut self, decision: Decision) {
        self.written = Some(decision);
        self.completed_unwritten = false;
    }

    /// One desired-count step with the service's `totalAssignedJobs`.
    ///
    /// The patch sequence runs 0, 1, 2, … and wraps from 2147483647 back to 1. The step yields
    /// patchID 0 instead when nothing happened (not dirty), the target is unchanged, and it
    /// equals `minRunners`, and after new bounds.
    pub fn step(&mut self, assigned_jobs: u64) -> Decision {
        let (decision, seq) = self.next(assigned_jobs);
        self.dirty = false;
        self.forced = false;
        self.patch_seq = Some(seq);
        self.last_target = Some(decision.target);
        decision
    }

    /// What [`Scaler::step`] would decide now, and the sequence number it takes.
    fn next(&self, assigned_jobs: u64) -> (Decision, i64) {
        let seq = match self.patch_seq {
            None => 0,
            Some(s) if s >= i64::from(i32::MAX) => 1,
            Some(s) => s + 1,
        };
        let target = target_runners(self.bounds, assigned_jobs);
        let at_rest =
            !self.dirty && self.last_target == Some(target) && target == self.bounds.min_runners;
        let patch_id = if at_rest || self.forced { 0 } else { seq };
        (Decision { target, patch_id }, seq)
    }

    /// The step after a handled message batch, or `None` when its patch would tell the set
    /// nothing new: the target equals the last one written, no job completed since, and that
    /// patch was not a forced one (`patchID` 0 holds back no runner for a finished job, so a
    /// job event since makes it stale); or the step would repeat the forced patch the set has,
    /// as the first batch of a burst (JobAvailable only) does after an idle listener's empty
    /// polls: that patch changed nothing on the API server, and the listener waited for it
    /// before it read the batch that counts the jobs.
    ///
    /// ARC's listener patches after every batch; a batch of JobAvailable (before the service
    /// counts the jobs as assigned) or JobStarted only would then write the same `replicas`
    /// under a new `patchID`. With many scale sets those patches were a tenth of the API
    /// server's requests while runners started (docs/architecture.md#desired-count). A skipped
    /// step leaves the sequence and the marks as they were: the next step counts the batch's
    /// job events.
    pub fn message_step(&mut self, assigned_jobs: u64) -> Option<Decision> {
        let (next, _) = self.next(assigned_jobs);
        let unchanged = self
            .written
            .is_some_and(|w| w.target == next.target && w.patch_id != 0);
        if (unchanged && !self.completed_unwritten) || self.written == Some(next) {
            return None;
        }
        Some(self.step(assigned_jobs))
    }

    #[cfg(test)]
    pub(crate) fn set_patch_seq(&mut self, seq: i64) {
        self.patch_seq = Some(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bounds(min: u32, max: u32) -> Bounds {
        Bounds::new(min, max).expect("valid bounds")
    }

    #[test]
    fn new_bounds_force_the_next_count() {
        let mut s = Scaler::new(bounds(0, 40));
        assert_eq!(s.step(3).patch_id, 0, "the session's first step");
        assert_eq!(s.step(3).patch_id, 1);
        s.set_bounds(bounds(0, 40));
        assert_eq!(s.step(3).patch_id, 2, "the same bounds force nothing");
        s.set_bounds(bounds(0, 2));
        assert_eq!(
            s.step(3),
            Decision {
                target: 2,
                patch_id: 0
            }
        );
        assert_eq!(s.step(3).patch_id, 4, "only the step after new bounds");
    }

    /// ARC's worked example of the desired count (min=1, max=3;
    /// docs/architecture.md#desired-count).
    #[test]
    fn listener_md_worked_example_min1_max3() {
        let mut s = Scaler::new(bounds(1, 3));
        assert_eq!(
            s.step(0),
            Decision {
                target: 1,
                patch_id: 0
            }
        );
        assert_eq!(
            s.step(2),
            Decision {
                target: 3,
                patch_id: 1
            }
        );
        s.mark_dirty();
        assert_eq!(
            s.step(0),
            Decision {
                target: 1,
                patch_id: 2
            }
        );
        assert_eq!(
            s.step(0),
            Decision {
                target: 1,
                patch_id: 0
            }
        );
    }

    /// A batch that changes neither the target nor the completions writes nothing; one that
    /// completes a job, changes the target, or follows a forced patch or a patch that never
    /// reached the set does.
    #[test]
    fn message_step_skips_what_the_set_already_has() {
        let mut s = Scaler::new(bounds(0, 10));
        let first = s.step(2);
        assert_eq!(first.patch_id, 0);
        s.written(first);
        s.mark_dirty();
        let after_forced = s
            .message_step(2)
            .expect("a forced patch is stale after a job event");
        assert_eq!((after_forced.target, after_forced.patch_id), (2, 1));
        s.written(after_forced);
        s.mark_dirty();
        assert_eq!(s.message_step(2), None, "JobStarted only: same replicas");
        let grown = s.message_step(3).expect("a new target is written");
        assert_eq!((grown.target, grown.patch_id), (3, 2));
        assert!(
            s.message_step(3).is_some(),
            "the last patch did not reach the set"
        );
        s.written(Decision {
            target: 3,
            patch_id: 3,
        });
        s.mark_completed();
        let completed = s.message_step(3).expect("a completion is written");
        assert_eq!(completed.patch_id, 4);
        s.written(completed);
        assert_eq!(s.message_step(3), None);
        assert_eq!(s.step(3).patch_id, 5, "empty polls always step");
    }

    #[test]
    fn message_step_does_not_repeat_a_forced_patch() {
        let mut s = Scaler::new(bounds(1, 10));
        let idle = s.step(0);
        assert_eq!((idle.target, idle.patch_id), (1, 0));
        s.written(idle);
        let poll = s.step(0);
        assert_eq!(poll, idle, "an empty poll at rest forces again");
        s.written(poll);
        assert_eq!(
            s.message_step(0),
            None,
            "JobAvailable only: the same forced patch"
        );
        let assigned = s.message_step(2).expect("the jobs are counted");
        assert_eq!((assigned.target, assigned.patch_id), (3, 2));

        let mut s = Scaler::new(bounds(1, 10));
        let first = s.step(0);
        s.written(first);
        s.mark_dirty();
        let started = s
            .message_step(0)
            .expect("after a job event the forced patch is stale");
        assert_eq!((started.target, started.patch_id), (1, 1));
    }

    /// docs/architecture.md#desired-count: min=0, max=5, 6 assigned → 5 (never above maxRunners).
    #[test]
    fn capped_by_max_runners() {
        let mut s = Scaler::new(bounds(0, 5));
        assert_eq!(s.step(6).target, 5);
    }

    /// ARC#3139 / ADR 2023-11-02: minRunners are idle runners on top of assigned jobs.
    #[test]
    fn min_runners_are_idle_on_top_of_assigned() {
        assert_eq!(target_runners(bounds(2, 100), 3), 5);
        assert_eq!(target_runners(bounds(2, 4), 3), 4);
    }

    /// Unchanged target above the floor keeps counting patch ids (not "at rest").
    #[test]
    fn unchanged_target_above_min_keeps_sequence() {
        let mut s = Scaler::new(bounds(0, 10));
        assert_eq!(s.step(2).patch_id, 0);
        assert_eq!(s.step(2).patch_id, 1);
        assert_eq!(s.step(2).patch_id, 2);
    }

    /// A dirty step at the floor is not forced: the controller must not scale down mid-change.
    #[test]
    fn dirty_step_at_floor_is_not_forced() {
        let mut s = Scaler::new(bounds(0, 10));
        s.step(0);
        s.mark_dirty();
        assert_eq!(s.step(0).patch_id, 1);
        assert_eq!(s.step(0).patch_id, 0);
    }

    /// After 2147483647 the sequence restarts at 1, never at 0.
    #[test]
    fn patch_sequence_wraps_to_one() {
        let mut s = Scaler::new(bounds(0, 10));
        s.step(1);
        s.set_patch_seq(i64::from(i32::MAX));
        assert_eq!(s.step(3).patch_id, 1);
    }

    #[test]
    fn bounds_validation_names_field_and_fix() {
        let e = Bounds::new(3, 2).expect_err("min above max");
        assert!(e.to_string().contains("minRunners 3"));
        assert!(e.to_string().contains("lower minRunners"));
        let e = Bounds::from_spec(None, Some(i64::from(u32::MAX))).expect_err("too large");
        assert!(e.to_string().contains("maxRunners"));
        assert_eq!(
            Bounds::from_spec(None, None).map(|b| b.max_runners()),
            Ok(MAX_RUNNERS_LIMIT)
        );
    }

    fn any_bounds() -> impl Strategy<Value = Bounds> {
        (0u32..=MAX_RUNNERS_LIMIT, 0u32..=MAX_RUNNERS_LIMIT)
            .prop_map(|(a, b)| bounds(a.min(b), a.max(b)))
    }

    proptest! {
        #[test]
        fn never_above_max_and_covers_busy(b in any_bounds(), assigned in any::<u64>()) {
            let t = target_runners(b, assigned);
            prop_assert!(t <= b.max_runners());
            // every assigned (busy or about to be) job gets a runner, up to max
            prop_assert!(u64::from(t) >= assigned.min(u64::from(b.max_runners())));
            prop_assert!(t >= b.min_runners());
        }

        #[test]
        fn monotone_in_assigned_jobs(b in any_bounds(), x in any::<u64>(), y in any::<u64>()) {
            let (lo, hi) = (x.min(y), x.max(y));
            prop_assert!(target_runners(b, lo) <= target_runners(b, hi));
        }

        #[test]
        fn patch_ids_valid_and_zero_only_when_forced(
            b in any_bounds(),
            steps in proptest::collection::vec((0u64..50, any::<bool>()), 1..40),
        ) {
            let mut s = Scaler::new(b);
            let mut prev: Option<u32> = None;
            let mut last_nonzero = 0i64;
            for (i, (assigned, dirty)) in steps.into_iter().enumerate() {
                if dirty { s.mark_dirty(); }
                let d = s.step(assigned);
                prop_assert!(d.target <= b.max_runners());
                prop_assert!((0..=i64::from(i32::MAX)).contains(&d.patch_id));
                if i == 0 {
                    prop_assert_eq!(d.patch_id, 0);
                } else if d.patch_id == 0 {
                    prop_assert!(!dirty && prev == Some(d.target) && d.target == b.min_runners());
                } else {
                    prop_assert_eq!(d.patch_id, i as i64);
                    prop_assert!(d.patch_id > last_nonzero);
                    last_nonzero = d.patch_id;
                }
                prev = Some(d.target);
            }
        }
    }
}
