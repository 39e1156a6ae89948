//! The differ: `Apply` unpacks one layer blob into the mounts of an active snapshot;
//! `Diff` ([`compare`]) makes a layer from two snapshots' mounts.
//!
//! The mounts are performed on a scratch directory, so the layer is applied to what
//! the container will see: for an overlay, deleting a lower layer's file (an OCI
//! whiteout) makes overlayfs itself record the deletion in the upper directory, in its
//! own whiteout format. The unpacking is berth-oci's, which resolves every path inside
//! the root with `openat2`, so a hostile layer cannot write outside it. `Diff` works
//! the other way round: it mounts both snapshots read-only and compares the two trees
//! as a container sees them ([`crate::diff_compare`]), so overlayfs's own whiteouts and
//! opaque directories never need decoding.
//!
//! Both answer with the layer's *diff ID*: the digest of the uncompressed tar, which
//! the image config lists and the snapshot chain is named by.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth_oci::digest::{HashingReader, HashingWriter};
use berth_oci::unpack::{apply_tar, UnpackError};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::diff_compare::{self, CompareError};
use crate::mount::{self, Mount, MountError};

/// The media type of what Apply reports: an uncompressed OCI layer.
pub const UNCOMPRESSED: &str = "application/vnd.oci.image.layer.v1.tar";

/// The label recording a layer's uncompressed digest (its diff ID) on its blob.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

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
    #[error(
        "Diff takes the snapshotter's mounts: none or one for each side, got {count} for {side}"
    )]
    Mounts { side: &'static str, count: usize },
    #[error(transparent)]
    Compare(#[from] CompareError),
    #[error("cannot write the new layer: {source}")]
    Write { source: io::Error },
}

impl From<DiffError> for tonic::Status {
    fn from(err: DiffError) -> Self {
        use tonic::Status;
        match err {
            DiffError::MediaType { .. } | DiffError::Mounts { .. } => {
                Status::invalid_argument(err.to_string())
            }
            DiffError::Mount(e) => e.into(),
            DiffError::Unpack(UnpackError::NoOpenat2 { .. })
            | DiffError::Scratch { .. }
            | DiffError::Read { .. }
            | DiffError::Compare(_)
            | DiffError::Write { .. } => Status::internal(err.to_string()),
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

// ANCHOR: compare
/// Writes into `out` the layer that turns the tree of the `left` mounts into that of
/// the `right` ones (gzip-compressed if `compress`), and returns its diff ID. Both
/// are mounted read-only below `scratch`, which must not exist yet; no mounts stand
/// for an empty tree (the first layer of an image has no parent).
pub fn compare(
    left: &[Mount],
    right: &[Mount],
    compress: bool,
    scratch: &Path,
    out: &mut impl Write,
) -> Result<String, DiffError> {
    let (lower, upper) = (scratch.join("lower"), scratch.join("upper"));
    let result = mount_read_only(left, "left", &lower)
        .and_then(|()| mount_read_only(right, "right", &upper))
        .and_then(|()| write_diff(&lower, &upper, compress, out));
    // Unmounted whatever happened, as after Apply.
    mount::unmount_all_under(scratch);
    for dir in [&lower, &upper, scratch] {
        let _ = fs::remove_dir(dir);
    }
    result
}
// ANCHOR_END: compare

fn mount_read_only(mounts: &[Mount], side: &'static str, target: &Path) -> Result<(), DiffError> {
    fs::create_dir_all(target).map_err(|source| DiffError::Scratch {
        path: target.to_owned(),
        source,
    })?;
    match mounts {
        [] => Ok(()),
        [m] => Ok(mount::mount_on(&read_only(m), target)?),
        _ => Err(DiffError::Mounts {
            side,
            count: mounts.len(),
        }),
    }
}

/// `m`, mounted read-only. An overlay's upper directory becomes its top lower one
/// (as containerd 1.7 does): a read-only overlay needs no work directory, and the
/// upper directory may already be in use by the running container's own overlay.
fn read_only(m: &Mount) -> Mount {
    let upper = m.options.iter().find_map(|o| o.strip_prefix("upperdir="));
    let mut options: Vec<String> = match upper {
        Some(upper) if m.kind == "overlay" => m
            .options
            .iter()
            .filter(|o| !o.starts_with("upperdir=") && !o.starts_with("workdir="))
            .map(|o| match o.strip_prefix("lowerdir=") {
                Some(lower) => format!("lowerdir={upper}:{lower}"),
                None => o.clone(),
            })
            .collect(),
        _ => m.options.clone(),
    };
    // Last, so it wins over an `rw` earlier in the list.
    options.push("ro".into());
    Mount {
        options,
        ..m.clone()
    }
}

/// The tar of the changes, hashed on its way (the diff ID) and compressed after.
fn write_diff(
    lower: &Path,
    upper: &Path,
    compress: bool,
    out: &mut impl Write,
) -> Result<String, DiffError> {
    let changes = diff_compare::changes(lower, upper)?;
    let write_err = |source| DiffError::Write { source };
    let diff_id = if compress {
        // flate2's default header has no name and a zero time: the same tree always
        // gives the same bytes.
        let mut tar = HashingWriter::new(GzEncoder::new(&mut *out, flate2::Compression::default()));
        diff_compare::write_layer(upper, &changes, &mut tar)?;
        let (gz, diff_id, _) = tar.finish();
        gz.finish().map_err(write_err)?;
        diff_id
    } else {
        let mut tar = HashingWriter::new(&mut *out);
        diff_compare::write_layer(upper, &changes, &mut tar)?;
        tar.finish().1
    };
    out.flush().map_err(write_err)?;
    Ok(diff_id.to_string())
}

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
    fn an_overlay_is_compared_with_its_upper_directory_as_a_lower_one() {
        let overlay = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                "workdir=/s/2/work".into(),
                "upperdir=/s/2/fs".into(),
                "lowerdir=/s/1/fs".into(),
            ],
        };
        assert_eq!(
            read_only(&overlay).options,
            ["index=off", "lowerdir=/s/2/fs:/s/1/fs", "ro"]
        );
        let view = &bind(Path::new("/s/1/fs"))[0];
        assert_eq!(read_only(view).options, ["rw", "rbind", "ro"]);
    }

    #[test]
    fn other_media_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (file, digest) = blob(dir.path(), b"");
        let err = apply(file, &digest, "application/json", &[], dir.path());
        assert!(matches!(err, Err(DiffError::MediaType { .. })));
    }
}
