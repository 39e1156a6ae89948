//! berth-containerd started for one test, the way [`crate::peers::Containerd`] starts
//! the real one: root, state and socket under the test's directory, stopped on drop,
//! every wait bounded. Tests drive it with the real `ctr` ([`BerthContainerd::ctr`]).

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::MntFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::build::workspace_binary;
use crate::runtime::wait_bounded;

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
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl BerthContainerd {
    pub fn start(dir: &Path) -> BerthContainerd {
        BerthContainerd::start_with_env(dir, &[])
    }

    /// [`start`](Self::start) with `env` added to its environment (an OTLP endpoint, say;
    /// otherwise `OTEL_EXPORTER_OTLP_ENDPOINT` is always removed).
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> BerthContainerd {
        fs::create_dir_all(dir).expect("create berth-containerd's directory");
        let dir = fs::canonicalize(dir).expect("resolve berth-containerd's directory");
        let mut daemon = BerthContainerd {
            socket: dir.join("containerd.sock"),
            root: dir.join("root"),
            state: dir.join("state"),
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// The command line this instance runs with.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(binary());
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--address")
            .arg(&self.socket)
            .args(["--log-level", "info"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
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

    /// `ctr` talking to this instance, in the given namespace.
    pub fn ctr(&self, namespace: &str) -> Command {
        crate::peers::ctr(&self.socket, namespace)
    }

    /// The mount points at or below this instance's directory.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(&self.dir)
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
        // After a failed test: whatever a killed instance left mounted.
        let mut points = mounts_under(&self.dir);
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = nix::mount::umount2(Path::new(&point), MntFlags::MNT_DETACH);
        }
    }
}
