//! The differ's `Apply`: unpacks one layer blob into the mounts of an active snapshot.
//!
//! The mounts are performed on a scratch directory, so the layer is applied to what
//! the container will see: for an overlay, deleting a lower layer's file (an OCI
//! whiteout) makes overlayfs itself record the deletion in the upper directory, in its
//! own whiteout format. The unpacking is berth-oci's, which resolves every path inside
//! the root with `openat2`, so a hostile layer cannot write outside it.
//!
//! Apply answers with the layer's *diff ID*: the digest of the uncompressed tar, which
//! the image config lists and the snapshot chain is named by.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_oci::digest::HashingReader;
use berth_oci::unpack::{apply_tar, UnpackError};
use flate2::read::MultiGzDecoder;

use crate::mount::{self, Mount, MountError};

/// The media type of what Apply reports: an uncompressed OCI layer.
pub const UNCOMPRESSED: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("media type {media_type:?} is not a layer berth can apply (gzip or uncompressed tar layers only)")]
    MediaType { media_type: String },
    #[error("layer {digest} is stored with digest {actual}; the content store is corrupt, remove the image and import it again")]
    Corrupt { digest: String, actual: String },
    #[error("cannot read layer {digest}: {source}")]
    Read { digest: String, source: io::Error },
    #[error("cannot prepare the scratch mount point {path}: {source}")]
    Scratch { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

impl From<DiffError> for tonic::Status {
    fn from(err: DiffError) -> Self {
        use tonic::Status;
        match err {
            DiffError::MediaType { .. } => Status::invalid_argument(err.to_string()),
            DiffError::Mount(e) => e.into(),
            DiffError::Unpack(UnpackError::NoOpenat2 { .. })
            | DiffError::Scratch { .. }
            | DiffError::Read { .. } => Status::internal(err.to_string()),
            _ => Status::failed_precondition(err.to_string()),
        }
    }
}

/// What Apply did: the uncompressed layer's digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub diff_id: String,
    pub size: i64,
}

// ANCHOR: apply
/// Applies the layer blob `layer` (stored under `digest`, of `media_type`) to `mounts`,
/// mounted for the time being on `scratch`, which must not exist yet.
pub fn apply(
    layer: File,
    digest: &str,
    media_type: &str,
    mounts: &[Mount],
    scratch: &Path,
) -> Result<Applied, DiffError> {
    let is_layer = media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.");
    if !is_layer || media_type.contains("zstd") {
        return Err(DiffError::MediaType {
            media_type: media_type.to_owned(),
        });
    }
    let [mount] = mounts else {
        return Err(MountError::Count {
            count: mounts.len(),
        }
        .into());
    };
    fs::create_dir_all(scratch).map_err(|source| DiffError::Scratch {
        path: scratch.to_owned(),
        source,
    })?;
    let result = mount::mount_on(mount, scratch)
        .map_err(DiffError::from)
        .and_then(|()| {
            let applied = unpack(layer, digest, scratch);
            // Unmounted whatever happened: a failed layer must not leave a mount behind.
            mount::unmount_all_under(scratch);
            applied
        });
    let _ = fs::remove_dir(scratch);
    result
}
// ANCHOR_END: apply

/// Streams the blob through two hashes: the stored bytes (checked against `digest`)
/// and the uncompressed tar (the diff ID).
fn unpack(layer: File, digest: &str, rootfs: &Path) -> Result<Applied, DiffError> {
    let read_err = |source| DiffError::Read {
        digest: digest.to_owned(),
        source,
    };
    let mut blob = HashingReader::new(io::BufReader::new(layer));
    let mut head = [0u8; 2];
    let n = blob.read(&mut head).map_err(read_err)?;
    let whole = io::Cursor::new(head[..n].to_vec()).chain(&mut blob);
    // Like containerd, trust the bytes over the media type: gzip starts 1f 8b.
    let tar: Box<dyn Read + '_> = if head[..n] == [0x1f, 0x8b] {
        Box::new(MultiGzDecoder::new(whole))
    } else {
        Box::new(whole)
    };
    let mut tar = HashingReader::new(tar);
    apply_tar(rootfs, &mut tar)?;
    // The tar reader stops at the end-of-archive marker; the padding after it is part
    // of the diff ID, and the gzip trailer part of the blob's digest.
    io::copy(&mut tar, &mut io::sink()).map_err(read_err)?;
    let (diff_id, size) = tar.finish();
    io::copy(&mut blob, &mut io::sink()).map_err(read_err)?;
    let (actual, _) = blob.finish();
    if actual.to_string() != digest {
        return Err(DiffError::Corrupt {
            digest: digest.to_owned(),
            actual: actual.to_string(),
        });
    }
    Ok(Applied {
        diff_id: diff_id.to_string(),
        size: size as i64,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use berth_oci::write::LayerBuilder;

    use super::*;

    fn blob(dir: &Path, bytes: &[u8]) -> (File, String) {
        let path = dir.join("blob");
        fs::write(&path, bytes).unwrap();
        (
            File::open(&path).unwrap(),
            berth_oci::digest::sha256(bytes).to_string(),
        )
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn bind(dir: &Path) -> Vec<Mount> {
        vec![Mount {
            kind: "bind".into(),
            source: dir.display().to_string(),
            options: vec!["rw".into(), "rbind".into()],
        }]
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_gzip_layer_applies_with_whiteouts_and_reports_its_diff_id() {
        if !is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("fs");
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/old"), "x").unwrap();
        let mut layer = LayerBuilder::new();
        layer.dir("etc", 0o755).unwrap();
        layer.file("etc/new", 0o644, b"hello").unwrap();
        layer.file("etc/.wh.old", 0o644, b"").unwrap();
        let tar = layer.finish().unwrap();
        let (file, digest) = blob(dir.path(), &gzip(&tar));
        let applied = apply(
            file,
            &digest,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            &bind(&upper),
            &dir.path().join("scratch"),
        )
        .unwrap();
        assert_eq!(applied.diff_id, berth_oci::digest::sha256(&tar).to_string());
        assert_eq!(applied.size, tar.len() as i64);
        assert_eq!(fs::read_to_string(upper.join("etc/new")).unwrap(), "hello");
        assert!(!upper.join("etc/old").exists(), "the whiteout deleted it");
        assert!(!dir.path().join("scratch").exists());
    }

    #[test]
    fn an_escaping_layer_fails_and_leaves_no_mount() {
        if !is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("fs");
        fs::create_dir_all(&upper).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        tar.append_link(&mut header, "evil", "../../../etc/passwd")
            .unwrap();
        let (file, digest) = blob(dir.path(), &tar.into_inner().unwrap());
        let scratch = dir.path().join("scratch");
        let err = apply(file, &digest, UNCOMPRESSED, &bind(&upper), &scratch).unwrap_err();
        assert!(err.to_string().contains("climbs out"), "{err}");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(&scratch.display().to_string()));
    }

    #[test]
    fn a_blob_that_is_not_its_digest_is_refused() {
        if !is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("fs");
        fs::create_dir_all(&upper).unwrap();
        let tar = LayerBuilder::new().finish().unwrap();
        let (file, _) = blob(dir.path(), &tar);
        let wrong = berth_oci::digest::sha256(b"other").to_string();
        let err = apply(
            file,
            &wrong,
            UNCOMPRESSED,
            &bind(&upper),
            &dir.path().join("s"),
        );
        assert!(matches!(err, Err(DiffError::Corrupt { .. })), "{err:?}");
    }

    #[test]
    fn other_media_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (file, digest) = blob(dir.path(), b"");
        let err = apply(file, &digest, "application/json", &[], dir.path());
        assert!(matches!(err, Err(DiffError::MediaType { .. })));
    }
}
