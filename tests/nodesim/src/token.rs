//! A kubeconfig for a pod's ServiceAccount, as a kubelet's projected token would give it: a
//! token from the TokenRequest API bound to the pod, so RBAC applies to the process and the
//! token dies with the pod. The token lives in its own file (`tokenFile`), refreshed before it
//! expires; kube clients re-read it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{
    AuthInfo, Cluster, Context as KubeContext, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use secrecy::{ExposeSecret, SecretString};

use crate::resolve::{write_file, write_private};

/// The token lifetime a kubelet asks for.
pub(crate) const TOKEN_SECONDS: i64 = 3607;

/// Where the API server is and how to trust it, taken from the simulator's own client config.
#[derive(Clone, Debug)]
pub(crate) struct ApiServer {
    url: String,
    ca_pem: Option<String>,
    insecure: bool,
}

impl ApiServer {
    pub(crate) fn from_config(config: &kube::Config) -> Self {
        let ca_pem = config.root_cert.as_ref().map(|certs| {
            certs
                .iter()
                .map(|der| pem("CERTIFICATE", der))
                .collect::<String>()
        });
        Self {
            url: config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
            ca_pem,
            insecure: config.accept_invalid_certs,
        }
    }
}

impl ApiServer {
    /// The host and port of the API server's URL, for `KUBERNETES_SERVICE_HOST` and `_PORT`.
    pub(crate) fn host_port(&self) -> (String, String) {
        let authority = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host.trim_matches(['[', ']']).to_owned(), port.to_owned())
            }
            _ => (
                authority.trim_matches(['[', ']']).to_owned(),
                "443".to_owned(),
            ),
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Requests a token for the pod's ServiceAccount, bound to the pod.
pub(crate) async fn request_token(
    client: &kube::Client,
    pod: &Pod,
) -> Result<SecretString, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(name),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let response = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("requesting a token for ServiceAccount {namespace}/{account}: {e}"))?;
    response
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| {
            format!("the TokenRequest for ServiceAccount {namespace}/{account} returned no token")
        })
}

/// The mode of the ServiceAccount files, as a kubelet's projected volume gives them.
const SERVICE_ACCOUNT_FILE_MODE: u32 = 0o644;

/// Writes `dir` as a kubelet's ServiceAccount volume has it (`token`, `ca.crt`, `namespace`) and
/// `dir/kubeconfig` (0600) using them; returns the kubeconfig's path.
pub(crate) fn write_kubeconfig(
    dir: &Path,
    server: &ApiServer,
    namespace: &str,
    token: &SecretString,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let token_path = dir.join("token");
    write_file(
        &token_path,
        token.expose_secret().as_bytes(),
        SERVICE_ACCOUNT_FILE_MODE,
    )?;
    write_file(
        &dir.join("namespace"),
        namespace.as_bytes(),
        SERVICE_ACCOUNT_FILE_MODE,
    )?;
    if let Some(ca) = &server.ca_pem {
        write_file(
            &dir.join("ca.crt"),
            ca.as_bytes(),
            SERVICE_ACCOUNT_FILE_MODE,
        )?;
    }
    let cluster = Cluster {
        server: Some(server.url.clone()),
        certificate_authority_data: server
            .ca_pem
            .as_ref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p.as_bytes())),
        insecure_skip_tls_verify: server.insecure.then_some(true),
        ..Cluster::default()
    };
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: "nodesim".to_owned(),
            cluster: Some(cluster),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "pod".to_owned(),
            auth_info: Some(AuthInfo {
                token_file: Some(token_path.display().to_string()),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: "nodesim".to_owned(),
            context: Some(KubeContext {
                cluster: "nodesim".to_owned(),
                user: Some("pod".to_owned()),
                namespace: Some(namespace.to_owned()),
                ..KubeContext::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some("nodesim".to_owned()),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Kubeconfig::default()
    };
    let text = serde_json::to_string_pretty(&config).map_err(std::io::Error::other)?;
    let path = dir.join("kubeconfig");
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Rewrites `dir/token` with a fresh token at 80 % of the lifetime, as a kubelet does, until
/// the task is aborted.
pub(crate) async fn refresh_forever(client: kube::Client, pod: Pod, dir: PathBuf) {
    let every = Duration::from_secs(u64::try_from(TOKEN_SECONDS * 8 / 10).unwrap_or(2880));
    loop {
        tokio::time::sleep(every).await;
        match request_token(&client, &pod).await {
            Ok(token) => {
                if let Err(e) = write_file(
                    &dir.join("token"),
                    token.expose_secret().as_bytes(),
                    SERVICE_ACCOUNT_FILE_MODE,
                ) {
                    tracing::warn!(error = %e, dir = %dir.display(), "could not refresh a pod token");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not refresh a pod token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_the_url() {
        let server = |url: &str| ApiServer {
            url: url.to_owned(),
            ca_pem: None,
            insecure: false,
        };
        assert_eq!(
            server("https://127.0.0.1:6443").host_port(),
            ("127.0.0.1".to_owned(), "6443".to_owned())
        );
        assert_eq!(
            server("https://[::1]:6443/").host_port(),
            ("::1".to_owned(), "6443".to_owned())
        );
        assert_eq!(
            server("https://kubernetes.example").host_port(),
            ("kubernetes.example".to_owned(), "443".to_owned())
        );
    }
}
