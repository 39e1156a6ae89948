//! The runtime: `split-era runtime create --bundle DIR --pid-file FILE ID` starts one
//! container and **exits**; `split-era runtime delete ID` removes what it left behind.
//!
//! This is chapter 02's execution driver, moved out of the daemon into a process of its
//! own, as runc was moved out of Docker in 2015. It reads the bundle the daemon prepared
//! (see [`crate::bundle`]), `clone`s the container's first process into new mount, UTS,
//! IPC, PID and network namespaces, puts it into its cgroups, and lets it build its
//! world (private mounts, `/proc`, a tmpfs `/dev`, `pivot_root`, the hostname) and
//! `execve` the command. Then it writes that process's pid to the pid file and exits.
//!
//! Two things are gone from chapter 02, and their absence is the point:
//! - **No parent-death signal.** Nothing ties the container to the process that made
//!   it. When the runtime exits, the kernel gives its orphan to the nearest
//!   *subreaper*, the shim (see [`crate::shim`]), which becomes the container's parent.
//! - **No waiting.** The runtime never learns how the container ends; the shim does.
//!
//! The container's stdout and stderr are the runtime's stdout, which the shim made a
//! pipe to itself; the runtime's own errors go to its stderr, which the shim reads.
//!
//! Read next: [`crate::shim`], the container's parent from here on.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc::{self, c_char};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::bundle::{self, BundleError, Config};

/// Every container's limits. A real engine takes them from `run --memory`/`--pids-limit`;
/// this chapter fixes them, to show where they are written.
const MEMORY_LIMIT_BYTES: u64 = 256 << 20;
const PIDS_LIMIT: u32 = 1024;
/// Every container's cgroup is `<hierarchy>/berth-chapter03/<id>`.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP_PARENT: &str = "berth-chapter03";
/// The child's stack until `execve`: it only runs [`setup`], which needs little.
const STACK_SIZE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(
        "bundle setting or argument {value:?} contains a NUL byte, which a C string cannot hold"
    )]
    Unrepresentable { value: String },
    #[error("{action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cloning the container's process: {0}")]
    Clone(Errno),
    #[error("setting up the container failed while {step}: {source}")]
    Setup {
        step: &'static str,
        source: io::Error,
    },
    #[error("the container's process ended before it was set up")]
    ChildVanished,
}

// ANCHOR: create
/// Creates and starts container `id` from `bundle`, writes its first process's pid to
/// `pid_file`, and returns: the caller (the shim) exits right after, orphaning it.
pub fn create(id: &str, bundle: &Path, pid_file: &Path) -> Result<Pid, RuntimeError> {
    let span = tracing::info_span!("runtime create", %id);
    berth_trace::set_parent(&span, berth_trace::env::extract_from_process());
    let _entered = span.enter();

    let config = bundle::read_config(bundle)?;
    let plan = Plan::new(&bundle.join("rootfs"), &config)?;
    let pid = launch(id, plan)?;
    // Written whole or not at all: the shim reads it as soon as this process exits.
    let temporary = pid_file.with_extension("new");
    io_at(
        "writing",
        &temporary,
        fs::write(&temporary, pid.to_string()),
    )?;
    io_at("replacing", pid_file, fs::rename(&temporary, pid_file))?;
    Ok(pid)
}
// ANCHOR_END: create

/// Removes what [`create`] left on the host once the container is gone: its cgroups.
/// A real runtime also removes its state directory; this one keeps no state.
pub fn delete(id: &str) {
    remove_cgroups(id);
}

// ANCHOR: handshake
/// The parent/child handshake, over one socket pair, in this order:
/// 1. parent → child [`GO`]: the child is in its cgroups; set up and exec.
/// 2. child → parent: nothing, just end of file, when `execve` succeeded (the socket is
///    close-on-exec); or a failure report, [`Step`] and errno in 5 bytes, then exit.
///
/// Chapter 02 had a first step, READY, to make the parent-death signal safe. There is
/// no such signal now: if the runtime dies before GO, the child reads end of file
/// and exits, and nobody is left wondering.
const GO: u8 = b'G';

/// The child's setup steps, named for the error the user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Stdio,
    PrivateMounts,
    BindRootfs,
    MountProc,
    MountDev,
    DeviceNode,
    PivotRoot,
    DetachOldRoot,
    Hostname,
    WorkingDir,
    Exec,
}

impl Step {
    const ALL: [Step; 11] = [
        Step::Stdio,
        Step::PrivateMounts,
        Step::BindRootfs,
        Step::MountProc,
        Step::MountDev,
        Step::DeviceNode,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::Hostname,
        Step::WorkingDir,
        Step::Exec,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Stdio => "sending stderr to the shim",
            Step::PrivateMounts => "making every mount private",
            Step::BindRootfs => "binding the rootfs onto itself",
            Step::MountProc => "mounting /proc",
            Step::MountDev => "mounting a tmpfs on /dev",
            Step::DeviceNode => "creating a device node in /dev",
            Step::PivotRoot => "pivoting into the rootfs",
            Step::DetachOldRoot => "detaching the old root",
            Step::Hostname => "setting the hostname",
            Step::WorkingDir => "changing to the working directory",
            Step::Exec => "executing the command",
        }
    }

    fn from_byte(byte: u8) -> Option<Step> {
        Step::ALL.get(byte as usize).copied()
    }
}
// ANCHOR_END: handshake

/// Everything the child needs, made before the clone. After it the child is a copy of
/// a multi-threaded process with only one thread: had another thread held the
/// allocator's lock at that moment, the copy would wait for it forever. So the child
/// never allocates; every path and argument is a C string made here, and the child
/// only makes system calls (the same rule as between `fork` and `exec`).
struct Plan {
    rootfs: CString,
    proc_dir: CString,
    dev_dir: CString,
    /// `rootfs/dev/null`, `zero`, `urandom`, with their device numbers.
    devices: Vec<(CString, libc::dev_t)>,
    hostname: CString,
    cwd: CString,
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl Plan {
    fn new(rootfs: &Path, config: &Config) -> Result<Plan, RuntimeError> {
        let path = |p: &Path| c_string(p.as_os_str().as_bytes());
        let devices = [("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9)]
            .into_iter()
            .map(|(name, major, minor)| {
                Ok((
                    path(&rootfs.join("dev").join(name))?,
                    libc::makedev(major, minor),
                ))
            })
            .collect::<Result<_, RuntimeError>>()?;
        let program = config.args.first().ok_or(RuntimeError::Unrepresentable {
            value: "an empty command in config.json".into(),
        })?;
        Ok(Plan {
            rootfs: path(rootfs)?,
            proc_dir: path(&rootfs.join("proc"))?,
            dev_dir: path(&rootfs.join("dev"))?,
            devices,
            hostname: c_string(config.hostname.as_bytes())?,
            cwd: c_string(config.cwd.as_bytes())?,
            program: c_string(program.as_bytes())?,
            argv: config
                .args
                .iter()
                .map(|a| c_string(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            env: config
                .env
                .iter()
                .map(|v| c_string(v.as_bytes()))
                .collect::<Result<_, _>>()?,
        })
    }
}

fn c_string(bytes: &[u8]) -> Result<CString, RuntimeError> {
    CString::new(bytes).map_err(|_| RuntimeError::Unrepresentable {
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

/// A null-terminated array of pointers into `strings`, as `execve` wants.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

// ANCHOR: clone
/// Clones the child, then the parent's half of the handshake. On any failure the child
/// is killed and reaped, and its cgroups removed.
///
/// Why `clone` and not `std::process::Command` with `unshare` in `pre_exec`: a new PID
/// namespace applies only to the *children* of the process that unshares it, so the
/// command would not be its PID 1, and `/proc` could not be mounted for it before the
/// exec. `clone` with `CLONE_NEWPID` makes the child PID 1 at once, in one call.
fn launch(id: &str, plan: Plan) -> Result<Pid, RuntimeError> {
    let socket_path = Path::new("socketpair");
    let (mut parent, child) = io_at("creating", socket_path, UnixStream::pair())?;
    let argv = pointers(&plan.argv);
    let envp = pointers(&plan.env);
    let mut stack = vec![0u8; STACK_SIZE];
    let (child_fd, parent_fd) = (child.as_raw_fd(), parent.as_raw_fd());
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET;
    // SAFETY: without CLONE_VM the child runs on its own copy of memory, on a copy of
    // `stack`; it only reads the plan made above and makes system calls, and it never
    // returns from `child_main` (it execs or exits).
    let pid = unsafe {
        nix::sched::clone(
            Box::new(|| child_main(&plan, &argv, &envp, child_fd, parent_fd)),
            &mut stack,
            flags,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(RuntimeError::Clone)?;
    // Only the child may hold its end: its end of file is the news of the exec.
    drop(child);
    handshake(&mut parent, id, pid).inspect_err(|_| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        remove_cgroups(id);
    })?;
    Ok(pid)
}
// ANCHOR_END: clone

/// The parent's half of the handshake (see [`GO`]).
fn handshake(parent: &mut UnixStream, id: &str, pid: Pid) -> Result<(), RuntimeError> {
    join_cgroups(id, pid)?;
    parent
        .write_all(&[GO])
        .map_err(|_| RuntimeError::ChildVanished)?;
    let mut report = Vec::new();
    let _ = parent.read_to_end(&mut report);
    match report.as_slice() {
        [] => Ok(()),
        [step, errno @ ..] if errno.len() == 4 => Err(RuntimeError::Setup {
            step: Step::from_byte(*step).map_or("an unknown step", Step::name),
            source: io::Error::from_raw_os_error(i32::from_le_bytes([
                errno[0], errno[1], errno[2], errno[3],
            ])),
        }),
        _ => Err(RuntimeError::ChildVanished),
    }
}

// ANCHOR: child
/// The child, from the clone to the exec. System calls only: see [`Plan`].
fn child_main(
    plan: &Plan,
    argv: &[*const c_char],
    envp: &[*const c_char],
    socket: RawFd,
    parent_end: RawFd,
) -> isize {
    // SAFETY: plain system calls on file descriptors and C strings prepared before
    // the clone; none allocates.
    unsafe {
        // No parent-death signal: this process may outlive the runtime, and must.
        libc::close(parent_end);
        let mut go = 0u8;
        if libc::read(socket, (&mut go as *mut u8).cast(), 1) != 1 || go != GO {
            // The runtime died or gave up: nobody is waiting for this container.
            libc::_exit(1);
        }
        let step = match setup(plan) {
            Ok(()) => {
                libc::execve(plan.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                Step::Exec
            }
            Err(step) => step,
        };
        let mut report = [step as u8, 0, 0, 0, 0];
        report[1..].copy_from_slice(&Errno::last_raw().to_le_bytes());
        libc::write(socket, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}

/// The container's world, built from inside its namespaces. Each call that fails
/// returns its [`Step`]; the errno is still set when the caller reads it.
///
/// # Safety
/// Only for the cloned child: it changes the process's mounts, root and stdio.
unsafe fn setup(plan: &Plan) -> Result<(), Step> {
    let ok = |ret: libc::c_int, step: Step| if ret < 0 { Err(step) } else { Ok(()) };
    let none = std::ptr::null::<c_char>();
    // stdin and stdout are already what the shim gave the runtime (nothing, and the
    // pipe to the shim); stderr joins stdout, as `docker logs` shows them together.
    ok(libc::dup2(1, 2), Step::Stdio)?;

    // ANCHOR: mounts
    // Nothing mounted from here on may propagate back into the host's namespace.
    let private = libc::MS_REC | libc::MS_PRIVATE;
    ok(
        libc::mount(none, c"/".as_ptr(), none, private, std::ptr::null()),
        Step::PrivateMounts,
    )?;
    // pivot_root needs the new root to be a mount point: bind the rootfs onto itself.
    let bind = libc::MS_BIND | libc::MS_REC;
    let rootfs = plan.rootfs.as_ptr();
    ok(
        libc::mount(rootfs, rootfs, none, bind, std::ptr::null()),
        Step::BindRootfs,
    )?;
    // A /proc of the new PID namespace: `ps` inside sees only the container.
    let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    ok(
        libc::mount(
            c"proc".as_ptr(),
            plan.proc_dir.as_ptr(),
            c"proc".as_ptr(),
            hardened,
            std::ptr::null(),
        ),
        Step::MountProc,
    )?;
    // A /dev of its own, with only the devices every program expects.
    ok(
        libc::mount(
            c"tmpfs".as_ptr(),
            plan.dev_dir.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID,
            c"mode=755".as_ptr().cast(),
        ),
        Step::MountDev,
    )?;
    for (path, device) in &plan.devices {
        ok(
            libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, *device),
            Step::DeviceNode,
        )?;
        // mknod applies the daemon's umask; a device node must be 0666 nevertheless.
        ok(libc::chmod(path.as_ptr(), 0o666), Step::DeviceNode)?;
    }
    // ANCHOR_END: mounts

    // ANCHOR: pivot_root
    // `pivot_root(".", ".")` stacks the old root under the new one at "/"; unmounting
    // "." then detaches the old root, and no directory is needed to park it in.
    ok(libc::chdir(rootfs), Step::PivotRoot)?;
    let pivoted = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr());
    ok(pivoted as libc::c_int, Step::PivotRoot)?;
    ok(
        libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
        Step::DetachOldRoot,
    )?;
    // ANCHOR_END: pivot_root

    let hostname = plan.hostname.as_bytes();
    ok(
        libc::sethostname(hostname.as_ptr().cast(), hostname.len()),
        Step::Hostname,
    )?;
    ok(libc::chdir(plan.cwd.as_ptr()), Step::WorkingDir)
}
// ANCHOR_END: child
// ANCHOR: cgroups
/// Each `(directory, file, value)` a container's cgroups are made of.
///
/// On a cgroup v2 host (`cgroup.controllers` at the top) one directory holds both
/// limits. On a v1 host, or a hybrid one like the test hosts (v2 mounted, but the
/// controllers still in v1 hierarchies), each controller is its own tree:
/// `memory/berth-chapter03/<id>` and `pids/berth-chapter03/<id>`, with v1's file names.
fn cgroup_settings(id: &str) -> Vec<(PathBuf, &'static str, String)> {
    let root = Path::new(CGROUP_ROOT);
    if is_cgroup_v2() {
        let dir = root.join(CGROUP_PARENT).join(id);
        vec![
            (dir.clone(), "memory.max", MEMORY_LIMIT_BYTES.to_string()),
            (dir, "pids.max", PIDS_LIMIT.to_string()),
        ]
    } else {
        vec![
            (
                root.join("memory").join(CGROUP_PARENT).join(id),
                "memory.limit_in_bytes",
                MEMORY_LIMIT_BYTES.to_string(),
            ),
            (
                root.join("pids").join(CGROUP_PARENT).join(id),
                "pids.max",
                PIDS_LIMIT.to_string(),
            ),
        ]
    }
}

fn is_cgroup_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

/// Creates the container's cgroups, writes their limits, and moves `pid` into them.
/// The child waits for this (the GO of the handshake), so the command never runs
/// outside its limits.
fn join_cgroups(id: &str, pid: Pid) -> Result<(), RuntimeError> {
    if is_cgroup_v2() {
        // On v2 a controller works in a directory only if its parent hands it down.
        let root = Path::new(CGROUP_ROOT);
        let parent = root.join(CGROUP_PARENT);
        io_at("creating", &parent, fs::create_dir_all(&parent))?;
        // Best effort at the top: the host may have enabled them already.
        let _ = fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
        let control = parent.join("cgroup.subtree_control");
        io_at("writing", &control, fs::write(&control, "+memory +pids"))?;
    }
    for (dir, file, value) in cgroup_settings(id) {
        io_at("creating", &dir, fs::create_dir_all(&dir))?;
        let limit = dir.join(file);
        io_at("writing", &limit, fs::write(&limit, value))?;
        let procs = dir.join("cgroup.procs");
        io_at("writing", &procs, fs::write(&procs, pid.to_string()))?;
    }
    Ok(())
}

/// Removes container `id`'s cgroups (on `runtime delete`, after a failed start). Best
/// effort: a directory still busy with a dying process stays, and only leaks.
pub fn remove_cgroups(id: &str) {
    for (dir, _, _) in cgroup_settings(id) {
        let _ = fs::remove_dir(dir);
    }
}
// ANCHOR_END: cgroups

fn io_at<T>(action: &'static str, path: &Path, result: io::Result<T>) -> Result<T, RuntimeError> {
    result.map_err(|source| RuntimeError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            hostname: "0123456789ab".into(),
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/tmp".into(),
        }
    }

    #[test]
    fn the_plan_holds_c_strings() {
        let plan = Plan::new(Path::new("/r/rootfs"), &config()).unwrap();
        assert_eq!(plan.hostname.as_bytes(), b"0123456789ab");
        assert_eq!(plan.proc_dir.as_bytes(), b"/r/rootfs/proc");
        assert_eq!(plan.cwd.as_bytes(), b"/tmp");
        assert_eq!(plan.program.as_bytes(), b"/bin/sh");
        assert_eq!(plan.argv.len(), 3);
        assert_eq!(plan.devices[0].0.as_bytes(), b"/r/rootfs/dev/null");
    }

    #[test]
    fn a_nul_byte_or_no_command_is_refused() {
        let mut bad = config();
        bad.env = vec!["A=1\0B=2".into()];
        let plan = Plan::new(Path::new("/r"), &bad);
        assert!(matches!(plan, Err(RuntimeError::Unrepresentable { .. })));
        bad = config();
        bad.args.clear();
        assert!(Plan::new(Path::new("/r"), &bad).is_err());
    }

    #[test]
    fn every_step_survives_the_handshake() {
        for step in Step::ALL {
            assert_eq!(Step::from_byte(step as u8), Some(step));
        }
        assert_eq!(Step::from_byte(Step::ALL.len() as u8), None);
    }

    #[test]
    fn each_container_has_its_own_cgroups() {
        for (dir, _, _) in cgroup_settings("abc") {
            assert!(dir.ends_with("berth-chapter03/abc"), "{dir:?}");
        }
    }
}
