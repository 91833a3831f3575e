//! The desired-count step (listener.md section 5): target and patchID, exactly as ARC's scaler.

/// Result of one desired-count step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Runners wanted (`spec.replicas`).
    pub target: i64,
    /// `spec.patchID`; 0 means "authoritative, force the state".
    pub patch_id: i64,
}

/// Scaler state: last target, patch sequence and whether job events happened since the last step.
#[derive(Debug, Clone)]
pub struct Scaler {
    min_runners: i64,
    max_runners: i64,
    target: i64,
    patch_seq: i64,
    dirty: bool,
}

impl Scaler {
    /// A scaler before its first step (`target = -1`, `patchSeq = -1`).
    pub fn new(min_runners: i64, max_runners: i64) -> Self {
        Scaler {
            min_runners,
            max_runners,
            target: -1,
            patch_seq: -1,
            dirty: false,
        }
    }

    /// Marks that a JobStarted or JobCompleted was handled.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// The last target, or `None` before the first step.
    pub fn last_target(&self) -> Option<i64> {
        (self.target >= 0).then_some(self.target)
    }

    /// One step with the service's `totalAssignedJobs`.
    pub fn step(&mut self, assigned: i64) -> Decision {
        let was_dirty = std::mem::take(&mut self.dirty);
        if self.patch_seq == i64::from(i32::MAX) {
            self.patch_seq = 0;
        }
        self.patch_seq += 1;
        let target = self
            .min_runners
            .saturating_add(assigned.max(0))
            .min(self.max_runners);
        let patch_id = if !was_dirty && target == self.target && target == self.min_runners {
            0
        } else {
            self.patch_seq
        };
        self.target = target;
        Decision { target, patch_id }
    }
}

/// The JSON merge patch ARC's listener sends to the EphemeralRunnerSet.
pub fn ers_patch_body(decision: Decision) -> serde_json::Value {
    let replicas = if decision.target > 0 {
        serde_json::Value::from(decision.target)
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({"spec": {"patchID": decision.patch_id, "replicas": replicas}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_min1_max3() {
        let mut s = Scaler::new(1, 3);
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

    #[test]
    fn capped_by_max() {
        let mut s = Scaler::new(0, 5);
        assert_eq!(s.step(6).target, 5);
    }

    #[test]
    fn patch_sequence_wraps_to_one() {
        let mut s = Scaler::new(0, 10);
        s.patch_seq = i64::from(i32::MAX);
        assert_eq!(s.step(3).patch_id, 1);
    }

    #[test]
    fn zero_target_deletes_replicas() {
        let body = ers_patch_body(Decision {
            target: 0,
            patch_id: 4,
        });
        assert_eq!(
            body.to_string(),
            r#"{"spec":{"patchID":4,"replicas":null}}"#
        );
        let body = ers_patch_body(Decision {
            target: 2,
            patch_id: 0,
        });
        assert_eq!(body.to_string(), r#"{"spec":{"patchID":0,"replicas":2}}"#);
    }
}
