//! The trace store: every trace in memory, and each one also in a file of its own under
//! `--data`, so that berth-viz can be restarted without losing what it was sent.
//!
//! A trace's file (`DATA/traces/<trace id>.json`) is the trace as OTLP/JSON, the format
//! any OpenTelemetry tool reads. It is rewritten whole whenever spans of that trace
//! arrive, atomically: written to a temporary file, flushed to disk, then renamed over
//! the old one, so a crash leaves the old file or the new one, never half of either.
//!
//! Retention is a count (`--max-traces`): when a new trace would exceed it, the traces
//! that started longest ago are deleted. A real trace store would also bound bytes and
//! age, and index spans on disk instead of holding every trace in memory; berth-viz
//! doesn't because a container start is a few dozen spans, and a few thousand traces fit
//! in a few megabytes.
//!
//! Read next: [`crate::view`], what the page is sent about a stored trace.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::model::Trace;
use crate::otlp::{self, Encoding, Received};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}; pick another --data or fix its permissions")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot list the data directory {path}: {source}; fix its permissions")]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}; is the disk full or read-only? Nothing of this batch was kept")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot delete {path} to keep within --max-traces: {source}; fix its permissions")]
    Delete { path: PathBuf, source: io::Error },
}

/// All traces, in memory and on disk.
pub struct Store {
    dir: PathBuf,
    max_traces: usize,
    // A std Mutex, not an async one: nothing waits while holding it but the file write
    // of the batch being stored, and a write of one trace takes microseconds. Holding it
    // across the write is what keeps the files in the same order as the memory.
    traces: Mutex<BTreeMap<String, Trace>>,
}

impl Store {
    /// Opens (creating if need be) the store in `dir`, loading every trace kept there.
    /// A file that does not read as a trace is reported and skipped, never deleted: it
    /// is evidence of something, and the rest of the store is still good.
    pub fn open(dir: &Path, max_traces: usize) -> Result<Store, StoreError> {
        let traces_dir = dir.join("traces");
        fs::create_dir_all(&traces_dir).map_err(|source| StoreError::CreateDir {
            path: traces_dir.clone(),
            source,
        })?;
        let read_dir_error = |source| StoreError::ReadDir {
            path: traces_dir.clone(),
            source,
        };
        let mut traces = BTreeMap::new();
        for entry in fs::read_dir(&traces_dir).map_err(read_dir_error)? {
            let path = entry.map_err(read_dir_error)?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue; // leftovers of an interrupted write (`.tmp`) and strangers
            }
            match load(&path) {
                Ok(loaded) => {
                    for trace in loaded {
                        traces.insert(trace.trace_id.clone(), trace);
                    }
                }
                Err(reason) => eprintln!(
                    "berth-viz: skipping {}: {reason}; move it away to silence this",
                    path.display()
                ),
            }
        }
        let store = Store {
            dir: traces_dir,
            max_traces: max_traces.max(1),
            traces: Mutex::new(traces),
        };
        store.enforce_retention(&mut store.lock())?;
        Ok(store)
    }

    // ANCHOR: add
    /// Adds a batch of received spans: merges them into their traces, writes each trace
    /// touched, then deletes the oldest traces beyond `--max-traces`. Returns the trace
    /// ids touched, in the order they first appear in the batch.
    pub fn add(&self, received: Vec<Received>) -> Result<Vec<String>, StoreError> {
        let mut traces = self.lock();
        let mut touched: Vec<String> = Vec::new();
        // Work on copies, so that a failed write leaves memory as the disk is.
        let mut updated: BTreeMap<String, Trace> = BTreeMap::new();
        for r in received {
            if !touched.contains(&r.trace_id) {
                touched.push(r.trace_id.clone());
            }
            let trace = updated.entry(r.trace_id.clone()).or_insert_with(|| {
                traces.get(&r.trace_id).cloned().unwrap_or(Trace {
                    trace_id: r.trace_id.clone(),
                    processes: Vec::new(),
                    spans: Vec::new(),
                })
            });
            trace.add(&r.process, r.span);
        }
        for trace in updated.values() {
            self.write(trace)?;
        }
        traces.extend(updated);
        self.enforce_retention(&mut traces)?;
        Ok(touched)
    }
    // ANCHOR_END: add

    /// One trace, by id.
    pub fn get(&self, trace_id: &str) -> Option<Trace> {
        self.lock().get(trace_id).cloned()
    }

    /// Every trace (a copy: the page's list is built from it without holding the lock
    /// while it sorts and filters).
    pub fn all(&self) -> Vec<Trace> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Trace>> {
        // A panic while holding the lock cannot leave a trace half-merged (merging
        // happens on copies), so a poisoned lock is still a good one.
        self.traces.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, trace_id: &str) -> PathBuf {
        self.dir.join(format!("{trace_id}.json"))
    }

    // ANCHOR: atomic_write
    /// Writes one trace's file atomically: temporary file, fsync, rename, fsync of the
    /// directory (so that the rename itself survives a power cut).
    fn write(&self, trace: &Trace) -> Result<(), StoreError> {
        let path = self.path(&trace.trace_id);
        let tmp = self.dir.join(format!(".{}.json.tmp", trace.trace_id));
        let error = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut file = File::create(&tmp).map_err(error)?;
        file.write_all(&otlp::to_json(trace)).map_err(error)?;
        file.sync_all().map_err(error)?;
        fs::rename(&tmp, &path).map_err(error)?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(error)
    }
    // ANCHOR_END: atomic_write

    fn enforce_retention(&self, traces: &mut BTreeMap<String, Trace>) -> Result<(), StoreError> {
        if traces.len() <= self.max_traces {
            return Ok(());
        }
        let mut by_age: Vec<(u64, String)> = traces
            .values()
            .map(|t| (t.start_unix_nano(), t.trace_id.clone()))
            .collect();
        by_age.sort();
        let excess = traces.len() - self.max_traces;
        for (_, trace_id) in by_age.into_iter().take(excess) {
            let path = self.path(&trace_id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Delete { path, source }),
            }
            traces.remove(&trace_id);
        }
        Ok(())
    }
}

/// Reads one stored file back into traces (normally exactly one).
fn load(path: &Path) -> Result<Vec<Trace>, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let request = otlp::decode(&bytes, Encoding::Json).map_err(|e| e.to_string())?;
    let received = otlp::flatten(request).map_err(|e| e.to_string())?;
    Ok(otlp::to_traces(received))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn traces_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        let ids = store.add(testdata::container_start()).unwrap();
        assert_eq!(ids, [testdata::TRACE_A]);
        let before = store.get(testdata::TRACE_A).unwrap();
        drop(store);
        let store = Store::open(dir.path(), 10).unwrap();
        assert_eq!(store.get(testdata::TRACE_A).unwrap(), before);
    }

    #[test]
    fn spans_of_one_trace_in_two_batches_make_one_trace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        let mut spans = testdata::container_start();
        let later = spans.split_off(3);
        store.add(spans).unwrap();
        store.add(later.clone()).unwrap();
        store.add(later).unwrap(); // a retried export changes nothing
        let trace = store.get(testdata::TRACE_A).unwrap();
        assert_eq!(trace.spans.len(), testdata::container_start().len());
    }

    #[test]
    fn the_oldest_traces_go_first_beyond_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        store.add(testdata::container_start()).unwrap(); // starts earlier
        store.add(testdata::slower_container_start()).unwrap();
        let kept: Vec<String> = store.all().into_iter().map(|t| t.trace_id).collect();
        assert_eq!(kept, [testdata::TRACE_B]);
        assert!(!dir
            .path()
            .join(format!("traces/{}.json", testdata::TRACE_A))
            .exists());
    }

    #[test]
    fn a_corrupt_file_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        store.add(testdata::container_start()).unwrap();
        drop(store);
        fs::write(dir.path().join("traces/garbage.json"), "{not json").unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        assert_eq!(store.all().len(), 1);
        assert!(dir.path().join("traces/garbage.json").exists());
    }
}
