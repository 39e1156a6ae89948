//! The content store: every blob (layer, config, manifest, index) by its digest, under
//! `ROOT/content/blobs/sha256/HEX`, written so that a blob is either all there and
//! correct or not there at all.
//!
//! A write goes through an *ingest*: a directory `ROOT/content/ingest/H` (H names the
//! namespace and the client's ref) holding the bytes so far (`data`) and what the client
//! said about them (`state.json`). The client can stop and resume it by its ref. Commit
//! checks the size and digest, fsyncs, and renames `data` into `blobs/`: the rename is
//! the moment the blob exists. Who may *see* a blob (namespaces, labels) is recorded in
//! the metadata database afterwards, by the content service.
//!
//! Read next: [`crate::services::content`], the gRPC `Write` protocol on top of this.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::metadata;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{digest:?} is not a sha256 digest (sha256: and 64 lower-case hex digits); berth stores sha256 content only")]
    BadDigest { digest: String },
    #[error("content {digest} not found")]
    NotFound { digest: String },
    #[error("no active write for ref {reference:?}; start one with a Write STAT")]
    NoIngest { reference: String },
    #[error(
        "ref {reference:?} is locked: another Write for it is in progress; retry when it ends"
    )]
    Locked { reference: String },
    #[error("unexpected commit digest {actual}, expected {expected}: the bytes written are not the blob the client named; nothing was committed")]
    DigestMismatch { expected: String, actual: String },
    #[error("unexpected commit size {actual}, expected {expected}; nothing was committed")]
    SizeMismatch { expected: i64, actual: i64 },
    #[error(
        "write at offset {offset} must occur at the current offset {current} of ref {reference:?}"
    )]
    Offset {
        reference: String,
        offset: i64,
        current: i64,
    },
    #[error("content store I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl From<ContentError> for tonic::Status {
    fn from(err: ContentError) -> Self {
        use tonic::Status;
        match &err {
            ContentError::BadDigest { .. } => Status::invalid_argument(err.to_string()),
            ContentError::NotFound { .. } | ContentError::NoIngest { .. } => {
                Status::not_found(err.to_string())
            }
            ContentError::Locked { .. } => Status::unavailable(err.to_string()),
            ContentError::DigestMismatch { .. } | ContentError::SizeMismatch { .. } => {
                Status::failed_precondition(err.to_string())
            }
            ContentError::Offset { .. } => Status::out_of_range(err.to_string()),
            ContentError::Io { .. } => Status::internal(err.to_string()),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The hex part of a `sha256:HEX` digest, checked.
pub fn parse_digest(digest: &str) -> Result<&str, ContentError> {
    let bad = || ContentError::BadDigest {
        digest: digest.to_owned(),
    };
    let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then_some(hex).ok_or_else(bad)
}

/// What a namespace knows about one blob (the metadata table `content`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContentRecord {
    pub size: i64,
    pub created: i64,
    pub updated: i64,
    pub labels: BTreeMap<String, String>,
}

/// What an ingest's `state.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IngestState {
    pub namespace: String,
    pub reference: String,
    /// The size the client announced (0: not said yet).
    pub total: i64,
    /// The digest the client announced ("" : not said yet).
    pub expected: String,
    pub started: i64,
    pub updated: i64,
}

/// An ingest's state with how much has been written.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestStatus {
    pub state: IngestState,
    pub offset: i64,
}

/// The blob files and ingests, shared by every request.
pub struct ContentStore {
    dir: PathBuf,
    /// Refs with a Write stream open: a second writer for the same ref is refused.
    /// A std Mutex: it is held only to insert or remove, never across an `.await`.
    active: Arc<Mutex<HashSet<PathBuf>>>,
}

impl ContentStore {
    pub fn open(dir: PathBuf) -> Result<ContentStore, ContentError> {
        for sub in ["blobs/sha256", "ingest"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        Ok(ContentStore {
            dir,
            active: Arc::default(),
        })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ContentError> {
        Ok(self.dir.join("blobs/sha256").join(parse_digest(digest)?))
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File, ContentError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound {
                digest: digest.to_owned(),
            },
            _ => ContentError::Io { path, source },
        })
    }

    /// Every blob file's digest (for garbage collection).
    pub fn blob_digests(&self) -> Result<Vec<String>, ContentError> {
        let dir = self.dir.join("blobs/sha256");
        let entries = fs::read_dir(&dir).map_err(io_err(&dir))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|hex| format!("sha256:{hex}"))
            .collect())
    }

    pub fn remove_blob(&self, digest: &str) -> Result<(), ContentError> {
        let path = self.blob_path(digest)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    fn ingest_dir(&self, namespace: &str, reference: &str) -> PathBuf {
        let name = hex::encode(Sha256::digest(format!("{namespace}\0{reference}")));
        self.dir.join("ingest").join(name)
    }

    /// Starts (or resumes) the write of `reference`, locking the ref until the
    /// returned [`Writer`] is dropped.
    pub fn writer(
        &self,
        namespace: &str,
        reference: &str,
        total: i64,
        expected: &str,
    ) -> Result<Writer, ContentError> {
        if !expected.is_empty() {
            parse_digest(expected)?;
        }
        let dir = self.ingest_dir(namespace, reference);
        let lock = RefLock::take(&self.active, &dir, reference)?;
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let now = metadata::now();
        let mut state = read_state(&dir)?.unwrap_or(IngestState {
            namespace: namespace.to_owned(),
            reference: reference.to_owned(),
            total: 0,
            expected: String::new(),
            started: now,
            updated: now,
        });
        if total > 0 {
            state.total = total;
        }
        if !expected.is_empty() {
            state.expected = expected.to_owned();
        }
        write_state(&dir, &state)?;
        let data = dir.join("data");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&data)
            .map_err(io_err(&data))?;
        // Resuming: the digest so far is that of the bytes already there.
        let mut hasher = Sha256::new();
        let offset = io::copy(&mut file, &mut HashWrite(&mut hasher)).map_err(io_err(&data))?;
        Ok(Writer {
            dir,
            file,
            hasher,
            offset: offset as i64,
            state,
            _lock: lock,
        })
    }

    /// The ingest of `reference`, if one was started.
    pub fn status(&self, namespace: &str, reference: &str) -> Result<IngestStatus, ContentError> {
        let dir = self.ingest_dir(namespace, reference);
        ingest_status(&dir)?.ok_or_else(|| ContentError::NoIngest {
            reference: reference.to_owned(),
        })
    }

    /// Every ingest of `namespace`.
    pub fn statuses(&self, namespace: &str) -> Result<Vec<IngestStatus>, ContentError> {
        let dir = self.dir.join("ingest");
        let mut all = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            if let Some(status) = ingest_status(&entry.path())? {
                if status.state.namespace == namespace {
                    all.push(status);
                }
            }
        }
        Ok(all)
    }

    /// Throws an ingest away.
    pub fn abort(&self, namespace: &str, reference: &str) -> Result<(), ContentError> {
        let dir = self.ingest_dir(namespace, reference);
        let _lock = RefLock::take(&self.active, &dir, reference)?;
        if !dir.exists() {
            return Err(ContentError::NoIngest {
                reference: reference.to_owned(),
            });
        }
        fs::remove_dir_all(&dir).map_err(io_err(&dir))
    }
}

fn read_state(dir: &Path) -> Result<Option<IngestState>, ContentError> {
    let path = dir.join("state.json");
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn write_state(dir: &Path, state: &IngestState) -> Result<(), ContentError> {
    let tmp = dir.join("state.json.tmp");
    let json = serde_json::to_vec(state).expect("ingest state serializes");
    fs::write(&tmp, json).map_err(io_err(&tmp))?;
    let path = dir.join("state.json");
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

fn ingest_status(dir: &Path) -> Result<Option<IngestStatus>, ContentError> {
    let Some(state) = read_state(dir)? else {
        return Ok(None);
    };
    let data = dir.join("data");
    let offset = fs::metadata(&data).map(|m| m.len() as i64).unwrap_or(0);
    Ok(Some(IngestStatus { state, offset }))
}

struct HashWrite<'a>(&'a mut Sha256);

impl Write for HashWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One ref's lock; released on drop.
struct RefLock {
    active: Arc<Mutex<HashSet<PathBuf>>>,
    dir: PathBuf,
}

impl RefLock {
    fn take(
        active: &Arc<Mutex<HashSet<PathBuf>>>,
        dir: &Path,
        reference: &str,
    ) -> Result<RefLock, ContentError> {
        let mut set = active.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(dir.to_owned()) {
            return Err(ContentError::Locked {
                reference: reference.to_owned(),
            });
        }
        Ok(RefLock {
            active: active.clone(),
            dir: dir.to_owned(),
        })
    }
}

impl Drop for RefLock {
    fn drop(&mut self) {
        let mut set = self.active.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.dir);
    }
}

/// A write in progress (see [`ContentStore::writer`]).
pub struct Writer {
    dir: PathBuf,
    file: File,
    hasher: Sha256,
    offset: i64,
    state: IngestState,
    _lock: RefLock,
}

impl Writer {
    pub fn status(&self) -> IngestStatus {
        IngestStatus {
            state: self.state.clone(),
            offset: self.offset,
        }
    }

    /// The digest of everything written so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Announces the size or digest later than the first message (on COMMIT, say).
    pub fn expect(&mut self, total: i64, expected: &str) -> Result<(), ContentError> {
        if !expected.is_empty() {
            parse_digest(expected)?;
            self.state.expected = expected.to_owned();
        }
        if total > 0 {
            self.state.total = total;
        }
        Ok(())
    }

    /// Starts over from nothing (a client writing at offset 0 of a partial ingest).
    pub fn truncate(&mut self) -> Result<(), ContentError> {
        let data = self.dir.join("data");
        self.file.set_len(0).map_err(io_err(&data))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        Ok(())
    }

    /// Appends `data`, which the client says starts at `offset` (0: "wherever you are").
    pub fn write(&mut self, offset: i64, data: &[u8]) -> Result<(), ContentError> {
        if offset > 0 && offset != self.offset {
            return Err(ContentError::Offset {
                reference: self.state.reference.clone(),
                offset,
                current: self.offset,
            });
        }
        if offset == 0 && self.offset > 0 {
            self.truncate()?;
        }
        let path = self.dir.join("data");
        self.file.write_all(data).map_err(io_err(&path))?;
        self.hasher.update(data);
        self.offset += data.len() as i64;
        self.state.updated = metadata::now();
        Ok(())
    }

    // ANCHOR: commit
    /// Checks the bytes against the size and digest announced, makes them durable, and
    /// moves them into the store under their digest. On a mismatch the ingest is thrown
    /// away: those bytes are not the blob the client meant, and nothing is committed.
    pub fn commit(self, blobs: &ContentStore) -> Result<(String, i64), ContentError> {
        let digest = self.digest();
        let size = self.offset;
        let mismatch = if self.state.total > 0 && self.state.total != size {
            Some(ContentError::SizeMismatch {
                expected: self.state.total,
                actual: size,
            })
        } else if !self.state.expected.is_empty() && self.state.expected != digest {
            Some(ContentError::DigestMismatch {
                expected: self.state.expected.clone(),
                actual: digest.clone(),
            })
        } else {
            None
        };
        if let Some(err) = mismatch {
            let _ = fs::remove_dir_all(&self.dir);
            return Err(err);
        }
        let data = self.dir.join("data");
        self.file.sync_all().map_err(io_err(&data))?;
        let blob = blobs.blob_path(&digest)?;
        // The rename is atomic: a reader sees no blob or the whole blob, never a part.
        fs::rename(&data, &blob).map_err(io_err(&blob))?;
        fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        Ok((digest, size))
    }
    // ANCHOR_END: commit
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("content")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_blob_is_committed_under_its_digest() {
        let (_dir, store) = store();
        let mut w = store.writer("ns", "ref1", 5, HELLO).unwrap();
        w.write(0, b"hel").unwrap();
        w.write(3, b"lo").unwrap();
        assert_eq!(w.digest(), HELLO);
        assert_eq!(w.commit(&store).unwrap(), (HELLO.to_string(), 5));
        let mut text = String::new();
        store
            .open_blob(HELLO)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello");
        assert!(
            store.statuses("ns").unwrap().is_empty(),
            "the ingest is gone"
        );
    }

    #[test]
    fn a_wrong_digest_commits_nothing() {
        let (_dir, store) = store();
        let mut w = store.writer("ns", "ref1", 0, HELLO).unwrap();
        w.write(0, b"jello").unwrap();
        let err = w.commit(&store).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(store.blob_digests().unwrap().is_empty());
        assert!(store.statuses("ns").unwrap().is_empty());
    }

    #[test]
    fn a_write_resumes_by_ref_and_a_ref_has_one_writer() {
        let (_dir, store) = store();
        let mut w = store.writer("ns", "ref1", 5, "").unwrap();
        w.write(0, b"hel").unwrap();
        assert!(matches!(
            store.writer("ns", "ref1", 5, ""),
            Err(ContentError::Locked { .. })
        ));
        drop(w);
        let status = store.status("ns", "ref1").unwrap();
        assert_eq!((status.offset, status.state.total), (3, 5));
        assert!(
            store.status("other", "ref1").is_err(),
            "refs are per namespace"
        );

        let mut w = store.writer("ns", "ref1", 0, "").unwrap();
        assert_eq!(w.status().offset, 3);
        assert!(matches!(w.write(1, b"x"), Err(ContentError::Offset { .. })));
        w.write(3, b"lo").unwrap();
        assert_eq!(w.commit(&store).unwrap().0, HELLO);
    }

    #[test]
    fn abort_throws_the_ingest_away() {
        let (_dir, store) = store();
        let mut w = store.writer("ns", "ref1", 0, "").unwrap();
        w.write(0, b"x").unwrap();
        drop(w);
        store.abort("ns", "ref1").unwrap();
        assert!(matches!(
            store.status("ns", "ref1"),
            Err(ContentError::NoIngest { .. })
        ));
    }

    #[test]
    fn digests_are_checked() {
        assert!(parse_digest(HELLO).is_ok());
        for bad in [
            "",
            "sha256:",
            "md5:abc",
            "sha256:../../etc/passwd",
            &HELLO.to_uppercase(),
        ] {
            assert!(parse_digest(bad).is_err(), "{bad}");
        }
    }
}
