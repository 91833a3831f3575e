//! The set's proxy Secret for runner pods, `<set>-<h8(namespace)>-runner-proxy`
//! (docs/architecture.md#runner-proxy-secret): `http_proxy`, `https_proxy` and `no_proxy`,
//! credentials included.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use crate::crd::{EphemeralRunnerSet, ProxyConfig};
use crate::error::Error;
use crate::meta::integrity_hash;
use crate::names::{annotations, labels, runner_proxy_secret_name};

/// Field manager of the set controller's server-side applies.
pub const FIELD_MANAGER: &str = "ephemeralrunnerset-controller";

/// What reconciling the proxy Secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// No proxy configured, or the Secret is current.
    Unchanged,
    /// The Secret did not exist and was created.
    Created,
    /// An existing Secret was brought up to date.
    Updated,
}

/// Name of the set's proxy Secret.
pub fn secret_name(set: &EphemeralRunnerSet) -> String {
    runner_proxy_secret_name(&set.name_any(), &set.namespace().unwrap_or_default())
}

/// Creates or updates the proxy Secret when the runner spec has a proxy.
pub async fn reconcile(
    client: &kube::Client,
    set: &EphemeralRunnerSet,
) -> Result<ProxyOutcome, Error> {
    let Some(proxy) = set.spec.ephemeral_runner_spec.proxy.as_ref() else {
        return Ok(ProxyOutcome::Unchanged);
    };
    let namespace = set.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let data = proxy_data(&secrets, &namespace, proxy).await?;
    let desired = desired_secret(set, data);
    let name = secret_name(set);
    let existing = secrets.get_opt(&name).await?;
    let current_hash = existing
        .as_ref()
        .and_then(|s| s.annotations().get(annotations::INTEGRITY_HASH).cloned());
    let desired_hash = desired
        .annotations()
        .get(annotations::INTEGRITY_HASH)
        .cloned();
    if existing.is_some() && current_hash == desired_hash {
        return Ok(ProxyOutcome::Unchanged);
    }
    secrets
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?;
    Ok(if existing.is_some() {
        ProxyOutcome::Updated
    } else {
        ProxyOutcome::Created
    })
}

/// Deletes the proxy Secret; `true` while it still exists.
pub async fn delete(client: &kube::Client, set: &EphemeralRunnerSet) -> Result<bool, Error> {
    if set.spec.ephemeral_runner_spec.proxy.is_none() {
        return Ok(false);
    }
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &set.namespace().unwrap_or_default());
    let name = secret_name(set);
    if secrets.get_opt(&name).await?.is_none() {
        return Ok(false);
    }
    crate::controllers::delete_ignoring_missing(&secrets, &name).await?;
    Ok(true)
}

fn desired_secret(set: &EphemeralRunnerSet, data: BTreeMap<String, String>) -> Secret {
    let set_labels = set.labels();
    let copied: BTreeMap<String, String> = [labels::SCALE_SET_NAME, labels::SCALE_SET_NAMESPACE]
        .into_iter()
        .filter_map(|k| set_labels.get(k).map(|v| (k.to_owned(), v.clone())))
        .collect();
    let hash = integrity_hash(&data);
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(set)),
            namespace: set.namespace(),
            labels: Some(copied),
            annotations: Some(BTreeMap::from([(
                annotations::INTEGRITY_HASH.to_owned(),
                hash,
            )])),
            owner_references: set.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The URL text without the `/` path that parsing adds to a bare `http://host:port`, so the
/// env value reads like ARC's.
fn as_written(url: &url::Url, raw: &str) -> String {
    let text = url.to_string();
    if url.path() == "/" && !raw.ends_with('/') && url.query().is_none() && url.fragment().is_none()
    {
        text.trim_end_matches('/').to_owned()
    } else {
        text
    }
}

/// `http_proxy`, `https_proxy` (with `username:password` from the credential Secrets) and
/// `no_proxy`, each only when configured.
async fn proxy_data(
    secrets: &Api<Secret>,
    namespace: &str,
    proxy: &ProxyConfig,
) -> Result<BTreeMap<String, String>, Error> {
    let mut data = BTreeMap::new();
    for (key, field, server) in [
        ("http_proxy", "http", proxy.http.as_ref()),
        ("https_proxy", "https", proxy.https.as_ref()),
    ] {
        let Some(server) = server else { continue };
        let raw = server.url.as_deref().unwrap_or_default();
        if raw.is_empty() {
            continue;
        }
        let mut url = url::Url::parse(raw).map_err(|e| {
            Error::Config(format!(
                "spec.ephemeralRunnerSpec.proxy.{field}.url {raw:?} is not a URL ({e}); use http://host:port"
            ))
        })?;
        if let Some(secret) = server
            .credential_secret_ref
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            let found = secrets.get_opt(secret).await?.ok_or_else(|| {
                Error::Unavailable(format!(
                    "Secret {namespace}/{secret} (spec.ephemeralRunnerSpec.proxy.{field}.credentialSecretRef) was not found; create it with keys username and password"
                ))
            })?;
            let values = found.data.unwrap_or_default();
            let get = |k: &str| {
                values
                    .get(k)
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .unwrap_or_default()
            };
            let refused = || {
                Error::Unavailable(format!(
                    "spec.ephemeralRunnerSpec.proxy.{field}: the credentials of Secret {namespace}/{secret} cannot be put into the proxy URL"
                ))
            };
            url.set_username(&get("username")).map_err(|()| refused())?;
            url.set_password(Some(&get("password")))
                .map_err(|()| refused())?;
        }
        data.insert(key.to_owned(), as_written(&url, raw));
    }
    if let Some(list) = proxy.no_proxy.as_ref().filter(|l| !l.is_empty()) {
        data.insert("no_proxy".to_owned(), list.join(","));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::as_written;

    #[test]
    fn bare_proxy_urls_keep_their_written_form() {
        let parse = |s: &str| url::Url::parse(s).expect("url");
        let mut with_user = parse("http://proxy:3128");
        with_user.set_username("u").expect("user");
        assert_eq!(
            as_written(&with_user, "http://proxy:3128"),
            "http://u@proxy:3128"
        );
        assert_eq!(
            as_written(&parse("http://proxy:3128/"), "http://proxy:3128/"),
            "http://proxy:3128/"
        );
        assert_eq!(
            as_written(&parse("http://proxy:3128/p"), "http://proxy:3128/p"),
            "http://proxy:3128/p"
        );
    }
}
