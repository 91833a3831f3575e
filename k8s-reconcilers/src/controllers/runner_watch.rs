//! One watch of every EphemeralRunner for both controllers that read them: the runner controller
//! (its own kind) and the set controller (its children), on one cache; and the registrations the
//! set controller removed, which the runner controller need not remove again. With a watch each, the API
//! server sent every runner's every change twice, and the manager decoded and cached it twice
//! (docs/architecture.md#memory).

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use super::recent::RemovedRegistrations;
use super::{drop_managed_fields, ephemeral_runner, ephemeral_runner_set, watch_backoff};
use crate::Context;
use crate::crd::EphemeralRunner;

type Events = mpsc::UnboundedReceiver<Result<EphemeralRunner, watcher::Error>>;

/// Runs the EphemeralRunnerSet and EphemeralRunner controllers on one runner watch until they
/// stop.
pub async fn run(
    set_ctx: Arc<Context>,
    set_settings: ephemeral_runner_set::Settings,
    runner_ctx: Arc<Context>,
    runner_settings: ephemeral_runner::Settings,
) -> anyhow::Result<()> {
    let api: Api<EphemeralRunner> = super::watched_api(&runner_ctx);
    let (store, writer) = reflector::store();
    let shutdown = runner_ctx.options.shutdown.signal();
    let events = watcher(api, watcher::Config::default())
        .modify(drop_managed_fields)
        .reflect(writer)
        .backoff(watch_backoff())
        .take_until(shutdown);
    let (applied_tx, applied): (_, Events) = mpsc::unbounded();
    let (touched_tx, touched): (_, Events) = mpsc::unbounded();
    // Sends outlive a controller that stopped first: a closed channel is no error.
    let fan_out = events.for_each(move |event| {
        match event {
            Ok(watcher::Event::Apply(er) | watcher::Event::InitApply(er)) => {
                let _ = applied_tx.unbounded_send(Ok(er.clone()));
                let _ = touched_tx.unbounded_send(Ok(er));
            }
            Ok(watcher::Event::Delete(er)) => {
                let _ = touched_tx.unbounded_send(Ok(er));
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(e) => {
                tracing::warn!(error = %e, "EphemeralRunner watch failed; it retries with backoff");
            }
        }
        futures::future::ready(())
    });
    let shutdown = runner_ctx.options.shutdown.clone();
    // A controller that stops before the shutdown stops the other: the manager exits with it.
    let until_shutdown = |name: &'static str, stopped: anyhow::Result<()>| {
        stopped?;
        anyhow::ensure!(shutdown.triggered(), "{name} stopped unexpectedly");
        Ok(())
    };
    let removed = Arc::new(RemovedRegistrations::default());
    let runners = ephemeral_runner::run_on(
        runner_ctx,
        runner_settings,
        store.clone(),
        applied,
        removed.clone(),
    )
    .map(|r| until_shutdown(ephemeral_runner::CONTROLLER, r));
    let sets = ephemeral_runner_set::run_on(set_ctx, set_settings, store, touched, removed)
        .map(|r| until_shutdown(ephemeral_runner_set::CONTROLLER, r));
    futures::try_join!(fan_out.map(Ok), runners, sets).map(|_| ())
}
