//! Mounts as containerd describes them (`type`, `source`, `options`), and performing
//! them: the snapshotter hands out mount *descriptions*, and whoever needs the files
//! (Diff.Apply here, the shim for a container's rootfs) performs them.
//!
//! Options are the `mount(8)` words: the ones that are flags (`ro`, `rbind`, …) become
//! `MS_*` flags, the rest (`lowerdir=…`) are passed to the filesystem as its data.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

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

/// Splits options into `MS_*` flags and the filesystem's data string.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Performs one mount on `target`.
pub fn mount_on(m: &Mount, target: &Path) -> Result<(), MountError> {
    let (flags, data) = parse_options(&m.options);
    let fail = |errno| MountError::Mount {
        kind: m.kind.clone(),
        source_path: m.source.clone(),
        target: target.to_owned(),
        errno,
    };
    let fstype = (m.kind != "bind").then_some(m.kind.as_str());
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, fstype, flags, data).map_err(fail)?;
    // A bind mount ignores MS_RDONLY on the first call: read-only takes a remount.
    if flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        mount(None::<&str>, target, None::<&str>, remount, None::<&str>).map_err(fail)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_told_apart() {
        let options: Vec<String> = ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]
            .map(String::from)
            .into();
        assert_eq!(
            parse_options(&options),
            (
                MsFlags::empty(),
                "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b".to_string()
            )
        );
        let options: Vec<String> = ["ro", "rbind"].map(String::from).into();
        assert_eq!(
            parse_options(&options),
            (
                MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC,
                String::new()
            )
        );
    }
}
