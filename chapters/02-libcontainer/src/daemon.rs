//! The daemon half: `libcontainer-era daemon --root DIR --socket PATH`.
//!
//! It listens on the unix socket, answers each connection on its own thread, and keeps
//! one record per container in memory and in `ROOT/containers/<id>/container.json`.
//! Each running container is a child the driver cloned, with a thread waiting for it.
//!
//! What happens to containers when the daemon goes is the point of this chapter:
//! - SIGKILL: the kernel kills every container's first process (see
//!   [`crate::driver`]'s death signal), and so every container. The next daemon finds records that say
//!   "running", knows nobody is left to run them, and marks them exited.
//! - SIGTERM or SIGINT: the daemon stops every container itself, records how each
//!   ended, removes its pid file and socket, and returns.
//!
//! Read next: [`crate::driver`], which starts and stops the containers.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::api::{ContainerInfo, ErrorBody, LoadRequest, RunRequest, State};
use crate::driver::{self, Child, Driver, DriverError, Launch};
use crate::http::{self, HttpError, Message};
use crate::images::{ImageError, ImageStore};

/// How long a stop waits for the command before the driver kills it.
const STOP_TIMEOUT_SECS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another daemon (pid {pid}) already serves {root:?}; stop it first")]
    AlreadyRunning { pid: i32, root: PathBuf },
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("installing the SIGTERM and SIGINT handler: {0}")]
    Signals(nix::Error),
    #[error("no such container {0:?}; `libcontainer-era ps -a` lists them")]
    NoSuchContainer(String),
    #[error(
        "the name {name:?} is already in use by container {id}; remove it or choose another name"
    )]
    NameInUse { name: String, id: String },
    #[error("container {0:?} is running; stop it first")]
    StillRunning(String),
    #[error("container {0:?} is not running (state: exited); nothing to stop")]
    NotRunning(String),
    #[error("container {0:?} did not exit within {1:?} of being stopped")]
    StopTimedOut(String, Duration),
    #[error("bad request body: {0}")]
    BadBody(#[from] serde_json::Error),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl DaemonError {
    /// The HTTP status each error is answered with.
    fn status(&self) -> u16 {
        match self {
            DaemonError::NoSuchContainer(_)
            | DaemonError::NoRoute(_)
            | DaemonError::Image(ImageError::Unknown { .. }) => 404,
            DaemonError::NameInUse { .. }
            | DaemonError::StillRunning(_)
            | DaemonError::NotRunning(_) => 409,
            DaemonError::BadBody(_)
            | DaemonError::Image(ImageError::Tar { .. } | ImageError::NotLayout { .. })
            | DaemonError::Driver(DriverError::CommandNotFound { .. } | DriverError::NoCommand) => {
                400
            }
            _ => 500,
        }
    }
}

/// Where the daemon keeps everything, and how it is reached.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub socket: PathBuf,
}

/// The daemon's shared state: every request thread and waiter thread holds an `Arc`.
struct Daemon {
    root: PathBuf,
    images: ImageStore,
    driver: Driver,
    /// By id. A std Mutex: no request holds it while doing slow work (unpacking,
    /// starting, waiting), only while reading or changing records.
    containers: Mutex<HashMap<String, ContainerInfo>>,
    /// Notified whenever a container exits, for `wait`, `stop` and shutdown.
    exited: Condvar,
}

// ANCHOR: serve
/// Runs the daemon until SIGTERM or SIGINT.
pub fn serve(config: Config) -> Result<(), DaemonError> {
    let shutdown = shutdown_signals()?;

    let root = &config.root;
    io_at(
        "creating",
        root,
        fs::create_dir_all(root.join("containers")),
    )?;
    let pid_file = root.join("daemon.pid");
    check_not_running(&pid_file, root)?;
    io_at(
        "writing",
        &pid_file,
        fs::write(&pid_file, std::process::id().to_string()),
    )?;

    let daemon = Arc::new(Daemon {
        root: root.clone(),
        images: ImageStore::new(root.join("images")),
        driver: Driver::new(),
        containers: Mutex::new(HashMap::new()),
        exited: Condvar::new(),
    });
    daemon.recover()?;

    let _ = fs::remove_file(&config.socket);
    let listener = io_at(
        "listening on",
        &config.socket,
        UnixListener::bind(&config.socket),
    )?;
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let (daemon, stopping, socket) = (daemon.clone(), stopping.clone(), config.socket.clone());
        std::thread::spawn(move || {
            // Blocks until SIGTERM or SIGINT arrives (or the pipe breaks).
            let _ = shutdown.take(1).read(&mut [0u8; 1]);
            daemon.shutdown();
            stopping.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees the flag.
            let _ = UnixStream::connect(socket);
        });
    }
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let daemon = daemon.clone();
        std::thread::spawn(move || daemon.answer(stream));
    }
    let _ = fs::remove_file(&config.socket);
    let _ = fs::remove_file(&pid_file);
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: shutdown_signals
/// The write end of the pipe the signal handler writes to; -1 until installed.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_shutdown_signal(_: nix::libc::c_int) {
    // Only async-signal-safe calls here: one `write` of one byte.
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    // SAFETY: writing one byte from a valid buffer; a failed write is harmless.
    unsafe { nix::libc::write(fd, [1u8].as_ptr().cast(), 1) };
}

/// Installs a SIGTERM/SIGINT handler and returns the pipe it writes to: reading a byte
/// from it means "shut down". A handler, not `sigwait` on a blocked mask: the mask is
/// per thread, and the trace exporter's threads (started before the daemon) would not
/// have it, so the kernel could deliver SIGTERM to one of them and kill the daemon.
fn shutdown_signals() -> Result<fs::File, DaemonError> {
    let (read, write) = nix::unistd::pipe().map_err(DaemonError::Signals)?;
    SIGNAL_PIPE.store(write.into_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_shutdown_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only makes an async-signal-safe `write`.
        unsafe { sigaction(signal, &action) }.map_err(DaemonError::Signals)?;
    }
    Ok(fs::File::from(read))
}
// ANCHOR_END: shutdown_signals

/// Refuses to start over a live daemon; a pid file left by a killed one is fine.
fn check_not_running(pid_file: &Path, root: &Path) -> Result<(), DaemonError> {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return Ok(());
    };
    match text.trim().parse::<i32>() {
        Ok(pid)
            if pid as u32 != std::process::id() && Path::new(&format!("/proc/{pid}")).exists() =>
        {
            Err(DaemonError::AlreadyRunning {
                pid,
                root: root.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

impl Daemon {
    // ANCHOR: recover
    /// Reads the records a previous daemon left. Any container still marked running
    /// died with that daemon: its first process was killed by the kernel, and with it
    /// the container. Nothing can be re-attached, so the record says so.
    fn recover(&self) -> Result<(), DaemonError> {
        let dir = self.root.join("containers");
        let entries = io_at("reading", &dir, fs::read_dir(&dir))?;
        let mut containers = self.lock();
        for entry in entries.flatten() {
            let path = entry.path().join("container.json");
            let Ok(bytes) = fs::read(&path) else { continue };
            let Ok(mut info) = serde_json::from_slice::<ContainerInfo>(&bytes) else {
                continue;
            };
            if info.state == State::Running {
                info.state = State::Exited;
                info.exit_code = None;
                info.note = Some("the daemon died while it ran, and the container with it".into());
                self.save(&info)?;
                driver::remove_cgroups(&info.id);
            }
            containers.insert(info.id.clone(), info);
        }
        Ok(())
    }
    // ANCHOR_END: recover

    /// Stops every running container and waits (bounded) until each has exited.
    fn shutdown(&self) {
        let running: Vec<String> = self
            .lock()
            .values()
            .filter(|c| c.state == State::Running)
            .map(|c| c.id.clone())
            .collect();
        for id in &running {
            if let Err(e) = self.driver.stop(id, STOP_TIMEOUT_SECS) {
                tracing::warn!("stopping container {id} on shutdown: {e}");
            }
        }
        for id in &running {
            let _ = self.wait_exit(id, Duration::from_secs(STOP_TIMEOUT_SECS as u64 + 5));
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ContainerInfo>> {
        // A thread that panicked while holding the lock left whole records behind
        // (each change is one assignment), so the data is still good.
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a record to a temporary file and renames it over the old one: a daemon
    /// killed mid-write leaves the old record or the new one, never half of one.
    fn save(&self, info: &ContainerInfo) -> Result<(), DaemonError> {
        let dir = self.root.join("containers").join(&info.id);
        let (path, temporary) = (dir.join("container.json"), dir.join(".container.json.new"));
        let bytes = serde_json::to_vec_pretty(info)?;
        io_at("writing", &temporary, fs::write(&temporary, bytes))?;
        io_at("replacing", &path, fs::rename(&temporary, &path))
    }

    /// Finds a container by name or id.
    fn find(&self, key: &str) -> Result<ContainerInfo, DaemonError> {
        self.lock()
            .values()
            .find(|c| c.name == key || c.id == key)
            .cloned()
            .ok_or_else(|| DaemonError::NoSuchContainer(key.into()))
    }

    // ANCHOR: answer
    /// Answers one connection: one request, one response, one span.
    fn answer(self: &Arc<Self>, mut stream: UnixStream) {
        let Ok(request) = http::read_message(&mut stream) else {
            return;
        };
        let mut words = request.start_line.split(' ');
        let method = words.next().unwrap_or_default().to_string();
        let target = words.next().unwrap_or_default().to_string();
        // Named by route, as HTTP servers name their spans, so that the same request
        // lines up across traces, and across chapters, in a trace viewer.
        let span = tracing::info_span!("api", otel.name = %route(&method, &target), path = %target);
        berth_trace::set_parent(&span, berth_trace::headers::extract(&request.headers));
        let _entered = span.enter();

        let (status, body) = match self.route(&method, &target, &request.body) {
            Ok(body) => (200, body),
            Err(e) => {
                tracing::info!("{method} {target}: {e}");
                let body = ErrorBody {
                    message: e.to_string(),
                };
                (e.status(), serde_json::to_vec(&body).unwrap_or_default())
            }
        };
        let response = Message {
            start_line: format!("HTTP/1.1 {status} {}", reason(status)),
            body,
            ..Message::default()
        };
        let _ = http::write_message(&mut stream, &response);
    }
    // ANCHOR_END: answer

    fn route(
        self: &Arc<Self>,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, DaemonError> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("POST", ["images", "load"]) => {
                let request: LoadRequest = serde_json::from_slice(body)?;
                json(&self.images.load(Path::new(&request.tar))?)
            }
            ("GET", ["images"]) => json(&self.images.list()?),
            ("POST", ["containers"]) => json(&self.run(serde_json::from_slice(body)?)?),
            ("GET", ["containers"]) => {
                let all = query.split('&').any(|kv| kv == "all=1");
                let mut list: Vec<ContainerInfo> = self
                    .lock()
                    .values()
                    .filter(|c| all || c.state == State::Running)
                    .cloned()
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                json(&list)
            }
            ("POST", ["containers", key, "wait"]) => {
                let id = self.find(key)?.id;
                json(&self.wait_exit(&id, Duration::MAX)?)
            }
            ("GET", ["containers", key, "logs"]) => {
                let path = self
                    .root
                    .join("containers")
                    .join(self.find(key)?.id)
                    .join("log");
                io_at("reading", &path, fs::read(&path))
            }
            ("POST", ["containers", key, "stop"]) => json(&self.stop(key)?),
            ("DELETE", ["containers", key]) => json(&self.remove(key)?),
            _ => Err(DaemonError::NoRoute(format!("{method} {path}"))),
        }
    }

    // ANCHOR: run
    /// Creates and starts a container. The record goes in first (holding the name),
    /// then the slow work happens without the lock, then a thread waits for the exit.
    fn run(self: &Arc<Self>, request: RunRequest) -> Result<ContainerInfo, DaemonError> {
        let (layout, image) = self.images.open(&request.image)?;
        let id = random_id()?;
        let name = request.name.clone().unwrap_or_else(|| id[..12].to_string());
        let info = ContainerInfo {
            id: id.clone(),
            name: name.clone(),
            image: request.image.clone(),
            cmd: request.cmd.clone(),
            state: State::Running,
            exit_code: None,
            note: None,
        };
        {
            let mut containers = self.lock();
            if let Some(other) = containers.values().find(|c| c.name == name) {
                return Err(DaemonError::NameInUse {
                    name,
                    id: other.id.clone(),
                });
            }
            containers.insert(id.clone(), info.clone());
        }
        let dir = self.root.join("containers").join(&id);
        let started = io_at("creating", &dir, fs::create_dir_all(&dir))
            .and_then(|()| self.save(&info))
            .and_then(|()| {
                let launch = Launch {
                    id: &id,
                    dir: &dir,
                    layout: &layout,
                    image: &image,
                    cmd: &request.cmd,
                };
                Ok(self.driver.start(&launch)?)
            });
        let child = match started {
            Ok(child) => child,
            Err(e) => {
                // Leave nothing behind: a failed run has no container to remove.
                self.lock().remove(&id);
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        self.watch(id, child);
        Ok(info)
    }
    // ANCHOR_END: run

    /// Starts the thread that waits for the container's first process and records how it ended.
    fn watch(self: &Arc<Self>, id: String, mut child: Child) {
        let this = self.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            let (exit_code, note) = match status {
                Ok(status) => driver::exit_code(status),
                Err(e) => (None, Some(format!("waiting for the container: {e}"))),
            };
            // Saved while the lock is held, so that whoever sees the exit in memory
            // (shutdown, above all) knows it is on disk too.
            let mut containers = this.lock();
            let Some(info) = containers.get_mut(&id) else {
                return;
            };
            info.state = State::Exited;
            info.exit_code = exit_code;
            info.note = note;
            if let Err(e) = this.save(info) {
                tracing::warn!("recording the exit of {id}: {e}");
            }
            drop(containers);
            this.exited.notify_all();
        });
    }

    /// Waits until container `id` has exited, at most `limit`.
    fn wait_exit(&self, id: &str, limit: Duration) -> Result<ContainerInfo, DaemonError> {
        let deadline = Instant::now().checked_add(limit);
        let mut containers = self.lock();
        loop {
            match containers.get(id) {
                None => return Err(DaemonError::NoSuchContainer(id.into())),
                Some(info) if info.state == State::Exited => return Ok(info.clone()),
                Some(_) => {}
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(DaemonError::StopTimedOut(id.into(), limit));
            }
            containers = self
                .exited
                .wait_timeout(containers, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn stop(&self, key: &str) -> Result<ContainerInfo, DaemonError> {
        let info = self.find(key)?;
        if info.state != State::Running {
            return Err(DaemonError::NotRunning(key.into()));
        }
        self.driver.stop(&info.id, STOP_TIMEOUT_SECS)?;
        self.wait_exit(&info.id, Duration::from_secs(STOP_TIMEOUT_SECS as u64 + 5))
    }

    fn remove(&self, key: &str) -> Result<ContainerInfo, DaemonError> {
        let info = self.find(key)?;
        if info.state == State::Running {
            return Err(DaemonError::StillRunning(key.into()));
        }
        let dir = self.root.join("containers").join(&info.id);
        io_at("removing", &dir, fs::remove_dir_all(&dir))?;
        driver::remove_cgroups(&info.id);
        self.lock().remove(&info.id);
        Ok(info)
    }
}

/// 32 hex digits from the kernel's random pool, as Docker's ids (shorter).
fn random_id() -> Result<String, DaemonError> {
    let mut bytes = [0u8; 16];
    let path = Path::new("/dev/urandom");
    let mut file = io_at("opening", path, fs::File::open(path))?;
    io_at("reading", path, io::Read::read_exact(&mut file, &mut bytes))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Serializes an answer.
fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, DaemonError> {
    Ok(serde_json::to_vec(value)?)
}

/// `POST /containers/{id}/stop` for `POST /containers/web/stop?x=1`: the request's
/// method and route, without the values that differ from one request to the next.
fn route(method: &str, target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    let mut parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.len() > 1 && parts[0] == "containers" {
        parts[1] = "{id}";
    }
    format!("{method} /{}", parts.join("/"))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Internal Server Error",
    }
}

fn io_at<T>(action: &'static str, path: &Path, result: io::Result<T>) -> Result<T, DaemonError> {
    result.map_err(|source| DaemonError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_named_by_route_not_by_container() {
        assert_eq!(route("POST", "/containers"), "POST /containers");
        assert_eq!(route("GET", "/containers?all=1"), "GET /containers");
        assert_eq!(
            route("POST", "/containers/web/stop"),
            "POST /containers/{id}/stop"
        );
        assert_eq!(
            route("DELETE", "/containers/web"),
            "DELETE /containers/{id}"
        );
    }
}
