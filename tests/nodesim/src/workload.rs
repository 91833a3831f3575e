//! What runs in place of a container: a child process (the listener), a simulated runner, or an
//! idle stand-in that runs until it is stopped. Each reports its exit code once.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use secrecy::SecretString;
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::container::{self, ContainerSpec};
use crate::runner::{self, HttpClient};

/// A signal to a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGTERM: stop gracefully.
    Term,
    /// SIGKILL.
    Kill,
}

/// A container's exit, reported to its pod.
#[derive(Debug)]
pub(crate) struct Exit {
    pub index: usize,
    pub generation: u64,
    pub code: i32,
    /// The termination message, for a real container.
    pub message: Option<String>,
}

/// How to run one container.
#[derive(Clone)]
pub(crate) enum Launch {
    /// A child process: `program` with exactly this environment, output to `log`.
    Process {
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        dir: PathBuf,
        log: PathBuf,
    },
    /// A real container in podman, output to `log`.
    Container {
        spec: Box<ContainerSpec>,
        log: PathBuf,
    },
    /// The simulated runner.
    Runner {
        http: Box<HttpClient>,
        jit: Option<SecretString>,
    },
    /// Runs until signalled; exits 0 on SIGTERM.
    Idle,
}

/// A started container: signal it through `control`.
pub(crate) struct Started {
    pub control: mpsc::UnboundedSender<Signal>,
    pub pid: Option<u32>,
}

/// Starts `launch`; its exit is sent on `exits` with `index` and `generation`.
pub(crate) fn start(
    pod: &str,
    launch: Launch,
    index: usize,
    generation: u64,
    exits: mpsc::UnboundedSender<Exit>,
) -> std::io::Result<Started> {
    let (control, mut rx) = mpsc::unbounded_channel();
    let report = move |code: i32, message: Option<String>| {
        let _ = exits.send(Exit {
            index,
            generation,
            code,
            message,
        });
    };
    match launch {
        Launch::Process {
            program,
            args,
            env,
            dir,
            log,
        } => {
            let child = spawn_process(&program, &args, &env, &dir, &log)?;
            let pid = child.id();
            tokio::spawn(async move {
                let code = supervise(child, rx, async {}).await;
                report(code, None);
            });
            Ok(Started { control, pid })
        }
        Launch::Container { spec, log } => {
            let mut command = spec.run_command(generation, &log)?;
            let child = with_output(&mut command, &log)?.spawn()?;
            let pid = child.id();
            let name = spec.container_name(generation);
            tokio::spawn(async move {
                // podman run passes SIGTERM on to the container; SIGKILL removes the container.
                let code = supervise(child, rx, container::remove(&name)).await;
                container::remove(&name).await;
                report(code, spec.termination_message(code, &log));
            });
            Ok(Started { control, pid })
        }
        Launch::Runner { http, jit } => {
            let pod = pod.to_owned();
            tokio::spawn(async move {
                report(runner::run(pod, *http, jit, rx).await, None);
            });
            Ok(Started { control, pid: None })
        }
        Launch::Idle => {
            tokio::spawn(async move {
                let code = match rx.recv().await {
                    Some(Signal::Term) => 0,
                    Some(Signal::Kill) | None => 137,
                };
                report(code, None);
            });
            Ok(Started { control, pid: None })
        }
    }
}

/// Waits for `child` and returns its exit code, passing SIGTERM on; on SIGKILL (or when its
/// control goes away) runs `before_kill`, then kills it.
async fn supervise(
    mut child: tokio::process::Child,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    before_kill: impl std::future::Future<Output = ()>,
) -> i32 {
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            signal = signals.recv() => match signal {
                Some(Signal::Term) => {
                    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                }
                Some(Signal::Kill) | None => {
                    before_kill.await;
                    let _ = child.start_kill();
                    break child.wait().await;
                }
            },
        }
    };
    status.map_or(128 + 9, exit_code)
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The parent-death helper: a child is killed if the simulator dies without stopping it.
const SETPRIV: &str = "/usr/bin/setpriv";

fn spawn_process(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    dir: &Path,
    log: &Path,
) -> std::io::Result<tokio::process::Child> {
    let mut command = if Path::new(SETPRIV).exists() {
        let mut c = Command::new(SETPRIV);
        c.arg("--pdeathsig").arg("KILL").arg("--").arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir);
    with_output(&mut command, log)?.spawn()
}

/// `command` with no input, its output appended to `log`, killed if dropped.
fn with_output<'a>(command: &'a mut Command, log: &Path) -> std::io::Result<&'a mut Command> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    Ok(command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true))
}
