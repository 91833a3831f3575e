//! The container images: the published Dockerfiles (charts/docker) against the layout that
//! `system::images` builds FROM scratch with podman, and the podman-built images for real:
//! their config, their files, and the static binaries running in them.
//!
//! The build tests install podman, buildah, skopeo and runc with apt-get when missing, and build
//! the static release binaries once per test binary (the first build takes minutes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use actions_client::{ActionsClient, Credentials, NewRunnerScaleSet, Transport, TransportConfig};
use actions_emulator::{Emulator, EmulatorConfig};
use anyhow::{Context, bail, ensure};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use system::images::{self, Images, Kind, Layout, Source};

// ---------------------------------------------------------------------------------------------
// The Dockerfiles

/// One instruction of a Dockerfile, continuation lines joined, comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A parsed `COPY`: its `--flag=value` options, sources and destination.
#[derive(Debug)]
struct Copy {
    flags: BTreeMap<String, String>,
    sources: Vec<String>,
    dest: String,
}

/// The stages of a Dockerfile: each a list of instructions starting with its `FROM`.
fn parse_dockerfile(text: &str) -> Vec<Vec<Instruction>> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        };
        if instruction.keyword == "FROM" || stages.is_empty() {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(instruction);
        }
    }
    stages.retain(|s| s.first().is_some_and(|i| i.keyword == "FROM"));
    stages
}

fn parse_copy(args: &str) -> anyhow::Result<Copy> {
    let mut flags = BTreeMap::new();
    let mut paths = Vec::new();
    for word in args.split_whitespace() {
        match word.strip_prefix("--") {
            Some(flag) if paths.is_empty() => {
                let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
                flags.insert(k.to_owned(), v.to_owned());
            }
            _ => paths.push(word.to_owned()),
        }
    }
    let dest = paths
        .pop()
        .with_context(|| format!("COPY {args} has no destination"))?;
    ensure!(!paths.is_empty(), "COPY {args} has no source");
    Ok(Copy {
        flags,
        sources: paths,
        dest,
    })
}

/// The final stage of `kind`'s Dockerfile and the text of its build stages.
struct Dockerfile {
    path: PathBuf,
    from: String,
    copies: Vec<Copy>,
    user: Option<String>,
    workdir: Option<String>,
    entrypoint: Option<Vec<String>>,
    build_text: String,
}

fn dockerfile(kind: Kind) -> anyhow::Result<Dockerfile> {
    let path = kind.dockerfile();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut stages = parse_dockerfile(&text);
    let last = stages
        .pop()
        .with_context(|| format!("{} has no FROM", path.display()))?;
    let build_text = stages
        .iter()
        .flatten()
        .map(|i| format!("{} {}", i.keyword, i.args))
        .collect::<Vec<_>>()
        .join("\n");
    let mut file = Dockerfile {
        path,
        from: String::new(),
        copies: Vec::new(),
        user: None,
        workdir: None,
        entrypoint: None,
        build_text,
    };
    for instruction in last {
        let args = instruction.args.as_str();
        match instruction.keyword.as_str() {
            "FROM" => file.from = args.to_owned(),
            "COPY" => file.copies.push(parse_copy(args)?),
            "USER" => file.user = Some(args.to_owned()),
            "WORKDIR" => file.workdir = Some(args.to_owned()),
            "ENTRYPOINT" => {
                file.entrypoint = Some(
                    serde_json::from_str(args)
                        .with_context(|| format!("ENTRYPOINT {args} is not in exec (JSON) form"))?,
                )
            }
            other => bail!(
                "{}: the final stage has a {other} instruction, which the layout check does \
                 not know",
                file.path.display()
            ),
        }
    }
    Ok(file)
}

/// Checks `kind`'s Dockerfile against the layout podman builds; returns the problems.
fn dockerfile_problems(kind: Kind) -> anyhow::Result<Vec<String>> {
    let layout = images::layout(kind);
    let file = dockerfile(kind)?;
    let mut problems = Vec::new();
    if file.from != "scratch" {
        problems.push(format!(
            "the final stage is FROM {}, not FROM scratch",
            file.from
        ));
    }
    if file.user.as_deref() != Some(layout.user) {
        problems.push(format!("USER is {:?}, want {}", file.user, layout.user));
    }
    if file.workdir.as_deref() != Some(layout.workdir) {
        problems.push(format!(
            "WORKDIR is {:?}, want {}",
            file.workdir, layout.workdir
        ));
    }
    let entrypoint: Vec<String> = layout.entrypoint.iter().map(|s| s.to_string()).collect();
    if file.entrypoint.as_ref() != Some(&entrypoint) {
        problems.push(format!(
            "ENTRYPOINT is {:?}, want {entrypoint:?}",
            file.entrypoint
        ));
    }
    for copy in &file.copies {
        if copy.flags.get("from").map(String::as_str) != Some("build") {
            problems.push(format!(
                "COPY to {} is not --from=build (a scratch image has only what is copied)",
                copy.dest
            ));
        }
        if copy.flags.contains_key("chmod") || copy.flags.contains_key("chown") {
            problems.push(format!(
                "COPY to {} sets --chmod/--chown; the layout's modes come from the build stage",
                copy.dest
            ));
        }
    }
    // Every file of the layout is copied to its path, from the right source.
    for entry in layout.entries.iter().filter(|e| e.is_file()) {
        let copies: Vec<&Copy> = file
            .copies
            .iter()
            .filter(|c| c.dest == entry.path)
            .collect();
        let [copy] = copies.as_slice() else {
            problems.push(format!(
                "{} is copied {} times, want once",
                entry.path,
                copies.len()
            ));
            continue;
        };
        let source = copy.sources.join(" ");
        let ok = match entry.source {
            Source::CaBundle => source == images::CA_BUNDLE,
            Source::Passwd => {
                images::PASSWD
                    .lines()
                    .all(|l| file.build_text.contains(&format!("'{l}'")))
                    && file.build_text.contains(&format!("> {source}"))
            }
            Source::Group => {
                images::GROUP
                    .lines()
                    .all(|l| file.build_text.contains(&format!("'{l}'")))
                    && file.build_text.contains(&format!("> {source}"))
            }
            Source::ManagerBinary => file
                .build_text
                .contains(&format!("{}/manager\" {source}", images::PROFILE)),
            Source::ListenerBinary => file
                .build_text
                .contains(&format!("{}/listener\" {source}", images::PROFILE)),
            Source::Directory => true,
        };
        if !ok {
            problems.push(format!(
                "{} is copied from {source}, which the build stage does not make as {:?}",
                entry.path, entry.source
            ));
        }
    }
    // Nothing else is copied as a file.
    for copy in file.copies.iter().filter(|c| c.dest != "/") {
        if !layout
            .entries
            .iter()
            .any(|e| e.is_file() && e.path == copy.dest)
        {
            problems.push(format!("{} is copied but is not in the layout", copy.dest));
        }
    }
    // Directories: parents of copied files are made by COPY (0755); the others come from a
    // directory the build stage makes with their mode and the final stage copies to /.
    let roots: Vec<&str> = file
        .copies
        .iter()
        .filter(|c| c.dest == "/")
        .flat_map(|c| c.sources.iter().map(|s| s.trim_end_matches('/')))
        .collect();
    for dir in layout.entries.iter().filter(|e| e.is_dir()) {
        let parent = layout
            .entries
            .iter()
            .any(|e| !e.is_dir() && e.path.starts_with(&format!("{}/", dir.path)));
        if parent {
            if dir.mode != 0o755 {
                problems.push(format!(
                    "{} has mode {:o} but COPY makes it 0755",
                    dir.path, dir.mode
                ));
            }
            continue;
        }
        let made = roots.iter().any(|root| {
            let path = format!("{root}{}", dir.path);
            file.build_text.contains(&format!("mkdir -p {path}"))
                && file
                    .build_text
                    .contains(&format!("chmod {:o} {path}", dir.mode))
        });
        if !made {
            problems.push(format!(
                "directory {} (mode {:o}) is not made by the build stage in a directory copied \
                 to / (want mkdir -p <dir>{} && chmod {:o} <dir>{} and COPY --from=build <dir>/ /)",
                dir.path, dir.mode, dir.path, dir.mode, dir.path
            ));
        }
    }
    Ok(problems)
}

#[test]
fn dockerfiles_match_the_scratch_layout() -> anyhow::Result<()> {
    for kind in Kind::ALL {
        let problems = dockerfile_problems(kind)?;
        ensure!(
            problems.is_empty(),
            "{} does not agree with system::images::layout({kind:?}):\n  {}",
            kind.dockerfile().display(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

#[test]
fn the_dockerfile_check_sees_a_wrong_entrypoint_and_a_missing_file() -> anyhow::Result<()> {
    // The checker itself: a final stage that differs from the layout is reported.
    let text = std::fs::read_to_string(Kind::Listener.dockerfile())?
        .replace(
            "ENTRYPOINT [\"/ghalistener\"]",
            "ENTRYPOINT [\"/listener\"]",
        )
        .replace(
            "COPY --from=build /out/group /etc/group\n",
            "COPY --from=build /out/group /etc/groups\n",
        );
    let stages = parse_dockerfile(&text);
    let last = stages.last().context("no stage")?;
    let entrypoint = last
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .context("no ENTRYPOINT")?;
    assert_eq!(entrypoint.args, "[\"/listener\"]");
    let copies: Vec<Copy> = last
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| parse_copy(&i.args))
        .collect::<anyhow::Result<_>>()?;
    assert!(copies.iter().any(|c| c.dest == "/etc/groups"));
    assert!(!copies.iter().any(|c| c.dest == "/etc/group"));
    assert_eq!(
        copies[0].flags.get("from").map(String::as_str),
        Some("build")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The images, built for real

/// The static binaries and both images, built once per test binary.
fn built() -> anyhow::Result<&'static (PathBuf, PathBuf, Images)> {
    static BUILT: OnceLock<Result<(PathBuf, PathBuf, Images), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            (|| {
                images::ensure_tools()?;
                let (manager, listener) = images::build_static_binaries()?;
                let names = images::build_images(&manager, &listener)?;
                anyhow::Ok((manager, listener, names))
            })()
            .map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("building the images failed: {e}"))
}

/// Runs `command` to completion; (exit code, stdout, stderr).
fn output(command: &mut Command) -> anyhow::Result<(i32, String, String)> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn images_have_the_layout_and_config() -> anyhow::Result<()> {
    let (manager_bin, listener_bin, names) = built()?;
    for kind in Kind::ALL {
        let archive = images::archive_path(kind);
        let layout: Layout = images::layout(kind);
        // The config as skopeo reads it from the archive.
        let (code, stdout, stderr) = output(
            Command::new("skopeo")
                .arg("inspect")
                .arg("--config")
                .arg(format!("oci-archive:{}", archive.display())),
        )?;
        ensure!(code == 0, "skopeo inspect --config failed: {stderr}");
        let config: Value = serde_json::from_str(&stdout)?;
        assert_eq!(config["config"]["Entrypoint"], json!(layout.entrypoint));
        assert_eq!(config["config"]["User"], json!("65532:65532"));
        assert_eq!(config["config"]["WorkingDir"], json!("/"));
        assert_eq!(config["os"], json!("linux"));
        assert_eq!(config["architecture"], json!("amd64"));
        // The files, and the binaries are the ones built.
        let info = images::describe(&archive)?;
        assert_eq!(info.name, names.get(kind));
        layout.check(&info)?;
        let manager_size = std::fs::metadata(manager_bin)?.len();
        let listener_size = std::fs::metadata(listener_bin)?.len();
        assert_eq!(info.file_size("/ghalistener"), Some(listener_size));
        match kind {
            Kind::Manager => assert_eq!(info.file_size("/manager"), Some(manager_size)),
            Kind::Listener => assert_eq!(info.file_size("/manager"), None),
        }
        assert_eq!(
            info.file_size(images::CA_BUNDLE),
            Some(std::fs::metadata(images::CA_BUNDLE)?.len())
        );
        assert!(info.digest.starts_with("sha256:"), "{}", info.digest);
        assert!(info.compressed_bytes < info.uncompressed_bytes);
        println!(
            "{}: {} uncompressed, {} compressed, {}",
            info.name,
            images::human_size(info.uncompressed_bytes),
            images::human_size(info.compressed_bytes),
            info.digest
        );
    }
    Ok(())
}

#[test]
fn a_rebuild_without_changes_keeps_the_digests() -> anyhow::Result<()> {
    let (manager_bin, listener_bin, _) = built()?;
    let before: Vec<String> = Kind::ALL
        .iter()
        .map(|k| images::describe(&images::archive_path(*k)).map(|i| i.digest))
        .collect::<anyhow::Result<_>>()?;
    let started = std::time::Instant::now();
    images::build_images(manager_bin, listener_bin)?;
    let took = started.elapsed();
    let after: Vec<String> = Kind::ALL
        .iter()
        .map(|k| images::describe(&images::archive_path(*k)).map(|i| i.digest))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(
        before, after,
        "a rebuild of the same binaries changed a digest"
    );
    println!("rebuild of both images took {took:?}");
    Ok(())
}

#[test]
fn the_static_binaries_run_in_the_scratch_images() -> anyhow::Result<()> {
    let (_, _, names) = built()?;
    // The listener without its config: exit code 2 naming the variable, as on a host.
    for (image, entrypoint) in [
        (&names.listener, None),
        (&names.manager, Some("/ghalistener")),
    ] {
        let mut command = images::podman_run();
        if let Some(entrypoint) = entrypoint {
            command.args(["--entrypoint", entrypoint]);
        }
        let (code, stdout, stderr) = output(command.arg(image))?;
        assert_eq!(
            code, 2,
            "{image} ({entrypoint:?}) exited {code}; stdout: {stdout}; stderr: {stderr}"
        );
        assert!(
            stderr.contains("LISTENER_CONFIG_PATH environment variable is not set"),
            "{stderr}"
        );
    }
    // The manager prints its usage.
    let (code, stdout, stderr) = output(images::podman_run().arg(&names.manager).arg("--help"))?;
    assert_eq!(code, 0, "manager --help exited {code}: {stderr}");
    assert!(stdout.contains("Usage"), "{stdout}");
    // The user is nonroot and /tmp is writable for it (a file system of a running container).
    let (code, _, stderr) = output(
        images::podman_run()
            .args(["--entrypoint", "/ghalistener"])
            .args(["-e", "LISTENER_CONFIG_PATH=/tmp/nothing-here.json"])
            .arg(&names.listener),
    )?;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read config file /tmp/nothing-here.json"),
        "{stderr}"
    );
    Ok(())
}

/// A directory that everyone may read (the container runs as 65532), removed on drop.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new() -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!(
            "arc-rs-images-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(SharedDir(dir))
    }

    fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.0.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(path)
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A named container, removed on drop whatever happened.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = images::podman()
            .args(["rm", "--force", "--time", "0", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The listener image against the Actions-service emulator over HTTPS at `localhost`: it
/// resolves the name (static glibc, /etc/hosts), verifies the emulator's certificate, creates a
/// message session, and on SIGTERM (podman stop) deletes it and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_image_holds_a_session_with_the_emulator() -> anyhow::Result<()> {
    let names = tokio::task::spawn_blocking(|| built().map(|b| b.2.clone())).await??;
    let emu = Emulator::start_tls(EmulatorConfig {
        long_poll_hold: Duration::from_secs(2),
        ..EmulatorConfig::default()
    })
    .await?;
    let ca = emu
        .ca_pem()
        .context("the TLS emulator has a CA")?
        .to_owned();
    let transport = Transport::new(TransportConfig {
        root_ca_pem: Some(ca.clone()),
        ..TransportConfig::default()
    })?;
    let client = ActionsClient::builder(emu.org_url("octo-org"), Credentials::pat(emu.pat())?)
        .transport(transport)
        .build()?;
    let set = client
        .create_runner_scale_set(&NewRunnerScaleSet::new("image-set", 1))
        .await?;
    let config_url = emu.org_url("octo-org").replace("127.0.0.1", "localhost");
    assert!(config_url.contains("://localhost:"), "{config_url}");
    let dir = SharedDir::new()?;
    let config = json!({
        "configure_url": config_url, "github_token": emu.pat().expose_secret(),
        "ephemeral_runner_set_namespace": "arc-runners", "ephemeral_runner_set_name": "image-set",
        "max_runners": 3, "min_runners": 0, "runner_scale_set_id": set.id,
        "runner_scale_set_name": "image-set", "server_root_ca": ca, "log_level": "debug",
        "log_format": "text",
    });
    dir.write("config.json", &config.to_string())?;
    // No cluster: patching the EphemeralRunnerSet fails and is retried, which this test ignores.
    dir.write(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\ncurrent-context: none\n\
         clusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         users: [{name: none, user: {token: none}}]\n\
         contexts: [{name: none, context: {cluster: none, user: none}}]\n",
    )?;
    let container = Container(format!("arc-rs-images-test-{}", std::process::id()));
    let mut run = images::podman_run();
    run.args(["--name", &container.0])
        .arg("-v")
        .arg(format!("{}:/config:ro", dir.0.display()))
        .args(["-e", "LISTENER_CONFIG_PATH=/config/config.json"])
        .args(["-e", "KUBECONFIG=/config/kubeconfig"])
        .arg(&names.listener)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = tokio::process::Command::from(run)
        .kill_on_drop(true)
        .spawn()
        .context("starting podman run")?;
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let session = tokio::select! {
        held = emu.wait_until(Duration::from_secs(120), |s| s.active_session(set.id).is_some()) => {
            held.map(|_| ())
        }
        status = child.wait() => Err(anyhow::anyhow!("the container exited first ({status:?})")),
    };
    let stop = tokio::task::spawn_blocking({
        let name = container.0.clone();
        move || output(images::podman().args(["stop", "--time", "30", &name]))
    });
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .context("the listener container did not stop")??;
    stop.await??;
    let logs = format!("stdout:\n{}\nstderr:\n{}", stdout.await?, stderr.await?);
    session.with_context(|| format!("the listener in the image held no session; {logs}"))?;
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; {logs}");
    assert!(
        emu.snapshot().active_session(set.id).is_none(),
        "the session outlived the listener; {logs}"
    );
    println!("the listener in {}:\n{logs}", names.listener);
    Ok(())
}

/// Reads a child's pipe to the end in the background.
fn read_all(
    pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut bytes).await;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The published Dockerfile's final stage built for real with podman, from a build stage that
/// holds what the Dockerfile's RUN makes (checked by `dockerfiles_match_the_scratch_layout`):
/// its COPY instructions give the layout, /tmp's mode included.
#[test]
fn the_dockerfile_final_stage_gives_the_layout() -> anyhow::Result<()> {
    let (manager_bin, listener_bin, _) = built()?;
    for kind in Kind::ALL {
        let dockerfile = dockerfile(kind)?;
        let text = std::fs::read_to_string(&dockerfile.path)?;
        let final_stage = text
            .rfind("\nFROM scratch")
            .map(|at| &text[at + 1..])
            .context("no final FROM scratch stage")?;
        let context = SharedDir::new()?;
        let stage = context.0.join("stage");
        stage_build_outputs(kind, &stage, manager_bin, listener_bin)?;
        let containerfile = format!("FROM scratch AS build\nCOPY stage/ /\n\n{final_stage}");
        let file = context.write("Containerfile", &containerfile)?;
        let name = format!(
            "localhost/arc-rs-dockerfile-check-{}:{}",
            kind.short_name(),
            std::process::id()
        );
        let (code, _, stderr) = output(
            images::podman()
                .args([
                    "build",
                    "--layers=false",
                    "--timestamp",
                    "0",
                    "-t",
                    &name,
                    "-f",
                ])
                .arg(&file)
                .arg(&context.0),
        )?;
        ensure!(code == 0, "podman build of {name} failed: {stderr}");
        let archive = context.0.join("image.oci.tar");
        let saved = output(
            images::podman()
                .args(["save", "--format", "oci-archive", "-o"])
                .arg(&archive)
                .arg(&name),
        );
        let _ = output(images::podman().args(["rmi", "--force", &name]));
        let (code, _, stderr) = saved?;
        ensure!(code == 0, "podman save of {name} failed: {stderr}");
        images::layout(kind).check(&images::describe(&archive)?)?;
    }
    Ok(())
}

/// What `kind`'s Dockerfile build stage leaves behind: /out (binaries, passwd, group, dirs/tmp)
/// and the CA bundle.
fn stage_build_outputs(
    kind: Kind,
    stage: &Path,
    manager: &Path,
    listener: &Path,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let out = stage.join("out");
    std::fs::create_dir_all(out.join("dirs/tmp"))?;
    std::fs::set_permissions(
        out.join("dirs/tmp"),
        std::fs::Permissions::from_mode(0o1777),
    )?;
    std::fs::write(out.join("passwd"), images::PASSWD)?;
    std::fs::write(out.join("group"), images::GROUP)?;
    for file in ["passwd", "group"] {
        std::fs::set_permissions(out.join(file), std::fs::Permissions::from_mode(0o644))?;
    }
    match kind {
        Kind::Manager => {
            std::fs::copy(manager, out.join("manager"))?;
        }
        Kind::Listener => {}
    }
    std::fs::copy(listener, out.join("ghalistener"))?;
    let certs = stage.join("etc/ssl/certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::copy(images::CA_BUNDLE, certs.join("ca-certificates.crt"))?;
    std::fs::set_permissions(
        certs.join("ca-certificates.crt"),
        std::fs::Permissions::from_mode(0o644),
    )?;
    Ok(())
}
