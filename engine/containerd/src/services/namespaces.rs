//! `containerd.services.namespaces.v1.Namespaces`: the tenants of one containerd.
//!
//! A namespace exists once it has a record: created explicitly, or implicitly by the
//! first thing stored in it (see [`crate::metadata::Txn::put`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::filters::{self, Filters};
use crate::metadata::Table;
use crate::proto::containerd::events::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use crate::proto::containerd::services::namespaces::v1::{
    namespaces_server, CreateNamespaceRequest, CreateNamespaceResponse, DeleteNamespaceRequest,
    GetNamespaceRequest, GetNamespaceResponse, ListNamespacesRequest, ListNamespacesResponse,
    Namespace, UpdateNamespaceRequest, UpdateNamespaceResponse,
};
use crate::scope;
use crate::services::{labels, to_map, update_labels};
use crate::supervisor::Supervisor;

type Labels = BTreeMap<String, String>;

pub struct Namespaces {
    pub supervisor: Arc<Supervisor>,
}

fn namespace(name: &str, labels: &Labels) -> Namespace {
    Namespace {
        name: name.to_owned(),
        labels: to_map(labels),
    }
}

#[tonic::async_trait]
impl namespaces_server::Namespaces for Namespaces {
    async fn get(
        &self,
        request: Request<GetNamespaceRequest>,
    ) -> Result<Response<GetNamespaceResponse>, Status> {
        let name = request.into_inner().name;
        scope::validate(&name)?;
        // A namespace nothing was stored in yet still "exists" for Get: real dockerd
        // reads its namespace's labels at startup, before it has created anything.
        let labels: Labels = self
            .supervisor
            .db
            .get(Table::Namespaces, "", &name)?
            .unwrap_or_default();
        Ok(Response::new(GetNamespaceResponse {
            namespace: Some(namespace(&name, &labels)),
        }))
    }

    async fn list(
        &self,
        request: Request<ListNamespacesRequest>,
    ) -> Result<Response<ListNamespacesResponse>, Status> {
        let filters = Filters::parse(&[request.into_inner().filter])?;
        let all: Vec<(String, Labels)> = self.supervisor.db.list(Table::Namespaces, "")?;
        let namespaces = all
            .iter()
            .filter(|(name, labels)| {
                filters.matches(|path| match path {
                    [f] if f == "name" => Some(name.clone()),
                    [f, rest @ ..] if f == "labels" => filters::label(labels, rest),
                    _ => None,
                })
            })
            .map(|(name, labels)| namespace(name, labels))
            .collect();
        Ok(Response::new(ListNamespacesResponse { namespaces }))
    }

    async fn create(
        &self,
        request: Request<CreateNamespaceRequest>,
    ) -> Result<Response<CreateNamespaceResponse>, Status> {
        let ns = request.into_inner().namespace.unwrap_or_default();
        scope::validate(&ns.name)?;
        let labels = labels(ns.labels);
        self.supervisor.db.update(|txn| {
            if txn
                .get::<Labels>(Table::Namespaces, "", &ns.name)?
                .is_some()
            {
                return Err(Status::already_exists(format!(
                    "namespace {:?} already exists",
                    ns.name
                )));
            }
            txn.put(Table::Namespaces, "", &ns.name, &labels)?;
            Ok(())
        })?;
        let event = NamespaceCreate {
            name: ns.name.clone(),
            labels: to_map(&labels),
        };
        self.supervisor
            .events
            .publish(&ns.name, "/namespaces/create", &event);
        Ok(Response::new(CreateNamespaceResponse {
            namespace: Some(namespace(&ns.name, &labels)),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateNamespaceRequest>,
    ) -> Result<Response<UpdateNamespaceResponse>, Status> {
        let request = request.into_inner();
        let ns = request.namespace.unwrap_or_default();
        scope::validate(&ns.name)?;
        let labels = self.supervisor.db.update(|txn| {
            let mut labels: Labels = txn
                .get(Table::Namespaces, "", &ns.name)?
                .unwrap_or_default();
            update_labels(&mut labels, ns.labels, request.update_mask, |_| false)?;
            txn.put(Table::Namespaces, "", &ns.name, &labels)?;
            Ok::<_, Status>(labels)
        })?;
        let event = NamespaceUpdate {
            name: ns.name.clone(),
            labels: to_map(&labels),
        };
        self.supervisor
            .events
            .publish(&ns.name, "/namespaces/update", &event);
        Ok(Response::new(UpdateNamespaceResponse {
            namespace: Some(namespace(&ns.name, &labels)),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        let name = request.into_inner().name;
        scope::validate(&name)?;
        self.supervisor.db.update(|txn| {
            let mut used = Vec::new();
            for (table, what) in [
                (Table::Images, "images"),
                (Table::Content, "blobs"),
                (Table::Snapshots, "snapshots"),
                (Table::Leases, "leases"),
                (Table::Containers, "containers"),
            ] {
                if !txn.list::<serde_json::Value>(table, &name)?.is_empty() {
                    used.push(what);
                }
            }
            if !used.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "namespace {name:?} must be empty, but it still has {}; remove them first",
                    used.join(", ")
                )));
            }
            if !txn.delete(Table::Namespaces, "", &name)? {
                return Err(Status::not_found(format!("namespace {name:?} not found")));
            }
            Ok::<_, Status>(())
        })?;
        let event = NamespaceDelete { name: name.clone() };
        self.supervisor
            .events
            .publish(&name, "/namespaces/delete", &event);
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::namespaces_server::Namespaces as _;
    use super::*;

    #[tokio::test]
    async fn get_answers_for_a_namespace_nothing_was_stored_in() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let supervisor = Arc::new(Supervisor::open(&root, &dir.path().join("state")).unwrap());
        let service = Namespaces { supervisor };
        let request = Request::new(GetNamespaceRequest {
            name: "moby".into(),
        });
        let got = service.get(request).await.unwrap().into_inner();
        let namespace = got.namespace.unwrap();
        assert_eq!(namespace.name, "moby");
        assert!(namespace.labels.is_empty());

        let list = service.list(Request::new(ListNamespacesRequest::default()));
        assert!(list.await.unwrap().into_inner().namespaces.is_empty());
        let bad = service.get(Request::new(GetNamespaceRequest { name: "a/b".into() }));
        assert_eq!(bad.await.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
