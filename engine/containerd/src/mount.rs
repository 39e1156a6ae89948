//! Mounts as containerd describes them (`type`, `source`, `options`), and performing
//! them: the snapshotter hands out mount *descriptions*, and whoever needs the files
//! (Diff.Apply here, the shim for a container's rootfs) performs them.
//!
//! Options are the `mount(8)` words: the ones that are flags (`ro`, `rbind`, …) become
//! `MS_*` flags, the rest (`lowerdir=…`) are passed to the filesystem as its data.

use std::path::{Path, PathBuf};

use berth_libcontainer::mount_options::mount_described;
use nix::mount::{umount2, MntFlags};

/// One mount, as the snapshotter describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot mount {kind} {source_path} on {target}: {errno}")]
    Mount {
        kind: String,
        source_path: String,
        target: PathBuf,
        errno: nix::Error,
    },
    #[error("berth can apply a layer to exactly one mount, got {count}; pass the mounts the snapshotter returned")]
    Count { count: usize },
}

impl From<MountError> for tonic::Status {
    fn from(err: MountError) -> Self {
        match err {
            MountError::Count { .. } => tonic::Status::invalid_argument(err.to_string()),
            MountError::Mount { .. } => tonic::Status::internal(err.to_string()),
        }
    }
}

impl From<crate::proto::containerd::types::Mount> for Mount {
    fn from(m: crate::proto::containerd::types::Mount) -> Self {
        Mount {
            kind: m.r#type,
            source: m.source,
            options: m.options,
        }
    }
}

impl From<Mount> for crate::proto::containerd::types::Mount {
    fn from(m: Mount) -> Self {
        crate::proto::containerd::types::Mount {
            r#type: m.kind,
            source: m.source,
            target: String::new(),
            options: m.options,
        }
    }
}

/// Performs one mount on `target`.
pub fn mount_on(m: &Mount, target: &Path) -> Result<(), MountError> {
    mount_described(&m.kind, &m.source, target, &m.options).map_err(|errno| MountError::Mount {
        kind: m.kind.clone(),
        source_path: m.source.clone(),
        target: target.to_owned(),
        errno,
    })
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_all_under(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in points {
        let _ = umount2(&point, MntFlags::MNT_DETACH);
    }
}
