//! The shim: `split-era shim --id ID --bundle DIR --dir TASK_DIR`, one per container,
//! for as long as the container is not deleted.
//!
//! The supervisor starts it; it starts the runtime, and once the runtime has exited it
//! is the container's parent. Three jobs, each the reason a shim exists:
//! - **Parent.** It makes itself a *child subreaper* before starting the runtime, so
//!   the container, orphaned when the runtime exits, becomes its child rather than
//!   init's, and it alone reaps it and learns its exit status.
//! - **Stdio.** The container writes into a pipe whose other end only the shim holds;
//!   it copies everything into the container's log. The daemon can die and come back
//!   without the container ever blocking on a full pipe or dying of SIGPIPE.
//! - **Memory.** It keeps the exit status until someone deletes the container, and
//!   answers `state` and `wait` on `TASK_DIR/shim.sock`, whoever asks and whenever.
//!
//! Nothing else: it has no image, no API, no knowledge of other containers. That it is
//! small and does so little is what lets it be the one process that must not die.
//!
//! Read next: [`crate::supervisor`], which starts shims and finds them again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::rpc::{self, Reply, Request, Task};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("becoming a subreaper: {0}")]
    Subreaper(Errno),
    #[error("creating the container's output pipe: {0}")]
    Pipe(Errno),
    /// The runtime's own words, from its stderr.
    #[error("{0}")]
    Runtime(String),
}

/// Where one shim keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    pub id: String,
    /// `ROOT/containers/<id>`: config.json and rootfs to run, the log to write.
    pub bundle: PathBuf,
    /// `ROOT/tasks/<id>`: the shim's socket and the container's pid file.
    pub dir: PathBuf,
}

/// What the shim knows, shared between the reaper thread and the request threads.
struct Shim {
    paths: Paths,
    task: Mutex<Task>,
    /// Notified when the container has exited.
    exited: Condvar,
}

// ANCHOR: main
/// Runs the shim: starts the container, reports `ready PID` (or `error MESSAGE`) on
/// stdout to the supervisor, then serves requests until the container is deleted.
pub fn main(paths: Paths, flush: impl FnOnce()) -> Result<(), ShimError> {
    let started = start(&paths);
    // The supervisor reads exactly one line, then stdout goes nowhere: the shim must
    // outlive the supervisor, and a write into its closed pipe would fail.
    let line = match &started {
        Ok((pid, _, _)) => format!("ready {pid}\n"),
        Err(e) => format!("error {}\n", e.to_string().replace('\n', " ")),
    };
    let _ = io::stdout().write_all(line.as_bytes());
    let null = File::options().write(true).open("/dev/null");
    if let Ok(null) = null {
        // SAFETY: replaces fd 1 with /dev/null; nothing holds a borrow of fd 1.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    // The start spans are done: send them now, not whenever the batch timer fires.
    flush();
    let (pid, listener, copier) = started?;

    let shim = Arc::new(Shim {
        task: Mutex::new(Task {
            id: paths.id.clone(),
            pid: pid.as_raw(),
            exit_code: None,
            note: None,
        }),
        exited: Condvar::new(),
        paths,
    });
    {
        let shim = shim.clone();
        std::thread::spawn(move || shim.reap(pid, copier));
    }
    let handler = shim.clone();
    rpc::serve(listener, move |request| handler.answer(request));
    let _ = fs::remove_file(shim.paths.dir.join("shim.sock"));
    Ok(())
}
// ANCHOR_END: main

// ANCHOR: start
/// Becomes a subreaper, runs `split-era runtime create`, and returns the container's
/// pid, the listening socket, and the thread copying its output into the log.
fn start(paths: &Paths) -> Result<(Pid, UnixListener, JoinHandle<()>), ShimError> {
    let span = tracing::info_span!("shim start", id = %paths.id);
    berth_trace::set_parent(&span, berth_trace::env::extract_from_process());
    let _entered = span.enter();

    nix::sys::prctl::set_child_subreaper(true).map_err(ShimError::Subreaper)?;
    let log_path = paths.bundle.join("log");
    let log = io_at(
        "opening",
        &log_path,
        OpenOptions::new().create(true).append(true).open(&log_path),
    )?;
    let (output, input) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(ShimError::Pipe)?;
    let copier = std::thread::spawn(move || copy_output(output, log));

    let pid_file = paths.dir.join("pid");
    let exe = Path::new("/proc/self/exe");
    let mut runtime = crate::cli::this_binary();
    runtime
        .args(["runtime", "create", "--bundle"])
        .arg(&paths.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&paths.id)
        .stdin(Stdio::null())
        // The container's stdout (and, by the runtime's dup2, its stderr).
        .stdout(Stdio::from(input))
        .stderr(Stdio::piped());
    berth_trace::env::set_on_command(&mut runtime);
    let child = io_at("starting the runtime", exe, runtime.spawn())?;
    // Our copy of the pipe's write end goes with the Command: from now on only the
    // container holds it, and its exit is the copier's end of file.
    drop(runtime);
    // Waits for this pid only: the container, orphaned when the runtime exits, is
    // reaped later by `reap`, never here.
    let done = io_at("waiting for the runtime", exe, child.wait_with_output())?;
    if !done.status.success() {
        let said = String::from_utf8_lossy(&done.stderr);
        let last = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(ShimError::Runtime(format!(
            "the runtime failed ({}): {}",
            done.status,
            last.trim_start_matches("Error: ")
        )));
    }
    let text = io_at("reading", &pid_file, fs::read_to_string(&pid_file))?;
    let pid = text.trim().parse().map_err(|_| ShimError::Io {
        action: "parsing",
        path: pid_file.clone(),
        source: io::ErrorKind::InvalidData.into(),
    })?;

    let socket = paths.dir.join("shim.sock");
    let _ = fs::remove_file(&socket);
    let listener = io_at("listening on", &socket, UnixListener::bind(&socket))?;
    // For people and tests looking for the shim; no part of the engine reads it.
    let shim_pid = paths.dir.join("shim.pid");
    io_at(
        "writing",
        &shim_pid,
        fs::write(&shim_pid, std::process::id().to_string()),
    )?;
    Ok((Pid::from_raw(pid), listener, copier))
}
// ANCHOR_END: start

/// Copies the container's output into its log as it comes, chunk by chunk, so `logs`
/// shows every line the moment it is written. Ends when the last writer is gone.
fn copy_output(output: OwnedFd, mut log: File) {
    let mut pipe = File::from(output);
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if log.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Shim {
    fn lock(&self) -> MutexGuard<'_, Task> {
        // Every change under this lock is one assignment: a panic leaves no half.
        self.task.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ANCHOR: reap
    /// The subreaper's loop: reaps every child, and records the container's exit.
    ///
    /// It waits *without* reaping first (`WNOWAIT`): while the container is a zombie its
    /// pid cannot be reused, so `kill`, which signals under the same lock, can never hit
    /// a stranger. Then, holding the lock, it reaps and records.
    fn reap(&self, container: Pid, copier: JoinHandle<()>) {
        let mut copier = Some(copier);
        loop {
            let exited = match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(status) => status.pid(),
                Err(Errno::EINTR) => continue,
                // No child at all: nothing left to reap, ever.
                Err(_) => return,
            };
            let Some(pid) = exited else { continue };
            if pid != container {
                // Some other orphan that found its way to us: reap it and move on.
                let _ = reap_pid(pid);
                continue;
            }
            let mut task = self.lock();
            let status = reap_pid(pid);
            drop(task);
            // Everything the container wrote is in the log before anyone hears it ended.
            if let Some(copier) = copier.take() {
                let _ = copier.join();
            }
            task = self.lock();
            (task.exit_code, task.note) = match status {
                Ok(status) => exit_code(status),
                Err(e) => (None, Some(format!("reaping the container: {e}"))),
            };
            tracing::info!(id = %task.id, code = ?task.exit_code, "container exited");
            drop(task);
            self.exited.notify_all();
            // Done: a later child (the runtime run by `delete`) is reaped by whoever
            // started it, not stolen here.
            return;
        }
    }
    // ANCHOR_END: reap

    // ANCHOR: answer
    /// Answers one request from the supervisor (or anyone with access to the socket).
    fn answer(&self, request: Request) -> Reply {
        if request.id() != self.paths.id {
            let message = format!(
                "this is the shim of container {}, not {}",
                self.paths.id,
                request.id()
            );
            return Err(message).into();
        }
        match request {
            Request::Create { .. } => {
                Err("a shim runs one container; ask the supervisor to create another".into()).into()
            }
            Request::State { .. } => Ok(self.lock().clone()).into(),
            Request::Wait { timeout_ms, .. } => {
                let limit = timeout_ms.map_or(Duration::MAX, Duration::from_millis);
                Ok(self.wait(limit)).into()
            }
            Request::Kill { signal, .. } => self.kill(signal).into(),
            Request::Delete { .. } => {
                let task = self.lock().clone();
                if Shim::is_running(&task) {
                    let message = format!("container {} is still running; stop it first", task.id);
                    return Err(message).into();
                }
                if let Err(e) = run_runtime_delete(&task.id) {
                    return Err(e).into();
                }
                let _ = fs::remove_file(self.paths.dir.join("pid"));
                Reply {
                    answer: Ok(task),
                    last: true,
                }
            }
        }
    }
    // ANCHOR_END: answer

    fn is_running(task: &Task) -> bool {
        task.exit_code.is_none() && task.note.is_none()
    }

    /// Waits until the container has exited, at most `limit`, and returns its state.
    fn wait(&self, limit: Duration) -> Task {
        let deadline = Instant::now().checked_add(limit);
        let mut task = self.lock();
        while Shim::is_running(&task) {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            task = self
                .exited
                .wait_timeout(task, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        task.clone()
    }

    fn kill(&self, signal: i32) -> Result<Task, String> {
        let task = self.lock();
        if !Shim::is_running(&task) {
            return Err(format!("container {} is not running", task.id));
        }
        let signal = Signal::try_from(signal).map_err(|_| format!("no such signal {signal}"))?;
        kill(Pid::from_raw(task.pid), signal)
            .map_err(|e| format!("sending {signal} to pid {}: {e}", task.pid))?;
        Ok(task.clone())
    }
}

/// `split-era runtime delete ID`: the runtime removes what it left on the host.
fn run_runtime_delete(id: &str) -> Result<(), String> {
    let mut runtime = crate::cli::this_binary();
    runtime.args(["runtime", "delete", id]);
    berth_trace::env::set_on_command(&mut runtime);
    match runtime.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "the runtime could not delete container {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("starting the runtime to delete {id}: {e}")),
    }
}

/// Reaps `pid` and returns its raw wait status.
fn reap_pid(pid: Pid) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for the kernel to write the status to.
        let ret = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if ret == pid.as_raw() {
            return Ok(ExitStatus::from_raw(status));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

// ANCHOR: exit_code
/// Turns the container's wait status into its exit code, with a note when a signal
/// ended it. It is the command's own status: the shim is its parent.
pub fn exit_code(status: ExitStatus) -> (Option<i32>, Option<String>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), None),
        (None, Some(signal)) => (
            Some(128 + signal),
            Some(format!("the container was killed by signal {signal}")),
        ),
        (None, None) => (None, Some("the container ended in an unknown way".into())),
    }
}
// ANCHOR_END: exit_code

fn io_at<T>(action: &'static str, path: &Path, result: io::Result<T>) -> Result<T, ShimError> {
    result.map_err(|source| ShimError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_commands_own() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)).0, Some(7));
        assert_eq!(exit_code(ExitStatus::from_raw(255 << 8)), (Some(255), None));
        let (code, note) = exit_code(ExitStatus::from_raw(9));
        assert_eq!(code, Some(137));
        assert!(note.unwrap().contains("killed"));
    }
}
