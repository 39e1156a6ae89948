//! Containers, tasks and events of berth-containerd, judged by the real `ctr`
//! (Debian's containerd 1.6) with real shims: berth's own (`io.containerd.berth.v2`)
//! and Debian's `containerd-shim-runc-v2` (`io.containerd.runc.v2`). Each test starts
//! its own instance; after each task nothing may be left: no shim, mount, bundle,
//! socket or process.

use std::process::Command;

use berth_tests::berth_containerd::{BerthContainerd, Events};
use berth_tests::peers::{output, run_ok};
use berth_tests::shim::wait_until;
use tempfile::TempDir;

const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "berth-tasks";
const RUNTIMES: [&str; 2] = ["io.containerd.berth.v2", "io.containerd.runc.v2"];

fn start() -> (TempDir, BerthContainerd) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(dir.path());
    daemon.import_busybox(NAMESPACE);
    (dir, daemon)
}

fn ctr(daemon: &BerthContainerd, args: &[&str]) -> String {
    run_ok(daemon.ctr(NAMESPACE).args(args))
}

/// `ctr run --runtime RUNTIME FLAGS IMAGE ID COMMAND...`, in the instance's cgroup.
fn run(daemon: &BerthContainerd, runtime: &str, flags: &[&str], id: &str, cmd: &[&str]) -> Command {
    let mut c = daemon.ctr(NAMESPACE);
    c.args(["run", "--runtime", runtime])
        .args(flags)
        .arg("--cgroup")
        .arg(daemon.cgroup_of(id))
        .arg("--fifo-dir")
        .arg(daemon.fifo_dir())
        .args([IMAGE, id])
        .args(cmd);
    c
}

/// The status `ctr task ls` shows for task `id`.
fn status(daemon: &BerthContainerd, id: &str) -> Option<String> {
    ctr(daemon, &["task", "ls"]).lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [task, _pid, status] if task == id => Some(status.to_owned()),
            _ => None,
        }
    })
}

fn wait_for_status(daemon: &BerthContainerd, id: &str, want: &str) {
    wait_until(&format!("task {id} is {want}"), || {
        status(daemon, id).as_deref() == Some(want)
    });
}

/// Only the image's own snapshot is left (a container's rootfs snapshot is gone).
fn assert_only_the_image_snapshot(daemon: &BerthContainerd) {
    let snapshots = ctr(daemon, &["snapshots", "ls"]);
    assert_eq!(snapshots.lines().skip(1).count(), 1, "{snapshots}");
    let containers = ctr(daemon, &["containers", "ls", "--quiet"]);
    assert_eq!(containers.trim(), "", "containers left: {containers}");
}

#[test]
fn ctr_run_attached_prints_the_output_and_exits_with_the_status_on_both_shims() {
    let (_dir, daemon) = start();
    for runtime in RUNTIMES {
        let hi = output(&mut run(&daemon, runtime, &["--rm"], "hi", &["echo", "hi"]));
        assert_eq!(hi.status, 0, "{runtime}: {hi}\n{}", daemon.log());
        assert_eq!(hi.stdout.trim(), "hi", "{runtime}: {hi}");

        let three = output(&mut run(
            &daemon,
            runtime,
            &["--rm"],
            "three",
            &["sh", "-c", "exit 3"],
        ));
        assert_eq!(three.status, 3, "{runtime}: {three}\n{}", daemon.log());

        assert_eq!(ctr(&daemon, &["task", "ls", "--quiet"]).trim(), "");
        assert_only_the_image_snapshot(&daemon);
        daemon.assert_clean();
    }
}

#[test]
fn a_detached_task_is_listed_execd_paused_killed_and_deleted_on_both_shims() {
    let (dir, daemon) = start();
    let events = Events::start(&daemon, NAMESPACE, dir.path().join("events"));
    for runtime in RUNTIMES {
        let id = format!("sleeper-{}", runtime.split('.').nth(2).unwrap());
        let id = id.as_str();
        run_ok(&mut run(&daemon, runtime, &["-d"], id, &["sleep", "1000"]));
        wait_for_status(&daemon, id, "RUNNING");
        events.wait_for(&["/tasks/start", id]);
        events.wait_for(&["/containers/create", id]);

        let mut exec = daemon.ctr(NAMESPACE);
        exec.args(["task", "exec", "--exec-id", "e1", "--fifo-dir"])
            .arg(daemon.fifo_dir())
            .args([id, "echo", "hello"]);
        assert_eq!(run_ok(&mut exec).trim(), "hello", "{runtime}");

        let ps = ctr(&daemon, &["task", "ps", id]);
        assert_eq!(ps.lines().skip(1).count(), 1, "{runtime}: {ps}");

        ctr(&daemon, &["task", "pause", id]);
        wait_for_status(&daemon, id, "PAUSED");
        ctr(&daemon, &["task", "resume", id]);
        wait_for_status(&daemon, id, "RUNNING");

        // A task that is running cannot be deleted.
        let refused = output(daemon.ctr(NAMESPACE).args(["task", "delete", id]));
        assert_ne!(refused.status, 0, "{runtime}: {refused}");

        ctr(&daemon, &["task", "kill", "--signal", "SIGKILL", id]);
        wait_for_status(&daemon, id, "STOPPED");
        events.wait_for(&["/tasks/exit", id]);
        ctr(&daemon, &["task", "delete", id]);
        assert_eq!(status(&daemon, id), None);
        // `ctr containers delete` removes the container's snapshot too.
        ctr(&daemon, &["containers", "delete", id]);
        events.wait_for(&["/containers/delete", id]);
        assert_only_the_image_snapshot(&daemon);
        daemon.assert_clean();
    }
}

#[test]
fn containers_are_records_that_keep_their_snapshot_from_the_collector() {
    let (_dir, daemon) = start();
    ctr(
        &daemon,
        &["containers", "create", "--label", "team=a", IMAGE, "rec"],
    );
    let listed = ctr(&daemon, &["containers", "ls"]);
    assert!(listed.contains("rec") && listed.contains(IMAGE), "{listed}");
    let info = ctr(&daemon, &["containers", "info", "rec"]);
    assert!(info.contains("\"team\": \"a\""), "{info}");
    ctr(&daemon, &["containers", "label", "rec", "team=b"]);
    assert!(ctr(&daemon, &["containers", "info", "rec"]).contains("\"team\": \"b\""));
    let again = output(
        daemon
            .ctr(NAMESPACE)
            .args(["containers", "create", IMAGE, "rec"]),
    );
    assert_ne!(again.status, 0, "a duplicate container id was accepted");
    assert!(again.stderr.contains("already exists"), "{again}");

    // The image goes; the container's rootfs snapshot (and so the layer under it) stays.
    ctr(&daemon, &["images", "rm", "--sync", IMAGE]);
    let snapshots = ctr(&daemon, &["snapshots", "ls"]);
    assert_eq!(snapshots.lines().skip(1).count(), 2, "{snapshots}");

    ctr(&daemon, &["containers", "delete", "rec"]);
    let missing = output(daemon.ctr(NAMESPACE).args(["containers", "info", "rec"]));
    assert_ne!(missing.status, 0, "{missing}");
    let no_task = output(daemon.ctr(NAMESPACE).args(["task", "start", "rec"]));
    assert_ne!(no_task.status, 0, "{no_task}");
}
