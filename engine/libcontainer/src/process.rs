//! Starting init: the runtime's side of the `clone`.
//!
//! One `clone` system call creates the child already inside its new namespaces. The
//! child does one thing only: it re-executes this very binary (`/proc/self/exe`) as
//! `berth-runc init`, with the handshake socket and any other fds it needs left open.
//! Doing nothing else between `clone` and `exec` is what makes cloning a process
//! that may have other threads safe: the child touches no lock, allocates nothing.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;

use crate::init::{CONSOLE_FD_ENV, FIFO_FD_ENV, PROCESS_NAME, SYNC_FD_ENV};
use crate::sync::Channel;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot {what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// What init inherits besides its namespaces.
#[derive(Default)]
pub struct Inherit<'a> {
    /// The exec fifo, opened `O_PATH` (only `create` passes one).
    pub fifo: Option<&'a OwnedFd>,
    /// A connection to the console socket (only with `terminal: true`).
    pub console: Option<&'a UnixStream>,
}

/// A freshly started init and our end of its handshake channel.
pub struct Child {
    pub pid: Pid,
    pub channel: Channel,
}

// ANCHOR: spawn
/// Clones a child into `flags`' new namespaces (and into the pid namespace at
/// `enter_pid_ns`, if given) and has it re-execute this binary as `init`.
pub fn spawn_init(
    flags: CloneFlags,
    enter_pid_ns: Option<&Path>,
    inherit: Inherit,
) -> Result<Child, SpawnError> {
    let (ours, theirs) = UnixStream::pair().map_err(|source| SpawnError::Io {
        what: "create the handshake socket pair",
        source,
    })?;
    let mut env = vec![format!("{SYNC_FD_ENV}={}", keep_open(theirs.as_fd())?)];
    if let Some(fifo) = inherit.fifo {
        env.push(format!("{FIFO_FD_ENV}={}", keep_open(fifo.as_fd())?));
    }
    if let Some(console) = inherit.console {
        env.push(format!("{CONSOLE_FD_ENV}={}", keep_open(console.as_fd())?));
    }
    // Everything the child needs is prepared *before* the clone: after it, the child
    // may only make system calls.
    let c = |s: &str| CString::new(s).expect("no NUL in our own strings");
    let exe = c("/proc/self/exe");
    let argv = [c(PROCESS_NAME), c("init")];
    let envp: Vec<CString> = env.iter().map(|e| c(e)).collect();
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain([std::ptr::null()])
        .collect();

    // A process cannot move itself into another pid namespace, only its future
    // children; so the runtime steps in for the clone and back out right after.
    let back = match enter_pid_ns {
        Some(path) => Some(enter_for_children(path)?),
        None => None,
    };
    // SAFETY: with no CLONE_VM and no new stack, clone behaves like fork: the child
    // gets a copy of our memory. It only calls execve and _exit, which are
    // async-signal-safe, on pointers prepared above.
    let pid = unsafe {
        let pid = libc::syscall(
            libc::SYS_clone,
            flags.bits() as libc::c_long | libc::SIGCHLD as libc::c_long,
            0,
            0,
            0,
            0,
        );
        if pid == 0 {
            libc::execve(exe.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            libc::_exit(127);
        }
        pid
    };
    if let Some(ours) = back {
        setns(ours.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|source| SpawnError::Sys {
            what: "return to our own pid namespace",
            source,
        })?;
    }
    if pid < 0 {
        let source = nix::Error::last();
        return Err(SpawnError::Sys {
            what: "clone the container's init",
            source,
        });
    }
    drop(theirs);
    let channel = Channel::new(ours).map_err(|source| SpawnError::Io {
        what: "set up the handshake channel",
        source,
    })?;
    Ok(Child {
        pid: Pid::from_raw(pid as i32),
        channel,
    })
}
// ANCHOR_END: spawn

/// Clears close-on-exec on `fd` so the child inherits it, and returns its number.
/// Only the runtime's own short-lived process does this, right before one clone.
fn keep_open(fd: std::os::fd::BorrowedFd) -> Result<i32, SpawnError> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|source| SpawnError::Sys {
        what: "pass an fd to init",
        source,
    })?;
    Ok(fd.as_raw_fd())
}

/// Enters the pid namespace at `path` for our future children; returns our own, to
/// go back to.
fn enter_for_children(path: &Path) -> Result<File, SpawnError> {
    let open = |p: &Path| {
        File::open(p).map_err(|source| SpawnError::Io {
            what: "open a pid namespace",
            source,
        })
    };
    let ours = open(Path::new("/proc/self/ns/pid"))?;
    let theirs = open(path)?;
    setns(theirs.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|source| SpawnError::Sys {
        what: "enter the container's pid namespace",
        source,
    })?;
    Ok(ours)
}
