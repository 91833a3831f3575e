//! Real containers, run with podman as a kubelet runs them through its container runtime: the
//! pod's image, command and args, environment, volume mounts at their mount paths, the
//! ServiceAccount's token, CA and namespace at the in-cluster path, the security context's user,
//! and the termination-message file, whose text goes into the container's terminated state.
//!
//! Every podman command uses the `vfs` storage driver, `cgroupfs` and `runc` (the flags that work
//! on the project's machines, as root); containers join their pod's network namespace.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::process::Command;

/// Where a kubelet mounts the ServiceAccount's token, `ca.crt` and `namespace`.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The default `terminationMessagePath`.
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// A kubelet keeps at most this much of a termination message.
const MAX_TERMINATION_MESSAGE: usize = 4096;
/// `FallbackToLogsOnError` takes at most this many lines of the log.
const FALLBACK_LOG_LINES: usize = 80;

/// The first 12 letters and digits of a pod's uid: short, and unique enough on one machine.
pub(crate) fn short_uid(uid: &str) -> String {
    uid.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect()
}

/// The start of podman's names for container `container` of the pod with `uid`; each start
/// appends `-<n>`.
pub fn podman_name_prefix(uid: &str, container: &str) -> String {
    format!("nodesim-{}-{container}", short_uid(uid))
}

/// podman's global flags for every command: the ones that work on the project's machines.
pub const PODMAN_ARGS: [&str; 4] = ["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"];

/// `podman run`'s flags that work on the project's machines (runc, small ulimits); the network
/// is the caller's.
pub const PODMAN_RUN_ARGS: [&str; 8] = [
    "run",
    "--rm",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1000:1000",
];

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(PODMAN_ARGS);
    c
}

/// Whether `image` is in the local image store (nothing can be pulled here).
pub(crate) async fn image_present(image: &str) -> Result<bool, String> {
    let status = podman()
        .args(["image", "exists", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("running podman (is it installed? apt-get install podman): {e}"))?;
    Ok(status.success())
}

/// One container to run in podman.
#[derive(Clone, Debug)]
pub(crate) struct ContainerSpec {
    pub image: String,
    /// The pod's `command` (replaces the image's entrypoint) if set.
    pub command: Option<Vec<String>>,
    pub args: Vec<String>,
    /// Written to an env file (mode 0600) so that values never show in a process listing.
    pub env: Vec<(String, String)>,
    /// Host path, container path, read-only.
    pub mounts: Vec<(PathBuf, String, bool)>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub read_only_root: bool,
    /// The container's name prefix in podman; the start's generation is appended.
    pub name: String,
    /// The host file mounted at the termination-message path.
    pub termination_file: PathBuf,
    pub termination_path: String,
    /// `FallbackToLogsOnError`: an empty message on failure is taken from the log's end.
    pub fallback_to_logs: bool,
    /// The pod's network namespace (its path), or the host's network when `None`.
    pub network: Option<String>,
}

impl ContainerSpec {
    /// The spec of `container` of `pod`; `volumes` are the pod's materialised volumes.
    pub(crate) fn new(
        pod: &Pod,
        container: &Container,
        pod_dir: &Path,
        env: Vec<(String, String)>,
        volume_mounts: Vec<(PathBuf, String, bool)>,
    ) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_security = spec.security_context.unwrap_or_default();
        let security = container.security_context.clone().unwrap_or_default();
        let uid = security.run_as_user.or(pod_security.run_as_user);
        let gid = security.run_as_group.or(pod_security.run_as_group);
        let user = match (uid, gid) {
            (Some(u), Some(g)) => Some(format!("{u}:{g}")),
            (Some(u), None) => Some(u.to_string()),
            (None, Some(g)) => Some(format!("65532:{g}")),
            (None, None) => None,
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        Self {
            image: container.image.clone().unwrap_or_default(),
            command: container.command.clone().filter(|c| !c.is_empty()),
            args: container.args.clone().unwrap_or_default(),
            env,
            mounts: volume_mounts,
            user,
            working_dir: container.working_dir.clone().filter(|w| !w.is_empty()),
            read_only_root: security.read_only_root_filesystem == Some(true),
            name: podman_name_prefix(&uid, &container.name),
            termination_file: pod_dir.join(format!("{}.termination-log", container.name)),
            termination_path: container
                .termination_message_path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| TERMINATION_MESSAGE_PATH.to_owned()),
            fallback_to_logs: container.termination_message_policy.as_deref()
                == Some("FallbackToLogsOnError"),
            network: None,
        }
    }

    /// `podman run` for the start numbered `generation`, its env file written beside `log`.
    pub(crate) fn run_command(&self, generation: u64, log: &Path) -> std::io::Result<Command> {
        let env_file = log.with_extension(format!("{generation}.env"));
        let mut text = String::new();
        for (k, v) in &self.env {
            if v.contains('\n') {
                tracing::warn!(variable = %k, "an environment value with a newline is cut at it");
            }
            text.push_str(&format!("{k}={}\n", v.lines().next().unwrap_or_default()));
        }
        crate::resolve::write_file(&env_file, text.as_bytes(), 0o600)?;
        // A fresh, world-writable message file per start, as the kubelet makes one.
        crate::resolve::write_file(&self.termination_file, b"", 0o666)?;
        let mut c = podman();
        let network = self
            .network
            .as_ref()
            .map_or_else(|| "host".to_owned(), |path| format!("ns:{path}"));
        c.args(PODMAN_RUN_ARGS).args(["--pull", "never"]);
        c.arg("--network").arg(network);
        c.arg("--name").arg(self.container_name(generation));
        c.arg("--env-file").arg(&env_file);
        for (host, path, read_only) in &self.mounts {
            let mode = if *read_only { ":ro" } else { "" };
            c.arg("-v").arg(format!("{}:{path}{mode}", host.display()));
        }
        c.arg("-v").arg(format!(
            "{}:{}",
            self.termination_file.display(),
            self.termination_path
        ));
        if let Some(user) = &self.user {
            c.arg("--user").arg(user);
        }
        if let Some(dir) = &self.working_dir {
            c.arg("--workdir").arg(dir);
        }
        if self.read_only_root {
            c.arg("--read-only");
        }
        if let Some(command) = &self.command {
            let json = serde_json::to_string(command).map_err(std::io::Error::other)?;
            c.arg("--entrypoint").arg(json);
        }
        c.arg(&self.image).args(&self.args);
        Ok(c)
    }

    /// podman's name for the start numbered `generation`.
    pub(crate) fn container_name(&self, generation: u64) -> String {
        format!("{}-{generation}", self.name)
    }

    /// The termination message a kubelet reports for an exit with `code`: the file's text, or
    /// with `FallbackToLogsOnError` the log's end when the file is empty and the exit failed.
    pub(crate) fn termination_message(&self, code: i32, log: &Path) -> Option<String> {
        let text = std::fs::read(&self.termination_file).unwrap_or_default();
        let message = String::from_utf8_lossy(&text[..text.len().min(MAX_TERMINATION_MESSAGE)])
            .trim_end()
            .to_owned();
        if !message.is_empty() {
            return Some(message);
        }
        if !(self.fallback_to_logs && code != 0) {
            return None;
        }
        let log = std::fs::read_to_string(log).ok()?;
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(FALLBACK_LOG_LINES)..].join("\n");
        let start = tail.len().saturating_sub(MAX_TERMINATION_MESSAGE / 2);
        let start = (start..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(tail.len());
        Some(tail[start..].to_owned()).filter(|t| !t.is_empty())
    }
}

/// Kills and removes a container by name (after SIGKILL of `podman run`, or when it outlived it).
pub(crate) async fn remove(name: &str) {
    let _ = podman()
        .args(["rm", "--force", "--time", "0", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "l", "namespace": "ns", "uid": "1234-5678-9abc-def0-1111"},
            "spec": {
                "securityContext": {"runAsUser": 1001},
                "containers": [{"name": "listener", "image": "img:1", "command": ["/ghalistener"],
                    "args": ["--x"], "terminationMessagePolicy": "FallbackToLogsOnError",
                    "securityContext": {"runAsGroup": 7, "readOnlyRootFilesystem": true}}]
            }
        }))
        .expect("pod")
    }

    #[test]
    fn the_spec_takes_user_command_and_message_settings_from_the_pod() {
        let pod = pod();
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let dir = tempfile::tempdir().expect("dir");
        let spec = ContainerSpec::new(&pod, container, dir.path(), vec![], vec![]);
        assert_eq!(spec.user.as_deref(), Some("1001:7"));
        assert_eq!(spec.command, Some(vec!["/ghalistener".to_owned()]));
        assert_eq!(spec.termination_path, "/dev/termination-log");
        assert!(spec.read_only_root && spec.fallback_to_logs);
        assert_eq!(spec.container_name(3), "nodesim-123456789abc-listener-3");
    }

    #[test]
    fn the_termination_message_comes_from_the_file_else_the_log_on_failure() {
        let pod = pod();
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let dir = tempfile::tempdir().expect("dir");
        let spec = ContainerSpec::new(&pod, container, dir.path(), vec![], vec![]);
        let log = dir.path().join("listener.log");
        std::fs::write(&log, "one\ntwo\nlast words\n").expect("log");
        std::fs::write(&spec.termination_file, "").expect("file");
        assert_eq!(spec.termination_message(0, &log), None);
        assert_eq!(
            spec.termination_message(1, &log).as_deref(),
            Some("one\ntwo\nlast words")
        );
        std::fs::write(
            &spec.termination_file,
            "arc-listener-exit=auth: bad token\n",
        )
        .expect("file");
        assert_eq!(
            spec.termination_message(1, &log).as_deref(),
            Some("arc-listener-exit=auth: bad token")
        );
    }
}
