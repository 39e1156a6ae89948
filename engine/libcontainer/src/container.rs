//! The container lifecycle, as `berth-runc`'s verbs drive it.
//!
//! `create` builds the container and leaves its init waiting; `start` lets it go;
//! `kill`, `pause`, `resume` and `exec` act on it while it runs; `delete` removes
//! what is left. Each is a separate short-lived process, so each starts by loading
//! the state `create` saved ([`crate::state`]) and checking that its transition is
//! allowed in the container's current status.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{
    ContainerState, Linux, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources, Process, Spec,
};

use crate::cgroups::{self, Cgroup};
use crate::hooks::{self, HookKind, OciState};
use crate::init::InitConfig;
use crate::namespaces::{self, Plan};
use crate::process::{self, Inherit};
use crate::state::{self, Root, State, StateError, Status, EXEC_FIFO};
use crate::sync::{now_us, Message, Released, Stage, SyncError};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read {path}: {source}; is --bundle the directory holding config.json?")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid runtime spec: {source}")]
    BadConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the rootfs {0} does not exist; unpack an image there or fix root.path in config.json"
    )]
    NoRootfs(PathBuf),
    #[error("config.json has no process to run; add a \"process\" with \"args\"")]
    NoProcess,
    #[error("process.terminal is true but no --console-socket was given; pass one, or set terminal to false")]
    TerminalWithoutConsole,
    #[error("cannot connect to the console socket {path}: {source}")]
    ConsoleSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error("cannot {what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("container {0:?} did not stop within {1:?} of SIGKILL")]
    WouldNotDie(String, Duration),
    // runc's words first: containerd's shim and dockerd look for them to tell
    // "it has already exited" (nothing to do) from a failure.
    #[error("container not running: {0:?} has stopped, so there is nothing left to signal")]
    NotRunning(String),
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Sys { what, source }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// How to create a container: `berth-runc create`'s flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
}

/// Reads and checks `bundle/config.json`.
pub fn load_spec(bundle: &Path) -> Result<Spec, ContainerError> {
    let path = bundle.join("config.json");
    let bytes = fs::read(&path).map_err(|source| ContainerError::ReadConfig {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::BadConfig { path, source })
}

/// The host path of the spec's rootfs: `root.path`, relative to the bundle.
fn rootfs_of(spec: &Spec, bundle: &Path) -> Result<PathBuf, ContainerError> {
    let path = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| "rootfs".into());
    let rootfs = bundle.join(path);
    fs::canonicalize(&rootfs)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or(ContainerError::NoRootfs(rootfs))
}

/// What `create` learned, for the caller to report.
pub struct Created {
    pub pid: i32,
    /// When init passed each of its steps (for spans).
    pub stages: Vec<Stage>,
}

/// Undoes a half-made container if `create` fails at any point: nothing is left
/// behind, not a process, not a cgroup, not a state directory.
struct Cleanup<'a> {
    root: &'a Root,
    id: String,
    pid: Option<Pid>,
    cgroup: Option<Cgroup>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.destroy();
        }
        let _ = self.root.remove(&self.id);
    }
}

// ANCHOR: create
/// `create`: everything up to the moment the user's program would start.
pub fn create(root: &Root, options: &CreateOptions) -> Result<Created, ContainerError> {
    let spec = load_spec(&options.bundle)?;
    let bundle = fs::canonicalize(&options.bundle).map_err(io_err(format!(
        "resolve the bundle {}",
        options.bundle.display()
    )))?;
    let rootfs = rootfs_of(&spec, &bundle)?;
    let process = spec.process().as_ref().ok_or(ContainerError::NoProcess)?;
    if process.terminal().unwrap_or(false) && options.console_socket.is_none() {
        return Err(ContainerError::TerminalWithoutConsole);
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or_default())?;
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_maps && !plan.new_user_namespace() {
        return Err(namespaces::NamespaceError::MappingsWithoutUserNamespace.into());
    }

    let dir = root.create_dir(&options.id)?;
    let mut cleanup = Cleanup {
        root,
        id: options.id.clone(),
        pid: None,
        cgroup: None,
        armed: true,
    };

    // The fifo init will block on until `start`.
    let fifo_path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
        .map_err(sys_err("create the exec fifo"))?;
    // mkfifo applies our umask (often 022, leaving 0600); init opens the fifo after
    // switching to the container's user, who must be able to write it.
    fs::set_permissions(&fifo_path, fs::Permissions::from_mode(0o622)).map_err(io_err(
        "make the exec fifo writable by the container's user",
    ))?;
    let fifo: OwnedFd =
        nix::fcntl::open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(sys_err("open the exec fifo"))?;

    // The cgroup exists, with its limits, before init does anything in it.
    let cgroups_span = tracing::info_span!("cgroups").entered();
    let cgroup = Cgroup::for_container(linux.cgroups_path().as_deref(), &options.id)?;
    cgroup.create()?;
    cleanup.cgroup = Some(cgroup.clone());
    cgroup.apply(&with_default_devices(&linux))?;
    drop(cgroups_span);
    let console = connect_console(process, options.console_socket.as_deref())?;

    let clone_span = tracing::info_span!("clone").entered();
    let join_pid = plan.joins_pid_namespace().map(|j| j.path.clone());
    let offsets = namespaces::time_offsets(&linux, &plan)?;
    let mut child = process::spawn_init(
        plan.clone_flags,
        join_pid.as_deref(),
        offsets.as_deref(),
        Inherit {
            fifo: Some(&fifo),
            console: console.as_ref(),
        },
    )?;
    cleanup.pid = Some(child.pid);
    drop(console);
    if plan.new_user_namespace() {
        let none = Vec::new();
        let uids = linux.uid_mappings().as_ref().unwrap_or(&none);
        let gids = linux.gid_mappings().as_ref().unwrap_or(&none);
        namespaces::write_id_maps(child.pid, uids, gids)?;
        child.maps_written()?;
    }
    cgroup.add_process(child.pid)?;
    drop(clone_span);

    let config = InitConfig {
        id: options.id.clone(),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        spec: spec.clone(),
        exec: false,
        join: plan
            .join
            .iter()
            .filter(|j| j.kind != oci_spec::runtime::LinuxNamespaceType::Pid)
            .cloned()
            .collect(),
        new_cgroup_namespace: plan.new_cgroup,
        no_pivot: options.no_pivot,
        preserve_fds: options.preserve_fds,
    };
    child.channel.send(&Message::Bootstrap(Box::new(config)))?;

    child.channel.expect("RunHooks")?;
    let hooks_span = tracing::info_span!("createRuntime hooks").entered();
    let state = OciState::new(
        &options.id,
        ContainerState::Creating,
        child.pid.as_raw(),
        &bundle,
        &spec,
    );
    let spec_hooks = spec.hooks().clone().unwrap_or_default();
    hooks::run_hooks(
        HookKind::Prestart,
        HookKind::Prestart.select(&spec_hooks),
        &state,
    )?;
    hooks::run_hooks(
        HookKind::CreateRuntime,
        HookKind::CreateRuntime.select(&spec_hooks),
        &state,
    )?;
    drop(hooks_span);
    child.channel.send(&Message::HooksDone)?;

    let Message::Ready { stages } = child.channel.expect("Ready")? else {
        unreachable!("expect() checked the kind")
    };
    let pid = child.pid.as_raw();
    let pid_start_time = state::process_start_time(pid).unwrap_or_default();
    root.save(&State {
        id: options.id.clone(),
        bundle,
        rootfs,
        pid,
        pid_start_time,
        created: state::rfc3339_now(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        cgroup: Some(cgroup),
        config: spec,
    })?;
    cleanup.armed = false;
    Ok(Created { pid, stages })
}
// ANCHOR_END: create

// ANCHOR: default_devices
/// The spec's resources, with device rules that always let the container use the
/// devices every container gets (`/dev/null`, `/dev/tty`, ptys, ...) and the ones
/// the spec itself creates, appended after the spec's own rules (usually "deny all"),
/// as runc does. Without them a deny-all spec leaves even `/dev/null` unusable.
fn with_default_devices(linux: &Linux) -> LinuxResources {
    let mut resources = linux.resources().clone().unwrap_or_default();
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let builder = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .access(access);
        let builder = match major {
            Some(major) => builder.major(major),
            None => builder,
        };
        let builder = match minor {
            Some(minor) => builder.minor(minor),
            None => builder,
        };
        builder.build().expect("every field is set")
    };
    let mut rules = resources.devices().clone().unwrap_or_default();
    // mknod of any device is allowed; using one is not, unless listed below.
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(rule(LinuxDeviceType::C, Some(major), Some(minor), "rwm"));
    }
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm")); // /dev/pts/*
    for device in linux.devices().iter().flatten() {
        rules.push(rule(
            device.typ(),
            Some(device.major()),
            Some(device.minor()),
            "rwm",
        ));
    }
    resources.set_devices(Some(rules));
    resources
}
// ANCHOR_END: default_devices

/// A connection to the console socket, when the process wants a terminal. Made by
/// the runtime, whose path it is; init sends the pty master through it.
pub(crate) fn connect_console(
    process: &Process,
    socket: Option<&Path>,
) -> Result<Option<UnixStream>, ContainerError> {
    match socket {
        Some(path) if process.terminal().unwrap_or(false) => UnixStream::connect(path)
            .map(Some)
            .map_err(|source| ContainerError::ConsoleSocket {
                path: path.to_owned(),
                source,
            }),
        _ => Ok(None),
    }
}

/// Loads a container and checks it is in one of `allowed` statuses.
pub(crate) fn load_in(
    root: &Root,
    id: &str,
    allowed: &[Status],
    hint: &'static str,
) -> Result<(State, Status), ContainerError> {
    let state = root.load(id)?;
    let status = state.status(root);
    if !allowed.contains(&status) {
        return Err(StateError::Transition {
            id: id.to_owned(),
            status,
            hint,
        }
        .into());
    }
    Ok((state, status))
}

// ANCHOR: start
/// What `start` learned: init's last steps, timed, and the poststart hooks'
/// failures, which are warnings (the program is already running).
pub struct Started {
    pub stages: Vec<Stage>,
    pub warnings: Vec<String>,
}

/// `start`: lets a created container's init run the user's program.
pub fn start(root: &Root, id: &str) -> Result<Started, ContainerError> {
    let (state, _) = load_in(
        root,
        id,
        &[Status::Created],
        "only a created container can be started",
    )?;
    let fifo_path = root.dir(id)?.join(EXEC_FIFO);
    // Opening for reading completes init's pending open for writing. Init then runs
    // the startContainer hooks, reports, and execs, which closes the fifo.
    let fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo_path)
        .map_err(io_err("open the exec fifo"))?;
    let report = read_exec_fifo(&fifo, &state)?;
    let exec_done_us = now_us();
    fs::remove_file(&fifo_path).map_err(io_err("remove the exec fifo"))?;
    let Ok(released) = serde_json::from_slice::<Released>(&report) else {
        return Err(ContainerError::Io {
            what: format!("start container {id:?}"),
            source: std::io::Error::other("its init exited before it could run the program"),
        });
    };
    let mut stages = released.stages;
    stages.push(Stage {
        name: "exec".into(),
        start_us: released.exec_us,
        end_us: exec_done_us,
    });
    let oci = OciState::new(
        id,
        ContainerState::Running,
        state.pid,
        &state.bundle,
        &state.config,
    );
    let warnings = best_effort_hooks(HookKind::Poststart, &state.config, &oci);
    Ok(Started { stages, warnings })
}

/// Reads what init writes on the exec fifo, up to the end of file its exec causes;
/// returns what was read so far if init is gone instead.
///
/// A blocking read would wait forever for an init that died before opening its end
/// (it failed after `create` returned, with nobody left to hear why): so the fifo is
/// read without blocking, and init's liveness checked between polls, as runc does.
/// Until a writer has opened the fifo, poll reports nothing on it (not even a hang
/// up), so an end of file is only ever seen after init was there.
fn read_exec_fifo(mut fifo: &fs::File, state: &State) -> Result<Vec<u8>, ContainerError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut report = Vec::new();
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => {
                let mut buffer = [0u8; 4096];
                match fifo.read(&mut buffer) {
                    Ok(0) => return Ok(report),
                    Ok(n) => report.extend_from_slice(&buffer[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io_err("read the exec fifo")(e)),
                }
                continue;
            }
            Err(e) => return Err(sys_err("poll the exec fifo")(e)),
        }
        if !state::process_is_alive(state.pid, state.pid_start_time) {
            return Ok(report);
        }
    }
}

/// Runs every hook of `kind` (poststart, poststop): a failure is reported, not fatal.
fn best_effort_hooks(kind: HookKind, spec: &Spec, state: &OciState) -> Vec<String> {
    let none = Default::default();
    let hooks = kind.select(spec.hooks().as_ref().unwrap_or(&none));
    hooks::run_hooks_best_effort(kind, hooks, state)
        .iter()
        .map(ToString::to_string)
        .collect()
}
// ANCHOR_END: start

/// `kill`: sends `signal` to init, or with `all` to every process in the container.
pub fn kill_container(
    root: &Root,
    id: &str,
    signal: Signal,
    all: bool,
) -> Result<(), ContainerError> {
    let state = root.load(id)?;
    let status = state.status(root);
    if all {
        // Even after init has exited, as runc does: in a container that shares the
        // host's pid namespace, init's children outlive it; the shim kills them so.
        if let Some(cgroup) = &state.cgroup {
            for pid in cgroup.pids()? {
                let _ = kill(pid, signal);
            }
            return thaw_for_sigkill(&state, status, signal);
        }
    }
    if status == Status::Stopped {
        return Err(ContainerError::NotRunning(id.to_owned()));
    }
    kill(Pid::from_raw(state.pid), signal)
        .map_err(sys_err(format!("send {signal} to container {id:?}")))?;
    thaw_for_sigkill(&state, status, signal)
}

/// A frozen process cannot act on a signal, not even die; so a paused container is
/// thawed after SIGKILL (only: any other signal waits for `resume`), as runc does.
fn thaw_for_sigkill(state: &State, status: Status, signal: Signal) -> Result<(), ContainerError> {
    match (&state.cgroup, status, signal) {
        (Some(cgroup), Status::Paused, Signal::SIGKILL) => Ok(cgroup.thaw()?),
        _ => Ok(()),
    }
}

/// `delete`: removes a stopped (or, with `force`, any) container: its processes,
/// its cgroup, its state; then runs the poststop hooks.
pub fn delete(root: &Root, id: &str, force: bool) -> Result<Vec<String>, ContainerError> {
    let state = root.load(id)?;
    let status = state.status(root);
    match status {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(StateError::Transition {
                id: id.to_owned(),
                status,
                hint: "stop it first, or use --force",
            }
            .into())
        }
    }
    if status != Status::Stopped {
        if let Some(cgroup) = &state.cgroup {
            // A frozen process cannot die; thaw first so SIGKILL can be delivered.
            let _ = cgroup.thaw();
            for pid in cgroup.pids().unwrap_or_default() {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        let _ = kill(Pid::from_raw(state.pid), Signal::SIGKILL);
        wait_until_stopped(root, &state)?;
    }
    if let Some(cgroup) = &state.cgroup {
        cgroup.destroy()?;
    }
    root.remove(id)?;
    // Poststop hooks may fail without undoing the delete: report, not fail.
    let oci = OciState::new(id, ContainerState::Stopped, 0, &state.bundle, &state.config);
    Ok(best_effort_hooks(HookKind::Poststop, &state.config, &oci))
}

/// Waits (bounded) for init to be gone; reaps it if it is our child.
fn wait_until_stopped(root: &Root, state: &State) -> Result<(), ContainerError> {
    let limit = Duration::from_secs(10);
    let deadline = Instant::now() + limit;
    while state.status(root) != Status::Stopped {
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(state.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        if Instant::now() > deadline {
            return Err(ContainerError::WouldNotDie(state.id.clone(), limit));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `pause`: freezes every process of a running container.
pub fn pause(root: &Root, id: &str) -> Result<(), ContainerError> {
    let (state, _) = load_in(
        root,
        id,
        &[Status::Running],
        "only a running container can be paused",
    )?;
    cgroup_of(&state)?.freeze()?;
    Ok(())
}

/// `resume`: thaws a paused container.
pub fn resume(root: &Root, id: &str) -> Result<(), ContainerError> {
    let (state, _) = load_in(
        root,
        id,
        &[Status::Paused],
        "only a paused container can be resumed",
    )?;
    cgroup_of(&state)?.thaw()?;
    Ok(())
}

/// `ps`: the pids of every process in the container (host pid namespace).
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>, ContainerError> {
    let state = root.load(id)?;
    Ok(cgroup_of(&state)?
        .pids()?
        .into_iter()
        .map(Pid::as_raw)
        .collect())
}

/// `update`: new resource limits for a running (or created, or paused) container.
pub fn update(root: &Root, id: &str, resources: &LinuxResources) -> Result<(), ContainerError> {
    let (mut state, _) = load_in(
        root,
        id,
        &[Status::Created, Status::Running, Status::Paused],
        "it has stopped",
    )?;
    cgroup_of(&state)?.apply(resources)?;
    if let Some(linux) = state.config.linux_mut() {
        linux.set_resources(Some(resources.clone()));
    }
    root.save(&state)?;
    Ok(())
}

/// `events --stats`: one snapshot of the container's resource usage.
pub fn stats(root: &Root, id: &str) -> Result<cgroups::Stats, ContainerError> {
    let state = root.load(id)?;
    Ok(cgroup_of(&state)?.stats()?)
}

fn cgroup_of(state: &State) -> Result<&Cgroup, ContainerError> {
    state.cgroup.as_ref().ok_or_else(|| ContainerError::Io {
        what: format!("find the cgroup of container {:?}", state.id),
        source: std::io::Error::other("it was created without one"),
    })
}

/// `state`: the OCI state plus runc's extra fields, as `berth-runc state` prints it.
pub fn state_json(root: &Root, id: &str) -> Result<serde_json::Value, ContainerError> {
    let state = root.load(id)?;
    Ok(describe(root, &state))
}

/// `list`: every container, described as `state` would.
pub fn list(root: &Root) -> Result<Vec<serde_json::Value>, ContainerError> {
    Ok(root
        .list()?
        .iter()
        .map(|state| describe(root, state))
        .collect())
}

fn describe(root: &Root, state: &State) -> serde_json::Value {
    let status = state.status(root);
    let pid = if status == Status::Stopped {
        0
    } else {
        state.pid
    };
    serde_json::json!({
        "ociVersion": state.config.version(),
        "id": state.id,
        "pid": pid,
        "status": status.to_string(),
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": "",
        "annotations": state.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_has_runcs_fields() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root(dir.path().to_owned());
        let state = State {
            id: "web".into(),
            bundle: "/bundles/web".into(),
            rootfs: "/bundles/web/rootfs".into(),
            // No process has this pid: the container reads as stopped, pid 0.
            pid: i32::MAX,
            pid_start_time: 1,
            created: "2026-11-28T12:00:00.000000000Z".into(),
            annotations: [("org.example.key".to_owned(), "value".to_owned())].into(),
            cgroup: None,
            config: berth_oci::spec::default_spec(),
        };
        insta::assert_json_snapshot!(describe(&root, &state));
    }

    #[test]
    fn default_device_rules_follow_the_specs_own() {
        let spec = berth_oci::spec::default_spec();
        let rules = with_default_devices(spec.linux().as_ref().unwrap());
        let rules = rules.devices().clone().unwrap();
        // The spec's "deny all" stays first; the allowances come after it.
        assert!(!rules[0].allow());
        assert!(rules[1..].iter().all(|r| r.allow()));
        let null = rules
            .iter()
            .find(|r| r.major() == Some(1) && r.minor() == Some(3))
            .unwrap();
        assert_eq!(null.access().as_deref(), Some("rwm"));
    }
}
