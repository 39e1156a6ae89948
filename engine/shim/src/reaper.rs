//! Child exits, routed to whoever waits for them.
//!
//! The shim is a *subreaper*: when the runtime exits, the container's init (and every
//! exec'd process) is re-parented to the shim instead of to pid 1, so the shim is the
//! one the kernel tells when it exits, and the one that keeps its exit status. The
//! main loop ([`crate::serve`]) reaps every child with `waitpid(-1)`, which takes the
//! exit of the runtime commands the shim runs too (`berth-runc create`, `kill`, ...):
//! those must not be lost to the code that waits for them. So a runtime command is
//! started through [`Reaper::spawn`], which records its pid, and the main loop hands
//! each exit to [`Reaper::claim`] first; what is not a command is a container process.

use std::collections::HashMap;
use std::io::{self, Read};
use std::process::{Child, Command};
use std::sync::{Condvar, Mutex, PoisonError};

/// A command's exit code, the way a shell shows it: the code, or 128 + the signal.
pub type Code = i32;

/// The runtime commands in flight, and their exit codes once reaped.
#[derive(Default)]
pub struct Reaper {
    /// Whether a main loop reaps children (the serving shim), or each command is
    /// waited for directly (the `delete` action, a plain short-lived process).
    routed: bool,
    commands: Mutex<HashMap<i32, Option<Code>>>,
    exited: Condvar,
}

impl Reaper {
    /// For the serving shim, whose main loop reaps every child and calls [`claim`](Self::claim).
    pub fn routed() -> Reaper {
        Reaper {
            routed: true,
            ..Reaper::default()
        }
    }

    /// For a process that reaps nothing itself: commands are waited for directly.
    pub fn direct() -> Reaper {
        Reaper::default()
    }

    /// Spawns `cmd` and records its pid before the main loop can see it exit.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        if !self.routed {
            return cmd.spawn();
        }
        // The lock is held across fork: the main loop's `claim` for this pid waits for it,
        // so a command that exits at once is still recognised as one.
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        let child = cmd.spawn()?;
        commands.insert(child.id() as i32, None);
        Ok(child)
    }

    /// Reads the child's stdout to its end (if piped), then waits for its exit.
    pub fn wait(&self, mut child: Child) -> io::Result<(Code, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_end(&mut out)?;
        }
        if !self.routed {
            let status = child.wait()?;
            return Ok((code_of(status), out));
        }
        let pid = child.id() as i32;
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(Some(code)) = commands.get(&pid) {
                let code = *code;
                commands.remove(&pid);
                return Ok((code, out));
            }
            commands = self
                .exited
                .wait(commands)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Called by the main loop for every reaped child: true if it was a runtime
    /// command (whose waiter is now woken), false if it is someone else's.
    pub fn claim(&self, pid: i32, code: Code) -> bool {
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        match commands.get_mut(&pid) {
            Some(slot) => {
                *slot = Some(code);
                self.exited.notify_all();
                true
            }
            None => false,
        }
    }
}

fn code_of(status: std::process::ExitStatus) -> Code {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// Makes this process the subreaper of everything it starts, and their descendants.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_reaper_waits_and_captures() {
        let reaper = Reaper::direct();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hi; exit 3"])
            .stdout(std::process::Stdio::piped());
        let child = reaper.spawn(&mut cmd).unwrap();
        assert_eq!(reaper.wait(child).unwrap(), (3, b"hi\n".to_vec()));
    }

    #[test]
    fn a_routed_reaper_hands_the_exit_to_the_waiter() {
        let reaper = std::sync::Arc::new(Reaper::routed());
        let mut cmd = Command::new("true");
        let child = reaper.spawn(&mut cmd).unwrap();
        let pid = child.id() as i32;
        // Stand in for the main loop: reap the child and route its exit.
        let main_loop = {
            let reaper = reaper.clone();
            std::thread::spawn(move || {
                let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                assert!(status.is_ok());
                assert!(reaper.claim(pid, 0));
                assert!(!reaper.claim(pid + 100_000, 0), "not a command");
            })
        };
        assert_eq!(reaper.wait(child).unwrap().0, 0);
        main_loop.join().unwrap();
    }
}
