//! The book's instructor lab (`book/labs/restart-lab.sh`), run as a class would see it,
//! so it never rots: the script exits 0 only when the chapter behaved as its era did.
//! Chapter 02 must lose its container with the daemon; chapter 03 must keep it, with
//! the same process and every line of its output. The supervisor lab
//! (`book/labs/supervisor-lab.sh`) does the same to berth-containerd, driven by the
//! real `ctr`. Needs root.

use std::path::Path;
use std::process::Command;

use berth_tests::build::workspace_binary;

fn lab(chapter: &str, package: &str) -> String {
    berth_tests::images::busybox();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/labs/restart-lab.sh");
    let out = Command::new(&script)
        .arg(chapter)
        .env("LAB_BIN", workspace_binary(package))
        .output()
        .expect("the lab runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the lab failed for chapter {chapter}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_lab_shows_a_chapter_02_container_dying_with_its_daemon() {
    let transcript = lab("02", "libcontainer-era");
    assert!(
        transcript.contains("RESULT: the container died with the daemon"),
        "{transcript}"
    );
    assert!(transcript.contains("Exited (?)"), "{transcript}");
}

#[test]
fn the_lab_shows_a_chapter_03_container_surviving_its_daemon() {
    let transcript = lab("03", "split-era");
    assert!(
        transcript.contains("RESULT: the container survived the daemon: same pid"),
        "{transcript}"
    );
    assert!(
        transcript.contains("its parent is: split-era shim"),
        "{transcript}"
    );
}

#[test]
fn the_supervisor_lab_shows_a_task_surviving_berth_containerd() {
    berth_tests::images::busybox();
    let bin = berth_tests::build::workspace_binary("berth-containerd");
    // The three binaries live side by side in the target directory.
    berth_tests::build::workspace_binary("berth-shim");
    berth_tests::build::workspace_binary("berth-runc");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/labs/supervisor-lab.sh");
    let out = Command::new(&script)
        .env("LAB_BIN_DIR", bin.parent().unwrap())
        .output()
        .expect("the lab runs");
    let transcript = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the supervisor lab failed:\n{transcript}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        transcript.contains("RESULT: the task survived the supervisor: same pid"),
        "{transcript}"
    );
    assert!(transcript.contains("its parent is: "), "{transcript}");
    assert!(transcript.contains("berth-shim"), "{transcript}");
}
