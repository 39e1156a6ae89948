//! One container process, init or exec: its states, and its exit once it has one.
//!
//! ```text
//!   Created ──start──▶ Running ──pause──▶ Paused
//!      │                 │  ▲──resume──────┘ │
//!      └──── exit ───────┴──▶ Stopped ◀──exit┘
//! ```
//!
//! Every transition is a method here, and every impossible one is an error that says
//! what state the process is in and what to do. The exit status and time are kept
//! until Delete: this is the *custody* a shim exists for. containerd may ask for them
//! once (Wait), many times (State), or after a restart of its own, and gets the same
//! answer each time.

use std::time::SystemTime;

use crate::stdio::{Io, StdioPaths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// How and when a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal that killed it (as a shell shows it).
    pub status: u32,
    pub at: SystemTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcessError {
    #[error("cannot {action} process {name:?}: it is {status}; {hint}", status = status.name())]
    Transition {
        action: &'static str,
        name: String,
        status: Status,
        hint: &'static str,
    },
}

/// A process of the container, as the shim tracks it.
pub struct Process {
    /// `None` for the container's init, the exec id for an exec'd process.
    pub exec_id: Option<String>,
    /// 0 until the runtime has started it (an exec) or created it (init).
    pub pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub stdio: StdioPaths,
    /// The shim's ends of the process's stdio; dropped at Delete.
    pub io: Option<Io>,
    /// Whether the start event has gone out. An exit seen before it (a process can end
    /// before `start` returns) waits, so containerd never hears "exited" before "started".
    pub start_announced: bool,
}

impl Process {
    pub fn new(exec_id: Option<String>, stdio: StdioPaths) -> Process {
        Process {
            exec_id,
            pid: 0,
            status: Status::Created,
            exit: None,
            stdio,
            io: None,
            start_announced: false,
        }
    }

    /// How errors name it: the exec id, or "init".
    pub fn name(&self) -> String {
        self.exec_id.clone().unwrap_or_else(|| "init".to_owned())
    }

    fn refuse(&self, action: &'static str, hint: &'static str) -> ProcessError {
        ProcessError::Transition {
            action,
            name: self.name(),
            status: self.status,
            hint,
        }
    }

    pub fn check_start(&self) -> Result<(), ProcessError> {
        match self.status {
            Status::Created => Ok(()),
            _ => Err(self.refuse("start", "a process starts once; create a new one")),
        }
    }

    pub fn started(&mut self, pid: u32) {
        self.pid = pid;
        if self.status == Status::Created {
            self.status = Status::Running;
        }
    }

    pub fn check_pause(&self) -> Result<(), ProcessError> {
        match self.status {
            Status::Running => Ok(()),
            _ => Err(self.refuse("pause", "only a running task can be paused")),
        }
    }

    pub fn check_resume(&self) -> Result<(), ProcessError> {
        match self.status {
            Status::Paused => Ok(()),
            _ => Err(self.refuse("resume", "only a paused task can be resumed")),
        }
    }

    /// Paused and resumed are set by the caller once the runtime has done it.
    pub fn set_paused(&mut self, paused: bool) {
        if self.status != Status::Stopped {
            self.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
        }
    }

    pub fn check_kill(&self) -> Result<(), ProcessError> {
        match self.status {
            Status::Stopped => Err(self.refuse("signal", "it has already exited")),
            _ => Ok(()),
        }
    }

    pub fn check_delete(&self) -> Result<(), ProcessError> {
        match self.status {
            Status::Running | Status::Paused => {
                Err(self.refuse("delete", "kill it first, or delete with --force"))
            }
            _ => Ok(()),
        }
    }

    /// Records the exit; the first one counts (a pid is reaped once).
    pub fn exited(&mut self, status: u32, at: SystemTime) {
        if self.exit.is_none() {
            self.exit = Some(Exit { status, at });
            self.status = Status::Stopped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> Process {
        Process::new(None, StdioPaths::default())
    }

    #[test]
    fn the_lifecycle_and_its_refusals() {
        let mut p = process();
        assert!(p.check_pause().is_err(), "created cannot pause");
        p.check_start().unwrap();
        p.started(42);
        assert_eq!((p.pid, p.status), (42, Status::Running));
        assert!(p.check_start().is_err(), "starts once");
        assert!(p.check_delete().is_err(), "running cannot be deleted");
        p.check_pause().unwrap();
        p.set_paused(true);
        assert_eq!(p.status, Status::Paused);
        p.check_resume().unwrap();
        p.set_paused(false);
        let at = SystemTime::now();
        p.exited(137, at);
        p.exited(0, SystemTime::now());
        assert_eq!(
            p.exit,
            Some(Exit { status: 137, at }),
            "the first exit counts"
        );
        assert_eq!(p.status, Status::Stopped);
        p.check_delete().unwrap();
        let err = p.check_kill().unwrap_err().to_string();
        assert_eq!(
            err,
            "cannot signal process \"init\": it is stopped; it has already exited"
        );
    }

    #[test]
    fn an_exit_after_pause_is_not_undone_by_resume() {
        let mut p = process();
        p.started(1);
        p.set_paused(true);
        p.exited(9, SystemTime::now());
        p.set_paused(false);
        assert_eq!(p.status, Status::Stopped);
    }
}
