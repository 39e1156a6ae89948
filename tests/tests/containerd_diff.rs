//! `ctr snapshots diff` against berth-containerd's Diff service, judged by GNU tar and
//! by the real containerd: the same changes made in a snapshot on top of the test
//! image must give a layer listing the same entries (new files, whiteouts for deleted
//! ones, their parent directories), stored as a blob labelled with its diff ID.

use std::path::Path;
use std::process::Command;

use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::peers::{first_column, output, require, run_ok, Containerd};
use berth_tests::runtime::Outcome;
use berth_tests::shim::wait_until;

const NAMESPACE: &str = "berth-diff";
const UNCOMPRESSED: &str = "application/vnd.oci.image.layer.v1.tar";

/// Runs `cmd` through `sh` with its stdout (a binary layer) into `file`.
fn to_file(cmd: &Command, file: &Path) -> Outcome {
    let quoted: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let line = format!("{} > '{}'", quoted.join(" "), file.display());
    output(Command::new("sh").args(["-c", &line]))
}

/// On the daemon `ctr` talks to: imports the test image, prepares snapshot `work` on
/// it, mounts it on `dir/mnt` and changes it as a container would (a new file, a
/// deleted file, a deleted directory, a new symlink, a changed mode), unmounts it,
/// and runs `ctr snapshots diff work` with `flags`, the layer going to `dir/NAME`.
fn change_and_diff(ctr: &impl Fn() -> Command, dir: &Path) {
    let archive = berth_tests::images::busybox().archive.display().to_string();
    run_ok(ctr().args(["images", "import", &archive]));
    let parent = first_column(&run_ok(ctr().args(["snapshots", "ls"])));
    assert_eq!(parent.len(), 1, "{parent:?}");
    run_ok(ctr().args(["snapshots", "prepare", "work", &parent[0]]));
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = run_ok(ctr().args(["snapshots", "mounts"]).arg(&mnt).arg("work"));
    let changes = "echo hello > etc/new-file && rm etc/group && rm -r home \
                   && ln -s /etc/passwd etc/pw && chmod 750 root";
    let script = format!(
        "{} && cd '{}' && {changes}; status=$?; cd / && umount '{}'; exit $status",
        mount.trim(),
        mnt.display(),
        mnt.display()
    );
    run_ok(Command::new("sh").args(["-c", &script]));
}

fn diff(ctr: &impl Fn() -> Command, flags: &[&str], file: &Path) {
    let mut cmd = ctr();
    cmd.args(["snapshots", "diff"]).args(flags).arg("work");
    let made = to_file(&cmd, file);
    assert_eq!(made.status, 0, "{made}");
}

/// `tar -tv` of a layer, each line as mode, owner, size and name (the times of
/// directories are when the test ran, so they are left out).
fn listing(layer: &Path) -> Vec<String> {
    let listed = run_ok(Command::new(require("tar")).arg("-tvf").arg(layer));
    listed
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            [&fields[..3], &fields[5..]].concat().join(" ")
        })
        .collect()
}

#[test]
fn a_snapshot_diff_lists_what_changed_as_containerd_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("berth"));
    let ctr = || daemon.ctr(NAMESPACE);
    change_and_diff(&ctr, dir.path());

    // The default: a gzip layer, which only lives as long as ctr's lease.
    let gzip = dir.path().join("layer.tar.gz");
    diff(&ctr, &[], &gzip);
    let berth = listing(&gzip);
    let expected = [
        "drwxr-xr-x 0/0 0 etc/",
        "---------- 0/0 0 etc/.wh.group",
        "-rw-r--r-- 0/0 6 etc/new-file",
        "lrwxrwxrwx 0/0 0 etc/pw -> /etc/passwd",
        "---------- 0/0 0 .wh.home",
        "drwxr-x--- 0/0 0 root/",
    ];
    assert_eq!(berth, expected, "{}", daemon.log());
    let hello = run_ok(
        Command::new(require("tar"))
            .arg("-xzOf")
            .arg(&gzip)
            .arg("etc/new-file"),
    );
    assert_eq!(hello, "hello\n");
    // ctr deletes its lease on exit; the collector then runs in the background.
    wait_until("only the image's three blobs are left", || {
        first_column(&run_ok(ctr().args(["content", "ls"]))).len() == 3
    });

    // Uncompressed and kept: its digest is its diff ID, and it stays in the store.
    let tar = dir.path().join("layer.tar");
    diff(&ctr, &["--media-type", UNCOMPRESSED, "--keep"], &tar);
    assert_eq!(listing(&tar), expected);
    let digest = format!(
        "sha256:{}",
        run_ok(Command::new(require("sha256sum")).arg(&tar))
            .split_whitespace()
            .next()
            .unwrap()
    );
    let content = run_ok(ctr().args(["content", "ls"]));
    let line = content
        .lines()
        .find(|l| l.starts_with(&digest))
        .unwrap_or_else(|| panic!("the kept layer {digest} is not stored:\n{content}"));
    assert!(
        line.contains(&format!("containerd.io/uncompressed={digest}"))
            && line.contains("containerd.io/gc.root="),
        "{line}"
    );

    run_ok(ctr().args(["snapshots", "rm", "work"]));
    assert!(daemon.mounts().is_empty(), "{:?}", daemon.mounts());

    // The real containerd, given the same changes, lists the same entries.
    let real_dir = dir.path().join("real");
    let containerd = Containerd::start(&real_dir);
    let real_ctr = || containerd.ctr(NAMESPACE);
    change_and_diff(&real_ctr, &real_dir);
    let real = real_dir.join("layer.tar.gz");
    diff(&real_ctr, &[], &real);
    assert_eq!(
        berth,
        listing(&real),
        "berth's layer differs from containerd's"
    );
}

#[test]
fn a_first_layer_is_diffed_against_nothing_and_unknown_media_types_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("berth"));
    let ctr = || daemon.ctr(NAMESPACE);
    run_ok(ctr().args(["snapshots", "prepare", "work"]));
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = run_ok(ctr().args(["snapshots", "mounts"]).arg(&mnt).arg("work"));
    let script = format!(
        "{} && mkdir '{m}/app' && echo hello > '{m}/app/hello'; status=$?; umount '{m}'; exit $status",
        mount.trim(),
        m = mnt.display()
    );
    run_ok(Command::new("sh").args(["-c", &script]));

    let layer = dir.path().join("layer.tar.gz");
    diff(&ctr, &[], &layer);
    assert_eq!(
        listing(&layer),
        ["drwxr-xr-x 0/0 0 app/", "-rw-r--r-- 0/0 6 app/hello"]
    );

    let mut zstd = ctr();
    zstd.args(["snapshots", "diff", "--media-type"])
        .arg("application/vnd.oci.image.layer.v1.tar+zstd")
        .arg("work");
    let refused = output(&mut zstd).failure();
    assert!(
        refused.stderr.contains("cannot make a layer of media type"),
        "{refused}"
    );
    assert!(first_column(&run_ok(ctr().args(["content", "active"]))).is_empty());
    run_ok(ctr().args(["snapshots", "rm", "work"]));
    assert!(daemon.mounts().is_empty(), "{:?}", daemon.mounts());
}
