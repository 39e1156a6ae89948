//! The container's first process, from the inside: `berth-runc init`.
//!
//! The runtime clones a child into new namespaces, and the child immediately
//! re-executes the runtime's own binary as `berth-runc init` (so it starts as a
//! fresh, single-threaded program, whatever the runtime had going on). This module
//! is that program: it receives its instructions over the handshake channel
//! ([`crate::sync`]), builds the container around itself step by step, waits for
//! `start`, and finally replaces itself with the user's program.
//!
//! The order of the steps is the lesson; [`run`] lists them in that order.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use nix::unistd::sethostname;
use oci_spec::runtime::{ContainerState, LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::capabilities::CapabilityPlan;
use crate::hooks::{HookKind, OciState};
use crate::namespaces::{self, Join};
use crate::sync::{now_us, Channel, Message, Released, Stage};
use crate::{attrs, capabilities, cgroups, console, hooks, rootfs, seccomp};

/// Environment variables through which the runtime tells init its inherited fds.
pub const SYNC_FD_ENV: &str = "_BERTH_INIT_SYNC";
pub const FIFO_FD_ENV: &str = "_BERTH_INIT_FIFO";
pub const CONSOLE_FD_ENV: &str = "_BERTH_INIT_CONSOLE";
/// What init calls itself in `ps`: the runtime's name, and its role.
pub const PROCESS_NAME: &str = "berth-runc:[1:INIT]";

/// Everything init needs to know, sent in [`Message::Bootstrap`].
#[derive(Debug, Serialize, Deserialize)]
pub struct InitConfig {
    pub id: String,
    pub bundle: PathBuf,
    /// Absolute host path of the root filesystem.
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// `exec` into a running container: join its namespaces, skip the filesystem.
    pub exec: bool,
    /// Namespaces to enter (all but pid, which the runtime entered for us).
    pub join: Vec<Join>,
    pub new_cgroup_namespace: bool,
    pub no_pivot: bool,
    /// How many fds after stdio the program inherits (`--preserve-fds`).
    pub preserve_fds: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Namespace(#[from] namespaces::NamespaceError),
    #[error("{0}")]
    Rootfs(#[from] rootfs::RootfsError),
    #[error("{0}")]
    Sync(#[from] crate::sync::SyncError),
    #[error("{0}")]
    Hook(#[from] hooks::HookError),
    #[error("{0}")]
    Attrs(#[from] attrs::AttrsError),
    #[error("{0}")]
    Capabilities(#[from] capabilities::CapabilityError),
    #[error("{0}")]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("{0}")]
    Console(#[from] console::ConsoleError),
    #[error("{0}")]
    Cgroup(#[from] cgroups::CgroupError),
    #[error("cannot {what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("config.json has no process to run; add a \"process\" with \"args\"")]
    NoProcess,
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    // dockerd reads these two messages, lower case as runc writes them, to exit
    // `docker run` with 127 and 126.
    #[error("exec: {0:?}: no such file or directory in the container")]
    NoSuchProgram(String),
    #[error("exec: {0:?}: permission denied: it is not an executable file")]
    NotExecutable(String),
    #[error("{0} is not set: berth-runc init is started by berth-runc itself, not by hand")]
    NotStartedByRuntime(&'static str),
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> InitError {
    let what = what.into();
    move |source| InitError::Sys { what, source }
}

/// The entry point of `berth-runc init`. Never returns: it either `exec`s the user's
/// program or reports its error to the runtime and exits.
pub fn main() -> ! {
    // Signals the runtime had blocked (to wait for them with sigwait) stay blocked
    // across exec; the user's program must start with none blocked.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // An ignored signal stays ignored across exec too. Whatever this process was
    // given (Rust programs may run with SIGPIPE ignored, and std's `Command` would
    // undo that, which berth's raw clone does not), the user's program starts with
    // SIGPIPE at its default, or `yes | head` in the container would never end.
    // SAFETY: restoring a default disposition installs no handler.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = nix::sys::prctl::set_name(&CString::new("berth-runc:INIT").expect("no NUL"));

    let mut channel = match inherited_fd(SYNC_FD_ENV).map(|fd| Channel::new(UnixStream::from(fd))) {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => fail_without_channel(&e.to_string()),
        Err(e) => fail_without_channel(&e.to_string()),
    };
    let result = channel
        .expect("Bootstrap")
        .map_err(InitError::from)
        .and_then(|message| match message {
            Message::Bootstrap(config) => run(&mut channel, *config),
            _ => unreachable!("expect() checked the message kind"),
        });
    let error = match result {
        Ok(never) => match never {},
        Err(e) => e.to_string(),
    };
    let _ = channel.send(&Message::Failed { error });
    std::process::exit(1)
}

fn fail_without_channel(error: &str) -> ! {
    eprintln!("berth-runc init: {error}");
    std::process::exit(1)
}

/// Takes ownership of an fd the runtime left open for us, named by `var`.
fn inherited_fd(var: &'static str) -> Result<OwnedFd, InitError> {
    let fd: RawFd = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(InitError::NotStartedByRuntime(var))?;
    // SAFETY: the runtime opened this fd for us and passed its number; nothing else
    // in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Times each step, for the runtime to turn into spans.
struct Stages(Vec<Stage>);

impl Stages {
    fn time<T>(
        &mut self,
        name: &str,
        step: impl FnOnce() -> Result<T, InitError>,
    ) -> Result<T, InitError> {
        let start_us = now_us();
        let result = step();
        self.0.push(Stage {
            name: name.to_owned(),
            start_us,
            end_us: now_us(),
        });
        result
    }
}

// ANCHOR: init_steps
/// Builds the container around this process, then becomes the user's program.
fn run(channel: &mut Channel, config: InitConfig) -> Result<std::convert::Infallible, InitError> {
    let mut stages = Stages(Vec::new());
    let process = config.spec.process().clone().ok_or(InitError::NoProcess)?;

    stages.time("join namespaces", || join_namespaces(&config))?;
    if !config.exec {
        stages.time("mounts", || prepare_filesystem(&config))?;
        // The host's files are still visible: the runtime's hooks run now.
        channel.send(&Message::RunHooks)?;
        channel.expect("HooksDone")?;
        // The statuses hooks are told follow runc: still "creating" here, and
        // "created" for startContainer (the program has not started yet).
        let state = OciState::new(
            &config.id,
            ContainerState::Creating,
            std::process::id() as i32,
            &config.bundle,
            &config.spec,
        );
        stages.time("createContainer hooks", || {
            Ok(run_hooks(HookKind::CreateContainer, &config.spec, &state)?)
        })?;
        stages.time("pivot_root", || pivot(&config))?;
    }
    stages.time("console", || setup_console(&process))?;
    stages.time("process attributes", || apply_attributes(&config, &process))?;
    let process = with_home(process);
    let program = find_program(&process)?;
    stages.time("user and capabilities", || become_user(&config, &process))?;

    // Everything that can fail has been tried; what is left is waiting and exec.
    channel.send(&Message::Ready { stages: stages.0 })?;
    if !config.exec {
        let ready_us = now_us();
        let mut fifo = wait_for_start()?;
        let released_us = now_us();
        let state = OciState::new(
            &config.id,
            ContainerState::Created,
            std::process::id() as i32,
            &config.bundle,
            &config.spec,
        );
        run_hooks(HookKind::StartContainer, &config.spec, &state)?;
        let hooks = Stage {
            name: "startContainer hooks".into(),
            start_us: released_us,
            end_us: now_us(),
        };
        // The wait began when `create` was still running: this span reaches back
        // before the `start` that ends it.
        let waited = Stage {
            name: "wait for start".into(),
            start_us: ready_us,
            end_us: released_us,
        };
        let released = Released {
            stages: vec![waited, hooks],
            exec_us: now_us(),
        };
        // Best effort: if `start` has gone, the program still runs.
        let _ = writeln!(
            fifo,
            "{}",
            serde_json::to_string(&released).expect("serializes")
        );
    }
    exec(&program, &process, config.preserve_fds)
}
// ANCHOR_END: init_steps

/// Runs the spec's hooks of `kind`, stopping at the first failure.
fn run_hooks(kind: HookKind, spec: &Spec, state: &OciState) -> Result<(), hooks::HookError> {
    let none = Default::default();
    hooks::run_hooks(
        kind,
        kind.select(spec.hooks().as_ref().unwrap_or(&none)),
        state,
    )
}

/// Enters the namespaces the spec names by path, then the new cgroup namespace.
fn join_namespaces(config: &InitConfig) -> Result<(), InitError> {
    for join in &config.join {
        namespaces::enter(join)?;
    }
    if config.new_cgroup_namespace {
        // Now, not at clone time: the runtime has moved us into the container's
        // cgroup, so that cgroup becomes this namespace's root.
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys_err("create the cgroup namespace"))?;
    }
    Ok(())
}

fn prepare_filesystem(config: &InitConfig) -> Result<(), InitError> {
    let spec = &config.spec;
    if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sethostname(hostname).map_err(sys_err(format!("set the hostname to {hostname:?}")))?;
    }
    if let Some(domain) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        set_domainname(domain)?;
    }
    let hierarchy = cgroups::Hierarchy::detect()?;
    // Without a cgroup namespace, `cgroup` mounts show the cgroups we are in: the
    // runtime moved us into the container's before sending Bootstrap.
    let in_cgroup_namespace = config.new_cgroup_namespace
        || config
            .join
            .iter()
            .any(|j| j.kind == LinuxNamespaceType::Cgroup);
    let own = match in_cgroup_namespace {
        true => None,
        false => Some(cgroups::Membership::of_self()?),
    };
    // Device nodes get exactly the spec's modes (0666 by default), which mknod would
    // otherwise cut by our umask, as runc makes sure too.
    let umask = nix::sys::stat::umask(Mode::empty());
    let prepared = rootfs::prepare(
        &mut rootfs::Linux,
        spec,
        &config.rootfs,
        &hierarchy,
        own.as_ref(),
    );
    nix::sys::stat::umask(umask);
    Ok(prepared?)
}

fn set_domainname(domain: &str) -> Result<(), InitError> {
    // SAFETY: a plain system call on a valid buffer of the given length.
    let rc = unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .map_err(sys_err(format!("set the domain name to {domain:?}")))
}

fn pivot(config: &InitConfig) -> Result<(), InitError> {
    let mut sys = rootfs::Linux;
    rootfs::pivot(&mut sys, &config.rootfs, config.no_pivot)?;
    // Sysctls before `finish`, as runc does: a spec may list `/proc/sys` among its
    // read-only paths and set sysctls too (dockerd's do both, for every container).
    rootfs::apply_sysctl(&config.spec)?;
    rootfs::finish(&mut sys, &config.spec)?;
    Ok(())
}

/// With `terminal: true`, a new pty from the container's own `/dev/ptmx`; its master
/// goes to whoever listens on the console socket, its slave becomes our stdio.
fn setup_console(process: &Process) -> Result<(), InitError> {
    if !process.terminal().unwrap_or(false) {
        return Ok(());
    }
    let socket = UnixStream::from(inherited_fd(CONSOLE_FD_ENV)?);
    let (master, slave, _name) = console::open_pty()?;
    if let Some(size) = process.console_size() {
        console::set_window_size(&master, size.height() as u16, size.width() as u16)?;
    }
    console::send_master(&socket, &master)?;
    console::make_controlling_terminal(slave)?;
    Ok(())
}

fn apply_attributes(config: &InitConfig, process: &Process) -> Result<(), InitError> {
    attrs::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(score) = process.oom_score_adj() {
        attrs::set_oom_score_adj(score)?;
    }
    if let Some(personality) = config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        attrs::set_personality(personality)?;
    }
    if let Some(priority) = process.io_priority() {
        attrs::set_io_priority(priority)?;
    }
    if let Some(scheduler) = process.scheduler() {
        attrs::set_scheduler(scheduler)?;
    }
    if let Some(cwd) = Some(process.cwd()).filter(|c| !c.as_os_str().is_empty()) {
        nix::unistd::chdir(cwd.as_path()).map_err(sys_err(format!(
            "chdir to the working directory {}",
            cwd.display()
        )))?;
    }
    Ok(())
}

// ANCHOR: become_user
/// The last privileges go: user and groups, capabilities, no_new_privileges, seccomp.
///
/// The order matters. Switching from uid 0 to another uid clears the capability
/// sets, so capabilities are kept across the switch and set afterwards. seccomp may
/// only be installed by a process with `no_new_privs` or `CAP_SYS_ADMIN`; so without
/// `noNewPrivileges` it goes in *before* the capabilities are dropped.
fn become_user(config: &InitConfig, process: &Process) -> Result<(), InitError> {
    // Everything that allocates is done first: the filter and the capability plan.
    let filter = match config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
    {
        Some(profile) => Some((seccomp::compile(profile)?, seccomp::filter_flags(profile))),
        None => None,
    };
    let plan = match process.capabilities() {
        Some(caps) => Some(CapabilityPlan::from_spec(
            caps,
            capabilities::kernel_last_cap()?,
        )?),
        None => None,
    };
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    if let (Some((program, flags)), false) = (&filter, no_new_privileges) {
        seccomp::install(program, *flags)?;
    }
    if let Some(plan) = &plan {
        plan.before_user_switch(&capabilities::Kernel)?;
    }
    attrs::switch_user(process.user())?;
    if let Some(plan) = &plan {
        plan.after_user_switch(&capabilities::Kernel)?;
    }
    if no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(sys_err("set no_new_privileges"))?;
        if let Some((program, flags)) = &filter {
            seccomp::install(program, *flags)?;
        }
    }
    Ok(())
}
// ANCHOR_END: become_user

// ANCHOR: exec_fifo
/// Blocks until `berth-runc start`. The runtime left the fifo open for us as an
/// `O_PATH` fd; opening it for writing through `/proc/self/fd` blocks until `start`
/// opens it for reading. What init writes there later ([`Released`]) and the end of
/// file its exec causes tell `start` that the program is on its way.
fn wait_for_start() -> Result<std::fs::File, InitError> {
    let fifo = inherited_fd(FIFO_FD_ENV)?;
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fifo));
    let writer = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| InitError::Sys {
            what: "open the exec fifo".into(),
            source: io_errno(&e),
        })?;
    Ok(writer)
}
// ANCHOR_END: exec_fifo

fn io_errno(e: &std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// runc's rule, which programs have come to rely on: a process whose environment
/// has no `HOME` gets its user's home directory from the container's `/etc/passwd`
/// (we are inside the container's root by now), or `/` if the user is not listed.
fn with_home(mut process: Process) -> Process {
    let mut env = process.env().clone().unwrap_or_default();
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return process;
    }
    let uid = process.user().uid().to_string();
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    // name:password:uid:gid:gecos:home:shell
    let home = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&uid.as_str()))
        .and_then(|fields| fields.get(5).map(|home| home.to_string()))
        .unwrap_or_else(|| "/".to_owned());
    env.push(format!("HOME={home}"));
    process.set_env(Some(env));
    process
}

/// Resolves `args[0]` against the process's own `PATH`, as `execvp` would, but now,
/// while an error can still reach the runtime.
fn find_program(process: &Process) -> Result<PathBuf, InitError> {
    let name = process
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or(InitError::NoProcess)?;
    if name.contains('/') {
        // A path is not searched for, but it is checked now too, as runc does: after
        // `start` a failed exec could only exit, with no reason anyone can read.
        let path = PathBuf::from(name);
        return if !path.exists() {
            Err(InitError::NoSuchProgram(name.clone()))
        } else if !is_executable(&path) {
            Err(InitError::NotExecutable(name.clone()))
        } else {
            Ok(path)
        };
    }
    let path_var = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(berth_oci::spec::DEFAULT_PATH.trim_start_matches("PATH="));
    path_var
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| InitError::NotFound(name.clone()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Becomes the user's program. Only stdio and the preserved fds survive.
fn exec(
    program: &Path,
    process: &Process,
    preserve_fds: i32,
) -> Result<std::convert::Infallible, InitError> {
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| {
            sys_err(format!("pass {s:?} to exec (it contains a NUL byte)"))(nix::Error::EINVAL)
        })
    };
    let program_c = to_c(&program.to_string_lossy())?;
    let args = process
        .args()
        .iter()
        .flatten()
        .map(|a| to_c(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = process
        .env()
        .iter()
        .flatten()
        .map(|e| to_c(e))
        .collect::<Result<Vec<_>, _>>()?;
    attrs::set_cloexec_from(3 + preserve_fds)?;
    nix::unistd::execve(&program_c, &args, &env)
        .map_err(sys_err(format!("exec {}", program.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{ProcessBuilder, UserBuilder};

    fn process(uid: u32, env: &[&str]) -> Process {
        ProcessBuilder::default()
            .user(UserBuilder::default().uid(uid).gid(0u32).build().unwrap())
            .env(env.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn home_comes_from_passwd_unless_the_spec_sets_it() {
        // The test machine's /etc/passwd stands in for the container's.
        let env = |p: Process| with_home(p).env().clone().unwrap();
        assert_eq!(env(process(0, &["A=1"])), ["A=1", "HOME=/root"]);
        assert_eq!(env(process(4_242_424, &[])), ["HOME=/"]);
        assert_eq!(env(process(0, &["HOME=/srv"])), ["HOME=/srv"]);
    }
}
