//! Waiting for a child while passing signals on to it: what `run` and `exec` (when
//! not detached) do once the container's process is going.
//!
//! The signals are blocked *before* the child is created and then taken one at a
//! time with `sigwait`. So a child that exits at once cannot be missed: its SIGCHLD
//! stays pending until we ask for it, and there is no window in which it could
//! arrive before we are ready (the race that leaves some runtimes hanging).
//!
//! "Before" means before any *thread* exists, too: a signal sent to a process goes
//! to any one of its threads that does not block it, and the tracing exporter's
//! threads would take a SIGCHLD and drop it. So `main` blocks these signals first
//! thing for the verbs that wait, and every thread started later inherits the mask.
//! As a last guard the wait also looks at the child once a second.

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

// ANCHOR: block_signals
/// Blocks SIGCHLD and the signals a user might send to stop or steer the
/// container, so they queue up for [`wait_forwarding`]. Call before creating the child.
pub fn block_signals() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}
// ANCHOR_END: block_signals

// ANCHOR: wait_forwarding
/// Waits for `child` to end, forwarding every other blocked signal to it (but a
/// window resize, which `on_resize` handles). Returns the exit status a shell
/// would show: the code, or 128 + the killing signal.
pub fn wait_forwarding(child: Pid, set: &SigSet, on_resize: impl Fn()) -> anyhow::Result<i32> {
    loop {
        let Some(signal) = wait_at_most(set, ONE_SECOND)? else {
            // No signal for a second: look anyway (see the module's doc).
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
                _ => continue,
            }
        };
        if signal == Signal::SIGWINCH {
            on_resize();
            continue;
        }
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
            continue;
        }
        // One SIGCHLD may stand for several exits: reap until nothing is left.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                    return Ok(128 + signal as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
// ANCHOR_END: wait_forwarding

const ONE_SECOND: libc::timespec = libc::timespec {
    tv_sec: 1,
    tv_nsec: 0,
};

/// `sigtimedwait`: the next signal of `set`, or `None` if none came within `timeout`.
fn wait_at_most(set: &SigSet, timeout: libc::timespec) -> anyhow::Result<Option<Signal>> {
    // SAFETY: `set` is a valid signal set, the info pointer may be null, and the
    // timeout is a valid timespec.
    let signal = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &timeout) };
    match nix::errno::Errno::result(signal) {
        Ok(number) => Ok(Some(Signal::try_from(number)?)),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
