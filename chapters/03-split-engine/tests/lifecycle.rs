//! What the chapter keeps from chapter 02, checked against a real daemon on a temporary
//! root, driven by the real binary as a client: the same commands, output, exit codes
//! and errors, now across four processes. Needs root; no external tool. The restart
//! claims are in `restart.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::chapter::{line_of, pid_of, process_with, text, unique_seconds, wait_for, Daemon};

const BIN: &str = env!("CARGO_BIN_EXE_split-era");

#[test]
fn run_prints_the_output_and_exits_with_the_code() {
    let daemon = Daemon::start(BIN);
    daemon.load();
    assert!(daemon.stdout(&["images"]).contains("busybox"));
    let out = daemon.ok(&[
        "run",
        "--name",
        "hi",
        "busybox",
        "sh",
        "-c",
        "echo hello; hostname; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("hello\n"), "{stdout}");
    assert_eq!(daemon.stdout(&["logs", "hi"]), stdout);
    let ps = daemon.stdout(&["ps", "-a"]);
    assert!(
        line_of(&ps, "hi").expect("listed").contains("Exited (3)"),
        "{ps}"
    );
}

#[test]
fn stop_then_rm() {
    let daemon = Daemon::start(BIN);
    daemon.load();
    let seconds = unique_seconds();
    let id = daemon.stdout(&["run", "-d", "--name", "web", "busybox", "sleep", &seconds]);
    assert_eq!(id.trim().len(), 32, "run -d prints the id: {id}");
    wait_for("the container to start", || process_with(&seconds));
    assert!(daemon
        .fails(&["rm", "web"])
        .contains("is running; stop it first"));

    daemon.stdout(&["stop", "web"]);
    assert!(
        !process_with(&seconds),
        "stop returned before the container died"
    );
    assert!(line_of(&daemon.stdout(&["ps"]), "web").is_none());
    assert!(daemon.fails(&["stop", "web"]).contains("is not running"));

    daemon.stdout(&["rm", "web"]);
    assert!(line_of(&daemon.stdout(&["ps", "-a"]), "web").is_none());
    assert!(!Path::new(&daemon.root.path().join("root/containers").join(id.trim())).exists());
    assert!(daemon
        .fails(&["logs", "web"])
        .contains("no such container \"web\""));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let daemon = Daemon::start(BIN);
    daemon.load();
    let err = daemon.fails(&["run", "nosuchimage", "true"]);
    assert!(
        err.contains("no such image \"nosuchimage\"") && err.contains("split-era load"),
        "{err}"
    );

    let err = daemon.fails(&["run", "busybox", "no-such-program"]);
    assert!(
        err.contains("command \"no-such-program\" not found in the image"),
        "{err}"
    );

    daemon.stdout(&["run", "--name", "taken", "busybox", "true"]);
    let err = daemon.fails(&["run", "--name", "taken", "busybox", "true"]);
    assert!(err.contains("name \"taken\" is already in use"), "{err}");

    // Failed runs leave no container behind.
    let all = daemon.stdout(&["ps", "-a"]);
    assert_eq!(
        all.lines().count(),
        2,
        "only the header and \"taken\": {all}"
    );
}

#[test]
fn a_client_without_a_daemon_says_how_to_start_one() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("ps")
        .output()
        .expect("the client runs");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("split-era daemon --root"),
        "{}",
        text(&out.stderr)
    );
}

/// One `run` is one trace across all five processes: client, daemon, supervisor, shim
/// and runtime, each hop parented by the one before.
#[test]
fn a_run_is_one_trace_across_every_process() {
    let receiver = berth_tests::otlp::Receiver::start();
    let endpoint = (
        "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
        receiver.endpoint.clone(),
    );
    let daemon = Daemon::start_with_env(BIN, vec![endpoint]);
    daemon.load();
    daemon.stdout(&["run", "--name", "traced", "busybox", "true"]);

    let services = [
        "split-era",
        "split-era-daemon",
        "split-era-supervisor",
        "split-era-shim",
        "split-era-runtime",
    ];
    let exports = receiver.collect_until(|spans| {
        let Some(create) = spans.iter().find(|s| s.name == "runtime create") else {
            return false;
        };
        services.iter().all(|service| {
            spans
                .iter()
                .any(|s| s.service == *service && s.trace_id == create.trace_id)
        })
    });
    let spans: Vec<_> = exports.iter().flat_map(|e| e.spans()).collect();
    let create = spans
        .iter()
        .find(|s| s.name == "runtime create")
        .expect("the runtime's span");
    // Walk from the runtime's span up to the client's: every parent is in the trace.
    let mut chain = vec![create.service.clone()];
    let mut span = create;
    while let Some(parent) = spans.iter().find(|s| s.span_id == span.parent_span_id) {
        assert_eq!(parent.trace_id, create.trace_id);
        if chain.last() != Some(&parent.service) {
            chain.push(parent.service.clone());
        }
        span = parent;
    }
    chain.reverse();
    assert_eq!(
        chain, services,
        "the runtime's ancestry crosses every process in order"
    );
}

/// What the runtime builds: the command is PID 1 of its own PID namespace, the
/// hostname is the short id, `/proc` and `/dev` are the container's, the network has
/// only `lo`, the container sits in its cgroups until `rm`, and its parent is its shim.
#[test]
fn the_container_gets_its_own_namespaces_and_cgroups() {
    let daemon = Daemon::start(BIN);
    daemon.load();
    let script = "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; \
                  echo x > /dev/null && ls /dev; ls /sys/class/net 2>/dev/null || cat /proc/net/dev";
    let out = daemon.ok(&["run", "--name", "iso", "busybox", "sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "pid=1", "{stdout}");
    assert_eq!(lines[1].len(), 12, "the hostname is the short id: {stdout}");
    assert!(
        lines[2].parse::<u32>().expect("a count") <= 3,
        "/proc shows only the container: {stdout}"
    );
    for device in ["null", "urandom", "zero"] {
        assert!(lines.contains(&device), "/dev/{device}: {stdout}");
    }
    assert!(!stdout.contains("eth0"), "only lo: {stdout}");

    let seconds = unique_seconds();
    let id = daemon.stdout(&[
        "run", "-d", "--name", "limited", "busybox", "sleep", &seconds,
    ]);
    let id = id.trim();
    wait_for("the container to start", || process_with(&seconds));
    let pid = pid_of(&seconds).expect("the container's pid");
    let task = daemon.root.path().join("root/tasks").join(id);
    let recorded = fs::read_to_string(task.join("pid")).expect("the pid file");
    assert_eq!(recorded.trim(), pid.to_string());
    let parent = fs::read_to_string(format!("/proc/{pid}/stat")).expect("its stat");
    // `pid (comm) state ppid ...`: the comm may hold spaces, so split after the `)`.
    let ppid = parent
        .rsplit_once(") ")
        .expect("a stat line")
        .1
        .split(' ')
        .nth(1);
    let shim = fs::read_to_string(task.join("shim.pid")).expect("the shim's pid");
    assert_eq!(
        ppid,
        Some(shim.trim()),
        "the shim is the container's parent"
    );
    let cgroups = [
        "/sys/fs/cgroup/memory/berth-chapter03",
        "/sys/fs/cgroup/pids/berth-chapter03",
        "/sys/fs/cgroup/berth-chapter03",
    ];
    let mine: Vec<PathBuf> = cgroups
        .iter()
        .map(|parent| Path::new(parent).join(id))
        .filter(|dir| dir.exists())
        .collect();
    assert!(!mine.is_empty(), "the container has a cgroup");
    for dir in &mine {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
        assert!(!procs.trim().is_empty(), "{dir:?} holds the container");
    }
    let limit = mine.iter().find_map(|dir| {
        fs::read_to_string(dir.join("memory.limit_in_bytes"))
            .or_else(|_| fs::read_to_string(dir.join("memory.max")))
            .ok()
    });
    assert_eq!(limit.as_deref().map(str::trim), Some("268435456"));
    daemon.stdout(&["stop", "limited"]);
    daemon.stdout(&["rm", "limited"]);
    for dir in &mine {
        assert!(!dir.exists(), "{dir:?} is removed with the container");
    }
}
