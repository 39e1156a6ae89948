//! What containerd hears from berth-shim, judged by real containerd 1.6 and `ctr
//! events`: the task events the shim forwards, in the order things happened, and
//! what containerd does when a shim dies under it (it runs the shim binary's `delete`
//! action, then announces the task's exit itself).

use berth_tests::peers::{self, run_ok};
use berth_tests::shim::{is_gone, wait_until, Lab};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The index of the first line of `log` that has every one of `needles`.
fn first_line(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .position(|line| needles.iter().all(|n| line.contains(n)))
        .unwrap_or_else(|| panic!("no event with {needles:?}:\n{log}"))
}

/// Every task event the shim is responsible for, through the life of a task:
/// `/tasks/create`, `/tasks/start`, an exec's `/tasks/exec-added`,
/// `/tasks/exec-started` and `/tasks/exit`, `/tasks/paused`, `/tasks/resumed`, the
/// init's `/tasks/exit` and `/tasks/delete`, each naming the container, in order.
#[test]
fn the_shims_task_events_reach_ctr_events_in_order() {
    let lab = Lab::start();
    let id = "evented";
    let events = lab.events();
    run_ok(&mut lab.run(
        &["--detach"],
        id,
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    ));
    let out = peers::output(&mut lab.exec(&[], id, "probe", &["true"]));
    assert_eq!(out.status, 0, "{out}");
    run_ok(&mut lab.ctr(["task", "pause", id]));
    lab.wait_for_status(id, "PAUSED");
    run_ok(&mut lab.ctr(["task", "resume", id]));
    lab.wait_for_status(id, "RUNNING");
    run_ok(&mut lab.ctr(["task", "kill", id]));
    lab.wait_for_status(id, "STOPPED");
    run_ok(&mut lab.ctr(["task", "delete", id]));

    let container = format!("\"container_id\":\"{id}\"");
    let log = events.wait_for(&["/tasks/delete", &container]);
    drop(events);
    let init = format!("\"id\":\"{id}\"");
    let exec = "\"exec_id\":\"probe\"";
    let expected: [(&str, &[&str]); 9] = [
        ("/tasks/create", &[]),
        ("/tasks/start", &[]),
        ("/tasks/exec-added", &[exec]),
        ("/tasks/exec-started", &[exec]),
        ("/tasks/exit", &["\"id\":\"probe\""]),
        ("/tasks/paused", &[]),
        ("/tasks/resumed", &[]),
        ("/tasks/exit", &[init.as_str()]),
        ("/tasks/delete", &[]),
    ];
    let mut last = None;
    for (topic, extra) in expected {
        let mut needles = vec![format!(" {topic} "), container.clone()];
        needles.extend(extra.iter().map(|s| s.to_string()));
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let at = first_line(&log, &needles);
        assert!(
            last.is_none_or(|last| at > last),
            "{topic} ({needles:?}) out of order:\n{log}"
        );
        last = Some(at);
    }
    run_ok(&mut lab.ctr(["container", "delete", id]));
    lab.assert_clean();
}

/// A shim SIGKILLed under a running containerd: containerd sees its ttrpc connection
/// close and cleans up after it (`cleanupAfterDeadShim` in containerd 1.6's
/// runtime/v2): it runs `containerd-shim-berth-v2 ... -id ID -bundle B delete`, whose
/// DeleteResponse gives the exit it announces, removes the bundle and forgets the
/// task. The delete action must leave nothing: the container killed (`runtime delete
/// --force`), its rootfs unmounted, the dead shim's socket removed.
#[test]
fn a_dead_shims_container_is_cleaned_up_by_the_delete_action() {
    let lab = Lab::start();
    let id = "orphan";
    let events = lab.events();
    run_ok(&mut lab.run(&["--detach"], id, &["sleep", "1000"]));
    let (pid, _) = lab.task(id).expect("the task is listed");
    let shims = lab.shim_pids();
    assert_eq!(shims.len(), 1, "one shim per container");

    kill(Pid::from_raw(shims[0]), Signal::SIGKILL).unwrap();
    // containerd publishes the exit from the delete action's DeleteResponse.
    let container = format!("\"container_id\":\"{id}\"");
    let log = events.wait_for(&["/tasks/exit", &container]);
    drop(events);
    let exit = log
        .lines()
        .nth(first_line(&log, &["/tasks/exit", &container]));
    assert!(
        exit.is_some_and(|line| line.contains("\"exit_status\":137")),
        "the exit is SIGKILL's, as the delete action reports it:\n{log}"
    );
    assert!(
        exit.is_some_and(|line| line.contains(&format!("\"pid\":{pid}"))),
        "the exit names the container's init, read back from the bundle:\n{log}"
    );
    wait_until("containerd has forgotten the task", || {
        lab.task(id).is_none_or(|(_, status)| status == "STOPPED")
    });
    wait_until("the container's process is gone", || is_gone(pid));
    let bundle = lab.bundle(id);
    wait_until("containerd has removed the bundle", || !bundle.exists());

    let containerd_log = lab.containerd.log();
    assert!(
        containerd_log.contains("cleaning up after shim disconnected"),
        "containerd never cleaned up after the shim:\n{containerd_log}"
    );
    for failure in [
        "failed to clean up after shim disconnected",
        "cleanup warnings",
        "failed to delete",
    ] {
        assert!(
            !containerd_log.contains(failure),
            "the delete action failed ({failure:?}):\n{containerd_log}"
        );
    }
    assert!(is_gone(shims[0]), "the shim is dead");
    let _ = peers::output(&mut lab.ctr(["task", "delete", id]));
    run_ok(&mut lab.ctr(["container", "delete", id]));
    lab.assert_clean();
}
