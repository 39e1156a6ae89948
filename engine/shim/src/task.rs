//! The `containerd.task.v2.Task` service: what containerd asks of a shim over ttrpc.
//!
//! One [`Shim`] serves one container: its init process and the processes exec'd in
//! it. Each method runs on a thread of the ttrpc server, opens a span named after the
//! method (its parent is the caller's, from the `traceparent` in the request's
//! metadata), does its work through the runtime, and records the outcome in the
//! [`State`].
//!
//! Two locks, for two reasons. `state` guards the processes and is only ever held for
//! a moment, because the main loop needs it to record every exit, and Wait sleeps on it.
//! `lifecycle` serialises the methods that change what exists (Create, Start, Delete,
//! Exec, Pause, Resume, Update) and *is* held across runtime commands; the main loop
//! never takes it, so a runtime command always has its exit delivered.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use protobuf::MessageField;
use ttrpc::{Code, TtrpcContext};

use crate::events::{timestamp, Publisher};
use crate::oom::{self, Readout};
use crate::options::{OptionsError, RuntimeOptions};
use crate::poller::{Poller, Token};
use crate::process::{Process, ProcessError, Status};
use crate::protos::api::{self, Empty};
use crate::protos::events::task as ev;
use crate::protos::shim::oci::ProcessDetails;
use crate::protos::topics;
use crate::reaper::Reaper;
use crate::rootfs::{self, RootfsError};
use crate::runtime::{Runtime, RuntimeError};
use crate::stdio::{self, Console, StdioError, StdioPaths};

/// Where the runtime writes the container init's pid, in the bundle (as runc's shim
/// does); the `delete` action reads it back for a shim that is gone.
pub const INIT_PID_FILE: &str = "init.pid";

/// How long Delete waits for a created-but-never-started init to die.
const DELETE_WAIT: Duration = Duration::from_secs(10);
/// How many exits of unknown pids are remembered (see [`State::unclaimed`]).
const UNCLAIMED_KEPT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Stdio(#[from] StdioError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not implemented by berth-shim")]
    Unimplemented(&'static str),
}

impl From<TaskError> for ttrpc::Error {
    /// The status code containerd turns back into its own error kinds (errdefs), so
    /// that `ctr` says "not found" or "failed precondition" with the message intact.
    fn from(e: TaskError) -> ttrpc::Error {
        let code = match &e {
            TaskError::NotFound(_) => Code::NOT_FOUND,
            TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            TaskError::Process(_) => Code::FAILED_PRECONDITION,
            TaskError::Invalid(_) | TaskError::Options(_) => Code::INVALID_ARGUMENT,
            TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
            _ => Code::UNKNOWN,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}

type Result<T> = std::result::Result<T, TaskError>;

/// What the shim knows about its container.
#[derive(Default)]
pub struct State {
    runtime: Option<Runtime>,
    init: Option<Process>,
    execs: HashMap<String, Process>,
    /// The OCI process JSON of each exec not yet started.
    exec_specs: HashMap<String, PathBuf>,
    /// Exits of pids not (yet) known to be ours: a process can be reaped before the
    /// runtime's pid file has told us its pid.
    unclaimed: VecDeque<(u32, u32, SystemTime)>,
    /// Set once init is deleted: Shutdown may end the shim.
    deleted: bool,
}

impl State {
    fn process(&mut self, exec_id: &str) -> Result<&mut Process> {
        let found = if exec_id.is_empty() {
            self.init.as_mut()
        } else {
            self.execs.get_mut(exec_id)
        };
        found.ok_or_else(|| {
            TaskError::NotFound(if exec_id.is_empty() {
                "the task has no init process: create it first".into()
            } else {
                format!("exec {exec_id:?} not found in the task; list them with `ctr task ps`")
            })
        })
    }

    /// Takes a remembered exit of `pid`, if it was reaped before we knew it.
    fn take_unclaimed(&mut self, pid: u32) -> Option<(u32, SystemTime)> {
        let at = self.unclaimed.iter().position(|(p, ..)| *p == pid)?;
        self.unclaimed
            .remove(at)
            .map(|(_, status, at)| (status, at))
    }
}

/// The shim's one service object, shared by the ttrpc threads and the main loop.
pub struct Shim {
    pub id: String,
    pub namespace: String,
    pub bundle: PathBuf,
    /// The shim's own socket; console sockets are made beside it.
    pub socket: PathBuf,
    pub reaper: Arc<Reaper>,
    pub publisher: Publisher,
    state: Mutex<State>,
    changed: Condvar,
    lifecycle: Mutex<()>,
    main_loop: MainLoop,
    /// The container's memory cgroup watch, once created (see [`crate::oom`]).
    oom: Mutex<Option<oom::Watch>>,
}

/// What the service shares with the main loop ([`crate::serve`]).
pub struct MainLoop {
    /// The main loop's epoll, where Create adds the OOM watch.
    pub poller: Arc<Poller>,
    /// Tells the main loop to end the shim (Shutdown).
    pub exit: Box<dyn Fn() + Send + Sync>,
}

/// A span per method, parented by the caller's `traceparent` (ttrpc metadata).
macro_rules! traced {
    ($ctx:expr, $name:literal, $id:expr) => {{
        let span = tracing::info_span!($name, id = %$id);
        berth_trace::set_parent(&span, berth_trace::context::extract(&Metadata(&$ctx.metadata)));
        span.entered()
    }};
}

/// ttrpc request metadata as an OpenTelemetry carrier.
struct Metadata<'a>(&'a HashMap<String, Vec<String>>);

impl opentelemetry::propagation::Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl Shim {
    pub fn new(
        id: String,
        namespace: String,
        bundle: PathBuf,
        socket: PathBuf,
        reaper: Arc<Reaper>,
        publisher: Publisher,
        main_loop: MainLoop,
    ) -> Shim {
        Shim {
            id,
            namespace,
            bundle,
            socket,
            reaper,
            publisher,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            lifecycle: Mutex::new(()),
            main_loop,
            oom: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lifecycle(&self) -> MutexGuard<'_, ()> {
        self.lifecycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn runtime(&self) -> Result<Runtime> {
        self.state()
            .runtime
            .clone()
            .ok_or_else(|| TaskError::NotFound("the task has not been created".into()))
    }

    fn check_id(&self, id: &str) -> Result<()> {
        if id != self.id {
            return Err(TaskError::NotFound(format!(
                "this shim serves task {:?}, not {id:?}",
                self.id
            )));
        }
        Ok(())
    }

    // ANCHOR: exited
    /// The main loop's report of a reaped process that was not a runtime command.
    /// The exit is kept on the process until Delete, and announced to containerd,
    /// but never before the process's start was.
    pub fn process_exited(&self, pid: u32, status: u32) {
        let at = SystemTime::now();
        let mut guard = self.state();
        let state = &mut *guard;
        let container = self.id.clone();
        let process = state
            .init
            .iter_mut()
            .chain(state.execs.values_mut())
            .find(|p| p.pid == pid && p.exit.is_none());
        match process {
            Some(process) => {
                process.exited(status, at);
                if process.start_announced {
                    let id = process.exec_id.clone().unwrap_or_else(|| container.clone());
                    self.publisher.queue(
                        topics::TASK_EXIT_EVENT_TOPIC,
                        &exit_event(&container, &id, pid, status, at),
                    );
                }
            }
            None => {
                if state.unclaimed.len() == UNCLAIMED_KEPT {
                    state.unclaimed.pop_front();
                }
                state.unclaimed.push_back((pid, status, at));
            }
        }
        self.changed.notify_all();
        drop(guard);
        self.publisher.flush();
    }
    // ANCHOR_END: exited

    // ANCHOR: oom
    /// Watches the memory cgroup init is in, from the main loop's epoll. A shim that
    /// cannot watch it still runs the container: it only hears no OOMs, and says so.
    fn watch_oom(&self, pid: u32) {
        let watch = match oom::Watch::for_pid(pid) {
            Ok(Some(watch)) => watch,
            Ok(None) => return, // no memory controller: nothing to hear
            Err(e) => {
                tracing::warn!("task {:?} gets no OOM events: {e}", self.id);
                return;
            }
        };
        if let Err(e) = self.main_loop.poller.add(watch.fd(), Token::Oom) {
            tracing::warn!("task {:?} gets no OOM events: epoll: {e}", self.id);
            return;
        }
        *self.oom.lock().unwrap_or_else(PoisonError::into_inner) = Some(watch);
    }

    /// The main loop's report that the memory cgroup's fd is readable: an OOM is
    /// announced as `/tasks/oom`; a removed cgroup ends the watch.
    pub fn memory_event(&self) {
        let mut oom = self.oom.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(watch) = oom.as_mut() else { return };
        match watch.read() {
            Readout::Oom => {
                drop(oom);
                let mut event = ev::TaskOOM::new();
                event.container_id = self.id.clone();
                self.publisher.queue(topics::TASK_OOM_EVENT_TOPIC, &event);
                self.publisher.flush();
            }
            Readout::Nothing => {}
            Readout::Gone => self.unwatch_oom(oom.take()),
        }
    }

    fn unwatch_oom(&self, watch: Option<oom::Watch>) {
        if let Some(watch) = watch {
            self.main_loop.poller.remove(watch.fd());
        }
    }
    // ANCHOR_END: oom

    /// Create: mount the rootfs, open the stdio, `runtime create`.
    fn create_task(&self, req: api::CreateTaskRequest) -> Result<u32> {
        let _lifecycle = self.lifecycle();
        if self.state().init.is_some() {
            return Err(TaskError::AlreadyExists(format!(
                "task {:?} already exists",
                self.id
            )));
        }
        let options = RuntimeOptions::from_any(req.options.as_ref())?;
        options.save(&self.bundle)?;
        let runtime = Runtime::new(options, &self.bundle, &self.namespace)?;
        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        rootfs::mount_all(&req.rootfs, &self.bundle)?;
        let pid_file = self.bundle.join(INIT_PID_FILE);
        let created = self.run_process(&paths, &pid_file, |stdio, console| {
            runtime.create(&self.reaper, &self.id, &pid_file, console, stdio)
        });
        let (pid, io) = match created {
            Ok(created) => created,
            Err(e) => {
                // Leave nothing behind: a half-created container, the rootfs mount.
                let _ = runtime.delete(&self.reaper, &self.id, true);
                rootfs::unmount_all(&self.bundle);
                return Err(e);
            }
        };
        let mut init = Process::new(None, paths);
        init.pid = pid;
        init.io = Some(io);
        let mut state = self.state();
        if let Some((status, at)) = state.take_unclaimed(pid) {
            init.exited(status, at);
        }
        state.init = Some(init);
        state.runtime = Some(runtime);
        drop(state);
        self.watch_oom(pid);
        let state = self.state();
        let mut event = ev::TaskCreate::new();
        event.container_id = self.id.clone();
        event.bundle = self.bundle.display().to_string();
        event.rootfs = req.rootfs.clone();
        let io = event.io.mut_or_insert_default();
        io.stdin = req.stdin;
        io.stdout = req.stdout;
        io.stderr = req.stderr;
        io.terminal = req.terminal;
        event.pid = pid;
        self.publisher
            .queue(topics::TASK_CREATE_EVENT_TOPIC, &event);
        drop(state);
        self.publisher.flush();
        Ok(pid)
    }

    // ANCHOR: run_process
    /// Runs `create` or `exec` with the process's stdio (fifos, or a pty through a
    /// console socket) and returns the pid the runtime wrote and the shim's ends of
    /// the stdio.
    fn run_process(
        &self,
        paths: &StdioPaths,
        pid_file: &Path,
        run: impl FnOnce(
            crate::runtime::RuntimeStdio,
            Option<&Path>,
        ) -> std::result::Result<(), RuntimeError>,
    ) -> Result<(u32, stdio::Io)> {
        let io = if paths.terminal {
            let console = Console::bind(&self.console_path())?;
            run(stdio::for_terminal(), Some(&console.path))?;
            let master = console.receive_master()?;
            stdio::attach_pty(master, paths)?
        } else {
            let (io, runtime_stdio) = stdio::open_fifos(paths)?;
            run(runtime_stdio, None)?;
            io
        };
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| {
                TaskError::Invalid(format!(
                    "the runtime wrote no pid to {}; is it runc-compatible?",
                    pid_file.display()
                ))
            })?;
        Ok((pid, io))
    }
    // ANCHOR_END: run_process

    fn console_path(&self) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut path = self.socket.clone().into_os_string();
        path.push(format!(".console-{n}"));
        path.into()
    }

    fn start_init(&self) -> Result<u32> {
        let _lifecycle = self.lifecycle();
        let runtime = self.runtime()?;
        self.state().process("")?.check_start()?;
        runtime.start(&self.reaper, &self.id)?;
        let mut state = self.state();
        let init = state.process("")?;
        let pid = init.pid;
        init.started(pid);
        init.start_announced = true;
        let exit = init.exit;
        let mut event = ev::TaskStart::new();
        event.container_id = self.id.clone();
        event.pid = pid;
        self.publisher.queue(topics::TASK_START_EVENT_TOPIC, &event);
        if let Some(exit) = exit {
            let event = exit_event(&self.id, &self.id, pid, exit.status, exit.at);
            self.publisher.queue(topics::TASK_EXIT_EVENT_TOPIC, &event);
        }
        drop(state);
        self.publisher.flush();
        Ok(pid)
    }

    fn start_exec(&self, exec_id: &str) -> Result<u32> {
        let _lifecycle = self.lifecycle();
        let runtime = self.runtime()?;
        let (paths, spec) = {
            let mut state = self.state();
            let process = state.process(exec_id)?;
            process.check_start()?;
            let paths = process.stdio.clone();
            let spec = state.exec_specs.get(exec_id).cloned().unwrap_or_default();
            (paths, spec)
        };
        let pid_file = self.bundle.join(format!("exec-{exec_id}.pid"));
        let started = self.run_process(&paths, &pid_file, |stdio, console| {
            runtime.exec(&self.reaper, &self.id, &spec, &pid_file, console, stdio)
        });
        let _ = std::fs::remove_file(&pid_file);
        let (pid, io) = started?;
        let mut state = self.state();
        let unclaimed = state.take_unclaimed(pid);
        let process = state.process(exec_id)?;
        process.started(pid);
        process.io = Some(io);
        process.start_announced = true;
        if let Some((status, at)) = unclaimed {
            process.exited(status, at);
        }
        let exit = process.exit;
        let mut event = ev::TaskExecStarted::new();
        event.container_id = self.id.clone();
        event.exec_id = exec_id.to_owned();
        event.pid = pid;
        self.publisher
            .queue(topics::TASK_EXEC_STARTED_EVENT_TOPIC, &event);
        if let Some(exit) = exit {
            let event = exit_event(&self.id, exec_id, pid, exit.status, exit.at);
            self.publisher.queue(topics::TASK_EXIT_EVENT_TOPIC, &event);
        }
        self.changed.notify_all();
        drop(state);
        self.publisher.flush();
        Ok(pid)
    }

    fn delete_init(&self) -> Result<api::DeleteResponse> {
        let _lifecycle = self.lifecycle();
        let runtime = self.runtime()?;
        self.state().process("")?.check_delete()?;
        // Created (never started) or stopped: `delete --force` kills a waiting init.
        if let Err(e) = runtime.delete(&self.reaper, &self.id, true) {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
        let mut state = self.state();
        let deadline = std::time::Instant::now() + DELETE_WAIT;
        while state.init.as_ref().is_some_and(|p| p.exit.is_none()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let init = state
            .init
            .take()
            .expect("checked above, under the lifecycle lock");
        state.execs.clear();
        state.deleted = true;
        drop(state);
        let watch = self
            .oom
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.unwatch_oom(watch);
        rootfs::unmount_all(&self.bundle);
        // SIGKILL's status, for an init that never ran and so never exited on its own.
        let (status, at) = init
            .exit
            .map_or((128 + 9, SystemTime::now()), |e| (e.status, e.at));
        let mut event = ev::TaskDelete::new();
        event.container_id = self.id.clone();
        event.pid = init.pid;
        event.exit_status = status;
        event.exited_at = Some(timestamp(at)).into();
        self.publisher
            .queue(topics::TASK_DELETE_EVENT_TOPIC, &event);
        self.changed.notify_all();
        self.publisher.flush();
        Ok(delete_response(init.pid, status, at))
    }

    fn delete_exec(&self, exec_id: &str) -> Result<api::DeleteResponse> {
        let _lifecycle = self.lifecycle();
        let mut state = self.state();
        state.process(exec_id)?.check_delete()?;
        let process = state.execs.remove(exec_id).expect("found above");
        if let Some(spec) = state.exec_specs.remove(exec_id) {
            let _ = std::fs::remove_file(spec);
        }
        self.changed.notify_all();
        let (status, at) = process
            .exit
            .map_or((0, SystemTime::now()), |e| (e.status, e.at));
        Ok(delete_response(process.pid, status, at))
    }
}

fn exit_event(container: &str, id: &str, pid: u32, status: u32, at: SystemTime) -> ev::TaskExit {
    let mut event = ev::TaskExit::new();
    event.container_id = container.to_owned();
    event.id = id.to_owned();
    event.pid = pid;
    event.exit_status = status;
    event.exited_at = Some(timestamp(at)).into();
    event
}

fn delete_response(pid: u32, status: u32, at: SystemTime) -> api::DeleteResponse {
    let mut response = api::DeleteResponse::new();
    response.pid = pid;
    response.exit_status = status;
    response.exited_at = Some(timestamp(at)).into();
    response
}

fn status_of(status: Status) -> api::Status {
    match status {
        Status::Created => api::Status::CREATED,
        Status::Running => api::Status::RUNNING,
        Status::Paused => api::Status::PAUSED,
        Status::Stopped => api::Status::STOPPED,
    }
}

impl crate::protos::Task for Shim {
    fn create(
        &self,
        ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Create", req.id);
        self.check_id(&req.id)?;
        if !req.checkpoint.is_empty() {
            return Err(TaskError::Unimplemented("restoring from a checkpoint").into());
        }
        let pid = self.create_task(req)?;
        let mut response = api::CreateTaskResponse::new();
        response.pid = pid;
        Ok(response)
    }

    fn start(
        &self,
        ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> ttrpc::Result<api::StartResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Start", req.id);
        self.check_id(&req.id)?;
        let pid = if req.exec_id.is_empty() {
            self.start_init()?
        } else {
            self.start_exec(&req.exec_id)?
        };
        let mut response = api::StartResponse::new();
        response.pid = pid;
        Ok(response)
    }

    fn state(
        &self,
        ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> ttrpc::Result<api::StateResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/State", req.id);
        self.check_id(&req.id)?;
        let mut state = self.state();
        let process = state.process(&req.exec_id)?;
        let mut response = api::StateResponse::new();
        response.id = req.id;
        response.exec_id = req.exec_id;
        response.bundle = self.bundle.display().to_string();
        response.pid = process.pid;
        response.status = status_of(process.status).into();
        response.stdin = process.stdio.stdin.clone();
        response.stdout = process.stdio.stdout.clone();
        response.stderr = process.stdio.stderr.clone();
        response.terminal = process.stdio.terminal;
        if let Some(exit) = process.exit {
            response.exit_status = exit.status;
            response.exited_at = Some(timestamp(exit.at)).into();
        }
        Ok(response)
    }

    // ANCHOR: wait
    fn wait(&self, ctx: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Wait", req.id);
        self.check_id(&req.id)?;
        let mut state = self.state();
        loop {
            if let Some(exit) = state.process(&req.exec_id)?.exit {
                let mut response = api::WaitResponse::new();
                response.exit_status = exit.status;
                response.exited_at = Some(timestamp(exit.at)).into();
                return Ok(response);
            }
            // Sleeps without the lock; every recorded exit wakes it.
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
    // ANCHOR_END: wait

    fn kill(&self, ctx: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Kill", req.id);
        self.check_id(&req.id)?;
        let pid = {
            let mut state = self.state();
            let process = state.process(&req.exec_id)?;
            if !(req.all && process.exec_id.is_none()) {
                process
                    .check_kill()
                    .map_err(|e| TaskError::NotFound(e.to_string()))?;
            }
            process.pid
        };
        if req.exec_id.is_empty() {
            // The runtime signals init (and with `all`, every process in its cgroup).
            let runtime = self.runtime()?;
            if let Err(e) = runtime.kill(&self.reaper, &self.id, req.signal, req.all) {
                if self.state().process("")?.exit.is_some() {
                    return Err(TaskError::NotFound("process already finished".into()).into());
                }
                return Err(TaskError::from(e).into());
            }
        } else {
            // An exec'd process is the shim's own child: signal it directly.
            let signal = nix::sys::signal::Signal::try_from(req.signal as i32)
                .map_err(|_| TaskError::Invalid(format!("signal {} does not exist", req.signal)))?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).map_err(
                |e| {
                    TaskError::NotFound(format!(
                        "cannot signal exec {:?} (pid {pid}): {e}",
                        req.exec_id
                    ))
                },
            )?;
        }
        Ok(Empty::new())
    }

    fn delete(
        &self,
        ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Delete", req.id);
        self.check_id(&req.id)?;
        let response = if req.exec_id.is_empty() {
            self.delete_init()?
        } else {
            self.delete_exec(&req.exec_id)?
        };
        Ok(response)
    }

    fn exec(&self, ctx: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Exec", req.id);
        self.check_id(&req.id)?;
        let _lifecycle = self.lifecycle();
        let mut state = self.state();
        match state.init.as_ref().map(|p| p.status) {
            None => return Err(TaskError::NotFound("the task has not been created".into()).into()),
            Some(Status::Stopped) => {
                return Err(TaskError::Process(ProcessError::Transition {
                    action: "exec in",
                    name: "init".into(),
                    status: Status::Stopped,
                    hint: "the container has exited",
                })
                .into())
            }
            Some(_) => {}
        }
        if state.execs.contains_key(&req.exec_id) {
            return Err(
                TaskError::AlreadyExists(format!("exec {:?} already exists", req.exec_id)).into(),
            );
        }
        // The spec is the OCI process as JSON, which is what `runtime exec --process` reads.
        let spec = self.bundle.join(format!("exec-{}.json", req.exec_id));
        let value = req
            .spec
            .as_ref()
            .map(|s| s.value.as_slice())
            .unwrap_or_default();
        std::fs::write(&spec, value)
            .map_err(|e| TaskError::Invalid(format!("cannot write {}: {e}", spec.display())))?;
        let paths = StdioPaths {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
        };
        state.execs.insert(
            req.exec_id.clone(),
            Process::new(Some(req.exec_id.clone()), paths),
        );
        state.exec_specs.insert(req.exec_id.clone(), spec);
        let mut event = ev::TaskExecAdded::new();
        event.container_id = self.id.clone();
        event.exec_id = req.exec_id;
        self.publisher
            .queue(topics::TASK_EXEC_ADDED_EVENT_TOPIC, &event);
        drop(state);
        self.publisher.flush();
        Ok(Empty::new())
    }

    fn pids(&self, ctx: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Pids", req.id);
        self.check_id(&req.id)?;
        let pids = self
            .runtime()?
            .ps(&self.reaper, &self.id)
            .map_err(TaskError::from)?;
        let execs: HashMap<u32, String> = self
            .state()
            .execs
            .iter()
            .filter(|(_, p)| p.pid != 0)
            .map(|(id, p)| (p.pid, id.clone()))
            .collect();
        let mut response = api::PidsResponse::new();
        for pid in pids {
            let mut info = api::ProcessInfo::new();
            info.pid = pid;
            if let Some(exec_id) = execs.get(&pid) {
                let mut details = ProcessDetails::new();
                details.exec_id = exec_id.clone();
                info.info = MessageField::some(crate::names::pack(&details).map_err(|e| {
                    TaskError::Invalid(format!("cannot encode the process details: {e}"))
                })?);
            }
            response.processes.push(info);
        }
        Ok(response)
    }

    fn pause(&self, ctx: &TtrpcContext, req: api::PauseRequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Pause", req.id);
        self.check_id(&req.id)?;
        self.set_paused(true)?;
        Ok(Empty::new())
    }

    fn resume(&self, ctx: &TtrpcContext, req: api::ResumeRequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Resume", req.id);
        self.check_id(&req.id)?;
        self.set_paused(false)?;
        Ok(Empty::new())
    }

    fn checkpoint(
        &self,
        ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Checkpoint", req.id);
        Err(TaskError::Unimplemented("checkpoint").into())
    }

    fn update(&self, ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Update", req.id);
        self.check_id(&req.id)?;
        let _lifecycle = self.lifecycle();
        let runtime = self.runtime()?;
        // The resources are the OCI LinuxResources as JSON: `runtime update --resources`.
        let file = self.bundle.join("update-resources.json");
        let value = req
            .resources
            .as_ref()
            .map(|r| r.value.as_slice())
            .unwrap_or_default();
        std::fs::write(&file, value)
            .map_err(|e| TaskError::Invalid(format!("cannot write {}: {e}", file.display())))?;
        let updated = runtime.update(&self.reaper, &self.id, &file);
        let _ = std::fs::remove_file(&file);
        updated.map_err(TaskError::from)?;
        Ok(Empty::new())
    }

    fn stats(
        &self,
        ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> ttrpc::Result<api::StatsResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Stats", req.id);
        self.check_id(&req.id)?;
        let data = self
            .runtime()?
            .stats(&self.reaper, &self.id)
            .map_err(TaskError::from)?;
        let metrics = crate::stats::metrics(&data, crate::stats::host_is_v2())
            .map_err(|e| TaskError::Invalid(format!("cannot encode the metrics: {e}")))?;
        let mut response = api::StatsResponse::new();
        response.stats = MessageField::some(metrics);
        Ok(response)
    }

    fn resize_pty(&self, ctx: &TtrpcContext, req: api::ResizePtyRequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/ResizePty", req.id);
        self.check_id(&req.id)?;
        let mut state = self.state();
        if let Some(io) = &state.process(&req.exec_id)?.io {
            io.resize(req.width, req.height).map_err(TaskError::from)?;
        }
        Ok(Empty::new())
    }

    fn close_io(&self, ctx: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/CloseIO", req.id);
        self.check_id(&req.id)?;
        let mut state = self.state();
        let process = state.process(&req.exec_id)?;
        if req.stdin {
            if let Some(io) = &mut process.io {
                io.close_stdin();
            }
        }
        Ok(Empty::new())
    }

    fn connect(
        &self,
        ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Connect", req.id);
        let mut response = api::ConnectResponse::new();
        response.shim_pid = std::process::id();
        response.task_pid = self.state().init.as_ref().map_or(0, |p| p.pid);
        response.version = crate::VERSION.into();
        Ok(response)
    }

    // ANCHOR: shutdown
    fn shutdown(&self, ctx: &TtrpcContext, req: api::ShutdownRequest) -> ttrpc::Result<Empty> {
        let _span = traced!(ctx, "containerd.task.v2.Task/Shutdown", req.id);
        let state = self.state();
        // A shim with a container to look after stays, whoever asks.
        if state.init.is_some() && !req.now {
            return Ok(Empty::new());
        }
        drop(state);
        (self.main_loop.exit)();
        Ok(Empty::new())
    }
    // ANCHOR_END: shutdown
}

impl Shim {
    fn set_paused(&self, paused: bool) -> Result<()> {
        let _lifecycle = self.lifecycle();
        let runtime = self.runtime()?;
        {
            let mut state = self.state();
            let init = state.process("")?;
            if paused {
                init.check_pause()?;
            } else {
                init.check_resume()?;
            }
        }
        if paused {
            runtime.pause(&self.reaper, &self.id)?;
        } else {
            runtime.resume(&self.reaper, &self.id)?;
        }
        let mut state = self.state();
        state.process("")?.set_paused(paused);
        if paused {
            let mut event = ev::TaskPaused::new();
            event.container_id = self.id.clone();
            self.publisher
                .queue(topics::TASK_PAUSED_EVENT_TOPIC, &event);
        } else {
            let mut event = ev::TaskResumed::new();
            event.container_id = self.id.clone();
            self.publisher
                .queue(topics::TASK_RESUMED_EVENT_TOPIC, &event);
        }
        drop(state);
        self.publisher.flush();
        Ok(())
    }
}
