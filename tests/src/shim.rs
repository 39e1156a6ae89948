//! berth-shim as containerd finds it, and what it costs.
//!
//! containerd runs the shim of runtime `io.containerd.berth.v2` as
//! `containerd-shim-berth-v2` from its `PATH`. [`install`] builds berth-shim and
//! berth-runc and puts both, as symlinks, in a directory of their own for
//! `Containerd::start_with_path` (the shim finds berth-runc on that PATH when it is not
//! beside the shim's own binary). The tests install the build they were built with;
//! the benchmark installs [`shipping_binary`], the shim as it is meant to run.
//! [`memory_kb`] is how both read one shim's memory. [`Lab`] is the containerd the
//! shim tests (`tests/tests/shim_*.rs`) drive with `ctr`, and [`EventLog`] what it
//! publishes, as `ctr events` shows it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::build::workspace_binary;
use crate::images::busybox;
use crate::peers::{self, run_ok, Containerd};
use crate::runtime::berth_runc;

/// The test image, as `ctr images import` names it.
pub const IMAGE: &str = "docker.io/library/busybox:latest";
/// The containerd namespace the shim tests use.
pub const NAMESPACE: &str = "berth-shim";
/// The runtime name containerd maps to `containerd-shim-berth-v2`.
pub const RUNTIME: &str = "io.containerd.berth.v2";

/// Creates `dir/bin/containerd-shim-berth-v2` → `shim` (the test build when `None`) and
/// `dir/bin/berth-runc`, and returns `dir/bin`.
pub fn install(dir: &Path, shim: Option<&Path>) -> PathBuf {
    let shim = shim.map_or_else(|| workspace_binary("berth-shim"), Path::to_owned);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("create the shim's bin directory");
    std::os::unix::fs::symlink(&shim, bin.join("containerd-shim-berth-v2"))
        .expect("link containerd-shim-berth-v2 to berth-shim");
    std::os::unix::fs::symlink(berth_runc(), bin.join("berth-runc"))
        .expect("link berth-runc beside it");
    bin
}

// ANCHOR: shipping
/// berth-shim as it is shipped: the `shim` profile (one optimised unit, sized for code)
/// and glibc linked in statically, for the host. A shim runs per container, so every
/// page it maps is paid per container; a static, position-dependent binary touches
/// none of the shared C library's pages and relocates nothing at start. Built in a
/// target directory of its own, since its flags apply to every crate it compiles.
pub fn shipping_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let target_dir = workspace.join("target/shipping");
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--package",
            "berth-shim",
            "--profile",
            "shim",
        ])
        .args(["--target", &triple])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        .status()
        .expect("run cargo to build the shipping berth-shim");
    assert!(status.success(), "building the shipping berth-shim failed");
    target_dir.join(triple).join("shim/berth-shim")
}
// ANCHOR_END: shipping

/// `(Rss, Pss)` of process `pid`, in kB, from `/proc/PID/smaps_rollup`: RSS counts every
/// page it has in memory, PSS divides the shared ones among their sharers.
pub fn memory_kb(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// A containerd that runs containers through berth-shim: its own root, state,
/// sockets and cgroup (see [`Containerd`]), with `containerd-shim-berth-v2` first on
/// its PATH and the test image imported.
pub struct Lab {
    pub containerd: Containerd,
    pub dir: TempDir,
}

impl Lab {
    pub fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let bin = install(dir.path(), None);
        let containerd = Containerd::start_with_path(&dir.path().join("c"), Some(&bin));
        let archive = busybox().archive.to_str().unwrap().to_owned();
        run_ok(
            containerd
                .ctr(NAMESPACE)
                .args(["images", "import", &archive]),
        );
        Lab { containerd, dir }
    }

    pub fn ctr<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = self.containerd.ctr(NAMESPACE);
        cmd.args(args);
        cmd
    }

    /// `ctr run --runtime io.containerd.berth.v2 FLAGS IMAGE ID COMMAND...`, in a
    /// cgroup below the lab's.
    pub fn run(&self, flags: &[&str], id: &str, command: &[&str]) -> Command {
        let mut cmd = self.ctr(["run", "--runtime", RUNTIME]);
        cmd.args(flags)
            .arg("--cgroup")
            .arg(self.cgroup_of(id))
            .arg("--fifo-dir")
            .arg(self.containerd.fifo_dir())
            .args([IMAGE, id])
            .args(command);
        cmd
    }

    /// The cgroup `run` puts container `id` in (a `cgroupsPath`).
    pub fn cgroup_of(&self, id: &str) -> String {
        format!("{}/{id}", self.containerd.cgroup_parent().path())
    }

    /// `ctr task exec --exec-id EXEC_ID FLAGS ID COMMAND...`.
    pub fn exec(&self, flags: &[&str], id: &str, exec_id: &str, command: &[&str]) -> Command {
        let mut cmd = self.ctr(["task", "exec", "--exec-id", exec_id]);
        cmd.arg("--fifo-dir")
            .arg(self.containerd.fifo_dir())
            .args(flags)
            .arg(id)
            .args(command);
        cmd
    }

    /// The task's pid and status as `ctr task ls` shows them.
    pub fn task(&self, id: &str) -> Option<(i32, String)> {
        let listed = run_ok(&mut self.ctr(["task", "ls"]));
        listed.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [task, pid, status] if task == id => Some((pid.parse().ok()?, status.into())),
                _ => None,
            }
        })
    }

    pub fn wait_for_status(&self, id: &str, status: &str) {
        wait_until(&format!("task {id} is {status}"), || {
            self.task(id).is_some_and(|(_, now)| now == status)
        });
    }

    /// The task's bundle, where containerd runs its shim.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.containerd
            .dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id)
    }

    /// The shims serving this containerd: processes whose command line names its dir
    /// and whose program is the shim (`ctr --namespace berth-shim` is not one).
    pub fn shim_pids(&self) -> Vec<i32> {
        processes_naming(self.containerd.dir())
            .into_iter()
            .filter(|(_, cmdline)| {
                let program = cmdline.split(' ').next().unwrap_or_default();
                program.ends_with("containerd-shim-berth-v2") || program.ends_with("berth-shim")
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Mounts left below this containerd's directory.
    pub fn mounts(&self) -> Vec<String> {
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
    pub fn sockets(&self) -> Vec<PathBuf> {
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
    pub fn exit_status_then_remove(&self, id: &str) -> i32 {
        let out = peers::output(&mut self.ctr(["task", "attach", id]));
        let _ = peers::output(&mut self.ctr(["task", "delete", id]));
        run_ok(&mut self.ctr(["container", "delete", id]));
        self.assert_clean();
        out.status
    }

    pub fn assert_clean(&self) {
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

    /// `ctr events`, running until the returned log is dropped, and subscribed when
    /// this returns: it has shown an event the lab caused (a namespace label).
    pub fn events(&self) -> EventLog {
        // Each event is one line; into a file, not a pipe (see `peers::output`).
        let path = self.dir.path().join("events");
        let child = self
            .ctr(["events"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let log = EventLog { child, path };
        wait_until("`ctr events` is subscribed", || {
            let _ = peers::output(&mut self.ctr(["namespaces", "label", NAMESPACE, "events=on"]));
            log.text().contains("/namespaces/update")
        });
        log
    }
}

/// What `ctr events` has printed: a line per event, `TIME NAMESPACE TOPIC {JSON}`.
pub struct EventLog {
    child: Child,
    path: PathBuf,
}

impl EventLog {
    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Waits until an event line contains every one of `needles`; returns the log.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        wait_until(&format!("an event with {needles:?}"), || {
            self.text()
                .lines()
                .any(|line| needles.iter().all(|n| line.contains(n)))
        });
        self.text()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(pid, command line)` of every process whose command line names a path below `dir`.
pub fn processes_naming(dir: &Path) -> Vec<(i32, String)> {
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

/// Whether process `pid` is gone: no longer there, or a zombie (dead, not yet reaped
/// by whoever inherited it when its shim died).
pub fn is_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `PID (COMM) STATE ...`: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Polls `check` every 20 ms until it returns true; panics with `what` after 20 s.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
