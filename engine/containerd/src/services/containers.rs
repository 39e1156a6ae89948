//! `containerd.services.containers.v1.Containers`: container *records*. A container
//! in containerd is metadata only: an id, the runtime to run it with, its OCI spec,
//! the image it came from and the snapshot that will be its root filesystem. Nothing
//! runs until a task is created from it ([`crate::services::tasks`]).
//!
//! The spec and the runtime options are kept as the `Any`s the client sent: berth
//! never reads the options (the shim does), and reads the spec only to write it into
//! the task's bundle as `config.json`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::filters::{self, Filters};
use crate::metadata::{self, Table};
use crate::proto::containerd::events::{
    container_create, ContainerCreate, ContainerDelete, ContainerUpdate,
};
use crate::proto::containerd::services::containers::v1::{
    container, containers_server, Container, CreateContainerRequest, CreateContainerResponse,
    DeleteContainerRequest, GetContainerRequest, GetContainerResponse, ListContainerMessage,
    ListContainersRequest, ListContainersResponse, UpdateContainerRequest, UpdateContainerResponse,
};
use crate::runtime::Runtime;
use crate::scope::{self, Scope};
use crate::services::{labels, to_map, update_labels};
use crate::supervisor::Supervisor;

/// A protobuf `Any` as stored: its type URL and its bytes, hex-encoded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AnyRecord {
    pub type_url: String,
    pub value: String,
}

impl AnyRecord {
    pub fn from_proto(any: prost_types::Any) -> AnyRecord {
        AnyRecord {
            type_url: any.type_url,
            value: hex::encode(any.value),
        }
    }

    pub fn to_proto(&self) -> prost_types::Any {
        prost_types::Any {
            type_url: self.type_url.clone(),
            // Written by `from_proto`: always valid hex.
            value: hex::decode(&self.value).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub runtime: String,
    pub runtime_options: Option<AnyRecord>,
    pub spec: Option<AnyRecord>,
    pub snapshotter: String,
    pub snapshot_key: String,
    pub created: i64,
    pub updated: i64,
    pub extensions: BTreeMap<String, AnyRecord>,
    pub sandbox: String,
}

pub struct Containers {
    pub supervisor: Arc<Supervisor>,
    pub runtime: Arc<Runtime>,
}

fn container(id: &str, r: &ContainerRecord) -> Container {
    Container {
        id: id.to_owned(),
        labels: to_map(&r.labels),
        image: r.image.clone(),
        runtime: Some(container::Runtime {
            name: r.runtime.clone(),
            options: r.runtime_options.as_ref().map(AnyRecord::to_proto),
        }),
        spec: r.spec.as_ref().map(AnyRecord::to_proto),
        snapshotter: r.snapshotter.clone(),
        snapshot_key: r.snapshot_key.clone(),
        created_at: Some(metadata::timestamp(r.created)),
        updated_at: Some(metadata::timestamp(r.updated)),
        extensions: r
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), v.to_proto()))
            .collect(),
        sandbox: r.sandbox.clone(),
    }
}

pub fn not_found(namespace: &str, id: &str) -> Status {
    Status::not_found(format!(
        "container {id:?} not found in namespace {namespace:?}"
    ))
}

/// Reads one container's record.
pub fn get(supervisor: &Supervisor, namespace: &str, id: &str) -> Result<ContainerRecord, Status> {
    supervisor
        .db
        .get(Table::Containers, namespace, id)?
        .ok_or_else(|| not_found(namespace, id))
}

fn extensions(
    map: std::collections::HashMap<String, prost_types::Any>,
) -> BTreeMap<String, AnyRecord> {
    map.into_iter()
        .map(|(k, v)| (k, AnyRecord::from_proto(v)))
        .collect()
}

/// A new container's record, checked as containerd checks it.
fn record(new: Container) -> Result<(String, ContainerRecord), Status> {
    scope::validate(&new.id).map_err(|_| {
        Status::invalid_argument(format!(
            "container id {:?} is not valid: use letters and digits, separated by single \
             '.', '_' or '-'",
            new.id
        ))
    })?;
    let runtime = new.runtime.filter(|r| !r.name.is_empty()).ok_or_else(|| {
        Status::invalid_argument(format!(
            "container {:?} needs a runtime name (io.containerd.runc.v2, say)",
            new.id
        ))
    })?;
    let spec = new.spec.ok_or_else(|| {
        Status::invalid_argument(format!("container {:?} needs an OCI spec", new.id))
    })?;
    if !new.snapshot_key.is_empty() && new.snapshotter.is_empty() {
        return Err(Status::invalid_argument(format!(
            "container {:?} names snapshot {:?} but no snapshotter; set it (overlayfs)",
            new.id, new.snapshot_key
        )));
    }
    let now = metadata::now();
    Ok((
        new.id,
        ContainerRecord {
            labels: labels(new.labels),
            image: new.image,
            runtime: runtime.name,
            runtime_options: runtime.options.map(AnyRecord::from_proto),
            spec: Some(AnyRecord::from_proto(spec)),
            snapshotter: new.snapshotter,
            snapshot_key: new.snapshot_key,
            created: now,
            updated: now,
            extensions: extensions(new.extensions),
            sandbox: new.sandbox,
        },
    ))
}

impl Containers {
    fn list_matching(&self, scope: &Scope, filters: &[String]) -> Result<Vec<Container>, Status> {
        let filters = Filters::parse(filters)?;
        let all: Vec<(String, ContainerRecord)> = self
            .supervisor
            .db
            .list(Table::Containers, &scope.namespace)?;
        Ok(all
            .iter()
            .filter(|(id, r)| {
                filters.matches(|path| match path {
                    [f] if f == "id" => Some(id.clone()),
                    [f] if f == "image" => Some(r.image.clone()),
                    [f, g] if f == "runtime" && g == "name" => Some(r.runtime.clone()),
                    [f] if f == "snapshotter" => Some(r.snapshotter.clone()),
                    [f] if f == "snapshotkey" => Some(r.snapshot_key.clone()),
                    [f, rest @ ..] if f == "labels" => filters::label(&r.labels, rest),
                    _ => None,
                })
            })
            .map(|(id, r)| container(id, r))
            .collect())
    }
}

#[tonic::async_trait]
impl containers_server::Containers for Containers {
    async fn get(
        &self,
        request: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        let scope = Scope::of(&request)?;
        let id = request.into_inner().id;
        let record = get(&self.supervisor, &scope.namespace, &id)?;
        Ok(Response::new(GetContainerResponse {
            container: Some(container(&id, &record)),
        }))
    }

    async fn list(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let scope = Scope::of(&request)?;
        let containers = self.list_matching(&scope, &request.into_inner().filters)?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    type ListStreamStream =
        Pin<Box<dyn Stream<Item = Result<ListContainerMessage, Status>> + Send>>;

    async fn list_stream(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let scope = Scope::of(&request)?;
        let containers = self.list_matching(&scope, &request.into_inner().filters)?;
        let messages: Vec<Result<ListContainerMessage, Status>> = containers
            .into_iter()
            .map(|c| Ok(ListContainerMessage { container: Some(c) }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn create(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let scope = Scope::of(&request)?;
        let new = request
            .into_inner()
            .container
            .ok_or_else(|| Status::invalid_argument("a container is required"))?;
        let (id, record) = record(new)?;
        self.supervisor.db.update(|txn| {
            if txn
                .get::<ContainerRecord>(Table::Containers, &scope.namespace, &id)?
                .is_some()
            {
                return Err(Status::already_exists(format!(
                    "container {id:?} already exists in namespace {:?}; delete it or \
                     choose another id",
                    scope.namespace
                )));
            }
            txn.put(Table::Containers, &scope.namespace, &id, &record)?;
            Ok(())
        })?;
        let event = ContainerCreate {
            id: id.clone(),
            image: record.image.clone(),
            runtime: Some(container_create::Runtime {
                name: record.runtime.clone(),
                options: record.runtime_options.as_ref().map(AnyRecord::to_proto),
            }),
        };
        let events = &self.supervisor.events;
        events.publish(&scope.namespace, "/containers/create", &event);
        Ok(Response::new(CreateContainerResponse {
            container: Some(container(&id, &record)),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let new = request
            .container
            .ok_or_else(|| Status::invalid_argument("a container is required"))?;
        let id = new.id.clone();
        let record = self.supervisor.db.update(|txn| {
            let mut record: ContainerRecord = txn
                .get(Table::Containers, &scope.namespace, &id)?
                .ok_or_else(|| not_found(&scope.namespace, &id))?;
            let paths: Vec<String> = request
                .update_mask
                .as_ref()
                .map(|m| m.paths.clone())
                .unwrap_or_default();
            // Without a mask, every field that may change does; the runtime and the
            // snapshotter never may (a task may be running with them).
            let all = paths.is_empty();
            let wants = |field: &str| all || paths.iter().any(|p| p == field);
            if all {
                let runtime = new.runtime.as_ref().map(|r| r.name.as_str());
                if runtime.is_some_and(|name| !name.is_empty() && name != record.runtime)
                    || (!new.snapshotter.is_empty() && new.snapshotter != record.snapshotter)
                {
                    return Err(Status::invalid_argument(format!(
                        "container {id:?}: the runtime and the snapshotter cannot change"
                    )));
                }
            }
            if wants("spec") {
                let spec = new.spec.clone().ok_or_else(|| {
                    Status::invalid_argument(format!("container {id:?} needs an OCI spec"))
                })?;
                record.spec = Some(AnyRecord::from_proto(spec));
            }
            if wants("image") {
                record.image = new.image.clone();
            }
            if wants("snapshotkey") {
                record.snapshot_key = new.snapshot_key.clone();
            }
            if wants("extensions") {
                record.extensions = extensions(new.extensions.clone());
            }
            let mask = (!all).then(|| prost_types::FieldMask {
                paths: paths.clone(),
            });
            update_labels(&mut record.labels, new.labels.clone(), mask, |path| {
                matches!(path, "spec" | "image" | "snapshotkey" | "extensions")
            })?;
            record.updated = metadata::now();
            txn.put(Table::Containers, &scope.namespace, &id, &record)?;
            Ok::<_, Status>(record)
        })?;
        let event = ContainerUpdate {
            id: id.clone(),
            image: record.image.clone(),
            labels: to_map(&record.labels),
            snapshot_key: record.snapshot_key.clone(),
        };
        let events = &self.supervisor.events;
        events.publish(&scope.namespace, "/containers/update", &event);
        Ok(Response::new(UpdateContainerResponse {
            container: Some(container(&id, &record)),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let id = request.into_inner().id;
        if self.runtime.has_task(&scope.namespace, &id) {
            return Err(Status::failed_precondition(format!(
                "container {id:?} still has a task; delete the task first (ctr task rm {id})"
            )));
        }
        let deleted = self
            .supervisor
            .db
            .update(|txn| txn.delete(Table::Containers, &scope.namespace, &id))?;
        if !deleted {
            return Err(not_found(&scope.namespace, &id));
        }
        let event = ContainerDelete { id };
        let events = &self.supervisor.events;
        events.publish(&scope.namespace, "/containers/delete", &event);
        // Its snapshot (and image) may now be garbage.
        crate::gc::after_delete(&self.supervisor, false).await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str) -> Container {
        Container {
            id: id.into(),
            runtime: Some(container::Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: b"{}".to_vec(),
            }),
            snapshotter: "overlayfs".into(),
            snapshot_key: id.into(),
            ..Container::default()
        }
    }

    #[test]
    fn a_container_needs_a_valid_id_a_runtime_and_a_spec() {
        let (id, r) = record(container("web")).unwrap();
        assert_eq!(
            (id.as_str(), r.runtime.as_str()),
            ("web", "io.containerd.runc.v2")
        );
        assert_eq!(r.spec.unwrap().to_proto().value, b"{}");
        assert!(record(container("a/b")).is_err());
        let mut no_runtime = container("web");
        no_runtime.runtime = None;
        assert!(record(no_runtime).is_err());
        let mut no_spec = container("web");
        no_spec.spec = None;
        assert_eq!(
            record(no_spec).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
