//! Reading and writing cgroup files: the only code in [`cgroups`](super) that touches them.
//!
//! cgroupfs looks like ordinary files but behaves like a system call interface: each
//! `write(2)` is parsed on its own, and a missing file means a missing controller. Keeping the
//! file access in one place keeps those rules, and the error messages, in one place too.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{CgroupError, POLL_INTERVAL};

/// Writes `value` to the cgroup file `path`, which must already exist.
///
/// The file is never created: in cgroupfs only the kernel creates files, so a missing one means
/// the controller is not there, and the caller's `hint` should say so.
pub(crate) fn write(
    path: &Path,
    value: &str,
    hint: impl FnOnce(&io::Error) -> String,
) -> Result<(), CgroupError> {
    write_raw(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        hint: hint(&source),
        source,
    })
}

fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    // One write(2) per value: the kernel parses each write separately, so a value split
    // across two writes would be two (wrong) values. Values here are a few bytes, which
    // `write_all` hands to the kernel in a single call.
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(value.as_bytes())?;
    tracing::debug!(path = %path.display(), value, "cgroup write");
    Ok(())
}

/// Reads a whole cgroup file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a cgroup file that may legitimately be absent (a controller that is not enabled).
pub(crate) fn read_if_present(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses a cgroup number; `max` (v2's "no limit") reads as `u64::MAX`.
pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    let text = text.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.to_string(),
        expected: "a number or \"max\"",
    })
}

/// Reads a numeric cgroup file that may be absent; absent reads as `None`.
pub(crate) fn read_u64_if_present(path: &Path) -> Result<Option<u64>, CgroupError> {
    read_if_present(path)?
        .map(|text| parse_u64(path, &text))
        .transpose()
}

/// Finds `key`'s value in a flat-keyed file such as v2's `cpu.stat` (`usage_usec 1234`).
pub(crate) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Some`, or `timeout` has passed.
///
/// Every wait in this module goes through here so that none can hang a `berth-runc` verb.
/// A real engine would sleep in `poll(2)` on the file (the kernel wakes it when `cgroup.events`
/// changes); berth polls because the waits are milliseconds long and a loop is easier to read.
pub(crate) fn wait_for<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, CgroupError>,
) -> Result<Option<T>, CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(done) = check()? {
            return Ok(Some(done));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_reads_as_the_largest_number() {
        let p = Path::new("/x/pids.max");
        assert_eq!(parse_u64(p, "max\n").unwrap(), u64::MAX);
        assert_eq!(parse_u64(p, "42\n").unwrap(), 42);
        assert!(parse_u64(p, "lots").is_err());
    }

    #[test]
    fn keyed_values_are_found_by_key() {
        let text = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(keyed_value(text, "user_usec"), Some(1000));
        assert_eq!(keyed_value(text, "nr_periods"), None);
    }

    #[test]
    fn writes_never_create_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("memory.max");
        let err = write(&missing, "100", |_| "hint".into()).unwrap_err();
        assert!(err.to_string().contains("memory.max"), "{err}");
        assert!(!missing.exists());
    }

    #[test]
    fn waits_are_bounded() {
        let start = Instant::now();
        let got: Option<()> = wait_for(Duration::from_millis(50), || Ok(None)).unwrap();
        assert!(got.is_none());
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
