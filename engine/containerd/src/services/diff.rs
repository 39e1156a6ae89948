//! `containerd.services.diff.v1.Diff`: `Apply` unpacks a layer from the content store
//! into a snapshot's mounts; `Diff` makes a layer from two snapshots' mounts (what
//! `ctr snapshots diff`, `docker commit` and image builds need) and stores it as a
//! blob, labelled with its diff ID. The work is [`crate::diff`]'s.
//!
//! What berth leaves out: `source_date_epoch` is ignored (files keep their own
//! modification times), and layers are gzip or uncompressed, never zstd.

use std::io::{self, Write};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::content::{ContentError, ContentRecord, Writer};
use crate::diff::{self, UNCOMPRESSED, UNCOMPRESSED_LABEL};
use crate::lease::{add_to_lease, CONTENT};
use crate::metadata::{self, Table};
use crate::mount::Mount;
use crate::proto::containerd::services::diff::v1::{
    diff_server, ApplyRequest, ApplyResponse, DiffRequest, DiffResponse,
};
use crate::proto::containerd::types::Descriptor;
use crate::scope::Scope;
use crate::services::labels;
use crate::supervisor::Supervisor;

/// What Diff makes unless asked otherwise, as containerd's differ does.
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_UNCOMPRESSED: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub struct Diff {
    pub supervisor: Arc<Supervisor>,
}

#[tonic::async_trait]
impl diff_server::Diff for Diff {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let layer = r
            .diff
            .ok_or_else(|| Status::invalid_argument("Apply needs the layer's descriptor (diff)"))?;
        let record: Option<ContentRecord> =
            self.supervisor
                .db
                .get(Table::Content, &scope.namespace, &layer.digest)?;
        if record.is_none() {
            return Err(ContentError::NotFound {
                digest: layer.digest,
            }
            .into());
        }
        let blob = self.supervisor.content.open_blob(&layer.digest)?;
        let mounts: Vec<Mount> = r.mounts.into_iter().map(Into::into).collect();
        let scratch = self.supervisor.scratch_dir();
        let applied = tokio::task::spawn_blocking(move || {
            diff::apply(blob, &layer.digest, &layer.media_type, &mounts, &scratch)
        })
        .await
        .map_err(|e| Status::internal(format!("the layer unpacking task failed: {e}")))??;
        Ok(Response::new(ApplyResponse {
            applied: Some(Descriptor {
                media_type: UNCOMPRESSED.to_owned(),
                digest: applied.diff_id,
                size: applied.size,
                annotations: Default::default(),
            }),
        }))
    }

    async fn diff(&self, request: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        let media_type = match r.media_type.as_str() {
            "" => GZIP.to_owned(),
            other => other.to_owned(),
        };
        let compress = match media_type.as_str() {
            GZIP | DOCKER_GZIP => true,
            UNCOMPRESSED | DOCKER_UNCOMPRESSED => false,
            other => {
                return Err(Status::invalid_argument(format!(
                    "cannot make a layer of media type {other:?}; ask for {GZIP} (the default) or {UNCOMPRESSED}"
                )))
            }
        };
        let scratch = self.supervisor.scratch_dir();
        let reference = match r.r#ref.as_str() {
            // Unique among this instance's scratch directories, so among its Diffs.
            "" => format!(
                "berth-diff-{}",
                scratch.file_name().unwrap().to_string_lossy()
            ),
            given => given.to_owned(),
        };
        let job = Job {
            left: r.left.into_iter().map(Into::into).collect(),
            right: r.right.into_iter().map(Into::into).collect(),
            compress,
            labels: labels(r.labels),
        };
        let supervisor = self.supervisor.clone();
        let (digest, size) = tokio::task::spawn_blocking(move || {
            make_layer(&supervisor, &scope, &reference, job, &scratch)
        })
        .await
        .map_err(|e| Status::internal(format!("the layer making task failed: {e}")))??;
        Ok(Response::new(DiffResponse {
            diff: Some(Descriptor {
                media_type,
                digest,
                size,
                annotations: Default::default(),
            }),
        }))
    }
}

/// What one Diff request asks for.
struct Job {
    left: Vec<Mount>,
    right: Vec<Mount>,
    compress: bool,
    labels: std::collections::BTreeMap<String, String>,
}

// ANCHOR: make_layer
/// Writes the layer through an ingest under `reference` and commits it as a blob of
/// the namespace, in the request's lease (without one, the collector would take the
/// blob before the client could point anything at it). Returns its digest and size.
fn make_layer(
    s: &Supervisor,
    scope: &Scope,
    reference: &str,
    mut job: Job,
    scratch: &std::path::Path,
) -> Result<(String, i64), Status> {
    let namespace = &scope.namespace;
    let mut writer = s.content.writer(namespace, reference, 0, "")?;
    // Bytes an interrupted earlier Diff left under the same ref are not this layer's.
    writer.truncate()?;
    let mut out = io::BufWriter::new(IngestWriter(&mut writer));
    let made = diff::compare(&job.left, &job.right, job.compress, scratch, &mut out);
    drop(out);
    let diff_id = match made {
        Ok(diff_id) => diff_id,
        Err(e) => {
            drop(writer);
            let _ = s.content.abort(namespace, reference);
            return Err(e.into());
        }
    };
    let (digest, size) = (writer.digest(), writer.status().offset);
    // The blob file and its record appear under one GC lock, as in Content.Write.
    let _gc = s.gc_lock();
    let existing: Option<ContentRecord> = s.db.get(Table::Content, namespace, &digest)?;
    if existing.is_some() {
        // The same change made before: keep that blob and its labels.
        drop(writer);
        s.content.abort(namespace, reference)?;
    } else {
        writer.commit(&s.content)?;
    }
    s.db.update(|txn| {
        let now = metadata::now();
        let record = match txn.get::<ContentRecord>(Table::Content, namespace, &digest)? {
            Some(mut record) => {
                record
                    .labels
                    .entry(UNCOMPRESSED_LABEL.to_owned())
                    .or_insert_with(|| diff_id.clone());
                record.updated = now;
                record
            }
            None => {
                job.labels
                    .insert(UNCOMPRESSED_LABEL.to_owned(), diff_id.clone());
                ContentRecord {
                    size,
                    created: now,
                    updated: now,
                    labels: std::mem::take(&mut job.labels),
                }
            }
        };
        txn.put(Table::Content, namespace, &digest, &record)?;
        add_to_lease(txn, scope, CONTENT, &digest)?;
        Ok::<_, Status>(())
    })?;
    Ok((digest, size))
}
// ANCHOR_END: make_layer

/// An ingest as an `io::Write`: each write appends at the ingest's current offset.
struct IngestWriter<'a>(&'a mut Writer);

impl Write for IngestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let at = self.0.status().offset;
        self.0.write(at, buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
