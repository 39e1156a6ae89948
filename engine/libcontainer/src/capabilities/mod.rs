//! Capabilities: the five capability sets the container's process runs with.
//!
//! The container's init builds a [`CapabilityPlan`] from the spec's `process.capabilities`
//! while it may still allocate and log, then applies it around the switch to the container's
//! user, shortly before `execve`. The system calls sit behind the small [`CapSyscalls`] trait,
//! so their order is tested without root against a recording fake; [`Kernel`] is the real one.
//! Read next: `seccomp/mod.rs`, installed after this when `noNewPrivileges` is set (before it
//! otherwise, because installing a filter without no_new_privs needs CAP_SYS_ADMIN).
//!
//! # The sets
//!
//! - **bounding**: the ceiling. Nothing outside it can ever be gained again, not even by
//!   executing a setuid-root or file-capability program. For a root container it is what
//!   matters most: on `execve` as uid 0 the kernel refills permitted from it.
//! - **permitted**: what the process may turn on; **effective**: what is on now, and what the
//!   kernel checks.
//! - **inheritable**: what may pass through `execve` to a program whose file has the same
//!   inheritable bits.
//! - **ambient** (Linux 4.3+): what passes through `execve` to any program, so a non-root
//!   user keeps capabilities without file capabilities. Each must also be in permitted and
//!   inheritable.

#[cfg(test)]
mod tests;

use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Everything that can go wrong reading or applying the capability sets.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability {name:?}; use a name from capabilities(7), such as \"CAP_CHOWN\"")]
    UnknownName { name: String },

    #[error("cannot read {path}: {source}; is /proc mounted?")]
    ReadLastCap {
        path: &'static str,
        source: std::io::Error,
    },

    #[error("{path} holds {content:?}, not a capability number")]
    ParseLastCap { path: &'static str, content: String },

    #[error(
        "effective capability {} is not in the permitted set; add it to \
         process.capabilities.permitted or remove it from effective",
        name_of(*.number)
    )]
    EffectiveNotPermitted { number: u8 },

    #[error(
        "dropping {} from the bounding set failed: {errno}; shrinking the bounding set needs \
         CAP_SETPCAP, so it must happen before the process gives that up",
        name_of(*.number)
    )]
    DropBounding { number: u8, errno: Errno },

    #[error("prctl(PR_SET_KEEPCAPS, {keep}) failed: {errno}")]
    KeepCaps { keep: bool, errno: Errno },

    #[error(
        "capset(effective {:#x}, permitted {:#x}, inheritable {:#x}) failed: {errno}; \
         permitted can only shrink, and inheritable only within the bounding set",
        .sets.effective.bits(), .sets.permitted.bits(), .sets.inheritable.bits()
    )]
    Capset { sets: ProcessSets, errno: Errno },
}

// ---------------------------------------------------------------------------------------------
// Names and numbers
// ---------------------------------------------------------------------------------------------

/// Every capability the spec can name, at the index of its number in `<linux/capability.h>`.
const BY_NUMBER: [(Capability, &str); 41] = [
    (Capability::Chown, "CAP_CHOWN"),
    (Capability::DacOverride, "CAP_DAC_OVERRIDE"),
    (Capability::DacReadSearch, "CAP_DAC_READ_SEARCH"),
    (Capability::Fowner, "CAP_FOWNER"),
    (Capability::Fsetid, "CAP_FSETID"),
    (Capability::Kill, "CAP_KILL"),
    (Capability::Setgid, "CAP_SETGID"),
    (Capability::Setuid, "CAP_SETUID"),
    (Capability::Setpcap, "CAP_SETPCAP"),
    (Capability::LinuxImmutable, "CAP_LINUX_IMMUTABLE"),
    (Capability::NetBindService, "CAP_NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "CAP_NET_BROADCAST"),
    (Capability::NetAdmin, "CAP_NET_ADMIN"),
    (Capability::NetRaw, "CAP_NET_RAW"),
    (Capability::IpcLock, "CAP_IPC_LOCK"),
    (Capability::IpcOwner, "CAP_IPC_OWNER"),
    (Capability::SysModule, "CAP_SYS_MODULE"),
    (Capability::SysRawio, "CAP_SYS_RAWIO"),
    (Capability::SysChroot, "CAP_SYS_CHROOT"),
    (Capability::SysPtrace, "CAP_SYS_PTRACE"),
    (Capability::SysPacct, "CAP_SYS_PACCT"),
    (Capability::SysAdmin, "CAP_SYS_ADMIN"),
    (Capability::SysBoot, "CAP_SYS_BOOT"),
    (Capability::SysNice, "CAP_SYS_NICE"),
    (Capability::SysResource, "CAP_SYS_RESOURCE"),
    (Capability::SysTime, "CAP_SYS_TIME"),
    (Capability::SysTtyConfig, "CAP_SYS_TTY_CONFIG"),
    (Capability::Mknod, "CAP_MKNOD"),
    (Capability::Lease, "CAP_LEASE"),
    (Capability::AuditWrite, "CAP_AUDIT_WRITE"),
    (Capability::AuditControl, "CAP_AUDIT_CONTROL"),
    (Capability::Setfcap, "CAP_SETFCAP"),
    (Capability::MacOverride, "CAP_MAC_OVERRIDE"),
    (Capability::MacAdmin, "CAP_MAC_ADMIN"),
    (Capability::Syslog, "CAP_SYSLOG"),
    (Capability::WakeAlarm, "CAP_WAKE_ALARM"),
    (Capability::BlockSuspend, "CAP_BLOCK_SUSPEND"),
    (Capability::AuditRead, "CAP_AUDIT_READ"),
    (Capability::Perfmon, "CAP_PERFMON"),
    (Capability::Bpf, "CAP_BPF"),
    (Capability::CheckpointRestore, "CAP_CHECKPOINT_RESTORE"),
];

/// The kernel's number for `cap`. An exhaustive match rather than a search of `BY_NUMBER`,
/// so a capability added to oci-spec is a compile error here, not a runtime surprise.
pub fn number(cap: Capability) -> u8 {
    match cap {
        Capability::Chown => 0,
        Capability::DacOverride => 1,
        Capability::DacReadSearch => 2,
        Capability::Fowner => 3,
        Capability::Fsetid => 4,
        Capability::Kill => 5,
        Capability::Setgid => 6,
        Capability::Setuid => 7,
        Capability::Setpcap => 8,
        Capability::LinuxImmutable => 9,
        Capability::NetBindService => 10,
        Capability::NetBroadcast => 11,
        Capability::NetAdmin => 12,
        Capability::NetRaw => 13,
        Capability::IpcLock => 14,
        Capability::IpcOwner => 15,
        Capability::SysModule => 16,
        Capability::SysRawio => 17,
        Capability::SysChroot => 18,
        Capability::SysPtrace => 19,
        Capability::SysPacct => 20,
        Capability::SysAdmin => 21,
        Capability::SysBoot => 22,
        Capability::SysNice => 23,
        Capability::SysResource => 24,
        Capability::SysTime => 25,
        Capability::SysTtyConfig => 26,
        Capability::Mknod => 27,
        Capability::Lease => 28,
        Capability::AuditWrite => 29,
        Capability::AuditControl => 30,
        Capability::Setfcap => 31,
        Capability::MacOverride => 32,
        Capability::MacAdmin => 33,
        Capability::Syslog => 34,
        Capability::WakeAlarm => 35,
        Capability::BlockSuspend => 36,
        Capability::AuditRead => 37,
        Capability::Perfmon => 38,
        Capability::Bpf => 39,
        Capability::CheckpointRestore => 40,
    }
}

/// The capability with kernel number `number`, if berth knows one.
pub fn from_number(number: u8) -> Option<Capability> {
    BY_NUMBER.get(number as usize).map(|(cap, _)| *cap)
}

/// The spec's (and capabilities(7)'s) name of `cap`: `CAP_CHOWN`.
pub fn name(cap: Capability) -> &'static str {
    BY_NUMBER[number(cap) as usize].1
}

/// A name for capability `number`, known or not, for messages.
fn name_of(number: u8) -> String {
    match BY_NUMBER.get(number as usize) {
        Some((_, name)) => (*name).to_owned(),
        None => format!("capability {number}"),
    }
}

/// Parses a capability name, case-insensitively and with or without the `CAP_` prefix, as
/// oci-spec (and Docker's `--cap-add`) accept them: `CAP_SYS_ADMIN`, `sys_admin`.
pub fn parse(name: &str) -> Result<Capability, CapabilityError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    BY_NUMBER
        .iter()
        .find(|(_, known)| &known[4..] == bare)
        .map(|(cap, _)| *cap)
        .ok_or_else(|| CapabilityError::UnknownName {
            name: name.to_owned(),
        })
}

/// Where the kernel says which capability number is its highest.
const LAST_CAP_PATH: &str = "/proc/sys/kernel/cap_last_cap";

/// The highest capability number the running kernel knows (40 on Linux 5.9 and later).
pub fn kernel_last_cap() -> Result<u8, CapabilityError> {
    let path = LAST_CAP_PATH;
    let content = std::fs::read_to_string(path)
        .map_err(|source| CapabilityError::ReadLastCap { path, source })?;
    content
        .trim()
        .parse()
        .map_err(|_| CapabilityError::ParseLastCap { path, content })
}

// ---------------------------------------------------------------------------------------------
// Sets and the plan
// ---------------------------------------------------------------------------------------------

/// A set of capabilities as the kernel keeps it: bit `n` stands for capability number `n`,
/// the same bits `/proc/self/status` shows in hexadecimal (`CapEff: 0000000000000401`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    pub fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn contains(self, number: u8) -> bool {
        number < 64 && self.0 & (1 << number) != 0
    }

    pub fn insert(&mut self, number: u8) {
        self.0 |= 1 << number;
    }

    pub fn remove(&mut self, number: u8) {
        self.0 &= !(1 << number);
    }

    pub fn is_subset_of(self, other: CapSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The numbers in the set, lowest first.
    pub fn numbers(self) -> impl Iterator<Item = u8> {
        (0..64).filter(move |n| self.contains(*n))
    }
}

/// The three sets one `capset(2)` call sets together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessSets {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
}

/// The five sets the container's process should end up with, checked and ready to apply.
///
/// Building it parses, validates and logs; applying it only makes system calls, so it can
/// run in the init after `clone` (and in a test's forked child).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapabilityPlan {
    pub bounding: CapSet,
    pub process: ProcessSets,
    pub ambient: CapSet,
    /// The highest capability number the kernel knows: the bounding set is shrunk by
    /// dropping every number from 0 to this one that is not in `bounding`.
    pub last_cap: u8,
}

impl CapabilityPlan {
    /// The plan for the spec's `process.capabilities`, on a kernel whose highest capability
    /// is `last_cap` (see [`kernel_last_cap`]). A set the spec leaves out is empty.
    ///
    /// A capability this kernel does not know (`CAP_CHECKPOINT_RESTORE` before Linux 5.9) is
    /// skipped with a warning, as runc does ("ignoring unknown or unavailable capabilities"),
    /// so one `config.json` runs on old and new kernels. A name unknown to everyone never gets
    /// here: oci-spec refuses it when `config.json` is parsed. An ambient capability not in
    /// both permitted and inheritable is skipped with a warning too, as runc warns when the
    /// kernel refuses to raise it.
    pub fn from_spec(
        spec: &LinuxCapabilities,
        last_cap: u8,
    ) -> Result<CapabilityPlan, CapabilityError> {
        let set = |caps: &Option<Capabilities>| to_set(caps.iter().flatten(), last_cap);
        let process = ProcessSets {
            effective: set(spec.effective()),
            permitted: set(spec.permitted()),
            inheritable: set(spec.inheritable()),
        };
        let mut ambient = set(spec.ambient());
        if let Some(number) = process
            .effective
            .numbers()
            .find(|n| !process.permitted.contains(*n))
        {
            return Err(CapabilityError::EffectiveNotPermitted { number });
        }
        for number in ambient.numbers() {
            if !(process.permitted.contains(number) && process.inheritable.contains(number)) {
                tracing::warn!(capability = %name_of(number), "can't raise ambient capability: it must be in both permitted and inheritable; skipping it");
                ambient.remove(number);
            }
        }
        Ok(CapabilityPlan {
            bounding: set(spec.bounding()),
            process,
            ambient,
            last_cap,
        })
    }

    // ANCHOR: capability_order
    /// Step 1, while the process is still root with every capability: shrink the bounding
    /// set (which needs CAP_SETPCAP, so before capset can take it away), and ask the kernel to
    /// keep the permitted set through the coming `setuid` (which would otherwise clear it).
    pub fn before_user_switch(&self, sys: &impl CapSyscalls) -> Result<(), CapabilityError> {
        self.drop_bounding(sys)?;
        sys.set_keep_caps(true)
            .map_err(|errno| CapabilityError::KeepCaps { keep: true, errno })
    }

    /// Step 3, after the caller switched to the container's user (`setgroups`, `setgid`,
    /// `setuid`) in step 2: stop keeping capabilities, set effective, permitted and
    /// inheritable in one `capset` (setuid to non-root cleared effective; this restores it
    /// from the permitted set that PR_SET_KEEPCAPS kept), then raise the ambient ones, which
    /// the kernel allows only once they are permitted and inheritable.
    pub fn after_user_switch(&self, sys: &impl CapSyscalls) -> Result<(), CapabilityError> {
        sys.set_keep_caps(false)
            .map_err(|errno| CapabilityError::KeepCaps { keep: false, errno })?;
        let sets = self.process;
        sys.capset(sets)
            .map_err(|errno| CapabilityError::Capset { sets, errno })?;
        self.raise_ambient(sys);
        Ok(())
    }

    /// Both steps with no user switch between them, for a process that stays as it is.
    pub fn apply(&self, sys: &impl CapSyscalls) -> Result<(), CapabilityError> {
        self.before_user_switch(sys)?;
        self.after_user_switch(sys)
    }
    // ANCHOR_END: capability_order

    fn drop_bounding(&self, sys: &impl CapSyscalls) -> Result<(), CapabilityError> {
        for number in 0..=self.last_cap {
            if !self.bounding.contains(number) {
                sys.drop_bounding(number)
                    .map_err(|errno| CapabilityError::DropBounding { number, errno })?;
            }
        }
        Ok(())
    }

    /// Clears the ambient set (the init may have inherited one), then raises the plan's.
    /// Failures are warnings, as in runc: kernels before 4.3 have no ambient set at all.
    fn raise_ambient(&self, sys: &impl CapSyscalls) {
        if let Err(errno) = sys.clear_ambient() {
            tracing::warn!(%errno, "can't clear the ambient capability set");
        }
        for number in self.ambient.numbers() {
            if let Err(errno) = sys.raise_ambient(number) {
                tracing::warn!(capability = %name_of(number), %errno, "can't raise ambient capability");
            }
        }
    }
}

/// The set of `caps`, leaving out (with one warning) those above `last_cap`.
fn to_set<'a>(caps: impl Iterator<Item = &'a Capability>, last_cap: u8) -> CapSet {
    let mut set = CapSet::EMPTY;
    let mut unavailable = Vec::new();
    for cap in caps {
        match number(*cap) {
            n if n <= last_cap => set.insert(n),
            _ => unavailable.push(name(*cap)),
        }
    }
    if !unavailable.is_empty() {
        unavailable.sort_unstable();
        tracing::warn!(capabilities = ?unavailable, last_cap, "ignoring capabilities this kernel does not know");
    }
    set
}

// ---------------------------------------------------------------------------------------------
// The system calls
// ---------------------------------------------------------------------------------------------

/// The system calls that change the calling thread's capabilities: one method each, so a
/// recording fake can check their order.
pub trait CapSyscalls {
    /// `prctl(PR_CAPBSET_DROP, number)`
    fn drop_bounding(&self, number: u8) -> Result<(), Errno>;
    /// `prctl(PR_SET_KEEPCAPS, keep)`
    fn set_keep_caps(&self, keep: bool) -> Result<(), Errno>;
    /// `capset(2)` of effective, permitted and inheritable.
    fn capset(&self, sets: ProcessSets) -> Result<(), Errno>;
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`
    fn clear_ambient(&self) -> Result<(), Errno>;
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, number)`
    fn raise_ambient(&self, number: u8) -> Result<(), Errno>;
}

/// The real system calls, on the calling thread. None of them allocates.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kernel;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, passed as two 32-bit words each.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`
#[repr(C)]
struct CapHeader {
    version: u32,
    /// 0: the calling thread.
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit word of each set.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: these prctl options take integers only; no memory is passed.
    let result = unsafe { libc::prctl(option, arg2, arg3, 0, 0) };
    Errno::result(result).map(drop)
}

impl CapSyscalls for Kernel {
    fn drop_bounding(&self, number: u8) -> Result<(), Errno> {
        prctl(libc::PR_CAPBSET_DROP, number.into(), 0)
    }

    fn set_keep_caps(&self, keep: bool) -> Result<(), Errno> {
        prctl(libc::PR_SET_KEEPCAPS, keep.into(), 0)
    }

    // ANCHOR: capset
    fn capset(&self, sets: ProcessSets) -> Result<(), Errno> {
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        // Version 3 splits each 64-bit set into a low word (capabilities 0-31) and a high
        // word (32-63), in two consecutive structs.
        let word = |set: CapSet, i: u32| (set.bits() >> (32 * i)) as u32;
        let data = [0, 1].map(|i| CapData {
            effective: word(sets.effective, i),
            permitted: word(sets.permitted, i),
            inheritable: word(sets.inheritable, i),
        });
        // There is no libc wrapper for capset; the raw syscall takes the two pointers.
        // SAFETY: both point at live, correctly laid out structs. The kernel reads them, and
        // writes into the header only to report the version it prefers when it refuses ours.
        let header: *mut CapHeader = &mut header;
        let result = unsafe { libc::syscall(libc::SYS_capset, header, data.as_ptr()) };
        Errno::result(result).map(drop)
    }
    // ANCHOR_END: capset

    fn clear_ambient(&self) -> Result<(), Errno> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        )
    }

    fn raise_ambient(&self, number: u8) -> Result<(), Errno> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            number.into(),
        )
    }
}
