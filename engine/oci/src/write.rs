//! Writing images: layers, config and manifest, out as an OCI layout or a `docker save` tar.
//!
//! berth has no registry to pull from in its tests, so it makes its own images. This
//! module is the whole recipe: a layer is a tar of files, an image is a config naming
//! those layers by the digest of their uncompressed bytes (`diff_ids`), and a manifest
//! naming the config and the compressed layers by their digests. Every step is
//! deterministic: the same files always give the same digests, byte for byte.
//!
//! Read next: [`crate::layout`] reads back what [`Image::write_oci_layout`] writes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, Config, Descriptor, Digest, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde::Serialize;

use crate::digest::{self, HashingWriter};

/// The time stamped on every file and on the image itself: the Unix epoch, as
/// reproducible builds do (`SOURCE_DATE_EPOCH=0`), so nothing depends on when the
/// image was made.
const EPOCH: u64 = 0;
const EPOCH_RFC3339: &str = "1970-01-01T00:00:00Z";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write image file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} already exists; remove it first (berth never overwrites an image layout in place)"
    )]
    Exists { path: PathBuf },
    #[error("layer entry {entry:?}: {source}")]
    Entry { entry: String, source: io::Error },
    #[error("cannot build the image's {what}: {source}")]
    Spec {
        what: &'static str,
        source: oci_spec::OciSpecError,
    },
    #[error("cannot serialize the image's {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

// ANCHOR: layer_builder
/// Builds one layer: an uncompressed tar whose entries are all owned by root and
/// stamped with the epoch, so that two builds from the same files are identical.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl LayerBuilder {
    pub fn new() -> Self {
        LayerBuilder {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(EPOCH);
        header
    }

    /// A directory; `path` is relative to the root filesystem, like every entry name.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, WriteError> {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        self.append(&mut header, path, io::empty())
    }

    /// A regular file with the given contents.
    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        contents: &[u8],
    ) -> Result<&mut Self, WriteError> {
        let mut header = Self::header(tar::EntryType::Regular, mode, contents.len() as u64);
        self.append(&mut header, path, contents)
    }

    /// A symbolic link at `path` pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, WriteError> {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.link(&mut header, path, target)
    }

    /// A hard link at `path` to the earlier entry `target` (both root-relative).
    pub fn hardlink(&mut self, path: &str, target: &str) -> Result<&mut Self, WriteError> {
        let mut header = Self::header(tar::EntryType::Link, 0o755, 0);
        self.link(&mut header, path, target)
    }

    fn append(
        &mut self,
        header: &mut tar::Header,
        path: &str,
        data: impl io::Read,
    ) -> Result<&mut Self, WriteError> {
        let entry_err = |source| WriteError::Entry {
            entry: path.to_owned(),
            source,
        };
        self.tar
            .append_data(header, path, data)
            .map_err(entry_err)?;
        Ok(self)
    }

    fn link(
        &mut self,
        header: &mut tar::Header,
        path: &str,
        target: &str,
    ) -> Result<&mut Self, WriteError> {
        let entry_err = |source| WriteError::Entry {
            entry: path.to_owned(),
            source,
        };
        self.tar
            .append_link(header, path, target)
            .map_err(entry_err)?;
        Ok(self)
    }

    /// Finishes the tar and returns its bytes.
    pub fn finish(self) -> Result<Vec<u8>, WriteError> {
        let entry_err = |source| WriteError::Entry {
            entry: "<end of archive>".into(),
            source,
        };
        self.tar.into_inner().map_err(entry_err)
    }
}
// ANCHOR_END: layer_builder

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// One blob of the image, held in memory with its name.
struct Blob {
    media_type: MediaType,
    digest: Digest,
    bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: MediaType, bytes: Vec<u8>) -> Self {
        Blob {
            media_type,
            digest: digest::sha256(&bytes),
            bytes,
        }
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.bytes.len() as u64,
            self.digest.clone(),
        )
    }

    /// `blobs/sha256/<hex>`: where the blob lives in a layout (and in a docker save tar).
    fn path(&self) -> String {
        format!("blobs/{}/{}", self.digest.algorithm(), self.digest.digest())
    }
}

/// A complete image in memory: config, manifest and gzip-compressed layers.
pub struct Image {
    /// Repository name as the user types it, e.g. `busybox`.
    name: String,
    tag: String,
    config: Blob,
    manifest: Blob,
    layers: Vec<Blob>,
}

// ANCHOR: build_image
/// Assembles an image from uncompressed layer tars (bottom layer first) and the
/// runtime defaults in `config` (`Cmd`, `Env`, ...), for this machine's platform.
pub fn build_image(
    name: &str,
    tag: &str,
    config: Config,
    layer_tars: Vec<Vec<u8>>,
) -> Result<Image, WriteError> {
    let spec_err = |what| move |source| WriteError::Spec { what, source };
    // The config lists each layer by the digest of its *uncompressed* tar (the diff
    // id): that is the name that survives recompression on the way to a registry.
    let diff_ids: Vec<Digest> = layer_tars.iter().map(|tar| digest::sha256(tar)).collect();
    let layers = layer_tars
        .iter()
        .map(|tar| Ok(Blob::new(MediaType::ImageLayerGzip, gzip(tar)?)))
        .collect::<Result<Vec<_>, WriteError>>()?;

    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>())
        .build()
        .map_err(spec_err("rootfs"))?;
    let image_config = ImageConfigurationBuilder::default()
        .created(EPOCH_RFC3339)
        .architecture(Arch::default())
        .os(Os::default())
        .config(config)
        .rootfs(rootfs)
        .build()
        .map_err(spec_err("config"))?;
    let config = Blob::new(
        MediaType::ImageConfig,
        canonical_json("config", &image_config)?,
    );

    // The manifest names the config and the layers as stored: by compressed digest.
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor())
        .layers(layers.iter().map(Blob::descriptor).collect::<Vec<_>>())
        .build()
        .map_err(spec_err("manifest"))?;
    let manifest = Blob::new(
        MediaType::ImageManifest,
        canonical_json("manifest", &manifest)?,
    );

    Ok(Image {
        name: name.to_owned(),
        tag: tag.to_owned(),
        config,
        manifest,
        layers,
    })
}
// ANCHOR_END: build_image

/// gzip with a fixed header (no file name, no time stamp) and a fixed level, so the
/// compressed bytes, and with them the layer's digest, depend only on the tar.
fn gzip(tar: &[u8]) -> Result<Vec<u8>, WriteError> {
    let entry_err = |source| WriteError::Entry {
        entry: "<gzip>".into(),
        source,
    };
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::new(6));
    encoder.write_all(tar).map_err(entry_err)?;
    encoder.finish().map_err(entry_err)
}

/// JSON with object keys in sorted order. oci-spec keeps annotations in `HashMap`s,
/// whose order changes from run to run; going through `serde_json::Value` (a sorted
/// map unless serde_json's `preserve_order` feature is on) makes the bytes stable.
/// `tests::serialization_is_byte_stable` guards that assumption.
fn canonical_json(what: &'static str, value: &impl Serialize) -> Result<Vec<u8>, WriteError> {
    let json_err = |source| WriteError::Json { what, source };
    let value = serde_json::to_value(value).map_err(json_err)?;
    serde_json::to_vec(&value).map_err(json_err)
}

/// The `docker save` manifest: one entry per image, paths relative to the tar's root.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

impl Image {
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// The config's digest is what `docker images` shows as the image ID.
    pub fn config_digest(&self) -> &Digest {
        &self.config.digest
    }

    /// `busybox:latest`, the name `docker load` tags the image with.
    pub fn repo_tag(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// The fully qualified name containerd and skopeo use:
    /// `docker.io/library/busybox:latest` for a bare `busybox`.
    pub fn full_name(&self) -> String {
        let name = match self.name.split_once('/') {
            None => format!("docker.io/library/{}", self.name),
            Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => {
                self.name.clone()
            }
            Some(_) => format!("docker.io/{}", self.name),
        };
        format!("{name}:{}", self.tag)
    }

    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        [&self.config, &self.manifest]
            .into_iter()
            .chain(&self.layers)
    }

    // ANCHOR: layout_files
    /// Every file of the OCI image layout, as (relative path, contents): the
    /// `oci-layout` marker, `index.json` pointing at the manifest, and the blobs.
    fn layout_files(&self) -> Result<Vec<(String, Vec<u8>)>, WriteError> {
        let spec_err = |source| WriteError::Spec {
            what: "index",
            source,
        };
        // The tag goes in the standard annotation; containerd and docker also
        // record the full name in their own, so an import keeps the name.
        let mut manifest = self.manifest.descriptor();
        manifest.set_annotations(Some(
            [
                ("io.containerd.image.name".to_owned(), self.full_name()),
                (
                    "org.opencontainers.image.ref.name".to_owned(),
                    self.tag.clone(),
                ),
            ]
            .into(),
        ));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest])
            .build()
            .map_err(spec_err)?;

        let mut files = vec![
            (
                "oci-layout".to_owned(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_owned(), canonical_json("index", &index)?),
        ];
        files.extend(self.blobs().map(|blob| (blob.path(), blob.bytes.clone())));
        Ok(files)
    }
    // ANCHOR_END: layout_files

    /// Writes the image as an OCI image layout directory at `dir`, which must not
    /// exist yet. Everything is written into a temporary sibling first and renamed
    /// into place, so `dir` is either absent or complete, even after a crash.
    pub fn write_oci_layout(&self, dir: &Path) -> Result<(), WriteError> {
        if dir.exists() {
            return Err(WriteError::Exists {
                path: dir.to_owned(),
            });
        }
        let tmp = temporary_sibling(dir);
        let _ = fs::remove_dir_all(&tmp);
        for (name, bytes) in self.layout_files()? {
            let path = tmp.join(name);
            fs::create_dir_all(path.parent().expect("a layout file has a parent"))
                .map_err(io_at(&path))?;
            write_synced(&path, &bytes)?;
        }
        fs::rename(&tmp, dir).map_err(io_at(dir))
    }

    // ANCHOR: docker_archive
    /// Writes the image as a `docker save` tarball at `path`, replacing it atomically.
    ///
    /// Since Docker 25 a save is also an OCI layout: the blobs and `index.json` sit
    /// beside the classic `manifest.json` (config, tags, layers for `docker load`) and
    /// `repositories` (tag → top layer, for the oldest loaders). berth writes the same.
    pub fn write_docker_archive(&self, path: &Path) -> Result<(), WriteError> {
        let blob_path = |blob: &Blob| blob.path();
        let docker_manifest = [DockerSaveEntry {
            config: blob_path(&self.config),
            repo_tags: vec![self.repo_tag()],
            layers: self.layers.iter().map(blob_path).collect(),
        }];
        let top_layer = self.layers.last().map(|l| l.digest.digest().to_owned());
        let repositories =
            serde_json::json!({ &self.name: { &self.tag: top_layer.unwrap_or_default() } });

        let mut files = self.layout_files()?;
        files.push((
            "manifest.json".into(),
            canonical_json("manifest.json", &docker_manifest)?,
        ));
        files.push((
            "repositories".into(),
            canonical_json("repositories", &repositories)?,
        ));
        files.sort();

        let tmp = temporary_sibling(path);
        let mut tar =
            tar::Builder::new(HashingWriter::new(File::create(&tmp).map_err(io_at(&tmp))?));
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = LayerBuilder::header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut header, dir, io::empty())
                .map_err(io_at(&tmp))?;
        }
        for (name, bytes) in &files {
            let mut header =
                LayerBuilder::header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
            tar.append_data(&mut header, name, &bytes[..])
                .map_err(io_at(&tmp))?;
        }
        let (file, _, _) = tar.into_inner().map_err(io_at(&tmp))?.finish();
        file.sync_all().map_err(io_at(&tmp))?;
        fs::rename(&tmp, path).map_err(io_at(path))
    }
    // ANCHOR_END: docker_archive
}

/// `<parent>/.<name>.tmp-<pid>`: on the same file system as `path`, so the final
/// rename is atomic, and named per process so concurrent writers never collide.
fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut file = File::create(path).map_err(io_at(path))?;
    file.write_all(bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn sample() -> Image {
        let mut layer = LayerBuilder::new();
        layer.dir("bin", 0o755).unwrap();
        layer
            .file("bin/hello", 0o755, b"#!/bin/sh\necho hello\n")
            .unwrap();
        layer.symlink("bin/hi", "hello").unwrap();
        layer.hardlink("bin/hey", "bin/hello").unwrap();
        let config = ConfigBuilder::default()
            .cmd(vec!["/bin/hello".to_owned()])
            .build()
            .unwrap();
        build_image("sample", "v1", config, vec![layer.finish().unwrap()]).unwrap()
    }

    #[test]
    fn serialization_is_byte_stable() {
        // Annotations live in HashMaps with a random iteration order; if keys were
        // not sorted on the way out, repeated builds would eventually differ.
        let first = sample().layout_files().unwrap();
        for _ in 0..20 {
            assert_eq!(sample().layout_files().unwrap(), first);
        }
    }

    #[test]
    fn config_lists_uncompressed_digests_and_manifest_compressed_ones() {
        let image = sample();
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap();
        let layer = &image.layers[0];
        assert_ne!(
            diff_id,
            layer.digest.to_string(),
            "diff id must name the uncompressed tar"
        );
        let mut tar = Vec::new();
        io::copy(
            &mut flate2::read::GzDecoder::new(&layer.bytes[..]),
            &mut tar,
        )
        .unwrap();
        assert_eq!(diff_id, digest::sha256(&tar).to_string());

        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(
            manifest["config"]["digest"],
            image.config.digest.to_string()
        );
        assert_eq!(manifest["layers"][0]["digest"], layer.digest.to_string());
        assert_eq!(manifest["layers"][0]["size"], layer.bytes.len());
        assert_eq!(config["created"], EPOCH_RFC3339);
    }

    #[test]
    fn names_are_qualified_like_docker_does() {
        let mut image = sample();
        assert_eq!(image.full_name(), "docker.io/library/sample:v1");
        image.name = "berth/sample".into();
        assert_eq!(image.full_name(), "docker.io/berth/sample:v1");
        image.name = "localhost:5000/sample".into();
        assert_eq!(image.full_name(), "localhost:5000/sample:v1");
    }

    #[test]
    fn layout_refuses_to_overwrite_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("image");
        sample().write_oci_layout(&target).unwrap();
        assert!(matches!(
            sample().write_oci_layout(&target),
            Err(WriteError::Exists { .. })
        ));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["image"]);
    }

    #[test]
    fn docker_archive_is_identical_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        sample().write_docker_archive(&a).unwrap();
        sample().write_docker_archive(&b).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());

        let mut archive = tar::Archive::new(File::open(&a).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in ["oci-layout", "index.json", "manifest.json", "repositories"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
    }
}
