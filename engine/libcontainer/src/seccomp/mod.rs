//! Seccomp: the spec's `linux.seccomp` rules compiled to a classic BPF filter and installed.
//!
//! The container's init calls [`compile`] and [`filter_flags`] while it may still allocate,
//! and [`install`] just before `execve` (see there for when it must come earlier). Compiling
//! is done by hand, without libseccomp: `bpf.rs` assembles, `syscalls.rs` numbers the names.
//! Read next: `capabilities/mod.rs`, the other half of what the init drops before `exec`.
//!
//! # The filter berth emits
//!
//! ```text
//!     ld  [arch]                       ; which ABI is the process calling through?
//!     jeq #AUDIT_ARCH_X86_64, 0, 1
//!     ja  x86_64                       ; one section per architecture
//!     jeq #AUDIT_ARCH_I386, 0, 1
//!     ja  i386
//!     ret KILL_THREAD                  ; an architecture the profile does not cover
//! x86_64:
//!     ld  [nr]
//!     jge #0x40000000, 0, 1            ; the x32 bit: an x32 call, not an x86_64 one
//!     ret KILL_THREAD                  ; (or `ja x32` when the profile lists SCMP_ARCH_X32)
//!     jeq #0 (read), 0, 1              ; the dispatch list: two instructions a syscall
//!     ret ALLOW                        ; a syscall whose rule has no argument conditions
//!     jeq #56 (clone), 0, 1
//!     ja  clone_rules                  ; a syscall whose rules compare arguments
//!     ...
//!     ret <default action>
//! clone_rules:
//!     <argument comparisons, each jumping to the next rule when it fails>
//!     ret <the rule's action>
//!     ret <default action>
//! i386:
//!     ...
//! ```
//!
//! Semantics, chosen to match runc on top of libseccomp:
//! - a syscall from an architecture the filter has no section for gets `SCMP_ACT_KILL`
//!   (kill the thread), libseccomp's default "bad architecture" action, which runc keeps;
//! - the native architecture always has a section; a listed architecture gets one if this
//!   kernel can run it (i386 and x32 on x86_64) and berth has its table (not 32-bit arm);
//! - a name is resolved per architecture and skipped where that architecture lacks it
//!   (`chown32` exists on i386 only); a name no section knows is skipped with a warning;
//! - rules whose action equals the default action are skipped (they change nothing);
//! - the conditions of one rule are ANDed, except that, like runc, a rule comparing the same
//!   argument twice is split into one rule per condition (ORed);
//! - several rules for one syscall are tried in the order of the profile; the first whose
//!   conditions all hold decides. libseccomp's precedence between overlapping rules is
//!   undocumented; profiles in the wild (Docker's) never depend on it.
//!
//! A real engine (runc) also patches the filter so that syscalls newer than any the profile
//! knows return ENOSYS rather than the default errno, which lets a new libc fall back to an
//! older call; berth doesn't because that needs each kernel version's newest syscall, and
//! Docker's profile already answers ENOSYS for the case that matters, `clone3`.

mod bpf;
mod syscalls;

#[cfg(test)]
mod interpreter;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use libc::sock_filter;
use nix::errno::Errno;
use oci_spec::runtime::{
    Arch as SpecArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use bpf::{Assembler, Compare, Label, Target};

/// Everything that can go wrong turning a profile into an installed filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "seccomp action SCMP_ACT_NOTIFY ({context}) is not supported yet: berth has no \
         seccomp agent to hand the notification fd to; use SCMP_ACT_ERRNO or SCMP_ACT_TRACE"
    )]
    NotifyNotSupported { context: String },

    #[error(
        "errnoRet {value} ({context}) does not fit the 16 bits a seccomp filter can return; \
         use an errno below 65536"
    )]
    ErrnoOutOfRange { value: u32, context: String },

    #[error(
        "argument index {index} in a rule for syscall {syscall:?} is out of range; \
         syscalls have arguments 0 to 5"
    )]
    ArgumentIndex { syscall: String, index: usize },

    #[error(
        "berth's seccomp compiler has no syscall table for this machine's architecture \
         ({arch}); it knows x86_64 (with i386 and x32) and aarch64"
    )]
    UnsupportedHost { arch: &'static str },

    #[error(
        "the seccomp profile compiles to {len} BPF instructions, more than the kernel's limit \
         of {max}; drop rules, or list syscalls that share an action in one entry"
    )]
    TooLong { len: usize, max: usize },

    #[error(
        "instruction {at} of the seccomp filter {problem}; this is a bug in berth's seccomp \
         compiler, please report it with the profile"
    )]
    Compiler { at: usize, problem: &'static str },

    #[error("installing the seccomp filter (flags {flags:#x}) failed: {errno}; {}", install_hint(*.errno))]
    Install { errno: Errno, flags: u32 },

    #[error(
        "installing the seccomp filter with SECCOMP_FILTER_FLAG_TSYNC failed: thread {tid} \
         could not be synchronised (it has a diverging filter); install before starting threads"
    )]
    ThreadSync { tid: libc::c_long },
}

/// What the caller can do about a failed `seccomp(SECCOMP_SET_MODE_FILTER)`.
fn install_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EACCES => {
            "set no_new_privileges (prctl PR_SET_NO_NEW_PRIVS) first, or keep CAP_SYS_ADMIN \
             until the filter is installed"
        }
        Errno::EINVAL => {
            "the kernel rejected the program or a flag: LOG needs Linux 4.14, SPEC_ALLOW 4.17"
        }
        Errno::ENOSYS => "this kernel has no seccomp(2) (Linux 3.17+ with CONFIG_SECCOMP_FILTER)",
        Errno::ENOMEM => "the filters stacked on this process exceed the kernel's size limit",
        _ => "see seccomp(2)",
    }
}

// ---------------------------------------------------------------------------------------------
// Architectures
// ---------------------------------------------------------------------------------------------

/// An ABI a process can make syscalls through, as far as berth's compiler knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// 64-bit x86, the native ABI of an x86_64 kernel.
    X86_64,
    /// i386: 32-bit programs on an x86_64 kernel.
    X86,
    /// The x32 ABI: 32-bit pointers, 64-bit registers; reported as x86_64 by the kernel.
    X32,
    /// 64-bit arm, the native ABI of an arm64 kernel.
    Aarch64,
}

impl Arch {
    /// The architecture berth was built for, which is the kernel's native one.
    pub fn native() -> Result<Arch, SeccompError> {
        if cfg!(target_arch = "x86_64") {
            Ok(Arch::X86_64)
        } else if cfg!(target_arch = "x86") {
            Ok(Arch::X86)
        } else if cfg!(target_arch = "aarch64") {
            Ok(Arch::Aarch64)
        } else {
            Err(SeccompError::UnsupportedHost {
                arch: std::env::consts::ARCH,
            })
        }
    }

    /// The `AUDIT_ARCH_*` value the kernel puts in `seccomp_data.arch` for this ABI.
    pub fn audit_arch(self) -> u32 {
        match self {
            // x32 shares x86_64's value; the x32 bit in the syscall number tells them apart.
            Arch::X86_64 | Arch::X32 => 0xc000_003e,
            Arch::X86 => 0x4000_0003,
            Arch::Aarch64 => 0xc000_00b7,
        }
    }

    /// Whether a kernel whose native ABI is `native` can run programs of this ABI.
    fn runs_on(self, native: Arch) -> bool {
        match native {
            Arch::X86_64 => matches!(self, Arch::X86_64 | Arch::X86 | Arch::X32),
            other => self == other,
        }
    }

    /// The spec's architecture as one berth compiles for, if it is one.
    fn from_spec(arch: SpecArch, native: Arch) -> Option<Arch> {
        match arch {
            SpecArch::ScmpArchNative => Some(native),
            SpecArch::ScmpArchX86_64 => Some(Arch::X86_64),
            SpecArch::ScmpArchX86 => Some(Arch::X86),
            SpecArch::ScmpArchX32 => Some(Arch::X32),
            SpecArch::ScmpArchAarch64 => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

/// The architectures the filter gets a section for: the native one, then each listed one
/// this kernel can run. A real engine would also compile 32-bit arm on aarch64 hosts (and
/// every other architecture libseccomp knows); berth doesn't because it carries tables for
/// x86_64, i386, x32 and aarch64 only, so such calls get the bad-architecture action.
fn sections_for(spec: &LinuxSeccomp, native: Arch) -> Vec<Arch> {
    let mut arches = vec![native];
    for listed in spec.architectures().iter().flatten() {
        match Arch::from_spec(*listed, native) {
            Some(arch) if arch.runs_on(native) && !arches.contains(&arch) => arches.push(arch),
            // Listed twice, or an ABI this kernel cannot run, whose calls never happen.
            Some(_) => {}
            None => {
                tracing::debug!(arch = ?listed, "no syscall table for this seccomp architecture; its calls get the bad-architecture action")
            }
        }
    }
    arches
}

// ---------------------------------------------------------------------------------------------
// Actions and rules
// ---------------------------------------------------------------------------------------------

/// The errno `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` return when the spec gives no `errnoRet`:
/// EPERM, as runc does.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// The action of syscalls from an architecture the filter has no section for: libseccomp's
/// default `SCMP_ACT_KILL`, which kills the calling thread.
const BAD_ARCH_ACTION: u32 = libc::SECCOMP_RET_KILL_THREAD;

/// The `SECCOMP_RET_*` value the filter returns for a spec action. `context` names where
/// the action comes from, for error messages.
fn action_value(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    context: &str,
) -> Result<u32, SeccompError> {
    // The 16 "data" bits of the return value: the errno, or the value a tracer sees.
    // runc silently truncates a bigger value; berth says so instead.
    let data = || {
        let value = errno_ret.unwrap_or(DEFAULT_ERRNO);
        if value > libc::SECCOMP_RET_DATA {
            let context = context.to_owned();
            return Err(SeccompError::ErrnoOutOfRange { value, context });
        }
        Ok(value)
    };
    // `errnoRet` on any other action is ignored, as runc ignores it.
    Ok(match action {
        // SCMP_ACT_KILL predates KILL_PROCESS and has always meant "kill the thread".
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            libc::SECCOMP_RET_KILL_THREAD
        }
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data()?,
        LinuxSeccompAction::ScmpActTrace => libc::SECCOMP_RET_TRACE | data()?,
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        // A real engine would install with SECCOMP_FILTER_FLAG_NEW_LISTENER and pass the
        // fd to the agent at `listenerPath`; berth doesn't have a seccomp agent yet.
        LinuxSeccompAction::ScmpActNotify => {
            let context = context.to_owned();
            return Err(SeccompError::NotifyNotSupported { context });
        }
    })
}

/// One comparison of a syscall argument with a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Condition {
    /// Which argument, 0 to 5.
    index: usize,
    op: LinuxSeccompOperator,
    /// The constant; for `SCMP_CMP_MASKED_EQ`, the mask.
    value: u64,
    /// For `SCMP_CMP_MASKED_EQ`, what the masked argument must equal.
    value_two: u64,
}

/// "If every condition holds, return `action`."
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    action: u32,
    conditions: Vec<Condition>,
}

/// The rules one entry of the spec's `syscalls` list stands for, for each of its names.
fn rules_of(entry: &LinuxSyscall) -> Result<Vec<Rule>, SeccompError> {
    let names = entry.names().join(",");
    let action = action_value(
        entry.action(),
        entry.errno_ret(),
        &format!("syscalls {names}"),
    )?;
    let conditions = entry
        .args()
        .iter()
        .flatten()
        .map(|arg| condition_of(arg, &names))
        .collect::<Result<Vec<_>, _>>()?;
    // Like runc: when one argument is compared twice, each comparison becomes its own rule,
    // because "arg0 == 1 && arg0 == 2" could never match and profiles mean "either".
    let mut indexes: Vec<usize> = conditions.iter().map(|c| c.index).collect();
    indexes.sort_unstable();
    let repeats = indexes.windows(2).any(|pair| pair[0] == pair[1]);
    if repeats {
        let one_each = conditions.into_iter().map(|condition| Rule {
            action,
            conditions: vec![condition],
        });
        Ok(one_each.collect())
    } else {
        Ok(vec![Rule { action, conditions }])
    }
}

fn condition_of(arg: &LinuxSeccompArg, names: &str) -> Result<Condition, SeccompError> {
    if arg.index() > 5 {
        let syscall = names.to_owned();
        return Err(SeccompError::ArgumentIndex {
            syscall,
            index: arg.index(),
        });
    }
    Ok(Condition {
        index: arg.index(),
        op: arg.op(),
        value: arg.value(),
        value_two: arg.value_two().unwrap_or(0),
    })
}

/// The rules of one architecture section, by syscall number, each list in profile order.
type SectionRules = BTreeMap<u32, Vec<Rule>>;

/// Resolves the profile's names for each architecture. A name unknown to every section is
/// skipped with a warning (runc logs it at debug level, as "unknown seccomp syscall … ignored");
/// a name some section knows is silently skipped where it does not exist.
fn resolve(
    spec: &LinuxSeccomp,
    arches: &[Arch],
    default: u32,
) -> Result<Vec<(Arch, SectionRules)>, SeccompError> {
    let mut sections: Vec<(Arch, SectionRules)> = arches
        .iter()
        .map(|arch| (*arch, SectionRules::new()))
        .collect();
    for entry in spec.syscalls().iter().flatten() {
        let rules = rules_of(entry)?;
        if rules.iter().all(|rule| rule.action == default) {
            // What the default does anyway; libseccomp refuses such rules and runc drops them.
            continue;
        }
        for name in entry.names() {
            let mut known = false;
            for (arch, section) in sections.iter_mut() {
                if let Some(number) = syscalls::lookup(*arch, name) {
                    known = true;
                    section
                        .entry(number)
                        .or_default()
                        .extend(rules.iter().cloned());
                }
            }
            if !known {
                tracing::warn!(syscall = %name, arches = ?arches, "seccomp profile names a syscall none of the filter's architectures has; ignoring it");
            }
        }
    }
    Ok(sections)
}

// ---------------------------------------------------------------------------------------------
// Code generation
// ---------------------------------------------------------------------------------------------

/// Where the kernel puts each field of `struct seccomp_data` the filter reads.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// The offsets of the low and high 32-bit halves of argument `index`. BPF loads 32 bits at a
/// time, and the kernel stores each 64-bit argument in the machine's byte order.
fn argument_halves(index: usize) -> (u32, u32) {
    let start = OFFSET_ARGS + 8 * index as u32;
    if cfg!(target_endian = "little") {
        (start, start + 4)
    } else {
        (start + 4, start)
    }
}

fn high(value: u64) -> u32 {
    (value >> 32) as u32
}

fn low(value: u64) -> u32 {
    value as u32
}

// ANCHOR: compare_64bit
/// Emits a test of `condition` that goes on to the next instruction when it holds, and jumps
/// to `on_false` (however far) when it does not.
///
/// BPF's accumulator is 32 bits wide, so each 64-bit comparison looks at the high halves
/// first and reads the low halves only when the high halves are equal: `0x1_0000_0000 > 5`
/// even though its low half, 0, is smaller. Every jump inside stays within a few
/// instructions; the one long jump is the `ja` to `on_false`.
fn emit_condition(asm: &mut Assembler, condition: &Condition, on_false: Label) {
    let holds = asm.label();
    let fails = asm.label();
    let (yes, no) = (Target::To(holds), Target::To(fails));
    let halves = argument_halves(condition.index);
    let value = condition.value;
    match condition.op {
        LinuxSeccompOperator::ScmpCmpEq => equal(asm, halves, value, yes, no),
        LinuxSeccompOperator::ScmpCmpNe => equal(asm, halves, value, no, yes),
        LinuxSeccompOperator::ScmpCmpGt => above(asm, halves, value, Compare::Gt, yes, no),
        LinuxSeccompOperator::ScmpCmpGe => above(asm, halves, value, Compare::Ge, yes, no),
        // a <= v is "not a > v", and a < v is "not a >= v": the same code, branches swapped.
        LinuxSeccompOperator::ScmpCmpLe => above(asm, halves, value, Compare::Gt, no, yes),
        LinuxSeccompOperator::ScmpCmpLt => above(asm, halves, value, Compare::Ge, no, yes),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            masked_equal(asm, halves, value, condition.value_two, yes, no)
        }
    }
    asm.bind(fails);
    asm.jump_always(on_false);
    asm.bind(holds);
}

/// `arg == value`: both halves equal.
fn equal(asm: &mut Assembler, (lo, hi): (u32, u32), value: u64, yes: Target, no: Target) {
    asm.load(hi);
    asm.jump(Compare::Eq, high(value), Target::Next, no);
    asm.load(lo);
    asm.jump(Compare::Eq, low(value), yes, no);
}

/// `arg > value` (with `Compare::Gt`) or `arg >= value` (with `Compare::Ge`), unsigned.
fn above(
    asm: &mut Assembler,
    (lo, hi): (u32, u32),
    value: u64,
    low_compare: Compare,
    yes: Target,
    no: Target,
) {
    asm.load(hi);
    // A bigger high half wins whatever the low halves hold; a smaller one loses.
    asm.jump(Compare::Gt, high(value), yes, Target::Next);
    asm.jump(Compare::Eq, high(value), Target::Next, no);
    // Equal high halves: the low halves decide, with the comparison asked for.
    asm.load(lo);
    asm.jump(low_compare, low(value), yes, no);
}

/// `arg & mask == expected`, one half at a time.
fn masked_equal(
    asm: &mut Assembler,
    (lo, hi): (u32, u32),
    mask: u64,
    expected: u64,
    yes: Target,
    no: Target,
) {
    asm.load(hi);
    asm.and(high(mask));
    asm.jump(Compare::Eq, high(expected), Target::Next, no);
    asm.load(lo);
    asm.and(low(mask));
    asm.jump(Compare::Eq, low(expected), yes, no);
}
// ANCHOR_END: compare_64bit

/// The body of a syscall with conditional rules: each rule's conditions, then its action;
/// a failed condition jumps to the next rule, and after the last rule comes the default.
fn emit_rules(asm: &mut Assembler, rules: &[Rule], default: u32) {
    for rule in rules {
        let next_rule = asm.label();
        for condition in &rule.conditions {
            emit_condition(asm, condition, next_rule);
        }
        asm.ret(rule.action);
        asm.bind(next_rule);
    }
    asm.ret(default);
}

/// Labels of the architecture sections, so the arch dispatch and the x32 check can jump there.
struct SectionLabels(Vec<(Arch, Label)>);

impl SectionLabels {
    fn of(&self, arch: Arch) -> Option<Label> {
        self.0
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, label)| *label)
    }
}

// ANCHOR: dispatch
/// One architecture's section: load the syscall number, then a list of two-instruction
/// tests, one per syscall the profile names. Syscalls with argument conditions jump to a body
/// placed after the list, so the list stays two instructions a syscall however long the
/// bodies are, and every test's `jf` is 1.
///
/// A real engine would arrange the tests as a binary search on the number (libseccomp's
/// "binary tree" optimization), so a call costs ~9 tests instead of up to a few hundred;
/// berth doesn't because the flat list reads like the profile it came from.
fn emit_section(
    asm: &mut Assembler,
    arch: Arch,
    rules: &SectionRules,
    default: u32,
    labels: &SectionLabels,
) {
    asm.load(OFFSET_NR);
    if arch == Arch::X86_64 {
        // An x32 call arrives as AUDIT_ARCH_X86_64 with the x32 bit set in its number.
        // Without this test a profile denying mkdir (83) would let an x32 program call it as
        // 0x40000053: that number matches no test below and gets the default action, which
        // in a deny-list profile is ALLOW.
        match labels.of(Arch::X32) {
            Some(x32) => asm.far_jump_if(Compare::Ge, syscalls::X32_SYSCALL_BIT, x32),
            None => asm.return_if(Compare::Ge, syscalls::X32_SYSCALL_BIT, BAD_ARCH_ACTION),
        }
    }
    let mut bodies = Vec::new();
    for (number, syscall_rules) in rules {
        match syscall_rules.first() {
            // A rule without conditions decides for every call, and hides the rules after it.
            Some(first) if first.conditions.is_empty() => {
                asm.return_if(Compare::Eq, *number, first.action)
            }
            _ => {
                let body = asm.label();
                asm.far_jump_if(Compare::Eq, *number, body);
                bodies.push((body, syscall_rules));
            }
        }
    }
    asm.ret(default);
    for (body, syscall_rules) in bodies {
        asm.bind(body);
        emit_rules(asm, syscall_rules, default);
    }
}
// ANCHOR_END: dispatch

/// The whole program: dispatch on the architecture, then one section per architecture.
fn emit_filter(asm: &mut Assembler, sections: &[(Arch, SectionRules)], default: u32) {
    let labels = SectionLabels(
        sections
            .iter()
            .map(|(arch, _)| (*arch, asm.label()))
            .collect(),
    );
    asm.load(OFFSET_ARCH);
    for (arch, label) in &labels.0 {
        // x32 is reached from the x86_64 section's number test, not from here.
        if *arch != Arch::X32 {
            asm.far_jump_if(Compare::Eq, arch.audit_arch(), *label);
        }
    }
    asm.ret(BAD_ARCH_ACTION);
    for ((arch, rules), (_, label)) in sections.iter().zip(&labels.0) {
        asm.bind(*label);
        emit_section(asm, *arch, rules, default, &labels);
    }
}

// ---------------------------------------------------------------------------------------------
// The public API
// ---------------------------------------------------------------------------------------------

/// The kernel's limit on the length of one filter (`BPF_MAXINSNS`).
pub const MAX_INSTRUCTIONS: usize = libc::BPF_MAXINSNS as usize;

/// Compiles the profile for the architecture berth runs on.
pub fn compile(spec: &LinuxSeccomp) -> Result<Vec<sock_filter>, SeccompError> {
    compile_for(spec, Arch::native()?)
}

/// Compiles the profile as if `native` were the kernel's architecture: tests use it to
/// compile and interpret aarch64 filters on an x86_64 machine.
pub fn compile_for(spec: &LinuxSeccomp, native: Arch) -> Result<Vec<sock_filter>, SeccompError> {
    let default = action_value(
        spec.default_action(),
        spec.default_errno_ret(),
        "defaultAction",
    )?;
    let arches = sections_for(spec, native);
    let sections = resolve(spec, &arches, default)?;
    let mut asm = Assembler::new();
    emit_filter(&mut asm, &sections, default);
    if asm.len() > MAX_INSTRUCTIONS {
        let (len, max) = (asm.len(), MAX_INSTRUCTIONS);
        return Err(SeccompError::TooLong { len, max });
    }
    asm.finish()
}

/// The `SECCOMP_FILTER_FLAG_*` bits to install a filter with, as `seccomp(2)` takes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterFlags(u32);

impl FilterFlags {
    pub fn bits(self) -> u32 {
        self.0
    }
}

/// The install flags the spec asks for.
///
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` only changes how a notify listener waits, and the
/// kernel refuses it without one; berth creates no listener (SCMP_ACT_NOTIFY is refused), so
/// the flag is dropped.
pub fn filter_flags(spec: &LinuxSeccomp) -> FilterFlags {
    let mut bits = 0;
    for flag in spec.flags().iter().flatten() {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        } as u32;
    }
    FilterFlags(bits)
}

// ANCHOR: install
/// Installs `program` on the calling thread (or, with `SECCOMP_FILTER_FLAG_TSYNC`, on every
/// thread of the process). From here on, every syscall goes through the filter, including the
/// `execve` the init makes next, so the profile must allow it.
///
/// The kernel accepts a filter only from a process with `no_new_privs` set or with
/// `CAP_SYS_ADMIN`: otherwise a filter could trick a setuid program into misbehaving. Setting
/// `no_new_privs` (`process.noNewPrivileges`) is the caller's job; without it, install while
/// CAP_SYS_ADMIN is still held, that is before dropping capabilities.
///
/// It makes one system call and allocates nothing, so a forked child may call it.
/// A real engine would fall back to `prctl(PR_SET_SECCOMP)` on kernels older than 3.17;
/// berth doesn't because those kernels are long out of support.
pub fn install(program: &[sock_filter], flags: FilterFlags) -> Result<(), SeccompError> {
    if program.len() > MAX_INSTRUCTIONS {
        let (len, max) = (program.len(), MAX_INSTRUCTIONS);
        return Err(SeccompError::TooLong { len, max });
    }
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        // The kernel only reads the program; `sock_fprog` just isn't declared const.
        filter: program.as_ptr() as *mut sock_filter,
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies it.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags.bits(),
            &prog as *const libc::sock_fprog,
        )
    };
    match result {
        0 => Ok(()),
        // With TSYNC, a positive result is the id of a thread that could not follow.
        tid if tid > 0 => Err(SeccompError::ThreadSync { tid }),
        _ => Err(SeccompError::Install {
            errno: Errno::last(),
            flags: flags.bits(),
        }),
    }
}
// ANCHOR_END: install
