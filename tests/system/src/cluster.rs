//! Small Kubernetes helpers: server-side apply of rendered objects and condition polling.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
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

/// Polls `check` until it returns true, for at most `timeout` ([`testbed::eventually`]).
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    testbed::eventually(what, timeout, || {
        let next = check();
        async move { Ok(next.await?.then_some(())) }
    })
    .await
}
