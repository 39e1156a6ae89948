//! # Control groups: a container's slice of the machine
//!
//! berth-runc calls this module to give each container its own cgroup: create it, write the
//! limits from `linux.resources`, move the container's init into it, and later freeze, list,
//! measure and remove it (`pause`, `ps`, `kill --all`, `events --stats`, `delete`).
//! It works on the three layouts a Linux host can have: cgroup v1, cgroup v2, and hybrid.
//!
//! # Layout
//! - [`hierarchy`]: where the hierarchies are mounted (read from `/proc/self/mountinfo`) and
//!   which cgroup a process is in (`/proc/PID/cgroup`).
//! - [`path`]: the rules that turn `linux.cgroupsPath` into a path inside each hierarchy.
//! - [`cgroup`]: [`Cgroup`], one container's cgroup, and its lifecycle: create, apply, join,
//!   list, destroy. It is what berth-runc stores in the container's state file.
//! - `plan`, `v1`, `v2`: turning [`LinuxResources`](oci_spec::runtime::LinuxResources) into
//!   a list of "write this value to that file", one planner per cgroup version. Planning is
//!   separate from writing so tests can check every file and value without root.
//! - `devices_bpf`: device rules on v2, compiled into an eBPF program and attached to the
//!   cgroup with `bpf(2)` (v1 has a `devices` controller that takes the rules as text).
//! - `freezer`: [`FreezerState`]; pausing and resuming every process of a container at once.
//! - `stats`: [`Stats`], the numbers `runc events --stats` reports.
//! - `fs`: the only code that reads and writes cgroup files, with errors that name them.
//!
//! # The three layouts, in one paragraph each
//! **v1**: one hierarchy per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu`, …);
//! a container has one directory in each, and each directory holds that controller's files.
//!
//! **v2**: one hierarchy (`/sys/fs/cgroup` is `cgroup2`); a container has one directory holding
//! every controller's files, once the parent has enabled those controllers for its children.
//!
//! **hybrid**: v1 hierarchies for the controllers plus a v2 hierarchy (often
//! `/sys/fs/cgroup/unified`) that controls nothing and only tracks membership. Like runc, berth
//! writes limits to v1 and also puts the container in the v2 hierarchy.
//!
//! A real engine would also offer the systemd driver (asking systemd over D-Bus to create a
//! scope); berth doesn't because the cgroupfs driver is the one that teaches how cgroups work,
//! and it is what runc uses when no `--systemd-cgroup` flag is given.

pub mod cgroup;
mod devices_bpf;
mod freezer;
mod fs;
pub mod hierarchy;
pub mod path;
mod plan;
mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod root_tests;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use cgroup::{Cgroup, Place};
pub use freezer::FreezerState;
pub use hierarchy::{Hierarchy, Membership, Mount};
pub use path::CgroupsPath;
pub use stats::{CpuStats, CpuUsage, MemoryStats, MemoryUsage, PidsStats, Stats};
pub use v2::{blkio_weight_to_io_weight, cpu_shares_to_weight};

/// How long `freeze()` and `thaw()` wait for the kernel to reach the asked state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `destroy()` keeps retrying `rmdir` while the container's last processes exit.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the bounded waits above look again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Everything that can go wrong with a container's cgroup.
///
/// Each message names the file or value involved and says what to do about it, because the
/// person reading it is usually looking at a failed `berth-runc create`.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}; berth needs procfs mounted at /proc")]
    Proc { path: PathBuf, source: io::Error },

    #[error(
        "cannot understand this line of {file}: {line:?}; \
         the kernel's format changed or the file is not what berth expects"
    )]
    Malformed { file: String, line: String },

    #[error(
        "no cgroup hierarchy with controllers is mounted (nothing of type cgroup or cgroup2 \
         in /proc/self/mountinfo); mount cgroup2 at /sys/fs/cgroup or the v1 controllers under it"
    )]
    NotMounted,

    #[error(
        "cgroupsPath {path:?} is in the systemd form slice:prefix:name, but berth only has the \
         cgroupfs driver (systemd cgroup driver not supported); use a path like /berth/ID"
    )]
    SystemdPath { path: String },

    #[error("cgroupsPath {path:?} is not usable: {reason}; use a path like /berth/ID")]
    InvalidPath { path: String, reason: &'static str },

    #[error(
        "berth runs in cgroup {own} of the {hierarchy} hierarchy, which is outside the part \
         mounted at {mountpoint} (root {root}); use an absolute cgroupsPath like /berth/ID"
    )]
    OutsideMount {
        hierarchy: String,
        own: PathBuf,
        mountpoint: PathBuf,
        root: PathBuf,
    },

    #[error(
        "/proc/self/cgroup lists no cgroup for the {hierarchy} hierarchy, so a relative \
         cgroupsPath has nothing to be relative to; use an absolute cgroupsPath like /berth/ID"
    )]
    NotAMember { hierarchy: String },

    #[error(
        "cannot create cgroup directory {path}: {source}; \
         berth-runc must run as root with cgroupfs mounted read-write"
    )]
    Create { path: PathBuf, source: io::Error },

    #[error("cannot write {value:?} to {path}: {source}; {hint}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
        hint: String,
    },

    #[error("cannot read {path}: {source}; was the cgroup removed while in use?")]
    Read { path: PathBuf, source: io::Error },

    #[error("{path} holds {content:?}, not {expected}")]
    Parse {
        path: PathBuf,
        content: String,
        expected: &'static str,
    },

    #[error("{setting} = {value} is invalid: {reason}; fix it in config.json")]
    InvalidValue {
        setting: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error(
        "{setting} cannot be applied on a cgroup {version} host: {reason}; \
         remove it from config.json"
    )]
    Unsupported {
        setting: &'static str,
        version: &'static str,
        reason: &'static str,
    },

    #[error(
        "the container's cgroup has no {controller} hierarchy (it knows: {known}); \
         this host does not mount the {controller} controller"
    )]
    NoController { controller: String, known: String },

    #[error(
        "{path} did not become {target} within {waited:?}; a process may be stuck in \
         uninterruptible I/O (state D in ps); try again, or kill the container"
    )]
    FreezeTimeout {
        path: PathBuf,
        target: FreezerState,
        waited: Duration,
    },

    #[error(
        "cannot remove cgroup {path}: it still holds processes {pids:?} after {waited:?}; \
         kill them first (berth-runc kill --all ID KILL), then delete again"
    )]
    Busy {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },

    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },

    #[error("cannot enforce linux.resources.devices on cgroup v2: {0}")]
    Devices(#[from] devices_bpf::DevicesBpfError),
}
