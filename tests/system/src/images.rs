//! The manager image and the listener-only image, built `FROM scratch` with podman on this
//! machine (no base image, no registry, no Docker daemon).
//!
//! ```no_run
//! # fn example() -> anyhow::Result<()> {
//! system::images::ensure_tools()?;
//! let (manager, listener) = system::images::build_static_binaries()?;
//! let images = system::images::build_images(&manager, &listener)?;
//! for kind in system::images::Kind::ALL {
//!     let info = system::images::describe(&system::images::archive_path(kind))?;
//!     println!("{} {} {} bytes", images.get(kind), info.digest, info.uncompressed_bytes);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The binaries are statically linked against glibc (`-C target-feature=+crt-static` for
//! `x86_64-unknown-linux-gnu`), so the image needs no loader and no shared library. What each
//! image holds is data, [`layout`]: it stages the root filesystem, writes the Containerfile, is
//! checked against every built image ([`Layout::check`]) and, by the `images` suite, against the
//! published multi-stage Dockerfiles in `charts/docker/`.
//!
//! Every podman command runs with `--storage-driver vfs` (no overlay mounts needed), and the
//! images are built with `--timestamp 0`, so the same binaries give the same digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::binaries::workspace_root;

/// The Rust target the image binaries are built for.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The Cargo profile of the image binaries (the workspace's Cargo.toml says why).
pub const PROFILE: &str = "image";
/// The rustflags that link the image binaries statically (glibc's static libc).
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";
/// Where rustls-native-certs (through openssl-probe) finds the CA bundle in the images.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The user and group the images run as (`nonroot`, as in distroless/static:nonroot).
pub const USER: &str = "65532:65532";
/// The images' `/etc/passwd`: root and `nonroot` (65532).
pub const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                          nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
/// The images' `/etc/group`: root and `nonroot` (65532).
pub const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";
/// Debian packages the image build needs, with the command each provides.
pub const TOOLS: [(&str, &str); 4] = [
    ("podman", "podman"),
    ("buildah", "buildah"),
    ("skopeo", "skopeo"),
    ("runc", "runc"),
];

/// One of the two images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The manager image: `/manager`, and `/ghalistener` because the controller starts listener
    /// pods from its own image (as in ARC's image, two binaries).
    Manager,
    /// The listener-only image: `/ghalistener`.
    Listener,
}

impl Kind {
    /// Both images, manager first.
    pub const ALL: [Kind; 2] = [Kind::Manager, Kind::Listener];

    /// `manager` or `listener`: the archive's file name and the Dockerfile's
    /// (`charts/docker/<short name>.Dockerfile`).
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::Manager => "manager",
            Kind::Listener => "listener",
        }
    }

    /// The published multi-stage Dockerfile that builds the same layout where Docker and base
    /// images are available.
    pub fn dockerfile(self) -> PathBuf {
        workspace_root()
            .join("charts/docker")
            .join(format!("{}.Dockerfile", self.short_name()))
    }
}

/// What one path of an image is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The manager binary.
    ManagerBinary,
    /// The listener binary.
    ListenerBinary,
    /// The build machine's CA bundle (`/etc/ssl/certs/ca-certificates.crt`).
    CaBundle,
    /// [`PASSWD`].
    Passwd,
    /// [`GROUP`].
    Group,
    /// An empty directory.
    Directory,
}

/// One path of an image: everything is owned by root (0:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path in the image.
    pub path: &'static str,
    /// What it is made from.
    pub source: Source,
    /// Permission bits (with the sticky bit for `/tmp`).
    pub mode: u32,
}

impl Entry {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.source == Source::Directory
    }

    /// Whether the entry is a regular file.
    pub fn is_file(&self) -> bool {
        !self.is_dir()
    }
}

/// The whole content and configuration of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Which image.
    pub kind: Kind,
    /// Every path in the image, parents before children.
    pub entries: Vec<Entry>,
    /// `USER`.
    pub user: &'static str,
    /// `WORKDIR`.
    pub workdir: &'static str,
    /// `ENTRYPOINT` (exec form).
    pub entrypoint: Vec<&'static str>,
}

/// The layout of the `kind` image. The single source of truth: the staged root filesystem, the
/// Containerfile, the check of every built image and the Dockerfile suite all read it.
pub fn layout(kind: Kind) -> Layout {
    let dir = |path| Entry {
        path,
        source: Source::Directory,
        mode: 0o755,
    };
    let file = |path, source| Entry {
        path,
        source,
        mode: 0o644,
    };
    let binary = |path, source| Entry {
        path,
        source,
        mode: 0o755,
    };
    let mut entries = vec![
        dir("/etc"),
        file("/etc/group", Source::Group),
        file("/etc/passwd", Source::Passwd),
        dir("/etc/ssl"),
        dir("/etc/ssl/certs"),
        file(CA_BUNDLE, Source::CaBundle),
        Entry {
            path: "/tmp",
            source: Source::Directory,
            mode: 0o1777,
        },
    ];
    let entrypoint = match kind {
        Kind::Manager => {
            // The listener's own binary, not the manager's under another name: each listener
            // pod then maps only the listener's code (docs/architecture.md, "Memory").
            entries.push(binary("/manager", Source::ManagerBinary));
            entries.push(binary("/ghalistener", Source::ListenerBinary));
            vec!["/manager"]
        }
        Kind::Listener => {
            entries.push(binary("/ghalistener", Source::ListenerBinary));
            vec!["/ghalistener"]
        }
    };
    entries.sort_by_key(|e| e.path);
    Layout {
        kind,
        entries,
        user: USER,
        workdir: "/",
        entrypoint,
    }
}

impl Layout {
    /// The Containerfile for a build context whose `rootfs/` holds the staged tree: one layer
    /// (a `COPY` keeps the modes of what it copies, so `/tmp` stays 1777).
    pub fn containerfile(&self) -> String {
        let entrypoint = self
            .entrypoint
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "# Generated by system::images (cargo xtask images): the arc-rs {} image FROM scratch.\n\
             FROM scratch\n\
             COPY rootfs/ /\n\
             USER {}\n\
             WORKDIR {}\n\
             ENTRYPOINT [{entrypoint}]\n",
            self.kind.short_name(),
            self.user,
            self.workdir,
        )
    }

    /// Compares a built image with the layout: the same paths, kinds, modes and root
    /// ownership, nothing more, and the same user, working directory and entrypoint.
    pub fn check(&self, info: &ImageInfo) -> anyhow::Result<()> {
        let name = &info.name;
        let mut problems = Vec::new();
        if info.user != self.user {
            problems.push(format!("user is {:?}, want {:?}", info.user, self.user));
        }
        if info.workdir != self.workdir {
            problems.push(format!(
                "working directory is {:?}, want {:?}",
                info.workdir, self.workdir
            ));
        }
        if info.entrypoint != self.entrypoint {
            problems.push(format!(
                "entrypoint is {:?}, want {:?}",
                info.entrypoint, self.entrypoint
            ));
        }
        let actual: BTreeMap<&str, &FileInfo> =
            info.files.iter().map(|f| (f.path.as_str(), f)).collect();
        for entry in &self.entries {
            let Some(file) = actual.get(entry.path) else {
                problems.push(format!("{} is missing", entry.path));
                continue;
            };
            let want_kind = if entry.is_dir() {
                FileKind::Directory
            } else {
                FileKind::File
            };
            if file.kind != want_kind {
                problems.push(format!(
                    "{} is a {:?}, want a {want_kind:?}",
                    entry.path, file.kind
                ));
            }
            if file.mode != entry.mode {
                problems.push(format!(
                    "{} has mode {:o}, want {:o}",
                    entry.path, file.mode, entry.mode
                ));
            }
            if (file.uid, file.gid) != (0, 0) {
                problems.push(format!(
                    "{} is owned by {}:{}, want 0:0",
                    entry.path, file.uid, file.gid
                ));
            }
        }
        for path in actual.keys() {
            if !self.entries.iter().any(|e| e.path == *path) {
                problems.push(format!("{path} is not in the layout"));
            }
        }
        if !problems.is_empty() {
            bail!(
                "image {name} ({}) does not match its layout: {}",
                info.archive.display(),
                problems.join("; ")
            );
        }
        Ok(())
    }
}

/// The image references the project publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// The manager image, e.g. `ghcr.io/arc-rs/gha-runner-scale-set-controller:0.14.2`.
    pub manager: String,
    /// The listener-only image, e.g. `ghcr.io/arc-rs/gha-runner-scale-set-listener:0.14.2`.
    pub listener: String,
}

impl Images {
    /// The references of the published images: the controller chart's `image.repository` (its
    /// values.yaml) and `appVersion` (its Chart.yaml); the listener's repository is the
    /// manager's with `-controller` replaced by `-listener`.
    pub fn published() -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Values {
            image: ImageValues,
        }
        #[derive(Deserialize)]
        struct ImageValues {
            repository: String,
        }
        #[derive(Deserialize)]
        struct Chart {
            #[serde(rename = "appVersion")]
            app_version: String,
        }
        let chart_dir = workspace_root().join("charts/gha-runner-scale-set-controller");
        let values: Values = read_yaml(&chart_dir.join("values.yaml"))?;
        let chart: Chart = read_yaml(&chart_dir.join("Chart.yaml"))?;
        let repository = values.image.repository;
        let base = repository
            .strip_suffix("-controller")
            .unwrap_or(&repository);
        Ok(Images {
            manager: format!("{repository}:{}", chart.app_version),
            listener: format!("{base}-listener:{}", chart.app_version),
        })
    }

    /// The reference of the `kind` image.
    pub fn get(&self, kind: Kind) -> &str {
        match kind {
            Kind::Manager => &self.manager,
            Kind::Listener => &self.listener,
        }
    }
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Installs podman, buildah, skopeo and runc with apt-get (through sudo when not root) if any
/// is missing.
pub fn ensure_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(_, command)| find_command(command).is_none())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = "apt-get";
    if find_command(apt).is_none() {
        bail!(
            "{} missing and there is no apt-get; fix: install {} with the system's package manager",
            missing.join(", "),
            missing.join(" ")
        );
    }
    let sudo = !is_root()?;
    let command = |args: &[&str]| {
        let mut c = if sudo {
            let mut c = Command::new("sudo");
            c.arg(apt);
            c
        } else {
            Command::new(apt)
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    eprintln!("images: installing {}", missing.join(" "));
    run(&mut command(&["update", "-qq"]), "apt-get update")?;
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(&missing);
    run(
        &mut command(&install),
        &format!("apt-get install {}", missing.join(" ")),
    )?;
    if let Some((package, command)) = TOOLS.iter().find(|(_, c)| find_command(c).is_none()) {
        bail!("{command} is still missing after apt-get install {package}");
    }
    Ok(())
}

fn is_root() -> anyhow::Result<bool> {
    let out = run(Command::new("id").arg("-u"), "id -u")?;
    Ok(out.trim() == "0")
}

/// The path of `command` on `PATH` (or in the sbin directories, where runc lives).
fn find_command(command: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// Runs `command`; its stdout on success, an error naming `what` with its output otherwise.
fn run(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("starting {what} ({command:?})"))?;
    check_output(&output, what)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn check_output(output: &Output, what: &str) -> anyhow::Result<()> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(())
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the workspace root) or
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// `<target dir>/images/<short name>.oci.tar`: where [`build_images`] saves the `kind` image.
pub fn archive_path(kind: Kind) -> PathBuf {
    target_dir()
        .join("images")
        .join(format!("{}.oci.tar", kind.short_name()))
}

/// Builds the manager and listener statically linked for [`TARGET`] with [`PROFILE`] and
/// returns their paths (manager, listener); fails naming a binary that is not static.
///
/// Build scripts and proc-macros are built for the host without the static flag: the flags
/// are `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS` and `--target` is explicit.
/// `RUSTFLAGS` and `CARGO_ENCODED_RUSTFLAGS` are removed from cargo's environment because
/// they would take precedence.
pub fn build_static_binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = [
        "build",
        "--profile",
        PROFILE,
        "--locked",
        "--target",
        TARGET,
        "-p",
        "manager",
        "--bin",
        "manager",
        "-p",
        "listener",
        "--bin",
        "listener",
    ];
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            STATIC_RUSTFLAGS,
        )
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!(
            "cargo {} failed ({status}); the errors are above (fix: rustup target add {TARGET} \
             if the target is missing)",
            args.join(" ")
        );
    }
    let dir = target_dir().join(TARGET).join(PROFILE);
    let manager = dir.join("manager");
    let listener = dir.join("listener");
    for binary in [&manager, &listener] {
        check_static(binary)?;
    }
    Ok((manager, listener))
}

/// Fails unless `path` is a static x86-64 ELF executable: no program interpreter and, for a
/// static-pie, a dynamic section without needed libraries.
pub fn check_static(path: &Path) -> anyhow::Result<()> {
    let elf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display();
    let u16_at = |at: usize| -> anyhow::Result<u64> {
        let b = elf
            .get(at..at + 2)
            .with_context(|| format!("{name}: truncated ELF file"))?;
        Ok(u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |at: usize| -> anyhow::Result<u64> {
        let b = elf
            .get(at..at + 4)
            .with_context(|| format!("{name}: truncated ELF file"))?;
        Ok(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    let u64_at = |at: usize| -> anyhow::Result<u64> {
        let b = elf
            .get(at..at + 8)
            .with_context(|| format!("{name}: truncated ELF file"))?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    };
    let index = |v: u64| usize::try_from(v).context("ELF offset out of range");
    if elf.get(0..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("{name} is not a 64-bit little-endian ELF file");
    }
    let (phoff, phentsize, phnum) = (index(u64_at(0x20)?)?, u16_at(0x36)?, u16_at(0x38)?);
    for i in 0..phnum {
        let ph = phoff + index(i * phentsize)?;
        match u32_at(ph)? {
            // PT_INTERP
            3 => bail!(
                "{name} is dynamically linked (it has a program interpreter); fix: build it with \
                 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='{STATIC_RUSTFLAGS}' and \
                 --target {TARGET}, with RUSTFLAGS unset"
            ),
            // PT_DYNAMIC: a static-pie has one for its relocations, but needs no library.
            2 => {
                let (offset, size) = (index(u64_at(ph + 8)?)?, index(u64_at(ph + 32)?)?);
                for at in (offset..offset + size).step_by(16) {
                    match u64_at(at)? {
                        0 => break,
                        1 => bail!(
                            "{name} needs shared libraries (DT_NEEDED); fix: link it statically \
                             with '{STATIC_RUSTFLAGS}'"
                        ),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `podman` with [`nodesim::PODMAN_ARGS`] (vfs, cgroupfs): every podman command of the project
/// starts so.
pub fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(nodesim::PODMAN_ARGS);
    command
}

/// `podman ... run --rm` with the flags that work on the project's machines (cgroupfs, runc,
/// host network, small ulimits); append options, the image and its arguments.
pub fn podman_run() -> Command {
    let mut command = podman();
    command
        .args(nodesim::PODMAN_RUN_ARGS)
        .args(["--network", "host"]);
    command
}

/// Builds both images from the two static binaries, tags them with [`Images::published`] and
/// saves each as an OCI archive at [`archive_path`]; checks each archive against its
/// [`layout`]. With unchanged inputs podman reuses its cached layer and the archive is kept.
pub fn build_images(manager_bin: &Path, listener_bin: &Path) -> anyhow::Result<Images> {
    let images = Images::published()?;
    for binary in [manager_bin, listener_bin] {
        check_static(binary)?;
    }
    for kind in Kind::ALL {
        let layout = layout(kind);
        let name = images.get(kind);
        let context = tempfile::Builder::new()
            .prefix(&format!("arc-rs-image-{}-", kind.short_name()))
            .tempdir()
            .context("creating a temporary build context")?;
        stage(
            &layout,
            &context.path().join("rootfs"),
            manager_bin,
            listener_bin,
        )?;
        let containerfile = context.path().join("Containerfile");
        std::fs::write(&containerfile, layout.containerfile())
            .with_context(|| format!("writing {}", containerfile.display()))?;
        let previous = image_id(name);
        let iidfile = context.path().join("image-id");
        run(
            podman()
                .args(["build", "--timestamp", "0", "--iidfile"])
                .arg(&iidfile)
                .args(["-t", name, "-f"])
                .arg(&containerfile)
                .arg(context.path()),
            &format!("podman build of {name}"),
        )?;
        let id = std::fs::read_to_string(&iidfile)
            .with_context(|| format!("reading {}", iidfile.display()))?;
        let id = id.trim();
        let id = id.strip_prefix("sha256:").unwrap_or(id);
        if let Some(previous) = previous.filter(|p| p != id) {
            // The image this tag named before, with its cached steps; kept if still in use.
            let _ = podman().args(["rmi", &previous]).output();
        }
        let archive = archive_path(kind);
        let fresh = archive.is_file()
            && read_archive(&archive)
                .map(|a| a.config_digest == format!("sha256:{id}") && a.ref_name == name)
                .unwrap_or(false);
        if !fresh {
            save(name, &archive)?;
        }
        layout.check(&describe(&archive)?)?;
    }
    Ok(images)
}

/// The ID of the local image `name`, if there is one.
fn image_id(name: &str) -> Option<String> {
    let out = podman()
        .args(["image", "inspect", "--format", "{{.Id}}", name])
        .output()
        .ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !id.is_empty()).then_some(id)
}

/// Copies every entry of `layout` under `root` with its mode.
fn stage(
    layout: &Layout,
    root: &Path,
    manager_bin: &Path,
    listener_bin: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir(root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    for entry in &layout.entries {
        let path = root.join(entry.path.trim_start_matches('/'));
        let copy = |from: &Path| {
            std::fs::copy(from, &path)
                .map(|_| ())
                .with_context(|| format!("copying {} to {}", from.display(), path.display()))
        };
        let write = |text: &str| {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        match entry.source {
            Source::Directory => std::fs::create_dir(&path)
                .with_context(|| format!("creating {}", path.display()))?,
            Source::ManagerBinary => copy(manager_bin)?,
            Source::ListenerBinary => copy(listener_bin)?,
            Source::CaBundle => {
                let bundle = Path::new(CA_BUNDLE);
                if !bundle.is_file() {
                    bail!(
                        "this machine has no CA bundle at {CA_BUNDLE}; fix: apt-get install \
                         ca-certificates"
                    );
                }
                copy(bundle)?
            }
            Source::Passwd => write(PASSWD)?,
            Source::Group => write(GROUP)?,
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}

/// `podman save --format oci-archive`, through a temporary file renamed into place.
fn save(name: &str, archive: &Path) -> anyhow::Result<()> {
    let dir = archive
        .parent()
        .context("the archive path has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = archive.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let saved = run(
        podman()
            .args(["save", "--format", "oci-archive", "-o"])
            .arg(&partial)
            .arg(name),
        &format!("podman save of {name}"),
    );
    if let Err(e) = saved {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, archive)
        .with_context(|| format!("moving {} to {}", partial.display(), archive.display()))
}

/// One path in an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute path, without a trailing `/`.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Permission bits, with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size in bytes (0 for directories).
    pub size: u64,
}

/// The type of a [`FileInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic or hard link.
    Link,
    /// Anything else (devices, fifos).
    Other,
}

/// What an OCI archive of one image holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The archive.
    pub archive: PathBuf,
    /// The reference it was saved with.
    pub name: String,
    /// The manifest digest (`skopeo inspect`).
    pub digest: String,
    /// The image ID (the config's digest).
    pub id: String,
    /// `Entrypoint` (`skopeo inspect --config`).
    pub entrypoint: Vec<String>,
    /// `User`.
    pub user: String,
    /// `WorkingDir`.
    pub workdir: String,
    /// Sum of the layers' tar sizes.
    pub uncompressed_bytes: u64,
    /// Sum of the layers gzip-compressed (as they are pushed).
    pub compressed_bytes: u64,
    /// Every path of the image's file system.
    pub files: Vec<FileInfo>,
}

impl ImageInfo {
    /// The size of the regular file at `path` in the image, if any.
    pub fn file_size(&self, path: &str) -> Option<u64> {
        self.files
            .iter()
            .find(|f| f.path == path && f.kind == FileKind::File)
            .map(|f| f.size)
    }
}

/// Name, digest, configuration, sizes and files of the OCI archive `archive` (as saved by
/// [`build_images`]).
pub fn describe(archive: &Path) -> anyhow::Result<ImageInfo> {
    let what = archive.display();
    let transport = format!("oci-archive:{}", archive.display());
    let inspect: Value = serde_json::from_str(&run(
        Command::new("skopeo").args(["inspect", &transport]),
        &format!("skopeo inspect {transport}"),
    )?)
    .with_context(|| format!("parsing skopeo inspect of {what}"))?;
    let config: Value = serde_json::from_str(&run(
        Command::new("skopeo").args(["inspect", "--config", &transport]),
        &format!("skopeo inspect --config {transport}"),
    )?)
    .with_context(|| format!("parsing skopeo inspect --config of {what}"))?;
    let digest = inspect["Digest"]
        .as_str()
        .with_context(|| format!("skopeo inspect of {what} has no Digest"))?
        .to_owned();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let parsed = read_archive(archive)?;
    if parsed.manifest_digest != digest {
        bail!(
            "{what}: skopeo reports digest {digest} but index.json names {}",
            parsed.manifest_digest
        );
    }
    let mut files: BTreeMap<String, FileInfo> = BTreeMap::new();
    let (mut uncompressed_bytes, mut compressed_bytes) = (0, 0);
    for layer in &parsed.layers {
        let tar = if layer.gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(layer.data.as_slice())
                .read_to_end(&mut out)
                .with_context(|| format!("{what}: decompressing layer {}", layer.digest))?;
            compressed_bytes += layer.data.len() as u64;
            out
        } else {
            compressed_bytes += gzip_len(&layer.data)?;
            layer.data.clone()
        };
        uncompressed_bytes += tar.len() as u64;
        for entry in tar_entries(&tar).with_context(|| format!("{what}: layer {}", layer.digest))? {
            let path = format!(
                "/{}",
                entry.path.trim_start_matches("./").trim_end_matches('/')
            );
            if path == "/" {
                continue;
            }
            let kind = match entry.typeflag {
                b'0' | 0 | b'7' => FileKind::File,
                b'5' => FileKind::Directory,
                b'1' | b'2' => FileKind::Link,
                _ => FileKind::Other,
            };
            let size = if kind == FileKind::File {
                entry.size
            } else {
                0
            };
            files.insert(
                path.clone(),
                FileInfo {
                    path,
                    kind,
                    mode: entry.mode & 0o7777,
                    uid: entry.uid,
                    gid: entry.gid,
                    size,
                },
            );
        }
    }
    Ok(ImageInfo {
        archive: archive.to_path_buf(),
        name: parsed.ref_name,
        digest,
        id: parsed.config_digest,
        entrypoint: strings(&config["config"]["Entrypoint"]),
        user: text(&config["config"]["User"]),
        workdir: text(&config["config"]["WorkingDir"]),
        uncompressed_bytes,
        compressed_bytes,
        files: files.into_values().collect(),
    })
}

fn gzip_len(data: &[u8]) -> anyhow::Result<u64> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, data).context("compressing a layer")?;
    Ok(encoder.finish().context("compressing a layer")?.len() as u64)
}

/// The parts of an OCI archive (an OCI image layout in a tar) that [`describe`] needs.
struct Archive {
    ref_name: String,
    manifest_digest: String,
    config_digest: String,
    layers: Vec<Layer>,
}

struct Layer {
    digest: String,
    gzip: bool,
    data: Vec<u8>,
}

fn read_archive(archive: &Path) -> anyhow::Result<Archive> {
    let what = archive.display();
    let bytes = std::fs::read(archive).with_context(|| format!("reading {what}"))?;
    let entries = tar_entries(&bytes).with_context(|| format!("reading {what} as a tar"))?;
    let file = |name: &str| -> anyhow::Result<&[u8]> {
        entries
            .iter()
            .find(|e| e.path.trim_start_matches("./") == name)
            .map(|e| &bytes[e.data.clone()])
            .with_context(|| format!("{what} has no {name}; is it an OCI archive?"))
    };
    let blob = |digest: &str| -> anyhow::Result<&[u8]> {
        let hex = digest
            .strip_prefix("sha256:")
            .with_context(|| format!("{what}: unsupported digest {digest}"))?;
        file(&format!("blobs/sha256/{hex}"))
    };
    let json = |data: &[u8], name: &str| -> anyhow::Result<Value> {
        serde_json::from_slice(data).with_context(|| format!("{what}: parsing {name}"))
    };
    let index = json(file("index.json")?, "index.json")?;
    let descriptor = &index["manifests"][0];
    let manifest_digest = descriptor["digest"]
        .as_str()
        .with_context(|| format!("{what}: index.json names no manifest"))?
        .to_owned();
    let ref_name = descriptor["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let manifest = json(blob(&manifest_digest)?, "the manifest")?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .with_context(|| format!("{what}: the manifest names no config"))?
        .to_owned();
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let digest = layer["digest"]
            .as_str()
            .with_context(|| format!("{what}: a layer has no digest"))?
            .to_owned();
        let media_type = layer["mediaType"].as_str().unwrap_or_default();
        let gzip = media_type.ends_with("gzip");
        if !gzip && !media_type.ends_with(".tar") {
            bail!("{what}: layer {digest} has media type {media_type:?}, not a (gzipped) tar");
        }
        let data = blob(&digest)?.to_vec();
        layers.push(Layer { digest, gzip, data });
    }
    Ok(Archive {
        ref_name,
        manifest_digest,
        config_digest,
        layers,
    })
}

/// One member of a tar file.
struct TarEntry {
    path: String,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    typeflag: u8,
    data: std::ops::Range<usize>,
}

/// The members of a tar file in memory (the `tar` crate reads the pax and GNU extensions).
fn tar_entries(bytes: &[u8]) -> anyhow::Result<Vec<TarEntry>> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = Vec::new();
    for entry in archive.entries().context("reading the tar")? {
        let entry = entry.context("reading a tar member")?;
        let header = entry.header();
        let size = entry.size();
        let start = usize::try_from(entry.raw_file_position())?;
        let end = start
            .checked_add(usize::try_from(size)?)
            .filter(|end| *end <= bytes.len())
            .context("tar member runs past the end of the file")?;
        entries.push(TarEntry {
            path: entry.path()?.to_string_lossy().into_owned(),
            mode: header.mode()?,
            uid: header.uid()?,
            gid: header.gid()?,
            size,
            typeflag: header.entry_type().as_byte(),
            data: start..end,
        });
    }
    Ok(entries)
}

/// A human-readable size: `12.3 MB` (decimal units, as registries show).
pub fn human_size(bytes: u64) -> String {
    let mut out = String::new();
    let value = bytes as f64;
    if value >= 1e6 {
        let _ = write!(out, "{:.1} MB", value / 1e6);
    } else if value >= 1e3 {
        let _ = write!(out, "{:.1} kB", value / 1e3);
    } else {
        let _ = write!(out, "{bytes} B");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_names_come_from_the_chart() {
        let images = Images::published().expect("chart files");
        assert!(
            images
                .manager
                .starts_with("ghcr.io/arc-rs/gha-runner-scale-set-controller:")
        );
        assert!(
            images
                .listener
                .starts_with("ghcr.io/arc-rs/gha-runner-scale-set-listener:")
        );
    }

    #[test]
    fn layouts() {
        let manager = layout(Kind::Manager);
        let listener = layout(Kind::Listener);
        assert_eq!(manager.entrypoint, ["/manager"]);
        assert_eq!(listener.entrypoint, ["/ghalistener"]);
        assert!(manager.entries.iter().any(|e| e.path == "/ghalistener"));
        assert!(!listener.entries.iter().any(|e| e.path == "/manager"));
        let tmp = manager
            .entries
            .iter()
            .find(|e| e.path == "/tmp")
            .expect("tmp");
        assert_eq!(tmp.mode, 0o1777);
        assert!(
            manager
                .containerfile()
                .contains("ENTRYPOINT [\"/manager\"]")
        );
    }
}
