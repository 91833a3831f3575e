//! Jobs: queueing, offers, acquisition, assignment, timeouts, and the job messages.

use super::*;

impl State {
    /// The jobs among `ids` that are not completed, with their phase (an unknown id as
    /// `None`).
    pub fn open_jobs(&self, ids: &[i64]) -> Vec<(i64, Option<JobPhase>)> {
        ids.iter()
            .map(|id| (*id, self.jobs.get(id).map(|j| j.phase)))
            .filter(|(_, phase)| *phase != Some(JobPhase::Completed))
            .collect()
    }

    pub(super) fn emit(&mut self, scale_set_id: i64, message: Value) {
        if let Some(q) = self.queues.get_mut(&scale_set_id) {
            q.pending.push_back(message);
        }
    }

    pub(super) fn job_message(&self, kind: &str, job: &JobRecord) -> Value {
        let spec = &job.spec;
        let mut m = json!({
            "messageType": kind,
            "runnerRequestId": job.id,
            "repositoryName": spec.repository,
            "ownerName": spec.owner,
            "jobId": job.job_id,
            "jobWorkflowRef": format!("{}/{}/{}@{}", spec.owner, spec.repository, spec.workflow_path, spec.git_ref),
            "jobDisplayName": spec.display_name,
            "workflowRunId": job.workflow_run_id,
            "eventName": spec.event_name,
            "requestLabels": spec.labels,
            "queueTime": ts(job.queued_at),
            "scaleSetAssignTime": ts_opt(job.assigned_at),
            "runnerAssignTime": ts_opt(job.runner_assigned_at),
            "finishTime": ts_opt(job.completed_at),
        });
        if let Value::Object(obj) = &mut m {
            match kind {
                "JobAvailable" => {
                    let ss = job.scale_set_id.unwrap_or(0);
                    obj.insert(
                        "acquireJobUrl".into(),
                        json!(format!(
                            "{}_apis/runtime/runnerscalesets/{ss}/acquirejobs",
                            self.actions_url()
                        )),
                    );
                }
                "JobStarted" | "JobCompleted" => {
                    obj.insert("runnerId".into(), json!(job.runner_id.unwrap_or(0)));
                    obj.insert(
                        "runnerName".into(),
                        json!(job.runner_name.clone().unwrap_or_default()),
                    );
                    if kind == "JobCompleted" {
                        obj.insert(
                            "result".into(),
                            json!(job.result.unwrap_or(JobResult::Canceled).as_str()),
                        );
                    }
                }
                _ => {}
            }
        }
        m
    }

    pub(super) fn emit_job(&mut self, kind: &str, job_id: i64) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let Some(ss) = job.scale_set_id else {
            return;
        };
        let m = self.job_message(kind, job);
        self.emit(ss, m);
    }

    /// Queues a job; it is offered to a matching scale set on the next advance.
    pub fn queue_job(&mut self, spec: JobSpec, now: DateTime<Utc>) -> i64 {
        let id = self.next_job_id;
        self.next_job_id += 1;
        self.jobs.insert(
            id,
            JobRecord {
                id,
                job_id: uuid::Uuid::new_v4().to_string(),
                workflow_run_id: 5000 + id,
                spec,
                phase: JobPhase::Queued,
                scale_set_id: None,
                runner_id: None,
                runner_name: None,
                requeues: 0,
                result: None,
                queued_at: now,
                available_at: None,
                acquired_at: None,
                assigned_at: None,
                runner_assigned_at: None,
                started_at: None,
                completed_at: None,
            },
        );
        id
    }

    /// Cancels a job that has not started (it completes as `canceled`).
    pub fn cancel_job(&mut self, job_id: i64, now: DateTime<Utc>) -> bool {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        if matches!(job.phase, JobPhase::Completed) {
            return false;
        }
        let was_offered = job.scale_set_id.is_some();
        job.phase = JobPhase::Completed;
        job.result = Some(JobResult::Canceled);
        job.completed_at = Some(now);
        let runner = job.runner_id;
        if was_offered {
            self.emit_job("JobCompleted", job_id);
        }
        if let Some(rid) = runner {
            self.drop_runner(rid);
        }
        true
    }

    /// A10: acquires the ids still available to this scale set.
    pub fn acquire_jobs(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        if self.session_scale_set(session_id) != Some(scale_set_id) {
            return Err(ApiError::Unauthorized);
        }
        let ids: Vec<i64> = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "The request body must be a JSON array of runnerRequestId integers: {e}"
            ))
        })?;
        let mut acquired = Vec::new();
        for id in ids {
            if let Some(job) = self.jobs.get_mut(&id)
                && job.phase == JobPhase::Available
                && job.scale_set_id == Some(scale_set_id)
            {
                job.phase = JobPhase::Acquired;
                job.acquired_at = Some(now);
                acquired.push(json!(id));
            }
        }
        Ok(list(acquired))
    }

    /// L1 (legacy): the jobs currently offered to a scale set; `None` when there are none (204).
    pub fn acquirable_jobs(&self, scale_set_id: i64) -> Result<Option<Value>, ApiError> {
        self.require_scale_set(scale_set_id)?;
        let values: Vec<Value> = self
            .jobs
            .values()
            .filter(|j| j.phase == JobPhase::Available && j.scale_set_id == Some(scale_set_id))
            .map(|j| {
                let mut m = self.job_message("JobAvailable", j);
                if let Value::Object(o) = &mut m {
                    o.retain(|k, _| {
                        matches!(
                            k.as_str(),
                            "acquireJobUrl"
                                | "messageType"
                                | "runnerRequestId"
                                | "repositoryName"
                                | "ownerName"
                                | "jobWorkflowRef"
                                | "eventName"
                                | "requestLabels"
                        )
                    });
                }
                m
            })
            .collect();
        Ok((!values.is_empty()).then(|| list(values)))
    }

    pub(super) fn matches(ss: &ScaleSetRecord, labels: &[String]) -> bool {
        labels
            .iter()
            .all(|l| ss.labels.iter().any(|s| s.eq_ignore_ascii_case(l)))
    }

    /// Runs every due transition: session expiry, offers, auto-acquire, assignment, runner pickup,
    /// pickup timeouts. Idempotent; called after every mutation and by the background clock.
    /// Returns whether anything changed.
    pub fn advance(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        let expiry = td(self.cfg.session_expiry);
        for s in self.sessions.values_mut() {
            if s.state == SessionState::Active
                && s.polls_in_flight == 0
                && now - s.last_seen >= expiry
            {
                s.state = SessionState::Expired;
                changed = true;
            }
        }
        changed |= self.offer_queued(now);
        if let Some(after) = self.cfg.auto_acquire_after {
            let after = td(after);
            for job in self.jobs.values_mut() {
                if job.phase == JobPhase::Available
                    && job.available_at.is_some_and(|t| now - t >= after)
                {
                    job.phase = JobPhase::Acquired;
                    job.acquired_at = Some(now);
                    changed = true;
                }
            }
        }
        let delay = td(self.cfg.assign_delay);
        let to_assign: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| {
                j.phase == JobPhase::Acquired && j.acquired_at.is_some_and(|t| now - t >= delay)
            })
            .map(|j| j.id)
            .collect();
        changed |= !to_assign.is_empty();
        for id in to_assign {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.phase = JobPhase::Assigned;
                job.assigned_at = Some(now);
            }
            self.emit_job("JobAssigned", id);
        }
        changed |= self.pick_up(now);
        changed |= self.pickup_timeouts(now);
        changed |= self.lost_runners(now);
        changed
    }

    /// Runners that took a job and then fell silent: a running job past its duration plus
    /// `lost_runner_timeout` fails, a picked-up job not started within the timeout goes back to
    /// assigned; the runner goes offline (registered, removable with A14).
    pub(super) fn lost_runners(&mut self, now: DateTime<Utc>) -> bool {
        let timeout = self.cfg.lost_runner_timeout;
        let lost: Vec<(i64, i64)> = self
            .jobs
            .values()
            .filter_map(|j| {
                let rid = j.runner_id?;
                let overdue = match j.phase {
                    JobPhase::Running => j
                        .started_at
                        .is_some_and(|t| now >= later(later(t, j.spec.duration), timeout)),
                    JobPhase::PickedUp => j
                        .runner_assigned_at
                        .is_some_and(|t| now >= later(t, timeout)),
                    _ => false,
                };
                overdue.then_some((j.id, rid))
            })
            .collect();
        for (job_id, rid) in &lost {
            let Some(job) = self.jobs.get_mut(job_id) else {
                continue;
            };
            if job.phase == JobPhase::Running {
                job.phase = JobPhase::Completed;
                job.result = Some(JobResult::Failed);
                job.completed_at = Some(now);
                self.emit_job("JobCompleted", *job_id);
            } else {
                job.phase = JobPhase::Assigned;
                job.runner_id = None;
                job.runner_name = None;
                job.runner_assigned_at = None;
            }
            if let Some(r) = self.runners.get_mut(rid) {
                r.job = None;
                r.connected_at = None;
            }
            self.runner_tokens.retain(|_, r| r != rid);
            self.runner_jobs_epoch += 1;
        }
        !lost.is_empty()
    }

    pub(super) fn offer_queued(&mut self, now: DateTime<Utc>) -> bool {
        let queued: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.phase == JobPhase::Queued)
            .map(|j| j.id)
            .collect();
        if queued.is_empty() || self.scale_sets.is_empty() {
            return false;
        }
        let mut load: HashMap<i64, i64> = HashMap::new();
        for j in self.jobs.values() {
            if let Some(ss) = j.scale_set_id
                && !matches!(j.phase, JobPhase::Queued | JobPhase::Completed)
            {
                *load.entry(ss).or_insert(0) += 1;
            }
        }
        let with_session: std::collections::HashSet<i64> = self
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Active)
            .map(|s| s.scale_set_id)
            .collect();
        let mut changed = false;
        for id in queued {
            let Some(labels) = self.jobs.get(&id).map(|j| j.spec.labels.clone()) else {
                continue;
            };
            let best = self
                .scale_sets
                .values()
                .filter(|ss| Self::matches(ss, &labels))
                .filter(|ss| {
                    !self.cfg.respect_max_capacity
                        || ss
                            .max_capacity
                            .is_none_or(|c| load.get(&ss.id).copied().unwrap_or(0) < c)
                })
                .map(|ss| (!with_session.contains(&ss.id), ss.id))
                .min();
            let Some((_, ss)) = best else {
                continue;
            };
            *load.entry(ss).or_insert(0) += 1;
            if let Some(job) = self.jobs.get_mut(&id) {
                job.phase = JobPhase::Available;
                job.scale_set_id = Some(ss);
                job.available_at = Some(now);
                job.acquired_at = None;
                job.assigned_at = None;
                job.runner_assigned_at = None;
            }
            self.emit_job("JobAvailable", id);
            changed = true;
        }
        changed
    }

    pub(super) fn pick_up(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        let idle: Vec<(i64, i64)> = self
            .runners
            .values()
            .filter(|r| r.connected_at.is_some() && r.job.is_none())
            .map(|r| (r.id, r.scale_set_id))
            .collect();
        for (rid, ss) in idle {
            let Some(job_id) = self
                .jobs
                .values()
                .find(|j| j.phase == JobPhase::Assigned && j.scale_set_id == Some(ss))
                .map(|j| j.id)
            else {
                continue;
            };
            let name = self
                .runners
                .get(&rid)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.phase = JobPhase::PickedUp;
                job.runner_id = Some(rid);
                job.runner_name = Some(name);
                job.runner_assigned_at = Some(now);
            }
            if let Some(r) = self.runners.get_mut(&rid) {
                r.job = Some(job_id);
            }
            self.runner_jobs_epoch += 1;
            changed = true;
        }
        changed
    }

    pub(super) fn pickup_timeouts(&mut self, now: DateTime<Utc>) -> bool {
        let timeout = td(self.cfg.runner_pickup_timeout);
        let expired: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| {
                j.phase == JobPhase::Assigned && j.assigned_at.is_some_and(|t| now - t >= timeout)
            })
            .map(|j| j.id)
            .collect();
        let changed = !expired.is_empty();
        for id in expired {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            job.result = Some(JobResult::Canceled);
            job.completed_at = Some(now);
            let snapshot = job.clone();
            let m = self.job_message("JobCompleted", &snapshot);
            if let Some(ss) = snapshot.scale_set_id {
                self.emit(ss, m);
            }
            let max = self.cfg.max_requeues;
            if let Some(job) = self.jobs.get_mut(&id) {
                if job.requeues < max {
                    job.requeues += 1;
                    job.phase = JobPhase::Queued;
                    job.scale_set_id = None;
                    job.result = None;
                    job.completed_at = None;
                } else {
                    job.phase = JobPhase::Completed;
                }
            }
        }
        changed
    }
}
