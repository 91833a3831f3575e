//! Where the CPU went during a phase of the bench: the CPU seconds of each process of the test
//! bed (the control plane, the manager and listener, the bench itself with the emulator and the
//! node simulator) and of the whole machine, read from `/proc`. A phase whose machine total
//! is near `cores × wall time` was bound by the cores, not by any one process's waiting.

use std::collections::BTreeMap;
use std::time::Instant;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on every Linux architecture
/// this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds spent over one phase.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuUse {
    /// Wall-clock seconds of the phase.
    pub wall: f64,
    /// CPU seconds the whole machine spent busy (every process, the bench's or not).
    pub machine: f64,
    /// Cores of the machine.
    pub cores: usize,
    /// CPU seconds by process group (`kube-apiserver`, `etcd`, `manager`, ...).
    pub by_process: BTreeMap<String, f64>,
}

impl CpuUse {
    /// The share of the machine's cores that was busy, in percent.
    pub fn busy_percent(&self) -> f64 {
        100.0 * self.machine / (self.wall * self.cores.max(1) as f64)
    }

    /// CPU seconds of the test bed's own processes.
    pub fn test_bed(&self) -> f64 {
        self.by_process.values().sum()
    }

    /// The least wall time the phase could have taken on this machine's cores with the test
    /// bed's CPU use spread perfectly over them.
    pub fn floor(&self) -> f64 {
        self.test_bed() / self.cores.max(1) as f64
    }

    /// `name 12.3, …` (CPU seconds) for the biggest consumers, largest first.
    pub fn top(&self, n: usize) -> String {
        let mut v: Vec<_> = self.by_process.iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(a.1));
        v.into_iter()
            .take(n)
            .map(|(k, s)| format!("{k} {s:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// CPU counters at the start of a phase.
pub(super) struct CpuClock {
    started: Instant,
    machine: f64,
    processes: BTreeMap<u32, (String, f64)>,
}

impl CpuClock {
    /// Reads the counters now; `named` gives labels to processes that are not the bench's
    /// descendants (the manager and listener in podman containers).
    pub fn start(named: &[(u32, &str)]) -> Self {
        Self {
            started: Instant::now(),
            machine: machine_busy(),
            processes: processes(named),
        }
    }

    /// The CPU spent since [`CpuClock::start`]. A process that started during the phase counts
    /// from zero; one that exited is left out.
    pub fn stop(&self, named: &[(u32, &str)]) -> CpuUse {
        let mut by_process = BTreeMap::new();
        for (pid, (name, now)) in processes(named) {
            let before = self.processes.get(&pid).map_or(0.0, |(_, t)| *t);
            let spent = now - before;
            if spent > 0.0 {
                *by_process.entry(name).or_insert(0.0) += spent;
            }
        }
        CpuUse {
            wall: self.started.elapsed().as_secs_f64(),
            machine: machine_busy() - self.machine,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            by_process,
        }
    }
}

/// Busy CPU seconds of the machine since boot: every field of `/proc/stat`'s `cpu` line but
/// idle and iowait.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (total - idle) / TICKS_PER_SECOND
}

/// One process's `/proc/<pid>/stat`: its command name, parent and CPU seconds.
struct Stat {
    comm: String,
    parent: u32,
    cpu: f64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the command: state (0), ppid (1), …, utime (11), stime (12).
    let parent = rest.get(1)?.parse().ok()?;
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some(Stat {
        comm,
        parent,
        cpu: (utime + stime) / TICKS_PER_SECOND,
    })
}

/// The bench's descendants by command name (the bench itself as "bench, emulator, node
/// simulator") and the `named` processes by their label, with their CPU seconds.
fn processes(named: &[(u32, &str)]) -> BTreeMap<u32, (String, f64)> {
    let all: BTreeMap<u32, Stat> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect();
    let me = std::process::id();
    let descends = |mut pid: u32| {
        while pid > 1 {
            if pid == me {
                return true;
            }
            pid = all.get(&pid).map_or(0, |s| s.parent);
        }
        false
    };
    all.iter()
        .filter_map(|(pid, s)| {
            let name = if let Some((_, label)) = named.iter().find(|(p, _)| p == pid) {
                (*label).to_owned()
            } else if *pid == me {
                "bench, emulator, node simulator".to_owned()
            } else if descends(*pid) {
                s.comm.clone()
            } else {
                return None;
            };
            Some((*pid, (name, s.cpu)))
        })
        .collect()
}
