//! Freezing and thawing every process of a container at once.
//!
//! `berth-runc pause`/`resume` use it, and so does `kill --all`: a frozen container cannot
//! fork new processes while its process list is being read and killed. v1 has a `freezer`
//! controller (`freezer.state`); v2 builds freezing into every cgroup (`cgroup.freeze`, with
//! the outcome in `cgroup.events`). Both freeze asynchronously, so both need a bounded wait.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{fs, CgroupError, FREEZE_TIMEOUT};

/// Whether a container's processes may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    /// Running normally.
    Thawed,
    /// Asked to freeze; some processes have not stopped yet.
    Freezing,
    /// Every process is stopped (berth-runc reports the container as `paused`).
    Frozen,
}

impl fmt::Display for FreezerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FreezerState::Thawed => "thawed",
            FreezerState::Freezing => "freezing",
            FreezerState::Frozen => "frozen",
        })
    }
}

fn hint(_: &std::io::Error) -> String {
    "the container's cgroup may have been removed; check `berth-runc state ID`".to_string()
}

/// Freezes (`Frozen`) or thaws (`Thawed`) the v1 freezer cgroup `dir`, waiting until done.
pub(crate) fn set_v1(dir: &Path, target: FreezerState) -> Result<(), CgroupError> {
    let file = dir.join("freezer.state");
    let word = if target == FreezerState::Frozen {
        "FROZEN"
    } else {
        "THAWED"
    };
    let reached = fs::wait_for(FREEZE_TIMEOUT, || {
        // Writing again on every round is how v1 finishes a freeze: a process that forked
        // mid-freeze can leave the cgroup in FREEZING, and a new write freezes the latecomers.
        fs::write(&file, word, hint)?;
        Ok((state_v1(dir)? == target).then_some(()))
    })?;
    if reached.is_none() {
        give_up(target, || fs::write(&file, "THAWED", hint));
        return Err(timeout(&file, target));
    }
    Ok(())
}

/// The state of the v1 freezer cgroup `dir`.
pub(crate) fn state_v1(dir: &Path) -> Result<FreezerState, CgroupError> {
    let file = dir.join("freezer.state");
    let text = fs::read(&file)?;
    match text.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        other => Err(CgroupError::Parse {
            path: file,
            content: other.to_string(),
            expected: "THAWED, FREEZING or FROZEN",
        }),
    }
}

/// Freezes or thaws the v2 cgroup `dir`, waiting until `cgroup.events` says it is done.
pub(crate) fn set_v2(dir: &Path, target: FreezerState) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.freeze");
    let value = if target == FreezerState::Frozen {
        "1"
    } else {
        "0"
    };
    // v2 keeps trying on its own once asked, so one write is enough.
    fs::write(&file, value, hint)?;
    let reached = fs::wait_for(FREEZE_TIMEOUT, || {
        Ok((state_v2(dir)? == target).then_some(()))
    })?;
    if reached.is_none() {
        give_up(target, || fs::write(&file, "0", hint));
        return Err(timeout(&file, target));
    }
    Ok(())
}

/// The state of the v2 cgroup `dir`: what was asked (`cgroup.freeze`) and what the kernel
/// reached (`frozen` in `cgroup.events`).
pub(crate) fn state_v2(dir: &Path) -> Result<FreezerState, CgroupError> {
    let events = fs::read(&dir.join("cgroup.events"))?;
    if fs::keyed_value(&events, "frozen") == Some(1) {
        return Ok(FreezerState::Frozen);
    }
    let asked = fs::read(&dir.join("cgroup.freeze"))?;
    Ok(if asked.trim() == "1" {
        FreezerState::Freezing
    } else {
        FreezerState::Thawed
    })
}

/// A freeze that did not finish is undone, so the container is not left half stopped.
fn give_up(target: FreezerState, thaw: impl FnOnce() -> Result<(), CgroupError>) {
    if target == FreezerState::Frozen {
        if let Err(e) = thaw() {
            tracing::warn!("could not undo an unfinished freeze: {e}");
        }
    }
}

fn timeout(file: &Path, target: FreezerState) -> CgroupError {
    CgroupError::FreezeTimeout {
        path: file.to_path_buf(),
        target,
        waited: FREEZE_TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_state_combines_the_request_and_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let set = |freeze: &str, frozen: &str| {
            std::fs::write(dir.path().join("cgroup.freeze"), freeze).unwrap();
            std::fs::write(
                dir.path().join("cgroup.events"),
                format!("populated 1\nfrozen {frozen}\n"),
            )
            .unwrap();
            state_v2(dir.path()).unwrap()
        };
        assert_eq!(set("0", "0"), FreezerState::Thawed);
        assert_eq!(set("1", "0"), FreezerState::Freezing);
        assert_eq!(set("1", "1"), FreezerState::Frozen);
    }

    #[test]
    fn v1_state_reads_the_kernels_words() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("freezer.state"), "FREEZING\n").unwrap();
        assert_eq!(state_v1(dir.path()).unwrap(), FreezerState::Freezing);
        std::fs::write(dir.path().join("freezer.state"), "MELTED\n").unwrap();
        assert!(state_v1(dir.path()).is_err());
    }

    #[test]
    fn v1_thaw_in_a_fake_tree_finishes_at_once() {
        // A plain file keeps what is written, as a freezer that obeys instantly would.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("freezer.state"), "FROZEN\n").unwrap();
        set_v1(dir.path(), FreezerState::Thawed).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("freezer.state")).unwrap(),
            "THAWED"
        );
    }
}
