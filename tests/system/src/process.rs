//! Processes the node simulator started, found through `/proc`, and their memory.

use std::path::Path;

/// Pids of running processes whose executable is `binary` and whose environment mentions
/// `marker` (e.g. a node simulator's work directory, which every kubeconfig it hands out lives
/// in), so that other systems' processes on the same machine are not counted.
pub fn find_processes(binary: &Path, marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let binary = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe != binary {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if String::from_utf8_lossy(&environ).contains(marker) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Pids of the main processes of the podman containers named `container` in `pods` (as the node
/// simulator names them).
pub fn container_pids(pods: &[k8s_openapi::api::core::v1::Pod], container: &str) -> Vec<u32> {
    let prefixes: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .map(|uid| format!("{}-", nodesim::podman_name_prefix(uid, container)))
        .collect();
    let Ok(output) = crate::images::podman()
        .args(["ps", "--format", "{{.Names}} {{.Pid}}"])
        .output()
    else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p.as_str())))
        .filter_map(|(_, pid)| pid.trim().parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Resident set size of a process in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
