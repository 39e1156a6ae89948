//! Leases: a client's claim on what it is creating.
//!
//! Between writing a blob and pointing an image at it, nothing references the blob,
//! and the garbage collector would take it. A client therefore creates a lease first
//! and sends its id with every request (`containerd-lease` metadata); everything
//! created meanwhile is added to the lease ([`add_to_lease`]), and kept until the
//! lease is deleted or expires (label `containerd.io/gc.expire`, an RFC 3339 time).
//!
//! Read next: [`crate::gc`], which treats leases as roots.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::metadata::{MetadataError, Table, Txn};
use crate::scope::Scope;

/// Resource types, as containerd names them.
pub const CONTENT: &str = "content";
pub const SNAPSHOTS: &str = "snapshots/overlayfs";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// (type, id) pairs.
    pub resources: BTreeSet<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {id:?} does not exist in namespace {namespace:?}; create it first (or send no containerd-lease)")]
    NotFound { namespace: String, id: String },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

impl From<LeaseError> for Status {
    fn from(err: LeaseError) -> Self {
        match err {
            LeaseError::NotFound { .. } => Status::not_found(err.to_string()),
            LeaseError::Metadata(e) => e.into(),
        }
    }
}

/// Adds `(kind, id)` to the request's lease, if it names one.
pub fn add_to_lease(txn: &Txn, scope: &Scope, kind: &str, id: &str) -> Result<(), LeaseError> {
    let Some(lease) = &scope.lease else {
        return Ok(());
    };
    let mut record: LeaseRecord = txn
        .get(Table::Leases, &scope.namespace, lease)?
        .ok_or_else(|| LeaseError::NotFound {
            namespace: scope.namespace.clone(),
            id: lease.clone(),
        })?;
    record.resources.insert((kind.to_owned(), id.to_owned()));
    txn.put(Table::Leases, &scope.namespace, lease, &record)?;
    Ok(())
}
