//! Task runtime v2: starting a shim per task, and talking to it.
//!
//! containerd does not run containers. For each task it starts a *shim*, a small
//! process of the runtime's choosing that outlives containerd and owns the container:
//! runtime `io.containerd.X.vN` is the program `containerd-shim-X-vN` on the `PATH`
//! (`containerd-shim-runc-v2`, or berth's own `containerd-shim-berth-v2`). The
//! handshake ([`Runtime::start_shim`]):
//!
//! 1. make the bundle `STATE/io.containerd.runtime.v2.task/NS/ID`, with the
//!    container's OCI spec as `config.json`, an empty `rootfs/`, and a `log` fifo
//!    whose other end becomes the shim's stderr (copied into this process's log);
//! 2. run `BIN -namespace NS -id ID -address SOCK -publish-binary SELF start` in
//!    it, with the runtime options (a protobuf `Any`) on stdin and
//!    `TTRPC_ADDRESS=SOCK.ttrpc` (where the shim sends its events,
//!    [`crate::shim_events`]) in its environment;
//! 3. `start` forks the long-running shim, prints its ttrpc address
//!    (`unix:///…/s/HASH`) and exits; berth connects a ttrpc client
//!    (`containerd.task.v2.Task`) to that address and sends Create.
//!
//! From then on every task request is one ttrpc call to the task's shim
//! ([`Shim::call`]), made with ttrpc's async client: a Wait that lasts as long as
//! the container is a parked tokio task, not a thread. The caller's trace context
//! goes along as `traceparent` in the ttrpc metadata, so the shim's spans are
//! children of the gRPC request's.
//!
//! A shim outlives berth-containerd, so a restarted berth-containerd *reloads* its
//! tasks ([`Runtime::reload`]): it walks the bundles, reads each one's `address` file
//! and reconnects. A shim that does not answer is dead; berth runs
//! `BIN … -bundle B delete` for it (the shim program cleaning up after its dead
//! self: the container is force-deleted, the rootfs unmounted) and delivers the
//! task's `/tasks/exit` itself, since no shim is left to send it. While it runs, berth
//! watches every shim's process ([`Runtime::watch`]) and does the same for a shim
//! that dies under it.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message as _;
use containerd_shim_protos::shim_async::TaskClient;
use prost::Message as _;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, Interest};
use tonic::Status;

use crate::events::Exchange;
use crate::proto::containerd::events::{TaskDelete, TaskExit};

/// How long a shim's `start` (or `delete`) may take, and an ordinary ttrpc call.
const SHIM_START: Duration = Duration::from_secs(20);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reloaded shim gets to answer Connect before it is taken for dead.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The exit status reported for a task whose shim died and whose `delete` said
/// nothing better (containerd's choice too).
const UNKNOWN_EXIT: u32 = 255;
/// Where bundles live below `--state`, as containerd names the directory.
pub const TASKS_DIR: &str = "io.containerd.runtime.v2.task";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime name {0:?} is not of the form io.containerd.NAME.VERSION (io.containerd.runc.v2, say)")]
    RuntimeName(String),
    #[error("container {id:?} already has a task in namespace {namespace:?}; delete it first")]
    TaskExists { namespace: String, id: String },
    #[error("container {id:?} has no task in namespace {namespace:?}; create one first (ctr task start)")]
    NoTask { namespace: String, id: String },
    #[error("cannot prepare the bundle {path}: {source}")]
    Bundle { path: PathBuf, source: io::Error },
    #[error("the bundle {path} is left from an earlier run and could not be cleaned up at startup (see berth-containerd's log); unmount and remove it by hand")]
    StaleBundle { path: PathBuf },
    #[error("cannot read the shim's address from {path}: {source}")]
    Address { path: PathBuf, source: io::Error },
    #[error("cannot run the shim {binary} (is it on berth-containerd's PATH?): {source}")]
    Spawn { binary: String, source: io::Error },
    #[error("the shim {binary} did not finish `start` within {SHIM_START:?}")]
    StartTimeout { binary: String },
    #[error("the shim {binary} failed to start ({status}): {output}")]
    Start {
        binary: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("the shim {binary} failed to `delete` after its dead shim: {output}")]
    Delete { binary: String, output: String },
    #[error("cannot connect to the shim of {id:?} at {address}: {source}")]
    Connect {
        id: String,
        address: String,
        source: ttrpc::Error,
    },
    #[error("shim of {id:?}: {method}: {message}")]
    Call {
        id: String,
        method: &'static str,
        code: tonic::Code,
        message: String,
    },
}

impl From<RuntimeError> for Status {
    fn from(err: RuntimeError) -> Self {
        let message = err.to_string();
        match err {
            RuntimeError::RuntimeName(_) => Status::invalid_argument(message),
            RuntimeError::TaskExists { .. } => Status::already_exists(message),
            RuntimeError::StaleBundle { .. } => Status::failed_precondition(message),
            RuntimeError::NoTask { .. } => Status::not_found(message),
            RuntimeError::Call { code, .. } => Status::new(code, message),
            _ => Status::internal(message),
        }
    }
}

/// `io.containerd.runc.v2` → `containerd-shim-runc-v2`.
pub fn shim_binary(runtime: &str) -> Result<String, RuntimeError> {
    let bad = || RuntimeError::RuntimeName(runtime.to_owned());
    let rest = runtime.strip_prefix("io.containerd.").ok_or_else(bad)?;
    let (name, version) = rest.rsplit_once('.').ok_or_else(bad)?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !plain(name) || !plain(version) || !version.starts_with('v') {
        return Err(bad());
    }
    Ok(format!(
        "containerd-shim-{}-{version}",
        name.replace('.', "-")
    ))
}

/// One task's shim: where its bundle is and the ttrpc client to it.
pub struct Shim {
    pub namespace: String,
    pub id: String,
    pub bundle: PathBuf,
    /// The shim program (`containerd-shim-runc-v2`), for `delete` if the shim dies.
    binary: String,
    /// The task's pid, for the exit event should the shim die.
    pid: AtomicU32,
    /// The shim's own pid, as its Connect answered: what [`Runtime::watch`] waits on.
    shim_pid: AtomicU32,
    /// Set before berth asks the shim to exit, so its going is not taken for a death.
    closing: AtomicBool,
    client: TaskClient,
    /// Copies the shim's stderr (the `log` fifo) into this process's log.
    log: tokio::task::JoinHandle<()>,
}

/// The ttrpc metadata as an OpenTelemetry carrier, to send the caller's `traceparent`.
struct Metadata<'a>(&'a mut HashMap<String, Vec<String>>);

impl opentelemetry::propagation::Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), vec![value]);
    }
}

/// A ttrpc call's context: its deadline (none: wait as long as it takes, as Wait
/// must) and the current span's trace context.
fn context(timeout: Option<Duration>) -> ttrpc::context::Context {
    let mut ctx = match timeout {
        Some(t) => ttrpc::context::with_duration(t),
        None => ttrpc::context::Context::default(),
    };
    berth_trace::context::inject_current(&mut Metadata(&mut ctx.metadata));
    ctx
}

impl Shim {
    // ANCHOR: call
    /// Calls the shim. The context (and with it the trace parent) is made here, on
    /// the request's task, where the request's span is current.
    pub async fn call<R, F>(
        &self,
        method: &'static str,
        timeout: Option<Duration>,
        call: impl FnOnce(TaskClient, ttrpc::context::Context) -> F,
    ) -> Result<R, RuntimeError>
    where
        F: Future<Output = ttrpc::Result<R>>,
    {
        let answer = call(self.client.clone(), context(timeout)).await;
        let error = |code, message: String| RuntimeError::Call {
            id: self.id.clone(),
            method,
            code,
            message,
        };
        match answer {
            Ok(response) => Ok(response),
            Err(ttrpc::Error::RpcStatus(status)) => Err(error(
                tonic::Code::from_i32(status.code.value()),
                status.message,
            )),
            Err(other) => Err(error(tonic::Code::Unavailable, other.to_string())),
        }
    }
    // ANCHOR_END: call

    /// Asks the shim `Connect`, and records the pids it tells: its own (what
    /// [`Runtime::watch`] waits on) and the task's.
    async fn connect(&self, timeout: Option<Duration>) -> Result<(), RuntimeError> {
        let request = api::ConnectRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        let connected = self
            .call("Connect", timeout, move |c, ctx| async move {
                c.connect(ctx, &request).await
            })
            .await?;
        if connected.task_pid != 0 {
            self.pid.store(connected.task_pid, Ordering::Relaxed);
        }
        self.shim_pid.store(connected.shim_pid, Ordering::Relaxed);
        Ok(())
    }
}

enum Slot {
    /// Reserved while the shim starts, so a second Create of the same id waits its turn.
    Creating,
    Running(Arc<Shim>),
}

/// Every task this berth-containerd runs, by (namespace, container id).
pub struct Runtime {
    /// The bundles' parent: `STATE/io.containerd.runtime.v2.task`.
    bundles: PathBuf,
    /// berth-containerd's gRPC socket: shims place their own sockets beside it.
    address: PathBuf,
    /// The ttrpc socket shims forward their events to.
    pub ttrpc_address: PathBuf,
    debug: bool,
    /// Where the exit of a task whose shim died is published.
    events: Exchange,
    /// A std Mutex: held only to look up or change the map, never across an `.await`.
    tasks: Mutex<HashMap<(String, String), Slot>>,
}

/// What a new task needs (from the Create request and the container's record).
pub struct NewTask {
    pub namespace: String,
    pub id: String,
    pub runtime: String,
    /// The container's OCI spec, as JSON (`config.json`).
    pub spec: Vec<u8>,
    /// The runtime options: the shim reads them from its stdin at `start`.
    pub runtime_options: Option<prost_types::Any>,
    pub create: api::CreateTaskRequest,
}

impl Runtime {
    pub fn new(state: &Path, address: &Path, debug: bool, events: Exchange) -> Runtime {
        let mut ttrpc = address.as_os_str().to_owned();
        ttrpc.push(".ttrpc");
        Runtime {
            bundles: state.join(TASKS_DIR),
            address: address.to_owned(),
            ttrpc_address: PathBuf::from(ttrpc),
            debug,
            events,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, HashMap<(String, String), Slot>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn has_task(&self, namespace: &str, id: &str) -> bool {
        self.tasks()
            .contains_key(&(namespace.to_owned(), id.to_owned()))
    }

    /// The shim of a task, if it has one that finished starting.
    pub fn get(&self, namespace: &str, id: &str) -> Result<Arc<Shim>, RuntimeError> {
        match self.tasks().get(&(namespace.to_owned(), id.to_owned())) {
            Some(Slot::Running(shim)) => Ok(shim.clone()),
            _ => Err(RuntimeError::NoTask {
                namespace: namespace.to_owned(),
                id: id.to_owned(),
            }),
        }
    }

    /// The shims of one namespace's tasks.
    pub fn list(&self, namespace: &str) -> Vec<Arc<Shim>> {
        let mut shims: Vec<Arc<Shim>> = self
            .tasks()
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .filter_map(|(_, slot)| match slot {
                Slot::Running(shim) => Some(shim.clone()),
                Slot::Creating => None,
            })
            .collect();
        shims.sort_by(|a, b| a.id.cmp(&b.id));
        shims
    }

    // ANCHOR: create
    /// Starts a shim for the task and has it create the task; returns the shim and
    /// the task's pid. On any failure, what was made is undone.
    pub async fn create(self: &Arc<Self>, new: NewTask) -> Result<(Arc<Shim>, u32), RuntimeError> {
        let key = (new.namespace.clone(), new.id.clone());
        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&key) {
                return Err(RuntimeError::TaskExists {
                    namespace: new.namespace,
                    id: new.id,
                });
            }
            tasks.insert(key.clone(), Slot::Creating);
        }
        let created = self.start_and_create(new).await;
        let mut tasks = self.tasks();
        match created {
            Ok((shim, pid)) => {
                tasks.insert(key, Slot::Running(shim.clone()));
                tokio::spawn(self.clone().watch(shim.clone()));
                Ok((shim, pid))
            }
            Err(err) => {
                tasks.remove(&key);
                Err(err)
            }
        }
    }
    // ANCHOR_END: create

    async fn start_and_create(&self, new: NewTask) -> Result<(Arc<Shim>, u32), RuntimeError> {
        let binary = shim_binary(&new.runtime)?;
        let bundle = self.bundles.join(&new.namespace).join(&new.id);
        let log = make_bundle(&bundle, &new.spec)?;
        let started = async {
            let address = self.start_shim(&binary, &new, &bundle).await?;
            let client = ttrpc::asynchronous::Client::connect(&address)
                .await
                .map_err(|source| RuntimeError::Connect {
                    id: new.id.clone(),
                    address: address.clone(),
                    source,
                })?;
            Ok(TaskClient::new(client))
        }
        .await;
        let client = match started {
            Ok(started) => started,
            Err(err) => {
                log.abort();
                remove_bundle(&bundle);
                return Err(err);
            }
        };
        let shim = Arc::new(Shim {
            namespace: new.namespace.clone(),
            id: new.id.clone(),
            bundle: bundle.clone(),
            binary,
            pid: AtomicU32::new(0),
            shim_pid: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            client,
            log,
        });
        let mut create = new.create;
        create.id = new.id.clone();
        create.bundle = bundle.display().to_string();
        let timeout = Some(CALL_TIMEOUT);
        let created = async {
            let response = shim
                .call("Create", timeout, move |c, ctx| async move {
                    c.create(ctx, &create).await
                })
                .await?;
            shim.pid.store(response.pid, Ordering::Relaxed);
            // Connect tells the shim's own pid, which is what is watched.
            shim.connect(timeout).await?;
            Ok(response.pid)
        }
        .await;
        match created {
            Ok(pid) => Ok((shim, pid)),
            Err(err) => {
                self.shut_down(&shim).await;
                Err(err)
            }
        }
    }

    // ANCHOR: start_shim
    /// Runs the shim's `start` in the bundle; returns the address it printed.
    async fn start_shim(
        &self,
        binary: &str,
        new: &NewTask,
        bundle: &Path,
    ) -> Result<String, RuntimeError> {
        let mut cmd = self.shim_command(binary, &new.namespace, &new.id, bundle);
        cmd.arg("start")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            let options = new
                .runtime_options
                .as_ref()
                .map(|o| o.encode_to_vec())
                .unwrap_or_default();
            // A shim that does not read its options closes stdin early: not an error.
            let _ = stdin.write_all(&options).await;
        }
        let output = tokio::time::timeout(SHIM_START, child.wait_with_output())
            .await
            .map_err(|_| RuntimeError::StartTimeout {
                binary: binary.to_owned(),
            })?
            .map_err(|source| RuntimeError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        let address = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || address.is_empty() {
            return Err(RuntimeError::Start {
                binary: binary.to_owned(),
                status: output.status,
                output: format!("{address}{}", String::from_utf8_lossy(&output.stderr))
                    .trim()
                    .to_owned(),
            });
        }
        Ok(address)
    }
    // ANCHOR_END: start_shim

    // ANCHOR: delete
    /// Deletes the task's init process in the shim, then ends the shim and removes
    /// the bundle. A task still running is refused by the shim, and kept.
    pub async fn delete(&self, shim: &Arc<Shim>) -> Result<api::DeleteResponse, RuntimeError> {
        let request = api::DeleteRequest {
            id: shim.id.clone(),
            ..Default::default()
        };
        let deleted = shim
            .call("Delete", Some(CALL_TIMEOUT), move |c, ctx| async move {
                c.delete(ctx, &request).await
            })
            .await?;
        self.shut_down(shim).await;
        Ok(deleted)
    }
    // ANCHOR_END: delete

    /// Asks the shim to exit, removes its bundle and forgets the task (in that
    /// order: a Create of the same id must not find the old bundle).
    async fn shut_down(&self, shim: &Arc<Shim>) {
        shim.closing.store(true, Ordering::Relaxed);
        let request = api::ShutdownRequest {
            id: shim.id.clone(),
            ..Default::default()
        };
        // A shim exits while it answers Shutdown: a broken connection is success.
        let _ = shim
            .call("Shutdown", Some(CALL_TIMEOUT), move |c, ctx| async move {
                c.shutdown(ctx, &request).await
            })
            .await;
        shim.log.abort();
        let bundle = shim.bundle.clone();
        let _ = tokio::task::spawn_blocking(move || remove_bundle(&bundle)).await;
        self.forget(shim);
    }

    /// Removes the task from the map, if the map still holds this very shim.
    fn forget(&self, shim: &Arc<Shim>) {
        let key = (shim.namespace.clone(), shim.id.clone());
        let mut tasks = self.tasks();
        if matches!(tasks.get(&key), Some(Slot::Running(s)) if Arc::ptr_eq(s, shim)) {
            tasks.remove(&key);
        }
    }

    // ANCHOR: reload
    /// Takes back the tasks an earlier run left, stopped cleanly or killed: one
    /// bundle each, `STATE/io.containerd.runtime.v2.task/NS/ID`. A shim that answers
    /// is registered as before; after one that does not, the task is cleaned up and
    /// its exit published. `runtime_of` names a container's runtime (from its
    /// record: the bundle does not say which shim program made it). Called before
    /// gRPC is served, so no request sees a half-loaded runtime.
    pub async fn reload(self: &Arc<Self>, runtime_of: impl Fn(&str, &str) -> Option<String>) {
        for (namespace, id) in self.bundles_on_disk() {
            let bundle = self.bundles.join(&namespace).join(&id);
            let binary = match runtime_of(&namespace, &id).map(|r| shim_binary(&r)) {
                Some(Ok(binary)) => binary,
                // As containerd does: without the record there is no shim program to
                // run `delete` with, so only the bundle goes.
                _ => {
                    tracing::warn!(%namespace, %id, "a bundle without a container record (or with a bad runtime); removing it");
                    remove_bundle(&bundle);
                    continue;
                }
            };
            match self.reconnect(&namespace, &id, &bundle, &binary).await {
                Ok(shim) => {
                    let pid = shim.pid.load(Ordering::Relaxed);
                    tracing::info!(%namespace, %id, pid, "reconnected to the task's shim");
                    self.tasks()
                        .insert((namespace, id), Slot::Running(shim.clone()));
                    tokio::spawn(self.clone().watch(shim));
                }
                Err(e) => {
                    tracing::warn!(%namespace, %id, "the task's shim is gone ({e}); cleaning up after it");
                    let dead = DeadShim {
                        namespace: &namespace,
                        id: &id,
                        bundle: &bundle,
                        binary: &binary,
                        pid: 0,
                    };
                    self.clean_up_dead(&dead).await;
                }
            }
        }
    }
    // ANCHOR_END: reload

    /// The (namespace, id) of every bundle on disk, sorted.
    fn bundles_on_disk(&self) -> Vec<(String, String)> {
        let dirs = |dir: &Path| -> Vec<String> {
            fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        };
        let mut found: Vec<(String, String)> = dirs(&self.bundles)
            .into_iter()
            .flat_map(|ns| {
                dirs(&self.bundles.join(&ns))
                    .into_iter()
                    .map(move |id| (ns.clone(), id))
            })
            .collect();
        found.sort();
        found
    }

    /// Connects to the shim the bundle's `address` file names, follows its log
    /// again, and confirms it answers (Connect, which also gives the task's pid).
    async fn reconnect(
        &self,
        namespace: &str,
        id: &str,
        bundle: &Path,
        binary: &str,
    ) -> Result<Arc<Shim>, RuntimeError> {
        let path = bundle.join("address");
        let address = fs::read_to_string(&path)
            .map_err(|source| RuntimeError::Address { path, source })?
            .trim()
            .to_owned();
        let client = ttrpc::asynchronous::Client::connect(&address)
            .await
            .map_err(|source| RuntimeError::Connect {
                id: id.to_owned(),
                address: address.clone(),
                source,
            })?;
        let shim = Arc::new(Shim {
            namespace: namespace.to_owned(),
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            binary: binary.to_owned(),
            pid: AtomicU32::new(0),
            shim_pid: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            client: TaskClient::new(client),
            log: follow_log(bundle)?,
        });
        match shim.connect(Some(RELOAD_TIMEOUT)).await {
            Ok(()) => Ok(shim),
            Err(e) => {
                shim.log.abort();
                Err(e)
            }
        }
    }

    // ANCHOR: watch
    /// Waits for the shim to die, then cleans up after it. The shim is not this
    /// process's child (it left at `start`), so there is no SIGCHLD; a *pidfd* of its
    /// pid turns readable when it exits, whoever its parent is. (containerd watches
    /// its ttrpc connection instead; the Rust ttrpc client tells nobody when a
    /// connection breaks.) An end berth asked for (Shutdown) is not a death.
    async fn watch(self: Arc<Self>, shim: Arc<Shim>) {
        let shim_pid = shim.shim_pid.load(Ordering::Relaxed);
        if let Err(e) = exited(shim_pid).await {
            tracing::warn!(id = %shim.id, shim_pid, "cannot watch the shim, so its death would go unnoticed: {e}");
            return;
        }
        if shim.closing.load(Ordering::Relaxed) {
            return;
        }
        tracing::warn!(namespace = %shim.namespace, id = %shim.id, "the task's shim died; cleaning up after it");
        shim.log.abort();
        let dead = DeadShim {
            namespace: &shim.namespace,
            id: &shim.id,
            bundle: &shim.bundle,
            binary: &shim.binary,
            pid: shim.pid.load(Ordering::Relaxed),
        };
        self.clean_up_dead(&dead).await;
        self.forget(&shim);
    }
    // ANCHOR_END: watch

    // ANCHOR: dead_shim
    /// Cleans up after a shim that is gone: runs the shim program's `delete` in the
    /// bundle (it force-deletes the container, unmounts the rootfs and prints a
    /// `DeleteResponse`), removes the bundle, and publishes the `/tasks/exit` and
    /// `/tasks/delete` the dead shim cannot send.
    async fn clean_up_dead(&self, dead: &DeadShim<'_>) {
        let (mut pid, exit_status, exited_at) = match self.run_delete(dead).await {
            Ok(d) => (d.pid, d.exit_status, d.exited_at.into_option()),
            Err(e) => {
                tracing::warn!(namespace = %dead.namespace, id = %dead.id, "{e}");
                (0, UNKNOWN_EXIT, None)
            }
        };
        if pid == 0 {
            // Shims do not know the pid at `delete`; berth may.
            pid = dead.pid;
        }
        let exited_at = exited_at
            .map(|t| prost_types::Timestamp {
                seconds: t.seconds,
                nanos: t.nanos,
            })
            .unwrap_or_else(|| crate::metadata::timestamp(crate::metadata::now()));
        let bundle = dead.bundle.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            remove_dead_socket(&bundle);
            remove_bundle(&bundle);
        })
        .await;
        let exit = TaskExit {
            container_id: dead.id.to_owned(),
            id: dead.id.to_owned(),
            pid,
            exit_status,
            exited_at: Some(exited_at),
        };
        self.events.publish(dead.namespace, "/tasks/exit", &exit);
        let delete = TaskDelete {
            container_id: dead.id.to_owned(),
            pid,
            exit_status,
            exited_at: Some(exited_at),
            id: String::new(),
        };
        self.events
            .publish(dead.namespace, "/tasks/delete", &delete);
        tracing::info!(namespace = %dead.namespace, id = %dead.id, pid, exit_status, "cleaned up after the task's dead shim");
    }
    // ANCHOR_END: dead_shim

    /// Runs `BIN … -bundle B delete` in the bundle; returns the `DeleteResponse` it prints.
    async fn run_delete(&self, dead: &DeadShim<'_>) -> Result<api::DeleteResponse, RuntimeError> {
        let mut cmd = self.shim_command(dead.binary, dead.namespace, dead.id, dead.bundle);
        cmd.arg("-bundle")
            .arg(dead.bundle)
            .arg("delete")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let failed = |output: String| RuntimeError::Delete {
            binary: dead.binary.to_owned(),
            output,
        };
        let child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            binary: dead.binary.to_owned(),
            source,
        })?;
        let output = tokio::time::timeout(SHIM_START, child.wait_with_output())
            .await
            .map_err(|_| failed(format!("no answer within {SHIM_START:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(failed(format!("{}: {}", output.status, stderr.trim())));
        }
        api::DeleteResponse::parse_from_bytes(&output.stdout)
            .map_err(|e| failed(format!("its output is not a DeleteResponse: {e}")))
    }

    /// The shim program with the flags every action takes, run in the bundle.
    fn shim_command(
        &self,
        binary: &str,
        namespace: &str,
        id: &str,
        bundle: &Path,
    ) -> tokio::process::Command {
        let own = std::env::current_exe().unwrap_or_else(|_| "berth-containerd".into());
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(["-namespace", namespace, "-id", id])
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(own)
            .args(self.debug.then_some("-debug"))
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            // As containerd does: a Go shim needs no more threads than this.
            .env("GOMAXPROCS", "2")
            .kill_on_drop(true);
        cmd
    }
}

/// What is known of a task whose shim is gone: enough to run the shim program's
/// `delete` and to report the exit.
struct DeadShim<'a> {
    namespace: &'a str,
    id: &'a str,
    bundle: &'a Path,
    binary: &'a str,
    /// The task's pid if berth knew it, else 0.
    pid: u32,
}

/// Removes the socket a dead shim leaves (it cannot remove it itself), if nothing
/// listens on it any more.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let Some(socket) = address.trim().strip_prefix("unix://") else {
        return;
    };
    if !socket.starts_with('@') && std::os::unix::net::UnixStream::connect(socket).is_err() {
        let _ = fs::remove_file(socket);
    }
}

/// Makes the bundle, writes `config.json`, and makes the `log` fifo; returns the task
/// copying the shim's log into ours.
fn make_bundle(bundle: &Path, spec: &[u8]) -> Result<tokio::task::JoinHandle<()>, RuntimeError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| RuntimeError::Bundle { path, source }
    };
    if bundle.exists() {
        // The startup reload took back, or removed, every bundle it found (and a
        // task's own bundle goes before the task does): this one it could not remove.
        return Err(RuntimeError::StaleBundle {
            path: bundle.to_owned(),
        });
    }
    fs::create_dir_all(bundle).map_err(err(bundle))?;
    fs::write(bundle.join("config.json"), spec).map_err(err(bundle))?;
    let rootfs = bundle.join("rootfs");
    fs::create_dir(&rootfs).map_err(err(&rootfs))?;
    let log = bundle.join("log");
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o700))
        .map_err(|e| err(&log)(e.into()))?;
    follow_log(bundle)
}

/// Opens the bundle's `log` fifo and copies what the shim writes to it into this
/// process's log (at create, and again for a reloaded shim).
fn follow_log(bundle: &Path) -> Result<tokio::task::JoinHandle<()>, RuntimeError> {
    let log = bundle.join("log");
    // Read *and* write: the fifo then never reads as ended between two writers (the
    // `start` process and the shim it leaves), and opening it never blocks.
    let receiver = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&log)
        .map_err(|source| RuntimeError::Bundle {
            path: log.clone(),
            source,
        })?;
    let id = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(receiver).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "shim", id = %id, "{line}");
        }
    }))
}

/// Unmounts whatever is left in the bundle (a shim that died before unmounting the
/// rootfs) and removes it.
/// Resolves once process `pid` has exited (at once if it is already gone).
async fn exited(pid: u32) -> io::Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(err),
        };
    }
    // SAFETY: the descriptor was just made and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: an OwnedFd keeps its descriptor open, and the same, until it is dropped
    // with the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
    let _ready = fd.readable().await?;
    Ok(())
}

fn remove_bundle(bundle: &Path) {
    crate::mount::unmount_all_under(bundle);
    if let Err(e) = fs::remove_dir_all(bundle) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(bundle = %bundle.display(), "cannot remove the bundle: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names_map_to_shim_binaries() {
        assert_eq!(
            shim_binary("io.containerd.runc.v2").unwrap(),
            "containerd-shim-runc-v2"
        );
        assert_eq!(
            shim_binary("io.containerd.berth.v2").unwrap(),
            "containerd-shim-berth-v2"
        );
        for bad in [
            "runc",
            "io.containerd.runc",
            "io.containerd..v2",
            "io.containerd.a/b.v2",
        ] {
            assert!(shim_binary(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_missing_shim_binary_leaves_no_bundle_and_no_task() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(Runtime::new(
            dir.path(),
            &dir.path().join("c.sock"),
            false,
            Exchange::default(),
        ));
        let new = NewTask {
            namespace: "ns".into(),
            id: "web".into(),
            runtime: "io.containerd.nosuchshim.v2".into(),
            spec: b"{}".to_vec(),
            runtime_options: None,
            create: api::CreateTaskRequest::default(),
        };
        let err = runtime.create(new).await.err().unwrap();
        assert!(
            err.to_string().contains("containerd-shim-nosuchshim-v2"),
            "{err}"
        );
        assert!(!runtime.has_task("ns", "web"));
        assert!(!dir.path().join(TASKS_DIR).join("ns/web").exists());
    }

    #[tokio::test]
    async fn a_bundle_whose_shim_is_gone_is_removed_and_its_exit_published() {
        let dir = tempfile::tempdir().unwrap();
        let events = Exchange::default();
        let mut seen = events.subscribe();
        let runtime = Arc::new(Runtime::new(
            dir.path(),
            &dir.path().join("c.sock"),
            false,
            events,
        ));
        // What a crash in the middle of a start leaves: a bundle without an address
        // (and here, a shim program that is not even installed).
        let bundle = dir.path().join(TASKS_DIR).join("ns/web");
        fs::create_dir_all(bundle.join("rootfs")).unwrap();
        // And a bundle whose container record is gone.
        let orphan = dir.path().join(TASKS_DIR).join("ns/orphan");
        fs::create_dir_all(&orphan).unwrap();

        runtime
            .reload(|_, id| (id == "web").then(|| "io.containerd.nosuchshim.v2".to_owned()))
            .await;
        assert!(!bundle.exists() && !orphan.exists());
        assert!(!runtime.has_task("ns", "web"));

        let exit = seen.try_recv().unwrap();
        assert_eq!(
            (exit.namespace.as_str(), exit.topic.as_str()),
            ("ns", "/tasks/exit")
        );
        let any = exit.event.unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        let exit = TaskExit::decode(any.value.as_slice()).unwrap();
        assert_eq!((exit.id.as_str(), exit.exit_status), ("web", UNKNOWN_EXIT));
        assert_eq!(seen.try_recv().unwrap().topic, "/tasks/delete");
        assert!(seen.try_recv().is_err(), "no event for the orphan");
    }
}
