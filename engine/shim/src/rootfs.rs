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

use berth_libcontainer::mount_options::mount_described;
use nix::mount::{umount2, MntFlags};

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
    mount_described(&m.type_, &m.source, target, &m.options).map_err(|errno| RootfsError::Mount {
        kind: m.type_.clone(),
        source_path: m.source.clone(),
        target: target.to_owned(),
        errno,
    })
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
