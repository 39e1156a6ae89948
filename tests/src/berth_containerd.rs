//! berth-containerd started for one test, the way [`crate::peers::Containerd`] starts
//! the real one: root, state and socket under the test's directory, stopped on drop,
//! every wait bounded. Tests drive it with the real `ctr` ([`BerthContainerd::ctr`]).
//!
//! Its `PATH` starts with a directory holding `containerd-shim-berth-v2`
//! ([`crate::shim::install`]), so runtime `io.containerd.berth.v2` is berth-shim, and
//! `io.containerd.runc.v2` is Debian's `containerd-shim-runc-v2` further along. Tasks
//! go in a cgroup of the instance's own ([`BerthContainerd::cgroup_of`]); on drop,
//! whatever a failed test left (containers, shims, mounts, cgroups) is removed.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::MntFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::build::workspace_binary;
use crate::peers::{path_starting_with, run_ok, CgroupParent};
use crate::runtime::wait_bounded;
use crate::shim::{processes_naming, wait_until};

/// How long berth-containerd gets to open its socket, or to stop.
const PATIENCE: Duration = Duration::from_secs(30);

/// The berth-containerd binary, built for this test run.
pub fn binary() -> PathBuf {
    workspace_binary("berth-containerd")
}

/// A running berth-containerd with everything under one directory.
pub struct BerthContainerd {
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    dir: PathBuf,
    /// First on its PATH: `containerd-shim-berth-v2` and `berth-runc`.
    bin: PathBuf,
    /// The cgroup (below every hierarchy's root) its tasks are put in.
    cgroup: CgroupParent,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The binary it runs: the test build ([`binary`]) unless started with
    /// [`BerthContainerd::start_binary`].
    program: Option<PathBuf>,
}

impl BerthContainerd {
    pub fn start(dir: &Path) -> BerthContainerd {
        BerthContainerd::start_with_env(dir, &[])
    }

    /// [`start`](Self::start) with `env` added to its environment (an OTLP endpoint, say;
    /// otherwise `OTEL_EXPORTER_OTLP_ENDPOINT` is always removed).
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> BerthContainerd {
        BerthContainerd::start_program(dir, env, None)
    }

    /// [`start`](Self::start), running `binary` instead of the test build: the release
    /// build ([`crate::build::release_binary`]), say, for a benchmark.
    pub fn start_binary(dir: &Path, binary: &Path) -> BerthContainerd {
        BerthContainerd::start_program(dir, &[], Some(binary.to_owned()))
    }

    fn start_program(
        dir: &Path,
        env: &[(&str, &str)],
        program: Option<PathBuf>,
    ) -> BerthContainerd {
        fs::create_dir_all(dir).expect("create berth-containerd's directory");
        let dir = fs::canonicalize(dir).expect("resolve berth-containerd's directory");
        let bin = dir.join("bin");
        if !bin.exists() {
            crate::shim::install(&dir, None);
        }
        let mut daemon = BerthContainerd {
            socket: dir.join("containerd.sock"),
            root: dir.join("root"),
            state: dir.join("state"),
            dir,
            bin,
            cgroup: CgroupParent::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            program,
        };
        daemon.spawn();
        daemon
    }

    /// The command line this instance runs with.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.program.clone().unwrap_or_else(binary));
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--address")
            .arg(&self.socket)
            .args(["--log-level", "info"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("PATH", path_starting_with(&self.bin))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.log_path())
            .expect("open berth-containerd's log");
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start berth-containerd: {e}"));
        let deadline = Instant::now() + PATIENCE;
        while UnixStream::connect(&self.socket).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "berth-containerd exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "berth-containerd did not listen within {PATIENCE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("berth-containerd.log")
    }

    /// Its log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILLs it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it with SIGTERM (SIGKILL after [`PATIENCE`]); returns its exit status.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let status = wait_bounded(&mut child, PATIENCE);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Starts it again on the same root, state and socket.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `ctr images import` of the test image into `namespace`; returns what ctr said.
    pub fn import_busybox(&self, namespace: &str) -> String {
        let archive = crate::images::busybox()
            .archive
            .to_str()
            .unwrap()
            .to_owned();
        run_ok(self.ctr(namespace).args(["images", "import", &archive]))
    }

    /// `ctr` talking to this instance, in the given namespace.
    pub fn ctr(&self, namespace: &str) -> Command {
        crate::peers::ctr(&self.socket, namespace)
    }

    /// The mount points at or below this instance's directory.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(&self.dir)
    }

    /// Where `ctr run --fifo-dir` should put a task's stdio fifos.
    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.join("fifo")
    }

    /// The cgroup for container `id`, as `ctr run --cgroup` takes it.
    pub fn cgroup_of(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup.path())
    }

    /// The shims serving this instance: processes whose command line names its
    /// directory (their `-address`) and whose program is a shim.
    pub fn shim_pids(&self) -> Vec<i32> {
        processes_naming(&self.dir)
            .into_iter()
            .filter(|(_, cmdline)| {
                let program = cmdline.split(' ').next().unwrap_or_default();
                program.contains("containerd-shim") || program.ends_with("berth-shim")
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The pid of the shim of task `id` (its command line says `-id ID`), if one runs.
    pub fn shim_pid_of(&self, id: &str) -> Option<i32> {
        let flag = format!(" -id {id} ");
        processes_naming(&self.dir)
            .into_iter()
            .find(|(pid, cmdline)| cmdline.contains(&flag) && self.shim_pids().contains(pid))
            .map(|(pid, _)| pid)
    }

    /// The bundles of the tasks it has now.
    pub fn bundles(&self) -> Vec<PathBuf> {
        let tasks = self.state.join("io.containerd.runtime.v2.task");
        fs::read_dir(tasks)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|ns| fs::read_dir(ns.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect()
    }

    /// Nothing of a task is left: no shim, no mount, no bundle, no shim socket, no
    /// process in its cgroup.
    pub fn assert_clean(&self) {
        wait_until("every shim has exited", || self.shim_pids().is_empty());
        assert_eq!(self.mounts(), Vec::<String>::new(), "mounts left behind");
        assert_eq!(self.bundles(), Vec::<PathBuf>::new(), "bundles left behind");
        let sockets: Vec<PathBuf> = fs::read_dir(self.dir.join("s"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(sockets, Vec::<PathBuf>::new(), "shim sockets left behind");
        assert_eq!(
            self.cgroup.pids(),
            Vec::<i32>::new(),
            "processes left in the cgroup"
        );
    }

    /// SIGKILLs what a failed test left: the containers (thawed first: a frozen
    /// process cannot die), then the shims. Bounded to 10 s each.
    fn kill_leftovers(&self) {
        self.cgroup.kill_all();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shims = self.shim_pids();
            if shims.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in shims {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of the berth-containerd process itself (not its shims), while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|child| child.id() as i32)
    }
}

/// `ctr events` for one namespace, written into a file until dropped; subscribed once
/// [`Events::start`] returns (it has seen an event it caused: a namespace label).
pub struct Events {
    child: Child,
    path: PathBuf,
}

impl Events {
    pub fn start(daemon: &BerthContainerd, namespace: &str, path: PathBuf) -> Events {
        // Each event is one line; into a file, not a pipe (see `peers::output`).
        let child = daemon
            .ctr(namespace)
            .arg("events")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&path).expect("create the events file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start `ctr events`");
        let events = Events { child, path };
        wait_until("`ctr events` is subscribed", || {
            run_ok(
                daemon
                    .ctr(namespace)
                    .args(["namespaces", "label", namespace, "events=on"]),
            );
            events.text().contains("/namespaces/update")
        });
        events
    }

    /// Every event so far, one a line.
    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Waits (bounded) for an event whose line contains every one of `needles`.
    pub fn wait_for(&self, needles: &[&str]) {
        wait_until(&format!("an event with {needles:?}"), || {
            self.text()
                .lines()
                .any(|line| needles.iter().all(|n| line.contains(n)))
        });
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

impl Drop for BerthContainerd {
    fn drop(&mut self) {
        self.stop();
        // After a failed test: the containers and shims (which outlive their
        // supervisor by design), whatever was left mounted, and the cgroups.
        self.kill_leftovers();
        let mut points = mounts_under(&self.dir);
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = nix::mount::umount2(Path::new(&point), MntFlags::MNT_DETACH);
        }
        self.cgroup.remove();
    }
}
