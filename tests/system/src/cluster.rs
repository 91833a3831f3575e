//! Small Kubernetes helpers: server-side apply of rendered objects and condition polling.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

/// The field manager of everything the harness applies.
pub(crate) const FIELD_MANAGER: &str = "arc-rs-system";

/// Server-side applies each object (resolving its kind through discovery), in order.
pub async fn apply(client: &kube::Client, objects: &[Value]) -> anyhow::Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in objects {
        let api_version = object["apiVersion"].as_str().context("apiVersion")?;
        let kind = object["kind"].as_str().context("kind")?;
        let name = object["metadata"]["name"]
            .as_str()
            .context("metadata.name")?;
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("{api_version} {kind} is not served by the API server"))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = object["metadata"]["namespace"]
                    .as_str()
                    .with_context(|| format!("{kind}/{name} has no namespace"))?;
                Api::namespaced_with(client.clone(), ns, &resource)
            }
        };
        api.patch(name, &params, &Patch::Apply(object))
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
    }
    Ok(())
}

/// Polls `check` every 200 ms until it returns `Ok(true)`; fails after `timeout` naming `what`
/// and the last error `check` returned.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            if last_error.is_empty() {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_error})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
