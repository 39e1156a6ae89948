//! The execution driver: how a container actually starts. In 2013 Docker's default
//! driver wrote an LXC configuration file and ran the LXC tools; this one does the same.
//!
//! For each container it unpacks the image into `ROOT/containers/<id>/rootfs`, writes
//! `ROOT/containers/<id>/lxc.conf`, and runs
//! `lxc-execute -n <id> -P ROOT/lxc -f lxc.conf -- CMD…` as a child of the daemon.
//! `lxc-execute` is the container's *monitor*: it creates the namespaces and cgroups,
//! starts LXC's tiny init as PID 1 with the command under it, waits, and exits with the
//! command's status. The daemon never sees the container's processes, only the tool.
//!
//! That is the cost this chapter shows: everything the daemon knows about a container
//! comes through an external program's command line, files and exit codes. If LXC
//! changes a key name (`lxc.rootfs` became `lxc.rootfs.path` in LXC 2.1) or an exit
//! convention, the daemon breaks. Chapter 02 removes the tool.
//!
//! Read next: [`crate::daemon`], which records what this driver reports.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;

use berth_oci::layout::{Image, Layout};
use berth_oci::unpack::{open_in_root, unpack_image, UnpackError};
use nix::sys::signal::Signal;

/// The search path when the image sets none: Docker's default.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Every container's limits. A real engine takes them from `run --memory`/`--pids-limit`;
/// this chapter fixes them, to show where LXC takes them from.
const MEMORY_LIMIT_BYTES: u64 = 256 << 20;
const PIDS_LIMIT: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{tool} not found: install Debian's lxc package (`cargo xtask setup` does)")]
    ToolMissing { tool: &'static str },
    #[error("unpacking the image into {rootfs:?}: {source}")]
    Unpack {
        rootfs: PathBuf,
        // Boxed, as the other large sources: errors travel up by value.
        source: Box<UnpackError>,
    },
    #[error("command {command:?} not found in the image (searched {searched}); pass a program the image has, such as /bin/sh")]
    CommandNotFound { command: String, searched: String },
    #[error("no command given and the image has no default (Cmd/Entrypoint); pass one after the image name")]
    NoCommand,
    #[error("image setting {value:?} contains a newline, which an LXC configuration cannot hold")]
    Unrepresentable { value: String },
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the driver's spawner thread is gone; restart the daemon")]
    SpawnerGone,
    #[error("running {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: io::Error,
    },
    #[error("lxc-stop -n {id} failed ({status}): {stderr}")]
    Stop {
        id: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// What the driver needs to start one container.
#[derive(Debug)]
pub struct Launch<'a> {
    pub id: &'a str,
    /// `ROOT/containers/<id>`: the rootfs, the config and the log go here.
    pub dir: &'a Path,
    pub layout: &'a Layout,
    pub image: &'a Image,
    /// The command the user gave; empty means the image's Entrypoint + Cmd.
    pub cmd: &'a [String],
}

/// A spawn request for the spawner thread, and where to send the child back.
type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

pub struct Driver {
    /// `ROOT/lxc`: LXC's own state (`-P`), kept under the daemon's root and never in
    /// `/var/lib/lxc`, so that two daemons never see each other's containers.
    lxc_path: PathBuf,
    spawner: Mutex<mpsc::Sender<SpawnJob>>,
}

impl Driver {
    pub fn new(lxc_path: PathBuf) -> Driver {
        Driver {
            lxc_path,
            spawner: Mutex::new(start_spawner()),
        }
    }

    // ANCHOR: start
    /// Prepares the container's files and starts `lxc-execute`. Returns the tool's
    /// process: when it exits, the container has exited (see [`exit_code`]).
    pub fn start(&self, launch: &Launch) -> Result<Child, DriverError> {
        let tool = find_tool("lxc-execute")?;
        let rootfs = launch.dir.join("rootfs");
        io_at("creating", &rootfs, fs::create_dir_all(&rootfs))?;
        unpack_image(launch.layout, launch.image, &rootfs).map_err(|source| {
            DriverError::Unpack {
                rootfs: rootfs.clone(),
                source: Box::new(source),
            }
        })?;

        let settings = ImageSettings::of(launch.image);
        let cmd = if launch.cmd.is_empty() {
            settings.default_cmd.clone()
        } else {
            launch.cmd.to_vec()
        };
        let program = cmd.first().ok_or(DriverError::NoCommand)?;
        // lxc-execute reports a missing program only as exit status 255 with nothing on
        // stderr; checking first is what lets the user see a clear error.
        check_command(&rootfs, program, &settings.path())?;

        let config = launch.dir.join("lxc.conf");
        let text = lxc_config(launch.id, &rootfs, &settings)?;
        io_at("writing", &config, fs::write(&config, text))?;
        io_at(
            "creating",
            &self.lxc_path,
            fs::create_dir_all(&self.lxc_path),
        )?;

        let log_path = launch.dir.join("log");
        let log = io_at("creating", &log_path, File::create(&log_path))?;
        let log_too = io_at("opening", &log_path, log.try_clone())?;
        let mut command = Command::new(tool);
        command
            .arg("-n")
            .arg(launch.id)
            .arg("-P")
            .arg(&self.lxc_path)
            .arg("-f")
            .arg(&config)
            .arg("--")
            .args(&cmd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too);
        self.spawn(command)
    }
    // ANCHOR_END: start

    // ANCHOR: spawn
    /// Starts `command` from the spawner thread, with `PR_SET_PDEATHSIG` set to
    /// SIGKILL in the child.
    ///
    /// That death signal is what ties the container to the daemon: when the daemon dies
    /// the kernel kills `lxc-execute`, whose own death signal kills the container's init,
    /// and with PID 1 gone the kernel kills everything in its PID namespace. The signal
    /// fires when the *thread* that forked the child exits, not the process; a request
    /// thread would kill its container when the request ends. So one thread that lives
    /// as long as the daemon does every fork.
    fn spawn(&self, mut command: Command) -> Result<Child, DriverError> {
        let daemon = std::process::id();
        // SAFETY: the closure runs between fork and exec and only makes two system
        // calls, both async-signal-safe; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The daemon may have died between fork and prctl: then nobody would
                // ever send the signal, so give up now.
                if nix::unistd::getppid().as_raw() as u32 != daemon {
                    return Err(io::Error::other("the daemon died while starting"));
                }
                Ok(())
            });
        }
        let (reply, answer) = mpsc::channel();
        let spawner = self.spawner.lock().unwrap_or_else(|e| e.into_inner());
        spawner
            .send((command, reply))
            .map_err(|_| DriverError::SpawnerGone)?;
        drop(spawner);
        let child = answer.recv().map_err(|_| DriverError::SpawnerGone)?;
        child.map_err(|source| DriverError::Spawn {
            tool: "lxc-execute",
            source,
        })
    }
    // ANCHOR_END: spawn

    // ANCHOR: stop
    /// Asks LXC to stop container `id`: `lxc-stop` sends the init SIGTERM, which
    /// LXC's init passes on to the command, and SIGKILL after `timeout_secs`.
    /// A container that is already gone is not an error.
    pub fn stop(&self, id: &str, timeout_secs: u32) -> Result<(), DriverError> {
        let tool = find_tool("lxc-stop")?;
        let output = Command::new(tool)
            .arg("-n")
            .arg(id)
            .arg("-P")
            .arg(&self.lxc_path)
            .arg("-t")
            .arg(timeout_secs.to_string())
            .output()
            .map_err(|source| DriverError::Spawn {
                tool: "lxc-stop",
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        // LXC's convention, which this daemon depends on: status 2 and "is not running"
        // when there is nothing to stop (the command exited on its own meanwhile).
        if output.status.success() || stderr.contains("is not running") {
            return Ok(());
        }
        Err(DriverError::Stop {
            id: id.into(),
            status: output.status,
            stderr,
        })
    }
    // ANCHOR_END: stop
}

/// Runs every fork of the daemon; see [`Driver::spawn`] for why one thread.
fn start_spawner() -> mpsc::Sender<SpawnJob> {
    let (jobs, queue) = mpsc::channel::<SpawnJob>();
    std::thread::Builder::new()
        .name("lxc-spawner".into())
        .spawn(move || {
            for (mut command, reply) in queue {
                let _ = reply.send(command.spawn());
            }
        })
        .expect("the daemon can start a thread");
    jobs
}

// ANCHOR: exit_code
/// Turns `lxc-execute`'s status into the container's exit code, with a note when the
/// code means something else.
///
/// This relies on the tool's conventions, not on any API: `lxc-execute` exits with the
/// command's own code, with 128 + N when a signal N killed it (as a shell does), and
/// with 255 when LXC itself failed (or when the command did exit 255: the two cannot
/// be told apart). If `lxc-execute` is itself killed, the container died with it.
pub fn exit_code(status: ExitStatus) -> (Option<i32>, Option<String>) {
    match (status.code(), status.signal()) {
        (Some(255), _) => (
            Some(255),
            Some(
                "lxc-execute exited 255: LXC failed, or the command exited 255; see the log".into(),
            ),
        ),
        (Some(code), _) => (Some(code), None),
        (None, Some(signal)) => (
            Some(128 + signal),
            Some(format!(
                "lxc-execute was killed by signal {signal}, and the container with it"
            )),
        ),
        (None, None) => (None, Some("lxc-execute ended in an unknown way".into())),
    }
}
// ANCHOR_END: exit_code

/// What the image config says about how to run it.
#[derive(Debug, Default)]
struct ImageSettings {
    env: Vec<String>,
    working_dir: Option<String>,
    default_cmd: Vec<String>,
}

impl ImageSettings {
    fn of(image: &Image) -> ImageSettings {
        let Some(config) = image.config().config() else {
            return ImageSettings::default();
        };
        let mut default_cmd = config.entrypoint().clone().unwrap_or_default();
        default_cmd.extend(config.cmd().clone().unwrap_or_default());
        ImageSettings {
            env: config.env().clone().unwrap_or_default(),
            working_dir: config.working_dir().clone().filter(|dir| !dir.is_empty()),
            default_cmd,
        }
    }

    fn path(&self) -> String {
        self.env
            .iter()
            .find_map(|var| var.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string()
    }
}

// ANCHOR: lxc_config
/// The LXC configuration of one container: what `docker run` turned into in 2013.
fn lxc_config(id: &str, rootfs: &Path, settings: &ImageSettings) -> Result<String, DriverError> {
    let mut lines = vec![
        format!("lxc.rootfs.path = dir:{}", rootfs.display()),
        format!("lxc.uts.name = {}", &id[..12.min(id.len())]),
        // Every namespace but the user namespace: the container's root is the host's
        // root, as it was for Docker until 1.10.
        "lxc.namespace.clone = mnt uts ipc pid net".into(),
        // A network namespace with only `lo`: networking is a later chapter.
        "lxc.net.0.type = empty".into(),
        "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed".into(),
        // A minimal /dev (null, zero, tty, urandom…) instead of the host's.
        "lxc.autodev = 1".into(),
        // No AppArmor profile of LXC's is loaded on every host berth runs on.
        "lxc.apparmor.profile = unconfined".into(),
    ];
    // On a cgroup v2-only host the keys are `lxc.cgroup2.*`; on a v1 or hybrid host
    // (controllers still on v1) they are `lxc.cgroup.*`, with v1's file names.
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        lines.push(format!("lxc.cgroup2.memory.max = {MEMORY_LIMIT_BYTES}"));
        lines.push(format!("lxc.cgroup2.pids.max = {PIDS_LIMIT}"));
    } else {
        lines.push(format!(
            "lxc.cgroup.memory.limit_in_bytes = {MEMORY_LIMIT_BYTES}"
        ));
        lines.push(format!("lxc.cgroup.pids.max = {PIDS_LIMIT}"));
    }
    // lxc-execute starts the command with an empty environment but for these.
    for var in &settings.env {
        lines.push(format!("lxc.environment = {}", one_line(var)?));
    }
    if let Some(dir) = &settings.working_dir {
        lines.push(format!("lxc.init.cwd = {}", one_line(dir)?));
    }
    Ok(lines.join("\n") + "\n")
}
// ANCHOR_END: lxc_config

fn one_line(value: &str) -> Result<&str, DriverError> {
    if value.contains('\n') {
        return Err(DriverError::Unrepresentable {
            value: value.into(),
        });
    }
    Ok(value)
}

/// Checks that `program` names an executable file inside `rootfs`, resolving it along
/// `path` as the container's `execvp` will, symlinks included but never out of the root.
fn check_command(rootfs: &Path, program: &str, path: &str) -> Result<(), DriverError> {
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.to_string()]
    } else {
        path.split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{dir}/{program}"))
            .collect()
    };
    let executable = |candidate: &String| {
        open_in_root(rootfs, candidate)
            .and_then(|file| file.metadata())
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if candidates.iter().any(executable) {
        return Ok(());
    }
    let searched = if program.contains('/') {
        "that path".to_string()
    } else {
        format!("PATH={path}")
    };
    Err(DriverError::CommandNotFound {
        command: program.into(),
        searched,
    })
}

/// Finds an LXC tool on the daemon's PATH.
fn find_tool(tool: &'static str) -> Result<PathBuf, DriverError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .ok_or(DriverError::ToolMissing { tool })
}

fn io_at<T>(action: &'static str, path: &Path, result: io::Result<T>) -> Result<T, DriverError> {
    result.map_err(|source| DriverError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_rootfs_and_isolates_the_network() {
        let settings = ImageSettings {
            env: vec!["PATH=/bin".into()],
            working_dir: Some("/tmp".into()),
            default_cmd: vec![],
        };
        let text = lxc_config("0123456789abcdef", Path::new("/r/rootfs"), &settings).unwrap();
        assert!(text.contains("lxc.rootfs.path = dir:/r/rootfs\n"));
        assert!(text.contains("lxc.uts.name = 0123456789ab\n"));
        assert!(text.contains("lxc.net.0.type = empty\n"));
        assert!(text.contains("lxc.environment = PATH=/bin\n"));
        assert!(text.contains("lxc.init.cwd = /tmp\n"));
    }

    #[test]
    fn a_newline_in_the_image_config_is_refused() {
        let settings = ImageSettings {
            env: vec!["A=1\nlxc.rootfs.path = dir:/".into()],
            ..ImageSettings::default()
        };
        assert!(matches!(
            lxc_config("id", Path::new("/r"), &settings),
            Err(DriverError::Unrepresentable { .. })
        ));
    }

    #[test]
    fn exit_codes_follow_the_tools_conventions() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)).0, Some(7));
        assert_eq!(exit_code(ExitStatus::from_raw(143 << 8)).0, Some(143));
        let (code, note) = exit_code(ExitStatus::from_raw(9));
        assert_eq!(code, Some(137));
        assert!(note.unwrap().contains("killed"));
    }
}
