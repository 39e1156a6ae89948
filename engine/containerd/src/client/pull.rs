//! Pulling an image: from a registry into the content store, then into snapshots.
//!
//! The order is containerd's. Resolve the name to a manifest (or an index, from which
//! this machine's manifest is chosen); take a lease, so nothing fetched is collected
//! halfway; fetch the config and the layers (a few at once), each verified by digest
//! as it streams and committed only if it matches; store the manifest (and index)
//! labelled with references to its children, which is how the garbage collector later
//! knows what the image keeps alive; unpack it; name the image; end the lease. A pull
//! that fails at any point leaves no image, and once its lease is gone, nothing at all.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use berth_oci::layout::{is_host, is_index, is_manifest};
use berth_oci::oci_spec::image::{
    Descriptor as OciDescriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use futures_util::{stream, StreamExt};
use tonic::Code;
use tracing::Instrument;

use super::content::{
    index_gc_label, manifest_gc_labels, write_small, BlobWriter, ContentError, Opened,
};
use super::reference::{Reference, ReferenceError};
use super::registry::{next_chunk, Fetched, Registry, RegistryError, RegistryOptions};
use super::unpack::{unpack, UnpackError};
use super::{Client, ClientError};
use crate::proto::containerd::services::images::v1::{
    CreateImageRequest, Image, UpdateImageRequest,
};
use crate::proto::containerd::types::Descriptor;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{what} {digest} is not valid JSON of its kind: {source}")]
    Json {
        what: &'static str,
        digest: String,
        source: serde_json::Error,
    },
    #[error("{reference} has no image for this machine (linux/{arch}); it offers: {offered}")]
    Platform {
        reference: String,
        arch: String,
        offered: String,
    },
    #[error("{digest} in the index of {reference} has media type {media_type:?}, not a manifest")]
    NotAManifest {
        reference: String,
        digest: String,
        media_type: String,
    },
}

/// What to pull with.
#[derive(Clone, Debug)]
pub struct PullOptions {
    pub registry: RegistryOptions,
    /// Unpack into snapshots too (what `docker pull` does; `ctr pull` without
    /// `--unpack` doesn't).
    pub unpack: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            registry: RegistryOptions::default(),
            unpack: true,
        }
    }
}

/// A pulled image.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// The name it is stored under: `127.0.0.1:5000/busybox:latest`.
    pub name: String,
    /// What the name points at: the index, or the manifest if there is no index.
    pub target: Descriptor,
    pub manifest: String,
    pub config: String,
    /// The top snapshot's name, if unpacked (an image without layers has none).
    pub chain_id: Option<String>,
}

// ANCHOR: pull
/// Pulls `reference` (as a Docker user writes it: `busybox`, `127.0.0.1:5000/app:v1`).
pub async fn pull(
    client: &Client,
    reference: &str,
    options: &PullOptions,
) -> Result<Pulled, PullError> {
    let reference = Reference::parse(reference)?;
    let span = tracing::info_span!("pull", image = %reference);
    async {
        let registry = Registry::for_pull(&reference, &options.registry)?;
        let top = registry.manifest(reference.object()).await?;
        let lease = client.start_lease("pull").await?;
        let result = store(
            &client.in_lease(&lease)?,
            &registry,
            &reference,
            top,
            options,
        )
        .await;
        // Ending the lease hands whatever a failed pull fetched to the collector.
        // Should that fail, the lease still expires by itself: not worth an error.
        if let Err(err) = client.end_lease(&lease).await {
            tracing::warn!("{err}; the lease {lease} expires by itself");
        }
        result
    }
    .instrument(span)
    .await
}

async fn store(
    client: &Client,
    registry: &Registry,
    reference: &Reference,
    top: Fetched,
    options: &PullOptions,
) -> Result<Pulled, PullError> {
    let source = source_label(reference);
    let target = Descriptor {
        media_type: top.media_type.clone(),
        digest: top.digest.clone(),
        size: top.bytes.len() as i64,
        annotations: HashMap::new(),
    };
    let (manifest, index) = if is_index(&MediaType::from(top.media_type.as_str())) {
        let index: ImageIndex = json(&top, "image index")?;
        let (position, chosen) = host_manifest(reference, &index)?;
        let manifest = registry.manifest(chosen.digest().as_ref()).await?;
        (manifest, Some((top, position)))
    } else {
        (top, None)
    };
    let parsed: ImageManifest = json(&manifest, "image manifest")?;

    let config_descriptor = descriptor(parsed.config());
    let config_bytes = registry.small_blob(&config_descriptor.digest).await?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|source| PullError::Json {
            what: "image config",
            digest: config_descriptor.digest.clone(),
            source,
        })?;
    let config_ref = format!("config-{}", config_descriptor.digest);
    write_small(client, &config_ref, &config_bytes, source.clone()).await?;

    let layers: Vec<Descriptor> = parsed.layers().iter().map(descriptor).collect();
    fetch_layers(client, registry, &layers, &source).await?;

    let mut labels = source.clone();
    labels.extend(manifest_gc_labels(
        &config_descriptor.digest,
        layers.iter().map(|l| l.digest.as_str()),
    ));
    let manifest_ref = format!("manifest-{}", manifest.digest);
    write_small(client, &manifest_ref, &manifest.bytes, labels).await?;
    if let Some((index, position)) = &index {
        let mut labels = source.clone();
        labels.insert(index_gc_label(*position), manifest.digest.clone());
        write_small(
            client,
            &format!("index-{}", index.digest),
            &index.bytes,
            labels,
        )
        .await?;
    }

    // Unpacked before it is named: an image that fails to unpack is no image.
    let chain_id = if options.unpack {
        let diff_ids: Vec<String> = config.rootfs().diff_ids().to_vec();
        let top = unpack(client, &config_descriptor.digest, &layers, &diff_ids)
            .instrument(tracing::info_span!("unpack", layers = layers.len()))
            .await?;
        Some(top).filter(|t| !t.is_empty())
    } else {
        None
    };
    let name = reference.to_string();
    name_image(client, &name, &target).await?;
    Ok(Pulled {
        name,
        target,
        manifest: manifest.digest,
        config: config_descriptor.digest,
        chain_id,
    })
}
// ANCHOR_END: pull

/// Where the image came from, as containerd records it on each blob. A real engine
/// uses it to *mount* blobs across repositories of one registry on a later push;
/// berth doesn't yet (its pushes upload), but records it the same way.
fn source_label(reference: &Reference) -> HashMap<String, String> {
    [(
        format!("containerd.io/distribution.source.{}", reference.domain),
        reference.repository.clone(),
    )]
    .into()
}

// ANCHOR: fetch_layers
/// Layers fetched at once: dockerd's default `max-concurrent-downloads`.
const CONCURRENT_FETCHES: usize = 3;

/// Fetches `layers`, a few at a time, each distinct one once (an image may list a
/// layer twice, and two writers of one blob would wait on each other's ingest). Once
/// one fails, no other starts, and those under way stop before their request or at
/// their next chunk and abort their ingests: the first failure is the pull's, and it
/// leaves no half-written blob behind.
async fn fetch_layers(
    client: &Client,
    registry: &Registry,
    layers: &[Descriptor],
    labels: &HashMap<String, String>,
) -> Result<(), PullError> {
    let mut seen = HashSet::new();
    let distinct = layers.iter().filter(|l| seen.insert(&l.digest));
    let failed = AtomicBool::new(false);
    let results: Vec<Result<(), PullError>> = stream::iter(distinct)
        .map(|layer| async {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let result = fetch_layer(client, registry, layer, labels.clone(), &failed).await;
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            result
        })
        .buffer_unordered(CONCURRENT_FETCHES)
        .collect()
        .await;
    results.into_iter().collect()
}
// ANCHOR_END: fetch_layers

/// Streams a layer from the registry into the content store, checking its digest.
/// Stops (aborting the ingest, with no error of its own) once `failed` is set: it
/// looks before its request and after each chunk, so a download stalled mid-body
/// still holds up the pull's error until its next chunk or the read timeout.
async fn fetch_layer(
    client: &Client,
    registry: &Registry,
    layer: &Descriptor,
    labels: HashMap<String, String>,
    failed: &AtomicBool,
) -> Result<(), PullError> {
    let reference = format!("layer-{}", layer.digest);
    let size = u64::try_from(layer.size).unwrap_or_default();
    let mut writer = match BlobWriter::open(client, &reference, &layer.digest, size).await? {
        Opened::Exists => return Ok(()),
        Opened::Writer(writer) => writer,
    };
    let span = tracing::info_span!("fetch", digest = %layer.digest, size);
    let streamed = async {
        if failed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let (url, mut response) = registry.blob(&layer.digest).await?;
        while let Some(chunk) = next_chunk(&mut response, &url).await? {
            if failed.load(Ordering::Relaxed) {
                return Ok(None);
            }
            writer.write(&chunk).await?;
            // A registry sending more than it promised is wrong already.
            if writer.written() > size {
                break;
            }
        }
        Ok::<Option<String>, PullError>(Some(url))
    }
    .instrument(span)
    .await;
    match streamed {
        Ok(Some(url)) => {
            writer
                .commit(&url, Some((&layer.digest, size)), labels)
                .await?;
            Ok(())
        }
        Ok(None) => {
            let _ = writer.abort().await;
            Ok(())
        }
        Err(err) => {
            let _ = writer.abort().await;
            Err(err)
        }
    }
}

/// Points `name` at `target`, creating the image or moving an existing name.
pub async fn name_image(
    client: &Client,
    name: &str,
    target: &Descriptor,
) -> Result<(), ClientError> {
    let image = Image {
        name: name.to_owned(),
        target: Some(target.clone()),
        ..Image::default()
    };
    let created = client
        .images()
        .create(client.request(CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        }))
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => {
            let mask = prost_types::FieldMask {
                paths: vec!["target".to_owned()],
            };
            client
                .images()
                .update(client.request(UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(mask),
                    source_date_epoch: None,
                }))
                .await
                .map_err(ClientError::call("Images.Update"))?;
            Ok(())
        }
        Err(status) => Err(ClientError::call("Images.Create")(status)),
    }
}

/// This machine's manifest in an index, and its position (for the GC label).
fn host_manifest<'a>(
    reference: &Reference,
    index: &'a ImageIndex,
) -> Result<(usize, &'a OciDescriptor), PullError> {
    let found = index
        .manifests()
        .iter()
        .enumerate()
        .find(|(_, d)| d.platform().as_ref().is_some_and(is_host));
    let Some((position, chosen)) = found else {
        let offered: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|d| d.platform().as_ref())
            .map(|p| format!("{}/{}", p.os(), p.architecture()))
            .collect();
        return Err(PullError::Platform {
            reference: reference.to_string(),
            arch: berth_oci::oci_spec::image::Arch::default().to_string(),
            offered: if offered.is_empty() {
                "no platforms".to_owned()
            } else {
                offered.join(", ")
            },
        });
    };
    if !is_manifest(chosen.media_type()) {
        return Err(PullError::NotAManifest {
            reference: reference.to_string(),
            digest: chosen.digest().to_string(),
            media_type: chosen.media_type().to_string(),
        });
    }
    Ok((position, chosen))
}

fn json<T: serde::de::DeserializeOwned>(
    fetched: &Fetched,
    what: &'static str,
) -> Result<T, PullError> {
    serde_json::from_slice(&fetched.bytes).map_err(|source| PullError::Json {
        what,
        digest: fetched.digest.clone(),
        source,
    })
}

/// An OCI descriptor as the API's descriptor.
pub fn descriptor(d: &OciDescriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: d.size() as i64,
        annotations: d.annotations().clone().unwrap_or_default(),
    }
}
