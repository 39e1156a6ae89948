//! The real programs berth is judged against, started in isolation.
//!
//! A test that needs containerd or dockerd starts its own, with every directory,
//! pid file and socket inside the test's temporary directory, and dockerd in a
//! network namespace of its own (so `--bridge=none` has no host bridge to delete
//! and no iptables rule is written). Each peer's containers go in a cgroup of their
//! own ([`CgroupParent`]), so they never mix with anyone else's. Dropping the handle
//! kills what the peer left running, stops it, and removes its mounts and cgroups,
//! even after a failed test. Every wait is bounded, so a broken peer fails the test
//! instead of hanging it.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::mount::MntFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::runtime::{wait_bounded, Outcome};

/// How long a peer gets to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any one command a test runs (`ctr`, `docker`, ...) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Finds `program` on `PATH`, or panics saying how to get it.
pub fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{program} not found on PATH; run `cargo xtask setup` to install it")
        })
}

/// The first column of a `ctr … ls` table (`images ls`, `snapshots ls`, `task ls`),
/// its header left out.
pub fn first_column(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Runs `cmd` with stdin from /dev/null, waiting at most [`COMMAND_TIMEOUT`]; a
/// command still running then is killed and the test fails, showing its output.
///
/// stdout and stderr go to anonymous files, not pipes: a container may inherit them
/// and hold them open after the command exits, and reading a pipe to its end would
/// wait for the container too.
pub fn output(cmd: &mut Command) -> Outcome {
    try_output(cmd, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// [`output`], with `input` written to the command's stdin through a pipe, which is
/// then closed: the command reads `input`, then end-of-file.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Outcome {
    try_output_with(cmd, COMMAND_TIMEOUT, Some(input)).unwrap_or_else(|e| panic!("{e}"))
}

/// [`output`] without the panics, for cleaning up.
fn try_output(cmd: &mut Command, limit: Duration) -> Result<Outcome, String> {
    try_output_with(cmd, limit, None)
}

fn try_output_with(
    cmd: &mut Command,
    limit: Duration,
    input: Option<&[u8]>,
) -> Result<Outcome, String> {
    let file = || tempfile::tempfile().map_err(|e| format!("cannot create an output file: {e}"));
    let (mut out, mut err) = (file()?, file()?);
    let dup = |file: &fs::File| {
        file.try_clone()
            .map_err(|e| format!("cannot dup a file: {e}"))
    };
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(dup(&out)?)
    .stderr(dup(&err)?);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small inputs fit the pipe's buffer: this never waits for the command.
        let _ = stdin.write_all(input);
    }
    let status = wait_bounded(&mut child, limit);
    let read = |file: &mut fs::File| {
        let mut bytes = Vec::new();
        let _ = file.rewind().and_then(|()| file.read_to_end(&mut bytes));
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let outcome = Outcome {
        status: status.unwrap_or(-1),
        stdout: read(&mut out),
        stderr: read(&mut err),
    };
    match status {
        Some(_) => Ok(outcome),
        None => Err(format!(
            "{cmd:?} did not finish within {limit:?}:\n{outcome}"
        )),
    }
}

/// Runs a command to completion (bounded, see [`output`]) and returns its stdout,
/// panicking with the command line, status and output if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let outcome = output(cmd);
    assert_eq!(outcome.status, 0, "{cmd:?} failed:\n{outcome}");
    outcome.stdout
}

/// A daemon process started for one test; stopped (SIGTERM, then SIGKILL) on drop.
struct Daemon {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Daemon {
        let out = fs::File::create(&log).expect("create daemon log");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // The berth binaries a peer runs (berth-runc under a shim) inherit its
        // environment, and must never export spans to a collector the developer runs;
        // only a test that names a receiver on purpose (a tracing test) keeps one.
        let chosen = cmd
            .get_envs()
            .any(|(key, value)| key == "OTEL_EXPORTER_OTLP_ENDPOINT" && value.is_some());
        if !chosen {
            cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon { child, name, log }
    }

    /// Waits until `socket` accepts connections, or panics with the daemon's log.
    fn wait_for_socket(&mut self, socket: &Path) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if UnixStream::connect(socket).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not listen on {} within {START_TIMEOUT:?}:\n{}",
            self.name,
            socket.display(),
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after 10 s. Does nothing once it has
    /// been reaped.
    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // The pid cannot have been reused: the process is our child and is only
        // reaped below. SIGTERM first, so the daemon cleans up its mounts.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cgroup of its own for one peer's containers: `/berth-test-<pid>-<n>`, in every
/// hierarchy, given to ctr as `--cgroup` and to dockerd as `--cgroup-parent`. The
/// containers' cgroups are made below it, so they never mix with anyone else's and
/// can all be found again, to be killed and removed when the peer is dropped.
pub struct CgroupParent {
    name: String,
}

impl CgroupParent {
    pub(crate) fn new() -> CgroupParent {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        CgroupParent {
            name: format!("berth-test-{}-{n}", std::process::id()),
        }
    }

    /// The cgroup as a `cgroupsPath` (absolute: below each hierarchy's root).
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// Every cgroup directory at or below this one, in every hierarchy, parents first.
    pub fn tree(&self) -> Vec<PathBuf> {
        fn below(dir: PathBuf, found: &mut Vec<PathBuf>) {
            let children: Vec<PathBuf> = fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            found.push(dir);
            children.into_iter().for_each(|child| below(child, found));
        }
        // cgroup v2 is /sys/fs/cgroup itself; v1 (and hybrid) mount one hierarchy per
        // controller below it, some under two names (cpu -> cpu,cpuacct).
        let base = Path::new("/sys/fs/cgroup");
        let mut tops: Vec<PathBuf> = fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .chain([base.to_owned()])
            .filter_map(|hierarchy| fs::canonicalize(hierarchy.join(&self.name)).ok())
            .collect();
        tops.sort();
        tops.dedup();
        let mut found = Vec::new();
        tops.into_iter().for_each(|top| below(top, &mut found));
        found
    }

    /// Every cgroup below this one (the containers'), in every hierarchy.
    pub fn children(&self) -> Vec<PathBuf> {
        self.tree()
            .into_iter()
            .filter(|dir| dir.file_name() != Some(OsStr::new(&self.name)))
            .collect()
    }

    /// SIGKILLs every process in the cgroup, thawing frozen ones (which could not
    /// die), until none is left or 10 s have passed.
    pub fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tree = self.tree();
            for dir in &tree {
                write_existing(&dir.join("freezer.state"), "THAWED"); // v1
                write_existing(&dir.join("cgroup.freeze"), "0"); // v2
            }
            let pids = pids_in(&tree);
            if pids.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every process in the cgroup or below it, sorted, each once.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = pids_in(&self.tree());
        pids.sort();
        pids.dedup();
        pids
    }

    /// Removes the (empty) cgroup and everything below it, retrying for up to 3 s
    /// while the last processes finish exiting.
    pub fn remove(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let tree = self.tree();
            for dir in tree.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            if tree.is_empty() || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The pids in the `cgroup.procs` of each of `dirs`.
fn pids_in(dirs: &[PathBuf]) -> Vec<i32> {
    dirs.iter()
        .flat_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Writes to a file only if it exists: cgroupfs refuses to create files anyway.
fn write_existing(path: &Path, value: &str) {
    if let Ok(mut file) = fs::OpenOptions::new().write(true).open(path) {
        let _ = file.write_all(value.as_bytes());
    }
}

/// SIGKILLs every process whose command line names a path below `dir`. These are
/// the shims a stopped containerd leaves behind: they outlive it by design, so a
/// restarted containerd can find its containers again.
fn kill_processes_naming(dir: &Path) {
    let mut needle = dir.as_os_str().as_bytes().to_vec();
    needle.push(b'/');
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let names_dir = cmdline.windows(needle.len()).any(|w| w == needle);
        if names_dir && pid != std::process::id() as i32 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Detaches every mount at or below `dir`, deepest first: the rootfs mounts a
/// killed shim did not undo. (A temporary directory's path never needs the escaping
/// mountinfo applies to spaces, so the paths are compared as they are.)
fn unmount_under(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&Path> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(Path::new)
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in points {
        let _ = nix::mount::umount2(point, MntFlags::MNT_DETACH);
    }
}

/// A real containerd (Debian's) with its root, state and sockets under `dir`, and a
/// [`CgroupParent`] for the containers a test runs through it.
pub struct Containerd {
    pub socket: PathBuf,
    dir: PathBuf,
    cgroup: CgroupParent,
    daemon: Daemon,
    config: PathBuf,
    bin_dir: Option<PathBuf>,
    /// Variables added to containerd's environment (see [`Containerd::start_with_env`]).
    env: Vec<(String, String)>,
}

/// This process's `PATH` with `dir` in front.
pub(crate) fn path_starting_with(dir: &Path) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_owned()).chain(std::env::split_paths(&path));
    std::env::join_paths(dirs).expect("PATH entries without ':'")
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        Containerd::start_with_path(dir, None)
    }

    /// Starts containerd with `bin_dir` first on its `PATH`: containerd finds a shim
    /// for runtime `io.containerd.NAME.v2` as `containerd-shim-NAME-v2` on its PATH, so
    /// a test that puts one there (berth-shim, say) gets it used.
    pub fn start_with_path(dir: &Path, bin_dir: Option<&Path>) -> Containerd {
        Containerd::start_with_env(dir, bin_dir, &[])
    }

    /// [`start_with_path`](Self::start_with_path), with `env` added to containerd's
    /// environment. containerd passes its environment on to the shims it starts, and
    /// they to the runtime: this is how a tracing test gives berth-shim and berth-runc
    /// an `OTEL_EXPORTER_OTLP_ENDPOINT` (which is otherwise always removed).
    pub fn start_with_env(dir: &Path, bin_dir: Option<&Path>, env: &[(&str, &str)]) -> Containerd {
        fs::create_dir_all(dir).expect("create containerd's directory");
        let dir = fs::canonicalize(dir).expect("resolve containerd's directory");
        let dir = dir.as_path();
        let binary = require("containerd");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        let d = dir.display();
        // The CRI plugin is Kubernetes' and only adds noise here; `opt` would
        // otherwise default to the host's /opt/containerd.
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{d}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
            ),
        )
        .expect("write containerd config");
        let mut cmd = Command::new(binary);
        cmd.arg("--config").arg(&config);
        if let Some(bin_dir) = bin_dir {
            cmd.env("PATH", path_starting_with(bin_dir));
        }
        cmd.envs(env.iter().copied());
        let mut daemon = Daemon::spawn("containerd", cmd, dir.join("containerd.log"));
        daemon.wait_for_socket(&socket);
        Containerd {
            socket,
            dir: dir.to_owned(),
            cgroup: CgroupParent::new(),
            daemon,
            config,
            bin_dir: bin_dir.map(Path::to_owned),
            env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// SIGKILLs containerd, as a crash would: no cleanup, its shims left running.
    pub fn kill(&mut self) {
        let _ = self.daemon.child.kill();
        let _ = self.daemon.child.wait();
    }

    /// Starts containerd again with the same configuration, after [`kill`](Self::kill):
    /// a restarted containerd finds its shims again through their `address` files.
    pub fn restart(&mut self) {
        self.daemon.stop();
        let mut cmd = Command::new(require("containerd"));
        cmd.arg("--config").arg(&self.config);
        if let Some(bin_dir) = &self.bin_dir {
            cmd.env("PATH", path_starting_with(bin_dir));
        }
        // Appended to, so the log of the first run stays readable after a failure.
        let log = self.dir.join("containerd.log");
        let out = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .expect("open containerd's log");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot restart containerd: {e}"));
        self.daemon = Daemon {
            child,
            name: "containerd",
            log,
        };
        let socket = self.socket.clone();
        self.daemon.wait_for_socket(&socket);
    }

    /// containerd's log so far, for failure messages.
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// The directory everything of this containerd lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup to put this containerd's containers in (`ctr run --cgroup`).
    pub fn cgroup_parent(&self) -> &CgroupParent {
        &self.cgroup
    }

    /// Deletes every task left in any namespace, killing it first. Each shim then
    /// unmounts its container's rootfs, removes its socket (containerd 1.6 puts those
    /// in the host's /run/containerd/s, wherever its own state is) and exits.
    fn delete_tasks(&self) {
        let lines = |namespace: &str, args: &[&str]| -> Vec<String> {
            try_output(self.ctr(namespace).args(args), Duration::from_secs(10))
                .map(|out| out.stdout.lines().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        for namespace in lines("default", &["namespaces", "ls", "--quiet"]) {
            for task in lines(&namespace, &["tasks", "ls", "--quiet"]) {
                lines(&namespace, &["tasks", "delete", "--force", &task]);
            }
        }
    }

    /// A directory for `ctr`'s stdio fifos (`--fifo-dir`), which would otherwise be
    /// made in the host's /run/containerd/fifo.
    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.join("fifo")
    }

    /// `ctr` talking to this containerd, in the given containerd namespace.
    pub fn ctr(&self, namespace: &str) -> Command {
        ctr(&self.socket, namespace)
    }
}

/// Debian's `ctr`, talking to the containerd (or berth-containerd) at `socket`, in
/// containerd namespace `namespace`.
pub fn ctr(socket: &Path, namespace: &str) -> Command {
    let mut cmd = Command::new(require("ctr"));
    cmd.arg("--address")
        .arg(socket)
        .arg("--namespace")
        .arg(namespace);
    cmd
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The containers first, while their shims are there to reap them; then the
        // shims, through containerd; then the daemon; then whatever is still left
        // after a failed test (a shim outlives its containerd by design).
        self.cgroup.kill_all();
        self.delete_tasks();
        self.daemon.stop();
        kill_processes_naming(&self.dir);
        unmount_under(&self.dir);
        self.cgroup.remove();
    }
}

/// A real dockerd (Debian's) with data-root, exec-root, pid file and socket under
/// `dir`, in its own network namespace, with no bridge and no iptables rules. It
/// talks to a containerd of its own (under `dir/containerd`), never to the host's,
/// and puts its containers' cgroups below that containerd's [`CgroupParent`]; or, from
/// [`Dockerd::start_on_containerd`], to a containerd the test started (berth's, say),
/// with a [`CgroupParent`] of its own.
pub struct Dockerd {
    pub socket: PathBuf,
    config_dir: PathBuf,
    dir: PathBuf,
    daemon: Daemon,
    /// The arguments dockerd was started with, for [`Dockerd::restart`].
    args: Vec<std::ffi::OsString>,
    // Fields drop after the struct's own `drop`, in order: an own containerd stops
    // only after `Dockerd::drop` has stopped dockerd.
    backing: Backing,
}

/// The containerd a [`Dockerd`] talks to.
enum Backing {
    /// Started with it and stopped after it.
    Own(Containerd),
    /// The test's (berth-containerd, say): only the cgroup is dockerd's.
    External(CgroupParent),
}

impl Dockerd {
    pub fn start(dir: &Path) -> Dockerd {
        Dockerd::start_with::<&str>(dir, &[])
    }

    /// Starts dockerd with `extra_args` after the isolating ones, for example
    /// `--add-runtime=berth=/path/to/berth-runc`.
    pub fn start_with<S: AsRef<OsStr>>(dir: &Path, extra_args: &[S]) -> Dockerd {
        let dir = fs::canonicalize(dir).expect("resolve dockerd's directory");
        // Without `--containerd`, dockerd 20.10 uses the host's containerd whenever
        // /run/containerd/containerd.sock exists, and starts one of its own otherwise.
        let containerd = Containerd::start(&dir.join("containerd"));
        let socket = containerd.socket.clone();
        Dockerd::launch(&dir, &socket, Backing::Own(containerd), extra_args)
    }

    /// Starts dockerd on the containerd listening on `containerd` (a
    /// berth-containerd the test started and stops), with `extra_args` after the
    /// isolating ones. Its containers go in a [`CgroupParent`] of the dockerd's own.
    pub fn start_on_containerd<S: AsRef<OsStr>>(
        dir: &Path,
        containerd: &Path,
        extra_args: &[S],
    ) -> Dockerd {
        let dir = fs::canonicalize(dir).expect("resolve dockerd's directory");
        let backing = Backing::External(CgroupParent::new());
        Dockerd::launch(&dir, containerd, backing, extra_args)
    }

    fn launch<S: AsRef<OsStr>>(
        dir: &Path,
        containerd: &Path,
        backing: Backing,
        extra_args: &[S],
    ) -> Dockerd {
        let socket = dir.join("docker.sock");
        let config_file = dir.join("daemon.json");
        fs::write(&config_file, "{}").expect("write daemon.json");
        let cgroup = match &backing {
            Backing::Own(containerd) => containerd.cgroup_parent().path(),
            Backing::External(cgroup) => cgroup.path(),
        };
        let mut args: Vec<std::ffi::OsString> = vec![
            "--config-file".into(),
            config_file.into(),
            "--data-root".into(),
            dir.join("data").into(),
            "--exec-root".into(),
            dir.join("exec").into(),
            "--pidfile".into(),
            dir.join("docker.pid").into(),
            "--host".into(),
            format!("unix://{}", socket.display()).into(),
        ];
        args.extend(
            [
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
                "--log-level=warn",
                "--containerd",
            ]
            .map(Into::into),
        );
        args.push(containerd.into());
        args.push("--cgroup-parent".into());
        args.push(cgroup.into());
        args.extend(extra_args.iter().map(|a| a.as_ref().to_owned()));
        let daemon = Dockerd::spawn(dir, &socket, &args, "dockerd.log");
        Dockerd {
            socket,
            config_dir: dir.join("cli"),
            dir: dir.to_owned(),
            daemon,
            args,
            backing,
        }
    }

    /// Runs dockerd with `args` and waits for its socket; the log goes to `log`.
    fn spawn(dir: &Path, socket: &Path, args: &[std::ffi::OsString], log: &str) -> Daemon {
        // `unshare --net` execs dockerd in a fresh network namespace: nothing it
        // does to networking can reach the host's. With `--bridge=none` dockerd
        // deletes any `docker0` it can see; in this namespace there is none.
        let mut cmd = Command::new(require("unshare"));
        cmd.arg("--net").arg(require("dockerd")).args(args);
        let mut daemon = Daemon::spawn("dockerd", cmd, dir.join(log));
        daemon.wait_for_socket(socket);
        daemon
    }

    /// Stops dockerd (SIGTERM) and starts it again with the same arguments; its
    /// second log is `dockerd-2.log`. With `--live-restore`, its containers keep
    /// running meanwhile and the new dockerd finds them again. (The new dockerd is
    /// in a new network namespace, so it logs that it cannot restore the old
    /// container sandboxes' network; the containers themselves are restored.)
    pub fn restart(&mut self) {
        self.daemon.stop();
        let _ = fs::remove_file(&self.socket);
        self.daemon = Dockerd::spawn(&self.dir, &self.socket, &self.args, "dockerd-2.log");
    }

    /// dockerd's log so far (every run's), for failure messages.
    pub fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        read("dockerd.log") + &read("dockerd-2.log")
    }

    /// `--exec-root`: where dockerd keeps its runtime state, the runtimes' included.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// The cgroup dockerd puts its containers' cgroups below (`--cgroup-parent`).
    pub fn cgroup_parent(&self) -> &CgroupParent {
        match &self.backing {
            Backing::Own(containerd) => containerd.cgroup_parent(),
            Backing::External(cgroup) => cgroup,
        }
    }

    /// The `docker` CLI talking to this dockerd, with its own config directory.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(require("docker"));
        cmd.env("DOCKER_CONFIG", &self.config_dir)
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()));
        cmd
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Killed containers stop at once; left running, dockerd's own shutdown would
        // give each one a 10 s grace period. An own containerd goes after this; an
        // external one is the test's to stop, but the cgroup is dockerd's.
        self.cgroup_parent().kill_all();
        self.daemon.stop();
        unmount_under(&self.dir);
        if let Backing::External(cgroup) = &self.backing {
            cgroup.remove();
        }
    }
}
