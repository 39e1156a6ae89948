//! The real programs berth is judged against, started in isolation.
//!
//! A test that needs containerd or dockerd starts its own, with every directory,
//! pid file and socket inside the test's temporary directory, and dockerd in a
//! network namespace of its own (so `--bridge=none` has no host bridge to delete
//! and no iptables rule is written). Dropping the handle stops the process; every
//! wait is bounded, so a broken peer fails the test instead of hanging it.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a peer gets to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Runs a command to completion and returns its stdout, panicking with the
/// command line, status and stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
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

/// A real containerd (Debian's) with its root, state and sockets under `dir`.
pub struct Containerd {
    pub socket: PathBuf,
    _daemon: Daemon,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
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
        let mut daemon = Daemon::spawn("containerd", cmd, dir.join("containerd.log"));
        daemon.wait_for_socket(&socket);
        Containerd {
            socket,
            _daemon: daemon,
        }
    }

    /// `ctr` talking to this containerd, in the given containerd namespace.
    pub fn ctr(&self, namespace: &str) -> Command {
        let mut cmd = Command::new(require("ctr"));
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace);
        cmd
    }
}

/// A real dockerd (Debian's) with data-root, exec-root, pid file and socket under
/// `dir`, in its own network namespace, with no bridge and no iptables rules.
pub struct Dockerd {
    pub socket: PathBuf,
    config_dir: PathBuf,
    _daemon: Daemon,
}

impl Dockerd {
    pub fn start(dir: &Path) -> Dockerd {
        let dockerd = require("dockerd");
        let socket = dir.join("docker.sock");
        let config_file = dir.join("daemon.json");
        fs::write(&config_file, "{}").expect("write daemon.json");
        // `unshare --net` execs dockerd in a fresh network namespace: nothing it
        // does to networking can reach the host's.
        let mut cmd = Command::new(require("unshare"));
        cmd.arg("--net")
            .arg(dockerd)
            .arg("--config-file")
            .arg(&config_file)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ])
            .args(["--storage-driver=vfs", "--log-level=warn"]);
        let mut daemon = Daemon::spawn("dockerd", cmd, dir.join("dockerd.log"));
        daemon.wait_for_socket(&socket);
        Dockerd {
            socket,
            config_dir: dir.join("cli"),
            _daemon: daemon,
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
