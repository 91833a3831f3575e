//! An in-process Actions service with the semantics the controllers rely on (runner groups,
//! scale sets, JIT registrations and their REST listing, `JobStillRunning`), for tests that run
//! the reconcilers against a real API server without an HTTP service. Faults can be injected per
//! operation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use scaleset_core::registrations::ListedRunner;
use secrecy::SecretString;

use super::{
    ActionsService, Connector, JitConfig, NewScaleSet, RunnerGroup, RunnerInfo, ScaleSet,
    ScaleSetPatch, ServiceConfig, ServiceError, ServiceErrorKind,
};

/// State of the in-process service.
#[derive(Debug, Default)]
pub struct MemoryState {
    /// Runner groups by name (the default group, id 1, always exists).
    pub groups: BTreeMap<String, i64>,
    /// Scale sets by id.
    pub scale_sets: BTreeMap<i64, ScaleSet>,
    /// Registered runners by id.
    pub runners: BTreeMap<i64, RunnerInfo>,
    /// Runner ids whose job is still running (removal fails with `JobStillRunning`).
    pub busy_runners: Vec<i64>,
    /// Operations that fail once with the given kind.
    pub faults: BTreeMap<&'static str, ServiceErrorKind>,
    /// Scale set names every create refuses as invalid, until they are taken out.
    pub refused_names: BTreeSet<String>,
    /// Every call, in order: operation name.
    pub calls: Vec<&'static str>,
    /// Config URLs clients were built for.
    pub connected: Vec<String>,
    next_id: i64,
}

/// The in-process service; cheap to clone, all clones share state.
#[derive(Clone, Debug, Default)]
pub struct MemoryService {
    state: Arc<Mutex<MemoryState>>,
}

impl MemoryService {
    /// A service with only the default runner group.
    pub fn new() -> Self {
        let service = Self::default();
        service.with(|s| {
            s.groups.insert("Default".into(), 1);
            s.next_id = 100;
        });
        service
    }

    /// Runs `f` on the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> T {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Adds a runner group and returns its id.
    pub fn add_group(&self, name: &str) -> i64 {
        self.with(|s| {
            s.next_id += 1;
            let id = s.next_id;
            s.groups.insert(name.to_owned(), id);
            id
        })
    }

    /// A connector handing out this service for every config.
    pub fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(self.clone())
    }

    fn call<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut MemoryState) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        self.with(|s| {
            s.calls.push(op);
            if let Some(kind) = s.faults.remove(op) {
                return Err(ServiceError::new(kind, op, "injected fault"));
            }
            f(s)
        })
    }
}

fn group_name(s: &MemoryState, id: i64) -> String {
    s.groups
        .iter()
        .find(|(_, g)| **g == id)
        .map(|(n, _)| n.clone())
        .unwrap_or_default()
}

impl ActionsService for MemoryService {
    fn get_runner_group_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RunnerGroup, ServiceError>> {
        let r = self.call("get_runner_group_by_name", |s| {
            s.groups
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(n, id)| RunnerGroup {
                    id: *id,
                    name: n.clone(),
                })
                .ok_or_else(|| {
                    ServiceError::new(
                        ServiceErrorKind::NotFound,
                        "get_runner_group_by_name",
                        format!("no runner group named {name:?}"),
                    )
                })
        });
        Box::pin(async move { r })
    }

    fn get_runner_scale_set<'a>(
        &'a self,
        runner_group_id: i64,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScaleSet>, ServiceError>> {
        let r = self.call("get_runner_scale_set", |s| {
            Ok(s.scale_sets
                .values()
                .find(|x| x.runner_group_id == runner_group_id && x.name.eq_ignore_ascii_case(name))
                .cloned())
        });
        Box::pin(async move { r })
    }

    fn get_runner_scale_set_by_id(
        &self,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<ScaleSet>, ServiceError>> {
        let r = self.call("get_runner_scale_set_by_id", |s| {
            Ok(s.scale_sets.get(&id).cloned())
        });
        Box::pin(async move { r })
    }

    fn create_runner_scale_set(
        &self,
        new: NewScaleSet,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>> {
        let r = self.call("create_runner_scale_set", |s| {
            if s.refused_names.contains(&new.name) {
                return Err(ServiceError::new(
                    ServiceErrorKind::Invalid,
                    "create_runner_scale_set",
                    format!("refused name {:?}", new.name),
                ));
            }
            s.next_id += 1;
            let set = ScaleSet {
                id: s.next_id,
                name: new.name,
                runner_group_id: new.runner_group_id,
                runner_group_name: group_name(s, new.runner_group_id),
                labels: new.labels,
            };
            s.scale_sets.insert(set.id, set.clone());
            Ok(set)
        });
        Box::pin(async move { r })
    }

    fn update_runner_scale_set(
        &self,
        id: i64,
        patch: ScaleSetPatch,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>> {
        let r = self.call("update_runner_scale_set", |s| {
            let group = patch.runner_group_id.map(|g| (g, group_name(s, g)));
            let set = s.scale_sets.get_mut(&id).ok_or_else(|| {
                ServiceError::new(
                    ServiceErrorKind::NotFound,
                    "update_runner_scale_set",
                    "no such scale set",
                )
            })?;
            if let Some(name) = patch.name {
                set.name = name;
            }
            if let Some((gid, gname)) = group {
                set.runner_group_id = gid;
                set.runner_group_name = gname;
            }
            if let Some(labels) = patch.labels {
                set.labels = labels;
            }
            Ok(set.clone())
        });
        Box::pin(async move { r })
    }

    fn delete_runner_scale_set(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        let r = self.call("delete_runner_scale_set", |s| {
            s.scale_sets.remove(&id);
            s.runners.retain(|_, r| r.runner_scale_set_id != id);
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn generate_jit_runner_config<'a>(
        &'a self,
        scale_set_id: i64,
        name: &'a str,
        _work_folder: &'a str,
    ) -> BoxFuture<'a, Result<JitConfig, ServiceError>> {
        let r = self.call("generate_jit_runner_config", |s| {
            if !s.scale_sets.contains_key(&scale_set_id) {
                return Err(ServiceError::new(
                    ServiceErrorKind::NotFound,
                    "generate_jit_runner_config",
                    format!("scale set {scale_set_id} not found"),
                ));
            }
            if s.runners.values().any(|r| r.name == name) {
                return Err(ServiceError::new(
                    ServiceErrorKind::RunnerExists,
                    "generate_jit_runner_config",
                    format!("AgentExistsException: runner {name} exists"),
                ));
            }
            s.next_id += 1;
            let runner = RunnerInfo {
                id: s.next_id,
                name: name.to_owned(),
                runner_scale_set_id: scale_set_id,
            };
            s.runners.insert(runner.id, runner.clone());
            Ok(JitConfig {
                encoded_jit_config: SecretString::from(format!("jit-{}", runner.id)),
                runner,
            })
        });
        Box::pin(async move { r })
    }

    fn get_runner_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunnerInfo>, ServiceError>> {
        let r = self.call("get_runner_by_name", |s| {
            Ok(s.runners.values().find(|r| r.name == name).cloned())
        });
        Box::pin(async move { r })
    }

    fn remove_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        let r = self.call("remove_runner", |s| {
            if s.busy_runners.contains(&id) {
                return Err(ServiceError::new(
                    ServiceErrorKind::JobStillRunning,
                    "remove_runner",
                    "JobStillRunningException",
                ));
            }
            s.runners.remove(&id);
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn list_self_hosted_runners(&self) -> BoxFuture<'_, Result<Vec<ListedRunner>, ServiceError>> {
        let r = self.call("list_self_hosted_runners", |s| {
            Ok(s.runners
                .values()
                .map(|r| {
                    let set = s.scale_sets.get(&r.runner_scale_set_id);
                    ListedRunner {
                        id: r.id,
                        name: r.name.clone(),
                        busy: s.busy_runners.contains(&r.id),
                        labels: set.map(|x| x.labels.clone()).unwrap_or_default(),
                        runner_group_id: set.map(|x| x.runner_group_id),
                    }
                })
                .collect())
        });
        Box::pin(async move { r })
    }

    fn delete_self_hosted_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        let r = self.call("delete_self_hosted_runner", |s| {
            if s.busy_runners.contains(&id) {
                return Err(ServiceError::new(
                    ServiceErrorKind::JobStillRunning,
                    "delete_self_hosted_runner",
                    "Runner is still running a job",
                ));
            }
            s.runners.remove(&id);
            Ok(())
        });
        Box::pin(async move { r })
    }
}

impl Connector for MemoryService {
    fn connect(
        &self,
        config: ServiceConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn ActionsService>, ServiceError>> {
        self.with(|s| s.connected.push(config.config_url.clone()));
        let service: Arc<dyn ActionsService> = Arc::new(self.clone());
        Box::pin(async move { Ok(service) })
    }
}
