//! Writing kubeconfig files for the admin and for minted identities.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use kube::config::{
    AuthInfo, Cluster, Context as KubeContext, KubeConfigOptions, Kubeconfig, NamedAuthInfo,
    NamedCluster, NamedContext,
};
use secrecy::SecretString;

/// The credentials of one identity.
pub(crate) enum Credentials<'a> {
    Token(&'a str),
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
}

/// A kubeconfig for `server`, trusting `ca_pem`, authenticating as `user` with `credentials`.
pub(crate) fn new_kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: Credentials<'_>,
) -> Kubeconfig {
    let cluster = Cluster {
        server: Some(server.to_owned()),
        certificate_authority_data: Some(
            base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()),
        ),
        ..Cluster::default()
    };
    let base = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "testbed".to_owned(),
            cluster: Some(cluster),
            ..NamedCluster::default()
        }],
        contexts: vec![NamedContext {
            name: "testbed".to_owned(),
            context: Some(KubeContext {
                cluster: "testbed".to_owned(),
                user: Some("testbed".to_owned()),
                ..KubeContext::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some("testbed".to_owned()),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Kubeconfig::default()
    };
    for_identity(&base, user, credentials)
}

/// `base` reduced to its current context's cluster, authenticating as `user` instead.
pub(crate) fn for_identity(
    base: &Kubeconfig,
    user: &str,
    credentials: Credentials<'_>,
) -> Kubeconfig {
    let current = base.current_context.clone().unwrap_or_default();
    let context = base
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone());
    let cluster_name = context
        .as_ref()
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let clusters = base
        .clusters
        .iter()
        .filter(|c| c.name == cluster_name)
        .cloned()
        .collect();
    let auth_info = match credentials {
        Credentials::Token(token) => AuthInfo {
            token: Some(SecretString::from(token.to_owned())),
            ..AuthInfo::default()
        },
        Credentials::ClientCert { cert_pem, key_pem } => AuthInfo {
            client_certificate_data: Some(
                base64::engine::general_purpose::STANDARD.encode(cert_pem.as_bytes()),
            ),
            client_key_data: Some(SecretString::from(
                base64::engine::general_purpose::STANDARD.encode(key_pem.as_bytes()),
            )),
            ..AuthInfo::default()
        },
    };
    Kubeconfig {
        clusters,
        auth_infos: vec![NamedAuthInfo {
            name: user.to_owned(),
            auth_info: Some(auth_info),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: current.clone(),
            context: Some(KubeContext {
                cluster: cluster_name,
                user: Some(user.to_owned()),
                namespace: context.and_then(|c| c.namespace),
                ..KubeContext::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(current),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Kubeconfig::default()
    }
}

/// Writes `kubeconfig` to `path`, readable only by its owner (it holds credentials).
pub(crate) fn write(path: &Path, kubeconfig: &Kubeconfig) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(kubeconfig).context("serializing a kubeconfig")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a kubeconfig file.
pub(crate) fn read(path: &Path) -> anyhow::Result<Kubeconfig> {
    Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))
}

/// The kube client configuration of a kubeconfig's current context.
pub(crate) async fn client_config(kubeconfig: Kubeconfig) -> anyhow::Result<kube::Config> {
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("turning a kubeconfig into a client configuration")
}
