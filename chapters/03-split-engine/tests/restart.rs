//! The claim this chapter exists to make: the daemon and the supervisor can die and
//! come back, and no container, no line of output and no exit status is lost.
//!
//! The containers here never run on a timer the test races against. Each waits for a
//! file the test creates in its rootfs (`/stop`) before it exits, so "exits later" and
//! "exits during the outage" are events the test causes, not guesses about timing.

use std::fs;
use std::path::{Path, PathBuf};

use berth_tests::chapter::{line_of, pid_of, text, unique_seconds, wait_for, Daemon};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_split-era");

/// A container printing `line N` every 100 ms until `/stop` appears, then exiting 7.
/// `token` is its `$1`, so the test can find its process.
fn counter(daemon: &Daemon, name: &str, token: &str) -> String {
    let script =
        "i=0; while [ ! -e /stop ]; do echo line $i; i=$((i+1)); usleep 100000; done; exit 7";
    let id = daemon.stdout(&[
        "run", "-d", "--name", name, "busybox", "sh", "-c", script, "counter", token,
    ]);
    id.trim().to_string()
}

fn root(daemon: &Daemon) -> PathBuf {
    daemon.root.path().join("root")
}

fn log_lines(daemon: &Daemon, id: &str) -> Vec<String> {
    let log = fs::read_to_string(root(daemon).join("containers").join(id).join("log"));
    log.unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pid_in(file: &Path) -> i32 {
    let pid = fs::read_to_string(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    pid.trim().parse().expect("a pid")
}

/// SIGKILLs the daemon, then the supervisor, and waits until both are gone.
fn kill_daemon_and_supervisor(daemon: &mut Daemon) {
    let supervisor = pid_in(&root(daemon).join("supervisor.pid"));
    daemon.signal(Signal::SIGKILL);
    kill(Pid::from_raw(supervisor), Signal::SIGKILL).expect("kill the supervisor");
    wait_for("the supervisor to die", || {
        // Gone, or a zombie its (dead) parent's reaper has not collected yet.
        let stat = fs::read_to_string(format!("/proc/{supervisor}/stat")).unwrap_or_default();
        stat.is_empty() || stat.contains(") Z ")
    });
}

fn stop_file(daemon: &Daemon, id: &str) -> PathBuf {
    root(daemon).join("containers").join(id).join("rootfs/stop")
}

// ANCHOR: outlives
#[test]
fn a_sigkilled_daemon_and_supervisor_lose_no_container_line_or_status() {
    let mut daemon = Daemon::start(BIN);
    daemon.load();
    let token = unique_seconds();
    let id = counter(&daemon, "counter", &token);
    wait_for("a few lines", || log_lines(&daemon, &id).len() >= 5);
    let pid = pid_of(&token).expect("the container runs");
    let old_supervisor = pid_in(&root(&daemon).join("supervisor.pid"));

    kill_daemon_and_supervisor(&mut daemon);
    // Output keeps flowing with no daemon and no supervisor: the shim holds the pipe.
    let before = log_lines(&daemon, &id).len();
    wait_for("lines written during the outage", || {
        log_lines(&daemon, &id).len() >= before + 3
    });

    daemon.restart();
    assert_ne!(
        pid_in(&root(&daemon).join("supervisor.pid")),
        old_supervisor,
        "the daemon started a new supervisor"
    );
    assert_eq!(pid_of(&token), Some(pid), "the same process still runs");
    let ps = daemon.stdout(&["ps"]);
    assert!(
        line_of(&ps, "counter").expect("listed").contains("Up"),
        "{ps}"
    );

    fs::write(stop_file(&daemon, &id), "").expect("create /stop");
    wait_for("the exit to be recorded", || {
        let ps = daemon.stdout(&["ps", "-a"]);
        line_of(&ps, "counter").is_some_and(|line| line.contains("Exited (7)"))
    });
    let lines = log_lines(&daemon, &id);
    let expected: Vec<String> = (0..lines.len()).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "every line, once, in order");
    assert_eq!(
        daemon.stdout(&["logs", "counter"]).lines().count(),
        lines.len()
    );
    daemon.stdout(&["rm", "counter"]);
}
// ANCHOR_END: outlives

#[test]
fn a_container_that_exits_while_the_daemons_are_down_reports_its_status() {
    let mut daemon = Daemon::start(BIN);
    daemon.load();
    let token = unique_seconds();
    let script = "echo started; while [ ! -e /stop ]; do usleep 20000; done; echo bye; exit 5";
    let id = daemon.stdout(&[
        "run", "-d", "--name", "brief", "busybox", "sh", "-c", script, "x", &token,
    ]);
    let id = id.trim();
    wait_for("the container to start", || {
        log_lines(&daemon, id) == ["started"]
    });
    let pid = pid_of(&token).expect("the container runs");

    kill_daemon_and_supervisor(&mut daemon);
    fs::write(stop_file(&daemon, id), "").expect("create /stop");
    // Gone from /proc, not merely a zombie: the shim has reaped it and kept its status.
    wait_for("the container to exit and be reaped", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });

    daemon.restart();
    // Nobody but the shim saw it exit; the new daemon asks the new supervisor at start.
    let ps = daemon.stdout(&["ps", "-a"]);
    let line = line_of(&ps, "brief").expect("listed");
    assert!(line.contains("Exited (5)"), "{ps}");
    assert_eq!(daemon.stdout(&["logs", "brief"]), "started\nbye\n");
    daemon.stdout(&["rm", "brief"]);
    assert!(
        !root(&daemon).join("tasks").join(id).exists(),
        "rm deletes the task"
    );
}

#[test]
fn a_clean_stop_of_the_daemon_leaves_its_containers_running() {
    let mut daemon = Daemon::start(BIN);
    daemon.load();
    let token = unique_seconds();
    let id = counter(&daemon, "kept", &token);
    wait_for("the container to start", || pid_of(&token).is_some());
    let pid = pid_of(&token);

    daemon.signal(Signal::SIGTERM);
    assert!(
        !root(&daemon).join("daemon.pid").exists(),
        "a clean stop removes the pid file"
    );
    assert_eq!(pid_of(&token), pid, "the container is untouched");

    daemon.restart();
    assert!(line_of(&daemon.stdout(&["ps"]), "kept").is_some());
    fs::write(stop_file(&daemon, &id), "").expect("create /stop");
    wait_for("the exit to be recorded", || {
        line_of(&daemon.stdout(&["ps", "-a"]), "kept").is_some_and(|l| l.contains("Exited (7)"))
    });
    daemon.stdout(&["rm", "kept"]);
}

/// The one loss the chapter cannot prevent: a shim that dies takes the exit status
/// with it. The engine says so and cleans up, and `rm` still works.
#[test]
fn a_dead_shim_is_cleaned_up_after_and_its_container_marked_unknown() {
    let mut daemon = Daemon::start(BIN);
    daemon.load();
    let token = unique_seconds();
    let id = counter(&daemon, "orphan", &token);
    wait_for("the container to start", || pid_of(&token).is_some());
    let task = root(&daemon).join("tasks").join(&id);
    let (container, shim) = (pid_in(&task.join("pid")), pid_in(&task.join("shim.pid")));

    kill_daemon_and_supervisor(&mut daemon);
    kill(Pid::from_raw(shim), Signal::SIGKILL).expect("kill the shim");
    kill(Pid::from_raw(container), Signal::SIGKILL).expect("kill the container");
    wait_for("the container to die", || pid_of(&token).is_none());

    daemon.restart();
    assert!(
        !task.exists(),
        "the new supervisor removed the dead shim's task"
    );
    let ps = daemon.stdout(&["ps", "-a"]);
    assert!(
        line_of(&ps, "orphan")
            .expect("listed")
            .contains("Exited (?)"),
        "{ps}"
    );
    daemon.stdout(&["rm", "orphan"]);
    assert!(line_of(&daemon.stdout(&["ps", "-a"]), "orphan").is_none());
}

#[test]
fn the_runtime_reports_a_broken_bundle_and_leaves_nothing_behind() {
    let bundle = tempfile::tempdir().expect("a bundle dir");
    let rootfs = bundle.path().join("rootfs");
    fs::create_dir(&rootfs).expect("the rootfs dir");
    let image = berth_tests::images::busybox();
    let layout = berth_oci::layout::Layout::open(&image.layout).expect("the test image");
    let busybox = layout.resolve(Some("latest")).expect("busybox:latest");
    berth_oci::unpack::unpack_image(&layout, &busybox, &rootfs).expect("unpack");
    for dir in ["proc", "dev"] {
        fs::create_dir_all(rootfs.join(dir)).expect("mount point");
    }
    let create = |id: &str| {
        std::process::Command::new(BIN)
            .args(["runtime", "create", "--bundle"])
            .arg(bundle.path())
            .arg("--pid-file")
            .arg(bundle.path().join("pid"))
            .arg(id)
            .output()
            .expect("the runtime runs")
    };

    fs::write(bundle.path().join("config.json"), "{ not json").expect("write");
    let out = create("broken-config");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("config.json"),
        "{}",
        text(&out.stderr)
    );

    let config =
        r#"{"hostname":"h","args":["/bin/true"],"env":["PATH=/bin"],"cwd":"/no/such/dir"}"#;
    fs::write(bundle.path().join("config.json"), config).expect("write");
    let id = format!("bad-cwd-{}", unique_seconds());
    let out = create(&id);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("changing to the working directory") && err.contains("No such file"),
        "{err}"
    );
    assert!(
        !bundle.path().join("pid").exists(),
        "no pid file for a failed create"
    );
    for hierarchy in ["memory", "pids", ""] {
        let cgroup = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join("berth-chapter03")
            .join(&id);
        assert!(!cgroup.exists(), "{cgroup:?} is removed after the failure");
    }
}
