//! Garbage collection: removing the content and snapshots nothing needs any more.
//!
//! What is needed is decided by reachability, as in containerd: the *roots* are image
//! targets, containers' snapshots (and images), the resources of leases that have not
//! expired, and anything labelled
//! `containerd.io/gc.root`. From a blob, its labels `containerd.io/gc.ref.content.*`
//! lead to more blobs (an index to its manifests, a manifest to its config and layers)
//! and `containerd.io/gc.ref.snapshot.overlayfs` to a snapshot (a config to its
//! unpacked chain); from a snapshot, its parent. Everything not reached is removed:
//! first its record, then its file, so a crash in between leaves only an orphan file
//! for the next run. A blob file goes only when no namespace has a record of it.
//!
//! It runs at startup, right after a synchronous delete (`ctr images rm --sync`),
//! shortly after any other delete, and periodically.
//!
//! A real engine would also collect abandoned ingests after a while; berth keeps
//! them until a client aborts them, since a test can then see a resumable write.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::content::{ContentError, ContentRecord};
use crate::lease::{LeaseRecord, CONTENT, SNAPSHOTS};
use crate::metadata::{self, MetadataError, Table};
use crate::services::containers::ContainerRecord;
use crate::services::images::ImageRecord;
use crate::snapshot::{SnapshotError, SnapshotRecord};
use crate::supervisor::Supervisor;

/// How often the collector runs when nothing asks for it.
pub const PERIOD: Duration = Duration::from_secs(300);

const ROOT_LABEL: &str = "containerd.io/gc.root";
const EXPIRE_LABEL: &str = "containerd.io/gc.expire";
const CONTENT_REF: &str = "containerd.io/gc.ref.content";
const SNAPSHOT_REF: &str = "containerd.io/gc.ref.snapshot.overlayfs";

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("garbage collection: {0}")]
    Metadata(#[from] MetadataError),
    #[error("garbage collection: {0}")]
    Content(#[from] ContentError),
    #[error("garbage collection: {0}")]
    Snapshot(#[from] SnapshotError),
}

impl From<GcError> for tonic::Status {
    fn from(err: GcError) -> Self {
        tonic::Status::internal(err.to_string())
    }
}

/// What one collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub content: usize,
    pub snapshots: usize,
    pub leases: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    Content(String),
    Snapshot(String),
}

/// The references a record's labels make.
fn label_refs(labels: &BTreeMap<String, String>, out: &mut VecDeque<Node>) {
    for (key, value) in labels {
        if key.starts_with(CONTENT_REF) {
            out.push_back(Node::Content(value.clone()));
        } else if key.starts_with(SNAPSHOT_REF) {
            out.push_back(Node::Snapshot(value.clone()));
        }
    }
}

// ANCHOR: collect
/// Runs one collection over every namespace.
pub fn collect(supervisor: &Supervisor) -> Result<Report, GcError> {
    let _gc = supervisor.gc_lock();
    let now = metadata::now();
    let mut report = Report::default();
    let mut live_blobs = HashSet::new();
    let mut dead_dirs = Vec::new();
    for namespace in supervisor.db.namespaces()? {
        let ns = namespace.as_str();
        supervisor.db.update(|txn| {
            let mut queue = VecDeque::new();
            for (id, lease) in txn.list::<LeaseRecord>(Table::Leases, ns)? {
                if lease
                    .labels
                    .get(EXPIRE_LABEL)
                    .and_then(|t| parse_rfc3339(t))
                    .is_some_and(|t| t < now)
                {
                    txn.delete(Table::Leases, ns, &id)?;
                    report.leases += 1;
                    continue;
                }
                for (kind, id) in lease.resources {
                    match kind.as_str() {
                        CONTENT => queue.push_back(Node::Content(id)),
                        SNAPSHOTS => queue.push_back(Node::Snapshot(id)),
                        _ => {}
                    }
                }
            }
            let images: BTreeMap<String, ImageRecord> =
                txn.list(Table::Images, ns)?.into_iter().collect();
            for image in images.values() {
                queue.push_back(Node::Content(image.target.digest.clone()));
            }
            // A container keeps its rootfs snapshot (whose parents are the image's
            // unpacked layers) and, while an image has that name, the image's content.
            for (_, container) in txn.list::<ContainerRecord>(Table::Containers, ns)? {
                if !container.snapshot_key.is_empty()
                    && matches!(container.snapshotter.as_str(), "" | "overlayfs")
                {
                    queue.push_back(Node::Snapshot(container.snapshot_key.clone()));
                }
                if let Some(image) = images.get(&container.image) {
                    queue.push_back(Node::Content(image.target.digest.clone()));
                }
                label_refs(&container.labels, &mut queue);
            }
            let content: BTreeMap<String, ContentRecord> =
                txn.list(Table::Content, ns)?.into_iter().collect();
            let snapshots: BTreeMap<String, SnapshotRecord> =
                txn.list(Table::Snapshots, ns)?.into_iter().collect();
            queue.extend(
                content
                    .iter()
                    .filter(|(_, r)| r.labels.contains_key(ROOT_LABEL))
                    .map(|(d, _)| Node::Content(d.clone())),
            );
            queue.extend(
                snapshots
                    .iter()
                    .filter(|(_, r)| r.labels.contains_key(ROOT_LABEL))
                    .map(|(k, _)| Node::Snapshot(k.clone())),
            );

            // Mark: everything reachable from the roots.
            let mut live = HashSet::new();
            while let Some(node) = queue.pop_front() {
                if !live.insert(node.clone()) {
                    continue;
                }
                match &node {
                    Node::Content(digest) => {
                        if let Some(record) = content.get(digest) {
                            label_refs(&record.labels, &mut queue);
                        }
                    }
                    Node::Snapshot(key) => {
                        if let Some(record) = snapshots.get(key) {
                            label_refs(&record.labels, &mut queue);
                            if let Some(parent) = &record.parent {
                                queue.push_back(Node::Snapshot(parent.clone()));
                            }
                        }
                    }
                }
            }

            // Sweep the records; the files follow once every namespace is done.
            for digest in content.keys() {
                if live.contains(&Node::Content(digest.clone())) {
                    live_blobs.insert(digest.clone());
                } else {
                    txn.delete(Table::Content, ns, digest)?;
                    report.content += 1;
                }
            }
            for (key, record) in &snapshots {
                if !live.contains(&Node::Snapshot(key.clone())) {
                    txn.delete(Table::Snapshots, ns, key)?;
                    dead_dirs.push(record.id);
                    report.snapshots += 1;
                }
            }
            Ok::<_, GcError>(())
        })?;
    }
    for id in dead_dirs {
        supervisor.snapshots.remove_dir(id)?;
    }
    for digest in supervisor.content.blob_digests()? {
        if !live_blobs.contains(&digest) {
            supervisor.content.remove_blob(&digest)?;
        }
    }
    supervisor.snapshots.cleanup(&supervisor.db)?;
    Ok(report)
}
// ANCHOR_END: collect

/// After a delete: collect now (the client asked for `sync`) or soon.
pub async fn after_delete(supervisor: &Arc<Supervisor>, sync: bool) -> Result<(), tonic::Status> {
    if !sync {
        supervisor.gc_wanted.notify_one();
        return Ok(());
    }
    let s = supervisor.clone();
    let report = tokio::task::spawn_blocking(move || collect(&s))
        .await
        .map_err(|e| {
            tonic::Status::internal(format!("the garbage collection task failed: {e}"))
        })??;
    tracing::info!(?report, "garbage collected");
    Ok(())
}

/// Runs the collector whenever asked, and every [`PERIOD`], until the process ends.
pub async fn run_forever(supervisor: Arc<Supervisor>) {
    loop {
        tokio::select! {
            () = supervisor.gc_wanted.notified() => {}
            () = tokio::time::sleep(PERIOD) => {}
        }
        let s = supervisor.clone();
        match tokio::task::spawn_blocking(move || collect(&s)).await {
            Ok(Ok(report)) => tracing::debug!(?report, "garbage collected"),
            Ok(Err(err)) => tracing::warn!("{err}"),
            Err(err) => tracing::warn!("the garbage collection task failed: {err}"),
        }
    }
}

/// `secs` since the epoch as an RFC 3339 UTC time, the form of `gc.expire` labels
/// (what [`parse_rfc3339`] reads back).
pub fn format_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm), for years after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// An RFC 3339 time (`2026-11-29T16:30:00Z`, `…00.5+01:00`) in Unix nanoseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let num = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (h, mi, s) = (
        num(rest.get(0..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    let mut rest = &rest[8..];
    let mut nanos = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let digits = &frac[..len.min(9)];
        nanos = num(digits)? * 10i64.pow(9 - digits.len() as u32);
        rest = &frac[len..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            sign * (num(rest.get(1..3)?)? * 3600 + num(rest.get(4..6)?)? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    Some(secs * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_expiry_times_read_back_as_written() {
        for secs in [0, 951_782_400, 1_795_000_000, 4_102_444_799] {
            let text = format_rfc3339(secs);
            assert_eq!(
                parse_rfc3339(&text),
                Some(secs as i64 * 1_000_000_000),
                "{text}"
            );
        }
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("1970-01-02T00:00:01.5Z"),
            Some(86_401_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-03-01T01:00:00+01:00"),
            Some(951_868_800 * 1_000_000_000)
        );
        assert_eq!(parse_rfc3339("tomorrow"), None);
    }

    #[test]
    fn unreferenced_content_and_snapshots_go_and_referenced_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = Supervisor::open(&dir.path().join("root"), &dir.path().join("state")).unwrap();
        let write = |data: &[u8], reference: &str| {
            let mut w = s.content.writer("ns", reference, 0, "").unwrap();
            w.write(0, data).unwrap();
            w.commit(&s.content).unwrap().0
        };
        let layer = write(b"layer", "l");
        let manifest = write(b"manifest", "m");
        let stray = write(b"stray", "s");
        let none = |_: &metadata::Txn| Ok(());
        let new = crate::snapshot::New {
            key: "k",
            parent: "",
            kind: crate::snapshot::Kind::Active,
            labels: BTreeMap::new(),
        };
        s.snapshots.prepare(&s.db, "ns", new, none).unwrap();
        s.snapshots
            .commit(&s.db, "ns", "chain", "k", BTreeMap::new(), none)
            .unwrap();
        s.db.update(|txn| {
            let record = |labels: &[(&str, &str)]| ContentRecord {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ContentRecord::default()
            };
            txn.put(
                Table::Content,
                "ns",
                &layer,
                &record(&[(SNAPSHOT_REF, "chain")]),
            )?;
            let refs = [("containerd.io/gc.ref.content.l.0", layer.as_str())];
            txn.put(Table::Content, "ns", &manifest, &record(&refs))?;
            txn.put(Table::Content, "ns", &stray, &record(&[]))?;
            let mut image = ImageRecord::default();
            image.target.digest = manifest.clone();
            txn.put(Table::Images, "ns", "img", &image)
        })
        .unwrap();

        let report = collect(&s).unwrap();
        assert_eq!((report.content, report.snapshots), (1, 0));
        assert!(s.content.open_blob(&stray).is_err());
        assert!(s.content.open_blob(&layer).is_ok());

        s.db.update(|txn| txn.delete(Table::Images, "ns", "img"))
            .unwrap();
        let report = collect(&s).unwrap();
        assert_eq!((report.content, report.snapshots), (2, 1));
        assert!(s.content.blob_digests().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(s.snapshots.dir()).unwrap().count(), 0);
    }
}
