//! Namespaces: which views of the system a container gets of its own.
//!
//! The spec lists namespaces by type; each is either *new* (no `path`) or *joined*
//! (`path` names an existing one, such as `/proc/1234/ns/net`). New namespaces come
//! from the flags of the `clone` that creates init; joined ones are entered with
//! `setns`, by init itself, except the pid namespace, which only a process's
//! *children* can enter, so the runtime joins it just before cloning.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("namespace type {0:?} is listed twice in config.json; list each type once")]
    Duplicate(LinuxNamespaceType),
    #[error("linux.timeOffsets are set but no new time namespace is; add {{\"type\": \"time\"}} to linux.namespaces")]
    OffsetsWithoutTimeNamespace,
    #[error("unknown clock {0:?} in linux.timeOffsets; use monotonic or boottime")]
    UnknownClock(String),
    #[error("cannot open namespace {path}: {source}; is the process that owns it still running?")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot join the {kind} namespace {path}: {source}")]
    Join {
        kind: String,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("cannot write {path} ({value:?}): {source}")]
    IdMap {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("uidMappings/gidMappings are set but no new user namespace is; add {{\"type\": \"user\"}} to linux.namespaces")]
    MappingsWithoutUserNamespace,
}

/// A namespace to enter by path: its type and the file that names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
}

// ANCHOR: plan
/// What the spec's namespace list means for the process that sets them up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Flags for `clone`: the namespaces init starts in, brand new.
    pub clone_flags: CloneFlags,
    /// A new cgroup namespace is *not* in the clone flags: it must be created after
    /// the runtime has moved init into the container's cgroup, so that cgroup becomes
    /// the namespace's root. Init unshares it once it is there.
    pub new_cgroup: bool,
    /// A new time namespace is not in the clone flags either: `clone` cannot make one
    /// (its flag bit is taken by the exit signal), and its clock offsets must be set
    /// before any process is inside. The runtime makes it for its children first.
    pub new_time: bool,
    /// Existing namespaces to enter, user namespace first (it decides what the
    /// process may do in all the others).
    pub join: Vec<Join>,
}

impl Plan {
    pub fn from_spec(namespaces: &[LinuxNamespace]) -> Result<Plan, NamespaceError> {
        let mut plan = Plan {
            clone_flags: CloneFlags::empty(),
            new_cgroup: false,
            new_time: false,
            join: Vec::new(),
        };
        let mut seen = Vec::new();
        for ns in namespaces {
            let kind = ns.typ();
            if seen.contains(&kind) {
                return Err(NamespaceError::Duplicate(kind));
            }
            seen.push(kind);
            match ns.path() {
                Some(path) => plan.join.push(Join {
                    kind,
                    path: path.clone(),
                }),
                None if kind == LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                None if kind == LinuxNamespaceType::Time => plan.new_time = true,
                None => plan.clone_flags |= flag(kind),
            }
        }
        plan.join
            .sort_by_key(|join| join.kind != LinuxNamespaceType::User);
        Ok(plan)
    }

    pub fn new_user_namespace(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
    }

    /// Whether init ends up in a pid namespace other than the runtime's (new or joined).
    pub fn joins_pid_namespace(&self) -> Option<&Join> {
        self.join
            .iter()
            .find(|join| join.kind == LinuxNamespaceType::Pid)
    }
}
// ANCHOR_END: plan

/// `CLONE_NEWTIME`, which nix does not name: usable with `unshare` and `setns`, not
/// with `clone` (where 0x80 is part of the exit signal).
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(0x80);

// ANCHOR: time_offsets
/// The contents of `/proc/self/timens_offsets` for the spec's `linux.timeOffsets`:
/// one `CLOCK SECONDS NANOSECONDS` line per clock, shifting what the container's
/// `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` read.
pub fn time_offsets(linux: &Linux, plan: &Plan) -> Result<Option<String>, NamespaceError> {
    let offsets = linux.time_offsets().clone().unwrap_or_default();
    if !plan.new_time {
        return match offsets.is_empty() {
            true => Ok(None),
            false => Err(NamespaceError::OffsetsWithoutTimeNamespace),
        };
    }
    let mut clocks: Vec<_> = offsets.into_iter().collect();
    clocks.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = String::new();
    for (clock, offset) in clocks {
        if clock != "monotonic" && clock != "boottime" {
            return Err(NamespaceError::UnknownClock(clock));
        }
        let secs = offset.secs().unwrap_or(0);
        let nanos = offset.nanosecs().unwrap_or(0);
        text.push_str(&format!("{clock} {secs} {nanos}\n"));
    }
    Ok(Some(text))
}
// ANCHOR_END: time_offsets

pub fn flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CLONE_NEWTIME,
    }
}

/// Enters the namespace `join.path` names.
pub fn enter(join: &Join) -> Result<(), NamespaceError> {
    let file = fs::File::open(&join.path).map_err(|source| NamespaceError::Open {
        path: join.path.clone(),
        source,
    })?;
    setns(file.as_fd(), flag(join.kind)).map_err(|source| NamespaceError::Join {
        kind: join.kind.to_string(),
        path: join.path.clone(),
        source,
    })
}

/// The namespaces of a running process, as joins: what `exec` enters. The user
/// namespace is included only if it differs from ours (entering one's own user
/// namespace is an error).
pub fn of_process(pid: i32) -> Vec<Join> {
    let ns_path = |name: &str| PathBuf::from(format!("/proc/{pid}/ns/{name}"));
    let same_as_ours = |name: &str| {
        let theirs = fs::read_link(ns_path(name)).ok();
        theirs.is_some() && theirs == fs::read_link(format!("/proc/self/ns/{name}")).ok()
    };
    let kinds = [
        (LinuxNamespaceType::User, "user"),
        (LinuxNamespaceType::Ipc, "ipc"),
        (LinuxNamespaceType::Uts, "uts"),
        (LinuxNamespaceType::Network, "net"),
        (LinuxNamespaceType::Pid, "pid"),
        (LinuxNamespaceType::Cgroup, "cgroup"),
        (LinuxNamespaceType::Time, "time"),
        (LinuxNamespaceType::Mount, "mnt"),
    ];
    kinds
        .into_iter()
        .filter(|(_, name)| !same_as_ours(name))
        .map(|(kind, name)| Join {
            kind,
            path: ns_path(name),
        })
        .collect()
}

// ANCHOR: id_maps
/// Writes init's uid and gid maps: which host ids the ids inside its new user
/// namespace stand for. Only a process outside the namespace may write them, so the
/// runtime does it while the cloned child waits, before it even execs init (see
/// [`crate::process::Child::maps_written`]).
pub fn write_id_maps(
    pid: Pid,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    write_map(&format!("/proc/{pid}/uid_map"), uids)?;
    write_map(&format!("/proc/{pid}/gid_map"), gids)
}

fn write_map(path: &str, mappings: &[LinuxIdMapping]) -> Result<(), NamespaceError> {
    if mappings.is_empty() {
        return Ok(());
    }
    let value: String = mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    // The kernel takes the whole map in one write() or not at all.
    fs::write(path, &value).map_err(|source| NamespaceError::IdMap {
        path: Path::new(path).to_owned(),
        value,
        source,
    })
}
// ANCHOR_END: id_maps

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(kind: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let builder = LinuxNamespaceBuilder::default().typ(kind);
        match path {
            Some(path) => builder.path(path).build().unwrap(),
            None => builder.build().unwrap(),
        }
    }

    #[test]
    fn new_namespaces_become_clone_flags_except_cgroup() {
        let plan = Plan::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Cgroup, None),
            ns(LinuxNamespaceType::Network, Some("/proc/1/ns/net")),
            ns(LinuxNamespaceType::User, Some("/proc/1/ns/user")),
        ])
        .unwrap();
        assert_eq!(
            plan.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
        );
        assert!(plan.new_cgroup);
        let kinds: Vec<_> = plan.join.iter().map(|j| j.kind).collect();
        assert_eq!(
            kinds,
            [LinuxNamespaceType::User, LinuxNamespaceType::Network],
            "user first"
        );
    }

    #[test]
    fn a_new_time_namespace_is_made_apart_with_its_offsets() {
        let plan = Plan::from_spec(&[ns(LinuxNamespaceType::Time, None)]).unwrap();
        assert!(plan.new_time);
        assert_eq!(plan.clone_flags, CloneFlags::empty());
        let linux: Linux = serde_json::from_value(serde_json::json!({
            "timeOffsets": { "boottime": { "secs": 86400 }, "monotonic": { "secs": -5, "nanosecs": 7 } }
        }))
        .unwrap();
        let text = time_offsets(&linux, &plan).unwrap().unwrap();
        assert_eq!(text, "boottime 86400 0\nmonotonic -5 7\n");
        let no_time = Plan::from_spec(&[]).unwrap();
        assert!(time_offsets(&linux, &no_time)
            .unwrap_err()
            .to_string()
            .contains("no new time namespace"));
        let bad: Linux = serde_json::from_value(
            serde_json::json!({ "timeOffsets": { "realtime": { "secs": 1 } } }),
        )
        .unwrap();
        assert!(time_offsets(&bad, &plan)
            .unwrap_err()
            .to_string()
            .contains("\"realtime\""));
    }

    #[test]
    fn duplicates_are_refused_with_a_reason() {
        let twice = [
            ns(LinuxNamespaceType::Uts, None),
            ns(LinuxNamespaceType::Uts, None),
        ];
        assert!(Plan::from_spec(&twice)
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
    }

    #[test]
    fn our_own_namespaces_are_not_joined_by_exec() {
        let joins = of_process(std::process::id() as i32);
        assert!(joins.is_empty(), "{joins:?}");
    }
}
