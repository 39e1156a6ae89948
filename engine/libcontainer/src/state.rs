//! What a runtime remembers about a container between two commands.
//!
//! berth-runc is not a daemon: `create`, `start`, `kill` and `delete` are separate
//! processes. What one leaves for the next is a directory `<root>/<id>/` holding
//! `state.json` (this module) and, until the container is started, `exec.fifo`.
//! The container's *status* is never stored: it is read from the world each time
//! (is init alive? is the fifo still there? is the cgroup frozen?), so it cannot go
//! stale when a process dies while nobody is watching.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::cgroups::{Cgroup, FreezerState};

/// Name of the state file inside a container's directory.
const STATE_FILE: &str = "state.json";
/// Name of the fifo init blocks on until `start` (see [`crate::container`]).
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.', \
         not '.' or '..' alone"
    )]
    InvalidId(String),
    #[error("container {0:?} does not exist; `berth-runc list` shows the ones that do")]
    NotFound(String),
    #[error("container {0:?} already exists; delete it first or choose another id")]
    Exists(String),
    #[error("container {id:?} is {status}; {hint}")]
    Transition {
        id: String,
        status: Status,
        hint: &'static str,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("state file {path} is corrupt ({source}); delete the container's directory by hand")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

// ANCHOR: status
/// The lifecycle of a container, as the OCI runtime spec names it (plus `paused`,
/// which runc adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still setting it up.
    Creating,
    /// Set up, and init is waiting for `start` before it runs the user's program.
    Created,
    /// The user's program is running.
    Running,
    /// Its cgroup is frozen.
    Paused,
    /// Init has exited.
    Stopped,
}
// ANCHOR_END: status

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(name)
    }
}

/// Everything later commands need to know about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// Absolute path of the bundle directory.
    pub bundle: PathBuf,
    /// Absolute path of the root filesystem on the host.
    pub rootfs: PathBuf,
    /// Init's pid, in the runtime's pid namespace.
    pub pid: i32,
    /// Init's start time in clock ticks since boot (`/proc/PID/stat` field 22):
    /// with the pid, it tells init apart from an unrelated process that was given
    /// the same pid after init died.
    pub pid_start_time: u64,
    /// When the container was created, RFC 3339 in UTC.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    pub cgroup: Option<Cgroup>,
    /// The spec the container was created from: `exec` and `delete` (poststop
    /// hooks) need it after `config.json` may have changed or gone.
    pub config: Spec,
}

/// Checks a container id the way runc does, so an id can never be a path trick.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    if id.is_empty() || id == "." || id == ".." || !id.chars().all(allowed) {
        return Err(StateError::InvalidId(id.to_owned()));
    }
    Ok(())
}

/// Where containers' directories live (`--root`, default `/run/berth/runc`).
#[derive(Debug, Clone)]
pub struct Root(pub PathBuf);

impl Root {
    /// The directory of container `id`, after checking the id.
    pub fn dir(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        Ok(self.0.join(id))
    }

    /// Creates the directory for a new container; fails if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf, StateError> {
        let dir = self.dir(id)?;
        fs::create_dir_all(&self.0).map_err(io_err("create", &self.0))?;
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(id.to_owned()))
            }
            result => result.map_err(io_err("create", &dir)),
        }?;
        Ok(dir)
    }

    pub fn load(&self, id: &str) -> Result<State, StateError> {
        let path = self.dir(id)?.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_owned()))
            }
            result => result.map_err(io_err("read", &path))?,
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Every container with a readable state file, sorted by id.
    pub fn list(&self) -> Result<Vec<State>, StateError> {
        let entries = match fs::read_dir(&self.0) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            result => result.map_err(io_err("list", &self.0))?,
        };
        let mut states: Vec<State> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter_map(|id| self.load(&id).ok())
            .collect();
        states.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(states)
    }

    /// Writes `state` atomically: a crash leaves the old state or the new, never half.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let dir = self.dir(&state.id)?;
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec(state).expect("state always serializes");
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(io_err("write", &path))
    }

    /// Removes a container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        let dir = self.dir(id)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            result => result.map_err(io_err("remove", &dir)),
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

// ANCHOR: derive_status
impl State {
    /// The container's status, read from the world rather than from the file.
    pub fn status(&self, root: &Root) -> Status {
        if !process_is_alive(self.pid, self.pid_start_time) {
            return Status::Stopped;
        }
        let fifo = root.0.join(&self.id).join(EXEC_FIFO);
        if fifo.exists() {
            return Status::Created;
        }
        match &self.cgroup {
            Some(cgroup) if cgroup.state().is_ok_and(|s| s == FreezerState::Frozen) => {
                Status::Paused
            }
            _ => Status::Running,
        }
    }
}
// ANCHOR_END: derive_status

/// Whether `pid` is still the process that was started at `start_time`, and not a
/// zombie (an exited process nobody has reaped yet is as good as stopped).
pub fn process_is_alive(pid: i32, start_time: u64) -> bool {
    match read_proc_stat(pid) {
        Some((state, started)) => state != 'Z' && state != 'X' && started == start_time,
        None => false,
    }
}

/// Init's start time, to be stored beside its pid.
pub fn process_start_time(pid: i32) -> Option<u64> {
    read_proc_stat(pid).map(|(_, started)| started)
}

/// `(state, starttime)` from `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted
/// from the *last* `)`.
fn read_proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // `after_name` starts at field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some((state, start_time))
}

/// Now, as RFC 3339 in UTC with nanoseconds, the way runc prints `created`.
pub fn rfc3339_now() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since_epoch.as_secs(), since_epoch.subsec_nanos())
}

/// Formats seconds since the epoch as a UTC date and time, using the civil-from-days
/// conversion (days since 1970-01-01 to year, month, day in the proleptic Gregorian
/// calendar), so berth needs no date library for one timestamp.
fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{nanos:09}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_867_200, 0), "2026-11-28T12:00:00.000000000Z");
        assert_eq!(rfc3339(4_102_444_799, 0), "2099-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn the_current_process_is_alive_and_a_wrong_start_time_is_not() {
        let pid = std::process::id() as i32;
        let started = process_start_time(pid).unwrap();
        assert!(process_is_alive(pid, started));
        assert!(!process_is_alive(pid, started + 1));
        assert!(!process_is_alive(i32::MAX, started));
    }

    proptest! {
        #[test]
        fn ids_that_pass_are_single_path_components(id in "[a-zA-Z0-9_+.\\-/]{0,12}") {
            if validate_id(&id).is_ok() {
                prop_assert!(!id.contains('/'));
                prop_assert!(id != "." && id != ".." && !id.is_empty());
                let joined = Path::new("/run/berth/runc").join(&id);
                prop_assert_eq!(joined.parent(), Some(Path::new("/run/berth/runc")));
            }
        }
    }

    #[test]
    fn bad_ids_are_named_in_the_error() {
        for id in ["", ".", "..", "a/b", "../x", "a b"] {
            let message = validate_id(id).unwrap_err().to_string();
            assert!(message.contains(&format!("{id:?}")), "{message}");
        }
        validate_id("web-1.v2_x+y").unwrap();
    }
}
