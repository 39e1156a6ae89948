//! `containerd.services.snapshots.v1.Snapshots`: the overlayfs snapshotter
//! ([`crate::snapshot`]) over gRPC, per namespace, with new snapshots added to the
//! request's lease.

use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::filters::{self, Filters};
use crate::lease::{add_to_lease, SNAPSHOTS};
use crate::metadata::{self, Table};
use crate::proto::containerd::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use crate::proto::containerd::services::snapshots::v1::{
    snapshots_server, CleanupRequest, CommitSnapshotRequest, Info, ListSnapshotsRequest,
    ListSnapshotsResponse, MountsRequest, MountsResponse, PrepareSnapshotRequest,
    PrepareSnapshotResponse, RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse,
    UpdateSnapshotRequest, UpdateSnapshotResponse, UsageRequest, UsageResponse,
    ViewSnapshotRequest, ViewSnapshotResponse,
};
use crate::proto::containerd::types;
use crate::scope::Scope;
use crate::services::{labels, to_map, update_labels};
use crate::snapshot::{check_name, Kind, New, SnapshotError, SnapshotRecord};
use crate::supervisor::Supervisor;

/// The one snapshotter berth has, as events name it.
const SNAPSHOTTER: &str = "overlayfs";

pub struct Snapshots {
    pub supervisor: Arc<Supervisor>,
}

fn info(name: &str, record: &SnapshotRecord) -> Info {
    Info {
        name: name.to_owned(),
        parent: record.parent.clone().unwrap_or_default(),
        kind: record.kind.to_proto(),
        created_at: Some(metadata::timestamp(record.created)),
        updated_at: Some(metadata::timestamp(record.updated)),
        labels: to_map(&record.labels),
    }
}

fn mounts(m: Vec<crate::mount::Mount>) -> Vec<types::Mount> {
    m.into_iter().map(Into::into).collect()
}

impl Snapshots {
    fn prepare(
        &self,
        scope: &Scope,
        key: &str,
        parent: &str,
        kind: Kind,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<types::Mount>, Status> {
        let s = &self.supervisor;
        // The new directory and its record appear under the GC lock (see Supervisor).
        let _gc = s.gc_lock();
        let m = s.snapshots.prepare(
            &s.db,
            &scope.namespace,
            New {
                key,
                parent,
                kind,
                labels,
            },
            |txn| add_to_lease(txn, scope, SNAPSHOTS, key).map_err(SnapshotError::from),
        )?;
        Ok(mounts(m))
    }

    fn record(&self, scope: &Scope, key: &str) -> Result<SnapshotRecord, Status> {
        self.supervisor
            .db
            .get(Table::Snapshots, &scope.namespace, key)?
            .ok_or_else(|| {
                SnapshotError::NotFound {
                    namespace: scope.namespace.clone(),
                    key: key.to_owned(),
                }
                .into()
            })
    }
}

#[tonic::async_trait]
impl snapshots_server::Snapshots for Snapshots {
    async fn prepare(
        &self,
        request: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let mounts = self.prepare(&scope, &r.key, &r.parent, Kind::Active, labels(r.labels))?;
        let event = SnapshotPrepare {
            key: r.key,
            parent: r.parent,
            snapshotter: SNAPSHOTTER.into(),
        };
        self.supervisor
            .events
            .publish(&scope.namespace, "/snapshot/prepare", &event);
        Ok(Response::new(PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        request: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let mounts = self.prepare(&scope, &r.key, &r.parent, Kind::View, labels(r.labels))?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        request: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let s = &self.supervisor;
        let m = s.snapshots.mounts(&s.db, &scope.namespace, &r.key)?;
        Ok(Response::new(MountsResponse { mounts: mounts(m) }))
    }

    async fn commit(
        &self,
        request: Request<CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let s = &self.supervisor;
        s.snapshots.commit(
            &s.db,
            &scope.namespace,
            &r.name,
            &r.key,
            labels(r.labels),
            |txn| add_to_lease(txn, &scope, SNAPSHOTS, &r.name).map_err(SnapshotError::from),
        )?;
        let event = SnapshotCommit {
            key: r.key,
            name: r.name,
            snapshotter: SNAPSHOTTER.into(),
        };
        self.supervisor
            .events
            .publish(&scope.namespace, "/snapshot/commit", &event);
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let s = &self.supervisor;
        s.snapshots.remove(&s.db, &scope.namespace, &r.key)?;
        let event = SnapshotRemove {
            key: r.key,
            snapshotter: SNAPSHOTTER.into(),
        };
        self.supervisor
            .events
            .publish(&scope.namespace, "/snapshot/remove", &event);
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let record = self.record(&scope, &r.key)?;
        Ok(Response::new(StatSnapshotResponse {
            info: Some(info(&r.key, &record)),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let new = r.info.unwrap_or_default();
        let record = self.supervisor.db.update(|txn| {
            let mut record: SnapshotRecord = txn
                .get(Table::Snapshots, &scope.namespace, &new.name)?
                .ok_or_else(|| SnapshotError::NotFound {
                    namespace: scope.namespace.clone(),
                    key: new.name.clone(),
                })?;
            update_labels(&mut record.labels, new.labels, r.update_mask, |_| false)?;
            record.updated = metadata::now();
            txn.put(Table::Snapshots, &scope.namespace, &new.name, &record)?;
            Ok::<_, Status>(record)
        })?;
        Ok(Response::new(UpdateSnapshotResponse {
            info: Some(info(&new.name, &record)),
        }))
    }

    type ListStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

    async fn list(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let filters = Filters::parse(&r.filters)?;
        let all: Vec<(String, SnapshotRecord)> = self
            .supervisor
            .db
            .list(Table::Snapshots, &scope.namespace)?;
        let infos: Vec<Info> = all
            .iter()
            .filter(|(name, record)| {
                filters.matches(|path| match path {
                    [f] if f == "name" => Some(name.clone()),
                    [f] if f == "parent" => record.parent.clone(),
                    [f] if f == "kind" => Some(format!("{:?}", record.kind).to_lowercase()),
                    [f, rest @ ..] if f == "labels" => filters::label(&record.labels, rest),
                    _ => None,
                })
            })
            .map(|(name, record)| info(name, record))
            .collect();
        let batches: Vec<Result<ListSnapshotsResponse, Status>> = infos
            .chunks(100)
            .map(|chunk| {
                Ok(ListSnapshotsResponse {
                    info: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(
        &self,
        request: Request<UsageRequest>,
    ) -> Result<Response<UsageResponse>, Status> {
        let scope = Scope::of(&request)?;
        let r = request.into_inner();
        check_name(&r.snapshotter)?;
        let s = &self.supervisor;
        let (size, inodes) = s.snapshots.usage(&s.db, &scope.namespace, &r.key)?;
        Ok(Response::new(UsageResponse { size, inodes }))
    }

    async fn cleanup(&self, request: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        check_name(&request.into_inner().snapshotter)?;
        let s = &self.supervisor;
        let _gc = s.gc_lock();
        s.snapshots.cleanup(&s.db)?;
        Ok(Response::new(()))
    }
}
