//! Image tarballs: importing them into the content store, exporting images from it.
//!
//! Two formats share one tarball in practice. An **OCI image layout** has `oci-layout`,
//! `index.json` (naming each image by annotation) and `blobs/sha256/<hex>`. A
//! **`docker save`** tarball has `manifest.json`: per image, its config file, its layer
//! files in order, and its `RepoTags`; there is no manifest blob, so importing one
//! writes a Docker schema 2 manifest for it. Since Docker 25 a `docker save` is both at
//! once. Export writes both too, so `docker load`, `ctr import` and `skopeo` all read it.
//!
//! Import streams: the tar is read on a blocking thread and each file goes straight
//! into `Content.Write`, verified against its name where the name is a digest.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use berth_oci::layout::{
    is_host, is_index, is_manifest, CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION,
};
use berth_oci::oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::content::{
    index_gc_label, info, label, manifest_gc_labels, read, read_small, write_small, BlobWriter,
    ContentError, Opened, CHUNK,
};
use super::pull::{descriptor, name_image};
use super::reference::{Reference, ReferenceError};
use super::registry::{DOCKER_MANIFEST, MAX_MANIFEST, OCI_INDEX};
use super::unpack::{unpack, UnpackError};
use super::{Client, ClientError};
use crate::proto::containerd::types::Descriptor;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The files of a tarball that describe it, read into memory rather than stored.
const DESCRIPTIVE: &[&str] = &["oci-layout", "index.json", "manifest.json", "repositories"];

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot read the image tarball: {0}")]
    Tar(std::io::Error),
    #[error("cannot write the image tarball: {0}")]
    Write(std::io::Error),
    #[error(
        "the tarball is not an image archive: it has neither index.json (OCI layout) nor \
         manifest.json (docker save)"
    )]
    NotAnArchive,
    #[error("{file} in the tarball is not valid: {source}")]
    Json {
        file: String,
        source: serde_json::Error,
    },
    #[error("{file} names {what}, which is not in the tarball")]
    Missing { file: String, what: String },
    #[error(
        "{file} gives image {digest} {what}; give a base name to import it under \
         (ImportOptions::base_name, like `ctr import --base-name`)"
    )]
    Unnamed {
        file: &'static str,
        digest: String,
        what: String,
    },
    #[error("{file} in the tarball is over {limit} bytes; refusing to read it into memory")]
    TooBig { file: String, limit: usize },
    #[error(
        "{digest} ({media_type}) is not in the content store, so the image naming it is \
         incomplete; pull or import the image again to get every blob it names"
    )]
    NotStored { digest: String, media_type: String },
    #[error(
        "{digest} is described as {described} bytes, but the content store has {stored}: \
         the manifest naming it is wrong"
    )]
    Size {
        digest: String,
        described: i64,
        stored: i64,
    },
}

/// How to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The name for images the tarball names by tag alone (`latest` becomes
    /// `BASE:latest`) or not at all (`BASE@sha256:…`), as `ctr import --base-name`.
    pub base_name: Option<String>,
    pub unpack: bool,
}

/// An image found in a tarball, as it is now stored: its name and what it points at.
#[derive(Clone, Debug)]
pub struct Imported {
    pub name: String,
    pub target: Descriptor,
}

/// One file of the tarball, as the reading thread hands it over.
enum Piece {
    Begin {
        path: String,
    },
    Data(Vec<u8>),
    End,
    /// A symbolic or hard link: `docker save` before Docker 25 stores a layer that
    /// two images share once, and links the second one's `layer.tar` to it.
    Link {
        path: String,
        target: String,
    },
}

/// `manifest.json` of a `docker save` tarball: one entry per image.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A stored file: its digest and size, and whether it starts like gzip.
#[derive(Clone)]
struct Stored {
    digest: String,
    size: u64,
    gzip: bool,
}

// ANCHOR: import
/// Imports every image in the tarball `reader`, inside a lease of its own.
pub async fn import(
    client: &Client,
    reader: impl Read + Send + 'static,
    options: &ImportOptions,
) -> Result<Vec<Imported>, ArchiveError> {
    let lease = client.start_lease("import").await?;
    let leased = client.in_lease(&lease)?;
    let result = async {
        let files = store_files(&leased, reader, &lease).await?;
        let images = if let Some(index) = files.descriptive.get("index.json") {
            from_layout(index, options)?
        } else if let Some(manifest) = files.descriptive.get("manifest.json") {
            from_docker(&leased, manifest, &files, options.base_name.as_deref()).await?
        } else {
            return Err(ArchiveError::NotAnArchive);
        };
        // Everything each image needs is checked, labelled and unpacked before any
        // is named: a failure on the way leaves no image, only content the lease's
        // end hands to the collector.
        for image in &images {
            let mut walk = Walk::labelling();
            walk.collect(&leased, &image.target).await?;
            if options.unpack {
                unpack_target(&leased, &image.target).await?;
            }
        }
        for image in &images {
            name_image(&leased, &image.name, &image.target).await?;
        }
        Ok(images)
    }
    .await;
    if let Err(err) = client.end_lease(&lease).await {
        tracing::warn!("{err}; the lease {lease} expires by itself");
    }
    result
}
// ANCHOR_END: import

/// A file of the tarball on its way into the store.
struct Incoming {
    path: String,
    /// A layout's blob is named by its digest, and held to it.
    expected: Option<String>,
    /// Whether its first bytes are gzip's magic number.
    gzip: Option<bool>,
    into: Into,
}

enum Into {
    Store(Box<BlobWriter>),
    /// The store has it already: its bytes are only looked at.
    Known,
    /// A descriptive file, kept in memory.
    Memory(Vec<u8>),
}

/// What the tarball held: each stored file's digest and size, the descriptive
/// files' bytes, and its links.
#[derive(Default)]
struct Files {
    stored: HashMap<String, Stored>,
    descriptive: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
}

impl Files {
    /// The stored file at `path`, following links (a link's target is relative to
    /// the link's directory if symbolic, to the archive's root if hard).
    fn find(&self, path: &str, file: &str) -> Result<Stored, ArchiveError> {
        let mut path = path.to_owned();
        for _ in 0..8 {
            if let Some(stored) = self.stored.get(&path) {
                return Ok(stored.clone());
            }
            let Some(target) = self.links.get(&path) else {
                break;
            };
            path = target.clone();
        }
        Err(ArchiveError::Missing {
            file: file.to_owned(),
            what: path,
        })
    }
}

/// Streams every file of the tarball into the content store. A failure leaves no
/// ingest behind: the one in progress is aborted.
async fn store_files(
    client: &Client,
    reader: impl Read + Send + 'static,
    lease: &str,
) -> Result<Files, ArchiveError> {
    let (sender, mut pieces) = mpsc::channel::<Piece>(4);
    let reading = tokio::task::spawn_blocking(move || read_tar(reader, &sender));
    let mut files = Files::default();
    let mut current: Option<Incoming> = None;
    let streamed = async {
        while let Some(piece) = pieces.recv().await {
            match piece {
                Piece::Begin { path } => current = Some(begin(client, lease, path).await?),
                Piece::Data(bytes) => {
                    if let Some(incoming) = &mut current {
                        take(incoming, &bytes).await?;
                    }
                }
                Piece::End => {
                    if let Some(incoming) = current.take() {
                        finish(client, incoming, &mut files).await?;
                    }
                }
                Piece::Link { path, target } => {
                    files.links.insert(path, target);
                }
            }
        }
        reading
            .await
            .map_err(|err| ArchiveError::Tar(std::io::Error::other(err)))?
            .map_err(ArchiveError::Tar)
    }
    .await;
    if let Err(err) = streamed {
        if let Some(Incoming {
            into: Into::Store(writer),
            ..
        }) = current.take()
        {
            if let Err(abort_err) = writer.abort().await {
                tracing::warn!("cannot abort an import's ingest: {abort_err}");
            }
        }
        return Err(err);
    }
    Ok(files)
}

async fn begin(client: &Client, lease: &str, path: String) -> Result<Incoming, ArchiveError> {
    if DESCRIPTIVE.contains(&path.as_str()) {
        let into = Into::Memory(Vec::new());
        return Ok(Incoming {
            path,
            expected: None,
            gzip: None,
            into,
        });
    }
    let expected = path
        .strip_prefix("blobs/sha256/")
        .map(|hex| format!("sha256:{hex}"))
        .filter(|digest| crate::content::parse_digest(digest).is_ok());
    let reference = format!("import-{lease}-{path}");
    let digest = expected.clone().unwrap_or_default();
    let into = match BlobWriter::open(client, &reference, &digest, 0).await? {
        Opened::Writer(writer) => Into::Store(writer),
        Opened::Exists => Into::Known,
    };
    Ok(Incoming {
        path,
        expected,
        gzip: None,
        into,
    })
}

async fn take(incoming: &mut Incoming, bytes: &[u8]) -> Result<(), ArchiveError> {
    incoming
        .gzip
        .get_or_insert_with(|| bytes.starts_with(&[0x1f, 0x8b]));
    match &mut incoming.into {
        Into::Store(writer) => writer.write(bytes).await?,
        Into::Known => {}
        Into::Memory(buffer) => {
            buffer.extend_from_slice(bytes);
            if buffer.len() > MAX_MANIFEST {
                return Err(ArchiveError::TooBig {
                    file: incoming.path.clone(),
                    limit: MAX_MANIFEST,
                });
            }
        }
    }
    Ok(())
}

async fn finish(
    client: &Client,
    incoming: Incoming,
    files: &mut Files,
) -> Result<(), ArchiveError> {
    let Incoming {
        path,
        expected,
        gzip,
        into,
    } = incoming;
    let gzip = gzip.unwrap_or(false);
    let (digest, size) = match into {
        Into::Memory(bytes) => {
            files.descriptive.insert(path, bytes);
            return Ok(());
        }
        Into::Store(writer) => {
            let size = writer.written();
            let expected = expected.as_deref().map(|d| (d, size));
            let source = format!("{path} in the tarball");
            writer.commit(&source, expected, HashMap::new()).await?
        }
        // Known only by its name's digest, which the store has.
        Into::Known => {
            let digest = expected.unwrap_or_default();
            let size = info(client, &digest).await?.map_or(0, |i| i.size as u64);
            (digest, size)
        }
    };
    files.stored.insert(path, Stored { digest, size, gzip });
    Ok(())
}

/// The reading thread: every regular file, in order, in chunks.
fn read_tar(reader: impl Read, sender: &mpsc::Sender<Piece>) -> std::io::Result<()> {
    let gone = || std::io::Error::other("the importer stopped reading");
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name()? else {
                continue;
            };
            let target = target.to_string_lossy().trim_start_matches("./").to_owned();
            let target = if kind.is_symlink() {
                resolve_relative(&path, &target)
            } else {
                target
            };
            sender
                .blocking_send(Piece::Link { path, target })
                .map_err(|_| gone())?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        sender
            .blocking_send(Piece::Begin { path })
            .map_err(|_| gone())?;
        let mut buffer = vec![0; CHUNK];
        loop {
            let n = entry.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            sender
                .blocking_send(Piece::Data(buffer[..n].to_vec()))
                .map_err(|_| gone())?;
        }
        sender.blocking_send(Piece::End).map_err(|_| gone())?;
    }
    Ok(())
}

/// A symbolic link's target as a path from the archive's root: `a/b` → `../c/d`
/// is `c/d`.
fn resolve_relative(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// The images an OCI layout's `index.json` lists.
fn from_layout(index: &[u8], options: &ImportOptions) -> Result<Vec<Imported>, ArchiveError> {
    let index: ImageIndex = serde_json::from_slice(index).map_err(|source| ArchiveError::Json {
        file: "index.json".to_owned(),
        source,
    })?;
    let mut images = Vec::new();
    for entry in index.manifests() {
        let target = descriptor(entry);
        let annotation = |key: &str| target.annotations.get(key).cloned();
        let unnamed = |what: String| ArchiveError::Unnamed {
            file: "index.json",
            digest: target.digest.clone(),
            what,
        };
        let name = match (
            annotation(CONTAINERD_NAME_ANNOTATION),
            annotation(REF_NAME_ANNOTATION),
            &options.base_name,
        ) {
            (Some(full), _, _) => full,
            (None, Some(tag), _) if tag.contains(['/', ':']) => tag,
            (None, Some(tag), Some(base)) => format!("{base}:{tag}"),
            (None, None, Some(base)) => format!("{base}@{}", target.digest),
            (None, Some(tag), None) => return Err(unnamed(format!("only the tag {tag:?}"))),
            (None, None, None) => return Err(unnamed("no name".to_owned())),
        };
        let name = Reference::parse(&name)?.to_string();
        let mut target = target;
        target.annotations.clear();
        images.push(Imported { name, target });
    }
    Ok(images)
}

/// The images a `docker save` tarball's `manifest.json` lists, each given the
/// Docker schema 2 manifest it never had.
async fn from_docker(
    client: &Client,
    manifest: &[u8],
    files: &Files,
    base_name: Option<&str>,
) -> Result<Vec<Imported>, ArchiveError> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(manifest).map_err(|source| ArchiveError::Json {
            file: "manifest.json".to_owned(),
            source,
        })?;
    let find = |path: &str| files.find(path, "manifest.json");
    let mut images = Vec::new();
    for entry in entries {
        let config = find(&entry.config)?;
        let layers = entry
            .layers
            .iter()
            .map(|path| find(path))
            .collect::<Result<Vec<_>, _>>()?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": { "mediaType": DOCKER_CONFIG, "digest": config.digest, "size": config.size },
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": if l.gzip { DOCKER_LAYER_GZIP } else { DOCKER_LAYER },
                "digest": l.digest,
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest).expect("a JSON value serialises");
        let reference = format!("import-manifest-{}", super::sha256(&bytes));
        let digest = write_small(client, &reference, &bytes, HashMap::new()).await?;
        let target = Descriptor {
            media_type: DOCKER_MANIFEST.to_owned(),
            digest,
            size: bytes.len() as i64,
            annotations: HashMap::new(),
        };
        let mut tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            // An image saved by id (`docker save 3f57d9401f8d`): dangling.
            let Some(base) = base_name else {
                return Err(ArchiveError::Unnamed {
                    file: "manifest.json",
                    digest: target.digest,
                    what: "no RepoTags".to_owned(),
                });
            };
            tags.push(format!("{base}@{}", target.digest));
        }
        for tag in tags {
            let name = Reference::parse(&tag)?.to_string();
            images.push(Imported {
                name,
                target: target.clone(),
            });
        }
    }
    Ok(images)
}

/// This machine's manifest under `target`, read and parsed.
async fn host_manifest(
    client: &Client,
    target: &Descriptor,
) -> Result<Option<(Descriptor, ImageManifest)>, ArchiveError> {
    let mut current = target.clone();
    for _ in 0..4 {
        let media_type = MediaType::from(current.media_type.as_str());
        let bytes = read_small(client, &current.digest, MAX_MANIFEST, "manifest").await?;
        let json_error = |source| ArchiveError::Json {
            file: current.digest.clone(),
            source,
        };
        if is_manifest(&media_type) {
            let manifest = serde_json::from_slice(&bytes).map_err(json_error)?;
            return Ok(Some((current, manifest)));
        }
        if !is_index(&media_type) {
            return Ok(None);
        }
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(json_error)?;
        let Some(child) = index
            .manifests()
            .iter()
            .find(|d| d.platform().as_ref().is_some_and(is_host))
            .or_else(|| (index.manifests().len() == 1).then(|| &index.manifests()[0]))
        else {
            return Ok(None);
        };
        current = descriptor(child);
    }
    Ok(None)
}

async fn unpack_target(client: &Client, target: &Descriptor) -> Result<(), ArchiveError> {
    let Some((_, manifest)) = host_manifest(client, target).await? else {
        tracing::warn!(digest = %target.digest, "imported, not unpacked: no manifest for this platform");
        return Ok(());
    };
    let config = manifest.config().digest().to_string();
    let bytes = read_small(client, &config, MAX_MANIFEST, "image config").await?;
    let parsed: ImageConfiguration =
        serde_json::from_slice(&bytes).map_err(|source| ArchiveError::Json {
            file: config.clone(),
            source,
        })?;
    let layers: Vec<Descriptor> = manifest.layers().iter().map(descriptor).collect();
    unpack(client, &config, &layers, parsed.rootfs().diff_ids()).await?;
    Ok(())
}

// ANCHOR: export
/// Writes the images `names` to `out` as one tarball that is both an OCI layout and
/// a `docker save` archive.
pub async fn export(
    client: &Client,
    names: &[&str],
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ArchiveError> {
    let mut index_entries = Vec::new();
    let mut docker_entries = Vec::new();
    let mut walk = Walk::default();
    for name in names {
        let reference = Reference::parse(name)?;
        let full = reference.to_string();
        let target = client.image_target(&full).await?;
        walk.collect(client, &target).await?;
        let mut entry = serde_json::json!({
            "mediaType": target.media_type,
            "digest": target.digest,
            "size": target.size,
            "annotations": { CONTAINERD_NAME_ANNOTATION: full },
        });
        if let Some(tag) = &reference.tag {
            entry["annotations"][REF_NAME_ANNOTATION] = tag.clone().into();
        }
        index_entries.push(entry);
        if let Some((_, manifest)) = host_manifest(client, &target).await? {
            let path = |d: &berth_oci::oci_spec::image::Descriptor| {
                format!(
                    "blobs/sha256/{}",
                    d.digest().to_string().trim_start_matches("sha256:")
                )
            };
            // docker load accepts only NAME:TAG here; an image stored by digest
            // alone goes in untagged.
            let tags = reference.tag.as_ref().map(|_| vec![reference.familiar()]);
            docker_entries.push(DockerEntry {
                config: path(manifest.config()),
                repo_tags: tags,
                layers: manifest.layers().iter().map(path).collect(),
            });
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": index_entries,
    });
    let mut tar = TarWriter { out };
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .await?;
    tar.directory("blobs/").await?;
    tar.directory("blobs/sha256/").await?;
    for blob in &walk.blobs {
        let path = format!("blobs/sha256/{}", blob.digest.trim_start_matches("sha256:"));
        tar.header(&path, blob.size as u64, tar::EntryType::Regular)
            .await?;
        let mut stream = read(client, &blob.digest).await?;
        let mut written = 0u64;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(ClientError::call("Content.Read"))?
        {
            written += chunk.data.len() as u64;
            tar.out
                .write_all(&chunk.data)
                .await
                .map_err(ArchiveError::Write)?;
        }
        // Checked before anything was written; a blob changing meanwhile is not
        // possible in a content-addressed store, but a short read is.
        if written != blob.size as u64 {
            return Err(ArchiveError::Size {
                digest: blob.digest.clone(),
                described: blob.size,
                stored: written as i64,
            });
        }
        tar.pad(written).await?;
    }
    let json =
        |value: &serde_json::Value| serde_json::to_vec(value).expect("a JSON value serialises");
    tar.file("index.json", &json(&index)).await?;
    let docker = serde_json::to_vec(&docker_entries).expect("the entries serialise");
    tar.file("manifest.json", &docker).await?;
    tar.finish().await
}
// ANCHOR_END: export

/// A walk down from an image's target through the blobs it is made of, checking
/// each is stored whole: every manifest, config and layer, and the indexes above them.
/// Manifests an index names but the store lacks (other platforms) are left out, as
/// they were never pulled.
#[derive(Default)]
struct Walk {
    /// Every blob met, each once, in the order met: what an export must carry.
    blobs: Vec<Descriptor>,
    seen: HashSet<String>,
    /// Whether each manifest and index is labelled with its children on the way, as a
    /// pull does, so the garbage collector keeps them as long as the image exists.
    label: bool,
}

impl Walk {
    fn labelling() -> Walk {
        Walk {
            label: true,
            ..Walk::default()
        }
    }

    async fn collect(&mut self, client: &Client, target: &Descriptor) -> Result<(), ArchiveError> {
        let media_type = MediaType::from(target.media_type.as_str());
        check_stored(client, target).await?;
        let bytes = read_small(client, &target.digest, MAX_MANIFEST, "manifest").await?;
        let json_error = |source| ArchiveError::Json {
            file: target.digest.clone(),
            source,
        };
        self.add(target.clone());
        let mut labels = HashMap::new();
        if is_index(&media_type) {
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(json_error)?;
            for (i, child) in index.manifests().iter().enumerate() {
                let child = descriptor(child);
                if info(client, &child.digest).await?.is_some() {
                    labels.insert(index_gc_label(i), child.digest.clone());
                    Box::pin(self.collect(client, &child)).await?;
                }
            }
        } else if is_manifest(&media_type) {
            let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(json_error)?;
            for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
                let blob = descriptor(blob);
                check_stored(client, &blob).await?;
                self.add(blob);
            }
            labels = manifest_gc_labels(
                manifest.config().digest().as_ref(),
                manifest.layers().iter().map(|l| l.digest().as_ref()),
            );
        }
        if self.label && !labels.is_empty() {
            label(client, &target.digest, labels).await?;
        }
        Ok(())
    }

    fn add(&mut self, blob: Descriptor) {
        if self.seen.insert(blob.digest.clone()) {
            self.blobs.push(blob);
        }
    }
}

/// That the store has `blob`, of the size its descriptor says.
async fn check_stored(client: &Client, blob: &Descriptor) -> Result<(), ArchiveError> {
    match info(client, &blob.digest).await? {
        None => Err(ArchiveError::NotStored {
            digest: blob.digest.clone(),
            media_type: blob.media_type.clone(),
        }),
        Some(stored) if stored.size != blob.size => Err(ArchiveError::Size {
            digest: blob.digest.clone(),
            described: blob.size,
            stored: stored.size,
        }),
        Some(_) => Ok(()),
    }
}

/// A tar stream written by hand, so blobs go from `Content.Read` to the output
/// without a blocking thread in between: a 512-byte header, the bytes, padding.
struct TarWriter<'a, W> {
    out: &'a mut W,
}

impl<W: AsyncWrite + Unpin> TarWriter<'_, W> {
    async fn header(
        &mut self,
        path: &str,
        size: u64,
        kind: tar::EntryType,
    ) -> Result<(), ArchiveError> {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).map_err(ArchiveError::Write)?;
        header.set_size(size);
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(0);
        header.set_cksum();
        self.out
            .write_all(header.as_bytes())
            .await
            .map_err(ArchiveError::Write)
    }

    async fn pad(&mut self, size: u64) -> Result<(), ArchiveError> {
        let padding = (512 - size % 512) % 512;
        self.out
            .write_all(&vec![0; padding as usize])
            .await
            .map_err(ArchiveError::Write)
    }

    async fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.header(path, bytes.len() as u64, tar::EntryType::Regular)
            .await?;
        self.out
            .write_all(bytes)
            .await
            .map_err(ArchiveError::Write)?;
        self.pad(bytes.len() as u64).await
    }

    async fn directory(&mut self, path: &str) -> Result<(), ArchiveError> {
        self.header(path, 0, tar::EntryType::Directory).await
    }

    async fn finish(&mut self) -> Result<(), ArchiveError> {
        self.out
            .write_all(&[0; 1024])
            .await
            .map_err(ArchiveError::Write)?;
        self.out.flush().await.map_err(ArchiveError::Write)
    }
}
