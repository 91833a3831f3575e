//! Runner groups and scale sets (A1 to A6).

use super::*;

impl State {
    /// A1: groups with this name (case-insensitive), or all groups.
    pub fn runner_groups(&self, name: Option<&str>) -> Value {
        let values = self
            .groups
            .iter()
            .filter(|g| name.is_none_or(|n| g.name.eq_ignore_ascii_case(n)))
            .map(|g| {
                let size = self
                    .scale_sets
                    .values()
                    .filter(|s| s.runner_group_id == g.id)
                    .count();
                json!({"id": g.id, "name": g.name, "size": size, "isDefaultGroup": g.is_default_group})
            })
            .collect();
        list(values)
    }

    pub(super) fn group_name(&self, id: i64) -> String {
        self.groups
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.name.clone())
            .unwrap_or_default()
    }

    /// Statistics of a scale set, computed from jobs and runners.
    pub fn statistics(&self, scale_set_id: i64) -> Statistics {
        let mut s = Statistics::default();
        for job in self
            .jobs
            .values()
            .filter(|j| j.scale_set_id == Some(scale_set_id))
        {
            match job.phase {
                JobPhase::Available => s.total_available_jobs += 1,
                JobPhase::Acquired => s.total_acquired_jobs += 1,
                JobPhase::Assigned | JobPhase::PickedUp => s.total_assigned_jobs += 1,
                JobPhase::Running => {
                    s.total_assigned_jobs += 1;
                    s.total_running_jobs += 1;
                }
                JobPhase::Queued | JobPhase::Completed => {}
            }
        }
        for runner in self
            .runners
            .values()
            .filter(|r| r.scale_set_id == scale_set_id)
        {
            s.total_registered_runners += 1;
            if runner.job.is_some() {
                s.total_busy_runners += 1;
            } else {
                s.total_idle_runners += 1;
            }
        }
        s
    }

    pub(super) fn scale_set_json(&self, ss: &ScaleSetRecord, with_stats: bool) -> Value {
        let labels: Vec<Value> = ss
            .labels
            .iter()
            .map(|l| json!({"type": "System", "name": l}))
            .collect();
        let stats = if with_stats {
            json!(self.statistics(ss.id))
        } else {
            Value::Null
        };
        json!({
            "id": ss.id,
            "name": ss.name,
            "runnerGroupId": ss.runner_group_id,
            "runnerGroupName": self.group_name(ss.runner_group_id),
            "labels": labels,
            "runnerSetting": {"ephemeral": true, "isElastic": true, "disableUpdate": ss.disable_update},
            "createdOn": ts(ss.created_on),
            "runnerJitConfigUrl": format!("{}_apis/runtime/runnerscalesets/{}/generatejitconfig", self.actions_url(), ss.id),
            "statistics": stats,
        })
    }

    pub(super) fn scale_set_not_found(&self, id: i64) -> Result<Value, ApiError> {
        match &self.cfg.scale_set_not_found {
            Some(spec) => Err(ApiError::from_spec(
                spec,
                format!("Runner scale set {id} not found."),
            )),
            None => Ok(Value::Null),
        }
    }

    pub(super) fn require_scale_set(&self, id: i64) -> Result<&ScaleSetRecord, ApiError> {
        self.scale_sets.get(&id).ok_or_else(|| {
            let spec = self.cfg.scale_set_not_found.clone().unwrap_or_else(|| {
                crate::config::ErrorSpec::new(404, "RunnerScaleSetNotFoundException")
            });
            ApiError::from_spec(&spec, format!("Runner scale set {id} not found."))
        })
    }

    /// A2 / P1: scale sets filtered by group and name.
    pub fn list_scale_sets(&self, group: Option<i64>, name: Option<&str>) -> Value {
        let values = self
            .scale_sets
            .values()
            .filter(|s| group.is_none_or(|g| s.runner_group_id == g))
            .filter(|s| name.is_none_or(|n| s.name.eq_ignore_ascii_case(n)))
            .map(|s| self.scale_set_json(s, true))
            .collect();
        list(values)
    }

    /// A3.
    pub fn get_scale_set(&self, id: i64) -> Result<Value, ApiError> {
        match self.scale_sets.get(&id) {
            Some(ss) => Ok(self.scale_set_json(ss, true)),
            None => self.scale_set_not_found(id),
        }
    }

    pub(super) fn name_taken(&self, group: i64, name: &str, except: Option<i64>) -> bool {
        self.scale_sets.values().any(|s| {
            s.runner_group_id == group && s.name.eq_ignore_ascii_case(name) && Some(s.id) != except
        })
    }

    /// A4.
    pub fn create_scale_set(&mut self, body: &[u8], now: DateTime<Utc>) -> Result<Value, ApiError> {
        let obj = parse_object(body)?;
        let fields = ScaleSetFields::parse(&obj)?;
        let name = fields.name.filter(|n| !n.is_empty()).ok_or_else(|| {
            ApiError::bad_request("Runner scale set name is required (field \"name\").")
        })?;
        let group = fields.runner_group_id.filter(|g| *g != 0).unwrap_or(1);
        if !self.groups.iter().any(|g| g.id == group) {
            return Err(ApiError::vss(
                404,
                "RunnerGroupNotFoundException",
                format!("Runner group {group} not found."),
            ));
        }
        if self.name_taken(group, &name, None) {
            return Err(ApiError::from_spec(
                &self.cfg.duplicate_scale_set,
                format!(
                    "A runner scale set named '{name}' already exists in runner group {group}."
                ),
            ));
        }
        let labels = self.effective_labels(&name, fields.labels.unwrap_or_default());
        let id = self.next_scale_set_id;
        self.next_scale_set_id += 1;
        let record = ScaleSetRecord {
            id,
            name,
            runner_group_id: group,
            labels,
            disable_update: fields.disable_update.unwrap_or(false),
            created_on: now,
            max_capacity: None,
            statistics: Statistics::default(),
        };
        let out = self.scale_set_json(&record, false);
        self.scale_sets.insert(id, record);
        self.queues.entry(id).or_default();
        Ok(out)
    }

    pub(super) fn effective_labels(&self, name: &str, requested: Vec<String>) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        let source = if requested.is_empty() {
            vec![name.to_owned()]
        } else {
            requested
        };
        for l in source {
            if !l.is_empty() && !labels.iter().any(|x| x.eq_ignore_ascii_case(&l)) {
                labels.push(l);
            }
        }
        if !self.cfg.custom_labels_enabled {
            labels = vec![name.to_owned()];
        }
        labels
    }

    /// A5: merges non-zero fields.
    pub fn update_scale_set(&mut self, id: i64, body: &[u8]) -> Result<Value, ApiError> {
        let obj = parse_object(body)?;
        let fields = ScaleSetFields::parse(&obj)?;
        let current = self.require_scale_set(id)?.clone();
        let name = fields
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| current.name.clone());
        let group = fields
            .runner_group_id
            .filter(|g| *g != 0)
            .unwrap_or(current.runner_group_id);
        if !self.groups.iter().any(|g| g.id == group) {
            return Err(ApiError::vss(
                404,
                "RunnerGroupNotFoundException",
                format!("Runner group {group} not found."),
            ));
        }
        if self.name_taken(group, &name, Some(id)) {
            return Err(ApiError::from_spec(
                &self.cfg.duplicate_scale_set,
                format!(
                    "A runner scale set named '{name}' already exists in runner group {group}."
                ),
            ));
        }
        let labels = match fields.labels {
            Some(l) if !l.is_empty() => self.effective_labels(&name, l),
            _ => current.labels.clone(),
        };
        let record = ScaleSetRecord {
            name,
            runner_group_id: group,
            labels,
            disable_update: current.disable_update || fields.disable_update == Some(true),
            ..current
        };
        let out = self.scale_set_json(&record, true);
        self.scale_sets.insert(id, record);
        Ok(out)
    }

    /// A6 and the "lose a scale set" fault: removes the set, ends its sessions, drops its runners,
    /// requeues its waiting jobs and cancels its running ones.
    pub fn delete_scale_set(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), ApiError> {
        self.require_scale_set(id)?;
        self.scale_sets.remove(&id);
        self.queues.remove(&id);
        for s in self.sessions.values_mut().filter(|s| s.scale_set_id == id) {
            if s.state == SessionState::Active {
                s.state = SessionState::Deleted;
            }
        }
        let runner_ids: Vec<i64> = self
            .runners
            .values()
            .filter(|r| r.scale_set_id == id)
            .map(|r| r.id)
            .collect();
        for rid in runner_ids {
            self.drop_runner(rid);
        }
        for job in self
            .jobs
            .values_mut()
            .filter(|j| j.scale_set_id == Some(id))
        {
            match job.phase {
                JobPhase::Available | JobPhase::Acquired | JobPhase::Assigned => {
                    job.phase = JobPhase::Queued;
                    job.scale_set_id = None;
                }
                JobPhase::PickedUp | JobPhase::Running => {
                    job.phase = JobPhase::Completed;
                    job.result = Some(JobResult::Canceled);
                    job.completed_at = Some(now);
                }
                JobPhase::Queued | JobPhase::Completed => {}
            }
        }
        Ok(())
    }
}

/// Scale-set fields read leniently from a create or update body.
struct ScaleSetFields {
    name: Option<String>,
    runner_group_id: Option<i64>,
    labels: Option<Vec<String>>,
    disable_update: Option<bool>,
}

impl ScaleSetFields {
    pub(super) fn parse(obj: &Map<String, Value>) -> Result<Self, ApiError> {
        let name = match get_ci(obj, "name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ApiError::bad_request("Field \"name\" must be a string.")),
        };
        let runner_group_id = match get_ci(obj, "runnerGroupId") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Field \"runnerGroupId\" must be an integer, got {v}."
                ))
            })?),
        };
        let labels = match get_ci(obj, "labels") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    let label = item
                        .as_object()
                        .and_then(|o| get_ci(o, "name"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "Each label must be an object {{\"type\",\"name\"}}, got {item}."
                            ))
                        })?;
                    out.push(label.to_owned());
                }
                Some(out)
            }
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "Field \"labels\" must be an array, got {v}."
                )));
            }
        };
        let disable_update = match get_ci(obj, "runnerSetting") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => match get_ci(o, "disableUpdate") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(v) => {
                    return Err(ApiError::bad_request(format!(
                        "Field \"runnerSetting.disableUpdate\" must be a boolean, got {v}."
                    )));
                }
            },
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "Field \"runnerSetting\" must be an object, got {v}."
                )));
            }
        };
        Ok(Self {
            name,
            runner_group_id,
            labels,
            disable_update,
        })
    }
}
