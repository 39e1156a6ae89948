//! Pid files: how each long-running process of the engine says "I serve this root",
//! and how the next one finds out whether that is still true.
//!
//! The daemon writes `ROOT/daemon.pid`, the supervisor `ROOT/supervisor.pid`. A pid
//! file left by a process that was killed is harmless: the pid it names is gone (or,
//! rarely, reused by a process of another name, which [`alive`] also tells apart).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("another {what} (pid {pid}) already serves {root:?}; stop it first")]
    AlreadyRunning {
        what: &'static str,
        pid: i32,
        root: PathBuf,
    },
    #[error("writing {path:?}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The pid in `path`, if a process of this binary with `verb` on its command line
/// (`daemon`, `supervisor`) runs under it.
pub fn alive(path: &Path, verb: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_it = cmdline.split(|b| *b == 0).any(|arg| arg == verb.as_bytes());
    // A zombie still has a /proc entry and its command line is empty; it is not alive.
    is_it.then_some(pid)
}

/// Writes this process's pid to `root/<what>.pid`, unless another live `what` holds it.
pub fn claim(root: &Path, what: &'static str) -> Result<PathBuf, PidFileError> {
    let path = root.join(format!("{what}.pid"));
    if let Some(pid) = alive(&path, what).filter(|pid| *pid as u32 != std::process::id()) {
        return Err(PidFileError::AlreadyRunning {
            what,
            pid,
            root: root.to_owned(),
        });
    }
    fs::write(&path, std::process::id().to_string())
        .map_err(|source| PidFileError::Write {
            path: path.clone(),
            source,
        })
        .map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_of_a_dead_process_is_taken_over() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("daemon.pid"), "999999999").unwrap();
        let path = claim(root.path(), "daemon").unwrap();
        assert_eq!(
            fs::read_to_string(path).unwrap(),
            std::process::id().to_string()
        );
    }

    #[test]
    fn a_live_process_of_another_kind_is_not_the_owner() {
        let root = tempfile::tempdir().unwrap();
        // This test binary is alive, but it is no `supervisor`.
        fs::write(root.path().join("supervisor.pid"), "1").unwrap();
        assert_eq!(
            alive(&root.path().join("supervisor.pid"), "supervisor"),
            None
        );
    }
}
