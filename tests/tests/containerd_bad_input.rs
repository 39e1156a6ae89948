//! berth-containerd given requests it must refuse, judged by the real `ctr` (Debian's
//! containerd 1.6): unknown namespaces and containers, a duplicate container id, a
//! blob of the wrong size, and image layers that try to write outside their
//! snapshot. Each is refused with an error naming what was wrong, in the same class
//! (`not found`, `already exists`, ...) as the real containerd's for the same
//! command, and nothing is left half-made.
//!
//! Not covered, because ctr 1.6 cannot send the request: an empty or malformed
//! digest in `Content/Info`, a Write whose offsets skip ahead, a snapshot commit of
//! a view, a namespace with a slash. They need a gRPC client in the tests.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_oci::oci_spec::image::ConfigBuilder;
use berth_oci::write::build_image;
use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::peers::{output, run_ok, Containerd};
use berth_tests::runtime::Outcome;
use tempfile::TempDir;

const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "berth-bad";

/// berth-containerd and the real containerd side by side, each with the test image.
struct Both {
    _dir: TempDir,
    berth: BerthContainerd,
    real: Containerd,
}

impl Both {
    fn start() -> Both {
        let dir = tempfile::tempdir().unwrap();
        let berth = BerthContainerd::start(&dir.path().join("berth"));
        let real = Containerd::start(&dir.path().join("real"));
        let archive = berth_tests::images::busybox().archive.clone();
        for mut ctr in [berth.ctr(NAMESPACE), real.ctr(NAMESPACE)] {
            run_ok(ctr.args(["images", "import"]).arg(&archive));
        }
        Both {
            _dir: dir,
            berth,
            real,
        }
    }

    /// Runs the same `ctr` command against both; returns (berth's, the real one's).
    fn ctr(&self, namespace: &str, args: &[&str]) -> (Outcome, Outcome) {
        (
            output(self.berth.ctr(namespace).args(args)),
            output(self.real.ctr(namespace).args(args)),
        )
    }
}

/// Both refused the command, each saying `class` (a gRPC code as containerd's errdefs
/// print it: "not found", "already exists", ...) and naming every one of `names`.
fn assert_both_refuse(outcomes: &(Outcome, Outcome), class: &str, names: &[&str]) {
    for (who, outcome) in [("berth", &outcomes.0), ("containerd", &outcomes.1)] {
        assert_ne!(outcome.status, 0, "{who} accepted it:\n{outcome}");
        assert!(
            outcome.stderr.contains(class),
            "{who} did not say {class:?}:\n{outcome}"
        );
        for name in names {
            assert!(
                outcome.stderr.contains(&format!("\"{name}\"")),
                "{who} did not name {name:?}:\n{outcome}"
            );
        }
    }
}

#[test]
fn unknown_namespaces_and_containers_are_not_found_naming_the_id() {
    let both = Both::start();
    // An unknown namespace is an empty one, as in containerd, not an error.
    let (berth, real) = both.ctr("nope", &["images", "ls", "--quiet"]);
    assert_eq!((berth.status, berth.stdout.as_str()), (0, ""), "{berth}");
    assert_eq!((real.status, real.stdout.as_str()), (0, ""), "{real}");
    assert_both_refuse(
        &both.ctr("nope", &["containers", "info", "x"]),
        "not found",
        &["x", "nope"],
    );
    for args in [
        &["task", "start", "nope"][..],
        &["containers", "rm", "nope"],
        &["task", "kill", "nope"],
    ] {
        assert_both_refuse(&both.ctr(NAMESPACE, args), "not found", &["nope"]);
    }
    // Looking created nothing: the namespace is still unknown to berth.
    let namespaces = run_ok(both.berth.ctr(NAMESPACE).args(["namespaces", "ls", "-q"]));
    assert!(!namespaces.lines().any(|n| n == "nope"), "{namespaces}");
}

#[test]
fn a_duplicate_container_id_already_exists_and_the_first_is_unchanged() {
    let both = Both::start();
    let create = ["containers", "create", IMAGE, "c1"];
    let (berth, real) = both.ctr(NAMESPACE, &create);
    assert_eq!((berth.status, real.status), (0, 0), "{berth}\n{real}");
    let before = run_ok(both.berth.ctr(NAMESPACE).args(["containers", "info", "c1"]));

    // ctr makes the container's snapshot first, named by the id: that fails already.
    assert_both_refuse(&both.ctr(NAMESPACE, &create), "already exists", &["c1"]);
    // With the snapshot out of the way, the container itself is refused.
    let (berth, real) = both.ctr(NAMESPACE, &["snapshots", "rm", "c1"]);
    assert_eq!((berth.status, real.status), (0, 0), "{berth}\n{real}");
    let outcomes = both.ctr(NAMESPACE, &create);
    assert_both_refuse(&outcomes, "already exists", &["c1"]);
    assert!(
        outcomes.0.stderr.contains("container \"c1\""),
        "{}",
        outcomes.0
    );

    let after = run_ok(both.berth.ctr(NAMESPACE).args(["containers", "info", "c1"]));
    assert_eq!(before, after, "the first c1 was changed");
    let list = run_ok(both.berth.ctr(NAMESPACE).args(["containers", "ls", "-q"]));
    assert_eq!(list.lines().collect::<Vec<_>>(), vec!["c1"]);
}

/// `ctr content ingest` of `data` announcing `size` bytes; the wrong digest is
/// `containerd_ctr`'s test, this one is the wrong size.
fn ingest(ctr: &mut Command, reference: &str, size: usize, data: &[u8]) -> Outcome {
    ctr.args([
        "content",
        "ingest",
        "--expected-size",
        &size.to_string(),
        reference,
    ]);
    berth_tests::peers::output_with_input(ctr, data)
}

#[test]
fn a_blob_longer_than_announced_is_refused_at_commit_and_nothing_is_committed() {
    let both = Both::start();
    // Seven bytes announced as six. (Fewer bytes than announced never reach the
    // server's check: ctr itself stops with "unexpected EOF" before committing.)
    let outcomes = (
        ingest(&mut both.berth.ctr(NAMESPACE), "long", 6, b"hello!!"),
        ingest(&mut both.real.ctr(NAMESPACE), "long", 6, b"hello!!"),
    );
    assert_both_refuse(&outcomes, "failed precondition", &["long"]);
    assert!(
        outcomes
            .0
            .stderr
            .contains("unexpected commit size 7, expected 6"),
        "{}",
        outcomes.0
    );
    // Only the image's three blobs. containerd keeps the refused ingest for a retry;
    // berth throws it away (content.rs: those bytes are not the blob announced).
    let ls = run_ok(both.berth.ctr(NAMESPACE).args(["content", "ls", "-q"]));
    assert_eq!(ls.lines().count(), 3, "{ls}");
    let active = run_ok(both.berth.ctr(NAMESPACE).args(["content", "active"]));
    assert_eq!(active.lines().count(), 1, "an ingest was left:\n{active}");
    assert_eq!(
        fs::read_dir(both.berth.root.join("content/blobs/sha256"))
            .unwrap()
            .count(),
        3
    );
}

// --- Layers that try to write outside their snapshot ---

/// One entry of a hand-written tar: berth-oci's `LayerBuilder` (the `tar` crate)
/// refuses to write the hostile names these tests need.
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A ustar archive of `entries`: a 512-byte header per entry (name, mode, size and
/// link target as octal text, a checksum), the data padded to 512, two zero blocks.
fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let (name, kind, link, data): (&str, u8, &str, &[u8]) = match *entry {
            Entry::File(name, data) => (name, b'0', "", data),
            Entry::Symlink(name, target) => (name, b'2', target, b""),
            Entry::HardLink(name, target) => (name, b'1', target, b""),
        };
        let mut header = [0u8; 512];
        let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, name.as_bytes());
        put(100, b"0000644\0");
        put(108, b"0000000\0");
        put(116, b"0000000\0");
        put(124, format!("{:011o}\0", data.len()).as_bytes());
        put(136, b"00000000000\0");
        put(148, b"        ");
        put(156, &[kind]);
        put(157, link.as_bytes());
        put(257, b"ustar\0");
        put(263, b"00");
        let sum: u32 = header.iter().map(|&b| b as u32).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A one-layer image `name:latest` of `layer`, as a `docker save` archive.
fn image_of(dir: &Path, name: &str, layer: Vec<u8>) -> PathBuf {
    let config = ConfigBuilder::default()
        .cmd(vec!["/x".to_owned()])
        .build()
        .unwrap();
    let archive = dir.join(format!("{name}.tar"));
    build_image(name, "latest", config, vec![layer])
        .unwrap()
        .write_docker_archive(&archive)
        .unwrap();
    archive
}

/// A directory on the host that a layer tries to write into; removed on drop.
struct HostTarget(PathBuf);

impl Drop for HostTarget {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ANCHOR: escaping_layers
/// berth refuses all three layers ("failed precondition"). The real containerd 1.6
/// is not compared here because it treats two of them differently, though just as
/// safely: it clamps `../..` at the root and follows the absolute symlink inside the
/// root, committing both layers with the files inside the snapshot; the hard link
/// it refuses too ("no such file or directory": `/etc/passwd` of the root).
#[test]
fn layers_that_climb_out_of_their_snapshot_are_refused_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("berth"));
    // Where each attack would land on the host if it worked: a directory that exists
    // (so a write through the symlink would succeed), and /etc/passwd.
    let outside = HostTarget(PathBuf::from(format!(
        "/tmp/berth-escape-{}",
        std::process::id()
    )));
    fs::create_dir_all(&outside.0).unwrap();
    let outside_str = outside.0.display().to_string();
    let climb = format!("../../../../../../..{outside_str}/climbed");
    let passwd_links = fs::metadata("/etc/passwd").unwrap().nlink();

    let cases: [(&str, Vec<Entry>, &str); 3] = [
        ("climb", vec![Entry::File(&climb, b"x")], climb.as_str()),
        (
            "through-symlink",
            vec![
                Entry::Symlink("link", &outside_str),
                Entry::File("link/file", b"x"),
            ],
            "link/file",
        ),
        (
            "hardlink",
            vec![Entry::HardLink("passwd", "../../../../../../../etc/passwd")],
            "passwd",
        ),
    ];
    for (name, entries, bad) in cases {
        let archive = image_of(dir.path(), name, tar(&entries));
        let import = output(
            daemon
                .ctr(NAMESPACE)
                .args(["images", "import"])
                .arg(&archive),
        );
        assert_ne!(import.status, 0, "{name}: the layer was applied:\n{import}");
        assert!(
            import.stderr.contains(&format!("{bad:?}")),
            "{name}: the error does not name {bad:?}:\n{import}"
        );
        // Nothing reached the host, nothing was committed, nothing stays mounted.
        assert_eq!(
            fs::read_dir(&outside.0).unwrap().count(),
            0,
            "{name} wrote into {outside_str}"
        );
        assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), passwd_links);
        let snapshots = run_ok(daemon.ctr(NAMESPACE).args(["snapshots", "ls"]));
        assert!(!snapshots.contains("Committed"), "{name}:\n{snapshots}");
        assert_eq!(daemon.mounts(), Vec::<String>::new(), "{name}");
        // berth-containerd is still there to ask.
        run_ok(daemon.ctr(NAMESPACE).arg("version"));
    }
    assert!(!Path::new(&outside_str).join("climbed").exists());
    assert!(!dir.path().join("climbed").exists());
}
// ANCHOR_END: escaping_layers
