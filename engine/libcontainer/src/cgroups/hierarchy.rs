//! Where the cgroup hierarchies are mounted, and which cgroup a process is in.
//!
//! berth reads the layout (v1, v2 or hybrid) from `/proc/self/mountinfo` instead of assuming
//! `/sys/fs/cgroup/...`, because distributions, CI runners and containers mount cgroups in
//! different places and shapes. [`Cgroup::place`](super::Cgroup::place) combines the
//! [`Hierarchy`] with the runtime's own [`Membership`] to decide where a container goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::CgroupError;

/// The v1 controllers berth recognises in a `cgroup` mount's options. Named hierarchies
/// (`name=systemd`) are recognised by their prefix: they hold no controller, only membership.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mountpoint: PathBuf,
    /// Which cgroup of the hierarchy appears at the mountpoint (mountinfo's fourth field):
    /// `/` on a host; deeper when a container manager bind-mounts only its own subtree.
    pub root: PathBuf,
}

/// The cgroup layout of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1 only: controller name (`memory`, `name=systemd`, …) → its mount. Controllers
    /// mounted together (`cpu,cpuacct`) map to the same mount.
    V1 {
        controllers: BTreeMap<String, Mount>,
    },
    /// cgroup v2 only: one hierarchy for every controller.
    V2 { unified: Mount },
    /// v1 controllers, plus a v2 hierarchy that holds no controller and tracks membership.
    Hybrid {
        controllers: BTreeMap<String, Mount>,
        unified: Mount,
    },
}

impl Hierarchy {
    /// The layout of the host this process runs on.
    pub fn detect() -> Result<Self, CgroupError> {
        Self::from_mountinfo(&read_proc(Path::new("/proc/self/mountinfo"))?)
    }

    // ANCHOR: detect_hierarchy
    /// Reads the layout from the text of a `/proc/PID/mountinfo` file.
    ///
    /// Each line is
    /// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS`.
    /// A `cgroup` line is a v1 hierarchy whose controllers are listed in its super options;
    /// a `cgroup2` line is the unified hierarchy. Which of them exist decides the layout.
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut controllers = BTreeMap::new();
        let mut unified = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let fields = MountLine::parse(line)?;
            match fields.fstype {
                "cgroup" => {
                    for controller in v1_controllers(fields.super_options) {
                        // A hierarchy can be mounted twice (a bind mount elsewhere):
                        // the first mount listed is the original.
                        controllers
                            .entry(controller)
                            .or_insert_with(|| fields.mount());
                    }
                }
                "cgroup2" if unified.is_none() => unified = Some(fields.mount()),
                _ => {}
            }
        }
        // A v2 host may keep systemd's controller-less `name=systemd` v1 hierarchy for old
        // containers; it limits nothing, so only real v1 controllers make a host v1 or hybrid.
        let has_v1_controllers = controllers.keys().any(|c| !c.starts_with("name="));
        match (has_v1_controllers, unified) {
            (true, None) => Ok(Hierarchy::V1 { controllers }),
            (true, Some(unified)) => Ok(Hierarchy::Hybrid {
                controllers,
                unified,
            }),
            (false, Some(unified)) => Ok(Hierarchy::V2 { unified }),
            (false, None) => Err(CgroupError::NotMounted),
        }
    }
    // ANCHOR_END: detect_hierarchy

    /// The v1 hierarchies (empty on a v2 host).
    pub fn v1(&self) -> Option<&BTreeMap<String, Mount>> {
        match self {
            Hierarchy::V1 { controllers } | Hierarchy::Hybrid { controllers, .. } => {
                Some(controllers)
            }
            Hierarchy::V2 { .. } => None,
        }
    }

    /// The cgroup2 hierarchy, if mounted.
    pub fn unified(&self) -> Option<&Mount> {
        match self {
            Hierarchy::V2 { unified } | Hierarchy::Hybrid { unified, .. } => Some(unified),
            Hierarchy::V1 { .. } => None,
        }
    }
}

/// The fields of one mountinfo line that berth needs.
struct MountLine<'a> {
    root: &'a str,
    mountpoint: &'a str,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    fn parse(line: &'a str) -> Result<Self, CgroupError> {
        let malformed = || CgroupError::Malformed {
            file: "mountinfo".into(),
            line: line.to_string(),
        };
        // The optional fields before " - " vary in number, so split there first.
        let (before, after) = line.split_once(" - ").ok_or_else(malformed)?;
        let before: Vec<&str> = before.split(' ').collect();
        let after: Vec<&str> = after.split(' ').collect();
        match (before.get(3), before.get(4), after.first(), after.get(2)) {
            (Some(root), Some(mountpoint), Some(fstype), Some(super_options)) => Ok(MountLine {
                root,
                mountpoint,
                fstype,
                super_options,
            }),
            _ => Err(malformed()),
        }
    }

    fn mount(&self) -> Mount {
        Mount {
            mountpoint: PathBuf::from(unescape(self.mountpoint)),
            root: PathBuf::from(unescape(self.root)),
        }
    }
}

/// The controllers named in a v1 mount's super options (`rw,cpu,cpuacct` → cpu, cpuacct).
fn v1_controllers(super_options: &str) -> impl Iterator<Item = String> + '_ {
    super_options
        .split(',')
        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
        .map(str::to_string)
}

/// Undoes mountinfo's octal escapes (`\040` is a space) in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        match (bytes[i], octal.and_then(|d| u8::from_str_radix(d, 8).ok())) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which cgroup a process is in, in each hierarchy: a parsed `/proc/PID/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// v1 controller (or `name=…` hierarchy) → cgroup path, e.g. `memory` → `/berth/web`.
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup in the unified hierarchy (the `0::PATH` line), if the kernel lists one.
    pub v2: Option<PathBuf>,
}

impl Membership {
    /// The cgroups of the calling process.
    pub fn of_self() -> Result<Self, CgroupError> {
        Self::parse(&read_proc(Path::new("/proc/self/cgroup"))?)
    }

    /// The cgroups of process `pid`.
    pub fn of_process(pid: Pid) -> Result<Self, CgroupError> {
        Self::parse(&read_proc(&PathBuf::from(format!("/proc/{pid}/cgroup")))?)
    }

    /// Parses the text of a `/proc/PID/cgroup` file: lines `ID:CONTROLLERS:PATH`, where
    /// hierarchy 0 with no controllers is the unified one.
    pub fn parse(text: &str) -> Result<Self, CgroupError> {
        let mut membership = Membership::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(CgroupError::Malformed {
                    file: "/proc/PID/cgroup".into(),
                    line: line.to_string(),
                });
            };
            if id == "0" && controllers.is_empty() {
                membership.v2 = Some(PathBuf::from(path));
                continue;
            }
            for controller in controllers.split(',').filter(|c| !c.is_empty()) {
                membership
                    .v1
                    .insert(controller.to_string(), PathBuf::from(path));
            }
        }
        Ok(membership)
    }
}

fn read_proc(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Proc {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's layout, as `cat /proc/self/mountinfo | grep cgroup` shows it.
    const HYBRID: &str = "\
25 1 0:23 / / rw,relatime - overlay overlay rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host that boots with cgroup v1 only (co-mounted cpu,cpuacct; optional fields).
    const V1: &str = "\
24 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
29 24 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
";

    /// A modern systemd host: cgroup2 at /sys/fs/cgroup.
    const V2: &str = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn mount(mountpoint: &str) -> Mount {
        Mount {
            mountpoint: mountpoint.into(),
            root: "/".into(),
        }
    }

    #[test]
    fn detects_hybrid_with_v1_controllers_and_unified_mount() {
        let Hierarchy::Hybrid {
            controllers,
            unified,
        } = Hierarchy::from_mountinfo(HYBRID).unwrap()
        else {
            panic!("expected hybrid");
        };
        assert_eq!(unified, mount("/sys/fs/cgroup/unified"));
        assert_eq!(
            controllers.keys().collect::<Vec<_>>(),
            ["cpu", "cpuacct", "memory", "name=systemd"]
        );
        assert_eq!(controllers["memory"], mount("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn detects_v1_with_co_mounted_controllers() {
        let Hierarchy::V1 { controllers } = Hierarchy::from_mountinfo(V1).unwrap() else {
            panic!("expected v1");
        };
        assert_eq!(controllers["cpu"], mount("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(controllers["cpuacct"], controllers["cpu"]);
        assert_eq!(controllers["name=systemd"], mount("/sys/fs/cgroup/systemd"));
        assert!(!controllers.contains_key("xattr"));
    }

    #[test]
    fn detects_v2() {
        assert_eq!(
            Hierarchy::from_mountinfo(V2).unwrap(),
            Hierarchy::V2 {
                unified: mount("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn a_lone_name_systemd_hierarchy_does_not_make_a_v2_host_hybrid() {
        let text =
            format!("{V2}30 29 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n");
        assert!(matches!(
            Hierarchy::from_mountinfo(&text).unwrap(),
            Hierarchy::V2 { .. }
        ));
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let text = "25 1 0:23 / / rw - overlay overlay rw\n";
        assert!(matches!(
            Hierarchy::from_mountinfo(text),
            Err(CgroupError::NotMounted)
        ));
    }

    #[test]
    fn mount_root_and_escaped_paths_are_kept() {
        let text = "41 31 0:38 /docker/abc /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        let Hierarchy::V2 { unified } = Hierarchy::from_mountinfo(text).unwrap() else {
            panic!("expected v2");
        };
        assert_eq!(unified.mountpoint, Path::new("/sys/fs/my cgroup"));
        assert_eq!(unified.root, Path::new("/docker/abc"));
    }

    #[test]
    fn a_garbled_line_is_reported() {
        let err = Hierarchy::from_mountinfo("31 23 0:28 / /sys\n").unwrap_err();
        assert!(err.to_string().contains("31 23 0:28"), "{err}");
    }

    #[test]
    fn membership_parses_v1_named_and_unified_lines() {
        let text =
            "9:name=systemd:/\n2:cpu,cpuacct:/berth/web\n4:memory:/process_api/76898a\n0::/\n";
        let m = Membership::parse(text).unwrap();
        assert_eq!(m.v1["cpu"], Path::new("/berth/web"));
        assert_eq!(m.v1["cpuacct"], Path::new("/berth/web"));
        assert_eq!(m.v1["memory"], Path::new("/process_api/76898a"));
        assert_eq!(m.v1["name=systemd"], Path::new("/"));
        assert_eq!(m.v2.as_deref(), Some(Path::new("/")));
    }

    #[test]
    fn this_hosts_own_files_parse() {
        // Whatever this machine is, its own procfs must be readable by the code above.
        Hierarchy::detect().unwrap();
        Membership::of_self().unwrap();
    }
}
