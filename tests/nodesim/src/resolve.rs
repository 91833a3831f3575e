//! What a kubelet resolves before it starts a container: volumes (Secrets, ConfigMaps and empty
//! directories materialised as files) and the environment (`env`, `envFrom`, `secretKeyRef`,
//! `configMapKeyRef`, `fieldRef`, `$(VAR)` expansion). Paths under a mount point are rewritten
//! to where the volume lives on this machine.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};
use kube::api::Api;

/// Why a container cannot start yet, as a kubelet reports it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotReady {
    /// A volume cannot be set up: the container stays `ContainerCreating`.
    #[error("{0}")]
    Mount(String),
    /// The environment references something missing: `CreateContainerConfigError`.
    #[error("{0}")]
    Config(String),
    /// The image cannot be run here: `ErrImagePull`.
    #[error("{0}")]
    Image(String),
}

/// Secrets and ConfigMaps read once per resolution.
pub(crate) struct Sources {
    namespace: String,
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
    secret_cache: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    config_map_cache: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

impl Sources {
    pub(crate) fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            secrets: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client, namespace),
            secret_cache: HashMap::new(),
            config_map_cache: HashMap::new(),
        }
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&BTreeMap<String, Vec<u8>>>, NotReady> {
        if !self.secret_cache.contains_key(name) {
            let found = self.secrets.get_opt(name).await.map_err(|e| {
                NotReady::Mount(format!("reading secret {}/{name}: {e}", self.namespace))
            })?;
            let data = found.map(|s| {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                data
            });
            self.secret_cache.insert(name.to_owned(), data);
        }
        Ok(self.secret_cache.get(name).and_then(Option::as_ref))
    }

    async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, Vec<u8>>>, NotReady> {
        if !self.config_map_cache.contains_key(name) {
            let found = self.config_maps.get_opt(name).await.map_err(|e| {
                NotReady::Mount(format!("reading configmap {}/{name}: {e}", self.namespace))
            })?;
            let data = found.map(|c| {
                let mut data: BTreeMap<String, Vec<u8>> = c
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                for (k, v) in c.binary_data.unwrap_or_default() {
                    data.insert(k, v.0);
                }
                data
            });
            self.config_map_cache.insert(name.to_owned(), data);
        }
        Ok(self.config_map_cache.get(name).and_then(Option::as_ref))
    }
}

/// Writes every volume of the pod under `dir/volumes/<name>`; returns volume name → directory.
pub(crate) async fn materialise_volumes(
    pod: &Pod,
    sources: &mut Sources,
    dir: &Path,
) -> Result<HashMap<String, PathBuf>, NotReady> {
    let mut out = HashMap::new();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for volume in volumes {
        let target = dir.join("volumes").join(&volume.name);
        let io = |e: std::io::Error| {
            NotReady::Mount(format!(
                "MountVolume.SetUp failed for volume {:?} : {e}",
                volume.name
            ))
        };
        std::fs::create_dir_all(&target).map_err(io)?;
        let mode = volume
            .secret
            .as_ref()
            .and_then(|s| s.default_mode)
            .or_else(|| volume.config_map.as_ref().and_then(|c| c.default_mode))
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0o644);
        let (data, items) = if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let optional = secret.optional.unwrap_or(false);
            match sources.secret(&name).await? {
                Some(data) => (data.clone(), secret.items.clone()),
                None if optional => (BTreeMap::new(), None),
                None => {
                    return Err(NotReady::Mount(format!(
                        "MountVolume.SetUp failed for volume {:?} : secret {name:?} not found",
                        volume.name
                    )));
                }
            }
        } else if let Some(cm) = &volume.config_map {
            let name = cm.name.clone();
            let optional = cm.optional.unwrap_or(false);
            match sources.config_map(&name).await? {
                Some(data) => (data.clone(), cm.items.clone()),
                None if optional => (BTreeMap::new(), None),
                None => {
                    return Err(NotReady::Mount(format!(
                        "MountVolume.SetUp failed for volume {:?} : configmap {name:?} not found",
                        volume.name
                    )));
                }
            }
        } else {
            out.insert(volume.name.clone(), target);
            continue;
        };
        let files: Vec<(String, Vec<u8>)> = match items {
            Some(items) => {
                let mut files = Vec::new();
                for item in items {
                    let Some(value) = data.get(&item.key) else {
                        return Err(NotReady::Mount(format!(
                            "MountVolume.SetUp failed for volume {:?} : key {:?} not found",
                            volume.name, item.key
                        )));
                    };
                    files.push((item.path.clone(), value.clone()));
                }
                files
            }
            None => data.into_iter().collect(),
        };
        for (path, value) in files {
            let file = safe_join(&target, &path).ok_or_else(|| {
                NotReady::Mount(format!(
                    "volume {:?}: item path {path:?} must be relative and stay inside the volume",
                    volume.name
                ))
            })?;
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            write_file(&file, &value, mode).map_err(io)?;
        }
        out.insert(volume.name.clone(), target);
    }
    Ok(out)
}

fn safe_join(base: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    let ok = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (ok && !relative.is_empty()).then(|| base.join(rel))
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_file(path, contents, 0o600)
}

/// Writes `contents` to `path` with permission bits `mode` (also when the file existed).
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(contents)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Mount path → directory on this machine, for one container.
pub(crate) fn mounts(
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let dir = volumes.get(&m.name)?;
            let dir = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => safe_join(dir, sub)?,
                None => dir.clone(),
            };
            Some((m.mount_path.trim_end_matches('/').to_owned(), dir))
        })
        .collect();
    // Longest mount path first, so nested mounts win.
    out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    out
}

/// `value` with a leading mount path replaced by the volume's directory on this machine.
pub(crate) fn rewrite_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, dir) in mounts {
        if mount.is_empty() {
            continue;
        }
        if let Some(rest) = value.strip_prefix(mount.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", dir.display());
        }
    }
    value.to_owned()
}

/// The container's environment in kubelet order: `envFrom`, then `env` (later wins), with
/// `$(VAR)` references expanded and paths under mounts rewritten.
pub(crate) async fn environment(
    pod: &Pod,
    pod_ip: &str,
    container: &Container,
    sources: &mut Sources,
    mounts: &[(String, PathBuf)],
) -> Result<Vec<(String, String)>, NotReady> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for from in container.env_from.as_deref().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            match sources.secret(&s.name).await? {
                Some(d) => d.clone(),
                None if s.optional.unwrap_or(false) => continue,
                None => return Err(NotReady::Config(format!("secret {:?} not found", s.name))),
            }
        } else if let Some(c) = &from.config_map_ref {
            match sources.config_map(&c.name).await? {
                Some(d) => d.clone(),
                None if c.optional.unwrap_or(false) => continue,
                None => {
                    return Err(NotReady::Config(format!(
                        "configmap {:?} not found",
                        c.name
                    )));
                }
            }
        } else {
            continue;
        };
        for (k, v) in data {
            set(
                &mut env,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in container.env.as_deref().unwrap_or_default() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.secret_key_ref {
                let found = match sources.secret(&r.name).await? {
                    Some(d) => d.get(&r.key).cloned().ok_or_else(|| {
                        format!(
                            "couldn't find key {} in Secret {}/{}",
                            r.key, sources.namespace, r.name
                        )
                    }),
                    None => Err(format!("secret {:?} not found", r.name)),
                };
                match found {
                    Ok(v) => String::from_utf8_lossy(&v).into_owned(),
                    Err(_) if r.optional.unwrap_or(false) => continue,
                    Err(e) => return Err(NotReady::Config(e)),
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let found = match sources.config_map(&r.name).await? {
                    Some(d) => d.get(&r.key).cloned().ok_or_else(|| {
                        format!(
                            "couldn't find key {} in ConfigMap {}/{}",
                            r.key, sources.namespace, r.name
                        )
                    }),
                    None => Err(format!("configmap {:?} not found", r.name)),
                };
                match found {
                    Ok(v) => String::from_utf8_lossy(&v).into_owned(),
                    Err(_) if r.optional.unwrap_or(false) => continue,
                    Err(e) => return Err(NotReady::Config(e)),
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, pod_ip, &f.field_path).ok_or_else(|| {
                    NotReady::Config(format!(
                        "env {}: unsupported fieldRef fieldPath {:?}",
                        var.name, f.field_path
                    ))
                })?
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or_default(), &env)
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env
        .into_iter()
        .map(|(k, v)| {
            let v = rewrite_path(&v, mounts);
            (k, v)
        })
        .collect())
}

/// Expands `$(NAME)` with variables defined earlier; `$$` is a literal `$`; unknown references
/// stay as written (kubelet semantics).
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The downward-API value of `path`.
fn field_value(pod: &Pod, pod_ip: &str, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let bracket = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => Some("127.0.0.1".to_owned()),
        "status.podIP" => Some(pod_ip.to_owned()),
        _ => bracket("metadata.labels", meta.labels.as_ref())
            .or_else(|| bracket("metadata.annotations", meta.annotations.as_ref())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubelet_rules() {
        let env = vec![("A".to_owned(), "x".to_owned())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }

    #[test]
    fn paths_under_a_mount_are_rewritten_longest_first() {
        let mut mounts = vec![
            ("/etc".to_owned(), PathBuf::from("/tmp/p/etc")),
            ("/etc/gha-listener".to_owned(), PathBuf::from("/tmp/p/cfg")),
        ];
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        assert_eq!(
            rewrite_path("/etc/gha-listener/config.json", &mounts),
            "/tmp/p/cfg/config.json"
        );
        assert_eq!(rewrite_path("/etcetera", &mounts), "/etcetera");
        assert_eq!(rewrite_path("/etc", &mounts), "/tmp/p/etc");
    }

    #[test]
    fn item_paths_cannot_escape_the_volume() {
        let base = Path::new("/v");
        assert!(safe_join(base, "../x").is_none());
        assert!(safe_join(base, "/abs").is_none());
        assert_eq!(safe_join(base, "a/b"), Some(PathBuf::from("/v/a/b")));
    }

    #[test]
    fn downward_api_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "labels": {"app": "x"}},
            "spec": {"nodeName": "node-1", "containers": []},
        }))
        .expect("pod");
        assert_eq!(
            field_value(&pod, "10.244.0.7", "metadata.name").as_deref(),
            Some("p")
        );
        assert_eq!(
            field_value(&pod, "10.244.0.7", "spec.nodeName").as_deref(),
            Some("node-1")
        );
        assert_eq!(
            field_value(&pod, "10.244.0.7", "metadata.labels['app']").as_deref(),
            Some("x")
        );
        assert_eq!(
            field_value(&pod, "10.244.0.7", "status.podIP").as_deref(),
            Some("10.244.0.7")
        );
        assert_eq!(field_value(&pod, "10.244.0.7", "status.nothing"), None);
    }
}
