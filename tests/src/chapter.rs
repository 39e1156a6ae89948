//! What every history chapter's tests share: its daemon, started on a temporary root
//! and socket, and its client, both the chapter's one binary.
//!
//! The chapters keep one command line (`NAME daemon --root --socket`, then `load`,
//! `run`, `ps`, ...), so one harness drives them all; each chapter's tests hold only
//! the claims that chapter makes. Every wait is bounded, and dropping a [`Daemon`]
//! kills it (and with it, in chapters 01 and 02, its containers; in chapter 03, its
//! supervisor, shims and containers, which outlive it), even after a failure.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// No single step of these tests takes longer; a hang fails instead of blocking CI.
pub const BOUND: Duration = Duration::from_secs(60);

/// A daemon on its own root and socket, killed (and so its containers) when dropped,
/// even when the test failed.
pub struct Daemon {
    /// The chapter's binary, daemon and client at once.
    bin: PathBuf,
    child: Option<Child>,
    pub root: tempfile::TempDir,
    pub socket: PathBuf,
    /// Extra environment for the daemon and every client (the OTLP endpoint).
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts `bin daemon` on a fresh temporary root.
    pub fn start(bin: &str) -> Daemon {
        Daemon::start_with_env(bin, Vec::new())
    }

    pub fn start_with_env(bin: &str, env: Vec<(String, String)>) -> Daemon {
        let root = tempfile::tempdir().expect("a temporary root");
        let socket = root.path().join("api.sock");
        let mut daemon = Daemon {
            bin: PathBuf::from(bin),
            child: None,
            root,
            socket,
            env,
        };
        daemon.restart();
        daemon
    }

    /// Starts the daemon process (again) on the same root, and waits for its socket.
    pub fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args(["daemon", "--root"])
            .arg(self.root.path().join("root"))
            .arg("--socket")
            .arg(&self.socket)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .spawn()
            .expect("the daemon starts");
        self.child = Some(child);
        let pid_file = self.root.path().join("root/daemon.pid");
        wait_for("the daemon's socket and pid file", || {
            self.socket.exists() && pid_file.exists() && self.ok(&["images"]).status.success()
        });
    }

    /// Sends `signal` to the daemon and waits for it to exit.
    pub fn signal(&mut self, signal: Signal) {
        let mut child = self.child.take().expect("the daemon is running");
        kill(Pid::from_raw(child.id() as i32), signal).expect("signal the daemon");
        let deadline = Instant::now() + BOUND;
        while child.try_wait().expect("wait for the daemon").is_none() {
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit on {signal}"
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Runs the client with `args`, bounded.
    pub fn ok(&self, args: &[&str]) -> Output {
        let mut child = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .envs(self.env.iter().cloned())
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the client starts");
        let deadline = Instant::now() + BOUND;
        while child.try_wait().expect("wait for the client").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} {args:?} did not finish within {BOUND:?}", self.name());
            }
            sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("the client's output")
    }

    pub fn stdout(&self, args: &[&str]) -> String {
        let out = self.ok(args);
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}",
            self.name(),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs the client expecting failure; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.ok(args);
        assert!(
            !out.status.success(),
            "{} {args:?} should have failed",
            self.name()
        );
        text(&out.stderr)
    }

    /// The binary's name, for messages.
    pub fn name(&self) -> String {
        self.bin
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    pub fn load(&self) {
        let tar = &crate::images::busybox().archive;
        let out = self.stdout(&["load", tar.to_str().expect("a UTF-8 path")]);
        assert_eq!(out.trim(), "Loaded image: busybox");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Chapter 03's processes outlive the daemon, by design: its supervisor
        // (`supervisor.pid`), and under `tasks/<id>/` each container (`pid`) and its
        // shim (`shim.pid`). Containers go first, so that no shim is left to wait.
        let root = self.root.path().join("root");
        let tasks: Vec<PathBuf> = fs::read_dir(root.join("tasks"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let files = tasks
            .iter()
            .map(|task| task.join("pid"))
            .chain(tasks.iter().map(|task| task.join("shim.pid")))
            .chain([root.join("supervisor.pid")]);
        for file in files {
            if let Some(pid) = fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // With no shim left to ask the runtime to delete them, their cgroups stay.
        for task in &tasks {
            if let Some(id) = task.file_name().and_then(|id| id.to_str()) {
                remove_chapter_cgroups(id);
            }
        }
    }
}

/// Removes `<hierarchy>/berth-chapterNN/<id>` in every cgroup hierarchy, v1 or v2,
/// waiting (bounded) for killed processes to leave them.
fn remove_chapter_cgroups(id: &str) {
    let top = PathBuf::from("/sys/fs/cgroup");
    let hierarchies = fs::read_dir(&top)
        .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    for hierarchy in hierarchies.into_iter().chain([top]) {
        let parents = fs::read_dir(&hierarchy)
            .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        for parent in parents {
            let is_chapter = parent
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("berth-chapter"));
            let dir = parent.join(id);
            if !is_chapter || !dir.exists() {
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(&dir).is_err() && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}

/// Whether any process on the host has `token` in its command line.
pub fn process_with(token: &str) -> bool {
    pid_of(token).is_some()
}

/// The pid of the process on the host with `token` in its command line: the topmost
/// one, since a shell that forks (for `usleep`, say) has a child with the same command
/// line until the child `exec`s, and after a pid wrap-around that child can have the
/// lower pid. A zombie has no command line, so it is not found.
pub fn pid_of(token: &str) -> Option<i32> {
    let entries = fs::read_dir("/proc").ok()?;
    let matches: Vec<(i32, i32)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            if !text(&cmdline).split('\0').any(|arg| arg == token) {
                return None;
            }
            let status = fs::read_to_string(entry.path().join("status")).ok()?;
            let ppid = status
                .lines()
                .find_map(|line| line.strip_prefix("PPid:"))?
                .trim()
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    matches
        .iter()
        .find(|(_, ppid)| !matches.iter().any(|(pid, _)| pid == ppid))
        .map(|(pid, _)| *pid)
}

/// A `sleep` argument no other test (or run) uses, to find the container's process.
pub fn unique_seconds() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}{n:02}", 100_000 + std::process::id() % 100_000)
}

pub fn line_of<'a>(ps: &'a str, name: &str) -> Option<&'a str> {
    ps.lines()
        .find(|line| line.split_whitespace().nth(1) == Some(name))
}
