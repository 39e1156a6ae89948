//! The bundle: the directory the daemon hands down for each container, and all the
//! runtime gets. It is `ROOT/containers/<id>` with the image unpacked into `rootfs/`
//! and a `config.json` saying what to run there.
//!
//! In chapter 02 the daemon went from image to process in one function. Split across
//! processes, that work needs a boundary both sides agree on: everything that needs the
//! image (its layers, its `PATH`, its default command) happens here, in the daemon, and
//! the runtime never sees an image at all. The OCI runtime spec draws the same line
//! with the same word; this `config.json` is a tiny subset of its format.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_oci::layout::{Image, Layout};
use berth_oci::unpack::{open_in_root, unpack_image, UnpackError};
use serde::{Deserialize, Serialize};

/// The search path when the image sets none: Docker's default.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("unpacking the image into {rootfs:?}: {source}")]
    Unpack {
        rootfs: PathBuf,
        // Boxed, as the other large sources: errors travel up by value.
        source: Box<UnpackError>,
    },
    #[error("command {command:?} not found in the image (searched {searched}); pass a program the image has, such as /bin/sh")]
    CommandNotFound { command: String, searched: String },
    #[error("no command given and the image has no default (Cmd/Entrypoint); pass one after the image name")]
    NoCommand,
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the bundle's config {path:?} is unreadable: {source}; remove the container and run it again")]
    Config {
        path: PathBuf,
        source: serde_json::Error,
    },
}

// ANCHOR: config
/// `config.json`: what the runtime runs inside `rootfs/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub hostname: String,
    /// The command; `args[0]` is already resolved to a path inside the rootfs.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
}
// ANCHOR_END: config

/// What the daemon needs to prepare one bundle.
#[derive(Debug)]
pub struct Prepare<'a> {
    pub id: &'a str,
    /// `ROOT/containers/<id>`.
    pub dir: &'a Path,
    pub layout: &'a Layout,
    pub image: &'a Image,
    /// The command the user gave; empty means the image's Entrypoint + Cmd.
    pub cmd: &'a [String],
}

// ANCHOR: prepare
/// Unpacks the image into `dir/rootfs` and writes `dir/config.json`.
pub fn prepare(bundle: &Prepare) -> Result<(), BundleError> {
    let rootfs = bundle.dir.join("rootfs");
    io_at("creating", &rootfs, fs::create_dir_all(&rootfs))?;
    unpack_image(bundle.layout, bundle.image, &rootfs).map_err(|source| BundleError::Unpack {
        rootfs: rootfs.clone(),
        source: Box::new(source),
    })?;

    let settings = ImageSettings::of(bundle.image);
    let mut args = if bundle.cmd.is_empty() {
        settings.default_cmd.clone()
    } else {
        bundle.cmd.to_vec()
    };
    let program = args.first().ok_or(BundleError::NoCommand)?;
    // Resolved here, along the image's PATH, so that a missing program is a clear
    // error now, and the runtime can `execve` a path without searching.
    args[0] = find_command(&rootfs, program, &settings.path())?;
    // The mount points the runtime needs; a minimal image may lack them.
    for dir in ["proc", "dev"] {
        let dir = rootfs.join(dir);
        io_at("creating", &dir, fs::create_dir_all(&dir))?;
    }
    let mut env = settings.env.clone();
    // As Docker does: a command always has a PATH.
    if !env.iter().any(|var| var.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let config = Config {
        hostname: bundle.id[..12.min(bundle.id.len())].to_string(),
        args,
        env,
        cwd: settings.working_dir.unwrap_or_else(|| "/".into()),
    };
    let path = bundle.dir.join("config.json");
    let bytes = serde_json::to_vec_pretty(&config).map_err(|source| BundleError::Config {
        path: path.clone(),
        source,
    })?;
    io_at("writing", &path, fs::write(&path, bytes))
}
// ANCHOR_END: prepare

/// Reads `bundle/config.json`: the runtime's first step.
pub fn read_config(bundle: &Path) -> Result<Config, BundleError> {
    let path = bundle.join("config.json");
    let bytes = io_at("reading", &path, fs::read(&path))?;
    serde_json::from_slice(&bytes).map_err(|source| BundleError::Config { path, source })
}

/// What the image config says about how to run it.
#[derive(Debug, Default)]
struct ImageSettings {
    env: Vec<String>,
    working_dir: Option<String>,
    default_cmd: Vec<String>,
}

impl ImageSettings {
    fn of(image: &Image) -> ImageSettings {
        let Some(config) = image.config().config() else {
            return ImageSettings::default();
        };
        let mut default_cmd = config.entrypoint().clone().unwrap_or_default();
        default_cmd.extend(config.cmd().clone().unwrap_or_default());
        ImageSettings {
            env: config.env().clone().unwrap_or_default(),
            working_dir: config.working_dir().clone().filter(|dir| !dir.is_empty()),
            default_cmd,
        }
    }

    fn path(&self) -> String {
        self.env
            .iter()
            .find_map(|var| var.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string()
    }
}

/// Finds the executable file `program` names inside `rootfs`, resolving it along
/// `path` as `execvp` would, symlinks included but never out of the root. Returns its
/// path inside the container.
fn find_command(rootfs: &Path, program: &str, path: &str) -> Result<String, BundleError> {
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.to_string()]
    } else {
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{dir}/{program}"))
            .collect()
    };
    let executable = |candidate: &&String| {
        open_in_root(rootfs, candidate)
            .and_then(|file| file.metadata())
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if let Some(found) = candidates.iter().find(executable) {
        return Ok(found.clone());
    }
    let searched = if program.contains('/') {
        "that path".to_string()
    } else {
        format!("PATH={path}")
    };
    Err(BundleError::CommandNotFound {
        command: program.into(),
        searched,
    })
}

fn io_at<T>(action: &'static str, path: &Path, result: io::Result<T>) -> Result<T, BundleError> {
    result.map_err(|source| BundleError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_found_along_the_path_and_never_outside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("tool"), "").unwrap();
        fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(bin.join("data"), "").unwrap();
        let found = find_command(root.path(), "tool", "/usr/bin:/bin").unwrap();
        assert_eq!(found, "/bin/tool");
        // Not executable, and not there.
        assert!(find_command(root.path(), "data", "/bin").is_err());
        assert!(find_command(root.path(), "/etc/passwd", "/bin").is_err());
        // A symlink that climbs out stays inside the root, where there is nothing.
        std::os::unix::fs::symlink("/../../../bin/sh", bin.join("escape")).unwrap();
        assert!(find_command(root.path(), "escape", "/bin").is_err());
    }

    #[test]
    fn the_config_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            hostname: "abc".into(),
            args: vec!["/bin/sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
        };
        fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
        assert_eq!(read_config(dir.path()).unwrap(), config);
        fs::write(dir.path().join("config.json"), "{").unwrap();
        let err = read_config(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("remove the container"));
    }
}
