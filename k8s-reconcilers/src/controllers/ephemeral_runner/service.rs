//! Actions service access for a runner: the client for its spec, and `RemoveRunner` with the
//! answers mapped onto `scaleset_core::ephemeral_runner::RemoveResult`.

use std::sync::Arc;

use kube::ResourceExt;
use scaleset_core::ephemeral_runner::{JOB_STILL_RUNNING_RETRY, RemoveResult};

use crate::Context;
use crate::crd::EphemeralRunner;
use crate::error::Error;
use crate::github::{ActionsService, ObjectSettings, ServiceError};

/// The service client for the runner's config URL, secret, proxy and CA.
pub async fn for_runner(
    ctx: &Context,
    er: &EphemeralRunner,
) -> Result<Arc<dyn ActionsService>, Error> {
    let namespace = er.namespace().unwrap_or_default();
    let spec = &er.spec;
    ctx.github
        .for_object(
            &ctx.client,
            ObjectSettings::for_runner_spec(&namespace, spec),
        )
        .await
}

/// `RemoveRunner(id)`: removed or already gone, the job still runs, or a failure.
pub async fn remove(service: &dyn ActionsService, id: i64) -> Result<RemoveResult, ServiceError> {
    match service.remove_runner(id).await {
        Ok(()) => Ok(RemoveResult::Removed),
        Err(e) if e.is_not_found() => Ok(RemoveResult::AlreadyGone),
        Err(e) if e.is_job_still_running() => Ok(RemoveResult::JobStillRunning),
        Err(e) => Err(e),
    }
}

/// `RemoveRunner(id)`, where a running job becomes a wait of
/// [`JOB_STILL_RUNNING_RETRY`].
pub async fn remove_or_wait(service: &dyn ActionsService, id: i64) -> Result<(), Error> {
    match remove(service, id).await.map_err(Error::Service)? {
        RemoveResult::Removed | RemoveResult::AlreadyGone => Ok(()),
        RemoveResult::JobStillRunning => Err(Error::Waiting {
            what: format!("the job of runner {id} to finish before it is removed"),
            retry_after: JOB_STILL_RUNNING_RETRY,
        }),
        RemoveResult::Failed => Err(Error::Waiting {
            what: format!("runner {id} removal"),
            retry_after: JOB_STILL_RUNNING_RETRY,
        }),
    }
}
