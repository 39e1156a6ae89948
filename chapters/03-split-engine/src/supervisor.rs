//! The supervisor: `split-era supervisor --root DIR`, one per engine, started by the
//! daemon when none is running (see [`ensure_running`]).
//!
//! It owns the containers' lifecycle, and nothing else: the daemon asks it to create,
//! signal, wait for and delete containers; it starts one shim per container and passes
//! every other request on to that shim. Its state is a directory per container,
//! `ROOT/tasks/<id>`, holding the shim's socket (`shim.sock`), the container's pid
//! (`pid`), the shim's own (`shim.pid`) and its log (`shim.log`); nothing lives only in its memory, so a new
//! supervisor knows everything the old one knew. On start it walks those directories:
//! a shim that answers is a live container found again; a socket nobody answers is a
//! shim that died, and the supervisor cleans up after it.
//!
//! Read next: [`crate::shim`], for what each shim does, and [`crate::daemon`], the
//! supervisor's only client.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pidfile::{self, PidFileError};
use crate::rpc::{self, Reply, Request, RpcError, Task};

/// How long [`ensure_running`] gives a new supervisor to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the supervisor did not start ({why}); see {log:?}")]
    DidNotStart { why: String, log: PathBuf },
}

/// The supervisor's socket under `root`.
pub fn socket(root: &Path) -> PathBuf {
    root.join("supervisor.sock")
}

// ANCHOR: serve
/// Runs the supervisor until it is killed. Containers outlive it either way.
pub fn serve(root: &Path) -> Result<(), SupervisorError> {
    let tasks = root.join("tasks");
    io_at("creating", &tasks, fs::create_dir_all(&tasks))?;
    pidfile::claim(root, "supervisor")?;
    reconnect(&tasks);

    let socket = socket(root);
    let _ = fs::remove_file(&socket);
    let listener = io_at("listening on", &socket, UnixListener::bind(&socket))?;
    rpc::serve(listener, move |request| answer(&tasks, request));
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: reconnect
/// Finds the shims a previous supervisor started. A shim that answers is a container
/// that kept running (or exited, and the shim holds its status) while nobody watched;
/// a socket nobody answers belonged to a shim that died, and is cleaned up after.
fn reconnect(tasks: &Path) {
    let Ok(entries) = fs::read_dir(tasks) else {
        return;
    };
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        match rpc::call(&dir.join("shim.sock"), Request::State { id: id.clone() }) {
            Ok(task) => {
                let state = match task.exit_code {
                    None => "running".to_string(),
                    Some(code) => format!("exited ({code})"),
                };
                tracing::info!("found the shim of {id} again: pid {}, {state}", task.pid);
            }
            Err(RpcError::Connect { .. }) => {
                tracing::warn!("the shim of {id} is gone; cleaning up after it");
                forget(&id, &dir);
            }
            Err(e) => tracing::warn!("asking the shim of {id}: {e}"),
        }
    }
}
// ANCHOR_END: reconnect

/// Answers one request from the daemon.
fn answer(tasks: &Path, request: Request) -> Reply {
    let dir = tasks.join(request.id());
    match request {
        Request::Create { id, bundle } => create(&id, &bundle, &dir).into(),
        request => {
            if !dir.exists() {
                let message = format!(
                    "no such task {}: the supervisor has no shim for it",
                    request.id()
                );
                return Err(message).into();
            }
            forward(&dir, request).into()
        }
    }
}

// ANCHOR: create
/// Starts the shim of container `id`, which starts the container, and returns once the
/// shim has said `ready PID` (or why it could not).
fn create(id: &str, bundle: &Path, dir: &Path) -> Result<Task, String> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(format!("task {id} exists already"));
        }
        Err(e) => return Err(format!("creating {dir:?}: {e}")),
    }
    let started = spawn_shim(id, bundle, dir);
    if started.is_err() {
        let _ = fs::remove_dir_all(dir);
    }
    started
}

fn spawn_shim(id: &str, bundle: &Path, dir: &Path) -> Result<Task, String> {
    let log_path = dir.join("shim.log");
    let log = File::create(&log_path).map_err(|e| format!("creating {log_path:?}: {e}"))?;
    let mut shim = crate::cli::this_binary();
    shim.args(["shim", "--id", id, "--bundle"])
        .arg(bundle)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // A session of its own: a Ctrl-C meant for the supervisor's terminal (its process
    // group) never reaches the shim, or the container under it.
    // SAFETY: `setsid` is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        shim.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    berth_trace::env::set_on_command(&mut shim);
    let mut child = shim
        .spawn()
        .map_err(|e| format!("starting the shim: {e}"))?;

    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    // The shim is this process's child until either exits: reap it whenever it ends,
    // so it never lingers as a zombie.
    std::thread::spawn(move || child.wait());
    match line.trim_end().split_once(' ') {
        Some(("ready", pid)) => Ok(Task {
            id: id.to_string(),
            pid: pid.parse().map_err(|_| format!("the shim said {line:?}"))?,
            exit_code: None,
            note: None,
        }),
        Some(("error", message)) => Err(message.to_string()),
        _ => Err(format!(
            "the shim of {id} ended without a word; see {log_path:?}"
        )),
    }
}
// ANCHOR_END: create

/// Passes `request` on to the container's shim.
fn forward(dir: &Path, request: Request) -> Result<Task, String> {
    let id = request.id().to_string();
    let delete = matches!(request, Request::Delete { .. });
    match rpc::call(&dir.join("shim.sock"), request) {
        Ok(task) => {
            if delete {
                let _ = fs::remove_dir_all(dir);
            }
            Ok(task)
        }
        Err(RpcError::Connect { .. }) if delete => {
            // Its shim died: nothing can say how the container ended, but it can go.
            forget(&id, dir);
            Ok(Task {
                id,
                pid: 0,
                exit_code: None,
                note: Some("its shim died; how it ended is unknown".into()),
            })
        }
        Err(RpcError::Connect { .. }) => Err(format!(
            "the shim of container {id} is gone; how the container ended is unknown"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Cleans up after a container whose shim is gone: its cgroups (by the runtime, as the
/// shim would have) and its task directory.
fn forget(id: &str, dir: &Path) {
    let deleted = crate::cli::this_binary()
        .args(["runtime", "delete", id])
        .status();
    if !deleted.as_ref().is_ok_and(|status| status.success()) {
        tracing::warn!("the runtime could not delete {id}: {deleted:?}");
    }
    let _ = fs::remove_dir_all(dir);
}

static STARTING: Mutex<()> = Mutex::new(());

// ANCHOR: ensure_running
/// Starts a supervisor for `root` unless one answers already. The daemon calls this at
/// start and whenever it loses the supervisor.
///
/// The supervisor runs in a session of its own and without a parent-death signal, so
/// it outlives the daemon. It stays the daemon's child while both live, so the daemon
/// reaps it if it dies.
pub fn ensure_running(root: &Path) -> Result<(), SupervisorError> {
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let socket = socket(root);
    if UnixStream::connect(&socket).is_ok() {
        return Ok(());
    }
    let log_path = root.join("supervisor.log");
    let log = io_at(
        "opening",
        &log_path,
        File::options().create(true).append(true).open(&log_path),
    )?;
    let mut supervisor = crate::cli::this_binary();
    supervisor
        .args(["supervisor", "--root"])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: `setsid` is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        supervisor.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let exe = Path::new("/proc/self/exe");
    let mut child = io_at("starting the supervisor", exe, supervisor.spawn())?;
    let did_not_start = |why: String| SupervisorError::DidNotStart {
        why,
        log: log_path.clone(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while UnixStream::connect(&socket).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(did_not_start(format!("it exited with {status}")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(did_not_start(format!(
                "no answer on {socket:?} after {START_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::spawn(move || child.wait());
    Ok(())
}
// ANCHOR_END: ensure_running

fn io_at<T>(
    action: &'static str,
    path: &Path,
    result: io::Result<T>,
) -> Result<T, SupervisorError> {
    result.map_err(|source| SupervisorError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}
