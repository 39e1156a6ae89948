//! Reading an OCI image layout: the directory form of an image that `skopeo copy oci:`,
//! `docker save` (since Docker 25) and berth's own [`crate::write`] produce.
//!
//! A layout is `oci-layout` (a version marker), `index.json` (the entry points, one per
//! tag) and `blobs/sha256/<hex>` (everything else, named by its digest). Reading an image
//! walks index → manifest → config → layers, and every blob is re-hashed on the way: a
//! blob's name is a promise about its bytes, and berth checks the promise.
//!
//! Read next: [`crate::unpack`] applies the layers of the [`Image`] found here.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest,
    MediaType, OciLayout, Os, Platform,
};
use serde::de::DeserializeOwned;

use crate::digest::HashingReader;

/// The annotation the OCI image spec defines for naming a manifest in `index.json`.
/// Most tools put just the tag in it (`latest`); some put the full name.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The annotation containerd (and `docker save` since Docker 25) adds beside it, with
/// the full name: `docker.io/library/busybox:latest`.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// The only layout version there is so far.
const LAYOUT_VERSION: &str = "1.0.0";

/// Manifests, indexes and configs are a few kilobytes. A descriptor claiming more is
/// either wrong or hostile, and reading it whole into memory is what it would want.
const MAX_JSON_BLOB: u64 = 4 << 20;

/// How many image indexes may point at one another before a manifest is reached.
/// Real images use one level (a multi-platform index); content addressing makes
/// cycles impossible, but not long chains.
const MAX_INDEX_DEPTH: usize = 4;

// Docker's own names for a manifest and a manifest list, still common in layouts
// exported from Docker and in registries.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "{dir} is not an OCI image layout (no readable oci-layout file: {source}); \
         point berth at the directory that holds oci-layout, index.json and blobs/"
    )]
    NotALayout { dir: PathBuf, source: io::Error },
    #[error(
        "{dir}/oci-layout says imageLayoutVersion {version:?}; berth reads only version 1.0.0"
    )]
    Version { dir: PathBuf, version: String },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid {what}: {source}")]
    Json {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "digest {digest:?} is not a sha256 digest of 64 lowercase hex digits; \
         berth reads only sha256 blobs"
    )]
    UnsupportedDigest { digest: String },
    #[error(
        "blob {digest} is missing from the layout ({path}); the layout is incomplete, \
         export the image again"
    )]
    MissingBlob { digest: Digest, path: PathBuf },
    #[error(
        "blob {digest} is {actual} bytes but its descriptor says {expected}; \
         the layout is corrupt, export the image again"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error(
        "blob {expected} hashes to {actual}; the layout is corrupt or was tampered with, \
         export the image again"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(
        "the {what} {digest} claims to be {size} bytes, more than the {MAX_JSON_BLOB} bytes \
         berth reads for one; the descriptor is wrong"
    )]
    TooLarge {
        what: &'static str,
        digest: Digest,
        size: u64,
    },
    #[error("{dir}/index.json lists no images; the layout is empty")]
    Empty { dir: PathBuf },
    #[error("no image named {reference:?} in {dir}; it holds: {available}")]
    NotFound {
        reference: String,
        dir: PathBuf,
        available: String,
    },
    #[error("{dir} holds several images that match ({available}); name the one you want")]
    Ambiguous { dir: PathBuf, available: String },
    #[error("the image index {index} has no image for {platform}; it offers: {available}")]
    NoPlatform {
        index: Digest,
        platform: String,
        available: String,
    },
    #[error(
        "descriptor {digest} has media type {media_type}, which is neither an image manifest \
         nor an image index"
    )]
    NotAnImage { digest: Digest, media_type: String },
    #[error(
        "image indexes nest more than {MAX_INDEX_DEPTH} deep below {digest}; the image is corrupt"
    )]
    TooDeep { digest: Digest },
    #[error(
        "the config of manifest {manifest} has diff_id {value:?}, which is not a sha256 \
         digest; the image is corrupt"
    )]
    BadDiffId { manifest: Digest, value: String },
    #[error(
        "manifest {manifest} lists {layers} layers but its config lists {diff_ids} diff_ids; \
         the image is corrupt"
    )]
    LayerCount {
        manifest: Digest,
        layers: usize,
        diff_ids: usize,
    },
}

impl LayoutError {
    /// Gets the verification error back out of an `io::Error` that a [`BlobReader`]
    /// returned, possibly through decoders (gzip, tar) that pass reader errors on
    /// unchanged. Any other I/O error is given back as it was.
    pub fn recover(err: io::Error) -> Result<LayoutError, io::Error> {
        if !err.get_ref().is_some_and(|inner| inner.is::<LayoutError>()) {
            return Err(err);
        }
        let inner = err
            .into_inner()
            .expect("checked above that there is an inner error");
        Ok(*inner
            .downcast::<LayoutError>()
            .expect("checked above that it is a LayoutError"))
    }
}

/// An open image layout: its directory and its parsed `index.json`.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    index: ImageIndex,
}

/// One image, resolved for this machine: the manifest and the config it names, both
/// verified. Layers are not read yet; [`Layout::open_blob`] streams them.
#[derive(Debug, Clone)]
pub struct Image {
    manifest_digest: Digest,
    manifest: ImageManifest,
    config: ImageConfiguration,
    diff_ids: Vec<Digest>,
}

impl Image {
    /// The manifest's digest: what `docker images --digests` shows.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    /// The config's digest: what `docker images` shows as the image ID.
    pub fn config_digest(&self) -> &Digest {
        self.manifest.config().digest()
    }

    /// The image config: runtime defaults (`Cmd`, `Env`, ...) and the layers' diff ids.
    pub fn config(&self) -> &ImageConfiguration {
        &self.config
    }

    /// The layers as stored (usually compressed), bottom first.
    pub fn layers(&self) -> &[Descriptor] {
        self.manifest.layers()
    }

    /// The digest of each layer once uncompressed, bottom first: the names the layers
    /// keep whatever compression a registry applies on the way.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.diff_ids
    }
}

impl Layout {
    /// Opens the layout at `dir`: checks the `oci-layout` marker and reads `index.json`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Layout, LayoutError> {
        let dir = dir.as_ref().to_owned();
        let marker_path = dir.join("oci-layout");
        let marker = fs::read(&marker_path).map_err(|source| LayoutError::NotALayout {
            dir: dir.clone(),
            source,
        })?;
        let marker: OciLayout = parse_json(&marker, &marker_path, "oci-layout marker")?;
        if marker.image_layout_version() != LAYOUT_VERSION {
            let version = marker.image_layout_version().clone();
            return Err(LayoutError::Version { dir, version });
        }
        let index_path = dir.join("index.json");
        let index = fs::read(&index_path).map_err(|source| LayoutError::Io {
            path: index_path.clone(),
            source,
        })?;
        let index = parse_json(&index, &index_path, "image index")?;
        Ok(Layout { dir, index })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The top-level `index.json`: one descriptor per image (or per tag).
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    // ANCHOR: resolve
    /// Finds one image and reads its manifest and config.
    ///
    /// `reference` may be a bare tag (`latest`), a name as users type it
    /// (`busybox`, `busybox:latest`), a full name (`docker.io/library/busybox:latest`)
    /// or a manifest digest. `None` takes the only image, and fails if there are several.
    /// A multi-platform image index is followed to the manifest for this machine.
    pub fn resolve(&self, reference: Option<&str>) -> Result<Image, LayoutError> {
        let descriptor = self.select(reference)?;
        let (manifest_digest, manifest) = self.manifest_for_host(descriptor)?;
        let config: ImageConfiguration = self.read_json(manifest.config(), "image config")?;
        let diff_ids = parse_diff_ids(&manifest_digest, &config)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(LayoutError::LayerCount {
                manifest: manifest_digest,
                layers: manifest.layers().len(),
                diff_ids: diff_ids.len(),
            });
        }
        Ok(Image {
            manifest_digest,
            manifest,
            config,
            diff_ids,
        })
    }
    // ANCHOR_END: resolve

    /// The descriptor in `index.json` that `reference` names.
    fn select(&self, reference: Option<&str>) -> Result<&Descriptor, LayoutError> {
        let all = self.index.manifests();
        if all.is_empty() {
            return Err(LayoutError::Empty {
                dir: self.dir.clone(),
            });
        }
        let matching: Vec<&Descriptor> = match reference {
            None => all.iter().collect(),
            Some(reference) => all.iter().filter(|d| is_named(d, reference)).collect(),
        };
        match matching[..] {
            [only] => return Ok(only),
            [] => {
                let reference = reference.unwrap_or_default().to_owned();
                let (dir, available) = (self.dir.clone(), describe(all));
                return Err(LayoutError::NotFound {
                    reference,
                    dir,
                    available,
                });
            }
            _ => {}
        }
        // Several tags for one image are one image.
        if matching.iter().all(|d| d.digest() == matching[0].digest()) {
            return Ok(matching[0]);
        }
        // Some layouts list one manifest per platform under the same name, each with a
        // `platform` field, instead of nesting an index: pick this machine's.
        let for_host: Vec<&Descriptor> = matching
            .iter()
            .copied()
            .filter(|d| d.platform().as_ref().is_some_and(is_host))
            .collect();
        match for_host[..] {
            [only] => Ok(only),
            _ => Err(LayoutError::Ambiguous {
                dir: self.dir.clone(),
                available: describe(matching),
            }),
        }
    }

    /// Follows image indexes down to the manifest for this machine's platform.
    fn manifest_for_host(&self, top: &Descriptor) -> Result<(Digest, ImageManifest), LayoutError> {
        let mut descriptor = top.clone();
        for _ in 0..MAX_INDEX_DEPTH {
            if is_manifest(descriptor.media_type()) {
                let manifest = self.read_json(&descriptor, "image manifest")?;
                return Ok((descriptor.digest().clone(), manifest));
            }
            if !is_index(descriptor.media_type()) {
                let (digest, media_type) = (
                    descriptor.digest().clone(),
                    descriptor.media_type().to_string(),
                );
                return Err(LayoutError::NotAnImage { digest, media_type });
            }
            let index: ImageIndex = self.read_json(&descriptor, "image index")?;
            descriptor = host_manifest(&index, descriptor.digest())?.clone();
        }
        Err(LayoutError::TooDeep {
            digest: top.digest().clone(),
        })
    }

    /// Where the blob with `digest` lives: `blobs/sha256/<hex>`. Only a well-formed
    /// sha256 digest is accepted, so nothing but 64 hex digits ever reaches the path.
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf, LayoutError> {
        let hex = sha256_hex(digest)?;
        Ok(self.dir.join("blobs").join("sha256").join(hex))
    }

    /// Reads a small blob (manifest, index, config) whole, checking size and digest.
    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, LayoutError> {
        self.read_small(descriptor, "blob")
    }

    /// Reads a JSON blob (manifest, index, config) and parses it as `T`.
    pub fn read_json<T: DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
        what: &'static str,
    ) -> Result<T, LayoutError> {
        let bytes = self.read_small(descriptor, what)?;
        parse_json(&bytes, &self.blob_path(descriptor.digest())?, what)
    }

    fn read_small(
        &self,
        descriptor: &Descriptor,
        what: &'static str,
    ) -> Result<Vec<u8>, LayoutError> {
        let (digest, size) = (descriptor.digest(), descriptor.size());
        if size > MAX_JSON_BLOB {
            return Err(LayoutError::TooLarge {
                what,
                digest: digest.clone(),
                size,
            });
        }
        let mut reader = self.open_blob(descriptor)?;
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut bytes)
            .map_err(|err| self.read_error(digest, err))?;
        Ok(bytes)
    }

    // ANCHOR: open_blob
    /// Opens a blob for streaming (a layer can be gigabytes). The returned reader
    /// hashes as it goes and fails at end of file if size or digest differ from the
    /// descriptor, so whoever consumes it to the end cannot miss a corrupt blob.
    pub fn open_blob(&self, descriptor: &Descriptor) -> Result<BlobReader, LayoutError> {
        let digest = descriptor.digest();
        let path = self.blob_path(digest)?;
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => LayoutError::MissingBlob {
                digest: digest.clone(),
                path: path.clone(),
            },
            _ => LayoutError::Io {
                path: path.clone(),
                source,
            },
        })?;
        // A size mismatch is cheap to see before reading a single byte.
        let actual = file
            .metadata()
            .map_err(|source| LayoutError::Io { path, source })?
            .len();
        if actual != descriptor.size() {
            return Err(LayoutError::SizeMismatch {
                digest: digest.clone(),
                expected: descriptor.size(),
                actual,
            });
        }
        Ok(BlobReader {
            hashing: Some(HashingReader::new(file)),
            expected: digest.clone(),
            expected_size: descriptor.size(),
            read: 0,
        })
    }
    // ANCHOR_END: open_blob

    /// Turns an error from reading a blob into the verification error it carries,
    /// or into an I/O error naming the blob's file.
    fn read_error(&self, digest: &Digest, err: io::Error) -> LayoutError {
        LayoutError::recover(err).unwrap_or_else(|source| LayoutError::Io {
            path: self.blob_path(digest).unwrap_or_else(|_| self.dir.clone()),
            source,
        })
    }
}

/// A blob being read: hashed and counted, and verified when the end is reached.
///
/// Errors come out as `io::Error`s (this is a `Read`) of kind `InvalidData` that
/// carry a [`LayoutError`]; [`LayoutError::recover`] gets it back.
pub struct BlobReader {
    /// `None` once the end was reached and verified.
    hashing: Option<HashingReader<File>>,
    expected: Digest,
    expected_size: u64,
    read: u64,
}

impl BlobReader {
    fn verify_at_end(&mut self) -> Result<(), LayoutError> {
        let Some(hashing) = self.hashing.take() else {
            return Ok(());
        };
        let (actual, size) = hashing.finish();
        if size != self.expected_size {
            let (digest, expected) = (self.expected.clone(), self.expected_size);
            return Err(LayoutError::SizeMismatch {
                digest,
                expected,
                actual: size,
            });
        }
        if actual != self.expected {
            return Err(LayoutError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(hashing) = self.hashing.as_mut() else {
            return Ok(0);
        };
        let n = hashing.read(buf)?;
        self.read += n as u64;
        // The file was the right size when opened; if it grew since, stop now
        // rather than hand out bytes the digest will not cover.
        if self.read > self.expected_size {
            let (digest, expected) = (self.expected.clone(), self.expected_size);
            let err = LayoutError::SizeMismatch {
                digest,
                expected,
                actual: self.read,
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, err));
        }
        if n == 0 && !buf.is_empty() {
            self.verify_at_end()
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        }
        Ok(n)
    }
}

/// The hex part of a sha256 digest, checked again here rather than trusted from the
/// parser, because it becomes a file name.
fn sha256_hex(digest: &Digest) -> Result<&str, LayoutError> {
    let hex = digest.digest();
    let is_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if *digest.algorithm() == DigestAlgorithm::Sha256 && hex.len() == 64 && hex.bytes().all(is_hex)
    {
        Ok(hex)
    } else {
        Err(LayoutError::UnsupportedDigest {
            digest: digest.to_string(),
        })
    }
}

fn parse_json<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T, LayoutError> {
    serde_json::from_slice(bytes).map_err(|source| LayoutError::Json {
        path: path.to_owned(),
        what,
        source,
    })
}

fn parse_diff_ids(
    manifest: &Digest,
    config: &ImageConfiguration,
) -> Result<Vec<Digest>, LayoutError> {
    let parse = |value: &String| {
        let bad = || LayoutError::BadDiffId {
            manifest: manifest.clone(),
            value: value.clone(),
        };
        let digest: Digest = value.parse().map_err(|_| bad())?;
        sha256_hex(&digest).map_err(|_| bad())?;
        Ok(digest)
    };
    config.rootfs().diff_ids().iter().map(parse).collect()
}

/// Whether `media_type` is an image manifest, OCI or Docker schema 2.
pub fn is_manifest(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageManifest || media_type.to_string() == DOCKER_MANIFEST
}

/// Whether `media_type` is an image index or a Docker manifest list.
pub fn is_index(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageIndex || media_type.to_string() == DOCKER_MANIFEST_LIST
}

// ANCHOR: host_platform
/// Whether `platform` is what this machine runs: Linux on its own CPU architecture,
/// in the Go names images use (`amd64`, `arm64`, where Rust says `x86_64`, `aarch64`;
/// oci-spec's `Arch::default()` does that translation).
///
/// A real engine would also match the CPU variant (`arm/v7`, `arm64/v8`); berth
/// doesn't because on amd64 and arm64, the machines it runs on, there is one variant.
pub fn is_host(platform: &Platform) -> bool {
    *platform.os() == Os::Linux && *platform.architecture() == Arch::default()
}
// ANCHOR_END: host_platform

/// The manifest for this machine in a multi-platform image index.
fn host_manifest<'a>(
    index: &'a ImageIndex,
    digest: &Digest,
) -> Result<&'a Descriptor, LayoutError> {
    let mut for_host = index
        .manifests()
        .iter()
        .filter(|d| d.platform().as_ref().is_some_and(is_host));
    for_host.next().ok_or_else(|| {
        let offered: Vec<String> = index
            .manifests()
            .iter()
            .map(|d| {
                d.platform()
                    .as_ref()
                    .map_or("no platform".to_owned(), platform_name)
            })
            .collect();
        LayoutError::NoPlatform {
            index: digest.clone(),
            platform: format!("{}/{}", Os::Linux, Arch::default()),
            available: offered.join(", "),
        }
    })
}

fn platform_name(platform: &Platform) -> String {
    format!("{}/{}", platform.os(), platform.architecture())
}

// ANCHOR: names
/// Every spelling a user might ask for the manifest `descriptor` by.
///
/// From `docker.io/library/busybox:latest` (containerd's annotation) come also
/// `library/busybox:latest`, `busybox:latest` and the bare tag `latest` (which is
/// what the OCI annotation usually holds); the digest always names it too.
fn names(descriptor: &Descriptor) -> Vec<String> {
    let mut names = vec![descriptor.digest().to_string()];
    let annotations = descriptor.annotations().iter().flatten();
    let values = annotations
        .filter(|(key, _)| *key == REF_NAME_ANNOTATION || *key == CONTAINERD_NAME_ANNOTATION)
        .map(|(_, value)| value);
    for value in values {
        names.push(value.clone());
        if let Some(rest) = value.strip_prefix("docker.io/") {
            names.push(rest.to_owned());
            names.extend(rest.strip_prefix("library/").map(str::to_owned));
        }
        // The tag is what follows the last ':' unless a '/' does (that ':' was a port).
        if let Some((_, tag)) = value.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
            names.push(tag.to_owned());
        }
    }
    names
}
// ANCHOR_END: names

/// Whether `reference` names `descriptor`; a name without a tag means `:latest`,
/// as it does on the docker command line.
fn is_named(descriptor: &Descriptor, reference: &str) -> bool {
    let with_latest = format!("{reference}:latest");
    names(descriptor)
        .iter()
        .any(|name| name == reference || *name == with_latest)
}

/// `busybox:latest (sha256:…), …`: how an error lists what a layout holds.
fn describe<'a>(descriptors: impl IntoIterator<Item = &'a Descriptor>) -> String {
    let one = |d: &Descriptor| {
        let annotations = d.annotations().as_ref();
        let name = annotations.and_then(|a| {
            a.get(CONTAINERD_NAME_ANNOTATION)
                .or_else(|| a.get(REF_NAME_ANNOTATION))
        });
        match name {
            Some(name) => format!("{name} ({})", d.digest()),
            None => format!("unnamed ({})", d.digest()),
        }
    };
    descriptors
        .into_iter()
        .map(one)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds layouts by hand for the tests of this module and of [`crate::unpack`],
/// including broken ones that [`crate::write`] would never produce.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use oci_spec::image::{
        ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, RootFsBuilder,
    };
    use serde::Serialize;

    pub(crate) struct LayoutBuilder {
        pub dir: PathBuf,
        manifests: Vec<Descriptor>,
    }

    impl LayoutBuilder {
        pub fn new(dir: &Path) -> Self {
            fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
            fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
            LayoutBuilder {
                dir: dir.to_owned(),
                manifests: Vec::new(),
            }
        }

        /// Stores `bytes` as a blob and returns its descriptor.
        pub fn blob(&self, media_type: MediaType, bytes: &[u8]) -> Descriptor {
            let digest = crate::digest::sha256(bytes);
            fs::write(self.dir.join("blobs/sha256").join(digest.digest()), bytes).unwrap();
            Descriptor::new(media_type, bytes.len() as u64, digest)
        }

        pub fn json(&self, media_type: MediaType, value: &impl Serialize) -> Descriptor {
            self.blob(media_type, &serde_json::to_vec(value).unwrap())
        }

        /// Config and manifest for `layers`, with `diff_ids` written into the config
        /// as given (right or wrong).
        pub fn image(&self, layers: Vec<Descriptor>, diff_ids: &[Digest]) -> Descriptor {
            let rootfs = RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>())
                .build()
                .unwrap();
            let config = ImageConfigurationBuilder::default()
                .architecture(Arch::default())
                .os(Os::Linux)
                .rootfs(rootfs)
                .build()
                .unwrap();
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(self.json(MediaType::ImageConfig, &config))
                .layers(layers)
                .build()
                .unwrap();
            self.json(MediaType::ImageManifest, &manifest)
        }

        /// A multi-platform index over `(platform, manifest)` pairs.
        pub fn platform_index(&self, entries: Vec<(Os, Arch, Descriptor)>) -> Descriptor {
            let manifests = entries
                .into_iter()
                .map(|(os, arch, mut descriptor)| {
                    let platform = oci_spec::image::PlatformBuilder::default()
                        .os(os)
                        .architecture(arch)
                        .build()
                        .unwrap();
                    descriptor.set_platform(Some(platform));
                    descriptor
                })
                .collect::<Vec<_>>();
            let index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(manifests)
                .build()
                .unwrap();
            self.json(MediaType::ImageIndex, &index)
        }

        /// Lists `descriptor` in `index.json` with the given annotations.
        pub fn add(
            &mut self,
            mut descriptor: Descriptor,
            annotations: &[(&str, &str)],
        ) -> &mut Self {
            if !annotations.is_empty() {
                let map = annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                descriptor.set_annotations(Some(map));
            }
            self.manifests.push(descriptor);
            self
        }

        pub fn write_index(&self) -> Layout {
            let index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(self.manifests.clone())
                .build()
                .unwrap();
            fs::write(
                self.dir.join("index.json"),
                serde_json::to_vec(&index).unwrap(),
            )
            .unwrap();
            Layout::open(&self.dir).unwrap()
        }

        /// Rewrites a stored blob in place (same name, new bytes): corruption.
        pub fn corrupt(&self, digest: &Digest, bytes: &[u8]) {
            fs::write(self.dir.join("blobs/sha256").join(digest.digest()), bytes).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::LayoutBuilder;
    use super::*;
    use crate::digest::sha256;

    fn one_layer_image(builder: &LayoutBuilder, contents: &[u8]) -> Descriptor {
        let layer = builder.blob(MediaType::ImageLayer, contents);
        builder.image(vec![layer], &[sha256(contents)])
    }

    #[test]
    fn a_directory_without_the_marker_is_not_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = Layout::open(dir.path()).unwrap_err();
        assert!(matches!(err, LayoutError::NotALayout { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("oci-layout, index.json and blobs/"),
            "{err}"
        );

        fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"2.0.0"}"#,
        )
        .unwrap();
        let err = Layout::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, LayoutError::Version { ref version, .. } if version == "2.0.0"),
            "{err}"
        );
    }

    #[test]
    fn references_match_tags_familiar_names_full_names_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = LayoutBuilder::new(dir.path());
        let busybox = one_layer_image(&builder, b"busybox");
        let alpine = one_layer_image(&builder, b"alpine");
        builder
            .add(
                busybox.clone(),
                &[
                    (REF_NAME_ANNOTATION, "1.36"),
                    (CONTAINERD_NAME_ANNOTATION, "docker.io/library/busybox:1.36"),
                ],
            )
            .add(
                alpine.clone(),
                &[(REF_NAME_ANNOTATION, "registry.example:5000/alpine:latest")],
            );
        let layout = builder.write_index();

        for reference in [
            "1.36",
            "busybox:1.36",
            "library/busybox:1.36",
            "docker.io/library/busybox:1.36",
        ] {
            let image = layout.resolve(Some(reference)).unwrap();
            assert_eq!(image.manifest_digest(), busybox.digest(), "{reference}");
        }
        let by_digest = layout.resolve(Some(busybox.digest().as_ref())).unwrap();
        assert_eq!(by_digest.manifest_digest(), busybox.digest());
        // A name without a tag means :latest, and a registry port is not a tag.
        for reference in ["registry.example:5000/alpine", "latest"] {
            assert_eq!(
                layout.resolve(Some(reference)).unwrap().manifest_digest(),
                alpine.digest()
            );
        }

        let err = layout.resolve(Some("busybox")).unwrap_err();
        assert!(matches!(err, LayoutError::NotFound { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("\"busybox\"") && message.contains("docker.io/library/busybox:1.36"),
            "{message}"
        );
    }

    #[test]
    fn no_reference_takes_the_only_image_and_refuses_to_guess_between_several() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = LayoutBuilder::new(dir.path());
        let first = one_layer_image(&builder, b"one");
        builder.add(first.clone(), &[(REF_NAME_ANNOTATION, "one")]);
        let layout = builder.write_index();
        assert_eq!(
            layout.resolve(None).unwrap().manifest_digest(),
            first.digest()
        );

        // A second tag for the same image is still one image.
        builder.add(first.clone(), &[(REF_NAME_ANNOTATION, "also-one")]);
        assert_eq!(
            builder
                .write_index()
                .resolve(None)
                .unwrap()
                .manifest_digest(),
            first.digest()
        );

        let second = one_layer_image(&builder, b"two");
        builder.add(second, &[(REF_NAME_ANNOTATION, "two")]);
        let err = builder.write_index().resolve(None).unwrap_err();
        assert!(matches!(err, LayoutError::Ambiguous { .. }), "{err}");
        assert!(err.to_string().contains("one (sha256:"), "{err}");
    }

    #[test]
    fn a_multi_platform_index_is_followed_to_this_machines_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = LayoutBuilder::new(dir.path());
        let foreign = one_layer_image(&builder, b"s390x");
        let ours = one_layer_image(&builder, b"native");
        let index = builder.platform_index(vec![
            (Os::Linux, Arch::s390x, foreign.clone()),
            (Os::Windows, Arch::default(), foreign.clone()),
            (Os::Linux, Arch::default(), ours.clone()),
        ]);
        builder.add(index, &[(REF_NAME_ANNOTATION, "multi")]);
        let image = builder.write_index().resolve(Some("multi")).unwrap();
        assert_eq!(image.manifest_digest(), ours.digest());

        let only_foreign = builder.platform_index(vec![(Os::Linux, Arch::s390x, foreign)]);
        let mut builder = LayoutBuilder::new(dir.path());
        builder.add(only_foreign, &[]);
        let err = builder.write_index().resolve(None).unwrap_err();
        assert!(matches!(err, LayoutError::NoPlatform { .. }), "{err}");
        assert!(err.to_string().contains("it offers: linux/s390x"), "{err}");
    }

    #[test]
    fn the_config_must_name_one_diff_id_per_layer() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = LayoutBuilder::new(dir.path());
        let layer = builder.blob(MediaType::ImageLayer, b"layer");
        let manifest = builder.image(vec![layer.clone(), layer], &[sha256(b"layer")]);
        builder.add(manifest, &[]);
        let err = builder.write_index().resolve(None).unwrap_err();
        assert!(
            matches!(
                err,
                LayoutError::LayerCount {
                    layers: 2,
                    diff_ids: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn small_blobs_are_checked_for_size_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = LayoutBuilder::new(dir.path());
        let manifest = one_layer_image(&builder, b"x");
        builder.add(manifest.clone(), &[]);
        let layout = builder.write_index();

        // Same length, different bytes: only the digest can tell.
        let original = fs::read(layout.blob_path(manifest.digest()).unwrap()).unwrap();
        let mut tampered = original.clone();
        tampered[0] = b' ';
        builder.corrupt(manifest.digest(), &tampered);
        let err = layout.resolve(None).unwrap_err();
        assert!(
            matches!(err, LayoutError::DigestMismatch { ref expected, .. } if expected == manifest.digest()),
            "{err}"
        );

        builder.corrupt(manifest.digest(), &original[1..]);
        let err = layout.resolve(None).unwrap_err();
        assert!(matches!(err, LayoutError::SizeMismatch { .. }), "{err}");

        fs::remove_file(layout.blob_path(manifest.digest()).unwrap()).unwrap();
        let err = layout.resolve(None).unwrap_err();
        assert!(matches!(err, LayoutError::MissingBlob { .. }), "{err}");
    }

    #[test]
    fn a_descriptor_claiming_a_huge_json_blob_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutBuilder::new(dir.path()).write_index();
        let huge = Descriptor::new(MediaType::ImageManifest, 1 << 40, sha256(b"whatever"));
        let err = layout.read_blob(&huge).unwrap_err();
        assert!(matches!(err, LayoutError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn streamed_blobs_fail_at_the_end_when_the_digest_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let builder = LayoutBuilder::new(dir.path());
        let layout = builder.write_index();
        let layer = builder.blob(MediaType::ImageLayerGzip, &[7u8; 100_000]);

        let mut sound = Vec::new();
        layout
            .open_blob(&layer)
            .unwrap()
            .read_to_end(&mut sound)
            .unwrap();
        assert_eq!(sound.len(), 100_000);

        let mut bad = vec![7u8; 100_000];
        bad[99_999] = 8;
        builder.corrupt(layer.digest(), &bad);
        let mut reader = layout.open_blob(&layer).unwrap();
        // Everything but the verdict is handed out: a consumer must read to the end.
        let mut first = vec![0; 50_000];
        reader.read_exact(&mut first).unwrap();
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = LayoutError::recover(err).unwrap();
        assert!(matches!(err, LayoutError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn only_sha256_digests_ever_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutBuilder::new(dir.path()).write_index();
        let sha512: Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
        let other: Digest = "md5+b64:ABCdef_-=".parse().unwrap();
        for digest in [sha512, other] {
            let err = layout.blob_path(&digest).unwrap_err();
            assert!(
                matches!(err, LayoutError::UnsupportedDigest { .. }),
                "{err}"
            );
        }
        // A digest that tries to climb out of blobs/ does not even parse.
        assert!("sha256:../../../etc/passwd".parse::<Digest>().is_err());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 1,
                "digest": "sha256:../../etc/passwd",
            }],
        })
        .to_string();
        fs::write(dir.path().join("index.json"), index).unwrap();
        let err = Layout::open(dir.path()).unwrap_err();
        assert!(matches!(err, LayoutError::Json { .. }), "{err}");
    }

    #[test]
    fn reads_back_what_the_writer_writes() {
        use oci_spec::image::ConfigBuilder;
        let mut layer = crate::write::LayerBuilder::new();
        layer.file("hello", 0o644, b"hi\n").unwrap();
        let config = ConfigBuilder::default()
            .cmd(vec!["/hello".to_owned()])
            .build()
            .unwrap();
        let image =
            crate::write::build_image("berth/sample", "v1", config, vec![layer.finish().unwrap()])
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        image.write_oci_layout(&dir.path().join("image")).unwrap();

        let layout = Layout::open(dir.path().join("image")).unwrap();
        for reference in ["v1", "berth/sample:v1", "docker.io/berth/sample:v1"] {
            let found = layout.resolve(Some(reference)).unwrap();
            assert_eq!(found.manifest_digest(), image.manifest_digest());
            assert_eq!(found.config_digest(), image.config_digest());
            assert_eq!(found.layers().len(), 1);
            assert_eq!(found.diff_ids().len(), 1);
        }
    }
}
