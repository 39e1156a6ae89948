//! The container's root filesystem: the mounts containerd's snapshotter describes,
//! mounted at `bundle/rootfs` by Create and unmounted by Delete.
//!
//! containerd does not mount a container's rootfs itself: it hands the shim a list of
//! mounts (for the overlayfs snapshotter, one `overlay` with `lowerdir=`, `upperdir=`
//! and `workdir=` options) and the shim mounts them, in containerd's mount namespace,
//! before the runtime reads `config.json`, whose `root.path` is `rootfs`. An empty list
//! means the bundle's `root.path` is ready as it is.
//!
//! The options are split the way `mount(8)` splits them: the words the kernel knows as
//! flags (`ro`, `nosuid`, `bind`, ...) become `MS_*` flags, the rest is the
//! filesystem's data string. A real engine also handles option strings longer than a
//! page (overlays with very many layers); berth doesn't because its images are small.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::protos::types::mount::Mount;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot make the rootfs directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("cannot mount {kind} {source_path} on {target}: {errno}")]
    Mount {
        kind: String,
        source_path: String,
        target: PathBuf,
        errno: nix::Error,
    },
}

/// Mounts `mounts` at `bundle/rootfs`, in order; on a failure, undoes what it did.
pub fn mount_all(mounts: &[Mount], bundle: &Path) -> Result<(), RootfsError> {
    if mounts.is_empty() {
        return Ok(());
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| RootfsError::Dir(target.clone(), e))?;
    for m in mounts {
        if let Err(e) = mount_one(m, &target) {
            unmount_all(bundle);
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), RootfsError> {
    let (flags, data) = parse_options(&m.options);
    let fail = |errno| RootfsError::Mount {
        kind: m.type_.clone(),
        source_path: m.source.clone(),
        target: target.to_owned(),
        errno,
    };
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(
        Some(m.source.as_str()),
        target,
        Some(m.type_.as_str()),
        flags,
        data,
    )
    .map_err(fail)?;
    // A bind mount ignores MS_RDONLY on the first call: read-only takes a remount.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        let remount = flags | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, remount, None::<&str>).map_err(fail)?;
    }
    Ok(())
}

/// Unmounts everything at `bundle/rootfs` (stacked mounts included). Quietly does
/// nothing when nothing is mounted: Delete and the `delete` action may both run it.
pub fn unmount_all(bundle: &Path) {
    let target = bundle.join("rootfs");
    // Each call removes the top mount; EINVAL means nothing is mounted there any more.
    for _ in 0..32 {
        if umount2(&target, MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}

/// Splits mount options into flags and the filesystem's data string.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "defaults" | "async" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let (flags, data) = parse_options(&strings(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert_eq!(flags, MsFlags::empty());
        assert_eq!(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
    }

    #[test]
    fn flag_words_become_flags_and_later_words_win() {
        let (flags, data) = parse_options(&strings(&["rbind", "ro", "nosuid", "rw"]));
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(data, "");
    }
}
