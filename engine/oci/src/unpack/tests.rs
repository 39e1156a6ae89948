//! Tests of the layer unpacker: hostile names and links, metadata, whiteouts, digests,
//! and a property test that checks every random layer against an in-memory model.
//!
//! Every test unpacks into `<tmp>/jail/root` beside a sentinel `<tmp>/jail/outside`,
//! and malicious entries aim at the sentinel. These tests run as root (owners and
//! device nodes are part of what they check).

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use oci_spec::image::{Descriptor, MediaType};
use proptest::prelude::*;

use super::*;
use crate::digest::sha256;
use crate::layout::fixture::LayoutBuilder;

// ---------------------------------------------------------------------------------
// Building archives byte by byte. `tar::Builder`'s path setters refuse `..` and
// absolute names (rightly), so the names go straight into the header fields here.
// ---------------------------------------------------------------------------------

struct Tar(tar::Builder<Vec<u8>>);

fn header(kind: tar::EntryType, name: &[u8], mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_000_000);
    let field = &mut header.as_old_mut().name;
    assert!(
        name.len() < field.len(),
        "use Tar::pax for names over 99 bytes"
    );
    field[..name.len()].copy_from_slice(name);
    header
}

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn append(&mut self, mut header: tar::Header, data: &[u8]) -> &mut Self {
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.append(
            header(tar::EntryType::Directory, name.as_bytes(), mode, 0),
            b"",
        )
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.append(
            header(
                tar::EntryType::Regular,
                name.as_bytes(),
                0o644,
                data.len() as u64,
            ),
            data,
        )
    }

    fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut header = header(kind, name.as_bytes(), 0o777, 0);
        header.set_link_name_literal(target.as_bytes()).unwrap();
        self.append(header, b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    fn hard_link(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, name, target)
    }

    /// A PAX extended header: applies to the entry appended next.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // Each record is "<length> <key>=<value>\n", the length counting itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend(format!("{len} {key}=").as_bytes());
            data.extend(*value);
            data.push(b'\n');
        }
        self.append(
            header(tar::EntryType::XHeader, b"pax", 0o644, data.len() as u64),
            &data,
        )
    }

    fn bytes(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

/// `<tmp>/jail/root` to unpack into, `<tmp>/jail/outside/secret` as the sentinel.
struct Jail {
    tmp: tempfile::TempDir,
}

impl Jail {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("jail/root")).unwrap();
        fs::create_dir_all(tmp.path().join("jail/outside")).unwrap();
        fs::write(tmp.path().join("jail/outside/secret"), b"sentinel").unwrap();
        Jail { tmp }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("jail/root")
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("jail/outside")
    }

    fn apply(&self, tar: &[u8]) -> Result<LayerReport, UnpackError> {
        apply_tar(&self.root(), tar)
    }

    /// Everything under `<tmp>` but the root, with contents: what must never change.
    fn outside_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut snapshot = BTreeMap::new();
        snapshot_into(self.tmp.path(), &self.root(), &mut snapshot);
        snapshot
    }
}

fn snapshot_into(dir: &Path, skip: &Path, into: &mut BTreeMap<PathBuf, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let summary = format!(
            "{:o} {} {} {:?}",
            meta.mode(),
            meta.uid(),
            meta.len(),
            meta.modified().unwrap()
        );
        let content = if meta.is_file() {
            String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned()
        } else {
            String::new()
        };
        into.insert(path.clone(), format!("{summary} {content}"));
        if meta.is_dir() {
            snapshot_into(&path, skip, into);
        }
    }
}

// ---------------------------------------------------------------------------------
// Names and links that try to leave the root.
// ---------------------------------------------------------------------------------

#[test]
fn names_that_climb_out_are_rejected_with_the_entry_named() {
    let jail = Jail::new();
    for name in ["../etc/passwd", "a/../../x", "./../outside/secret", "/../x"] {
        let before = jail.outside_snapshot();
        let err = jail
            .apply(&Tar::new().file(name, b"pwned").bytes())
            .unwrap_err();
        assert!(
            matches!(err, UnpackError::Escapes { ref entry } if entry == name),
            "{name}: {err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "layer entry {name:?} climbs out of the root filesystem; \
                 the image is corrupt or malicious"
            )
        );
        assert_eq!(jail.outside_snapshot(), before);
    }
}

#[test]
fn a_long_pax_name_that_climbs_out_is_rejected_too() {
    let jail = Jail::new();
    let name = format!("{}/../../../../outside/pwned", "d".repeat(150));
    let tar = Tar::new()
        .pax(&[("path", name.as_bytes())])
        .file("short-name-overridden", b"x")
        .bytes();
    let err = jail.apply(&tar).unwrap_err();
    assert!(
        matches!(err, UnpackError::Escapes { ref entry } if *entry == name),
        "{err}"
    );
}

#[test]
fn leading_slash_and_dot_are_taken_relative_to_the_root() {
    let jail = Jail::new();
    let tar = Tar::new()
        .file("/etc/hosts", b"hosts")
        .file("./etc/motd", b"motd")
        .file("etc//./x/../y", b"y")
        .bytes();
    jail.apply(&tar).unwrap();
    let root = jail.root();
    assert_eq!(fs::read(root.join("etc/hosts")).unwrap(), b"hosts");
    assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"motd");
    assert_eq!(fs::read(root.join("etc/y")).unwrap(), b"y");
}

#[test]
fn writes_through_symlinks_stay_inside_the_root() {
    let jail = Jail::new();
    let before = jail.outside_snapshot();
    let outside = jail.outside();
    let absolute = outside.to_str().unwrap();
    let tar = Tar::new()
        // The same paths, inside the root: where the symlinks lead in the container.
        .dir(absolute, 0o755)
        .dir("outside", 0o755)
        .symlink("abs", absolute)
        .symlink("rel", "../outside")
        .symlink("up", "../../../../../../..")
        .file("abs/secret", b"pwned")
        .file("rel/secret", b"pwned")
        .file("up/rel-secret", b"pwned")
        .bytes();
    jail.apply(&tar).unwrap();

    assert_eq!(
        jail.outside_snapshot(),
        before,
        "nothing outside the root may change"
    );
    let root = jail.root();
    assert_eq!(
        fs::read(root.join(absolute.trim_start_matches('/')).join("secret")).unwrap(),
        b"pwned"
    );
    assert_eq!(fs::read(root.join("outside/secret")).unwrap(), b"pwned");
    assert_eq!(fs::read(root.join("rel-secret")).unwrap(), b"pwned");
    // The symlinks themselves are kept exactly as written.
    assert_eq!(fs::read_link(root.join("abs")).unwrap(), outside);
}

#[test]
fn a_symlink_leading_nowhere_in_the_root_is_not_written_through() {
    // On the host, `dangling` leads to the sentinel directory; in the root it leads
    // nowhere, and berth, like tar and docker, does not create a symlink's target.
    let jail = Jail::new();
    let before = jail.outside_snapshot();
    let tar = Tar::new()
        .symlink("dangling", jail.outside().to_str().unwrap())
        .file("dangling/pwned", b"x")
        .bytes();
    let err = jail.apply(&tar).unwrap_err();
    assert!(
        matches!(err, UnpackError::Entry { ref entry, .. } if entry == "dangling/pwned"),
        "{err}"
    );
    assert_eq!(jail.outside_snapshot(), before);
}

#[test]
fn a_new_entry_replaces_a_symlink_instead_of_following_it() {
    let jail = Jail::new();
    let before = jail.outside_snapshot();
    let secret = jail.outside().join("secret");
    let tar = Tar::new()
        .symlink("file", secret.to_str().unwrap())
        .symlink("dir", jail.outside().to_str().unwrap())
        .file("file", b"replaced")
        .dir("dir", 0o755)
        .bytes();
    jail.apply(&tar).unwrap();
    assert_eq!(jail.outside_snapshot(), before);
    assert_eq!(fs::read(jail.root().join("file")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(jail.root().join("dir"))
        .unwrap()
        .is_dir());
}

#[test]
fn hard_link_targets_are_resolved_inside_the_root() {
    let jail = Jail::new();
    let err = jail
        .apply(&Tar::new().hard_link("h", "../outside/secret").bytes())
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::LinkEscapes { ref entry, .. } if entry == "h"),
        "{err}"
    );
    assert!(err.to_string().contains("\"../outside/secret\""), "{err}");

    // An absolute target, or one through a symlink to the host, names a file in the
    // root: here there is none, so the link fails instead of reaching the host.
    let secret = jail.outside().join("secret");
    for tar in [
        Tar::new().hard_link("h", secret.to_str().unwrap()).bytes(),
        Tar::new()
            .symlink("l", jail.outside().to_str().unwrap())
            .hard_link("h", "l/secret")
            .bytes(),
    ] {
        let err = jail.apply(&tar).unwrap_err();
        assert!(
            matches!(err, UnpackError::Entry { ref source, .. }
                if source.raw_os_error() == Some(libc::ENOENT)),
            "{err}"
        );
    }
    assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);

    // A target that is there, even reached through a symlink, is linked.
    let tar = Tar::new()
        .file("bin/busybox", b"elf")
        .symlink("sbin", "/bin")
        .hard_link("bin/sh", "sbin/busybox")
        .bytes();
    jail.apply(&tar).unwrap();
    let (sh, busybox) = (
        fs::metadata(jail.root().join("bin/sh")).unwrap(),
        fs::metadata(jail.root().join("bin/busybox")).unwrap(),
    );
    assert_eq!((sh.ino(), sh.nlink()), (busybox.ino(), 2));
}

// ---------------------------------------------------------------------------------
// Entry kinds and metadata.
// ---------------------------------------------------------------------------------

#[test]
fn owners_modes_and_times_are_restored() {
    let jail = Jail::new();
    let mut setuid = header(tar::EntryType::Regular, b"usr/bin/su", 0o4755, 2);
    setuid.set_uid(1234);
    setuid.set_gid(5678);
    setuid.set_mtime(1_600_000_000);
    let mut tmp = header(tar::EntryType::Directory, b"tmp/", 0o1777, 0);
    tmp.set_mtime(1_500_000_000);
    let mut link = header(tar::EntryType::Symlink, b"tmp/link", 0o777, 0);
    link.set_link_name_literal(b"/usr/bin/su").unwrap();
    link.set_uid(42);
    link.set_gid(43);
    let mut sgid = header(tar::EntryType::Directory, b"srv", 0o2750, 0);
    sgid.set_gid(99);
    let tar = Tar::new()
        .append(setuid, b"su")
        .append(tmp, b"")
        .file("tmp/child", b"a child changes its directory's mtime")
        .append(link, b"")
        .append(sgid, b"")
        .bytes();
    let report = jail.apply(&tar).unwrap();
    assert!(report.owners_restored, "these tests run as root");
    assert_eq!(report.applied, 5);

    let root = jail.root();
    let su = fs::symlink_metadata(root.join("usr/bin/su")).unwrap();
    assert_eq!(
        (su.mode() & 0o7777, su.uid(), su.gid(), su.mtime()),
        (0o4755, 1234, 5678, 1_600_000_000)
    );
    let tmp = fs::symlink_metadata(root.join("tmp")).unwrap();
    assert_eq!(
        (tmp.mode() & 0o7777, tmp.mtime()),
        (0o1777, 1_500_000_000),
        "directory mtimes are set last"
    );
    let link = fs::symlink_metadata(root.join("tmp/link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!((link.uid(), link.gid(), link.mtime()), (42, 43, 1_000_000));
    let srv = fs::symlink_metadata(root.join("srv")).unwrap();
    assert_eq!((srv.mode() & 0o7777, srv.gid()), (0o2750, 99));
    // Parents missing from the archive are created like tar does: 0755.
    assert_eq!(
        fs::metadata(root.join("usr/bin")).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn device_nodes_and_fifos_are_created() {
    let jail = Jail::new();
    let mut null = header(tar::EntryType::Char, b"dev/null", 0o666, 0);
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    let mut loop0 = header(tar::EntryType::Block, b"dev/loop0", 0o660, 0);
    loop0.set_device_major(7).unwrap();
    loop0.set_device_minor(0).unwrap();
    let fifo = header(tar::EntryType::Fifo, b"run/initctl", 0o600, 0);
    let report = jail
        .apply(
            &Tar::new()
                .append(null, b"")
                .append(loop0, b"")
                .append(fifo, b"")
                .bytes(),
        )
        .unwrap();
    assert_eq!(report.skipped_devices, Vec::<PathBuf>::new());

    let null = fs::symlink_metadata(jail.root().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o7777),
        (libc::makedev(1, 3), 0o666)
    );
    let loop0 = fs::symlink_metadata(jail.root().join("dev/loop0")).unwrap();
    assert!(loop0.file_type().is_block_device());
    assert_eq!(loop0.rdev(), libc::makedev(7, 0));
    assert!(fs::symlink_metadata(jail.root().join("run/initctl"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn pax_xattrs_are_set_on_files() {
    let jail = Jail::new();
    let tar = Tar::new()
        .pax(&[("SCHILY.xattr.user.berth", b"taught")])
        .file("bin/ping", b"elf")
        .bytes();
    jail.apply(&tar).unwrap();
    let path = CString::new(jail.root().join("bin/ping").into_os_string().into_vec()).unwrap();
    let mut value = [0u8; 16];
    // SAFETY: both strings are NUL-terminated, and `value` is writable for its length.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"user.berth".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(
        &value[..usize::try_from(len).expect("getxattr failed")],
        b"taught"
    );
}

#[test]
fn existing_entries_are_replaced_except_directories_which_are_merged() {
    let jail = Jail::new();
    let lower = Tar::new()
        .dir("etc", 0o700)
        .file("etc/kept", b"lower")
        .file("was-dir/inner", b"x")
        .file("was-file", b"x")
        .bytes();
    jail.apply(&lower).unwrap();
    let upper = Tar::new()
        .dir("etc", 0o755)
        .file("was-dir", b"now a file")
        .dir("was-file", 0o755)
        .bytes();
    jail.apply(&upper).unwrap();
    let root = jail.root();
    assert_eq!(fs::read(root.join("etc/kept")).unwrap(), b"lower");
    assert_eq!(
        fs::metadata(root.join("etc")).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(fs::read(root.join("was-dir")).unwrap(), b"now a file");
    assert!(fs::metadata(root.join("was-file")).unwrap().is_dir());
}

#[test]
fn entries_naming_the_root_itself() {
    let jail = Jail::new();
    jail.apply(&Tar::new().dir("./", 0o700).bytes()).unwrap();
    assert_eq!(
        fs::metadata(jail.root()).unwrap().mode() & 0o7777,
        0o755,
        "the root's mode is not the layer's"
    );
    let err = jail
        .apply(&Tar::new().file("a/..", b"x").bytes())
        .unwrap_err();
    assert!(matches!(err, UnpackError::RootEntry { .. }), "{err}");
}

// ---------------------------------------------------------------------------------
// Whiteouts.
// ---------------------------------------------------------------------------------

fn lower_layer() -> Vec<u8> {
    Tar::new()
        .file("a/f", b"f")
        .file("a/g", b"g")
        .file("b/x", b"x")
        .file("b/sub/y", b"y")
        .file("c", b"c")
        .file("d", b"lower d")
        .file("e/old", b"old")
        .bytes()
}

#[test]
fn whiteouts_delete_from_lower_layers_and_are_not_created() {
    let jail = Jail::new();
    jail.apply(&lower_layer()).unwrap();
    let upper = Tar::new()
        .file("a/.wh.f", b"")
        .file(".wh.c", b"")
        .file(".wh.missing", b"")
        .bytes();
    let report = jail.apply(&upper).unwrap();
    assert_eq!((report.whiteouts, report.applied), (3, 0));
    let root = jail.root();
    assert!(!root.join("a/f").exists() && !root.join("c").exists());
    assert!(root.join("a/g").exists());
    assert!(!root.join("a/.wh.f").exists() && !root.join(".wh.c").exists());
}

#[test]
fn an_opaque_directory_hides_lower_entries_but_keeps_its_own_layers() {
    let jail = Jail::new();
    jail.apply(&lower_layer()).unwrap();
    // The layer's own entry comes *before* the marker: it must survive anyway.
    let upper = Tar::new()
        .file("b/new", b"new")
        .file("b/sub/z", b"z")
        .file("b/.wh..wh..opq", b"")
        .bytes();
    jail.apply(&upper).unwrap();
    let root = jail.root();
    assert_eq!(fs::read(root.join("b/new")).unwrap(), b"new");
    assert_eq!(fs::read(root.join("b/sub/z")).unwrap(), b"z");
    assert!(!root.join("b/x").exists() && !root.join("b/sub/y").exists());
    assert!(!root.join("b/.wh..wh..opq").exists());
}

#[test]
fn a_whiteout_spares_its_own_layers_entries_in_any_order() {
    let jail = Jail::new();
    jail.apply(&lower_layer()).unwrap();
    let upper = Tar::new()
        .file("d", b"upper d")
        .file(".wh.d", b"")
        .file("e/new", b"new")
        .file(".wh.e", b"")
        .bytes();
    jail.apply(&upper).unwrap();
    let root = jail.root();
    assert_eq!(fs::read(root.join("d")).unwrap(), b"upper d");
    assert_eq!(fs::read(root.join("e/new")).unwrap(), b"new");
    assert!(
        !root.join("e/old").exists(),
        "the lower e is gone, only this layer's part of e stays"
    );
}

#[test]
fn whiteouts_cannot_reach_outside_or_above() {
    let jail = Jail::new();
    let before = jail.outside_snapshot();
    jail.apply(
        &Tar::new()
            .symlink("l", jail.outside().to_str().unwrap())
            .symlink("r", "../outside")
            .bytes(),
    )
    .unwrap();
    jail.apply(
        &Tar::new()
            .file("l/.wh.secret", b"")
            .file("r/.wh.secret", b"")
            .file("r/.wh..wh..opq", b"")
            .bytes(),
    )
    .unwrap();
    assert_eq!(jail.outside_snapshot(), before);
    for name in [".wh..", "a/.wh...", ".wh."] {
        let err = jail.apply(&Tar::new().file(name, b"").bytes()).unwrap_err();
        assert!(
            matches!(err, UnpackError::BadWhiteout { .. }),
            "{name}: {err}"
        );
    }
    let err = jail
        .apply(&Tar::new().file("../.wh.outside", b"").bytes())
        .unwrap_err();
    assert!(matches!(err, UnpackError::Escapes { .. }), "{err}");
    assert_eq!(jail.outside_snapshot(), before);
}

// ---------------------------------------------------------------------------------
// Compression, media types and digests.
// ---------------------------------------------------------------------------------

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

const DOCKER_GZIP_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[test]
fn layers_are_decompressed_by_their_bytes_not_their_label() {
    let tar = Tar::new().file("hello", b"hi").bytes();
    let cases = [
        (MediaType::ImageLayer, tar.clone()),
        (MediaType::ImageLayerGzip, gzip(&tar)),
        (MediaType::Other(DOCKER_GZIP_LAYER.into()), gzip(&tar)),
        (MediaType::ImageLayer, gzip(&tar)), // mislabelled, still applied
    ];
    for (media_type, blob) in cases {
        let jail = Jail::new();
        apply_layer(&jail.root(), &media_type, &blob[..]).unwrap();
        assert_eq!(
            fs::read(jail.root().join("hello")).unwrap(),
            b"hi",
            "{media_type}"
        );
    }
}

#[test]
fn zstd_and_non_layers_are_refused_clearly() {
    let jail = Jail::new();
    let err = apply_layer(&jail.root(), &MediaType::ImageLayerZstd, &b"whatever"[..]).unwrap_err();
    assert!(
        matches!(err, UnpackError::Zstd { .. }) && err.to_string().contains("not support yet"),
        "{err}"
    );
    let zstd_bytes = [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    let err = apply_layer(&jail.root(), &MediaType::ImageLayer, &zstd_bytes[..]).unwrap_err();
    assert!(matches!(err, UnpackError::Zstd { .. }), "{err}");
    let err = apply_layer(&jail.root(), &MediaType::ImageConfig, &b"{}"[..]).unwrap_err();
    assert!(matches!(err, UnpackError::NotALayer { .. }), "{err}");
}

/// A layout with one image of two layers (gzip, then plain), with the given diff_ids
/// (`None`: the right ones).
fn two_layer_image(dir: &Path, diff_ids: Option<Vec<Digest>>) -> (LayoutBuilder, Vec<Descriptor>) {
    let mut builder = LayoutBuilder::new(dir);
    let bottom = Tar::new()
        .file("etc/os-release", b"ID=berth")
        .file("bin/sh", b"elf")
        .bytes();
    let top = Tar::new()
        .file("bin/.wh.sh", b"")
        .file("bin/bash", b"elf")
        .bytes();
    let layers = vec![
        builder.blob(MediaType::ImageLayerGzip, &gzip(&bottom)),
        builder.blob(MediaType::ImageLayer, &top),
    ];
    let diff_ids = diff_ids.unwrap_or_else(|| vec![sha256(&bottom), sha256(&top)]);
    let manifest = builder.image(layers.clone(), &diff_ids);
    builder.add(manifest, &[]);
    (builder, layers)
}

#[test]
fn an_image_unpacks_layer_by_layer() {
    let jail = Jail::new();
    let (builder, _) = two_layer_image(&jail.tmp.path().join("layout"), None);
    let layout = builder.write_index();
    let image = layout.resolve(None).unwrap();
    let reports = unpack_image(&layout, &image, &jail.root()).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1].whiteouts, 1);
    assert_eq!(
        fs::read(jail.root().join("etc/os-release")).unwrap(),
        b"ID=berth"
    );
    assert!(jail.root().join("bin/bash").exists() && !jail.root().join("bin/sh").exists());
}

#[test]
fn a_layer_whose_stored_bytes_do_not_match_its_digest_is_refused() {
    let jail = Jail::new();
    let (builder, layers) = two_layer_image(&jail.tmp.path().join("layout"), None);
    let layout = builder.write_index();
    let image = layout.resolve(None).unwrap();
    // Change the gzip header's timestamp: the layer still decompresses to the same
    // tar (so the diff_id matches), and only the stored digest can tell.
    let mut blob = fs::read(layout.blob_path(layers[0].digest()).unwrap()).unwrap();
    blob[4] ^= 0xff;
    builder.corrupt(layers[0].digest(), &blob);
    let err = unpack_image(&layout, &image, &jail.root()).unwrap_err();
    assert!(
        matches!(err, UnpackError::Blob(LayoutError::DigestMismatch { ref expected, .. })
            if expected == layers[0].digest()),
        "{err}"
    );
}

#[test]
fn a_plain_layer_altered_in_a_files_bytes_is_refused_at_its_end() {
    let jail = Jail::new();
    let (builder, layers) = two_layer_image(&jail.tmp.path().join("layout"), None);
    let layout = builder.write_index();
    let image = layout.resolve(None).unwrap();
    let mut blob = fs::read(layout.blob_path(layers[1].digest()).unwrap()).unwrap();
    let at = blob.windows(3).position(|w| w == b"elf").unwrap();
    blob[at] = b'E';
    builder.corrupt(layers[1].digest(), &blob);
    let err = unpack_image(&layout, &image, &jail.root()).unwrap_err();
    assert!(
        matches!(err, UnpackError::Blob(LayoutError::DigestMismatch { .. })),
        "{err}"
    );
}

#[test]
fn a_layer_that_does_not_unpack_to_its_diff_id_is_refused() {
    let jail = Jail::new();
    let wrong = vec![sha256(b"not the bottom layer"), sha256(b"nor the top")];
    let (builder, layers) = two_layer_image(&jail.tmp.path().join("layout"), Some(wrong.clone()));
    let layout = builder.write_index();
    let image = layout.resolve(None).unwrap();
    let err = unpack_image(&layout, &image, &jail.root()).unwrap_err();
    match err {
        UnpackError::DiffIdMismatch {
            ref layer,
            ref expected,
            ..
        } => {
            assert_eq!(
                (layer.as_str(), expected),
                (layers[0].digest().as_ref(), &wrong[0])
            );
        }
        other => panic!("expected a diff_id mismatch, got {other}"),
    }
}

#[test]
fn open_in_root_reads_only_the_images_regular_files() {
    let jail = Jail::new();
    let secret = jail.outside().join("secret");
    jail.apply(
        &Tar::new()
            .symlink("etc/passwd", secret.to_str().unwrap())
            .file("etc/group", b"root:x:0:")
            .bytes(),
    )
    .unwrap();
    let err = open_in_root(&jail.root(), "/etc/passwd").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let mut group = String::new();
    open_in_root(&jail.root(), "/etc/group")
        .unwrap()
        .read_to_string(&mut group)
        .unwrap();
    assert_eq!(group, "root:x:0:");

    // A fifo would block the reader forever, a device node could be the host's disk.
    let fifo = header(tar::EntryType::Fifo, b"etc/shadow", 0o600, 0);
    let mut disk = header(tar::EntryType::Block, b"etc/gshadow", 0o600, 0);
    disk.set_device_major(8).unwrap();
    disk.set_device_minor(0).unwrap();
    jail.apply(&Tar::new().append(fifo, b"").append(disk, b"").bytes())
        .unwrap();
    for name in ["etc/shadow", "etc/gshadow", "etc"] {
        let err = open_in_root(&jail.root(), name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{name}: {err}");
    }
}

// ---------------------------------------------------------------------------------
// The property test: random layers against a model of the filesystem.
//
// The model is a tree in memory that applies the same rules as the unpacker, written
// independently and in the plainest way: names cleaned lexically, symlinks followed
// inside the root, missing parents created, existing entries replaced. For every random
// sequence of entries, the real root must end up exactly like the model (nothing lost,
// nothing extra), both must agree on whether the layer fails, and nothing outside the
// root may change.
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Dir(BTreeMap<String, Node>),
    File(Vec<u8>),
    Symlink(String),
}

#[derive(Clone, Debug)]
enum Op {
    Dir(String),
    File(String),
    Symlink(String, String),
    HardLink(String, String),
}

/// Why the model refuses an entry; only used to make failures readable.
type Refused = &'static str;

struct Model {
    root: Node,
}

/// `None` when `..` climbs above the root.
fn model_clean(name: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part.to_owned()),
        }
    }
    Some(parts)
}

impl Model {
    fn new() -> Self {
        Model {
            root: Node::Dir(BTreeMap::new()),
        }
    }

    fn get(&self, path: &[String]) -> Option<&Node> {
        let mut node = &self.root;
        for part in path {
            match node {
                Node::Dir(children) => node = children.get(part)?,
                _ => return None,
            }
        }
        Some(node)
    }

    fn children(&mut self, dir: &[String]) -> &mut BTreeMap<String, Node> {
        let mut node = &mut self.root;
        for part in dir {
            let Node::Dir(children) = node else {
                unreachable!("resolved parents are directories")
            };
            node = children.get_mut(part).expect("resolved parents exist");
        }
        let Node::Dir(children) = node else {
            unreachable!("resolved parents are directories")
        };
        children
    }

    /// The physical path of directory `path`, following symlinks as if the root were
    /// `/`. Components of the entry's own name are created when missing (if `create`);
    /// components that come from a symlink's target are not.
    fn resolve_dir(&mut self, path: &[String], create: bool) -> Result<Vec<String>, Refused> {
        let mut current: Vec<String> = Vec::new();
        let mut todo: VecDeque<(String, bool)> = path.iter().map(|p| (p.clone(), true)).collect();
        let mut symlinks = 0;
        while let Some((part, own)) = todo.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            let mut next = current.clone();
            next.push(part.clone());
            match self.get(&next).cloned() {
                None if own && create => {
                    self.children(&current)
                        .insert(part, Node::Dir(BTreeMap::new()));
                    current = next;
                }
                None => return Err("a directory on the way is missing"),
                Some(Node::Dir(_)) => current = next,
                Some(Node::File(_)) => return Err("a file stands where a directory should"),
                Some(Node::Symlink(target)) => {
                    symlinks += 1;
                    if symlinks > 40 {
                        return Err("too many symlinks");
                    }
                    if target.starts_with('/') {
                        current.clear();
                    }
                    let mut expanded: VecDeque<(String, bool)> =
                        target.split('/').map(|p| (p.to_owned(), false)).collect();
                    expanded.extend(todo.drain(..));
                    todo = expanded;
                }
            }
        }
        Ok(current)
    }

    fn apply(&mut self, op: &Op, content: &[u8]) -> Result<(), Refused> {
        let path = model_clean(op_name(op)).ok_or("climbs out")?;
        let Some((last, parent)) = path.split_last() else {
            return if matches!(op, Op::Dir(_)) {
                Ok(())
            } else {
                Err("names the root")
            };
        };
        let parent = self.resolve_dir(parent, true)?;
        let node = match op {
            Op::Dir(_) => match self.get(&[parent.clone(), vec![last.clone()]].concat()) {
                Some(Node::Dir(_)) => return Ok(()),
                _ => Node::Dir(BTreeMap::new()),
            },
            Op::File(_) => Node::File(content.to_vec()),
            Op::Symlink(_, target) => Node::Symlink(target.clone()),
            Op::HardLink(_, target) => return self.hard_link(parent, last, target),
        };
        self.children(&parent).insert(last.clone(), node);
        Ok(())
    }

    fn hard_link(&mut self, parent: Vec<String>, last: &str, target: &str) -> Result<(), Refused> {
        let target = model_clean(target).ok_or("link climbs out")?;
        let (target_last, target_parent) = target.split_last().ok_or("links the root")?;
        let target_parent = self.resolve_dir(target_parent, false)?;
        let target_path = [target_parent.clone(), vec![target_last.clone()]].concat();
        match self.get(&target_path) {
            None => return Err("link target missing"),
            Some(Node::Dir(_)) => return Err("link target is a directory"),
            Some(_) if target_parent == parent && target_last == last => return Ok(()),
            Some(_) => {}
        }
        // The destination goes first, and the target may have been inside it.
        self.children(&parent).remove(last);
        let linked = self
            .get(&target_path)
            .cloned()
            .ok_or("link target was inside the destination")?;
        self.children(&parent).insert(last.to_owned(), linked);
        Ok(())
    }
}

/// The real tree under `dir`, in the model's terms.
fn read_tree(dir: &Path) -> Node {
    let mut children = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        let node = if kind.is_symlink() {
            Node::Symlink(fs::read_link(&path).unwrap().to_str().unwrap().to_owned())
        } else if kind.is_dir() {
            read_tree(&path)
        } else {
            Node::File(fs::read(&path).unwrap())
        };
        children.insert(entry.file_name().into_string().unwrap(), node);
    }
    Node::Dir(children)
}

/// The names entries use, one list mostly for directories and one mostly for files:
/// apart enough that most layers apply in full (a file where a directory is needed
/// fails the layer), shared enough (`a`) that entries still replace each other.
const DIR_NAMES: &[&str] = &["a", "b", "l", "m", "outside"];
const FILE_NAMES: &[&str] = &["f", "g", "secret", "a"];

fn component() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        40 => prop::sample::select(DIR_NAMES),
        1 => Just(".."),
        1 => Just("."),
        1 => Just(""),
    ]
}

/// Names a layer may use, `/` and `./` prefixes included, sometimes with `.` or `..`
/// inside (which rarely climbs out: hostile names come from [`hostile_op`]), ending
/// in one of `last`.
fn entry_name_ending(last: &'static [&'static str]) -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec!["", "", "", "/", "./"]);
    let parents = prop::collection::vec(component(), 0..6);
    (prefix, parents, prop::sample::select(last)).prop_map(|(prefix, parents, last)| {
        format!("{prefix}{}", [parents, vec![last]].concat().join("/"))
    })
}

fn entry_name() -> impl Strategy<Value = String> {
    prop_oneof![entry_name_ending(DIR_NAMES), entry_name_ending(FILE_NAMES)]
}

fn climbing_name() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["../", "a/../../", "/../", "./../../../"]),
        entry_name(),
    )
        .prop_map(|(prefix, name)| format!("{prefix}{}", name.trim_start_matches(['/', '.'])))
}

/// An entry that tries to climb out by its name or its hard link's target.
fn hostile_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        climbing_name().prop_map(Op::File),
        (climbing_name(), symlink_target()).prop_map(|(name, target)| Op::Symlink(name, target)),
        (entry_name(), climbing_name()).prop_map(|(name, target)| Op::HardLink(name, target)),
    ]
}

/// Symlink targets: relative, absolute, climbing, and the host's real paths of the
/// sentinel and of the root itself (`$OUT`, `$ROOT`, filled in per case).
fn symlink_target() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "a", "b", "l", "a/b", "/", ".", "..", "../..", "/a", "/l/m", "../outside", "../outside/secret",
            "../../../../../../..", "$OUT", "$OUT/secret", "$ROOT", "$ROOT/a", "l/../..",
        ]).prop_map(str::to_owned),
        1 => entry_name(),
    ]
    .prop_filter("a symlink needs a target", |target| !target.is_empty())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => entry_name_ending(DIR_NAMES).prop_map(Op::Dir),
        4 => entry_name_ending(FILE_NAMES).prop_map(Op::File),
        3 => (entry_name(), symlink_target()).prop_map(|(name, target)| Op::Symlink(name, target)),
        2 => (entry_name_ending(FILE_NAMES), link_target())
            .prop_map(|(name, target)| Op::HardLink(name, target)),
    ]
}

/// Mostly "#k", which [`ops`] replaces with the name of an earlier file, so that links
/// usually find their target; sometimes any name at all.
fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![12 => (0usize..16).prop_map(|k| format!("#{k}")), 1 => entry_name()]
}

/// A layer's worth of entries, perhaps with one hostile entry somewhere in it.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let hostile = prop::option::weighted(0.3, (0usize..16, hostile_op()));
    (prop::collection::vec(op(), 1..16), hostile).prop_map(|(mut ops, hostile)| {
        if let Some((at, op)) = hostile {
            ops.insert(at.min(ops.len()), op);
        }
        for i in 0..ops.len() {
            let Op::HardLink(name, target) = &ops[i] else {
                continue;
            };
            let Some(k) = target.strip_prefix('#') else {
                continue;
            };
            let files: Vec<&str> = ops[..i]
                .iter()
                .filter(|op| matches!(op, Op::File(_)))
                .map(op_name)
                .collect();
            ops[i] = match files.len() {
                0 => Op::File(name.clone()), // nothing to link to yet
                n => Op::HardLink(
                    name.clone(),
                    files[k.parse::<usize>().unwrap() % n].to_owned(),
                ),
            };
        }
        ops
    })
}

fn op_name(op: &Op) -> &str {
    match op {
        Op::Dir(name) | Op::File(name) | Op::Symlink(name, _) | Op::HardLink(name, _) => name,
    }
}

/// The tar of `ops`, with `$OUT` and `$ROOT` filled in; file `i` holds `content(i)`.
fn layer_of(ops: &[(usize, Op)], jail: &Jail) -> Vec<u8> {
    let mut tar = Tar::new();
    for (i, op) in ops {
        match op {
            Op::Dir(name) => tar.dir(name, 0o755),
            Op::File(name) => tar.file(name, &content(*i)),
            Op::Symlink(name, target) => tar.symlink(name, &fill(target, jail)),
            Op::HardLink(name, target) => tar.hard_link(name, target),
        };
    }
    tar.bytes()
}

fn content(i: usize) -> Vec<u8> {
    format!("content of entry {i}").into_bytes()
}

fn fill(target: &str, jail: &Jail) -> String {
    target
        .replace("$OUT", jail.outside().to_str().unwrap())
        .replace("$ROOT", jail.root().to_str().unwrap())
}

/// Which of the property test's names exist in the directories above the jail, where
/// an escape through `../../..` would land; the set must be the same after a case.
fn stray_names_above(jail: &Jail) -> Vec<PathBuf> {
    let names = || DIR_NAMES.iter().chain(FILE_NAMES);
    let above = jail.tmp.path().ancestors();
    above
        .flat_map(|dir| names().map(move |name| dir.join(name)))
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_layers_end_up_exactly_like_the_model_and_never_escape(
        ops in ops(),
        split in 0usize..16,
    ) {
        let jail = Jail::new();
        let before = jail.outside_snapshot();
        let strays_before = stray_names_above(&jail);

        // Two layers, so the second meets an existing tree.
        let ops: Vec<(usize, Op)> = ops.into_iter().enumerate().collect();
        let split = split.min(ops.len());
        let mut model = Model::new();
        let mut failed = None;
        for layer in [&ops[..split], &ops[split..]] {
            let real = jail.apply(&layer_of(layer, &jail));
            let mut expected = Ok(());
            for (i, op) in layer {
                let op = match op {
                    Op::Symlink(name, target) => Op::Symlink(name.clone(), fill(target, &jail)),
                    other => other.clone(),
                };
                expected = model.apply(&op, &content(*i)).map_err(|why| (op, why));
                if expected.is_err() {
                    break;
                }
            }
            let real_error = real.as_ref().err().map(ToString::to_string);
            prop_assert_eq!(
                real.is_ok(), expected.is_ok(), "unpacker: {:?}, model: {:?}", real_error, expected
            );
            if real.is_err() {
                failed = real.err().map(|e| e.to_string());
                break;
            }
        }

        prop_assert_eq!(read_tree(&jail.root()), model.root, "after failure {:?}", failed);
        prop_assert_eq!(jail.outside_snapshot(), before, "something outside the root changed");
        prop_assert_eq!(stray_names_above(&jail), strays_before, "something appeared above the jail");
    }
}
