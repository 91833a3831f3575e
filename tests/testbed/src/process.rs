//! Child processes of a control plane and the janitor that outlives the test process.
//!
//! Every child runs in its own process group, so a terminal's Ctrl-C reaches only the owner, and
//! so that stopping a child also stops anything it started. The janitor is a tiny `sh` process
//! that reads the children's pids from a pipe held by this process. When the pipe closes —
//! because the owner was dropped, panicked, or the whole test process died, even by SIGKILL —
//! the janitor terminates every registered group and removes the work directory. A static
//! control plane shared by a test binary is never dropped, so this is what cleans it up.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long a child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

const JANITOR_SCRIPT: &str = r#"
dir="$1"; pids=""; owner_cleaned=""
while IFS= read -r line; do
  case "$line" in
    clear) pids=""; owner_cleaned=1 ;;
    *) pids="$pids $line" ;;
  esac
done
for p in $pids; do kill -TERM "-$p" 2>/dev/null; done
i=0
while [ "$i" -lt 100 ]; do
  alive=""
  for p in $pids; do if kill -0 "-$p" 2>/dev/null; then alive=1; fi; done
  [ -z "$alive" ] && break
  sleep 0.1; i=$((i+1))
done
for p in $pids; do kill -KILL "-$p" 2>/dev/null; done
[ -n "$owner_cleaned" ] || rm -rf -- "$dir"
"#;

/// Kills registered process groups and removes a directory once its owner goes away.
#[derive(Debug)]
pub(crate) struct Janitor {
    process: Child,
    pipe: Option<ChildStdin>,
}

impl Janitor {
    /// Starts a janitor responsible for `dir`.
    pub(crate) fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut process = Command::new("sh")
            .arg("-c")
            .arg(JANITOR_SCRIPT)
            .arg("testbed-janitor")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the testbed janitor (`sh`); is /bin/sh on PATH?")?;
        let pipe = process.stdin.take();
        Ok(Self { process, pipe })
    }

    /// Registers the process group led by `pid`.
    pub(crate) fn register(&mut self, pid: u32) -> anyhow::Result<()> {
        let pipe = self
            .pipe
            .as_mut()
            .context("the testbed janitor was already released")?;
        writeln!(pipe, "{pid}").context("telling the testbed janitor about a child")?;
        pipe.flush()
            .context("telling the testbed janitor about a child")
    }

    /// Tells the janitor that the owner has stopped every child and removed the directory.
    pub(crate) fn release(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = writeln!(pipe, "clear");
        }
        let _ = self.process.wait();
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        self.pipe.take();
        let _ = self.process.try_wait();
    }
}

/// A long-running control-plane binary, its output going to a log file.
#[derive(Debug)]
pub(crate) struct ManagedProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ManagedProcess {
    /// Spawns `program` with `args`, output appended to `<log_dir>/<name>.log`, and registers it
    /// with the janitor.
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
        janitor: &mut Janitor,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("opening {} twice", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {name} from {}; run `cargo xtask controlplane install` to build it",
                    program.display()
                )
            })?;
        let process = Self {
            name: name.to_owned(),
            child,
            log,
        };
        janitor.register(process.child.id())?;
        Ok(process)
    }

    /// The process's name, e.g. `kube-apiserver`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Fails with the end of the log if the process has exited.
    pub(crate) fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited early ({status}); the end of its log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            ),
            Err(e) => Err(e).with_context(|| format!("checking whether {} runs", self.name)),
        }
    }

    /// The last `lines` lines of the process's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the process group: SIGTERM, then SIGKILL after a grace period.
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            self.signal_group(Signal::SIGKILL);
            return;
        }
        self.signal_group(Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                self.signal_group(Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(process = %self.name, "did not stop within {STOP_GRACE:?}; killing it");
        self.signal_group(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    fn signal_group(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
