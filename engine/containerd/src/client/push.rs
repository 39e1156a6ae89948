//! Pushing an image: the content store's blobs to a registry, children first.
//!
//! A registry accepts a manifest only once every blob it names is there, and an index
//! only once its manifests are. So the walk is bottom-up: each config and layer is
//! uploaded unless the repository has it (a HEAD answers that), streamed from
//! `Content.Read` in chunks; then each manifest, by digest; then the top object under
//! the tag. A manifest an index names but this store lacks (another platform's,
//! never pulled) must be in the repository already, since a registry refuses an
//! index naming manifests it does not have; otherwise the push stops, naming it.

use berth_oci::layout::{is_index, is_manifest};
use berth_oci::oci_spec::image::{ImageIndex, ImageManifest, MediaType};
use tracing::Instrument;

use super::content::{info, read, read_small, ContentError, CHUNK};
use super::pull::descriptor;
use super::reference::{Reference, ReferenceError};
use super::registry::{Registry, RegistryError, RegistryOptions, MAX_MANIFEST};
use super::{Client, ClientError};
use crate::proto::containerd::types::Descriptor;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{what} {digest} is not valid JSON of its kind: {source}")]
    Json {
        what: &'static str,
        digest: String,
        source: serde_json::Error,
    },
    #[error(
        "{digest} ({media_type}) cannot be pushed: neither this content store nor the \
         repository has it; pull the image again to get what it names (an index's \
         manifests for other platforms are never pulled: push this platform's manifest \
         under its own name instead)"
    )]
    Missing { digest: String, media_type: String },
    #[error("{digest} has media type {media_type:?}: berth pushes OCI and Docker schema 2 images")]
    MediaType { digest: String, media_type: String },
}

// ANCHOR: push
/// Pushes the image stored as `name` to `destination` (or to the registry its own
/// name points at when `destination` is `None`). Returns what the tag now names.
pub async fn push(
    client: &Client,
    name: &str,
    destination: Option<&str>,
    options: &RegistryOptions,
) -> Result<Descriptor, PushError> {
    let stored = Reference::parse(name)?.to_string();
    let destination = Reference::parse(destination.unwrap_or(name))?;
    let span = tracing::info_span!("push", image = %destination);
    async {
        let image = client.image_target(&stored).await?;
        let registry = Registry::for_push(&destination, options)?;
        push_object(client, &registry, &image, destination.object()).await?;
        Ok(image)
    }
    .instrument(span)
    .await
}

/// Pushes a manifest or index (and everything below it), stored under `tag_or_digest`.
async fn push_object(
    client: &Client,
    registry: &Registry,
    object: &Descriptor,
    tag_or_digest: &str,
) -> Result<(), PushError> {
    let media_type = MediaType::from(object.media_type.as_str());
    let bytes = read_small(client, &object.digest, MAX_MANIFEST, "manifest").await?;
    let parse_error = |what| {
        let digest = object.digest.clone();
        move |source| PushError::Json {
            what,
            digest,
            source,
        }
    };
    if is_index(&media_type) {
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(parse_error("index"))?;
        for child in index.manifests() {
            let child = descriptor(child);
            if info(client, &child.digest).await?.is_some() {
                Box::pin(push_object(client, registry, &child, &child.digest)).await?;
            } else if !registry.has_manifest(&child.digest).await? {
                return Err(PushError::Missing {
                    digest: child.digest,
                    media_type: child.media_type,
                });
            }
        }
    } else if is_manifest(&media_type) {
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(parse_error("manifest"))?;
        push_blob(client, registry, &descriptor(manifest.config())).await?;
        for layer in manifest.layers() {
            push_blob(client, registry, &descriptor(layer)).await?;
        }
    } else {
        return Err(PushError::MediaType {
            digest: object.digest.clone(),
            media_type: object.media_type.clone(),
        });
    }
    registry
        .put_manifest(tag_or_digest, &object.media_type, bytes)
        .await?;
    Ok(())
}

/// Uploads one blob unless the repository has it.
async fn push_blob(
    client: &Client,
    registry: &Registry,
    blob: &Descriptor,
) -> Result<(), PushError> {
    if registry.has_blob(&blob.digest).await? {
        return Ok(());
    }
    if info(client, &blob.digest).await?.is_none() {
        return Err(PushError::Missing {
            digest: blob.digest.clone(),
            media_type: blob.media_type.clone(),
        });
    }
    let span = tracing::info_span!("upload", digest = %blob.digest, size = blob.size);
    async {
        let mut location = registry.start_upload().await?;
        let mut stream = read(client, &blob.digest).await?;
        let mut offset = 0u64;
        let mut pending = Vec::with_capacity(CHUNK);
        loop {
            let next = stream
                .message()
                .await
                .map_err(ClientError::call("Content.Read"))?;
            if let Some(chunk) = &next {
                pending.extend_from_slice(&chunk.data);
            }
            if !pending.is_empty() && (pending.len() >= CHUNK || next.is_none()) {
                let chunk = std::mem::replace(&mut pending, Vec::with_capacity(CHUNK));
                let sent = chunk.len() as u64;
                location = registry.upload_chunk(&location, offset, chunk).await?;
                offset += sent;
            }
            if next.is_none() {
                break;
            }
        }
        // The registry hashes what it received and refuses a mismatch.
        registry.finish_upload(&location, &blob.digest).await?;
        Ok(())
    }
    .instrument(span)
    .await
}
// ANCHOR_END: push
