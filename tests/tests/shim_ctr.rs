//! The shim seam, judged by real containerd: containerd 1.6 (Debian's) runs every
//! container of these tests through berth-shim, as runtime `io.containerd.berth.v2`,
//! and `ctr` drives it. What a user of `ctr` sees must be what they would see with
//! containerd's own shim: output, exit codes, task states, ttys, errors.
//!
//! Each test starts its own containerd (own root, state, sockets, cgroup; see
//! `berth_tests::peers`) with a directory holding `containerd-shim-berth-v2` (a
//! symlink to the freshly built berth-shim) first on its PATH. berth-shim finds
//! berth-runc next to its own binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::images::busybox;
use berth_tests::peers::{self, require, run_ok, Containerd};
use berth_tests::runtime::Outcome;
use berth_tests::shim::memory_kb;
use tempfile::TempDir;

const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "berth-shim";
const RUNTIME: &str = "io.containerd.berth.v2";

/// A containerd that runs containers through berth-shim.
struct Lab {
    containerd: Containerd,
    dir: TempDir,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let bin = berth_tests::shim::install(dir.path(), None);
        let containerd = Containerd::start_with_path(&dir.path().join("c"), Some(&bin));
        let archive = busybox().archive.to_str().unwrap().to_owned();
        run_ok(
            containerd
                .ctr(NAMESPACE)
                .args(["images", "import", &archive]),
        );
        Lab { containerd, dir }
    }

    fn ctr<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = self.containerd.ctr(NAMESPACE);
        cmd.args(args);
        cmd
    }

    /// `ctr run --runtime io.containerd.berth.v2 FLAGS IMAGE ID COMMAND...`.
    fn run(&self, flags: &[&str], id: &str, command: &[&str]) -> Command {
        let mut cmd = self.ctr(["run", "--runtime", RUNTIME]);
        cmd.args(flags)
            .arg("--cgroup")
            .arg(format!("{}/{id}", self.containerd.cgroup_parent().path()))
            .arg("--fifo-dir")
            .arg(self.containerd.fifo_dir())
            .args([IMAGE, id])
            .args(command);
        cmd
    }

    /// `ctr task exec --exec-id EXEC_ID FLAGS ID COMMAND...`.
    fn exec(&self, flags: &[&str], id: &str, exec_id: &str, command: &[&str]) -> Command {
        let mut cmd = self.ctr(["task", "exec", "--exec-id", exec_id]);
        cmd.arg("--fifo-dir")
            .arg(self.containerd.fifo_dir())
            .args(flags)
            .arg(id)
            .args(command);
        cmd
    }

    /// The task's pid and status as `ctr task ls` shows them.
    fn task(&self, id: &str) -> Option<(i32, String)> {
        let listed = run_ok(&mut self.ctr(["task", "ls"]));
        listed.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [task, pid, status] if task == id => Some((pid.parse().ok()?, status.into())),
                _ => None,
            }
        })
    }

    fn wait_for_status(&self, id: &str, status: &str) {
        wait_until(&format!("task {id} is {status}"), || {
            self.task(id).is_some_and(|(_, now)| now == status)
        });
    }

    /// The shims serving this containerd: processes whose command line names its dir.
    fn shim_pids(&self) -> Vec<i32> {
        processes_naming(self.containerd.dir())
            .into_iter()
            .filter(|(_, cmdline)| {
                cmdline.contains("containerd-shim-berth-v2") || cmdline.contains("berth-shim")
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Mounts left below this containerd's directory.
    fn mounts(&self) -> Vec<String> {
        let dir = self.containerd.dir().to_str().unwrap().to_owned();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|point| point.starts_with(&dir))
            .map(str::to_owned)
            .collect()
    }

    /// Shim sockets left beside containerd's (`s/<hash>`).
    fn sockets(&self) -> Vec<PathBuf> {
        fs::read_dir(self.containerd.dir().join("s"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// The exit status of a stopped task, then the task and container removed; then
    /// nothing may be left: no shim, no mount, no socket, no cgroup.
    ///
    /// `ctr task attach` is how `ctr` 1.6 shows an exit status: it asks the shim to
    /// Wait (which, for a stopped task, answers at once with the status the shim kept),
    /// exits with that status, and deletes the task.
    fn exit_status_then_remove(&self, id: &str) -> i32 {
        let out = peers::output(&mut self.ctr(["task", "attach", id]));
        let _ = peers::output(&mut self.ctr(["task", "delete", id]));
        run_ok(&mut self.ctr(["container", "delete", id]));
        self.assert_clean();
        out.status
    }

    fn assert_clean(&self) {
        wait_until("every shim has exited", || self.shim_pids().is_empty());
        assert_eq!(self.mounts(), Vec::<String>::new(), "mounts left behind");
        assert_eq!(
            self.sockets(),
            Vec::<PathBuf>::new(),
            "shim sockets left behind"
        );
        let cgroups = self.containerd.cgroup_parent().children();
        assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    }
}

/// `(pid, command line)` of every process whose command line names a path below `dir`.
fn processes_naming(dir: &Path) -> Vec<(i32, String)> {
    let needle = format!("{}/", dir.display());
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then_some((pid, cmdline))
        })
        .collect()
}

/// Polls `check` every 20 ms until it returns true; panics with `what` after 20 s.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctr_run_attached_gets_the_output_and_the_exit_code() {
    let lab = Lab::start();
    let out = peers::output(&mut lab.run(
        &["--rm"],
        "attached",
        &[
            "sh",
            "-c",
            "echo hello from berth-shim; echo to stderr >&2; exit 3",
        ],
    ));
    assert_eq!(
        out.status,
        3,
        "the exit status must come back:\n{out}\n{}",
        lab.containerd.log()
    );
    assert_eq!(out.stdout, "hello from berth-shim\n", "{out}");
    assert_eq!(out.stderr, "to stderr\n", "{out}");
    lab.assert_clean();
    drop(lab.dir);
}

#[test]
fn ctr_task_lifecycle_detached() {
    let lab = Lab::start();
    let id = "detached";
    // Init exits 0 on SIGTERM: as pid 1 of its namespace it would ignore it otherwise.
    run_ok(&mut lab.run(
        &["--detach"],
        id,
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    ));
    let (pid, status) = lab.task(id).expect("the task is listed");
    assert_eq!(status, "RUNNING");
    let shims = lab.shim_pids();
    assert_eq!(shims.len(), 1, "one shim per container");
    let (rss, pss) = memory_kb(shims[0]);
    eprintln!("berth-shim memory: {rss} kB RSS, {pss} kB PSS");

    let out =
        peers::output(&mut lab.exec(&[], id, "hello", &["sh", "-c", "echo from exec; exit 4"]));
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (4, "from exec\n"),
        "{out}"
    );

    // `ctr task ps` is the runtime's `ps --format json`, exec ids added by the shim.
    run_ok(&mut lab.exec(&["--detach"], id, "sleeper", &["sleep", "1000"]));
    let ps = run_ok(&mut lab.ctr(["task", "ps", id]));
    assert!(ps.contains(&pid.to_string()), "init missing from ps:\n{ps}");
    assert!(ps.contains("sleeper"), "the exec missing from ps:\n{ps}");

    run_ok(&mut lab.ctr(["task", "pause", id]));
    lab.wait_for_status(id, "PAUSED");
    run_ok(&mut lab.ctr(["task", "resume", id]));
    lab.wait_for_status(id, "RUNNING");

    let metrics = run_ok(&mut lab.ctr(["task", "metrics", id]));
    assert!(metrics.contains("pids.current"), "{metrics}");

    run_ok(&mut lab.ctr(["task", "kill", id]));
    lab.wait_for_status(id, "STOPPED");
    assert_eq!(lab.exit_status_then_remove(id), 0);
}

/// `command` as one line for `sh -c`, each word single-quoted.
fn shell_line(command: &Command) -> String {
    let quote =
        |word: &std::ffi::OsStr| format!("'{}'", word.to_string_lossy().replace('\'', r"'\''"));
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with a terminal: under `script`, which gives it a pty as its
/// stdio, as an interactive shell would, and exits with its status (`--return`).
fn with_tty(command: &Command) -> Outcome {
    peers::output(
        Command::new(require("script"))
            .args(["--quiet", "--return", "--command"])
            .arg(shell_line(command))
            .arg("/dev/null"),
    )
}

#[test]
fn ctr_run_with_a_tty_gets_a_pty_from_the_shim() {
    let lab = Lab::start();
    // The shim passes --console-socket, receives the pty master and copies it to ctr.
    let out = with_tty(&lab.run(&["--rm", "--tty"], "tty", &["sh", "-c", "tty; exit 5"]));
    assert_eq!(out.status, 5, "{out}");
    assert!(
        out.stdout.contains("/dev/pts/0"),
        "no tty in the container:\n{out}"
    );

    run_ok(&mut lab.run(&["--detach"], "web", &["sleep", "1000"]));
    let out = with_tty(&lab.exec(&["--tty"], "web", "tty", &["sh", "-c", "tty; exit 6"]));
    assert_eq!(out.status, 6, "{out}");
    assert!(
        out.stdout.contains("/dev/pts/"),
        "no tty for the exec:\n{out}"
    );
    run_ok(&mut lab.ctr(["task", "kill", "--signal", "KILL", "web"]));
    lab.wait_for_status("web", "STOPPED");
    assert_eq!(lab.exit_status_then_remove("web"), 137);
}

/// A `ctr run --mount` of `dir` at /shared in the container.
fn bind(dir: &Path) -> String {
    format!(
        "type=bind,src={},dst=/shared,options=rbind:rw",
        dir.display()
    )
}

/// Waits until `path` holds more than `len` bytes.
fn wait_for_growth(path: &Path, len: u64) {
    wait_until(
        &format!("{} grows past {len} bytes", path.display()),
        || fs::metadata(path).is_ok_and(|m| m.len() > len),
    );
}

// ANCHOR: restart_running
#[test]
fn a_task_survives_containerd_being_killed() {
    let mut lab = Lab::start();
    let id = "survivor";
    let shared = lab.dir.path().join("shared");
    fs::create_dir_all(&shared).unwrap();
    let log = shared.join("ticks");
    run_ok(&mut lab.run(
        &["--detach", "--mount", &bind(&shared)],
        id,
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; while true; do echo tick >> /shared/ticks; sleep 0.1; done",
        ],
    ));
    let (pid, _) = lab.task(id).expect("the task is listed");
    wait_for_growth(&log, 0);

    lab.containerd.kill();
    // With containerd gone the container runs on.
    let len = fs::metadata(&log).unwrap().len();
    wait_for_growth(&log, len);
    assert_eq!(lab.shim_pids().len(), 1, "the shim outlives containerd");

    lab.containerd.restart();
    assert_eq!(
        lab.task(id),
        Some((pid, "RUNNING".into())),
        "{}",
        lab.containerd.log()
    );
    let out = peers::output(&mut lab.exec(&[], id, "after", &["echo", "still here"]));
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (0, "still here\n"),
        "{out}"
    );

    run_ok(&mut lab.ctr(["task", "kill", id]));
    lab.wait_for_status(id, "STOPPED");
    assert_eq!(
        lab.exit_status_then_remove(id),
        7,
        "the exit status comes back"
    );
}
// ANCHOR_END: restart_running

#[test]
fn an_exit_during_the_outage_is_kept_for_the_restarted_containerd() {
    let mut lab = Lab::start();
    let id = "leaver";
    let shared = lab.dir.path().join("shared");
    fs::create_dir_all(&shared).unwrap();
    run_ok(&mut lab.run(
        &["--detach", "--mount", &bind(&shared)],
        id,
        &[
            "sh",
            "-c",
            "while [ ! -e /shared/go ]; do sleep 0.05; done; exit 5",
        ],
    ));
    let (pid, _) = lab.task(id).expect("the task is listed");

    lab.containerd.kill();
    fs::write(shared.join("go"), "").unwrap();
    // The shim reaps the container while no containerd is there to hear of it.
    wait_until("the container has exited", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });

    lab.containerd.restart();
    assert_eq!(
        lab.task(id),
        Some((pid, "STOPPED".into())),
        "{}",
        lab.containerd.log()
    );
    assert_eq!(
        lab.exit_status_then_remove(id),
        5,
        "the exit status was kept"
    );
}

/// A runtime config file for `ctr run --runtime-config-path`, naming the runtime binary.
fn runtime_config(lab: &Lab, name: &str, binary: &str) -> PathBuf {
    let path = lab.dir.path().join(name);
    fs::write(&path, format!("BinaryName = \"{binary}\"\n")).unwrap();
    path
}

#[test]
fn berth_shim_runs_the_real_runc() {
    let lab = Lab::start();
    let config = runtime_config(&lab, "runc.toml", "/usr/sbin/runc");
    let config = config.to_str().unwrap();
    let out = peers::output(&mut lab.run(
        &["--rm", "--runtime-config-path", config],
        "by-runc",
        &["sh", "-c", "echo hello from runc; exit 2"],
    ));
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (2, "hello from runc\n"),
        "{out}"
    );

    let id = "runc-detached";
    run_ok(&mut lab.run(
        &["--detach", "--runtime-config-path", config],
        id,
        &["sleep", "1000"],
    ));
    // runc's state, not berth-runc's: runc keeps state.json in its root.
    let root = lab
        .containerd
        .dir()
        .join("state/runc")
        .join(NAMESPACE)
        .join(id);
    assert!(
        root.join("state.json").is_file(),
        "no runc state in {}",
        root.display()
    );
    let out = peers::output(&mut lab.exec(&[], id, "e", &["sh", "-c", "echo exec; exit 3"]));
    assert_eq!((out.status, out.stdout.as_str()), (3, "exec\n"), "{out}");
    run_ok(&mut lab.ctr(["task", "pause", id]));
    lab.wait_for_status(id, "PAUSED");
    run_ok(&mut lab.ctr(["task", "resume", id]));
    let metrics = run_ok(&mut lab.ctr(["task", "metrics", id]));
    assert!(metrics.contains("pids.current"), "{metrics}");
    run_ok(&mut lab.ctr(["task", "kill", "--signal", "KILL", id]));
    lab.wait_for_status(id, "STOPPED");
    assert_eq!(lab.exit_status_then_remove(id), 137);
}

#[test]
fn a_missing_runtime_binary_is_named_in_the_error() {
    let lab = Lab::start();
    let config = runtime_config(&lab, "missing.toml", "/nonexistent/berth-runtime");
    let out = peers::output(&mut lab.run(
        &["--rm", "--runtime-config-path", config.to_str().unwrap()],
        "no-runtime",
        &["true"],
    ));
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr
            .contains("runtime binary \"/nonexistent/berth-runtime\" not found"),
        "the shim's reason must reach ctr:\n{out}"
    );
    let _ = peers::output(&mut lab.ctr(["container", "delete", "no-runtime"]));
    lab.assert_clean();
}

#[test]
fn a_bad_spec_fails_create_with_the_runtimes_reason() {
    let lab = Lab::start();
    // A spec whose root filesystem does not exist: the runtime refuses it at create.
    let spec = run_ok(&mut lab.ctr(["oci", "spec"]));
    let mut spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    spec["root"]["path"] = "/nonexistent-berth-rootfs".into();
    spec["process"]["args"] = serde_json::json!(["true"]);
    let file = lab.dir.path().join("config.json");
    fs::write(&file, spec.to_string()).unwrap();
    let out = peers::output(
        lab.ctr(["run", "--runtime", RUNTIME, "--rm", "--config"])
            .arg(&file)
            .arg("--cgroup")
            .arg(format!("{}/bad", lab.containerd.cgroup_parent().path()))
            .arg("--fifo-dir")
            .arg(lab.containerd.fifo_dir())
            .arg("bad"),
    );
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("nonexistent-berth-rootfs"),
        "the runtime's reason must reach ctr:\n{out}"
    );
    let _ = peers::output(&mut lab.ctr(["container", "delete", "bad"]));
    lab.assert_clean();
}

#[test]
fn an_exec_of_a_missing_program_fails_with_the_reason() {
    let lab = Lab::start();
    let id = "exec-missing";
    run_ok(&mut lab.run(&["--detach"], id, &["sleep", "1000"]));
    let out = peers::output(&mut lab.exec(&[], id, "nope", &["no-such-program-here"]));
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("no-such-program-here"),
        "the reason must reach ctr:\n{out}"
    );
    // The task is unharmed, and the failed exec is gone.
    assert_eq!(lab.task(id).map(|t| t.1), Some("RUNNING".into()));
    let out = peers::output(&mut lab.exec(&[], id, "nope", &["true"]));
    assert_eq!(out.status, 0, "the exec id is free again:\n{out}");
    run_ok(&mut lab.ctr(["task", "kill", "--signal", "KILL", id]));
    lab.wait_for_status(id, "STOPPED");
    assert_eq!(lab.exit_status_then_remove(id), 137);
}

/// A container that outgrows its memory limit is killed by the kernel's OOM killer;
/// the shim hears it from the memory cgroup and tells containerd (`/tasks/oom`), before
/// the exit (status 137, SIGKILL's) of the process the OOM killer took.
#[test]
fn an_oom_kill_is_a_task_oom_event_then_exit_status_137() {
    let lab = Lab::start();
    let id = "oom";
    // `ctr events` prints each event as one line; into a file, not a pipe (see
    // `peers::output`). It is subscribed once it shows an event the test causes.
    let log = lab.dir.path().join("events");
    let mut events = lab
        .ctr(["events"])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = || fs::read_to_string(&log).unwrap_or_default();
    wait_until("`ctr events` is subscribed", || {
        let _ = peers::output(&mut lab.ctr(["namespaces", "label", NAMESPACE, "oom=test"]));
        seen().contains("/namespaces/update")
    });

    // `tail` keeps the last line of a stream that has no line end: all of /dev/zero.
    let out = peers::output(&mut lab.run(
        &["--rm", "--memory-limit", "16777216"],
        id,
        &["sh", "-c", "tail /dev/zero"],
    ));
    wait_until("the task's events are shown", || {
        seen().contains("/tasks/delete")
    });
    let _ = events.kill();
    let _ = events.wait();
    let log = seen();
    assert_eq!(out.status, 137, "{out}\n{log}\n{}", lab.containerd.log());
    let position = |topic: &str| {
        log.lines()
            .position(|line| line.contains(topic) && line.contains(&format!("\"{id}\"")))
            .unwrap_or_else(|| panic!("no {topic} event for {id}:\n{log}"))
    };
    assert!(
        position("/tasks/oom") < position("/tasks/exit"),
        "the OOM is announced before the exit:\n{log}"
    );
    lab.assert_clean();
}
