//! The differ's `Diff`, without the mounts: what changed between two directory trees
//! (the parent snapshot and the snapshot made from it), written as an OCI layer tar.
//! [`crate::diff::compare`] mounts the two snapshots and calls [`changes`], then
//! [`write_layer`]; applying that layer to the first tree gives the second.
//!
//! Both trees are walked together, each directory's names in byte order, so the same
//! two trees always give the same tar. A path only in the first tree becomes a
//! whiteout (`dir/.wh.NAME`); a path only in the second, or in both but changed, is
//! written whole, a directory before what is in it.
//!
//! What berth leaves out: extended attributes (file capabilities, SELinux labels) are
//! neither compared nor written, and sockets are skipped (a tar cannot hold them).
//! A directory that was deleted and made again (overlayfs marks it *opaque*) is
//! written as its new self plus a whiteout for each old entry that is gone, rather
//! than one `.wh..wh..opq` marker: longer, but the same tree once applied.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The prefix OCI layers mark a deleted path with.
const WHITEOUT_PREFIX: &str = ".wh.";

#[derive(Debug, thiserror::Error)]
#[error("cannot compare snapshots at {path}: {source}")]
pub struct CompareError {
    path: PathBuf,
    source: io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CompareError + '_ {
    move |source| CompareError {
        path: path.to_owned(),
        source,
    }
}

/// One difference, by its path relative to the trees' roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Added or changed: the layer carries the path as the newer tree has it.
    Write(PathBuf),
    /// Gone from the newer tree: the layer carries a whiteout for it.
    Delete(PathBuf),
}

// ANCHOR: changes
/// Every change from `lower` to `upper`, in the order the layer lists them: sorted,
/// and each changed path preceded by its parent directories, which a layer carries
/// so that it can be applied on its own (containerd's differ does the same).
pub fn changes(lower: &Path, upper: &Path) -> Result<Vec<Change>, CompareError> {
    let mut found = Vec::new();
    let mut same = SameFiles::default();
    walk(lower, upper, Path::new(""), &mut same, &mut found)?;
    Ok(with_parents(found))
}

/// Compares the directory `rel` of both trees, descending into directories the newer
/// tree has. Where the older tree has no directory at `rel`, everything below is new.
fn walk(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    same: &mut SameFiles,
    found: &mut Vec<Change>,
) -> Result<(), CompareError> {
    let old = names(&lower.join(rel))?;
    let new = names(&upper.join(rel))?;
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let (in_old, in_new) = match (o.peek(), n.peek()) {
            (None, None) => return Ok(()),
            (Some(a), Some(b)) if a == b => (o.next(), n.next()),
            (Some(a), Some(b)) if a.as_bytes() < b.as_bytes() => (o.next(), None),
            (Some(_), None) => (o.next(), None),
            _ => (None, n.next()),
        };
        let name = in_new.or(in_old).expect("one side has the name");
        let path = rel.join(name);
        if in_new.is_none() {
            found.push(Change::Delete(path));
            continue;
        }
        let new_meta = lstat(&upper.join(&path))?;
        let changed = match in_old {
            Some(_) => {
                let old_meta = lstat(&lower.join(&path))?;
                !same.check(&lower.join(&path), &old_meta, &upper.join(&path), &new_meta)?
            }
            None => true,
        };
        if changed {
            found.push(Change::Write(path.clone()));
        }
        if new_meta.is_dir() {
            walk(lower, upper, &path, same, found)?;
        }
    }
}
// ANCHOR_END: changes

/// The names in directory `dir`, sorted by their bytes; none if it is not a directory.
fn names(dir: &Path) -> Result<Vec<OsString>, CompareError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names = entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn lstat(path: &Path) -> Result<Metadata, CompareError> {
    fs::symlink_metadata(path).map_err(io_err(path))
}

/// Whether two paths hold the same file, remembered per pair of inodes: every hard
/// link of an unchanged file (busybox's hundreds of applets) is then read only once.
#[derive(Default)]
struct SameFiles {
    known: HashMap<[u64; 4], bool>,
}

impl SameFiles {
    /// Same type, mode and owner; for a non-directory also the same size and
    /// modification time; and where both times are whole seconds (a tar only keeps
    /// seconds, so an unpacked file's time says nothing about its content), the same
    /// content or link target. This is the rule of containerd's own differ.
    fn check(
        &mut self,
        a: &Path,
        am: &Metadata,
        b: &Path,
        bm: &Metadata,
    ) -> Result<bool, CompareError> {
        if (am.mode(), am.uid(), am.gid(), am.rdev()) != (bm.mode(), bm.uid(), bm.gid(), bm.rdev())
        {
            return Ok(false);
        }
        if am.is_dir() {
            return Ok(true);
        }
        if am.size() != bm.size() || am.mtime() != bm.mtime() {
            return Ok(false);
        }
        if am.mtime_nsec() != 0 || bm.mtime_nsec() != 0 {
            return Ok(am.mtime_nsec() == bm.mtime_nsec());
        }
        if am.file_type().is_symlink() {
            return Ok(fs::read_link(a).map_err(io_err(a))? == fs::read_link(b).map_err(io_err(b))?);
        }
        if !am.is_file() || am.size() == 0 {
            return Ok(true);
        }
        let key = [am.dev(), am.ino(), bm.dev(), bm.ino()];
        if let Some(same) = self.known.get(&key) {
            return Ok(*same);
        }
        let same = same_bytes(a, b)?;
        self.known.insert(key, same);
        Ok(same)
    }
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool, CompareError> {
    let (mut fa, mut fb) = (
        File::open(a).map_err(io_err(a))?,
        File::open(b).map_err(io_err(b))?,
    );
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(io_err(a))?;
        let m = read_full(&mut fb, &mut bb).map_err(io_err(b))?;
        if ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Puts before each change the parent directories not already written.
fn with_parents(found: Vec<Change>) -> Vec<Change> {
    let mut written: HashSet<PathBuf> = HashSet::new();
    let mut all = Vec::with_capacity(found.len());
    for change in found {
        let path = match &change {
            Change::Write(p) | Change::Delete(p) => p.clone(),
        };
        let parents: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        for parent in parents.into_iter().rev() {
            if written.insert(parent.to_owned()) {
                all.push(Change::Write(parent.to_owned()));
            }
        }
        if let Change::Write(p) = &change {
            if !written.insert(p.clone()) {
                continue;
            }
        }
        all.push(change);
    }
    all
}

// ANCHOR: write_layer
/// Writes `changes` as an uncompressed tar into `out`, each written path as `upper`
/// has it (type, mode, owner, whole-second modification time, content). A regular
/// file with more than one link that the tar already holds under another name is a
/// hard link to that name.
pub fn write_layer(
    upper: &Path,
    changes: &[Change],
    out: &mut impl Write,
) -> Result<(), CompareError> {
    let mut first_names: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for change in changes {
        match change {
            Change::Delete(path) => {
                let mut name = path
                    .parent()
                    .unwrap_or(Path::new(""))
                    .as_os_str()
                    .to_owned();
                if !name.is_empty() {
                    name.push("/");
                }
                name.push(WHITEOUT_PREFIX);
                name.push(path.file_name().unwrap_or_default());
                // Whiteouts carry no time of their own: the epoch, as containerd writes them.
                let header = Header::new(name.as_bytes(), b'0', 0, 0, 0, 0, 0);
                header.write(out).map_err(io_err(path))?;
            }
            Change::Write(path) => {
                let full = upper.join(path);
                let meta = lstat(&full)?;
                write_entry(path, &full, &meta, &mut first_names, out).map_err(io_err(&full))?;
            }
        }
    }
    // The end of an archive: two empty blocks.
    out.write_all(&[0; 1024]).map_err(io_err(upper))
}
// ANCHOR_END: write_layer

fn write_entry(
    path: &Path,
    full: &Path,
    meta: &Metadata,
    first_names: &mut HashMap<(u64, u64), PathBuf>,
    out: &mut impl Write,
) -> io::Result<()> {
    let kind = meta.file_type();
    let mut name = path.as_os_str().as_bytes().to_vec();
    let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
    let mtime = meta.mtime().max(0) as u64;
    if kind.is_dir() {
        name.push(b'/');
        return Header::new(&name, b'5', mode, uid, gid, 0, mtime).write(out);
    }
    let header = |flag: u8, size: u64| Header::new(&name, flag, mode, uid, gid, size, mtime);
    if kind.is_symlink() {
        let target = fs::read_link(full)?;
        return header(b'2', 0).link(target.as_os_str()).write(out);
    }
    if kind.is_file() {
        if meta.nlink() > 1 {
            if let Some(first) = first_names.get(&(meta.dev(), meta.ino())) {
                return header(b'1', 0).link(first.as_os_str()).write(out);
            }
            first_names.insert((meta.dev(), meta.ino()), path.to_owned());
        }
        header(b'0', meta.size()).write(out)?;
        let copied = io::copy(&mut File::open(full)?.take(meta.size()), out)?;
        if copied != meta.size() {
            return Err(io::Error::other(format!(
                "{} changed size while being written ({} bytes, then {copied})",
                full.display(),
                meta.size()
            )));
        }
        return out.write_all(&vec![0; padding(copied)]);
    }
    let device = |flag| {
        let mut h = header(flag, 0);
        h.device = Some((libc::major(meta.rdev()), libc::minor(meta.rdev())));
        h
    };
    if kind.is_char_device() {
        device(b'3').write(out)
    } else if kind.is_block_device() {
        device(b'4').write(out)
    } else if kind.is_fifo() {
        header(b'6', 0).write(out)
    } else {
        Ok(()) // a socket
    }
}

/// The zeros that fill `size` bytes up to a whole 512-byte block.
fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

// ANCHOR: tar_header
/// One tar entry's header, written as a POSIX ustar block. What does not fit its
/// fixed-width field (a name over 100 bytes, a uid over 7 octal digits) goes in a
/// PAX extended header just before it, as every modern tar reads.
struct Header {
    name: Vec<u8>,
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: Vec<u8>,
    device: Option<(u32, u32)>,
}

impl Header {
    fn new(name: &[u8], flag: u8, mode: u32, uid: u32, gid: u32, size: u64, mtime: u64) -> Header {
        Header {
            name: name.to_vec(),
            flag,
            mode,
            uid: uid.into(),
            gid: gid.into(),
            size,
            mtime,
            link: Vec::new(),
            device: None,
        }
    }

    fn link(mut self, target: &OsStr) -> Header {
        self.link = target.as_bytes().to_vec();
        self
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut pax = Vec::new();
        let mut record = |key: &str, value: &[u8]| pax.extend(pax_record(key, value));
        if self.name.len() > 100 {
            record("path", &self.name);
        }
        if self.link.len() > 100 {
            record("linkpath", &self.link);
        }
        for (key, value, width) in [
            ("uid", self.uid, 8),
            ("gid", self.gid, 8),
            ("size", self.size, 12),
        ] {
            if !fits_octal(value, width) {
                record(key, value.to_string().as_bytes());
            }
        }
        if !pax.is_empty() {
            let mut name = b"PaxHeaders/".to_vec();
            name.extend(self.name.iter().take(89));
            Header::new(&name, b'x', 0o644, 0, 0, pax.len() as u64, self.mtime).write(out)?;
            out.write_all(&pax)?;
            out.write_all(&vec![0; padding(pax.len() as u64)])?;
        }
        out.write_all(&self.block())
    }

    fn block(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        let mut put = |at: usize, bytes: &[u8], width: usize| {
            let n = bytes.len().min(width);
            b[at..at + n].copy_from_slice(&bytes[..n]);
        };
        let octal = |value: u64, width: usize| {
            // An overflowing value is in the PAX header; the field gets what fits.
            let value = if fits_octal(value, width) { value } else { 0 };
            format!("{value:0w$o}\0", w = width - 1).into_bytes()
        };
        put(0, &self.name, 100);
        put(100, &octal(self.mode.into(), 8), 8);
        put(108, &octal(self.uid, 8), 8);
        put(116, &octal(self.gid, 8), 8);
        put(124, &octal(self.size, 12), 12);
        put(136, &octal(self.mtime, 12), 12);
        put(156, &[self.flag], 1);
        put(157, &self.link, 100);
        put(257, b"ustar\x0000", 8);
        if let Some((major, minor)) = self.device {
            put(329, &octal(major.into(), 8), 8);
            put(337, &octal(minor.into(), 8), 8);
        }
        // The checksum is the sum of the header's bytes, its own field counted as spaces.
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }
}

fn fits_octal(value: u64, width: usize) -> bool {
    // `width - 1` octal digits and a NUL.
    value < 1u64 << (3 * (width - 1))
}

/// `LEN key=value\n`, where LEN counts the whole record, its own digits included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}
// ANCHOR_END: tar_header

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// Two trees, the second made from a copy of the first the way a container
    /// would change it.
    fn trees() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        for root in [&lower, &upper] {
            write(&root.join("etc/group"), "root:x:0:\n");
            write(&root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
            write(&root.join("gone/deep/file"), "x");
            write(&root.join("bin/busybox"), "elf");
            fs::hard_link(root.join("bin/busybox"), root.join("bin/sh")).unwrap();
            symlink("busybox", root.join("bin/ls")).unwrap();
        }
        // Same size, same whole-second time, different bytes: only content tells.
        write(&upper.join("etc/group"), "ROOT:x:0:\n");
        fs::remove_file(upper.join("etc/passwd")).unwrap();
        fs::remove_dir_all(upper.join("gone")).unwrap();
        fs::remove_file(upper.join("bin/ls")).unwrap();
        symlink("/bin/busybox", upper.join("bin/ls")).unwrap();
        write(&upper.join("new/dir/file"), "hello");
        fs::hard_link(upper.join("new/dir/file"), upper.join("new/link")).unwrap();
        fs::set_permissions(upper.join("bin/busybox"), fs::Permissions::from_mode(0o700)).unwrap();
        // Times as an unpacked layer has them: whole seconds, the same on both sides.
        for root in [&lower, &upper] {
            for file in ["etc/group", "etc/passwd", "bin/busybox"] {
                let path = root.join(file);
                if path.exists() {
                    let f = File::options().write(true).open(&path).unwrap();
                    f.set_modified(std::time::UNIX_EPOCH).unwrap();
                }
            }
        }
        (dir, lower, upper)
    }

    #[test]
    fn changes_are_sorted_with_parents_first_and_deletions_as_paths() {
        let (_dir, lower, upper) = trees();
        let w = |p: &str| Change::Write(p.into());
        let d = |p: &str| Change::Delete(p.into());
        assert_eq!(
            changes(&lower, &upper).unwrap(),
            vec![
                w("bin"),
                w("bin/busybox"),
                w("bin/ls"),
                w("bin/sh"),
                w("etc"),
                w("etc/group"),
                d("etc/passwd"),
                d("gone"),
                w("new"),
                w("new/dir"),
                w("new/dir/file"),
                w("new/link"),
            ]
        );
    }

    #[test]
    fn identical_trees_have_no_changes() {
        let (_dir, lower, _) = trees();
        assert_eq!(changes(&lower, &lower).unwrap(), vec![]);
    }

    #[test]
    fn the_layer_is_a_tar_with_whiteouts_and_hard_links() {
        let (_dir, lower, upper) = trees();
        let mut tar_bytes = Vec::new();
        write_layer(&upper, &changes(&lower, &upper).unwrap(), &mut tar_bytes).unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let path = entry.path().unwrap().display().to_string();
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            seen.push(format!(
                "{path} {:?} {:o} {link} {text}",
                header.entry_type(),
                header.mode().unwrap()
            ));
        }
        let expected = [
            "bin/ Directory 755  ",
            "bin/busybox Regular 700  elf",
            "bin/ls Symlink 777 /bin/busybox ",
            "bin/sh Link 700 bin/busybox ",
            "etc/ Directory 755  ",
            "etc/group Regular 644  ROOT:x:0:\n",
            "etc/.wh.passwd Regular 0  ",
            ".wh.gone Regular 0  ",
            "new/ Directory 755  ",
            "new/dir/ Directory 755  ",
            "new/dir/file Regular 644  hello",
            "new/link Link 644 new/dir/file ",
        ];
        assert_eq!(seen, expected);
    }

    #[test]
    fn long_names_and_links_go_in_pax_headers() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        fs::create_dir_all(&lower).unwrap();
        let long = "d".repeat(120);
        write(&upper.join(&long).join("f"), "x");
        symlink(upper.join(&long).join("f"), upper.join("l")).unwrap();
        let mut bytes = Vec::new();
        write_layer(&upper, &changes(&lower, &upper).unwrap(), &mut bytes).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<(String, Option<PathBuf>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.link_name().unwrap().map(|l| l.into_owned()),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (format!("{long}/"), None),
                (format!("{long}/f"), None),
                ("l".into(), Some(upper.join(&long).join("f"))),
            ]
        );
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("path", b"a"), b"9 path=a\n");
        // 101 bytes besides the length, whose three digits make it 104.
        let long = pax_record("path", &[b'x'; 94]);
        assert_eq!(long.len(), 104);
        assert!(long.starts_with(b"104 path="));
    }
}
