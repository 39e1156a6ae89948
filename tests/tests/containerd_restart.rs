//! berth-containerd restarted under its tasks, judged by the real `ctr` (Debian's
//! containerd 1.6) with both shims, berth's (`io.containerd.berth.v2`) and Debian's
//! `containerd-shim-runc-v2` (`io.containerd.runc.v2`), side by side in one instance.
//!
//! The shims outlive berth-containerd by design. After a SIGKILL or a clean stop, the
//! restarted one must find every task again (same pid, still running, still
//! answering exec and kill), report the ones that exited meanwhile with their status,
//! and clean up after a shim that died, while it was away or under it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::berth_containerd::{BerthContainerd, Events};
use berth_tests::peers::{output, run_ok};
use berth_tests::shim::{is_gone, wait_until};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "berth-restart";
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

/// A task id naming its shim: `counter-berth`, `counter-runc`.
fn id_for(prefix: &str, runtime: &str) -> String {
    format!("{prefix}-{}", runtime.split('.').nth(2).unwrap())
}

/// `ctr run -d --runtime RUNTIME` of `cmd` with `shared` bind-mounted at /shared.
fn run_detached(daemon: &BerthContainerd, runtime: &str, id: &str, shared: &Path, cmd: &str) {
    fs::create_dir_all(shared).unwrap();
    let bind = format!(
        "type=bind,src={},dst=/shared,options=rbind:rw",
        shared.display()
    );
    let mut c: Command = daemon.ctr(NAMESPACE);
    c.args(["run", "-d", "--runtime", runtime, "--mount", &bind])
        .arg("--cgroup")
        .arg(daemon.cgroup_of(id))
        .arg("--fifo-dir")
        .arg(daemon.fifo_dir())
        .args([IMAGE, id, "sh", "-c", cmd]);
    run_ok(&mut c);
}

/// The pid and status `ctr task ls` shows for task `id`.
fn task(daemon: &BerthContainerd, id: &str) -> Option<(i32, String)> {
    ctr(daemon, &["task", "ls"]).lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [task, pid, status] if task == id => Some((pid.parse().ok()?, status.to_owned())),
            _ => None,
        }
    })
}

fn wait_for_status(daemon: &BerthContainerd, id: &str, want: &str) {
    wait_until(&format!("task {id} is {want}"), || {
        task(daemon, id).is_some_and(|(_, status)| status == want)
    });
}

fn size(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits until `path` holds more than `len` bytes.
fn wait_for_growth(path: &Path, len: u64) {
    wait_until(
        &format!("{} grows past {len} bytes", path.display()),
        || size(path) > len,
    );
}

/// The task's exit status, by `ctr task attach` (which Waits), then the task and the
/// container are deleted.
fn exit_status_then_remove(daemon: &BerthContainerd, id: &str) -> i32 {
    let attached = output(daemon.ctr(NAMESPACE).args(["task", "attach", id]));
    // `ctr task delete` exits with the task's exit status: only the outcome counts.
    let _ = output(daemon.ctr(NAMESPACE).args(["task", "delete", id]));
    assert_eq!(task(daemon, id), None, "{id} was not deleted");
    ctr(daemon, &["containers", "delete", id]);
    attached.status
}

/// SIGKILLs the shim of task `id` and waits until it is gone.
fn kill_shim(daemon: &BerthContainerd, id: &str) {
    let shim = daemon.shim_pid_of(id).expect("the task has a shim");
    kill(Pid::from_raw(shim), Signal::SIGKILL).unwrap();
    wait_until(&format!("the shim of {id} is gone"), || is_gone(shim));
}

/// The line of berth-containerd's log that reports the cleanup after `id`'s dead
/// shim, without the log's colours.
fn cleanup_line(daemon: &BerthContainerd, id: &str) -> Option<String> {
    let plain = |line: &str| {
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find('\x1b') {
            out.push_str(&rest[..start]);
            rest = rest[start..].split_once('m').map_or("", |(_, after)| after);
        }
        out + rest
    };
    daemon.log().lines().map(plain).find(|l| {
        l.contains("cleaned up after the task's dead shim") && l.contains(&format!("id={id} "))
    })
}

// ANCHOR: restart_running
#[test]
fn running_tasks_come_back_after_a_sigkill_and_after_a_clean_stop_on_both_shims() {
    let (dir, mut daemon) = start();
    let mut tasks: Vec<(String, i32, PathBuf)> = Vec::new();
    for runtime in RUNTIMES {
        let id = id_for("counter", runtime);
        let shared = dir.path().join(&id);
        run_detached(
            &daemon,
            runtime,
            &id,
            &shared,
            "trap 'exit 7' TERM; while true; do echo tick >> /shared/ticks; sleep 0.1; done",
        );
        let (pid, _) = task(&daemon, &id).expect("the task is listed");
        let ticks = shared.join("ticks");
        wait_for_growth(&ticks, 0);
        tasks.push((id, pid, ticks));
    }

    for (round, crash) in [(1, true), (2, false)] {
        if crash {
            daemon.kill();
        } else {
            assert_eq!(daemon.stop(), Some(0), "a clean stop:\n{}", daemon.log());
        }
        // With berth-containerd gone the containers run on.
        for (_, _, ticks) in &tasks {
            wait_for_growth(ticks, size(ticks));
        }
        daemon.restart();
        for (id, pid, ticks) in &tasks {
            assert_eq!(
                task(&daemon, id),
                Some((*pid, "RUNNING".to_owned())),
                "round {round}:\n{}",
                daemon.log()
            );
            wait_for_growth(ticks, size(ticks));
            let mut exec = daemon.ctr(NAMESPACE);
            exec.args(["task", "exec", "--exec-id", &format!("after-{round}")])
                .arg("--fifo-dir")
                .arg(daemon.fifo_dir())
                .args([id, "echo", "still here"]);
            assert_eq!(run_ok(&mut exec).trim(), "still here", "{id}");
        }
    }

    for (id, _, _) in &tasks {
        ctr(&daemon, &["task", "kill", id]);
        wait_for_status(&daemon, id, "STOPPED");
        assert_eq!(exit_status_then_remove(&daemon, id), 7, "{id}");
    }
    daemon.assert_clean();
}
// ANCHOR_END: restart_running

#[test]
fn a_task_that_exits_during_the_outage_is_stopped_with_its_status_after_the_restart() {
    let (dir, mut daemon) = start();
    let mut tasks = Vec::new();
    for runtime in RUNTIMES {
        let id = id_for("leaver", runtime);
        let shared = dir.path().join(&id);
        run_detached(
            &daemon,
            runtime,
            &id,
            &shared,
            "while [ ! -e /shared/go ]; do sleep 0.05; done; exit 5",
        );
        wait_for_status(&daemon, &id, "RUNNING");
        let (pid, _) = task(&daemon, &id).unwrap();
        tasks.push((id, pid, shared));
    }

    daemon.kill();
    for (id, pid, shared) in &tasks {
        fs::write(shared.join("go"), "").unwrap();
        // The shim reaps the container with no berth-containerd to tell.
        wait_until(&format!("{id} has exited"), || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
    }

    daemon.restart();
    for (id, pid, _) in &tasks {
        assert_eq!(
            task(&daemon, id),
            Some((*pid, "STOPPED".to_owned())),
            "{}",
            daemon.log()
        );
        assert_eq!(exit_status_then_remove(&daemon, id), 5, "{id}");
    }
    daemon.assert_clean();
}

#[test]
fn a_shim_killed_during_the_outage_is_cleaned_up_at_the_restart() {
    let (dir, mut daemon) = start();
    let ids: Vec<String> = RUNTIMES.iter().map(|r| id_for("orphan", r)).collect();
    for (runtime, id) in RUNTIMES.iter().zip(&ids) {
        run_detached(&daemon, runtime, id, &dir.path().join(id), "sleep 1000");
        wait_for_status(&daemon, id, "RUNNING");
    }

    daemon.kill();
    for id in &ids {
        kill_shim(&daemon, id);
    }

    daemon.restart();
    // The cleanup (and its /tasks/exit) happens before the socket serves, so before
    // any `ctr events` could subscribe: the state and the log say what happened.
    for id in &ids {
        assert_eq!(task(&daemon, id), None, "{}", daemon.log());
        let line = cleanup_line(&daemon, id).unwrap_or_else(|| panic!("{}", daemon.log()));
        // Both shims' `delete` report a task that died with its shim as SIGKILLed.
        assert!(line.contains("exit_status=137"), "{line}");
        // The container (a record) stays; its task is gone.
        ctr(&daemon, &["containers", "delete", id]);
    }
    daemon.assert_clean();
}

#[test]
fn a_shim_that_dies_under_a_running_berth_containerd_is_cleaned_up_with_exit_events() {
    let (dir, daemon) = start();
    let events = Events::start(&daemon, NAMESPACE, dir.path().join("events"));
    for runtime in RUNTIMES {
        let id = id_for("abandoned", runtime);
        let id = id.as_str();
        run_detached(&daemon, runtime, id, &dir.path().join(id), "sleep 1000");
        wait_for_status(&daemon, id, "RUNNING");

        kill_shim(&daemon, id);
        events.wait_for(&["/tasks/exit", id, "\"exit_status\":137"]);
        events.wait_for(&["/tasks/delete", id]);
        assert_eq!(task(&daemon, id), None, "{}", daemon.log());
        ctr(&daemon, &["containers", "delete", id]);
        daemon.assert_clean();
    }
}
