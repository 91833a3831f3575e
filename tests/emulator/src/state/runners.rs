//! Runners (A11 to A14) and the simulated runner side.

use super::*;

impl State {
    pub(super) fn runner_json(&self, r: &RunnerRecord) -> Value {
        json!({
            "id": r.id,
            "name": r.name,
            "runnerScaleSetId": r.scale_set_id,
            "status": if r.connected_at.is_some() { "online" } else { "offline" },
            "busy": r.job.is_some(),
            "ephemeral": true,
        })
    }

    /// A11.
    pub fn generate_jit(
        &mut self,
        scale_set_id: i64,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let obj = parse_object(body)?;
        let name = match get_ci(&obj, "name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ApiError::bad_request(
                    "Field \"name\" must be a non-empty string.",
                ));
            }
        };
        let work_folder = match get_ci(&obj, "workFolder") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Field \"workFolder\" must be a string.",
                ));
            }
        };
        let ss = self.require_scale_set(scale_set_id)?.clone();
        if self
            .runners
            .values()
            .any(|r| r.name.eq_ignore_ascii_case(&name))
        {
            return Err(ApiError::vss(
                409,
                "TaskAgentExistsException",
                format!("Runner '{name}' already exists."),
            ));
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let client_id = uuid::Uuid::new_v4().to_string();
        let secret = tokens::opaque("");
        let encoded = self.encode_jit(id, &name, &ss, &work_folder, &client_id, &secret);
        self.issue("JIT runner secret", &secret);
        self.issue("JIT config", &encoded);
        self.jit_credentials.insert(
            client_id,
            JitCredential {
                runner_id: id,
                secret,
            },
        );
        let record = RunnerRecord {
            id,
            name,
            scale_set_id,
            work_folder,
            registered_at: now,
            connected_at: None,
            job: None,
        };
        let runner =
            json!({"id": record.id, "name": record.name, "runnerScaleSetId": scale_set_id});
        self.runners.insert(id, record);
        Ok(json!({"runner": runner, "encodedJITConfig": encoded}))
    }

    pub(super) fn encode_jit(
        &self,
        id: i64,
        name: &str,
        ss: &ScaleSetRecord,
        work_folder: &str,
        client_id: &str,
        secret: &str,
    ) -> String {
        let s = self.actions_url();
        let runner = json!({
            "AgentId": id.to_string(),
            "AgentName": name,
            "PoolId": 0,
            "PoolName": self.group_name(ss.runner_group_id),
            "ServerUrl": s,
            "GitHubUrl": self.base_url,
            "WorkFolder": if work_folder.is_empty() { "_work" } else { work_folder },
            "Ephemeral": true,
            "DisableUpdate": ss.disable_update,
            "RunnerScaleSetId": ss.id,
            "EmulatorRunnerApiUrl": format!("{}/_runner/", self.base_url),
        });
        let credentials = json!({
            "Scheme": "OAuth",
            "Data": {
                "ClientId": client_id,
                "AuthorizationUrl": format!("{s}_apis/oauth2/token/{client_id}"),
                "RequireFipsCryptography": "True",
            }
        });
        let rsa = json!({"d": secret, "exponent": "AQAB"});
        let files = json!({
            ".runner": STANDARD.encode(runner.to_string()),
            ".credentials": STANDARD.encode(credentials.to_string()),
            ".credentials_rsaparams": STANDARD.encode(rsa.to_string()),
        });
        STANDARD.encode(files.to_string())
    }

    /// A12.
    pub fn get_runner(&self, id: i64) -> Result<Value, ApiError> {
        self.runners
            .get(&id)
            .map(|r| self.runner_json(r))
            .ok_or_else(|| {
                ApiError::vss(
                    404,
                    "TaskAgentNotFoundException",
                    format!("No runner with id {id} exists."),
                )
            })
    }

    /// A13.
    pub fn runners_by_name(&self, name: Option<&str>) -> Value {
        let values = self
            .runners
            .values()
            .filter(|r| name.is_none_or(|n| r.name.eq_ignore_ascii_case(n)))
            .map(|r| self.runner_json(r))
            .collect();
        list(values)
    }

    /// A14: 204 for unknown or idle runners, JobStillRunning for busy ones.
    pub fn remove_runner(&mut self, id: i64) -> Result<(), ApiError> {
        if let Some(r) = self.runners.get(&id)
            && r.job.is_some()
        {
            return Err(ApiError::vss(
                400,
                "TaskAgentJobStillRunningException",
                format!("Runner {} is still running a job.", r.name),
            ));
        }
        self.drop_runner(id);
        Ok(())
    }

    pub(super) fn drop_runner(&mut self, id: i64) {
        self.runners.remove(&id);
        self.jit_credentials.retain(|_, c| c.runner_id != id);
        self.runner_tokens.retain(|_, r| *r != id);
        self.runner_jobs_epoch += 1;
    }

    /// A simulated runner presents its JIT config; works once.
    pub fn runner_connect(
        &mut self,
        encoded: &str,
        now: DateTime<Utc>,
    ) -> Result<RunnerConnection, ApiError> {
        let invalid = || ApiError::Plain {
            status: 401,
            body: "JIT configuration is invalid, unknown or already used.".to_owned(),
        };
        let (client_id, secret) = decode_jit(encoded).ok_or_else(invalid)?;
        let cred = self.jit_credentials.get(&client_id).ok_or_else(invalid)?;
        if cred.secret != secret {
            return Err(invalid());
        }
        let runner_id = cred.runner_id;
        self.jit_credentials.remove(&client_id);
        let deprecated = self.cfg.runner_version_deprecated;
        let runner = self.runners.get_mut(&runner_id).ok_or_else(invalid)?;
        if deprecated {
            return Ok(RunnerConnection {
                runner_id,
                runner_name: runner.name.clone(),
                scale_set_id: runner.scale_set_id,
                runner_token: String::new(),
                version_deprecated: true,
            });
        }
        runner.connected_at = Some(now);
        let token = tokens::opaque("rt_");
        let conn = RunnerConnection {
            runner_id,
            runner_name: runner.name.clone(),
            scale_set_id: runner.scale_set_id,
            runner_token: token.clone(),
            version_deprecated: false,
        };
        self.issue("runner token", &token);
        self.runner_tokens.insert(token, runner_id);
        Ok(conn)
    }

    pub(super) fn runner_for_token(&self, token: &str) -> Result<i64, ApiError> {
        self.runner_tokens
            .get(token)
            .copied()
            .ok_or(ApiError::Plain {
                status: 404,
                body: "Runner is not registered (removed, completed or never connected)."
                    .to_owned(),
            })
    }

    /// The job picked up by the runner, if any yet.
    pub fn runner_job(&self, token: &str) -> Result<Option<RunnerJob>, ApiError> {
        let rid = self.runner_for_token(token)?;
        let job = self
            .runners
            .get(&rid)
            .and_then(|r| r.job)
            .and_then(|j| self.jobs.get(&j));
        Ok(job.map(|j| RunnerJob {
            runner_request_id: j.id,
            job_id: j.job_id.clone(),
            duration: j.spec.duration,
            result: j.spec.result,
            labels: j.spec.labels.clone(),
        }))
    }

    pub(super) fn runner_current_job(&self, token: &str) -> Result<(i64, i64), ApiError> {
        let rid = self.runner_for_token(token)?;
        let job = self
            .runners
            .get(&rid)
            .and_then(|r| r.job)
            .ok_or(ApiError::Plain {
                status: 409,
                body: "Runner has no job.".to_owned(),
            })?;
        Ok((rid, job))
    }

    /// The runner reports that its job started (`JobStarted`).
    pub fn runner_started(&mut self, token: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
        let (_, job_id) = self.runner_current_job(token)?;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Err(ApiError::not_found());
        };
        if job.phase != JobPhase::PickedUp {
            return Err(ApiError::Plain {
                status: 409,
                body: format!("Job {job_id} is {:?}, not waiting to start.", job.phase),
            });
        }
        job.phase = JobPhase::Running;
        job.started_at = Some(now);
        self.emit_job("JobStarted", job_id);
        Ok(())
    }

    /// The runner reports completion (`JobCompleted`); the ephemeral runner is deregistered.
    pub fn runner_completed(
        &mut self,
        token: &str,
        result: Option<JobResult>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let (rid, job_id) = self.runner_current_job(token)?;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Err(ApiError::not_found());
        };
        if job.phase == JobPhase::PickedUp {
            job.started_at = Some(now);
            job.phase = JobPhase::Running;
            self.emit_job("JobStarted", job_id);
        }
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Err(ApiError::not_found());
        };
        job.phase = JobPhase::Completed;
        job.result = Some(result.unwrap_or(job.spec.result));
        job.completed_at = Some(now);
        self.emit_job("JobCompleted", job_id);
        self.drop_runner(rid);
        Ok(())
    }

    /// The runner goes away without finishing its job: a picked-up job goes back to assigned, a
    /// running one fails (`JobCompleted{result:"failed"}`, as when GitHub loses a runner). The
    /// runner stays registered, offline, until removed (A14).
    pub fn runner_disconnect(&mut self, token: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
        let rid = self.runner_for_token(token)?;
        let job_id = self.runners.get(&rid).and_then(|r| r.job);
        if let Some(job_id) = job_id
            && let Some(job) = self.jobs.get_mut(&job_id)
        {
            match job.phase {
                JobPhase::PickedUp => {
                    job.phase = JobPhase::Assigned;
                    job.runner_id = None;
                    job.runner_name = None;
                    job.runner_assigned_at = None;
                }
                JobPhase::Running => {
                    job.phase = JobPhase::Completed;
                    job.result = Some(JobResult::Failed);
                    job.completed_at = Some(now);
                    self.emit_job("JobCompleted", job_id);
                }
                _ => {}
            }
        }
        if let Some(r) = self.runners.get_mut(&rid) {
            r.job = None;
            r.connected_at = None;
        }
        self.runner_tokens.retain(|_, r| *r != rid);
        self.runner_jobs_epoch += 1;
        Ok(())
    }
}

pub(super) fn decode_jit(encoded: &str) -> Option<(String, String)> {
    let outer: Map<String, Value> =
        serde_json::from_slice(&STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let file = |name: &str| -> Option<Value> {
        let b64 = outer.get(name)?.as_str()?;
        serde_json::from_slice(&STANDARD.decode(b64).ok()?).ok()
    };
    let creds = file(".credentials")?;
    let client_id = creds.get("Data")?.get("ClientId")?.as_str()?.to_owned();
    let rsa = file(".credentials_rsaparams")?;
    let secret = rsa.get("d")?.as_str()?.to_owned();
    Some((client_id, secret))
}
