//! Counts every Actions service call by operation and outcome
//! (`arc_actions_service_calls_total`).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use scaleset_core::registrations::ListedRunner;

use super::{
    ActionsService, JitConfig, NewScaleSet, RunnerGroup, RunnerInfo, ScaleSet, ScaleSetPatch,
    ServiceError, ServiceErrorKind,
};
use crate::metrics::{Metrics, ServiceCallLabels};

/// An [`ActionsService`] that records each call's outcome in [`Metrics::service_calls`].
pub struct Instrumented {
    inner: Arc<dyn ActionsService>,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ActionsService>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn count<'a, T: Send + 'a>(
        &'a self,
        operation: &'static str,
        call: BoxFuture<'a, Result<T, ServiceError>>,
    ) -> BoxFuture<'a, Result<T, ServiceError>> {
        call.map(move |result| {
            self.metrics
                .service_calls
                .get_or_create(&ServiceCallLabels {
                    operation: operation.to_owned(),
                    outcome: outcome(&result).to_owned(),
                })
                .inc();
            result
        })
        .boxed()
    }
}

fn outcome<T>(result: &Result<T, ServiceError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => match e.kind {
            ServiceErrorKind::NotFound => "not_found",
            ServiceErrorKind::RunnerExists => "runner_exists",
            ServiceErrorKind::JobStillRunning => "job_still_running",
            ServiceErrorKind::Unauthorized => "unauthorized",
            ServiceErrorKind::Invalid => "invalid",
            ServiceErrorKind::Transient => "transient",
            ServiceErrorKind::Unreachable => "unreachable",
            ServiceErrorKind::RateLimited => "rate_limited",
            ServiceErrorKind::Configuration => "configuration",
        },
    }
}

impl ActionsService for Instrumented {
    fn get_runner_group_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RunnerGroup, ServiceError>> {
        self.count(
            "GetRunnerGroupByName",
            self.inner.get_runner_group_by_name(name),
        )
    }
    fn get_runner_scale_set<'a>(
        &'a self,
        runner_group_id: i64,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ScaleSet>, ServiceError>> {
        self.count(
            "GetRunnerScaleSet",
            self.inner.get_runner_scale_set(runner_group_id, name),
        )
    }
    fn get_runner_scale_set_by_id(
        &self,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<ScaleSet>, ServiceError>> {
        self.count(
            "GetRunnerScaleSetById",
            self.inner.get_runner_scale_set_by_id(id),
        )
    }
    fn create_runner_scale_set(
        &self,
        new: NewScaleSet,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>> {
        self.count(
            "CreateRunnerScaleSet",
            self.inner.create_runner_scale_set(new),
        )
    }
    fn update_runner_scale_set(
        &self,
        id: i64,
        patch: ScaleSetPatch,
    ) -> BoxFuture<'_, Result<ScaleSet, ServiceError>> {
        self.count(
            "UpdateRunnerScaleSet",
            self.inner.update_runner_scale_set(id, patch),
        )
    }
    fn delete_runner_scale_set(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        self.count(
            "DeleteRunnerScaleSet",
            self.inner.delete_runner_scale_set(id),
        )
    }
    fn generate_jit_runner_config<'a>(
        &'a self,
        scale_set_id: i64,
        name: &'a str,
        work_folder: &'a str,
    ) -> BoxFuture<'a, Result<JitConfig, ServiceError>> {
        self.count(
            "GenerateJitRunnerConfig",
            self.inner
                .generate_jit_runner_config(scale_set_id, name, work_folder),
        )
    }
    fn get_runner_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunnerInfo>, ServiceError>> {
        self.count("GetRunnerByName", self.inner.get_runner_by_name(name))
    }
    fn remove_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        self.count("RemoveRunner", self.inner.remove_runner(id))
    }
    fn list_self_hosted_runners(&self) -> BoxFuture<'_, Result<Vec<ListedRunner>, ServiceError>> {
        self.count(
            "ListSelfHostedRunners",
            self.inner.list_self_hosted_runners(),
        )
    }
    fn delete_self_hosted_runner(&self, id: i64) -> BoxFuture<'_, Result<(), ServiceError>> {
        self.count(
            "DeleteSelfHostedRunner",
            self.inner.delete_self_hosted_runner(id),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::github::memory::MemoryService;

    #[tokio::test]
    async fn calls_are_counted_by_operation_and_outcome() {
        let metrics = Arc::new(Metrics::default());
        let service = Instrumented::new(Arc::new(MemoryService::new()), metrics.clone());
        service.get_runner_group_by_name("Default").await.unwrap();
        service.get_runner_group_by_name("nope").await.unwrap_err();
        service.get_runner_group_by_name("nope").await.unwrap_err();
        let get = |op: &str, outcome: &str| {
            metrics
                .service_calls
                .get_or_create(&ServiceCallLabels {
                    operation: op.into(),
                    outcome: outcome.into(),
                })
                .get()
        };
        assert_eq!(get("GetRunnerGroupByName", "ok"), 1);
        assert_eq!(get("GetRunnerGroupByName", "not_found"), 2);

        let memory = MemoryService::new();
        memory.with(|s| s.busy_runners.push(7));
        let service = Instrumented::new(Arc::new(memory), metrics.clone());
        assert!(service.list_self_hosted_runners().await.unwrap().is_empty());
        let busy = service.delete_self_hosted_runner(7).await.unwrap_err();
        assert!(busy.is_job_still_running(), "{busy}");
        assert_eq!(get("ListSelfHostedRunners", "ok"), 1);
        assert_eq!(get("DeleteSelfHostedRunner", "job_still_running"), 1);
    }
}
