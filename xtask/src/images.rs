//! `cargo xtask images`: the manager image and the listener-only image, built FROM scratch with
//! podman from statically linked binaries of the `image` profile, saved as OCI archives under
//! `<target dir>/images/`.

use std::time::Instant;

use anyhow::Context;
use system::images::{self, Kind};

/// Installs podman and friends if missing, builds the static binaries and both images, and
/// prints what each image is.
pub fn run() -> anyhow::Result<()> {
    images::ensure_tools().context("installing the container tools")?;
    let started = Instant::now();
    let (manager, listener) = images::build_static_binaries()?;
    println!(
        "images: static binaries (profile image) ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for binary in [&manager, &listener] {
        let size = std::fs::metadata(binary)
            .with_context(|| format!("reading {}", binary.display()))?
            .len();
        println!(
            "  {} ({}, static)",
            binary.display(),
            images::human_size(size)
        );
    }
    let started = Instant::now();
    let names = images::build_images(&manager, &listener)?;
    println!(
        "images: built and saved in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for kind in Kind::ALL {
        let archive = images::archive_path(kind);
        let info = images::describe(&archive)?;
        println!("{}", names.get(kind));
        println!("  digest        {}", info.digest);
        println!("  entrypoint    {}", info.entrypoint.join(" "));
        println!("  user          {}", info.user);
        println!(
            "  uncompressed  {} ({} bytes)",
            images::human_size(info.uncompressed_bytes),
            info.uncompressed_bytes
        );
        println!(
            "  compressed    {} ({} bytes, gzip)",
            images::human_size(info.compressed_bytes),
            info.compressed_bytes
        );
        println!("  archive       {}", archive.display());
    }
    Ok(())
}
