//! The runtime seam, judged by the real engine: containerd's own shim
//! (containerd-shim-runc-v2, driven by `ctr`) and dockerd (`--add-runtime`) run
//! containers with berth-runc in runc's place, without knowing the difference.
//!
//! Each test starts its own isolated peer (see `berth_tests::peers`), points it at
//! berth-runc, and checks what a user of the real tools would see: output, exit
//! codes, task states, ttys. It also checks that berth-runc really did the work: the
//! state file the shim's runtime left is berth's ([`State`], with `pid_start_time`),
//! which runc's is not.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_libcontainer::state::{Root, State, Status};
use berth_tests::images::busybox;
use berth_tests::peers::{self, require, run_ok, Containerd, Dockerd};
use berth_tests::runtime::{berth_runc, Outcome};
use berth_tests::shim::wait_until;
use tempfile::TempDir;

/// The image as `ctr images import` names it.
const IMAGE: &str = "docker.io/library/busybox:latest";
/// The containerd namespace the ctr tests work in.
const NAMESPACE: &str = "berth-swap";

/// berth-runc's state file for container `id` under a runtime root, parsed as berth's
/// own [`State`]: proof that berth-runc, not runc, created the container (runc's
/// `state.json` has `init_process_pid` and no `pid_start_time`, and does not parse).
fn berth_state(root: &Path, id: &str) -> State {
    Root(root.to_owned()).load(id).unwrap_or_else(|e| {
        let listing = fs::read_dir(root)
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default();
        panic!(
            "no berth-runc state for {id} in {}: {e}\n(it holds {listing:?})",
            root.display()
        )
    })
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

// ---------------------------------------------------------------------------------
// containerd + containerd-shim-runc-v2 -> berth-runc

/// A containerd whose runc shim is told, container by container, to run berth-runc.
///
/// containerd 1.6 has no configuration that sets the runc shim's binary for clients
/// other than Kubernetes' CRI plugin: the binary is a runtime option of each
/// container, which `ctr run --runc-binary` sets (as dockerd does for its runtimes).
struct ShimSwap {
    containerd: Containerd,
    /// The shim's `--root` for the runtime (`ctr run --runc-root`); the shim adds the
    /// namespace, so berth-runc's state for container ID is in `<runc_root>/<ns>/ID`.
    runc_root: PathBuf,
    _dir: TempDir,
}

impl ShimSwap {
    fn start() -> ShimSwap {
        let dir = tempfile::tempdir().unwrap();
        let containerd = Containerd::start(dir.path());
        let archive = busybox().archive.to_str().unwrap().to_owned();
        run_ok(
            containerd
                .ctr(NAMESPACE)
                .args(["images", "import", &archive]),
        );
        ShimSwap {
            runc_root: dir.path().join("runc"),
            containerd,
            _dir: dir,
        }
    }

    fn ctr<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = self.containerd.ctr(NAMESPACE);
        cmd.args(args);
        cmd
    }

    /// `ctr run FLAGS --runc-binary berth-runc ... IMAGE ID COMMAND...`.
    fn run(&self, flags: &[&str], id: &str, command: &[&str]) -> Command {
        let mut cmd = self.ctr(["run"]);
        cmd.args(flags)
            .arg("--runc-binary")
            .arg(berth_runc())
            .arg("--runc-root")
            .arg(&self.runc_root)
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

    /// Where berth-runc keeps container `id`'s state.
    fn state_root(&self) -> PathBuf {
        self.runc_root.join(NAMESPACE)
    }

    /// The task's pid and status as `ctr task ls` shows them (RUNNING, PAUSED, ...).
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

    /// `ctr task delete [--force]` and `ctr container delete`, then checks that
    /// berth-runc's `delete` removed its state and the container's cgroup.
    fn remove(&self, id: &str, force: bool) {
        let mut delete = self.ctr(["task", "delete"]);
        if force {
            delete.arg("--force");
        }
        run_ok(delete.arg(id));
        run_ok(&mut self.ctr(["container", "delete", id]));
        let containers = run_ok(&mut self.ctr(["container", "ls", "--quiet"]));
        assert!(!containers.lines().any(|c| c == id), "{id} still listed");
        let state = self.state_root().join(id);
        assert!(!state.exists(), "{} is left behind", state.display());
        let cgroups = self.containerd.cgroup_parent().children();
        assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    }
}

#[test]
fn ctr_run_through_the_runc_shim_uses_berth_runc() {
    let swap = ShimSwap::start();

    let out = peers::output(&mut swap.run(
        &["--rm"],
        "attached",
        &["sh", "-c", "echo hello from berth-runc; exit 3"],
    ));
    assert_eq!(
        out.status, 3,
        "the task's exit status must come back:\n{out}"
    );
    assert_eq!(out.stdout, "hello from berth-runc\n", "{out}");
    // `--rm` deleted the container, and berth-runc's delete removed its state.
    assert!(!swap.state_root().join("attached").exists());

    // A pty: the shim passes --console-socket, berth-runc sends it the pty master.
    let out = with_tty(&swap.run(&["--rm", "--tty"], "tty", &["sh", "-c", "tty; exit 5"]));
    assert_eq!(out.status, 5, "{out}");
    assert!(
        out.stdout.contains("/dev/pts/0"),
        "no tty in the container:\n{out}"
    );
    assert!(swap.containerd.cgroup_parent().children().is_empty());
}

#[test]
fn ctr_task_lifecycle_through_the_runc_shim_uses_berth_runc() {
    let swap = ShimSwap::start();
    let id = "lifecycle";
    // Init exits 0 on SIGTERM: as pid 1 of its namespace it would ignore it otherwise.
    run_ok(&mut swap.run(
        &["--detach"],
        id,
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    ));
    let (pid, status) = swap.task(id).expect("the task is listed");
    assert_eq!(status, "RUNNING");

    // The shim's runtime was berth-runc: its state, for this very process.
    let root = Root(swap.state_root());
    let state = berth_state(&root.0, id);
    assert_eq!(state.pid, pid, "berth-runc's init pid is the task's pid");
    assert!(state.pid_start_time > 0);
    assert_eq!(state.status(&root), Status::Running);

    let out =
        peers::output(&mut swap.exec(&[], id, "hello", &["sh", "-c", "echo from exec; exit 4"]));
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (4, "from exec\n"),
        "{out}"
    );

    let out = with_tty(&swap.exec(&["--tty"], id, "tty", &["sh", "-c", "tty; exit 6"]));
    assert_eq!(out.status, 6, "{out}");
    assert!(
        out.stdout.contains("/dev/pts/"),
        "no tty for the exec:\n{out}"
    );

    // `ctr task ps` is berth-runc's `ps --format json`.
    run_ok(&mut swap.exec(&["--detach"], id, "sleeper", &["sleep", "1000"]));
    let ps = run_ok(&mut swap.ctr(["task", "ps", id]));
    assert!(ps.contains(&pid.to_string()), "init missing from ps:\n{ps}");
    assert!(ps.contains("sleeper"), "the exec missing from ps:\n{ps}");
    assert!(
        ps.lines().count() >= 4,
        "init, its sleep and the exec:\n{ps}"
    );
    run_ok(&mut swap.ctr([
        "task",
        "kill",
        "--exec-id",
        "sleeper",
        "--signal",
        "SIGKILL",
        id,
    ]));

    run_ok(&mut swap.ctr(["task", "pause", id]));
    swap.wait_for_status(id, "PAUSED");
    assert_eq!(state.status(&root), Status::Paused);
    run_ok(&mut swap.ctr(["task", "resume", id]));
    swap.wait_for_status(id, "RUNNING");

    run_ok(&mut swap.ctr(["task", "kill", id]));
    swap.wait_for_status(id, "STOPPED");
    swap.remove(id, false);
}

#[test]
fn ctr_task_kill_all_through_the_runc_shim_uses_berth_runc() {
    let swap = ShimSwap::start();
    let id = "killall";
    run_ok(&mut swap.run(&["--detach"], id, &["sh", "-c", "sleep 1000 & sleep 1000"]));
    run_ok(&mut swap.exec(&["--detach"], id, "extra", &["sleep", "1000"]));
    let root = swap.state_root();
    let cgroup = berth_state(&root, id)
        .cgroup
        .expect("berth-runc made a cgroup")
        .paths();
    let procs = || -> usize {
        cgroup
            .values()
            .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
            .map(|procs| procs.lines().count())
            .max()
            .unwrap_or(0)
    };
    // Init, the sleep it started and the exec (busybox's sh execs its last command).
    // Polled: `ctr run --detach` returns once init runs, maybe before it has forked.
    wait_until("three processes in the container's cgroup", || procs() == 3);

    // Paused first: a frozen process cannot die, so berth-runc thaws the container
    // after SIGKILL, as runc does (ctr, unlike dockerd, does not resume it itself).
    run_ok(&mut swap.ctr(["task", "pause", id]));
    swap.wait_for_status(id, "PAUSED");
    // `--all`: berth-runc signals every process in the container's cgroup.
    run_ok(&mut swap.ctr(["task", "kill", "--all", "--signal", "SIGKILL", id]));
    swap.wait_for_status(id, "STOPPED");
    wait_until("the container's cgroup is empty", || procs() == 0);

    // A stopped container cannot be signalled, and berth-runc says so in runc's
    // words, "container not running", which the shim reports as "not found".
    let out = peers::output(&mut swap.ctr(["task", "kill", id]));
    assert!(out.stderr.contains("process already finished"), "{out}");
    // `--force` has the shim signal the stopped task's cgroup (`kill --all`) before
    // deleting it, which berth-runc allows, as runc does.
    swap.remove(id, true);
}

// ---------------------------------------------------------------------------------
// dockerd --add-runtime berth=berth-runc

/// A dockerd with berth-runc added as the runtime named `berth`, and the test image.
struct DockerSwap {
    dockerd: Dockerd,
    _dir: TempDir,
}

impl DockerSwap {
    fn start() -> DockerSwap {
        let dir = tempfile::tempdir().unwrap();
        let runtime = format!("--add-runtime=berth={}", berth_runc().display());
        let dockerd = Dockerd::start_with(dir.path(), &[runtime]);
        let archive = busybox().archive.to_str().unwrap().to_owned();
        run_ok(dockerd.docker().args(["load", "--input", &archive]));
        DockerSwap { dockerd, _dir: dir }
    }

    fn docker<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = self.dockerd.docker();
        cmd.args(args);
        cmd
    }

    /// `docker run --runtime berth --network none FLAGS busybox:latest COMMAND...`
    /// (the test dockerd has no bridge, so no other network).
    fn run(&self, flags: &[&str], command: &[&str]) -> Command {
        let mut cmd = self.docker(["run", "--runtime", "berth", "--network", "none"]);
        cmd.args(flags).arg("busybox:latest").args(command);
        cmd
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        let out = run_ok(&mut self.docker(["inspect", "--format", format, name]));
        out.trim().to_owned()
    }

    /// Where berth-runc keeps dockerd's containers' state: dockerd 20.10 gives every
    /// runc-compatible runtime the root `<exec-root>/runtime-runc`, and the shim adds
    /// dockerd's containerd namespace, `moby`.
    fn state_root(&self) -> PathBuf {
        self.dockerd.exec_root().join("runtime-runc/moby")
    }
}

#[test]
fn docker_run_with_the_berth_runtime() {
    let swap = DockerSwap::start();
    let runtimes = run_ok(&mut swap.docker(["info", "--format", "{{json .Runtimes}}"]));
    assert!(
        runtimes.contains(&format!(
            "\"berth\":{{\"path\":\"{}\"",
            berth_runc().display()
        )),
        "dockerd does not list the berth runtime: {runtimes}"
    );

    let out = peers::output(&mut swap.run(&["--rm"], &["echo", "hi"]));
    assert_eq!((out.status, out.stdout.as_str()), (0, "hi\n"), "{out}");
    let out = peers::output(&mut swap.run(&["--rm"], &["sh", "-c", "exit 7"]));
    assert_eq!(out.status, 7, "{out}");

    // dockerd reads berth-runc's errors from the shim's log and picks the status
    // from their words, as it does runc's: 127 cannot be found, 126 cannot run.
    let out = peers::output(&mut swap.run(&["--rm"], &["no-such-program"]));
    assert_eq!(out.status, 127, "{out}");
    assert!(out.stderr.contains("executable file not found"), "{out}");
    let out = peers::output(&mut swap.run(&["--rm"], &["/etc/passwd"]));
    assert_eq!(out.status, 126, "{out}");
    assert!(out.stderr.contains("permission denied"), "{out}");

    // The spec dockerd writes: a user, a directory, the environment, a hostname, a
    // read-only root, and (unseen here) its seccomp profile, capabilities, masked
    // paths and sysctls.
    let out = peers::output(&mut swap.run(
        &[
            "--rm",
            "--user=65534:65534",
            "--workdir=/tmp",
            "--env=GREETING=hello",
            "--hostname=swapped",
            "--read-only",
        ],
        &[
            "sh",
            "-c",
            "echo $(id -u) $PWD $GREETING $(hostname); touch /file",
        ],
    ));
    assert_eq!(out.stdout, "65534 /tmp hello swapped\n", "{out}");
    assert_eq!(out.status, 1, "the root must be read-only:\n{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");

    // In the host's pid namespace, init's children outlive it: once init has exited,
    // the shim kills them with `kill --all`, which berth-runc must still allow.
    let out = peers::output(&mut swap.run(&["--rm", "--pid=host"], &["sh", "-c", "sleep 1000 &"]));
    assert_eq!(out.status, 0, "{out}");
    let left = swap.dockerd.cgroup_parent().children();
    assert!(
        left.is_empty(),
        "init's children were left running: {left:?}"
    );

    let out = with_tty(&swap.run(&["--rm", "--tty"], &["sh", "-c", "tty; exit 5"]));
    assert_eq!(out.status, 5, "{out}");
    assert!(
        out.stdout.contains("/dev/pts/0"),
        "no tty in the container:\n{out}"
    );

    let left = swap.dockerd.cgroup_parent().children();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn docker_detached_container_with_the_berth_runtime() {
    let swap = DockerSwap::start();
    let id = run_ok(&mut swap.run(
        &["--detach", "--name=web"],
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    ))
    .trim()
    .to_owned();
    assert_eq!(swap.inspect("web", "{{.HostConfig.Runtime}}"), "berth");
    let pid: i32 = swap.inspect("web", "{{.State.Pid}}").parse().unwrap();
    let state = berth_state(&swap.state_root(), &id);
    assert_eq!(
        state.pid, pid,
        "berth-runc's init pid is the container's pid"
    );

    let out = peers::output(&mut swap.docker(["exec", "web", "sh", "-c", "echo in web; exit 3"]));
    assert_eq!((out.status, out.stdout.as_str()), (3, "in web\n"), "{out}");

    // `docker top` is berth-runc's `ps --format json`.
    let top = run_ok(&mut swap.docker(["top", "web"]));
    assert!(top.contains("sleep 1000"), "{top}");

    run_ok(&mut swap.docker(["pause", "web"]));
    assert_eq!(swap.inspect("web", "{{.State.Status}}"), "paused");
    run_ok(&mut swap.docker(["unpause", "web"]));
    assert_eq!(swap.inspect("web", "{{.State.Status}}"), "running");

    // `docker update` is berth-runc's `update --resources -`.
    run_ok(&mut swap.docker(["update", "--memory=64m", "--memory-swap=128m", "web"]));
    let limit = run_ok(&mut swap.docker([
        "exec",
        "web",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null; true",
    ]));
    assert_eq!(limit.trim(), (64 << 20).to_string());

    // SIGTERM reaches init, which exits 0; `sleep`, which ignores it as pid 1 of its
    // namespace, is killed when the grace period ends.
    run_ok(&mut swap.docker(["stop", "web"]));
    assert_eq!(
        swap.inspect("web", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    run_ok(&mut swap.run(&["--detach", "--name=stubborn"], &["sleep", "1000"]));
    run_ok(&mut swap.docker(["stop", "--time=1", "stubborn"]));
    assert_eq!(
        swap.inspect("stubborn", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );

    run_ok(&mut swap.docker(["rm", "web", "stubborn"]));
    assert!(
        !swap.state_root().join(&id).exists(),
        "berth-runc's state is left"
    );
    let left = swap.dockerd.cgroup_parent().children();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}
