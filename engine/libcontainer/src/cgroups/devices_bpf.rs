//! Device rules on cgroup v2: `linux.resources.devices` compiled into an eBPF program.
//!
//! cgroup v1 has a `devices` controller that takes rules as text (`devices.allow`, see `v1.rs`).
//! cgroup v2 has no such controller: instead, the kernel runs a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program attached to the cgroup on every `open`/`mknod` of a device node, and the program's
//! answer (1 allow, 0 deny) decides. [`Cgroup::apply`](super::Cgroup::apply) calls [`install`]
//! on pure v2 hosts; `v2.rs` turns the spec into [`DeviceRule`]s with [`DeviceRule::from_spec`].
//!
//! The module has three parts, read in this order: the rules and their meaning
//! ([`DeviceRule::matches`]), the compiler ([`compile`]), and the `bpf(2)` calls that load and
//! attach the program ([`install`]). The tests run the compiled program in a tiny interpreter
//! and compare it with [`DeviceRule::matches`], and (as root) attach one to a real cgroup.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Everything that can go wrong turning device rules into an attached program.
#[derive(Debug, thiserror::Error)]
pub enum DevicesBpfError {
    #[error(
        "linux.resources.devices[{index}] has access {access:?}; \
         use a combination of the letters r, w and m (or leave it out for all three)"
    )]
    BadAccess { index: usize, access: String },

    #[error(
        "linux.resources.devices[{index}] has {field} = {value}, which is not a device number \
         (0..=4294967295, or -1 / absent for any); fix it in config.json"
    )]
    BadNumber {
        index: usize,
        field: &'static str,
        value: i64,
    },

    #[error(
        "the kernel refused berth's device program ({insns} instructions): {source}; \
         this is a berth bug, please report it with the verifier's log:\n{log}"
    )]
    Load {
        insns: usize,
        source: io::Error,
        log: String,
    },

    #[error("cannot open cgroup directory {path}: {source}; was the cgroup removed?")]
    OpenDir { path: PathBuf, source: io::Error },

    #[error("cannot {action} the device program on {path}: {source}; {hint}")]
    Attach {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------

/// The kernel's names for what a device program is asked about (`include/uapi/linux/bpf.h`).
/// The context's `access_type` is `(access << 16) | type`.
pub(crate) const DEV_BLOCK: u32 = 1;
pub(crate) const DEV_CHAR: u32 = 2;
pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Which device nodes a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `a`: block and char devices alike.
    All,
    Block,
    Char,
}

/// One entry of `linux.resources.devices`, checked and in the kernel's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    pub kind: Kind,
    /// `None` is the wildcard `*`.
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// A non-empty subset of [`ACC_ALL`].
    pub access: u32,
}

impl DeviceRule {
    /// Checks rule number `index` of the spec. `Ok(None)` for a FIFO (`p`) rule: FIFOs are not
    /// device nodes, and the kernel never asks a device program about them (v1 skips them too).
    ///
    /// Like runc, a negative major or minor means "any", the same as leaving it out.
    pub fn from_spec(
        index: usize,
        rule: &LinuxDeviceCgroup,
    ) -> Result<Option<Self>, DevicesBpfError> {
        let kind = match rule.typ().unwrap_or_default() {
            LinuxDeviceType::A => Kind::All,
            LinuxDeviceType::B => Kind::Block,
            // An unbuffered char device ("u") is a char device to the kernel.
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::P => return Ok(None),
        };
        let number = |field, value: Option<i64>| match value {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| DevicesBpfError::BadNumber {
                    index,
                    field,
                    value: n,
                }),
        };
        let access_text = rule.access().as_deref().unwrap_or_default();
        let mut access = 0;
        for letter in access_text.chars() {
            access |= match letter {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(DevicesBpfError::BadAccess {
                        index,
                        access: access_text.to_string(),
                    })
                }
            };
        }
        Ok(Some(DeviceRule {
            allow: rule.allow(),
            kind,
            major: number("major", rule.major())?,
            minor: number("minor", rule.minor())?,
            // An empty access means all three, as in v1's planner.
            access: if access == 0 { ACC_ALL } else { access },
        }))
    }

    // ANCHOR: device_rule_matches
    /// Does this rule decide a request for `access` (bits) to device `kind major:minor`?
    ///
    /// The device must be one the rule names. The access test depends on the verdict, as in
    /// v1's kernel code: an allow rule decides only if it grants *every* bit asked for
    /// (`rw` is not granted by an `r` rule), while a deny rule decides as soon as it forbids
    /// *any* bit asked for (a `w` deny refuses an `rw` open). The other way round, a
    /// `deny c 1:3 w` after `allow a rwm` would let `/dev/null` be opened read-write.
    ///
    /// This is the definition [`compile`] is held to; only the tests call it directly.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn matches(&self, kind: u32, major: u32, minor: u32, access: u32) -> bool {
        let kind_ok = match self.kind {
            Kind::All => true,
            Kind::Block => kind == DEV_BLOCK,
            Kind::Char => kind == DEV_CHAR,
        };
        let access_ok = if self.allow {
            access & !self.access & ACC_ALL == 0
        } else {
            access & self.access != 0
        };
        kind_ok
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && access_ok
    }
    // ANCHOR_END: device_rule_matches

    /// Matches every request, so no rule before it can ever decide anything.
    fn matches_everything(&self) -> bool {
        self.kind == Kind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }
}

/// The verdict of a rule list, as v1 gives it: the last rule that matches decides, and a
/// request no rule matches is denied. (A v1 cgroup starts from its parent's rules instead,
/// but every runtime's rule list starts with "deny all", so the two agree in practice.)
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn allows(rules: &[DeviceRule], kind: u32, major: u32, minor: u32, access: u32) -> bool {
    rules
        .iter()
        .rev()
        .find(|rule| rule.matches(kind, major, minor, access))
        .is_some_and(|rule| rule.allow)
}

impl fmt::Display for DeviceRule {
    /// The v1 form, `allow c 1:3 rwm`, for plans and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allow { "allow" } else { "deny" };
        let kind = match self.kind {
            Kind::All => "a",
            Kind::Block => "b",
            Kind::Char => "c",
        };
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, letter) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(letter);
            }
        }
        write!(
            f,
            "{verdict} {kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The compiler
// ---------------------------------------------------------------------------------------------

/// One eBPF instruction, exactly as the kernel's `struct bpf_insn` lays it out: 8 bytes.
/// `regs` holds two 4-bit fields, destination in the low nibble and source in the high one
/// (C bitfields on a little-endian machine, which is every machine berth runs on).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// Opcode parts: instruction class | operation | source. Only what [`compile`] emits.
pub(crate) mod op {
    pub const LDX: u8 = 0x01;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;
    /// LDX: load from memory, 32 bits wide.
    pub const MEM: u8 = 0x60;
    pub const W: u8 = 0x00;
    /// ALU/JMP operand: the immediate `imm` (not a register).
    pub const K: u8 = 0x00;
    pub const AND: u8 = 0x50;
    pub const RSH: u8 = 0x70;
    pub const MOV: u8 = 0xb0;
    pub const JA: u8 = 0x00;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const EXIT: u8 = 0x90;
}

/// Registers of the compiled program. r1 holds the context pointer on entry; r0 the answer.
const R0: u8 = 0;
const R_CTX: u8 = 1;
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// `dst = *(u32 *)(ctx + off)`
fn load_ctx(dst: u8, off: i16) -> Insn {
    insn(op::LDX | op::MEM | op::W, dst, R_CTX, off, 0)
}

/// `if dst <op> imm goto +off` (`off` counts instructions after this one).
fn jump(operation: u8, dst: u8, imm: u32, off: i16) -> Insn {
    // The kernel sign-extends `imm` to 64 bits; our registers hold zero-extended u32s, and
    // every constant compared here fits in 31 bits except a major/minor ≥ 2^31, which
    // JEQ/JNE then compare against a sign-extended value. `compile` avoids that below.
    insn(op::JMP | operation | op::K, dst, 0, off, imm as i32)
}

fn exit_with(verdict: bool) -> [Insn; 2] {
    [
        insn(op::ALU64 | op::MOV | op::K, R0, 0, 0, i32::from(verdict)),
        insn(op::JMP | op::EXIT, 0, 0, 0, 0),
    ]
}

// ANCHOR: compile_device_rules
/// Compiles `rules` into a device program with the meaning of [`allows`].
///
/// The program first unpacks the context `struct bpf_cgroup_dev_ctx { u32 access_type;
/// u32 major; u32 minor; }` into r2 = type, r3 = access, r4 = major, r5 = minor. Then, for
/// each rule from the **last** to the first, one block: "if this request is not the rule's,
/// jump to the next block; else return the rule's verdict". The first block that returns is
/// the last rule that matches, as in v1. Past every block, the program denies.
///
/// A rule that matches everything (`a *:* rwm`) ends the program early: nothing before it can
/// decide, and the verifier refuses a program with instructions no path reaches.
pub(crate) fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut program = vec![
        load_ctx(R_TYPE, 0),
        insn(op::ALU | op::AND | op::K, R_TYPE, 0, 0, 0xffff),
        load_ctx(R_ACCESS, 0),
        insn(op::ALU | op::RSH | op::K, R_ACCESS, 0, 0, 16),
        load_ctx(R_MAJOR, 4),
        load_ctx(R_MINOR, 8),
    ];
    for rule in rules.iter().rev() {
        if rule.matches_everything() {
            program.extend(exit_with(rule.allow));
            return program;
        }
        program.extend(rule_block(rule));
    }
    program.extend(exit_with(false));
    program
}

/// One rule's block. Its jumps are written with `off = NEXT` and patched once the block's
/// length is known, to land just past its end, on the next rule's block.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    const NEXT: i16 = i16::MAX;
    let mut block = Vec::new();
    match rule.kind {
        Kind::All => {}
        Kind::Block => block.push(jump(op::JNE, R_TYPE, DEV_BLOCK, NEXT)),
        Kind::Char => block.push(jump(op::JNE, R_TYPE, DEV_CHAR, NEXT)),
    }
    if rule.access != ACC_ALL {
        if rule.allow {
            // Asked for a bit the rule does not grant? Not this rule's request.
            block.push(jump(op::JSET, R_ACCESS, ACC_ALL & !rule.access, NEXT));
        } else {
            // Asked for a bit the rule forbids? This rule's; otherwise not. eBPF has no
            // "jump if no bit set", so: skip the escape when some bit is set.
            block.push(jump(op::JSET, R_ACCESS, rule.access, 1));
            block.push(insn(op::JMP | op::JA, 0, 0, NEXT, 0));
        }
    }
    for (register, number) in [(R_MAJOR, rule.major), (R_MINOR, rule.minor)] {
        if let Some(n) = number {
            // Compared as `imm`, which the kernel sign-extends: a number ≥ 2^31 would never
            // equal the zero-extended register. Device numbers are 12 (major) and 20 (minor)
            // bits on Linux, so such a rule can match nothing anyway: make it match nothing.
            match i32::try_from(n) {
                Ok(_) => block.push(jump(op::JNE, register, n, NEXT)),
                Err(_) => return Vec::new(),
            }
        }
    }
    block.extend(exit_with(rule.allow));
    let len = block.len();
    for (i, insn) in block.iter_mut().enumerate() {
        if insn.off == NEXT {
            insn.off = (len - i - 1) as i16;
        }
    }
    block
}
// ANCHOR_END: compile_device_rules

// ---------------------------------------------------------------------------------------------
// Loading and attaching: the bpf(2) system call
// ---------------------------------------------------------------------------------------------

/// `enum bpf_cmd` values, from `include/uapi/linux/bpf.h`.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
/// `enum bpf_prog_type` / `enum bpf_attach_type` values.
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Lets more programs be attached to this cgroup and its children; all of them must allow.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The kernel's `union bpf_attr` is one struct per command, overlaid. berth passes only the
/// struct of the command it calls, with the kernel's field order, and its size: the kernel
/// reads that many bytes and takes every field past them as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// For `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    /// Explicit padding, so it is zero: newer kernels read a pointer right after it.
    _reserved: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`. libc has no wrapper for it; this is the only unsafe call.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] struct of the layout the
    // kernel expects for `cmd`, and the size passed is its size; every pointer inside it
    // points to memory the caller keeps alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Hands `program` to the kernel, whose verifier checks it; returns the program's fd.
///
/// The license is berth's own. The kernel asks for a GPL-compatible one only from programs
/// that call GPL-only helper functions; this program calls no helper at all.
fn load(program: &[Insn]) -> Result<OwnedFd, DevicesBpfError> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let attr = |log: &mut [u8]| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        // Level 1 when a buffer is given: the verifier's reasoning, instruction by instruction.
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        // Null, not a dangling pointer, when there is no buffer: the kernel refuses a
        // buffer address without a log level (EINVAL).
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoadAttr::default()
    };
    // First without a log: asking for one costs the kernel time, and a full buffer is an
    // error of its own (ENOSPC). Only if the program is refused, load it again to learn why.
    let first = bpf(BPF_PROG_LOAD, &mut attr(&mut []));
    let source = match first {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    let mut log = vec![0u8; 1 << 20];
    let _ = bpf(BPF_PROG_LOAD, &mut attr(&mut log));
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    Err(DevicesBpfError::Load {
        insns: program.len(),
        source,
        log: String::from_utf8_lossy(&log[..end]).into_owned(),
    })
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

// ANCHOR: install_device_program
/// Enforces `rules` on the cgroup v2 directory `dir`: compiles them, loads the program and
/// attaches it, then detaches the programs berth attached before (a `berth-runc update`).
///
/// The new program is attached before the old ones go, as runc does, so there is no moment
/// without rules. The kernel keeps an attached program alive after its fd is closed, for as
/// long as the cgroup exists: nothing needs to stay open.
pub(crate) fn install(dir: &Path, rules: &[DeviceRule]) -> Result<(), DevicesBpfError> {
    let program = load(&compile(rules))?;
    let cgroup = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|source| DevicesBpfError::OpenDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let attach_error = |action, source: io::Error| DevicesBpfError::Attach {
        action,
        path: dir.to_path_buf(),
        hint: match source.raw_os_error() {
            Some(libc::EPERM) => "attaching needs root (CAP_SYS_ADMIN)",
            Some(libc::EBADF) | Some(libc::EINVAL) => "is it a cgroup2 directory?",
            _ => "the kernel needs CONFIG_CGROUP_BPF",
        },
        source,
    };
    let old = attached(&cgroup).map_err(|e| attach_error("list", e))?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| attach_error("attach", e))?;
    for id in old {
        detach(&cgroup, id).map_err(|e| attach_error("replace", e))?;
    }
    Ok(())
}
// ANCHOR_END: install_device_program

/// The ids of the device programs attached to this very cgroup (not those it inherits).
pub(crate) fn attached(cgroup: &File) -> io::Result<Vec<u32>> {
    // 64 is far more than berth ever leaves (one); the kernel says ENOSPC if there are more.
    let mut ids = vec![0u32; 64];
    let mut attr = ProgQueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..ProgQueryAttr::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Detaches the program with id `id`; detaching needs an fd of it, which its id gives.
fn detach(cgroup: &File, id: u32) -> io::Result<()> {
    let mut by_id = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    let program = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id)?);
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

#[cfg(test)]
mod tests;
