//! `containerd.services.diff.v1.Diff`: `Apply` unpacks a layer from the content store
//! into a snapshot's mounts ([`crate::diff`]). `Diff` (making a layer from two
//! snapshots, for `commit` and builds) is not implemented yet.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::content::{ContentError, ContentRecord};
use crate::diff::{self, UNCOMPRESSED};
use crate::metadata::Table;
use crate::mount::Mount;
use crate::proto::containerd::services::diff::v1::{
    diff_server, ApplyRequest, ApplyResponse, DiffRequest, DiffResponse,
};
use crate::proto::containerd::types::Descriptor;
use crate::scope::Scope;
use crate::supervisor::Supervisor;

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

    async fn diff(&self, _: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        Err(Status::unimplemented(
            "containerd.services.diff.v1.Diff/Diff (making a layer from two snapshots) is not implemented by berth-containerd yet",
        ))
    }
}
