//! `containerd.services.leases.v1.Leases`: creating, listing and deleting leases
//! ([`crate::lease`] says what they are for).

use std::collections::BTreeSet;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::filters::{self, Filters};
use crate::lease::{LeaseError, LeaseRecord};
use crate::metadata::{self, Table};
use crate::proto::containerd::services::leases::v1::{
    leases_server, AddResourceRequest, CreateRequest, CreateResponse, DeleteRequest,
    DeleteResourceRequest, Lease, ListRequest, ListResourcesRequest, ListResourcesResponse,
    ListResponse, Resource,
};
use crate::scope::Scope;
use crate::services::{labels, to_map};
use crate::supervisor::Supervisor;

pub struct Leases {
    pub supervisor: Arc<Supervisor>,
}

fn lease(id: &str, record: &LeaseRecord) -> Lease {
    Lease {
        id: id.to_owned(),
        created_at: Some(metadata::timestamp(record.created)),
        labels: to_map(&record.labels),
    }
}

fn resource_of(resource: Option<Resource>) -> Result<(String, String), Status> {
    let r = resource.ok_or_else(|| Status::invalid_argument("a resource is required"))?;
    if r.id.is_empty() || r.r#type.is_empty() {
        return Err(Status::invalid_argument(
            "a resource needs an id and a type",
        ));
    }
    Ok((r.r#type, r.id))
}

impl Leases {
    fn change(
        &self,
        scope: &Scope,
        id: &str,
        edit: impl FnOnce(&mut LeaseRecord),
    ) -> Result<(), Status> {
        self.supervisor.db.update(|txn| {
            let mut record: LeaseRecord = txn
                .get(Table::Leases, &scope.namespace, id)?
                .ok_or_else(|| LeaseError::NotFound {
                    namespace: scope.namespace.clone(),
                    id: id.to_owned(),
                })?;
            edit(&mut record);
            txn.put(Table::Leases, &scope.namespace, id, &record)?;
            Ok::<_, Status>(())
        })
    }
}

#[tonic::async_trait]
impl leases_server::Leases for Leases {
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let id = if request.id.is_empty() {
            format!("berth-{}", metadata::now())
        } else {
            request.id
        };
        let record = LeaseRecord {
            created: metadata::now(),
            labels: labels(request.labels),
            resources: BTreeSet::new(),
        };
        self.supervisor.db.update(|txn| {
            if txn
                .get::<LeaseRecord>(Table::Leases, &scope.namespace, &id)?
                .is_some()
            {
                return Err(Status::already_exists(format!(
                    "lease {id:?} already exists"
                )));
            }
            txn.put(Table::Leases, &scope.namespace, &id, &record)?;
            Ok(())
        })?;
        Ok(Response::new(CreateResponse {
            lease: Some(lease(&id, &record)),
        }))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let deleted = self
            .supervisor
            .db
            .update(|txn| txn.delete(Table::Leases, &scope.namespace, &request.id))?;
        if !deleted {
            return Err(LeaseError::NotFound {
                namespace: scope.namespace,
                id: request.id,
            }
            .into());
        }
        crate::gc::after_delete(&self.supervisor, request.sync).await?;
        Ok(Response::new(()))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let scope = Scope::of(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let all: Vec<(String, LeaseRecord)> =
            self.supervisor.db.list(Table::Leases, &scope.namespace)?;
        let leases = all
            .iter()
            .filter(|(id, record)| {
                filters.matches(|path| match path {
                    [f] if f == "id" => Some(id.clone()),
                    [f, rest @ ..] if f == "labels" => filters::label(&record.labels, rest),
                    _ => None,
                })
            })
            .map(|(id, record)| lease(id, record))
            .collect();
        Ok(Response::new(ListResponse { leases }))
    }

    async fn add_resource(
        &self,
        request: Request<AddResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let resource = resource_of(request.resource)?;
        self.change(&scope, &request.id, |r| {
            r.resources.insert(resource);
        })?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        request: Request<DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let scope = Scope::of(&request)?;
        let request = request.into_inner();
        let resource = resource_of(request.resource)?;
        self.change(&scope, &request.id, |r| {
            r.resources.remove(&resource);
        })?;
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        request: Request<ListResourcesRequest>,
    ) -> Result<Response<ListResourcesResponse>, Status> {
        let scope = Scope::of(&request)?;
        let id = request.into_inner().id;
        let record: LeaseRecord = self
            .supervisor
            .db
            .get(Table::Leases, &scope.namespace, &id)?
            .ok_or_else(|| LeaseError::NotFound {
                namespace: scope.namespace.clone(),
                id: id.clone(),
            })?;
        let resources = record
            .resources
            .into_iter()
            .map(|(r#type, id)| Resource { id, r#type })
            .collect();
        Ok(Response::new(ListResourcesResponse { resources }))
    }
}
