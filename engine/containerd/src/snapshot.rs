//! The overlayfs snapshotter: the directories an image's layers are unpacked into,
//! stacked so that each layer is stored once and a container's writes go to a layer
//! of its own.
//!
//! A snapshot is *active* (writable: being unpacked into, or a container's rootfs),
//! *committed* (read-only, a parent for others: one image layer) or a *view* (a
//! read-only look at a committed one). Each has a directory `ROOT/snapshots/ID` with
//! `fs/` (its files: for a committed snapshot, exactly one layer's changes) and `work/`
//! (overlayfs's scratch). Nothing here mounts anything: [`mounts`] *describes* how to
//! see a snapshot with its parents underneath, and the caller performs the mount.
//!
//! Names and parents live in the metadata database, per namespace; the directory
//! numbers come from a counter that only grows, so a number is never reused.
//!
//! Read next: [`crate::diff`], which fills an active snapshot from a layer tarball.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metadata::{self, Db, MetadataError, Table, Txn};
use crate::mount::Mount;

/// The one snapshotter berth has, by the name clients ask for.
pub const OVERLAYFS: &str = "overlayfs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    View,
    Active,
    Committed,
}

impl Kind {
    /// The API's numbers (containerd.services.snapshots.v1.Kind).
    pub fn to_proto(self) -> i32 {
        match self {
            Kind::View => 1,
            Kind::Active => 2,
            Kind::Committed => 3,
        }
    }
}

/// What the database records of one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRecord {
    /// Its directory: `ROOT/snapshots/ID`.
    pub id: u64,
    pub kind: Kind,
    /// The committed snapshot below it, by name.
    pub parent: Option<String>,
    pub created: i64,
    pub updated: i64,
    pub labels: BTreeMap<String, String>,
    /// Bytes and inodes of its own `fs/`, measured when it was committed.
    pub usage: Option<(i64, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshotter {name:?} not loaded: berth has only \"{OVERLAYFS}\"")]
    UnknownSnapshotter { name: String },
    #[error("snapshot {key:?} does not exist in namespace {namespace:?}")]
    NotFound { namespace: String, key: String },
    #[error("parent snapshot {parent:?} does not exist in namespace {namespace:?}")]
    NoParent { namespace: String, parent: String },
    #[error("snapshot {key:?} already exists")]
    Exists { key: String },
    #[error("parent {parent:?} is not a committed snapshot (it is {kind:?}); commit it first")]
    ParentNotCommitted { parent: String, kind: Kind },
    #[error("snapshot {key:?} is {kind:?}, not active; only an active snapshot can be committed")]
    NotActive { key: String, kind: Kind },
    #[error("snapshot {key:?} still has children ({children}); remove them first")]
    HasChildren { key: String, children: String },
    #[error("a snapshot key must not be empty")]
    EmptyKey,
    #[error("snapshot storage I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Lease(#[from] crate::lease::LeaseError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

impl From<SnapshotError> for tonic::Status {
    fn from(err: SnapshotError) -> Self {
        use tonic::Status;
        match &err {
            SnapshotError::UnknownSnapshotter { .. } | SnapshotError::EmptyKey => {
                Status::invalid_argument(err.to_string())
            }
            SnapshotError::NotFound { .. } | SnapshotError::NoParent { .. } => {
                Status::not_found(err.to_string())
            }
            SnapshotError::Exists { .. } => Status::already_exists(err.to_string()),
            SnapshotError::ParentNotCommitted { .. } => Status::invalid_argument(err.to_string()),
            SnapshotError::NotActive { .. } | SnapshotError::HasChildren { .. } => {
                Status::failed_precondition(err.to_string())
            }
            SnapshotError::Lease(_) => Status::not_found(err.to_string()),
            SnapshotError::Io { .. } | SnapshotError::Metadata(_) => {
                Status::internal(err.to_string())
            }
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Refuses any snapshotter but overlayfs.
pub fn check_name(snapshotter: &str) -> Result<(), SnapshotError> {
    if snapshotter == OVERLAYFS {
        Ok(())
    } else {
        Err(SnapshotError::UnknownSnapshotter {
            name: snapshotter.to_owned(),
        })
    }
}

/// What a new snapshot is to be.
#[derive(Debug, Clone)]
pub struct New<'a> {
    pub key: &'a str,
    /// The committed snapshot to stack it on ("" for none).
    pub parent: &'a str,
    /// Active or view.
    pub kind: Kind,
    pub labels: BTreeMap<String, String>,
}

/// The snapshot directories under `ROOT/snapshots`.
pub struct Snapshotter {
    dir: PathBuf,
}

// ANCHOR: mounts
/// How to see snapshot `id` of `kind`, whose parents' ids are `parents` (nearest first).
///
/// Without parents there is nothing to stack: a bind mount of its own `fs/`. A view of
/// exactly one layer is that layer, read-only. Anything else is an overlay: the parents
/// as `lowerdir` (the nearest first, as overlayfs reads left to right) and, for an
/// active snapshot, its own `fs/` as the writable `upperdir`.
pub fn mounts(dir: &Path, id: u64, kind: Kind, parents: &[u64]) -> Vec<Mount> {
    let fs_of = |id: u64| dir.join(id.to_string()).join("fs").display().to_string();
    if parents.is_empty() {
        let mode = if kind == Kind::View { "ro" } else { "rw" };
        return vec![Mount {
            kind: "bind".into(),
            source: fs_of(id),
            options: vec![mode.into(), "rbind".into()],
        }];
    }
    // `index=off`: overlayfs's inode index would tie a lower layer to the first
    // overlay that used it, and layers are shared by many.
    let mut options = vec!["index=off".to_string()];
    if kind == Kind::Active {
        let work = dir.join(id.to_string()).join("work");
        options.push(format!("workdir={}", work.display()));
        options.push(format!("upperdir={}", fs_of(id)));
    } else if let [only] = parents {
        return vec![Mount {
            kind: "bind".into(),
            source: fs_of(*only),
            options: vec!["ro".into(), "rbind".into()],
        }];
    }
    let lower: Vec<String> = parents.iter().map(|&p| fs_of(p)).collect();
    options.push(format!("lowerdir={}", lower.join(":")));
    vec![Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options,
    }]
}
// ANCHOR_END: mounts

impl Snapshotter {
    pub fn open(dir: PathBuf) -> Result<Snapshotter, SnapshotError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Snapshotter { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// The ids of `parent` and everything below it, nearest first.
    fn parent_ids(
        txn: &Txn,
        namespace: &str,
        mut parent: Option<String>,
    ) -> Result<Vec<u64>, SnapshotError> {
        let mut ids = Vec::new();
        while let Some(name) = parent {
            let record: SnapshotRecord =
                txn.get(Table::Snapshots, namespace, &name)?
                    .ok_or_else(|| SnapshotError::NoParent {
                        namespace: namespace.to_owned(),
                        parent: name.clone(),
                    })?;
            ids.push(record.id);
            parent = record.parent;
        }
        Ok(ids)
    }

    /// Creates an active snapshot (or a view) `key` on `parent`, and returns its mounts.
    /// `on_create` runs in the same transaction (to add the snapshot to a lease).
    pub fn prepare(
        &self,
        db: &Db,
        namespace: &str,
        new: New,
        on_create: impl FnOnce(&Txn) -> Result<(), SnapshotError>,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let New {
            key,
            parent,
            kind,
            labels,
        } = new;
        if key.is_empty() {
            return Err(SnapshotError::EmptyKey);
        }
        db.update(|txn| {
            if txn
                .get::<SnapshotRecord>(Table::Snapshots, namespace, key)?
                .is_some()
            {
                return Err(SnapshotError::Exists {
                    key: key.to_owned(),
                });
            }
            let parent = (!parent.is_empty()).then(|| parent.to_owned());
            if let Some(name) = &parent {
                let record: SnapshotRecord = txn
                    .get(Table::Snapshots, namespace, name)?
                    .ok_or_else(|| SnapshotError::NoParent {
                        namespace: namespace.to_owned(),
                        parent: name.clone(),
                    })?;
                if record.kind != Kind::Committed {
                    return Err(SnapshotError::ParentNotCommitted {
                        parent: name.clone(),
                        kind: record.kind,
                    });
                }
            }
            let parents = Self::parent_ids(txn, namespace, parent.clone())?;
            let id = txn.next_id("snapshots")?;
            let dir = self.snapshot_dir(id);
            for sub in ["fs", "work"] {
                fs::create_dir_all(dir.join(sub)).map_err(io_err(&dir))?;
            }
            let now = metadata::now();
            let record = SnapshotRecord {
                id,
                kind,
                parent,
                created: now,
                updated: now,
                labels,
                usage: None,
            };
            txn.put(Table::Snapshots, namespace, key, &record)?;
            on_create(txn)?;
            Ok(mounts(&self.dir, id, kind, &parents))
        })
    }

    pub fn mounts(&self, db: &Db, namespace: &str, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        db.update(|txn| {
            let record = self.get(txn, namespace, key)?;
            let parents = Self::parent_ids(txn, namespace, record.parent.clone())?;
            Ok(mounts(&self.dir, record.id, record.kind, &parents))
        })
    }

    fn get(&self, txn: &Txn, namespace: &str, key: &str) -> Result<SnapshotRecord, SnapshotError> {
        txn.get(Table::Snapshots, namespace, key)?
            .ok_or_else(|| SnapshotError::NotFound {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
            })
    }

    /// Turns active snapshot `key` into committed snapshot `name`: from now on it is
    /// read-only and may be a parent.
    pub fn commit(
        &self,
        db: &Db,
        namespace: &str,
        name: &str,
        key: &str,
        labels: BTreeMap<String, String>,
        on_commit: impl FnOnce(&Txn) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        if name.is_empty() {
            return Err(SnapshotError::EmptyKey);
        }
        db.update(|txn| {
            let mut record = self.get(txn, namespace, key)?;
            if record.kind != Kind::Active {
                return Err(SnapshotError::NotActive {
                    key: key.to_owned(),
                    kind: record.kind,
                });
            }
            if txn
                .get::<SnapshotRecord>(Table::Snapshots, namespace, name)?
                .is_some()
            {
                return Err(SnapshotError::Exists {
                    key: name.to_owned(),
                });
            }
            record.usage = Some(self.measure(record.id)?);
            record.kind = Kind::Committed;
            record.updated = metadata::now();
            record.labels.extend(labels);
            txn.delete(Table::Snapshots, namespace, key)?;
            txn.put(Table::Snapshots, namespace, name, &record)?;
            on_commit(txn)
        })
    }

    /// Removes snapshot `key` (which must have no children) and its directory.
    pub fn remove(&self, db: &Db, namespace: &str, key: &str) -> Result<(), SnapshotError> {
        let id = db.update(|txn| {
            let record = self.get(txn, namespace, key)?;
            let children: Vec<String> = txn
                .list::<SnapshotRecord>(Table::Snapshots, namespace)?
                .into_iter()
                .filter(|(_, r)| r.parent.as_deref() == Some(key))
                .map(|(name, _)| name)
                .collect();
            if !children.is_empty() {
                return Err(SnapshotError::HasChildren {
                    key: key.to_owned(),
                    children: children.join(", "),
                });
            }
            txn.delete(Table::Snapshots, namespace, key)?;
            Ok(record.id)
        })?;
        // The record is gone first: a crash now leaves an orphan directory, which
        // Cleanup removes, never a record without its files.
        self.remove_dir(id)
    }

    /// Unmounts whatever is still mounted inside a snapshot's directory, and deletes it.
    pub fn remove_dir(&self, id: u64) -> Result<(), SnapshotError> {
        let dir = self.snapshot_dir(id);
        crate::mount::unmount_all_under(&dir);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Bytes and inodes of snapshot `key`'s own files: stored when it was committed,
    /// measured now while it is active.
    pub fn usage(&self, db: &Db, namespace: &str, key: &str) -> Result<(i64, i64), SnapshotError> {
        let record: SnapshotRecord =
            db.get(Table::Snapshots, namespace, key)?
                .ok_or_else(|| SnapshotError::NotFound {
                    namespace: namespace.to_owned(),
                    key: key.to_owned(),
                })?;
        match record.usage {
            Some(usage) => Ok(usage),
            None => self.measure(record.id),
        }
    }

    fn measure(&self, id: u64) -> Result<(i64, i64), SnapshotError> {
        let fs_dir = self.snapshot_dir(id).join("fs");
        let mut usage = (0, 0);
        du(&fs_dir, &mut std::collections::HashSet::new(), &mut usage).map_err(io_err(&fs_dir))?;
        Ok(usage)
    }

    /// Removes the directories no snapshot of any namespace names (left by a crash
    /// between creating a directory and recording it, or the reverse on removal).
    pub fn cleanup(&self, db: &Db) -> Result<usize, SnapshotError> {
        let mut known = std::collections::HashSet::new();
        for namespace in db.namespaces()? {
            for (_, record) in db.list::<SnapshotRecord>(Table::Snapshots, &namespace)? {
                known.insert(record.id);
            }
        }
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .flatten()
        {
            let id = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id.filter(|id| !known.contains(id)) {
                self.remove_dir(id)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Adds the bytes (on disk, in 512-byte blocks like du) and inodes below `path`,
/// counting each inode once: an image's hard links (busybox has hundreds) are one file.
fn du(
    path: &Path,
    seen: &mut std::collections::HashSet<(u64, u64)>,
    usage: &mut (i64, i64),
) -> io::Result<()> {
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.0 += (meta.blocks() * 512) as i64;
            usage.1 += 1;
        }
        if meta.is_dir() {
            du(&entry.path(), seen, usage)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(m: &[Mount]) -> (String, String, Vec<String>) {
        (m[0].kind.clone(), m[0].source.clone(), m[0].options.clone())
    }

    #[test]
    fn mounts_follow_containerds_overlay_snapshotter() {
        let d = Path::new("/s");
        assert_eq!(
            options(&mounts(d, 1, Kind::Active, &[])),
            (
                "bind".into(),
                "/s/1/fs".into(),
                vec!["rw".into(), "rbind".into()]
            )
        );
        assert_eq!(
            options(&mounts(d, 1, Kind::View, &[])),
            (
                "bind".into(),
                "/s/1/fs".into(),
                vec!["ro".into(), "rbind".into()]
            )
        );
        assert_eq!(
            options(&mounts(d, 3, Kind::Active, &[2, 1])),
            (
                "overlay".into(),
                "overlay".into(),
                vec![
                    "index=off".into(),
                    "workdir=/s/3/work".into(),
                    "upperdir=/s/3/fs".into(),
                    "lowerdir=/s/2/fs:/s/1/fs".into()
                ]
            )
        );
        assert_eq!(
            options(&mounts(d, 3, Kind::View, &[2])),
            (
                "bind".into(),
                "/s/2/fs".into(),
                vec!["ro".into(), "rbind".into()]
            )
        );
        assert_eq!(
            options(&mounts(d, 3, Kind::View, &[2, 1])).2,
            vec!["index=off".to_string(), "lowerdir=/s/2/fs:/s/1/fs".into()]
        );
    }

    #[test]
    fn the_lifecycle_is_prepare_commit_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("m.redb")).unwrap();
        let s = Snapshotter::open(dir.path().join("snapshots")).unwrap();
        let none = |_: &Txn| Ok(());
        let labels = BTreeMap::new;
        let new = |key, parent| New {
            key,
            parent,
            kind: Kind::Active,
            labels: labels(),
        };
        s.prepare(&db, "ns", new("extract-1", ""), none).unwrap();
        fs::write(s.snapshot_dir(1).join("fs/file"), "x").unwrap();
        let err = s.prepare(&db, "ns", new("child", "extract-1"), none);
        assert!(matches!(err, Err(SnapshotError::ParentNotCommitted { .. })));
        s.commit(&db, "ns", "layer1", "extract-1", labels(), none)
            .unwrap();
        assert!(matches!(
            s.commit(&db, "ns", "again", "layer1", labels(), none),
            Err(SnapshotError::NotActive { .. })
        ));
        assert_eq!(s.usage(&db, "ns", "layer1").unwrap().1, 1);

        let m = s.prepare(&db, "ns", new("rootfs", "layer1"), none).unwrap();
        assert_eq!(m[0].kind, "overlay");
        assert!(matches!(
            s.remove(&db, "ns", "layer1"),
            Err(SnapshotError::HasChildren { .. })
        ));
        assert!(
            s.mounts(&db, "other", "rootfs").is_err(),
            "snapshots are per namespace"
        );
        s.remove(&db, "ns", "rootfs").unwrap();
        s.remove(&db, "ns", "layer1").unwrap();
        assert!(!s.snapshot_dir(1).exists());

        fs::create_dir_all(s.snapshot_dir(99)).unwrap();
        assert_eq!(s.cleanup(&db).unwrap(), 1);
    }
}
