//! Applying image layers to a root filesystem: the last step of a pull, before a
//! container can start (berth-containerd's unpacker and the chapters' daemons use it).
//!
//! A layer is a tar of changes (files to add, and whiteouts for files of lower layers
//! to delete), applied on top of the layers below it. It comes from whoever built the
//! image, so every entry is treated as hostile: no name, symlink or hard link may make a
//! write land outside the root filesystem. The kernel resolves every path *inside* the
//! root (`openat2` with `RESOLVE_IN_ROOT`), the way the container will see it later.
//!
//! Read next: [`crate::spec`] describes the container that will run on this rootfs.

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat,
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::image::{Digest, MediaType};

use crate::digest::HashingReader;
use crate::layout::{Image, Layout, LayoutError};

/// The prefix that marks a whiteout: `.wh.NAME` deletes NAME of the lower layers.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The whiteout that makes its directory opaque: nothing of the lower layers shows through.
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} climbs out of the root filesystem; the image is corrupt or malicious")]
    Escapes { entry: String },
    #[error(
        "hard link {entry:?} points at {target:?}, which climbs out of the root filesystem; \
         the image is corrupt or malicious"
    )]
    LinkEscapes { entry: String, target: String },
    #[error("layer entry {entry:?} names the root directory itself but is a {kind}; the image is corrupt")]
    RootEntry { entry: String, kind: String },
    #[error("whiteout {entry:?} names no file that could be deleted; the image is corrupt")]
    BadWhiteout { entry: String },
    #[error(
        "layer entry {entry:?} has tar type {kind}, which berth cannot unpack; \
         rebuild the image with a standard tar"
    )]
    UnsupportedEntry { entry: String, kind: String },
    #[error("layer entry {entry:?} has a malformed header: {source}; the layer is corrupt")]
    BadHeader { entry: String, source: io::Error },
    #[error("cannot {action} for layer entry {entry:?} in {rootfs}: {source}")]
    Entry {
        rootfs: PathBuf,
        entry: String,
        action: &'static str,
        source: io::Error,
    },
    #[error("cannot open the root filesystem {path}: {source}")]
    Rootfs { path: PathBuf, source: io::Error },
    #[error(
        "the kernel refused openat2 ({errno}); berth needs Linux 5.6 or later, without a seccomp \
         filter blocking openat2, to unpack layers without letting them escape {path}"
    )]
    NoOpenat2 { path: PathBuf, errno: Errno },
    #[error(
        "layer media type {media_type} is zstd-compressed, which berth does not support yet; \
         use an image with gzip layers"
    )]
    Zstd { media_type: String },
    #[error("media type {media_type} is not a layer; the manifest is corrupt")]
    NotALayer { media_type: String },
    #[error("cannot read layer {layer}: {source}; the layer is corrupt or truncated")]
    Read { layer: String, source: io::Error },
    #[error(transparent)]
    Blob(#[from] LayoutError),
    #[error(
        "layer {layer} unpacks to {actual}, but the image config says its diff_id is {expected}; \
         the image is corrupt, pull or export it again"
    )]
    DiffIdMismatch {
        layer: String,
        expected: Digest,
        actual: Digest,
    },
}

/// What applying one layer did that the resulting files do not show.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// Entries created or updated (whiteouts not included).
    pub applied: usize,
    /// Whiteout entries processed (each may delete a whole tree, or nothing).
    pub whiteouts: usize,
    /// Device nodes and fifos the kernel would not let berth create (`EPERM`, as in a
    /// user namespace). Containers usually get their devices from the runtime instead.
    pub skipped_devices: Vec<PathBuf>,
    /// Whether file owners were set from the layer. Like `tar`, berth restores
    /// owners only when running as root; otherwise files belong to the caller.
    pub owners_restored: bool,
}

// ANCHOR: unpack_image
/// Applies every layer of `image`, bottom first, to the directory `rootfs`.
///
/// Each layer is checked twice while it streams through: the stored bytes against the
/// manifest's digest, the uncompressed tar against the config's `diff_id`. The checks
/// can only finish at the end of a layer, after its files were written, so on error the
/// rootfs must be thrown away (as containerd throws away an unfinished snapshot).
pub fn unpack_image(
    layout: &Layout,
    image: &Image,
    rootfs: &Path,
) -> Result<Vec<LayerReport>, UnpackError> {
    let mut reports = Vec::new();
    for (descriptor, diff_id) in image.layers().iter().zip(image.diff_ids()) {
        let digest = descriptor.digest();
        let mut blob = layout.open_blob(descriptor)?;
        let mut tar = HashingReader::new(decompress(
            descriptor.media_type(),
            &mut blob,
            digest.as_ref(),
        )?);
        reports.push(apply_tar_stream(rootfs, &mut tar, digest.as_ref())?);
        // The tar reader stops at the end-of-archive marker; the zero blocks after it
        // are part of the diff_id, and the gzip trailer part of the blob's digest.
        drain(&mut tar, digest.as_ref())?;
        let (actual, _) = tar.finish();
        drain(&mut blob, digest.as_ref())?;
        if actual != *diff_id {
            let (layer, expected) = (digest.to_string(), diff_id.clone());
            return Err(UnpackError::DiffIdMismatch {
                layer,
                expected,
                actual,
            });
        }
    }
    Ok(reports)
}
// ANCHOR_END: unpack_image

/// Applies one layer blob (compressed or not) to `rootfs`, without digest checks:
/// for layers that do not come from a layout. Prefer [`unpack_image`].
pub fn apply_layer(
    rootfs: &Path,
    media_type: &MediaType,
    layer: impl Read,
) -> Result<LayerReport, UnpackError> {
    let mut tar = decompress(media_type, layer, "<layer>")?;
    apply_tar_stream(rootfs, &mut tar, "<layer>")
}

/// Applies one uncompressed layer tar to `rootfs`.
pub fn apply_tar(rootfs: &Path, tar: impl Read) -> Result<LayerReport, UnpackError> {
    apply_tar_stream(rootfs, tar, "<layer>")
}

/// Opens the regular file `path` for reading as the container will see it: symlinks
/// and `..` are resolved inside `rootfs`, never on the host. For reading the image's
/// own files, such as `/etc/passwd`, which a hostile image may have made a symlink to
/// the host's, a fifo (opening it would hang) or a device node (opening it can act on
/// hardware): the file is looked at before it is opened.
pub fn open_in_root(rootfs: &Path, path: impl AsRef<Path>) -> io::Result<File> {
    let path = path.as_ref();
    let root_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = nix::fcntl::open(rootfs, root_flags, Mode::empty())?;
    // An O_PATH handle pins the file without opening it for I/O.
    let handle = resolve_in_root(&root, path, OFlag::O_PATH)?;
    let kind = SFlag::from_bits_truncate(fstat(&handle)?.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        let message = format!("{} in the image is not a regular file", path.display());
        return Err(io::Error::new(io::ErrorKind::InvalidData, message));
    }
    // Reopen that very file for reading, through its handle.
    File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}

// ANCHOR: decompress
/// The tar inside a layer blob. The media type is a hint that tools get wrong (gzip
/// layers labelled plain and the reverse are both seen in the wild), so like containerd
/// berth looks at the first bytes; the media type only has to say "layer".
fn decompress<'a>(
    media_type: &MediaType,
    layer: impl Read + 'a,
    name: &str,
) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let media = media_type.to_string();
    if media.ends_with("+zstd") || media.ends_with(".zstd") {
        return Err(UnpackError::Zstd { media_type: media });
    }
    let is_layer = media.starts_with("application/vnd.oci.image.layer.")
        || media.starts_with("application/vnd.docker.image.rootfs.");
    if !is_layer {
        return Err(UnpackError::NotALayer { media_type: media });
    }
    let mut layer = layer;
    let mut head = Vec::with_capacity(4);
    (&mut layer)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|err| read_error(name, err))?;
    if head.starts_with(ZSTD_MAGIC) {
        return Err(UnpackError::Zstd { media_type: media });
    }
    let whole = io::Cursor::new(head.clone()).chain(layer);
    if head.starts_with(GZIP_MAGIC) {
        // Multi: a gzip file may hold several members back to back; all are the layer.
        Ok(Box::new(MultiGzDecoder::new(whole)))
    } else {
        Ok(Box::new(whole))
    }
}
// ANCHOR_END: decompress

fn drain(reader: &mut impl Read, layer: &str) -> Result<(), UnpackError> {
    io::copy(reader, &mut io::sink())
        .map(drop)
        .map_err(|err| read_error(layer, err))
}

/// A read error, or the digest mismatch a [`crate::layout::BlobReader`] reported.
fn read_error(layer: &str, err: io::Error) -> UnpackError {
    match LayoutError::recover(err) {
        Ok(mismatch) => UnpackError::Blob(mismatch),
        Err(source) => UnpackError::Read {
            layer: layer.to_owned(),
            source,
        },
    }
}

// ANCHOR: apply_tar
fn apply_tar_stream(
    rootfs: &Path,
    tar: impl Read,
    layer: &str,
) -> Result<LayerReport, UnpackError> {
    let mut unpacker = Unpacker::new(rootfs)?;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(|err| read_error(layer, err))? {
        let mut entry = entry.map_err(|err| read_error(layer, err))?;
        unpacker.apply(&mut entry, layer)?;
    }
    unpacker.finish()
}
// ANCHOR_END: apply_tar

/// `raw` as a path below the root: a leading `/` or `./` is taken relative to the root
/// (as tar and docker do), `.` and empty components are dropped and `..` is folded.
/// `None` when a `..` would climb above the root.
fn clean(raw: &[u8]) -> Option<PathBuf> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.into_iter().map(OsStr::from_bytes).collect())
}

/// What a whiteout entry asks for.
enum Whiteout {
    /// Delete this path of the lower layers.
    Remove(PathBuf),
    /// Hide everything the lower layers have in this directory.
    Opaque(PathBuf),
}

/// `Some` if `path` (clean) is a whiteout; an error if it is one that names nothing.
fn whiteout(path: &Path, entry: &str) -> Result<Option<Whiteout>, UnpackError> {
    let Some(name) = path.file_name() else {
        return Ok(None);
    };
    let parent = path.parent().unwrap_or(Path::new("")).to_owned();
    if name == OPAQUE_WHITEOUT {
        return Ok(Some(Whiteout::Opaque(parent)));
    }
    match name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        None => Ok(None),
        // `.wh.`, `.wh..` and `.wh...` would delete "", "." or "..": the directory itself
        // or its parent, which is no whiteout the spec allows.
        Some(b"" | b"." | b"..") => Err(UnpackError::BadWhiteout {
            entry: entry.to_owned(),
        }),
        Some(deleted) => Ok(Some(Whiteout::Remove(
            parent.join(OsStr::from_bytes(deleted)),
        ))),
    }
}

/// Owner, mode, times and extended attributes of one entry, read from its header.
struct Metadata {
    uid: u32,
    gid: u32,
    mode: Mode,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Metadata {
    fn of(entry: &mut tar::Entry<impl Read>) -> io::Result<Metadata> {
        let xattrs = xattrs(entry)?;
        let header = entry.header();
        let id = |value: u64| {
            u32::try_from(value)
                .map_err(|_| io::Error::other(format!("id {value} is over 32 bits")))
        };
        let mtime =
            i64::try_from(header.mtime()?).map_err(|_| io::Error::other("mtime out of range"))?;
        Ok(Metadata {
            uid: id(header.uid()?)?,
            gid: id(header.gid()?)?,
            // All twelve permission bits: setuid, setgid and sticky included.
            mode: Mode::from_bits_truncate(header.mode()? & 0o7777),
            mtime: TimeSpec::new(mtime, 0),
            xattrs,
        })
    }
}

/// PAX `SCHILY.xattr.NAME=value` records: the extended attributes GNU tar and docker
/// write, for instance `security.capability` for `ping`'s file capabilities.
fn xattrs(entry: &mut tar::Entry<impl Read>) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(Vec::new());
    };
    let mut xattrs = Vec::new();
    for extension in extensions {
        let extension = extension?;
        if let Some(name) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            let name = CString::new(name).map_err(io::Error::other)?;
            xattrs.push((name, extension.value_bytes().to_vec()));
        }
    }
    Ok(xattrs)
}

/// The state of applying one layer.
struct Unpacker {
    rootfs: PathBuf,
    /// The rootfs directory: every path is resolved from here, with this as `/`.
    root: OwnedFd,
    restore_owners: bool,
    /// Paths this layer wrote, as named in the tar: whiteouts spare them, since a
    /// whiteout deletes only what lower layers put there, whatever the entry order.
    /// (An entry written through a symlinked directory is known by the name it was
    /// written under; image builders never whiteout such a path under another name.)
    written: HashSet<PathBuf>,
    /// Every directory above a written path (those may come from lower layers).
    above_written: HashSet<PathBuf>,
    /// Directories whose mtime is set at the end: adding children changes it.
    dir_times: Vec<(PathBuf, FileStat, TimeSpec)>,
    report: LayerReport,
}

/// Where an entry goes: its parent directory (already resolved in the root) and its
/// last path component, with its name as the archive spells it, for error messages.
struct Place<'a> {
    dir: &'a OwnedFd,
    name: &'a OsStr,
    entry: &'a str,
    rootfs: &'a Path,
}

impl Place<'_> {
    /// Turns a failed system call into an error naming the entry and the attempt.
    fn fail<E: Into<io::Error>>(&self, action: &'static str) -> impl FnOnce(E) -> UnpackError {
        failure(self.rootfs, self.entry, action)
    }
}

fn failure<E: Into<io::Error>>(
    rootfs: &Path,
    entry: &str,
    action: &'static str,
) -> impl FnOnce(E) -> UnpackError {
    let (rootfs, entry) = (rootfs.to_owned(), entry.to_owned());
    move |err| UnpackError::Entry {
        rootfs,
        entry,
        action,
        source: err.into(),
    }
}

impl Unpacker {
    fn new(rootfs: &Path) -> Result<Unpacker, UnpackError> {
        let rootfs_error = |errno: Errno| UnpackError::Rootfs {
            path: rootfs.to_owned(),
            source: errno.into(),
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root = nix::fcntl::open(rootfs, flags, Mode::empty()).map_err(rootfs_error)?;
        // Find out now, not halfway through a layer, whether the kernel has openat2.
        match resolve_in_root(&root, Path::new("."), OFlag::O_PATH) {
            Err(errno @ (Errno::ENOSYS | Errno::EPERM)) => {
                return Err(UnpackError::NoOpenat2 {
                    path: rootfs.to_owned(),
                    errno,
                })
            }
            Err(errno) => return Err(rootfs_error(errno)),
            Ok(_) => {}
        }
        let is_root = Uid::effective().is_root();
        Ok(Unpacker {
            rootfs: rootfs.to_owned(),
            root,
            restore_owners: is_root,
            written: HashSet::new(),
            above_written: HashSet::new(),
            dir_times: Vec::new(),
            report: LayerReport {
                owners_restored: is_root,
                ..LayerReport::default()
            },
        })
    }

    fn fail<E: Into<io::Error>>(
        &self,
        entry: &str,
        action: &'static str,
    ) -> impl FnOnce(E) -> UnpackError {
        failure(&self.rootfs, entry, action)
    }

    // ANCHOR: apply_entry
    fn apply(&mut self, entry: &mut tar::Entry<impl Read>, layer: &str) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let path = clean(&raw).ok_or_else(|| UnpackError::Escapes {
            entry: name.clone(),
        })?;
        match whiteout(&path, &name)? {
            Some(Whiteout::Remove(deleted)) => return self.remove_lower(&deleted, &name),
            Some(Whiteout::Opaque(dir)) => return self.make_opaque(&dir, &name),
            None => {}
        }
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(()); // archive-wide PAX defaults, not a file
        }
        let Some(file_name) = path.file_name() else {
            // The root directory belongs to whoever prepared the rootfs (a snapshotter),
            // so a `./` entry changes nothing; anything else there is nonsense.
            return match kind {
                tar::EntryType::Directory => Ok(()),
                _ => Err(UnpackError::RootEntry {
                    entry: name,
                    kind: format!("{kind:?}"),
                }),
            };
        };
        let metadata = Metadata::of(entry).map_err(|source| UnpackError::BadHeader {
            entry: name.clone(),
            source,
        })?;
        let parent = self.parent_dir(path.parent().unwrap_or(Path::new("")), &name)?;
        let place = Place {
            dir: &parent,
            name: file_name,
            entry: &name,
            rootfs: &self.rootfs,
        };
        use tar::EntryType::*;
        match kind {
            Directory => {
                let created = directory(&place, &metadata, self.restore_owners)?;
                self.dir_times.push((path.clone(), created, metadata.mtime));
            }
            Regular | Continuous | GNUSparse => {
                file(&place, entry, &metadata, self.restore_owners, layer)?
            }
            Symlink => symlink(&place, entry, &metadata, self.restore_owners)?,
            Link => hard_link(&place, entry, &self.root)?,
            Char | Block | Fifo => {
                if !device(&place, entry.header(), &metadata, self.restore_owners)? {
                    self.report.skipped_devices.push(path);
                    return Ok(());
                }
            }
            other => {
                let kind = format!("{other:?}");
                return Err(UnpackError::UnsupportedEntry { entry: name, kind });
            }
        }
        self.mark_written(path);
        self.report.applied += 1;
        Ok(())
    }
    // ANCHOR_END: apply_entry

    fn mark_written(&mut self, path: PathBuf) {
        self.above_written
            .extend(path.ancestors().skip(1).map(Path::to_owned));
        self.written.insert(path);
    }

    // ANCHOR: parent_dir
    /// Opens directory `dir` (clean, root-relative) as the container will see it,
    /// creating missing directories on the way as tar does (mode 0755).
    fn parent_dir(&self, dir: &Path, entry: &str) -> Result<OwnedFd, UnpackError> {
        let open =
            |path: &Path| resolve_in_root(&self.root, path, OFlag::O_PATH | OFlag::O_DIRECTORY);
        match open(dir) {
            Err(Errno::ENOENT) => {}
            found => return found.map_err(self.fail(entry, "open the parent directory")),
        }
        // Something is missing: walk down one component at a time. Each step is
        // resolved from the root again, so a symlink met on the way is still
        // interpreted inside the root, and a directory is only ever created in the
        // directory that a full in-root resolution of the prefix leads to.
        let mut current = self
            .root
            .try_clone()
            .map_err(self.fail(entry, "open the root"))?;
        let mut prefix = PathBuf::new();
        for component in dir.iter() {
            prefix.push(component);
            current = match open(&prefix) {
                Err(Errno::ENOENT) => {
                    // EEXIST here means a dangling symlink stands where the directory
                    // should be: tar and docker refuse that too.
                    mkdirat(&current, component, Mode::from_bits_truncate(0o755))
                        .and_then(|()| {
                            let mode = Mode::from_bits_truncate(0o755); // whatever the umask
                            fchmodat(&current, component, mode, FchmodatFlags::NoFollowSymlink)
                        })
                        .map_err(self.fail(entry, "create a parent directory"))?;
                    open(&prefix)
                }
                found => found,
            }
            .map_err(self.fail(entry, "open a parent directory"))?;
        }
        Ok(current)
    }
    // ANCHOR_END: parent_dir

    // ANCHOR: whiteouts
    /// `.wh.NAME`: removes what lower layers have at `path`, sparing this layer's entries.
    fn remove_lower(&mut self, path: &Path, entry: &str) -> Result<(), UnpackError> {
        self.report.whiteouts += 1;
        let name = path.file_name().expect("a whiteout names a file");
        let dir = path.parent().unwrap_or(Path::new(""));
        let parent = match resolve_in_root(&self.root, dir, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()), // nothing below to hide
            found => found.map_err(self.fail(entry, "open the whiteout's directory"))?,
        };
        self.hide_lower(&parent, name, path)
            .map_err(self.fail(entry, "apply the whiteout"))
    }

    /// `.wh..wh..opq`: empties `dir` of what lower layers put in it.
    fn make_opaque(&mut self, dir: &Path, entry: &str) -> Result<(), UnpackError> {
        self.report.whiteouts += 1;
        let dir_fd = match resolve_in_root(&self.root, dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            found => found.map_err(self.fail(entry, "open the opaque directory"))?,
        };
        self.hide_lower_children(dir_fd, dir)
            .map_err(self.fail(entry, "apply the opaque whiteout"))
    }

    /// Deletes `parent/name` (at root-relative `path`) unless this layer wrote it or
    /// something below it; a directory this layer uses is kept but emptied of the rest.
    fn hide_lower(&self, parent: &impl AsFd, name: &OsStr, path: &Path) -> nix::Result<()> {
        if !self.written.contains(path) && !self.above_written.contains(path) {
            return remove_all(parent, name);
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(parent, name, flags, Mode::empty()) {
            Ok(dir) => self.hide_lower_children(dir, path),
            // A file or symlink of this layer: kept as it is.
            Err(Errno::ENOTDIR | Errno::ELOOP | Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno),
        }
    }

    fn hide_lower_children(&self, dir: OwnedFd, path: &Path) -> nix::Result<()> {
        let (dir, names) = list(dir)?;
        for name in names {
            self.hide_lower(&dir, &name, &path.join(&name))?;
        }
        Ok(())
    }
    // ANCHOR_END: whiteouts

    /// Sets the directories' mtimes, now that nothing more is added to them.
    fn finish(self) -> Result<LayerReport, UnpackError> {
        for (path, created, mtime) in &self.dir_times {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
            // A later entry may have removed or replaced the directory, or changed a
            // symlink on the way to it: only the very directory created gets the time.
            let Ok(dir) = resolve_in_root(&self.root, path, flags) else {
                continue;
            };
            if fstat(&dir).is_ok_and(|now| same_file(&now, created)) {
                let entry = path.to_string_lossy();
                futimens(&dir, mtime, mtime)
                    .map_err(self.fail(&entry, "set the directory's mtime"))?;
            }
        }
        Ok(self.report)
    }
}

// One function per kind of entry. Each makes room at its place (removing what is
// there, never following a symlink), creates the entry, then sets its metadata.

/// Creates (or keeps) a directory; returns its stat, to find it again at the end.
fn directory(
    place: &Place,
    metadata: &Metadata,
    restore_owners: bool,
) -> Result<FileStat, UnpackError> {
    // An existing directory is kept, with its contents: layers add to directories.
    clear(place.dir, place.name, true).map_err(place.fail("replace the existing file"))?;
    match mkdirat(place.dir, place.name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(place.fail("create the directory")(errno)),
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = openat(place.dir, place.name, flags, Mode::empty())
        .map_err(place.fail("open the directory"))?;
    set_metadata(&dir, metadata, restore_owners)
        .map_err(place.fail("set the directory's metadata"))?;
    fstat(&dir).map_err(place.fail("stat the directory"))
}

fn file(
    place: &Place,
    data: &mut impl Read,
    metadata: &Metadata,
    restore_owners: bool,
    layer: &str,
) -> Result<(), UnpackError> {
    clear(place.dir, place.name, false).map_err(place.fail("replace the existing file"))?;
    // O_EXCL|O_NOFOLLOW: always a new file, never whatever (or wherever) a symlink
    // left in its place would point at.
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        place.dir,
        place.name,
        flags,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(place.fail("create the file"))?;
    let mut file = File::from(fd);
    // A loop rather than io::copy, to tell a corrupt layer (read) from a full disk (write).
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = data
            .read(&mut buffer)
            .map_err(|err| read_error(layer, err))?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n])
            .map_err(place.fail("write the file"))?;
    }
    set_metadata(&file, metadata, restore_owners).map_err(place.fail("set the file's metadata"))?;
    futimens(&file, &metadata.mtime, &metadata.mtime).map_err(place.fail("set the file's mtime"))
}

fn symlink(
    place: &Place,
    tar_entry: &tar::Entry<impl Read>,
    metadata: &Metadata,
    restore_owners: bool,
) -> Result<(), UnpackError> {
    // The target is just data, stored as is: it may point anywhere, because every
    // later resolution (here and in the container) happens inside the root.
    let target = tar_entry.link_name_bytes().unwrap_or_default().into_owned();
    clear(place.dir, place.name, false).map_err(place.fail("replace the existing file"))?;
    symlinkat(OsStr::from_bytes(&target), place.dir, place.name)
        .map_err(place.fail("create the symlink"))?;
    // (A symlink has no mode of its own on Linux.)
    set_metadata_at(place, metadata, restore_owners, None)
}

// ANCHOR: hard_link
fn hard_link(
    place: &Place,
    tar_entry: &tar::Entry<impl Read>,
    root: &OwnedFd,
) -> Result<(), UnpackError> {
    let raw = tar_entry.link_name_bytes().unwrap_or_default().into_owned();
    let escapes = || UnpackError::LinkEscapes {
        entry: place.entry.to_owned(),
        target: String::from_utf8_lossy(&raw).into_owned(),
    };
    let target = clean(&raw).ok_or_else(escapes)?;
    let Some(target_name) = target.file_name() else {
        return Err(place.fail("hard link the root directory")(Errno::EPERM));
    };
    // The target is resolved in the root like any path, but never created, and its
    // last component is not followed: a link to a symlink links the symlink.
    let target_dir = target.parent().unwrap_or(Path::new(""));
    let target_parent = resolve_in_root(root, target_dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(place.fail("find the hard link's target"))?;
    let target_stat = fstatat(&target_parent, target_name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(place.fail("find the hard link's target"))?;
    if is_dir(&target_stat) {
        return Err(place.fail("hard link a directory")(Errno::EPERM));
    }
    // Linking a file to itself (possibly through a symlinked parent) must not delete it.
    let existing = fstatat(place.dir, place.name, AtFlags::AT_SYMLINK_NOFOLLOW);
    if existing.is_ok_and(|existing| same_file(&existing, &target_stat)) {
        return Ok(());
    }
    clear(place.dir, place.name, false).map_err(place.fail("replace the existing file"))?;
    linkat(
        &target_parent,
        target_name,
        place.dir,
        place.name,
        AtFlags::empty(),
    )
    .map_err(place.fail("create the hard link"))
}
// ANCHOR_END: hard_link

/// Creates a device node or fifo; `false` if the kernel said no (`EPERM`).
fn device(
    place: &Place,
    header: &tar::Header,
    metadata: &Metadata,
    restore_owners: bool,
) -> Result<bool, UnpackError> {
    let (kind, dev) = match header.entry_type() {
        tar::EntryType::Char => (SFlag::S_IFCHR, device_number(header, place.entry)?),
        tar::EntryType::Block => (SFlag::S_IFBLK, device_number(header, place.entry)?),
        // A fifo has no device number, and some writers leave the fields blank.
        _ => (SFlag::S_IFIFO, 0),
    };
    clear(place.dir, place.name, false).map_err(place.fail("replace the existing file"))?;
    match mknodat(
        place.dir,
        place.name,
        kind,
        Mode::from_bits_truncate(0o600),
        dev,
    ) {
        Err(Errno::EPERM) => return Ok(false),
        created => created.map_err(place.fail("create the device node"))?,
    }
    // Path-based calls, because opening a device or fifo to get a descriptor could
    // block or act on hardware.
    set_metadata_at(place, metadata, restore_owners, Some(metadata.mode))?;
    Ok(true)
}

// ANCHOR: set_metadata
/// Owner, then mode, then extended attributes, in that order: changing the owner
/// clears the setuid and setgid bits and drops `security.capability`.
///
/// A real engine would also set extended attributes on symlinks and device nodes;
/// berth doesn't because that takes path-based calls (`lsetxattr`), and images
/// carry them on regular files.
fn set_metadata(fd: impl AsFd, metadata: &Metadata, restore_owners: bool) -> nix::Result<()> {
    if restore_owners {
        fchown(
            &fd,
            Some(Uid::from_raw(metadata.uid)),
            Some(Gid::from_raw(metadata.gid)),
        )?;
    }
    fchmod(&fd, metadata.mode)?;
    for (name, value) in &metadata.xattrs {
        // SAFETY: `name` is NUL-terminated and `value` is a live buffer of the given length.
        let result = unsafe {
            libc::fsetxattr(
                fd.as_fd().as_raw_fd(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        Errno::result(result)?;
    }
    Ok(())
}
// ANCHOR_END: set_metadata

/// The same for entries that cannot be opened (symlinks, device nodes): by name,
/// relative to the parent, never following the last component.
fn set_metadata_at(
    place: &Place,
    metadata: &Metadata,
    restore_owners: bool,
    mode: Option<Mode>,
) -> Result<(), UnpackError> {
    let (dir, name) = (place.dir, place.name);
    if restore_owners {
        let (uid, gid) = (
            Some(Uid::from_raw(metadata.uid)),
            Some(Gid::from_raw(metadata.gid)),
        );
        fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(place.fail("set the owner"))?;
    }
    if let Some(mode) = mode {
        fchmodat(dir, name, mode, FchmodatFlags::NoFollowSymlink)
            .map_err(place.fail("set the mode"))?;
    }
    let mtime = &metadata.mtime;
    utimensat(dir, name, mtime, mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(place.fail("set the mtime"))
}

// ANCHOR: resolve_in_root
/// `openat2` with `RESOLVE_IN_ROOT`: `path` is resolved as if `root` were `/`.
/// Absolute symlinks start again at `root`, `..` stops at it, and magic links
/// (`/proc/self/root`) are refused, so nothing resolves to a host path.
pub fn resolve_in_root(root: &OwnedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a rename elsewhere raced with the lookup, and the kernel asks to retry.
    let mut attempts = 0;
    loop {
        match openat2(root, path, how) {
            Err(Errno::EAGAIN) if attempts < 16 => attempts += 1,
            result => return result,
        }
    }
}
// ANCHOR_END: resolve_in_root

fn device_number(header: &tar::Header, entry: &str) -> Result<u64, UnpackError> {
    let bad_header = |source| UnpackError::BadHeader {
        entry: entry.to_owned(),
        source,
    };
    let major = header.device_major().map_err(bad_header)?.unwrap_or(0);
    let minor = header.device_minor().map_err(bad_header)?.unwrap_or(0);
    Ok(makedev(major.into(), minor.into()))
}

fn same_file(a: &FileStat, b: &FileStat) -> bool {
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// Makes room for a new entry at `parent/name`: removes what is there, except an
/// existing directory when `keep_dir` is set. Never follows a symlink.
fn clear(parent: &OwnedFd, name: &OsStr, keep_dir: bool) -> nix::Result<()> {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Ok(stat) if is_dir(&stat) && keep_dir => Ok(()),
        Ok(_) => remove_all(parent, name),
        Err(errno) => Err(errno),
    }
}

/// `rm -rf parent/name`, without following symlinks.
fn remove_all(parent: &impl AsFd, name: &OsStr) -> nix::Result<()> {
    let stat = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => return Ok(()),
        found => found?,
    };
    if !is_dir(&stat) {
        return unlinkat(parent, name, UnlinkatFlags::NoRemoveDir);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let (dir, children) = list(openat(parent, name, flags, Mode::empty())?)?;
    for child in children {
        remove_all(&dir, &child)?;
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

/// The names in a directory (without `.` and `..`), and the directory itself, to act
/// on them relative to it.
fn list(dir: OwnedFd) -> nix::Result<(Dir, Vec<OsString>)> {
    let mut dir = Dir::from_fd(dir)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let name = OsStr::from_bytes(entry?.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    Ok((dir, names))
}

#[cfg(test)]
mod tests;
