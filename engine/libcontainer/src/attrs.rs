//! Process attributes init applies to itself just before it `exec`s the user's program:
//! resource limits, OOM score, personality, I/O priority, CPU scheduler, user and
//! groups, and which fds survive the exec.
//!
//! Every one of these is inherited across `exec`, which is why setting them on
//! ourselves is setting them on the container's program. Each function is one spec
//! field and one or two system calls; `crate::init` calls them in order (read it next).

use std::fs;
use std::io;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, PosixRlimit, PosixRlimitType, Scheduler, User,
};

#[derive(Debug, thiserror::Error)]
pub enum AttrsError {
    #[error(
        "cannot set {kind} to soft {soft}, hard {hard}: {source}; the soft limit may not exceed the \
         hard one, and raising a hard limit needs CAP_SYS_RESOURCE"
    )]
    Rlimit {
        kind: PosixRlimitType,
        soft: u64,
        hard: u64,
        source: Errno,
    },
    #[error("oomScoreAdj {0} is out of range; it must be between -1000 and 1000")]
    OomScoreRange(i32),
    #[error(
        "cannot write oomScoreAdj {score} to /proc/self/oom_score_adj: {source}; lowering it below \
         its current value needs CAP_SYS_RESOURCE"
    )]
    OomScore { score: i32, source: io::Error },
    #[error("personality flags {0:?} are not supported: the OCI spec defines none; remove them")]
    PersonalityFlags(Vec<String>),
    #[error("cannot set the personality to {domain}: {source}")]
    Personality {
        domain: LinuxPersonalityDomain,
        source: Errno,
    },
    #[error("ioPriority level {0} is out of range; it must be between 0 (highest) and 7 (lowest)")]
    IoPriorityLevel(i64),
    #[error("cannot set the I/O priority to {class} level {level}: {source}; the realtime class needs CAP_SYS_ADMIN")]
    IoPriority {
        class: IOPriorityClass,
        level: i64,
        source: Errno,
    },
    #[error(
        "cannot set the scheduler to {policy} (nice {nice:?}, priority {priority:?}): {source}; \
         SCHED_FIFO and SCHED_RR need a priority of 1 to 99 and CAP_SYS_NICE, the others a priority of 0"
    )]
    Scheduler {
        policy: LinuxSchedulerPolicy,
        nice: Option<i32>,
        priority: Option<i32>,
        source: Errno,
    },
    #[error(
        "cannot set additionalGids {0:?}: setgroups is denied in this user namespace \
         (/proc/self/setgroups says \"deny\"); remove them from process.user"
    )]
    GroupsDenied(Vec<u32>),
    #[error("cannot set the supplementary groups to {gids:?}: {source}")]
    Groups { gids: Vec<u32>, source: Errno },
    #[error(
        "cannot switch to {which} {id}: {source}; is it mapped in the container's user namespace?"
    )]
    Id {
        which: &'static str,
        id: u32,
        source: Errno,
    },
    #[error("cannot {what} the fds from {first} on: {source}")]
    Fds {
        what: &'static str,
        first: RawFd,
        source: io::Error,
    },
}

/// Sets each resource limit, soft and hard, as the spec lists them.
///
/// Call it while still privileged: raising a hard limit needs `CAP_SYS_RESOURCE`.
/// (A name the kernel does not know never gets here: it fails when `config.json` is
/// parsed, with serde naming it: "unknown variant `RLIMIT_BOGUS`, expected one of …".)
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<(), AttrsError> {
    for limit in rlimits {
        let (kind, soft, hard) = (limit.typ(), limit.soft(), limit.hard());
        setrlimit(resource_of(kind), soft, hard).map_err(|source| AttrsError::Rlimit {
            kind,
            soft,
            hard,
            source,
        })?;
    }
    Ok(())
}

/// The spec's rlimit names are the kernel's: `RLIMIT_NOFILE` is `RLIMIT_NOFILE`. A
/// `match`, so that a name added to oci-spec without a line here fails to compile.
fn resource_of(kind: PosixRlimitType) -> Resource {
    match kind {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Sets how eagerly the kernel's OOM killer picks this process: -1000 (never) to
/// 1000 (first). Raising it is always allowed; lowering it needs `CAP_SYS_RESOURCE`.
pub fn set_oom_score_adj(score: i32) -> Result<(), AttrsError> {
    if !(-1000..=1000).contains(&score) {
        return Err(AttrsError::OomScoreRange(score));
    }
    fs::write("/proc/self/oom_score_adj", score.to_string())
        .map_err(|source| AttrsError::OomScore { score, source })
}

/// The kernel's execution domains (`<linux/personality.h>`); the spec names two.
const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

/// Sets the execution domain: `LINUX32` makes a 64-bit kernel look 32-bit to the
/// program (`uname -m` says `i686` on x86-64), for old 32-bit builds scripts.
pub fn set_personality(personality: &LinuxPersonality) -> Result<(), AttrsError> {
    // runc ignores flags silently; berth refuses them, because a flag the spec does
    // not define cannot mean anything the user could rely on.
    if let Some(flags) = personality.flags().as_ref().filter(|f| !f.is_empty()) {
        return Err(AttrsError::PersonalityFlags(flags.clone()));
    }
    let domain = personality.domain();
    let persona = match domain {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    // SAFETY: personality(2) takes a plain integer.
    let rc = unsafe { libc::personality(persona) };
    Errno::result(rc)
        .map(drop)
        .map_err(|source| AttrsError::Personality { domain, source })
}

/// `ioprio_set(2)`'s constants (`<linux/ioprio.h>`); libc has no wrapper.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// Sets the I/O scheduling class (realtime, best-effort, idle) and level (0-7,
/// lower first) of this process's disk requests, as `ionice` does.
pub fn set_io_priority(priority: &LinuxIOPriority) -> Result<(), AttrsError> {
    let (class, level) = (priority.class(), priority.priority());
    if !(0..=7).contains(&level) {
        return Err(AttrsError::IoPriorityLevel(level));
    }
    let class_number: libc::c_int = match class {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let ioprio = class_number << IOPRIO_CLASS_SHIFT | level as libc::c_int;
    // SAFETY: ioprio_set takes three integers; who = 0 means this process.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, ioprio) };
    Errno::result(rc)
        .map(drop)
        .map_err(|source| AttrsError::IoPriority {
            class,
            level,
            source,
        })
}

/// `struct sched_attr` of `sched_setattr(2)`, the one call that sets every policy,
/// deadline's three times included. libc has neither the struct nor a wrapper.
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    // Utilization clamps: the spec has no values for them, so 0, as runc sends.
    util_min: u32,
    util_max: u32,
}

/// Sets the CPU scheduling policy and its parameters (nice, realtime priority,
/// deadline runtime/deadline/period in nanoseconds, flags).
pub fn set_scheduler(scheduler: &Scheduler) -> Result<(), AttrsError> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_number(*scheduler.policy()),
        flags: scheduler
            .flags()
            .iter()
            .flatten()
            .map(|flag| flag_bit(*flag))
            .fold(0, |all, bit| all | bit),
        nice: scheduler.nice().unwrap_or(0),
        // A negative priority becomes a huge one, which the kernel refuses (EINVAL).
        priority: scheduler.priority().unwrap_or(0) as u32,
        runtime: scheduler.runtime().unwrap_or(0),
        deadline: scheduler.deadline().unwrap_or(0),
        period: scheduler.period().unwrap_or(0),
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: pid 0 is this thread; `attr` is a valid sched_attr of the size it says.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    Errno::result(rc)
        .map(drop)
        .map_err(|source| AttrsError::Scheduler {
            policy: *scheduler.policy(),
            nice: *scheduler.nice(),
            priority: *scheduler.priority(),
            source,
        })
}

/// `SCHED_*` of `<linux/sched.h>`. (`SCHED_ISO` was reserved but never merged: the
/// kernel refuses it, and the error says so.)
fn policy_number(policy: LinuxSchedulerPolicy) -> u32 {
    match policy {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    }
}

/// `SCHED_FLAG_*` of `<linux/sched.h>`.
fn flag_bit(flag: LinuxSchedulerFlag) -> u64 {
    match flag {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

// ANCHOR: switch_user
/// Becomes `user`: umask (when given), supplementary groups, gid, and uid last.
///
/// The order is forced: changing groups and gid needs `CAP_SETGID`, and a process that
/// leaves uid 0 loses all its capabilities, so after `setresuid` it could no longer
/// change anything else. Losing them is also why the caller must have asked the kernel
/// to keep its capabilities across this call (`PR_SET_KEEPCAPS`) and set the
/// container's own capabilities right after: see `crate::capabilities`.
pub fn switch_user(user: &User) -> Result<(), AttrsError> {
    if let Some(mask) = user.umask() {
        umask(Mode::from_bits_truncate(mask));
    }
    set_groups(user.additional_gids().as_deref().unwrap_or_default())?;
    let (uid, gid) = (user.uid(), user.gid());
    // All three ids (real, effective, saved), so that the program cannot switch back.
    let source = |which, id| move |source| AttrsError::Id { which, id, source };
    setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))
        .map_err(source("gid", gid))?;
    setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
        .map_err(source("uid", uid))?;
    Ok(())
}
// ANCHOR_END: switch_user

/// Replaces the supplementary groups with exactly `gids`. Even an empty list is set:
/// otherwise the program would keep the groups the runtime happened to run with.
fn set_groups(gids: &[u32]) -> Result<(), AttrsError> {
    if setgroups_denied() {
        // A user namespace whose gid map was written without privilege must deny
        // setgroups (or its processes could drop a group meant to restrict them).
        // Nothing asked for, nothing lost; but asked-for groups we cannot give are an
        // error, not a silent surprise.
        return match gids {
            [] => Ok(()),
            _ => Err(AttrsError::GroupsDenied(gids.to_vec())),
        };
    }
    let groups: Vec<Gid> = gids.iter().copied().map(Gid::from_raw).collect();
    setgroups(&groups).map_err(|source| AttrsError::Groups {
        gids: gids.to_vec(),
        source,
    })
}

fn setgroups_denied() -> bool {
    fs::read_to_string("/proc/self/setgroups").is_ok_and(|allowed| allowed.trim() == "deny")
}

// ANCHOR: preserve_fds
/// Marks every fd from `first` on close-on-exec, so that the program inherits only
/// stdio and the `--preserve-fds` ones (3 up to `first - 1`). The fds stay usable until
/// the exec itself: init still needs its handshake socket until then.
pub fn set_cloexec_from(first: RawFd) -> Result<(), AttrsError> {
    let error = |source| AttrsError::Fds {
        what: "mark close-on-exec",
        first,
        source,
    };
    match close_range(first, libc::CLOSE_RANGE_CLOEXEC) {
        // ENOSYS: before Linux 5.9; EINVAL: the CLOEXEC flag came in 5.11.
        Err(Errno::ENOSYS | Errno::EINVAL) => {
            for_each_open_fd_from(first, set_cloexec).map_err(error)
        }
        result => result.map_err(|errno| error(errno.into())),
    }
}
// ANCHOR_END: preserve_fds

/// Closes every fd from `first` on, now. Only for the moment right before `exec`:
/// anything in this process still holding one of them is left with a dangling number.
pub fn close_fds_from(first: RawFd) -> Result<(), AttrsError> {
    let error = |source| AttrsError::Fds {
        what: "close",
        first,
        source,
    };
    match close_range(first, 0) {
        Err(Errno::ENOSYS) => for_each_open_fd_from(first, close).map_err(error),
        result => result.map_err(|errno| error(errno.into())),
    }
}

/// `close_range(2)` from `first` to the highest possible fd.
fn close_range(first: RawFd, flags: libc::c_uint) -> Result<(), Errno> {
    let first = libc::c_uint::try_from(first).map_err(|_| Errno::EBADF)?;
    // SAFETY: close_range takes integers only; closing is what the caller asked for.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, flags) };
    Errno::result(rc).map(drop)
}

/// The way before close_range: list `/proc/self/fd`, then act on each fd.
fn for_each_open_fd_from(first: RawFd, action: fn(RawFd)) -> io::Result<()> {
    let fds: Vec<RawFd> = fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    // The listing includes the directory's own fd, closed by now: acting on that
    // number fails with EBADF, harmlessly. (init has one thread, so nothing reuses it.)
    fds.into_iter().for_each(action);
    Ok(())
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on a number we do not own changes only its flags; FD_CLOEXEC
    // is the only fd flag there is, so nothing else is overwritten.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn close(fd: RawFd) {
    // SAFETY: the caller asked for every fd from `first` on to be closed.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Seek};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use oci_spec::runtime::{
        LinuxIOPriorityBuilder, LinuxPersonalityBuilder, PosixRlimitBuilder, SchedulerBuilder,
        UserBuilder,
    };

    /// Runs `argv` in a child that first calls `setup` on itself (between fork and
    /// exec, where process state can change without touching the test's own). Returns
    /// the child's stdout, or the error `setup` returned, as text. Bounded to 10 s.
    fn in_child(
        mut setup: impl FnMut() -> Result<(), AttrsError> + Send + Sync + 'static,
        argv: &[&str],
    ) -> Result<String, String> {
        let mut stdout = tempfile::tempfile().unwrap();
        let mut stderr = tempfile::tempfile().unwrap();
        let mut command = Command::new(argv[0]);
        command.args(&argv[1..]).stdin(Stdio::null());
        command
            .stdout(stdout.try_clone().unwrap())
            .stderr(stderr.try_clone().unwrap());
        // SAFETY: after fork only this closure runs. It may allocate, which glibc's
        // fork makes safe; it reports with a raw write(2) to the stderr file set up
        // above, not through std's stderr, whose lock another test thread may hold.
        unsafe {
            command.pre_exec(move || {
                setup().map_err(|error| {
                    let text = error.to_string();
                    libc::write(libc::STDERR_FILENO, text.as_ptr().cast(), text.len());
                    io::Error::from_raw_os_error(libc::EPERM)
                })
            });
        }
        let read = |file: &mut File| {
            let mut text = String::new();
            file.rewind().unwrap();
            file.read_to_string(&mut text).unwrap();
            text
        };
        let Ok(mut child) = command.spawn() else {
            return Err(read(&mut stderr));
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{argv:?} did not exit within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "{argv:?}: {status}; stderr: {}",
            read(&mut stderr)
        );
        Ok(read(&mut stdout))
    }

    /// The values of `/proc/self/status` lines named in `keys`, e.g. `Uid`.
    fn status_lines(status: &str, keys: &[&str]) -> Vec<String> {
        let wanted = |line: &&str| keys.iter().any(|key| line.starts_with(&format!("{key}:")));
        status
            .lines()
            .filter(wanted)
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line.
    fn stat_field(stat: &str, n: usize) -> String {
        // Fields 1 and 2 are the pid and "(comm)"; comm may hold spaces, so start
        // after its closing parenthesis, at field 3.
        let after_comm = stat.rsplit_once(") ").unwrap().1;
        after_comm.split_whitespace().nth(n - 3).unwrap().to_owned()
    }

    fn rlimit(kind: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
        PosixRlimitBuilder::default()
            .typ(kind)
            .soft(soft)
            .hard(hard)
            .build()
            .unwrap()
    }

    #[test]
    fn every_rlimit_name_maps_to_the_kernel_resource_of_that_name() {
        let table = [
            ("RLIMIT_CPU", libc::RLIMIT_CPU),
            ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
            ("RLIMIT_DATA", libc::RLIMIT_DATA),
            ("RLIMIT_STACK", libc::RLIMIT_STACK),
            ("RLIMIT_CORE", libc::RLIMIT_CORE),
            ("RLIMIT_RSS", libc::RLIMIT_RSS),
            ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
            ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
            ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
            ("RLIMIT_AS", libc::RLIMIT_AS),
            ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
            ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
            ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
            ("RLIMIT_NICE", libc::RLIMIT_NICE),
            ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
            ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
        ];
        for (name, number) in table {
            let kind: PosixRlimitType = name.parse().unwrap();
            assert_eq!(kind.to_string(), name);
            assert_eq!(resource_of(kind) as i64, number as i64, "{name}");
        }
    }

    #[test]
    fn an_unknown_rlimit_name_is_refused_when_the_spec_is_parsed_naming_it() {
        let json = r#"{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}"#;
        let error = serde_json::from_str::<PosixRlimit>(json).unwrap_err();
        assert!(
            error.to_string().contains("unknown variant `RLIMIT_BOGUS`"),
            "{error}"
        );
    }

    #[test]
    fn rlimits_reach_the_program() {
        let limits = [
            rlimit(PosixRlimitType::RlimitNofile, 512, 1024),
            rlimit(PosixRlimitType::RlimitCore, 0, 0),
        ];
        let limits_text = in_child(
            move || set_rlimits(&limits),
            &["/bin/cat", "/proc/self/limits"],
        )
        .unwrap();
        let row = |name: &str| {
            let line = limits_text.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..]
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(row("Max open files"), "512 1024");
        assert_eq!(row("Max core file size"), "0 0");
    }

    #[test]
    fn a_refused_rlimit_names_the_limit_and_values() {
        // soft > hard is refused whoever asks, and changes nothing: safe in-process.
        let error = set_rlimits(&[rlimit(PosixRlimitType::RlimitNofile, 2048, 1024)]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot set RLIMIT_NOFILE to soft 2048, hard 1024: EINVAL"),
            "{error}"
        );
    }

    #[test]
    fn oom_score_adj_reaches_the_program() {
        let score = in_child(
            || set_oom_score_adj(500),
            &["/bin/cat", "/proc/self/oom_score_adj"],
        )
        .unwrap();
        assert_eq!(score.trim(), "500");
        let error = set_oom_score_adj(1001).unwrap_err();
        assert_eq!(
            error.to_string(),
            "oomScoreAdj 1001 is out of range; it must be between -1000 and 1000"
        );
    }

    #[test]
    fn personality_reaches_the_program() {
        let persona = |domain| {
            LinuxPersonalityBuilder::default()
                .domain(domain)
                .build()
                .unwrap()
        };
        let linux32 = persona(LinuxPersonalityDomain::PerLinux32);
        let output = in_child(
            move || set_personality(&linux32),
            &["/bin/sh", "-c", "cat /proc/self/personality; uname -m"],
        )
        .unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines[0], "00000008");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(lines[1], "i686");

        let linux = persona(LinuxPersonalityDomain::PerLinux);
        let output = in_child(
            move || set_personality(&linux),
            &["/bin/cat", "/proc/self/personality"],
        )
        .unwrap();
        assert_eq!(output.trim(), "00000000");
    }

    #[test]
    fn personality_flags_are_refused() {
        let personality = LinuxPersonalityBuilder::default()
            .flags(vec!["ADDR_NO_RANDOMIZE".to_owned()])
            .build()
            .unwrap();
        let error = set_personality(&personality).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(r#"personality flags ["ADDR_NO_RANDOMIZE"] are not supported"#),
            "{error}"
        );
    }

    #[test]
    fn io_priority_reaches_the_program() {
        let cases = [
            (IOPriorityClass::IoprioClassBe, 6, "best-effort: prio 6"),
            (IOPriorityClass::IoprioClassRt, 2, "realtime: prio 2"),
            (IOPriorityClass::IoprioClassIdle, 0, "idle"),
        ];
        for (class, level, expected) in cases {
            let priority = LinuxIOPriorityBuilder::default()
                .class(class)
                .priority(level)
                .build()
                .unwrap();
            // `ionice` without arguments shows its own class and level.
            let output =
                in_child(move || set_io_priority(&priority), &["/usr/bin/ionice"]).unwrap();
            assert_eq!(output.trim(), expected);
        }
        let too_low = LinuxIOPriorityBuilder::default()
            .priority(8)
            .build()
            .unwrap();
        let error = set_io_priority(&too_low).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("ioPriority level 8 is out of range"),
            "{error}"
        );
    }

    #[test]
    fn scheduler_reaches_the_program() {
        // proc(5): field 19 is nice, 40 rt_priority, 41 policy.
        let batch = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedBatch)
            .nice(7)
            .build()
            .unwrap();
        let stat = in_child(
            move || set_scheduler(&batch),
            &["/bin/cat", "/proc/self/stat"],
        )
        .unwrap();
        assert_eq!(
            (stat_field(&stat, 41), stat_field(&stat, 19)),
            ("3".into(), "7".into())
        );

        let fifo = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedFifo)
            .priority(10)
            .flags(vec![LinuxSchedulerFlag::SchedResetOnFork])
            .build()
            .unwrap();
        let stat = in_child(
            move || set_scheduler(&fifo),
            &["/bin/cat", "/proc/self/stat"],
        )
        .unwrap();
        assert_eq!(
            (stat_field(&stat, 41), stat_field(&stat, 40)),
            ("1".into(), "10".into())
        );
    }

    #[test]
    fn deadline_scheduling_reaches_the_program() {
        let deadline = |runtime: u64, deadline: u64, period: u64| {
            let scheduler = SchedulerBuilder::default().policy(LinuxSchedulerPolicy::SchedDeadline);
            scheduler
                .runtime(runtime)
                .deadline(deadline)
                .period(period)
                .build()
                .unwrap()
        };
        // No shell: a SCHED_DEADLINE process may not fork.
        let valid = deadline(2_000_000, 10_000_000, 10_000_000);
        let stat = in_child(
            move || set_scheduler(&valid),
            &["/bin/cat", "/proc/self/stat"],
        )
        .unwrap();
        assert_eq!(stat_field(&stat, 41), "6");
        // The kernel wants runtime <= deadline <= period: each time went to its field.
        let deadline_after_period = deadline(2_000_000, 10_000_000, 5_000_000);
        let error = in_child(
            move || set_scheduler(&deadline_after_period),
            &["/bin/true"],
        )
        .unwrap_err();
        assert!(
            error.starts_with(
                "cannot set the scheduler to SCHED_DEADLINE (nice None, priority None): EINVAL"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_refused_scheduler_names_the_policy_and_values() {
        // SCHED_OTHER with a realtime priority is invalid for anyone: nothing changes.
        let invalid = SchedulerBuilder::default()
            .policy(LinuxSchedulerPolicy::SchedOther)
            .priority(5)
            .build()
            .unwrap();
        let error = set_scheduler(&invalid).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "cannot set the scheduler to SCHED_OTHER (nice None, priority Some(5)): EINVAL"
            ),
            "{error}"
        );
    }

    #[test]
    fn switch_user_sets_ids_groups_and_umask() {
        let user = UserBuilder::default()
            .uid(1000u32)
            .gid(1001u32)
            .additional_gids(vec![10u32, 20])
            .umask(0o027u32)
            .build()
            .unwrap();
        let status = in_child(
            move || switch_user(&user),
            &["/bin/cat", "/proc/self/status"],
        )
        .unwrap();
        assert_eq!(
            status_lines(&status, &["Umask", "Uid", "Gid", "Groups"]),
            [
                "Umask: 0027",
                "Uid: 1000 1000 1000 1000",
                "Gid: 1001 1001 1001 1001",
                "Groups: 10 20"
            ]
        );
    }

    #[test]
    fn switch_user_clears_groups_the_runtime_had() {
        let user = UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .build()
            .unwrap();
        let setup = move || {
            // As if the runtime itself ran with extra groups.
            setgroups(&[Gid::from_raw(4), Gid::from_raw(27)]).unwrap();
            switch_user(&user)
        };
        let status = in_child(setup, &["/bin/cat", "/proc/self/status"]).unwrap();
        assert_eq!(status_lines(&status, &["Groups"]), ["Groups:"]);
    }

    /// Enters a new user namespace mapping only root to root, with setgroups denied,
    /// as an unprivileged runtime's would be.
    fn enter_userns_denying_setgroups() -> Result<(), AttrsError> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).unwrap();
        fs::write("/proc/self/setgroups", "deny").unwrap();
        fs::write("/proc/self/uid_map", "0 0 1").unwrap();
        fs::write("/proc/self/gid_map", "0 0 1").unwrap();
        Ok(())
    }

    #[test]
    fn in_a_user_namespace_denying_setgroups_groups_are_skipped_or_refused() {
        let root = UserBuilder::default().build().unwrap();
        let setup = move || enter_userns_denying_setgroups().and_then(|()| switch_user(&root));
        let status = in_child(setup, &["/bin/cat", "/proc/self/status"]).unwrap();
        assert_eq!(status_lines(&status, &["Uid"]), ["Uid: 0 0 0 0"]);

        let with_groups = UserBuilder::default()
            .additional_gids(vec![10u32])
            .build()
            .unwrap();
        let setup =
            move || enter_userns_denying_setgroups().and_then(|()| switch_user(&with_groups));
        let error = in_child(setup, &["/bin/true"]).unwrap_err();
        assert!(
            error.starts_with(
                "cannot set additionalGids [10]: setgroups is denied in this user namespace"
            ),
            "{error}"
        );
    }

    /// Opens /dev/null (without close-on-exec) on fds 3, 4 and 10, runs `keep`, and
    /// reports which of the three the program finds open.
    fn fds_after(keep: fn(RawFd) -> Result<(), AttrsError>) -> String {
        let setup = move || {
            for fd in [3, 4, 10] {
                // SAFETY: plain system calls; dup2 gives the copies no close-on-exec.
                unsafe {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                    libc::dup2(null, fd);
                    if null != fd {
                        libc::close(null);
                    }
                }
            }
            keep(4)
        };
        let script = r#"for fd in 3 4 10; do [ -e /proc/self/fd/$fd ] && echo "$fd open" || echo "$fd closed"; done"#;
        in_child(setup, &["/bin/sh", "-c", script]).unwrap()
    }

    #[test]
    fn only_stdio_and_preserved_fds_reach_the_program() {
        // `--preserve-fds 1`: fd 3 is kept, everything from 4 on goes.
        let expected = "3 open\n4 closed\n10 closed\n";
        assert_eq!(fds_after(set_cloexec_from), expected);
        assert_eq!(fds_after(close_fds_from), expected);
    }

    #[test]
    fn the_proc_self_fd_fallback_does_the_same() {
        let expected = "3 open\n4 closed\n10 closed\n";
        let cloexec = |first| {
            for_each_open_fd_from(first, set_cloexec).map_err(|source| AttrsError::Fds {
                what: "test",
                first,
                source,
            })
        };
        let close_all = |first| {
            for_each_open_fd_from(first, close).map_err(|source| AttrsError::Fds {
                what: "test",
                first,
                source,
            })
        };
        assert_eq!(fds_after(cloexec), expected);
        assert_eq!(fds_after(close_all), expected);
    }
}
