//! Starting init: the runtime's side of the `clone`.
//!
//! One `clone` system call creates the child already inside its new namespaces. The
//! child does one thing only: it re-executes this very binary (`/proc/self/exe`) as
//! `berth-runc init`, with the handshake socket and any other fds it needs left open.
//! Doing nothing else between `clone` and `exec` is what makes cloning a process
//! that may have other threads safe: the child touches no lock, allocates nothing.
//!
//! One exception, also made of bare system calls: in a new user namespace the child
//! first waits for the runtime to write its uid and gid maps, and becomes root in the
//! namespace. Only then may it `exec`: `exec` recomputes a process's capabilities from
//! its uid, and a child that is not (yet) root in its namespace would lose them all.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;

use crate::init::{CONSOLE_FD_ENV, FIFO_FD_ENV, PROCESS_NAME, SYNC_FD_ENV};
use crate::namespaces::CLONE_NEWTIME;
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
    /// In a new user namespace, the child waits for one byte here before it execs:
    /// see [`Child::maps_written`].
    maps_gate: Option<OwnedFd>,
}

impl Child {
    /// Tells a child in a new user namespace that its id maps are written, so it can
    /// become root in the namespace and exec init. Call it after writing the maps;
    /// until then the child waits (and dies if the runtime goes away).
    pub fn maps_written(&mut self) -> Result<(), SpawnError> {
        let Some(gate) = self.maps_gate.take() else {
            return Ok(());
        };
        nix::unistd::write(&gate, &[1]).map_err(|source| SpawnError::Sys {
            what: "let init go on once its id maps are written",
            source,
        })?;
        Ok(())
    }
}

// ANCHOR: spawn
/// Clones a child into `flags`' new namespaces (and into the pid namespace at
/// `enter_pid_ns`, if given) and has it re-execute this binary as `init`.
pub fn spawn_init(
    flags: CloneFlags,
    enter_pid_ns: Option<&Path>,
    new_time: Option<&str>,
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
    // Both ends close on exec; the child keeps the reading one until then.
    let gate = match flags.contains(CloneFlags::CLONE_NEWUSER) {
        true => Some(
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| SpawnError::Sys {
                what: "create the user namespace gate",
                source,
            })?,
        ),
        false => None,
    };
    let gate_fds = gate
        .as_ref()
        .map(|(read, write)| (read.as_raw_fd(), write.as_raw_fd()));
    const NOT_ROOT: &[u8] =
        b"berth-runc: cannot become root in the new user namespace; map container uid and gid 0\n";

    // A process cannot move itself into another pid namespace, only its future
    // children; so the runtime steps in for the clone and back out right after.
    let back = match enter_pid_ns {
        Some(path) => Some(enter_for_children(path)?),
        None => None,
    };
    let time_back = match new_time {
        Some(offsets) => Some(new_time_for_children(offsets)?),
        None => None,
    };
    // SAFETY: with no CLONE_VM and no new stack, clone behaves like fork: the child
    // gets a copy of our memory. It only makes async-signal-safe system calls (read,
    // write, close, setresuid, setresgid, execve, _exit) on data prepared above.
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
            if let Some((read, write)) = gate_fds {
                libc::close(write);
                let mut byte = 0u8;
                if libc::read(read, (&raw mut byte).cast(), 1) != 1 {
                    libc::_exit(127); // the runtime failed, or died, before the maps
                }
                // Raw system calls: libc's wrappers would try to reach threads the
                // runtime had, which the child does not have.
                if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0
                {
                    libc::write(2, NOT_ROOT.as_ptr().cast(), NOT_ROOT.len());
                    libc::_exit(127);
                }
            }
            libc::execve(exe.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            libc::_exit(127);
        }
        pid
    };
    // Read now: the calls below would overwrite errno.
    let clone_error = (pid < 0).then(nix::Error::last);
    if let Some(ours) = time_back {
        // Only a single-threaded process may enter a time namespace, and berth-runc
        // has an exporter thread when tracing; then the hooks this process runs later
        // keep the container's clocks, which is harmless.
        let _ = setns(ours.as_fd(), CLONE_NEWTIME);
    }
    if let Some(ours) = back {
        setns(ours.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|source| SpawnError::Sys {
            what: "return to our own pid namespace",
            source,
        })?;
    }
    if let Some(source) = clone_error {
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
        maps_gate: gate.map(|(_read, write)| write),
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

// ANCHOR: new_time
/// Makes a new time namespace for our future children, with the given clock
/// offsets (which the kernel accepts only while nobody is inside); returns our own.
fn new_time_for_children(offsets: &str) -> Result<File, SpawnError> {
    let ours = File::open("/proc/self/ns/time").map_err(|source| SpawnError::Io {
        what: "open our time namespace",
        source,
    })?;
    nix::sched::unshare(CLONE_NEWTIME).map_err(|source| SpawnError::Sys {
        what: "create the time namespace",
        source,
    })?;
    if !offsets.is_empty() {
        std::fs::write("/proc/self/timens_offsets", offsets).map_err(|source| SpawnError::Io {
            what: "set the time namespace's clock offsets",
            source,
        })?;
    }
    Ok(ours)
}
// ANCHOR_END: new_time

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
