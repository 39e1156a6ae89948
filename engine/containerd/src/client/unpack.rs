//! Unpacking an image: its layers, bottom to top, become a chain of committed
//! snapshots, the top one the parent of every container made from the image.
//!
//! Each committed snapshot is named by its **chain ID**, which covers the layer and
//! everything below it: `chain(1) = diffID(1)`, `chain(n) = sha256(chain(n-1) + " " +
//! diffID(n))`. Two images sharing their bottom layers share those snapshots, and a
//! layer already unpacked (by any image) is skipped. A layer is applied to an
//! *active* snapshot with a throwaway key, and only committed under its chain ID once
//! `Diff.Apply` has unpacked it and its uncompressed digest matched the config's
//! diffID: a snapshot named by a chain ID is always complete.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::Code;

use super::content::label;
use super::sha256;
use super::{Client, ClientError, SNAPSHOTTER};
use crate::diff::UNCOMPRESSED_LABEL;
use crate::proto::containerd::services::diff::v1::ApplyRequest;
use crate::proto::containerd::services::snapshots::v1::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use crate::proto::containerd::types::Descriptor;

/// The label containerd's GC follows from an image's config to its top snapshot.
pub fn snapshot_label() -> String {
    format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}")
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "layer {layer} unpacks to {actual}, but the image config says {expected}; \
         the image is inconsistent, so the layer was not committed"
    )]
    DiffId {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("the image has {layers} layers but its config lists {diff_ids} diffIDs")]
    Count { layers: usize, diff_ids: usize },
    #[error("the image config lists {diff_id:?} as a diffID, which is no sha256 digest")]
    BadDiffId { diff_id: String },
}

/// The chain IDs of a stack of layers, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => sha256(format!("{parent} {diff_id}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

// ANCHOR: unpack
/// Unpacks `layers` (with the config's `diff_ids`) into committed snapshots and
/// labels `config` so the garbage collector keeps them while the image exists.
/// Returns the top chain ID. Call it inside a lease (see [`Client::in_lease`]): the
/// active snapshots it prepares are kept by the lease, not by any image.
pub async fn unpack(
    client: &Client,
    config: &str,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<String, UnpackError> {
    if layers.len() != diff_ids.len() {
        return Err(UnpackError::Count {
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    // Chain IDs become snapshot names: only well-formed digests go into them.
    if let Some(bad) = diff_ids
        .iter()
        .find(|d| crate::content::parse_digest(d).is_err())
    {
        return Err(UnpackError::BadDiffId {
            diff_id: bad.clone(),
        });
    }
    let chain = chain_ids(diff_ids);
    let mut parent = String::new();
    for ((layer, diff_id), chain_id) in layers.iter().zip(diff_ids).zip(&chain) {
        if !exists(client, chain_id).await? {
            apply(client, layer, diff_id, chain_id, &parent).await?;
        }
        let labels = [(UNCOMPRESSED_LABEL.to_owned(), diff_id.clone())].into();
        label(client, &layer.digest, labels).await?;
        parent = chain_id.clone();
    }
    let top = chain.last().cloned().unwrap_or_default();
    if !top.is_empty() {
        label(client, config, [(snapshot_label(), top.clone())].into()).await?;
    }
    Ok(top)
}

/// One layer onto its parent: prepare, apply, check, commit; the active snapshot is
/// removed whatever fails.
async fn apply(
    client: &Client,
    layer: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    parent: &str,
) -> Result<(), UnpackError> {
    let key = extract_key(chain_id);
    let prepared = client
        .snapshots()
        .prepare(client.request(PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.clone(),
            parent: parent.to_owned(),
            labels: HashMap::new(),
        }))
        .await
        .map_err(ClientError::call("Snapshots.Prepare"))?
        .into_inner();
    let result = async {
        let applied = client
            .diff()
            .apply(client.request(ApplyRequest {
                diff: Some(layer.clone()),
                mounts: prepared.mounts,
                ..ApplyRequest::default()
            }))
            .await
            .map_err(ClientError::call("Diff.Apply"))?
            .into_inner()
            .applied
            .unwrap_or_default();
        if applied.digest != diff_id {
            return Err(UnpackError::DiffId {
                layer: layer.digest.clone(),
                expected: diff_id.to_owned(),
                actual: applied.digest,
            });
        }
        let commit = client
            .snapshots()
            .commit(client.request(CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                name: chain_id.to_owned(),
                key: key.clone(),
                labels: HashMap::new(),
            }))
            .await;
        match commit {
            Ok(_) => Ok(false),
            // Another unpack of the same layer won the race: its snapshot is as good,
            // and this one's active snapshot is left to remove.
            Err(status) if status.code() == Code::AlreadyExists => Ok(true),
            Err(status) => Err(ClientError::call("Snapshots.Commit")(status).into()),
        }
    }
    .await;
    if !matches!(result, Ok(false)) {
        let request = client.request(RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.clone(),
        });
        if let Err(status) = client.snapshots().remove(request).await {
            // The lease still holds it, and its end hands it to the collector.
            tracing::warn!(
                key,
                "cannot remove the unpack's active snapshot: {}",
                status.message()
            );
        }
    }
    result.map(|_| ())
}
// ANCHOR_END: unpack

async fn exists(client: &Client, key: &str) -> Result<bool, ClientError> {
    let request = client.request(StatSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_owned(),
        key: key.to_owned(),
    });
    match client.snapshots().stat(request).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == Code::NotFound => Ok(false),
        Err(status) => Err(ClientError::call("Snapshots.Stat")(status)),
    }
}

/// A key no other unpack uses, in containerd's form, so `ctr snapshots ls` shows
/// the same names for either supervisor: `extract-<nanos>-<random> <chain ID>`.
fn extract_key(chain_id: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let random = sha256(format!("{nanos} {} {chain_id}", std::process::id()).as_bytes());
    format!("extract-{nanos}-{} {chain_id}", &random[7..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_cover_every_layer_below() {
        let a = sha256(b"a");
        let b = sha256(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], sha256(format!("{a} {b}").as_bytes()));
        assert_ne!(chain_ids(&[b, a])[1], chain[1], "order matters");
        assert!(chain_ids(&[]).is_empty());
    }
}
