//! berth-containerd judged by the real `ctr` (Debian's containerd 1.6 package): each
//! test starts its own instance in a temporary directory and checks what a user of
//! `ctr` would see: versions, namespaces, an image imported and unpacked into
//! snapshots, content verified by digest, garbage collected after `images rm`, and
//! everything still there after a SIGKILL.

use std::fs;
use std::io::Write;
use std::process::Stdio;

use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::peers::{first_column, output, run_ok};
use tempfile::TempDir;

/// The image as `ctr images import` names it.
const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "berth-ctr";

fn start() -> (TempDir, BerthContainerd) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(dir.path());
    (dir, daemon)
}

fn ctr(daemon: &BerthContainerd, args: &[&str]) -> String {
    run_ok(daemon.ctr(NAMESPACE).args(args))
}

fn import(daemon: &BerthContainerd) {
    let out = daemon.import_busybox(NAMESPACE);
    assert!(out.contains(IMAGE), "ctr images import said:\n{out}");
}

/// The files directly in `dir` (none if it does not exist).
fn entries(dir: &std::path::Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ctr_version_namespaces_and_plugins() {
    let (_dir, daemon) = start();
    let version = ctr(&daemon, &["version"]);
    assert!(version.contains("berth"), "ctr version said:\n{version}");

    ctr(&daemon, &["namespaces", "create", "tenant", "team=a"]);
    let namespaces = ctr(&daemon, &["namespaces", "ls"]);
    assert!(
        namespaces.contains("tenant") && namespaces.contains("team=a"),
        "{namespaces}"
    );
    ctr(&daemon, &["namespaces", "label", "tenant", "team=b"]);
    assert!(ctr(&daemon, &["namespaces", "ls"]).contains("team=b"));
    ctr(&daemon, &["namespaces", "rm", "tenant"]);
    assert!(!ctr(&daemon, &["namespaces", "ls", "--quiet"]).contains("tenant"));

    let plugins = ctr(&daemon, &["plugins", "ls"]);
    assert!(
        plugins.contains("io.containerd.snapshotter.v1") && plugins.contains("overlayfs"),
        "ctr plugins ls said:\n{plugins}"
    );
}

#[test]
fn an_imported_image_is_listed_complete_unpacked_and_collected_after_rm() {
    let (_dir, daemon) = start();
    import(&daemon);

    let images = ctr(&daemon, &["images", "ls"]);
    assert_eq!(first_column(&images), vec![IMAGE], "{images}");
    let check = ctr(&daemon, &["images", "check"]);
    assert!(
        check.contains("complete (2/2)"),
        "ctr images check said:\n{check}"
    );
    assert!(check.trim_end().ends_with("true"), "not unpacked:\n{check}");

    // Manifest, config and layer, tied together by the labels the collector follows.
    let content = ctr(&daemon, &["content", "ls"]);
    assert_eq!(first_column(&content).len(), 3, "{content}");
    assert!(
        content.contains("containerd.io/gc.ref.content.l.0="),
        "{content}"
    );
    assert!(
        content.contains("containerd.io/gc.ref.snapshot.overlayfs="),
        "{content}"
    );

    // One layer: one committed snapshot, named by its chain ID (the layer's diff ID).
    let snapshots = ctr(&daemon, &["snapshots", "ls"]);
    let keys = first_column(&snapshots);
    assert_eq!(keys.len(), 1, "{snapshots}");
    assert!(snapshots.contains("Committed"), "{snapshots}");
    assert!(
        content.contains(&format!("containerd.io/uncompressed={}", keys[0])),
        "{content}"
    );
    let usage = ctr(&daemon, &["snapshots", "usage", &keys[0]]);
    assert!(usage.contains("KiB") || usage.contains("MiB"), "{usage}");
    assert!(
        daemon.mounts().is_empty(),
        "unpacking left mounts: {:?}",
        daemon.mounts()
    );

    // A snapshot on top, as a container's rootfs would be, and its overlay mount.
    ctr(&daemon, &["snapshots", "prepare", "rootfs", &keys[0]]);
    let mounts = ctr(&daemon, &["snapshots", "mounts", "/mnt", "rootfs"]);
    assert!(
        mounts.contains("-t overlay") && mounts.contains("lowerdir="),
        "{mounts}"
    );
    ctr(&daemon, &["snapshots", "rm", "rootfs"]);

    ctr(&daemon, &["images", "rm", "--sync", IMAGE]);
    assert!(first_column(&ctr(&daemon, &["images", "ls"])).is_empty());
    assert!(first_column(&ctr(&daemon, &["content", "ls"])).is_empty());
    assert!(first_column(&ctr(&daemon, &["snapshots", "ls"])).is_empty());
    assert!(entries(&daemon.root.join("content/blobs/sha256")).is_empty());
    assert!(entries(&daemon.root.join("snapshots/overlayfs")).is_empty());
}

/// `ctr content ingest` with `--expected-digest`: the digest is checked at COMMIT.
fn ingest(
    daemon: &BerthContainerd,
    reference: &str,
    digest: &str,
    data: &[u8],
) -> berth_tests::runtime::Outcome {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("blob");
    fs::File::create(&input).unwrap().write_all(data).unwrap();
    let mut cmd = daemon.ctr(NAMESPACE);
    cmd.args(["content", "ingest", "--expected-digest", digest, reference]);
    // `output` gives stdin /dev/null; ingest reads the blob from stdin, so go by sh.
    let line = format!(
        "{} < '{}'",
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" "),
        input.display()
    );
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &line]).stdin(Stdio::null());
    output(&mut sh)
}

#[test]
fn a_blob_with_the_wrong_digest_is_refused_and_nothing_is_committed() {
    let (_dir, daemon) = start();
    let hello = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let wrong = ingest(&daemon, "greeting", hello, b"jello");
    assert_ne!(wrong.status, 0, "a wrong digest was accepted:\n{wrong}");
    assert!(wrong.stderr.contains("unexpected commit digest"), "{wrong}");
    assert!(first_column(&ctr(&daemon, &["content", "ls"])).is_empty());
    assert!(first_column(&ctr(&daemon, &["content", "active"])).is_empty());
    assert!(entries(&daemon.root.join("content/blobs/sha256")).is_empty());

    let right = ingest(&daemon, "greeting", hello, b"hello");
    assert_eq!(right.status, 0, "{right}");
    assert_eq!(first_column(&ctr(&daemon, &["content", "ls"])), vec![hello]);
    assert_eq!(ctr(&daemon, &["content", "get", hello]), "hello");
}

#[test]
fn images_survive_a_sigkill() {
    let (_dir, mut daemon) = start();
    import(&daemon);
    daemon.kill();
    daemon.restart();
    assert_eq!(first_column(&ctr(&daemon, &["images", "ls"])), vec![IMAGE]);
    let check = ctr(&daemon, &["images", "check"]);
    assert!(
        check.contains("complete (2/2)") && check.trim_end().ends_with("true"),
        "{check}"
    );
    assert!(daemon.log().contains("startup garbage collection"));
}

#[test]
fn a_root_has_one_instance() {
    let (dir, daemon) = start();
    let mut second = daemon.command();
    second.arg("--address").arg(dir.path().join("second.sock"));
    let outcome = output(&mut second);
    assert_ne!(
        outcome.status, 0,
        "a second instance started on the same root"
    );
    assert!(
        outcome
            .stderr
            .contains("in use by another berth-containerd"),
        "{outcome}"
    );
    // The first one is unaffected.
    ctr(&daemon, &["version"]);
}

#[test]
fn namespaces_share_blobs_but_not_images() {
    let (_dir, daemon) = start();
    import(&daemon);
    // Importing again finds every blob already there.
    import(&daemon);
    daemon.import_busybox("other");
    assert_eq!(first_column(&ctr(&daemon, &["images", "ls"])), vec![IMAGE]);

    run_ok(daemon.ctr("other").args(["images", "rm", "--sync", IMAGE]));
    assert!(first_column(&run_ok(daemon.ctr("other").args(["content", "ls"]))).is_empty());
    // The first namespace's image is untouched: its blobs stay on disk.
    let check = ctr(&daemon, &["images", "check"]);
    assert!(
        check.contains("complete (2/2)") && check.trim_end().ends_with("true"),
        "{check}"
    );
    assert_eq!(entries(&daemon.root.join("content/blobs/sha256")).len(), 3);
}
