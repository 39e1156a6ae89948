//! The supervisor's state: everything under `--root` and `--state`, opened once at
//! startup and shared (in an `Arc`) by every gRPC service.
//!
//! ```text
//! ROOT/metadata.redb        the metadata database (crate::metadata)
//! ROOT/content/             blobs and ingests (crate::content)
//! ROOT/snapshots/overlayfs/ snapshot directories (crate::snapshot)
//! ROOT/uuid                 this installation's identity (Introspection.Server)
//! ROOT/berth-containerd.lock  held (flock) by the running instance
//! STATE/apply/              scratch mount points while a layer is applied
//! STATE/io.containerd.runtime.v2.task/NS/ID/  a task's bundle (crate::runtime)
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::content::{ContentError, ContentStore};
use crate::events::Exchange;
use crate::metadata::{Db, MetadataError};
use crate::snapshot::{SnapshotError, Snapshotter};

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot create or read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

pub struct Supervisor {
    pub root: PathBuf,
    pub state: PathBuf,
    pub db: Db,
    pub content: ContentStore,
    pub snapshots: Snapshotter,
    pub uuid: String,
    /// Every event, on its way to every subscriber (see [`crate::events`]).
    pub events: Exchange,
    /// Held by the garbage collector while it sweeps, and by every request that
    /// writes a file before the record that will keep it (a committed blob, a new
    /// snapshot directory), so a sweep never sees the file without its record.
    /// A std Mutex: nothing awaits while holding it.
    gc_lock: Mutex<()>,
    /// Wakes the background collector (see [`crate::gc`]).
    pub gc_wanted: tokio::sync::Notify,
    scratch: AtomicU64,
}

impl Supervisor {
    pub fn open(root: &Path, state: &Path) -> Result<Supervisor, SupervisorError> {
        for dir in [root, state] {
            fs::create_dir_all(dir).map_err(|source| SupervisorError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        Ok(Supervisor {
            db: Db::open(&root.join("metadata.redb"))?,
            content: ContentStore::open(root.join("content"))?,
            snapshots: Snapshotter::open(root.join("snapshots/overlayfs"))?,
            uuid: uuid(root)?,
            events: Exchange::default(),
            root: root.to_owned(),
            state: state.to_owned(),
            gc_lock: Mutex::new(()),
            gc_wanted: tokio::sync::Notify::new(),
            scratch: AtomicU64::new(0),
        })
    }

    /// See the field's documentation.
    pub fn gc_lock(&self) -> MutexGuard<'_, ()> {
        self.gc_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unmounts and removes every scratch mount point left under `STATE/apply`: a
    /// berth-containerd killed while applying a layer left that layer's snapshot
    /// mounted there, and a mount outlives its process. Called at startup, before
    /// any request (so before any Apply of this process) can be running.
    pub fn clear_abandoned_scratch(&self) {
        let apply = self.state.join("apply");
        for entry in fs::read_dir(&apply).into_iter().flatten().flatten() {
            let path = entry.path();
            crate::mount::unmount_all_under(&path);
            match fs::remove_dir(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed an abandoned unpack mount point")
                }
                Err(err) => tracing::warn!(
                    path = %path.display(),
                    "cannot remove an abandoned unpack mount point: {err}"
                ),
            }
        }
    }

    /// A fresh scratch mount point path (not created).
    pub fn scratch_dir(&self) -> PathBuf {
        let n = self.scratch.fetch_add(1, Ordering::Relaxed);
        self.state
            .join("apply")
            .join(format!("{}-{n}", std::process::id()))
    }
}

/// The installation's UUID: made once (from the kernel's generator) and kept under root.
fn uuid(root: &Path) -> Result<String, SupervisorError> {
    let path = root.join("uuid");
    let io_err = |source| SupervisorError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(uuid) => Ok(uuid.trim().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").map_err(io_err)?;
            let uuid = uuid.trim().to_owned();
            let tmp = root.join("uuid.tmp");
            fs::write(&tmp, &uuid).map_err(io_err)?;
            fs::rename(&tmp, &path).map_err(io_err)?;
            Ok(uuid)
        }
        Err(e) => Err(io_err(e)),
    }
}
