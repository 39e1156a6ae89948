//! The `busybox` test image: berth's stand-in for pulling `busybox` from Docker Hub.
//!
//! There is no Docker Hub here, so berth makes the image itself from Debian's
//! busybox-static binary: one layer holding `/bin/busybox`, a hard link per applet
//! (`/bin/sh`, `/bin/ls`, ...) and a minimal `/etc`, with `Cmd ["sh"]`. It is written
//! both as an OCI image layout and as a `docker save` tar, under `target/berth-images/`,
//! where `cargo xtask setup` leaves it and [`busybox`] finds it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_oci::oci_spec::image::{Config, ConfigBuilder, ImageIndex};
use berth_oci::write::{self, Image, LayerBuilder, WriteError};

/// The name tests and the demo use for the image.
pub const REFERENCE: &str = "busybox:latest";
/// Where Debian's busybox-static package installs the binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "{HOST_BUSYBOX} not found: install Debian's busybox-static (`cargo xtask setup` does)"
    )]
    NoBusybox,
    #[error(
        "{HOST_BUSYBOX} is dynamically linked, so it cannot run in an image with no libc; \
         install busybox-static instead of busybox (`cargo xtask setup` does)"
    )]
    NotStatic,
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{HOST_BUSYBOX} --list-full` failed: {0}")]
    ListApplets(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The two on-disk forms of the test image.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// OCI image layout directory (`skopeo inspect oci:DIR:latest`).
    pub layout: PathBuf,
    /// `docker save`-format tar (`docker load -i`, `ctr image import`).
    pub archive: PathBuf,
}

/// `target/berth-images`, honouring `CARGO_TARGET_DIR` as cargo does.
pub fn images_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("berth-images")
}

impl TestImage {
    /// The manifest digest recorded in the layout's `index.json`.
    pub fn manifest_digest(&self) -> Result<String, ImageError> {
        let index = self.layout.join("index.json");
        let index = ImageIndex::from_file(&index).map_err(|e| ImageError::Io {
            path: index,
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(index
            .manifests()
            .first()
            .map(|m| m.digest().to_string())
            .unwrap_or_default())
    }
}

fn paths_in(dir: &Path) -> TestImage {
    TestImage {
        layout: dir.join("busybox"),
        archive: dir.join("busybox.tar"),
    }
}

/// The test image, built on first use if `cargo xtask setup` has not left it in
/// [`images_dir`] already. Panics with the reason when it cannot be built: a test
/// without its image has nothing to check.
pub fn busybox() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let paths = paths_in(&images_dir());
        if paths.layout.join("index.json").exists() && paths.archive.exists() {
            return paths;
        }
        build_busybox(&images_dir()).unwrap_or_else(|e| panic!("cannot build the test image: {e}"))
    })
}

/// Builds the image afresh into `dir` (`dir/busybox/` and `dir/busybox.tar`),
/// replacing any earlier build. Safe against concurrent builders: each writes under
/// its own temporary name and renames into place, and every build is identical.
pub fn build_busybox(dir: &Path) -> Result<TestImage, ImageError> {
    let image = busybox_image()?;
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ImageError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let paths = paths_in(dir);
    image.write_docker_archive(&paths.archive)?;

    let fresh = dir.join(format!(".busybox.new-{}", std::process::id()));
    let _ = fs::remove_dir_all(&fresh);
    image.write_oci_layout(&fresh)?;
    let old = dir.join(format!(".busybox.old-{}", std::process::id()));
    if paths.layout.exists() {
        fs::rename(&paths.layout, &old).map_err(io_err(&paths.layout))?;
    }
    match fs::rename(&fresh, &paths.layout) {
        Ok(()) => {}
        // Another process put an identical layout in place between our two renames.
        Err(_) if paths.layout.join("index.json").exists() => {
            fs::remove_dir_all(&fresh).map_err(io_err(&fresh))?
        }
        Err(e) => return Err(io_err(&paths.layout)(e)),
    }
    let _ = fs::remove_dir_all(&old);
    Ok(paths)
}

// ANCHOR: busybox_image
/// The image in memory: one layer with busybox, its applets and a minimal `/etc`.
pub fn busybox_image() -> Result<Image, ImageError> {
    Ok(write::build_image(
        "busybox",
        "latest",
        busybox_config(),
        vec![busybox_layer()?],
    )?)
}

/// The image's one layer, as an uncompressed tar.
fn busybox_layer() -> Result<Vec<u8>, ImageError> {
    let binary = fs::read(HOST_BUSYBOX).map_err(|_| ImageError::NoBusybox)?;
    if has_interpreter(&binary) {
        return Err(ImageError::NotStatic);
    }
    let mut layer = LayerBuilder::new();
    for dir in [
        "bin", "dev", "etc", "home", "proc", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var",
    ] {
        layer.dir(dir, 0o755)?;
    }
    layer.dir("root", 0o700)?;
    layer.dir("tmp", 0o1777)?;
    layer.file("bin/busybox", 0o755, &binary)?;
    // Each applet is a hard link to the one binary, which picks its behaviour
    // from the name it was started under (argv[0]).
    for applet in applets()? {
        if applet != "bin/busybox" {
            layer.hardlink(&applet, "bin/busybox")?;
        }
    }
    layer.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )?;
    layer.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;

    Ok(layer.finish()?)
}

fn busybox_config() -> Config {
    ConfigBuilder::default()
        .env(vec![PATH_ENV.to_owned()])
        .cmd(vec!["sh".to_owned()])
        .build()
        .expect("every field of the config is set")
}
// ANCHOR_END: busybox_image

/// The test image with a small layer on top for each of `numbers`, written as an OCI
/// layout in `dir` (tagged `latest`). Layer N adds `/layers/N` and writes N into
/// `/layers/top`, so a container shows that every layer was applied, and in order. A
/// number given twice is the same layer twice, as images built in steps can have.
pub fn layered_busybox(dir: &Path, numbers: &[usize]) -> Result<Image, ImageError> {
    let mut layers = vec![busybox_layer()?];
    for n in numbers {
        let mut layer = LayerBuilder::new();
        layer.dir("layers", 0o755)?;
        layer.file(&format!("layers/{n}"), 0o644, n.to_string().as_bytes())?;
        layer.file("layers/top", 0o644, n.to_string().as_bytes())?;
        layers.push(layer.finish()?);
    }
    let image = write::build_image("layered", "latest", busybox_config(), layers)?;
    image.write_oci_layout(dir)?;
    Ok(image)
}

/// The applets this busybox was built with, as root-relative paths, sorted so the
/// layer's order never depends on the binary's.
fn applets() -> Result<Vec<String>, ImageError> {
    let out = Command::new(HOST_BUSYBOX)
        .arg("--list-full")
        .output()
        .map_err(|e| ImageError::ListApplets(e.to_string()))?;
    if !out.status.success() {
        return Err(ImageError::ListApplets(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    applets.sort();
    applets.dedup();
    Ok(applets)
}

/// Whether an ELF binary names a dynamic loader (a `PT_INTERP` program header):
/// such a binary cannot start in an image that has no `/lib`.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    // 64-bit little-endian ELF only: the machines berth runs on.
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).any(|i| u32_at(phoff + i * phentsize) == Some(PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_binaries_are_recognised() {
        // /bin/ls on any Debian machine is dynamically linked.
        assert!(has_interpreter(&fs::read("/bin/ls").unwrap()));
        assert!(
            !has_interpreter(&fs::read(HOST_BUSYBOX).unwrap()),
            "busybox-static must be static"
        );
        assert!(!has_interpreter(b"not an elf file"));
    }
}
