//! Out-of-memory notifications from the container's memory cgroup: `/tasks/oom`.
//!
//! When a container reaches its memory limit, the kernel's OOM killer kills a process
//! in it, and containerd wants to hear it (`ctr events` shows `/tasks/oom`, Docker sets
//! `OOMKilled`). The kernel tells through the memory cgroup, in one of two ways:
//! - cgroup v1: an *eventfd* registered for `memory.oom_control` by writing
//!   `"<eventfd> <fd of memory.oom_control>"` to the cgroup's `cgroup.event_control`.
//!   The eventfd becomes readable at each OOM, and once more when the cgroup is removed.
//! - cgroup v2: no registration; `memory.events` is a file of counters and changes
//!   (inotify `IN_MODIFY`) whenever one does. `oom_kill` counting up is an OOM kill.
//!
//! Either way, the result is one file descriptor the main loop adds to its epoll
//! ([`crate::poller`]): no thread per container. The cgroup is found from the init
//! process (`/proc/<pid>/cgroup`), because the runtime's `state` does not say it.
//! On a hybrid host (v1 controllers, v2 mounted at `/sys/fs/cgroup/unified`) memory is
//! a v1 controller, and the v2 side is used only if memory is really there.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::poller::cvt;

#[derive(Debug, thiserror::Error)]
pub enum OomError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, io::Error),
    #[error("cannot register for OOM notifications in {0}: {1}")]
    Register(PathBuf, io::Error),
}

/// Where a process's memory cgroup is, and which interface it speaks.
#[derive(Debug, PartialEq, Eq)]
pub enum MemoryCgroup {
    V1(PathBuf),
    V2(PathBuf),
}

/// What reading a readable watch found.
#[derive(Debug, PartialEq, Eq)]
pub enum Readout {
    /// The container ran out of memory (at least once since the last readout).
    Oom,
    /// Something changed, but not an OOM (another counter of `memory.events`).
    Nothing,
    /// The cgroup is gone: the watch has nothing more to say; drop it.
    Gone,
}

/// One container's OOM watch: the fd the main loop sleeps on, and how to read it.
pub enum Watch {
    V1 {
        eventfd: OwnedFd,
        /// Kept open as long as the registration: it names what the eventfd is for.
        _oom_control: File,
        cgroup: PathBuf,
    },
    V2 {
        inotify: OwnedFd,
        events: PathBuf,
        /// `oom_kill` when last read.
        kills: u64,
    },
}

impl Watch {
    /// A watch on the memory cgroup of `pid`, or `None` if it has no memory cgroup
    /// (no memory controller anywhere, or the process is already gone).
    pub fn for_pid(pid: u32) -> Result<Option<Watch>, OomError> {
        let read = |path: PathBuf| fs::read_to_string(&path).map_err(|e| OomError::Read(path, e));
        let cgroups = match fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(text) => text,
            Err(_) => return Ok(None),
        };
        let mountinfo = read("/proc/self/mountinfo".into())?;
        match memory_cgroup(&cgroups, &mountinfo) {
            Some(MemoryCgroup::V1(dir)) => Watch::v1(dir).map(Some),
            Some(MemoryCgroup::V2(dir)) if dir.join("memory.events").exists() => {
                Watch::v2(dir.join("memory.events")).map(Some)
            }
            _ => Ok(None),
        }
    }

    // ANCHOR: v1
    fn v1(cgroup: PathBuf) -> Result<Watch, OomError> {
        let register = |e| OomError::Register(cgroup.clone(), e);
        let oom_control = File::open(cgroup.join("memory.oom_control")).map_err(register)?;
        // SAFETY: eventfd takes an initial value and flags; a non-negative result is ours.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
            .map_err(register)?;
        // SAFETY: fd was just created and is owned by nothing else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let line = format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd());
        fs::write(cgroup.join("cgroup.event_control"), line).map_err(register)?;
        Ok(Watch::V1 {
            eventfd,
            _oom_control: oom_control,
            cgroup,
        })
    }
    // ANCHOR_END: v1

    // ANCHOR: v2
    fn v2(events: PathBuf) -> Result<Watch, OomError> {
        let register = |e| OomError::Register(events.clone(), e);
        // SAFETY: inotify_init1 takes flags only; a non-negative result is ours.
        let fd = cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })
            .map_err(register)?;
        // SAFETY: fd was just created and is owned by nothing else.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
            .map_err(|e| register(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        // SAFETY: a valid inotify fd and a NUL-terminated path.
        cvt(unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MODIFY) })
            .map_err(register)?;
        // Counted from here: the kills of the container's earlier life are not news.
        let kills = fs::read_to_string(&events)
            .ok()
            .and_then(|text| oom_kills(&text))
            .unwrap_or(0);
        Ok(Watch::V2 {
            inotify,
            events,
            kills,
        })
    }
    // ANCHOR_END: v2

    /// The fd to add to the main loop's epoll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Watch::V1 { eventfd, .. } => eventfd.as_fd(),
            Watch::V2 { inotify, .. } => inotify.as_fd(),
        }
    }

    /// Reads what made the fd readable (so that level-triggered epoll stops reporting
    /// it) and says what it meant.
    pub fn read(&mut self) -> Readout {
        match self {
            Watch::V1 {
                eventfd, cgroup, ..
            } => {
                let mut count = [0u8; 8];
                // SAFETY: reads at most 8 bytes into `count`.
                let n = unsafe { libc::read(eventfd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
                if n != 8 {
                    return Readout::Nothing; // EAGAIN: someone read it first
                }
                // The kernel signals the eventfd one last time as it removes the cgroup.
                if !cgroup.join("cgroup.event_control").exists() {
                    return Readout::Gone;
                }
                Readout::Oom
            }
            Watch::V2 {
                inotify,
                events,
                kills,
            } => {
                let mut buffer = [0u8; 1024];
                // SAFETY: each read writes at most buffer.len() bytes into `buffer`.
                while unsafe {
                    libc::read(
                        inotify.as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                    )
                } > 0
                {}
                let Some(now) = fs::read_to_string(&*events)
                    .ok()
                    .and_then(|text| oom_kills(&text))
                else {
                    return Readout::Gone;
                };
                if now > *kills {
                    *kills = now;
                    Readout::Oom
                } else {
                    Readout::Nothing
                }
            }
        }
    }
}

/// The `oom_kill` counter of a cgroup v2 `memory.events` file.
pub fn oom_kills(memory_events: &str) -> Option<u64> {
    memory_events.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

// ANCHOR: memory_cgroup
/// Where the memory cgroup of a process is, from its `/proc/PID/cgroup` and this
/// process's `/proc/self/mountinfo`: the v1 hierarchy with the `memory` controller if
/// there is one (a v1 or hybrid host), else the v2 hierarchy (`0::/path`). The caller
/// checks that the v2 cgroup has memory (`memory.events`): on a hybrid host it has not.
pub fn memory_cgroup(proc_cgroup: &str, mountinfo: &str) -> Option<MemoryCgroup> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            let mount = cgroup_mount(mountinfo, |fs, options| {
                fs == "cgroup" && options.split(',').any(|o| o == "memory")
            })?;
            return Some(MemoryCgroup::V1(mount.resolve(path)?));
        }
        if controllers.is_empty() && line.starts_with("0:") {
            v2 = Some(path);
        }
    }
    let mount = cgroup_mount(mountinfo, |fs, _| fs == "cgroup2")?;
    Some(MemoryCgroup::V2(mount.resolve(v2?)?))
}
// ANCHOR_END: memory_cgroup

/// A cgroup filesystem mount: where it is, and which cgroup its root is.
struct Mount<'a> {
    root: &'a str,
    point: &'a str,
}

impl Mount<'_> {
    /// The directory of `cgroup` (a path from `/proc/PID/cgroup`) under this mount.
    fn resolve(&self, cgroup: &str) -> Option<PathBuf> {
        let below = cgroup.strip_prefix(self.root.trim_end_matches('/'))?;
        Some(Path::new(self.point).join(below.trim_start_matches('/')))
    }
}

/// The first mount in `mountinfo` whose filesystem type and super options `wanted`.
/// A line is `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
fn cgroup_mount<'a>(mountinfo: &'a str, wanted: impl Fn(&str, &str) -> bool) -> Option<Mount<'a>> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mut before = before.split(' ');
        let (root, point) = (before.nth(3)?, before.next()?);
        let mut after = after.split(' ');
        let (fs, options) = (after.next()?, after.nth(1)?);
        wanted(fs, options).then_some(Mount { root, point })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 25 0:25 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
28 27 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 27 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
34 27 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
";
    const HYBRID_CGROUP: &str = "\
5:cpu,cpuacct:/berth-test/web
4:memory:/berth-test/web
0::/berth-test/web
";
    const V2_MOUNTS: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 25 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn on_a_hybrid_host_memory_is_the_v1_hierarchy() {
        assert_eq!(
            memory_cgroup(HYBRID_CGROUP, HYBRID_MOUNTS),
            Some(MemoryCgroup::V1(
                "/sys/fs/cgroup/memory/berth-test/web".into()
            ))
        );
    }

    #[test]
    fn on_a_v2_host_memory_is_the_unified_hierarchy() {
        assert_eq!(
            memory_cgroup("0::/system.slice/web.scope\n", V2_MOUNTS),
            Some(MemoryCgroup::V2(
                "/sys/fs/cgroup/system.slice/web.scope".into()
            ))
        );
        // Hybrid with memory left out of v1: the v2 side, at its own mount point.
        assert_eq!(
            memory_cgroup("5:cpu,cpuacct:/a\n0::/a\n", HYBRID_MOUNTS),
            Some(MemoryCgroup::V2("/sys/fs/cgroup/unified/a".into()))
        );
    }

    #[test]
    fn a_mount_of_a_sub_cgroup_is_resolved_below_its_root() {
        let mounts = "27 25 0:25 /outer /cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            memory_cgroup("0::/outer/web\n", mounts),
            Some(MemoryCgroup::V2("/cg/web".into()))
        );
        assert_eq!(memory_cgroup("0::/elsewhere\n", mounts), None);
        assert_eq!(memory_cgroup("0::/web\n", "nothing mounted\n"), None);
    }

    #[test]
    fn the_oom_kill_counter_of_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kills(events), Some(2));
        assert_eq!(oom_kills("low 0\noom 1\n"), None, "no oom_kill line");
        assert_eq!(oom_kills("oom_kill x\n"), None);
    }

    #[test]
    fn a_v2_watch_reports_an_oom_kill_once_and_a_removed_file_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        let mut watch = Watch::v2(events.clone()).unwrap();
        fs::write(&events, "oom 1\noom_kill 0\n").unwrap();
        assert_eq!(watch.read(), Readout::Nothing, "an OOM without a kill");
        fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        assert_eq!(watch.read(), Readout::Oom);
        assert_eq!(watch.read(), Readout::Nothing, "reported once");
        fs::remove_file(&events).unwrap();
        assert_eq!(watch.read(), Readout::Gone);
    }
}
