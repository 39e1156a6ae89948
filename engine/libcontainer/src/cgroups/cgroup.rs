//! [`Cgroup`]: one container's cgroup, in every hierarchy of the host, and its lifecycle.
//!
//! berth-runc makes one at `create` from `linux.cgroupsPath`, stores it in the container's
//! state file, and reloads it for every later verb (`kill --all`, `ps`, `pause`, `update`,
//! `events --stats`, `delete`). The paths are resolved once, at `create`, because a relative
//! `cgroupsPath` depends on the cgroup of the runtime process that happens to run it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::freezer::{self, FreezerState};
use super::hierarchy::{Hierarchy, Membership, Mount};
use super::path::CgroupsPath;
use super::plan::{Plan, Probe, Write};
use super::stats::{self, Stats};
use super::{devices_bpf, fs, v1, v2, CgroupError, REMOVE_TIMEOUT};

/// Where a container's cgroup sits in one hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// The hierarchy's mountpoint, e.g. `/sys/fs/cgroup/memory`.
    pub mountpoint: PathBuf,
    /// The cgroup below it, e.g. `berth/web`; never empty (a container never takes the root).
    pub path: PathBuf,
}

impl Place {
    /// The cgroup's directory.
    pub fn dir(&self) -> PathBuf {
        self.mountpoint.join(&self.path)
    }

    /// Every directory from just below the mountpoint down to the cgroup's own, top first.
    fn levels(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let mut dir = self.mountpoint.clone();
        self.path.components().map(move |part| {
            dir.push(part);
            dir.clone()
        })
    }
}

/// One container's cgroup: its directory in each hierarchy of the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// v1 controller (or `name=systemd`) → place. Empty on a pure v2 host; controllers
    /// mounted together share a place.
    v1: BTreeMap<String, Place>,
    /// The place in the cgroup2 hierarchy. It holds the limits on a v2 host; on a hybrid host
    /// it only records membership (and offers a freezer when v1 mounts none).
    v2: Option<Place>,
}

impl Cgroup {
    /// The cgroup for container `container_id` on this host, following `linux.cgroupsPath`
    /// (see [`CgroupsPath`] for the rules). Nothing is created yet: call [`create`](Self::create).
    pub fn for_container(
        cgroups_path: Option<&Path>,
        container_id: &str,
    ) -> Result<Self, CgroupError> {
        let rule = CgroupsPath::from_spec(cgroups_path, container_id)?;
        Self::place(&Hierarchy::detect()?, &Membership::of_self()?, &rule)
    }

    /// Places the cgroup in every hierarchy of `hierarchy`. `own` is the runtime's own
    /// membership, which a relative path is relative to.
    pub fn place(
        hierarchy: &Hierarchy,
        own: &Membership,
        rule: &CgroupsPath,
    ) -> Result<Self, CgroupError> {
        let mut v1 = BTreeMap::new();
        for (controller, mount) in hierarchy.v1().into_iter().flatten() {
            let place = place_in(controller, mount, own.v1.get(controller), rule)?;
            v1.insert(controller.clone(), place);
        }
        let v2 = hierarchy
            .unified()
            .map(|mount| place_in("cgroup2", mount, own.v2.as_ref(), rule))
            .transpose()?;
        Ok(Cgroup { v1, v2 })
    }

    /// The cgroup's directory per hierarchy, as runc's state file lists them: v1 controller
    /// name → directory, and `""` → the directory in the cgroup2 hierarchy.
    pub fn paths(&self) -> BTreeMap<String, PathBuf> {
        let mut paths: BTreeMap<String, PathBuf> =
            self.v1.iter().map(|(c, p)| (c.clone(), p.dir())).collect();
        if let Some(place) = &self.v2 {
            paths.insert(String::new(), place.dir());
        }
        paths
    }

    /// Makes the cgroup's directory (and missing parents) in every hierarchy.
    ///
    /// Two kernel rules shape this: a new v1 cpuset cgroup starts with no CPUs and no memory
    /// nodes, and no process can join it until they are set, so they are copied from the
    /// parent; and a v2 cgroup has only the controllers its parent enabled for children, so
    /// every ancestor enables them first (see `enable_controllers` in `v2.rs`).
    pub fn create(&self) -> Result<(), CgroupError> {
        for (controller, place) in &self.v1 {
            for level in place.levels() {
                make_dir(&level)?;
                if controller == "cpuset" {
                    inherit_cpuset(&level)?;
                }
            }
        }
        if let Some(place) = &self.v2 {
            for level in place.levels() {
                // On a hybrid host the v2 hierarchy controls nothing: no controllers to enable.
                if self.is_pure_v2() {
                    v2::enable_controllers(level.parent().unwrap_or(&place.mountpoint))?;
                }
                make_dir(&level)?;
            }
        }
        Ok(())
    }

    /// Writes the limits of `resources` into the cgroup's files.
    ///
    /// Settings this host cannot apply are logged as warnings (for example network classes on
    /// cgroup v2); settings it refuses are errors. On a pure v2 host, device rules are
    /// enforced by an eBPF program attached to the cgroup after the file writes.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let plan = self.plan(resources)?;
        for skipped in &plan.skipped {
            tracing::warn!(setting = skipped.setting, "not applied: {}", skipped.reason);
        }
        for write in &plan.writes {
            let dir = self
                .dir_for(write.controller)
                .ok_or_else(|| self.no_controller(write.controller))?;
            fs::write(&dir.join(&write.file), &write.value, |e| {
                resource_hint(write, e)
            })?;
        }
        // Only the v2 planner asks for a program, and only on a pure v2 host; a hybrid host
        // enforces devices through v1's devices controller.
        if let (Some(rules), Some(place)) = (&plan.device_program, &self.v2) {
            devices_bpf::install(&place.dir(), rules)?;
        }
        Ok(())
    }

    /// `berth-runc update`: the same writes as [`apply`](Self::apply). Only the settings
    /// present are written, and the v1 memory writes are ordered against the current limit,
    /// so applying again is exactly an update.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.apply(resources)
    }

    /// The plan [`apply`](Self::apply) would carry out, for tests and curious readers.
    pub(crate) fn plan(&self, resources: &LinuxResources) -> Result<Plan, CgroupError> {
        if self.is_pure_v2() {
            v2::plan(resources, self)
        } else {
            v1::plan(resources, self)
        }
    }

    /// Moves process `pid` (with all its threads) into the cgroup, in every hierarchy.
    pub fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            fs::write(&dir.join("cgroup.procs"), &pid.to_string(), |e| {
                if e.raw_os_error() == Some(libc::ESRCH) {
                    format!("process {pid} has already exited")
                } else {
                    "berth-runc must run as root, and the cgroup must exist (call create first)"
                        .to_string()
                }
            })?;
        }
        Ok(())
    }

    /// Stops every process of the container, and returns once the kernel says they are stopped.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer(FreezerState::Frozen)
    }

    /// Lets the processes of a frozen container run again.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer(FreezerState::Thawed)
    }

    /// Whether the container is frozen.
    pub fn state(&self) -> Result<FreezerState, CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => freezer::state_v1(&dir),
            Freezer::V2(dir) => freezer::state_v2(&dir),
        }
    }

    /// Every process in the cgroup, including in cgroups the container made below its own
    /// (a container with its own cgroup namespace may). Sorted, for `berth-runc ps`.
    pub fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        let dir = self
            .listing_dir()
            .ok_or_else(|| self.no_controller("any"))?;
        let mut pids = Vec::new();
        collect_pids(&dir, &mut pids)?;
        pids.sort();
        pids.dedup();
        Ok(pids.into_iter().map(Pid::from_raw).collect())
    }

    /// CPU, memory and process counts, as `berth-runc events --stats` reports them.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match &self.v2 {
            Some(place) if self.is_pure_v2() => stats::read_v2(&place.dir()),
            _ => stats::read_v1(|controller| self.v1.get(controller).map(Place::dir)),
        }
    }

    /// Removes the cgroup's directory from every hierarchy.
    ///
    /// The kernel refuses (EBUSY) while processes remain, and a killed process takes a moment
    /// to leave, so busy directories are retried until one shared deadline. A directory that
    /// is already gone is fine: `berth-runc delete` must be safe to run twice. Parents (like
    /// `/berth`) stay, as with runc: other containers may share them.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut busy = self.dirs();
        let done = fs::wait_for(REMOVE_TIMEOUT, || {
            let mut still_busy = Vec::new();
            for dir in busy.drain(..) {
                if !remove_tree(&dir)? {
                    still_busy.push(dir);
                }
            }
            busy = still_busy;
            Ok(busy.is_empty().then_some(()))
        })?;
        match (done, busy.first()) {
            (None, Some(dir)) => {
                let mut pids = Vec::new();
                let _ = collect_pids(dir, &mut pids); // best effort: only for the message
                Err(CgroupError::Busy {
                    path: dir.clone(),
                    pids,
                    waited: REMOVE_TIMEOUT,
                })
            }
            _ => Ok(()),
        }
    }

    fn is_pure_v2(&self) -> bool {
        self.v1.is_empty()
    }

    /// Every distinct directory of the cgroup: v1 ones (co-mounted controllers share one),
    /// then the v2 one.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for place in self.v1.values().chain(&self.v2) {
            let dir = place.dir();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// The directory holding `controller`'s files: its v1 hierarchy's, or on v2 the one.
    fn dir_for(&self, controller: &str) -> Option<PathBuf> {
        if self.is_pure_v2() {
            self.v2.as_ref().map(Place::dir)
        } else {
            self.v1.get(controller).map(Place::dir)
        }
    }

    /// The freezer: v1's freezer hierarchy if mounted, else the v2 cgroup, which has one built
    /// in (Linux 5.2+), even on a hybrid host where v2 controls nothing else.
    fn freezer(&self) -> Result<Freezer, CgroupError> {
        if let Some(place) = self.v1.get("freezer") {
            return Ok(Freezer::V1(place.dir()));
        }
        self.v2
            .as_ref()
            .map(|place| Freezer::V2(place.dir()))
            .ok_or_else(|| self.no_controller("freezer"))
    }

    fn set_freezer(&self, target: FreezerState) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => freezer::set_v1(&dir, target),
            Freezer::V2(dir) => freezer::set_v2(&dir, target),
        }
    }

    /// Where to list processes: the freezer's hierarchy, so `kill --all` (freeze, list, kill)
    /// reads the same tree it froze; any hierarchy would do, as processes are in all of them.
    fn listing_dir(&self) -> Option<PathBuf> {
        let place = self
            .v1
            .get("freezer")
            .or(self.v2.as_ref())
            .or(self.v1.values().next());
        place.map(Place::dir)
    }

    fn no_controller(&self, controller: &str) -> CgroupError {
        let known: Vec<&str> = self
            .v1
            .keys()
            .map(String::as_str)
            .chain(self.v2.as_ref().map(|_| "cgroup2"))
            .collect();
        CgroupError::NoController {
            controller: controller.to_string(),
            known: known.join(", "),
        }
    }
}

/// Lets the planners ask about this cgroup's real directories.
impl Probe for Cgroup {
    fn mounted(&self, controller: &str) -> bool {
        self.is_pure_v2() || self.v1.contains_key(controller)
    }

    fn has(&self, controller: &str, file: &str) -> bool {
        self.dir_for(controller)
            .is_some_and(|dir| dir.join(file).exists())
    }

    fn number(&self, controller: &str, file: &str) -> Option<u64> {
        let path = self.dir_for(controller)?.join(file);
        fs::read_u64_if_present(&path).ok().flatten()
    }
}

enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

/// Applies the path rule in one hierarchy.
fn place_in(
    name: &str,
    mount: &Mount,
    own: Option<&PathBuf>,
    rule: &CgroupsPath,
) -> Result<Place, CgroupError> {
    let path = match rule {
        CgroupsPath::Absolute(path) => path.clone(),
        CgroupsPath::Relative(path) => {
            let own = own.ok_or_else(|| CgroupError::NotAMember {
                hierarchy: name.to_string(),
            })?;
            // /proc/self/cgroup names cgroups from the hierarchy's true root; the mountpoint
            // shows the hierarchy from `mount.root` down, so strip that part first.
            let below_root =
                own.strip_prefix(&mount.root)
                    .map_err(|_| CgroupError::OutsideMount {
                        hierarchy: name.to_string(),
                        own: own.clone(),
                        mountpoint: mount.mountpoint.clone(),
                        root: mount.root.clone(),
                    })?;
            below_root.join(path)
        }
    };
    Ok(Place {
        mountpoint: mount.mountpoint.clone(),
        path,
    })
}

fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` from the parent when empty (v1 only).
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let parent = dir.parent().unwrap_or(dir);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read(&dir.join(file))?.trim().is_empty() {
            let inherited = fs::read(&parent.join(file))?;
            fs::write(&dir.join(file), inherited.trim(), |_| {
                format!(
                    "the parent's {file} could not be copied; check {} by hand",
                    parent.display()
                )
            })?;
        }
    }
    Ok(())
}

fn resource_hint(write: &Write, error: &io::Error) -> String {
    let check = format!("check {} in config.json", write.setting);
    if error.kind() == io::ErrorKind::NotFound {
        format!(
            "the kernel offers no {} here: the {} controller is not enabled for this cgroup \
             or not built into the kernel; {check}",
            write.file, write.controller
        )
    } else {
        check
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let text = fs::read(&procs)?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        pids.push(line.trim().parse().map_err(|_| CgroupError::Parse {
            path: procs.clone(),
            content: line.to_string(),
            expected: "one process ID per line",
        })?);
    }
    for child in child_dirs(dir)? {
        collect_pids(&child, pids)?;
    }
    Ok(())
}

fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let read_error = |source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut children = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        if entry.file_type().map_err(read_error)?.is_dir() {
            children.push(entry.path());
        }
    }
    Ok(children)
}

/// Removes `dir` after any cgroups below it. `Ok(false)` means "busy: processes are still
/// leaving, try again"; a missing `dir` counts as removed.
fn remove_tree(dir: &Path) -> Result<bool, CgroupError> {
    if !dir.exists() {
        return Ok(true);
    }
    for child in child_dirs(dir)? {
        if !remove_tree(&child)? {
            return Ok(false);
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(source) => Err(CgroupError::Remove {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::v1::tests::resources;

    fn mount(mountpoint: impl Into<PathBuf>) -> Mount {
        Mount {
            mountpoint: mountpoint.into(),
            root: "/".into(),
        }
    }

    /// This machine's layout: hybrid, with the runtime's memory cgroup not at the root.
    fn hybrid() -> (Hierarchy, Membership) {
        let controllers = ["cpu", "memory", "name=systemd"]
            .into_iter()
            .map(|c| {
                (
                    c.to_string(),
                    mount(format!("/sys/fs/cgroup/{}", c.trim_start_matches("name="))),
                )
            })
            .collect();
        let hierarchy = Hierarchy::Hybrid {
            controllers,
            unified: mount("/sys/fs/cgroup/unified"),
        };
        let own =
            Membership::parse("9:name=systemd:/\n4:memory:/process_api/76898a\n1:cpu:/\n0::/\n")
                .unwrap();
        (hierarchy, own)
    }

    fn dirs_of(cgroup: &Cgroup) -> Vec<String> {
        cgroup
            .paths()
            .into_iter()
            .map(|(c, p)| format!("{c}={}", p.display()))
            .collect()
    }

    #[test]
    fn an_absolute_path_is_the_same_below_every_root() {
        let (hierarchy, own) = hybrid();
        let cgroup =
            Cgroup::place(&hierarchy, &own, &CgroupsPath::Absolute("berth/web".into())).unwrap();
        assert_eq!(
            dirs_of(&cgroup),
            [
                "=/sys/fs/cgroup/unified/berth/web",
                "cpu=/sys/fs/cgroup/cpu/berth/web",
                "memory=/sys/fs/cgroup/memory/berth/web",
                "name=systemd=/sys/fs/cgroup/systemd/berth/web",
            ]
        );
    }

    #[test]
    fn a_relative_path_follows_the_runtimes_own_cgroup_per_hierarchy() {
        // What runc 1.1.5 did on this host for an empty cgroupsPath and container "web".
        let (hierarchy, own) = hybrid();
        let rule = CgroupsPath::from_spec(None, "web").unwrap();
        let cgroup = Cgroup::place(&hierarchy, &own, &rule).unwrap();
        assert_eq!(
            dirs_of(&cgroup),
            [
                "=/sys/fs/cgroup/unified/web",
                "cpu=/sys/fs/cgroup/cpu/web",
                "memory=/sys/fs/cgroup/memory/process_api/76898a/web",
                "name=systemd=/sys/fs/cgroup/systemd/web",
            ]
        );
    }

    #[test]
    fn a_mount_of_a_subtree_is_seen_from_its_root() {
        // A container manager mounted only /docker/abc of the hierarchy, and we run inside it.
        let hierarchy = Hierarchy::V2 {
            unified: Mount {
                mountpoint: "/sys/fs/cgroup".into(),
                root: "/docker/abc".into(),
            },
        };
        let own = Membership::parse("0::/docker/abc/init\n").unwrap();
        let cgroup = Cgroup::place(&hierarchy, &own, &CgroupsPath::Relative("web".into())).unwrap();
        assert_eq!(dirs_of(&cgroup), ["=/sys/fs/cgroup/init/web"]);

        let outside = Membership::parse("0::/elsewhere\n").unwrap();
        let err =
            Cgroup::place(&hierarchy, &outside, &CgroupsPath::Relative("web".into())).unwrap_err();
        assert!(matches!(err, CgroupError::OutsideMount { .. }), "{err}");
    }

    #[test]
    fn it_round_trips_through_the_state_file() {
        let (hierarchy, own) = hybrid();
        let cgroup =
            Cgroup::place(&hierarchy, &own, &CgroupsPath::Absolute("berth/web".into())).unwrap();
        let json = serde_json::to_string(&cgroup).unwrap();
        assert!(
            json.contains(r#""memory":{"mountpoint":"/sys/fs/cgroup/memory","path":"berth/web"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cgroup);
    }

    /// Plays the kernel in a temporary directory: makes `dir` with the files the kernel would
    /// put there. (The real kernel creates them on mkdir; a plain directory cannot.)
    fn kernel_dir(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (file, content) in files {
            std::fs::write(dir.join(file), content).unwrap();
        }
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn v1_create_apply_join_and_list_in_a_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        let controllers = ["cpu", "cpuset", "devices", "memory", "pids"]
            .into_iter()
            .map(|c| (c.to_string(), mount(root.path().join(c))))
            .collect();
        let hierarchy = Hierarchy::V1 { controllers };
        let cgroup = Cgroup::place(
            &hierarchy,
            &Membership::default(),
            &CgroupsPath::Absolute("berth/web".into()),
        )
        .unwrap();

        kernel_dir(
            &root.path().join("cpuset"),
            &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")],
        );
        let cpuset_files = [
            ("cpuset.cpus", "\n"),
            ("cpuset.mems", "\n"),
            ("cgroup.procs", ""),
        ];
        kernel_dir(&root.path().join("cpuset/berth"), &cpuset_files);
        kernel_dir(&root.path().join("cpuset/berth/web"), &cpuset_files);
        let leaf_files: &[(&str, &[&str])] = &[
            (
                "cpu",
                &["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
            ),
            ("devices", &["devices.allow", "devices.deny"]),
            (
                "memory",
                &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            ),
            ("pids", &["pids.max"]),
        ];
        for (controller, files) in leaf_files {
            let files: Vec<(&str, &str)> = files
                .iter()
                .map(|f| (*f, ""))
                .chain([("cgroup.procs", "")])
                .collect();
            kernel_dir(&root.path().join(controller).join("berth/web"), &files);
        }

        cgroup.create().unwrap();
        // Both new cpuset levels got the parent's CPUs and memory nodes.
        assert_eq!(read(root.path().join("cpuset/berth/cpuset.cpus")), "0-3");
        assert_eq!(read(root.path().join("cpuset/berth/web/cpuset.mems")), "0");

        let spec = r#"{"memory": {"limit": 67108864, "swap": 134217728}, "pids": {"limit": 20},
                       "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                       "devices": [{"allow": false, "access": "rwm"},
                                   {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#;
        cgroup.apply(&resources(spec)).unwrap();
        let leaf = |controller: &str, file: &str| {
            read(root.path().join(controller).join("berth/web").join(file))
        };
        assert_eq!(leaf("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(leaf("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(leaf("pids", "pids.max"), "20");
        assert_eq!(leaf("cpu", "cpu.shares"), "512");
        assert_eq!(leaf("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(leaf("devices", "devices.deny"), "a *:* rwm");
        assert_eq!(leaf("devices", "devices.allow"), "c 1:3 rwm");

        cgroup.add_process(Pid::from_raw(4242)).unwrap();
        for controller in ["cpu", "cpuset", "devices", "memory", "pids"] {
            assert_eq!(leaf(controller, "cgroup.procs"), "4242");
        }
        assert_eq!(cgroup.pids().unwrap(), [Pid::from_raw(4242)]);
    }

    #[test]
    fn v1_errors_name_the_file_the_value_and_the_setting() {
        let root = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::V1 {
            controllers: [("pids".to_string(), mount(root.path().join("pids")))].into(),
        };
        let cgroup = Cgroup::place(
            &hierarchy,
            &Membership::default(),
            &CgroupsPath::Absolute("web".into()),
        )
        .unwrap();
        kernel_dir(&root.path().join("pids/web"), &[]);
        let err = cgroup
            .apply(&resources(r#"{"pids": {"limit": 20}}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#"cannot write "20" to "#), "{err}");
        assert!(err.contains("pids/web/pids.max"), "{err}");
        assert!(
            err.contains("check linux.resources.pids in config.json"),
            "{err}"
        );
    }

    #[test]
    fn v2_create_enables_controllers_then_apply_writes_one_directory() {
        let root = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::V2 {
            unified: mount(root.path()),
        };
        let cgroup = Cgroup::place(
            &hierarchy,
            &Membership::default(),
            &CgroupsPath::Absolute("berth/web".into()),
        )
        .unwrap();
        let parent_files = [
            ("cgroup.controllers", "cpu memory pids\n"),
            ("cgroup.subtree_control", ""),
        ];
        kernel_dir(root.path(), &parent_files);
        kernel_dir(&root.path().join("berth"), &parent_files);
        let leaf_files = [
            "cpu.weight",
            "cpu.max",
            "memory.max",
            "memory.swap.max",
            "pids.max",
            "cgroup.procs",
        ];
        kernel_dir(&root.path().join("berth/web"), &leaf_files.map(|f| (f, "")));

        cgroup.create().unwrap();
        // A plain file keeps only the last write; the kernel would have kept all three.
        assert_eq!(read(root.path().join("cgroup.subtree_control")), "+pids");
        assert_eq!(
            read(root.path().join("berth/cgroup.subtree_control")),
            "+pids"
        );

        let spec = r#"{"memory": {"limit": 67108864, "swap": 134217728}, "pids": {"limit": 20},
                       "cpu": {"shares": 1024, "quota": 50000}}"#;
        cgroup.apply(&resources(spec)).unwrap();
        let leaf = |file: &str| read(root.path().join("berth/web").join(file));
        assert_eq!(leaf("memory.max"), "67108864");
        assert_eq!(leaf("memory.swap.max"), "67108864");
        assert_eq!(leaf("cpu.weight"), "39");
        assert_eq!(leaf("cpu.max"), "50000 100000");
        assert_eq!(leaf("pids.max"), "20");
    }

    #[test]
    fn destroying_a_cgroup_that_is_not_there_is_fine() {
        let root = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::V2 {
            unified: mount(root.path()),
        };
        let cgroup = Cgroup::place(
            &hierarchy,
            &Membership::default(),
            &CgroupsPath::Absolute("web".into()),
        )
        .unwrap();
        cgroup.destroy().unwrap();
        cgroup.destroy().unwrap();
    }

    #[test]
    fn levels_go_from_the_top_down() {
        let place = Place {
            mountpoint: "/sys/fs/cgroup".into(),
            path: "berth/web".into(),
        };
        let levels: Vec<PathBuf> = place.levels().collect();
        assert_eq!(
            levels,
            [
                PathBuf::from("/sys/fs/cgroup/berth"),
                "/sys/fs/cgroup/berth/web".into()
            ]
        );
    }
}
