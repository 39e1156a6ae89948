//! Tests of the seccomp compiler: hand-picked cases run in the BPF interpreter, a property
//! test against a direct evaluation of the rules, a Docker-sized profile, and filters
//! installed in the real kernel in forked children.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use proptest::prelude::*;
use serde_json::json;

use super::interpreter::{run, validate, SeccompData};
use super::*;

// The kernel's values, written out here rather than taken from the code under test.
const AUDIT_X86_64: u32 = 0xc000_003e;
const AUDIT_I386: u32 = 0x4000_0003;
const AUDIT_AARCH64: u32 = 0xc000_00b7;
const X32_BIT: u32 = 0x4000_0000;
const KILL_THREAD: u32 = 0x0000_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const TRAP: u32 = 0x0003_0000;
const LOG: u32 = 0x7ffc_0000;
const ALLOW: u32 = 0x7fff_0000;

fn errno(value: u32) -> u32 {
    0x0005_0000 | value
}

fn trace(value: u32) -> u32 {
    0x7ff0_0000 | value
}

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).expect("test profile is valid OCI JSON")
}

fn number(arch: Arch, name: &str) -> u32 {
    syscalls::lookup(arch, name).unwrap_or_else(|| panic!("{name} on {arch:?}"))
}

/// A compiled, validated program, and a way to ask it about one call.
struct Filter(Vec<sock_filter>);

impl Filter {
    fn new(spec: &LinuxSeccomp, native: Arch) -> Filter {
        let program = compile_for(spec, native).expect("profile compiles");
        validate(&program).expect("the kernel would accept the program");
        Filter(program)
    }

    fn x86_64(spec: &LinuxSeccomp) -> Filter {
        Filter::new(spec, Arch::X86_64)
    }

    fn raw(&self, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let data = SeccompData {
            nr: nr as i32,
            arch,
            instruction_pointer: 0x7fff_1234,
            args,
        };
        run(&self.0, &data)
    }

    /// The action for syscall `name` of `arch`, with the given first arguments.
    fn call(&self, arch: Arch, name: &str, first_args: &[u64]) -> u32 {
        let mut args = [0u64; 6];
        args[..first_args.len()].copy_from_slice(first_args);
        self.raw(arch.audit_arch(), number(arch, name), args)
    }
}

// ---------------------------------------------------------------------------------------------
// Actions, errors, tables
// ---------------------------------------------------------------------------------------------

#[test]
fn actions_map_to_the_kernels_return_values() {
    use LinuxSeccompAction::*;
    let value = |action, errno_ret| action_value(action, errno_ret, "test").unwrap();
    assert_eq!(value(ScmpActAllow, None), ALLOW);
    assert_eq!(value(ScmpActKill, None), KILL_THREAD);
    assert_eq!(value(ScmpActKillThread, None), KILL_THREAD);
    assert_eq!(value(ScmpActKillProcess, None), KILL_PROCESS);
    assert_eq!(value(ScmpActTrap, None), TRAP);
    assert_eq!(value(ScmpActLog, None), LOG);
    assert_eq!(
        value(ScmpActErrno, None),
        errno(1),
        "EPERM by default, as runc"
    );
    assert_eq!(value(ScmpActErrno, Some(38)), errno(38));
    assert_eq!(value(ScmpActTrace, None), trace(1));
    assert_eq!(value(ScmpActTrace, Some(7)), trace(7));
    assert_eq!(
        value(ScmpActAllow, Some(38)),
        ALLOW,
        "errnoRet ignored, as runc"
    );
}

#[test]
fn errno_must_fit_the_16_data_bits() {
    assert_eq!(
        action_value(LinuxSeccompAction::ScmpActErrno, Some(0xffff), "x").unwrap(),
        errno(0xffff)
    );
    let err = action_value(
        LinuxSeccompAction::ScmpActErrno,
        Some(0x1_0000),
        "syscalls mkdir",
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("65536") && message.contains("mkdir"),
        "{message}"
    );
}

#[test]
fn notify_is_refused_with_a_clear_error() {
    let as_default = profile(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    let message = compile_for(&as_default, Arch::X86_64)
        .unwrap_err()
        .to_string();
    assert!(message.contains("SCMP_ACT_NOTIFY") && message.contains("not supported yet"));
    assert!(message.contains("defaultAction"), "{message}");

    let in_rule = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["connect"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let message = compile_for(&in_rule, Arch::X86_64).unwrap_err().to_string();
    assert!(message.contains("connect"), "{message}");
}

#[test]
fn argument_index_above_five_is_refused() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    }));
    let message = compile_for(&spec, Arch::X86_64).unwrap_err().to_string();
    assert!(
        message.contains("index 6") && message.contains("ioctl"),
        "{message}"
    );
}

#[test]
fn tables_are_sorted_by_name_with_distinct_numbers() {
    for arch in [Arch::X86_64, Arch::X86, Arch::X32, Arch::Aarch64] {
        let table = syscalls::table(arch);
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "{arch:?} sorted");
        let numbers: BTreeSet<u32> = table.iter().map(|(_, n)| *n).collect();
        assert_eq!(numbers.len(), table.len(), "{arch:?} numbers distinct");
    }
    let x32 = syscalls::table(Arch::X32);
    assert!(
        x32.iter().all(|(_, n)| n & X32_BIT != 0),
        "x32 numbers carry the bit"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x86_64_table_agrees_with_libc() {
    let expected = [
        ("read", libc::SYS_read),
        ("open", libc::SYS_open),
        ("mkdir", libc::SYS_mkdir),
        ("mkdirat", libc::SYS_mkdirat),
        ("getpid", libc::SYS_getpid),
        ("clone", libc::SYS_clone),
        ("clone3", libc::SYS_clone3),
        ("execve", libc::SYS_execve),
        ("personality", libc::SYS_personality),
        ("seccomp", libc::SYS_seccomp),
        ("socket", libc::SYS_socket),
        ("openat2", libc::SYS_openat2),
        ("fchmodat2", libc::SYS_fchmodat2),
    ];
    for (name, sys) in expected {
        assert_eq!(
            syscalls::lookup(Arch::X86_64, name),
            Some(sys as u32),
            "{name}"
        );
    }
}

#[test]
fn other_tables_spot_checked() {
    // aarch64 uses the generic table: no mkdir or open, only their *at forms.
    assert_eq!(syscalls::lookup(Arch::Aarch64, "mkdirat"), Some(34));
    assert_eq!(syscalls::lookup(Arch::Aarch64, "openat"), Some(56));
    assert_eq!(syscalls::lookup(Arch::Aarch64, "getpid"), Some(172));
    assert_eq!(syscalls::lookup(Arch::Aarch64, "execve"), Some(221));
    assert_eq!(syscalls::lookup(Arch::Aarch64, "mkdir"), None);
    assert_eq!(syscalls::lookup(Arch::X86, "execve"), Some(11));
    assert_eq!(syscalls::lookup(Arch::X86, "mkdir"), Some(39));
    assert_eq!(syscalls::lookup(Arch::X86, "chown32"), Some(212));
    assert_eq!(syscalls::lookup(Arch::X86, "clock_gettime64"), Some(403));
    assert_eq!(syscalls::lookup(Arch::X86_64, "chown32"), None);
    assert_eq!(syscalls::lookup(Arch::X32, "execve"), Some(X32_BIT | 520));
    assert_eq!(syscalls::lookup(Arch::X32, "mkdir"), Some(X32_BIT | 83));
    for arch in [Arch::X86_64, Arch::X86, Arch::X32, Arch::Aarch64] {
        assert_eq!(
            syscalls::lookup(arch, "mseal"),
            Some(syscalls_base(arch) + 462)
        );
    }
}

fn syscalls_base(arch: Arch) -> u32 {
    if arch == Arch::X32 {
        X32_BIT
    } else {
        0
    }
}

#[test]
fn flags_map_to_seccomp_bits() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    }));
    assert_eq!(filter_flags(&spec).bits(), 1 | 2 | 4);
    let none = profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    assert_eq!(filter_flags(&none).bits(), 0);
}

// ---------------------------------------------------------------------------------------------
// Hand-picked behaviour, checked in the interpreter
// ---------------------------------------------------------------------------------------------

#[test]
fn denies_one_syscall_and_allows_the_rest() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.call(Arch::X86_64, "mkdir", &[]), errno(1));
    assert_eq!(filter.call(Arch::X86_64, "mkdirat", &[]), errno(1));
    assert_eq!(filter.call(Arch::X86_64, "getpid", &[]), ALLOW);
    assert_eq!(
        filter.raw(AUDIT_X86_64, 5000, [0; 6]),
        ALLOW,
        "unknown number"
    );
}

#[test]
fn default_errno_ret_is_used_for_the_default_action() {
    let spec = profile(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
    );
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.call(Arch::X86_64, "write", &[]), errno(38));
    assert_eq!(filter.call(Arch::X86_64, "read", &[]), ALLOW);
}

#[test]
fn foreign_architectures_get_kill_thread() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.raw(AUDIT_X86_64, 0, [0; 6]), ALLOW);
    assert_eq!(
        filter.raw(AUDIT_I386, 0, [0; 6]),
        KILL_THREAD,
        "i386 not listed"
    );
    assert_eq!(filter.raw(AUDIT_AARCH64, 0, [0; 6]), KILL_THREAD);
    assert_eq!(filter.raw(0x1234_5678, 0, [0; 6]), KILL_THREAD);
}

#[test]
fn x32_calls_are_not_mistaken_for_x86_64_calls() {
    let deny_mkdir = |arches: serde_json::Value| {
        profile(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
        )
    };
    // x32 not listed: any x32 call is a foreign-architecture call.
    let filter = Filter::x86_64(&deny_mkdir(json!(["SCMP_ARCH_X86_64"])));
    assert_eq!(filter.raw(AUDIT_X86_64, X32_BIT | 83, [0; 6]), KILL_THREAD);
    assert_eq!(filter.raw(AUDIT_X86_64, 83, [0; 6]), errno(1));
    // x32 listed: its calls get the rules, by their x32 numbers.
    let filter = Filter::x86_64(&deny_mkdir(json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"])));
    assert_eq!(filter.call(Arch::X32, "mkdir", &[]), errno(1));
    assert_eq!(filter.call(Arch::X32, "execve", &[]), ALLOW);
    assert_eq!(filter.call(Arch::X86_64, "mkdir", &[]), errno(1));
}

#[test]
fn i386_section_uses_i386_numbers() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["mkdir", "chown32"], "action": "SCMP_ACT_ERRNO"}]}));
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.call(Arch::X86, "mkdir", &[]), errno(1));
    assert_eq!(filter.call(Arch::X86, "chown32", &[]), errno(1));
    // i386's mkdir is 39, which is getpid on x86_64: the sections must not be confused.
    assert_eq!(filter.raw(AUDIT_X86_64, 39, [0; 6]), ALLOW);
    assert_eq!(filter.call(Arch::X86_64, "mkdir", &[]), errno(1));
}

#[test]
fn aarch64_filters_use_aarch64_numbers() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}));
    let filter = Filter::new(&spec, Arch::Aarch64);
    assert_eq!(filter.call(Arch::Aarch64, "mkdirat", &[]), errno(1));
    assert_eq!(filter.call(Arch::Aarch64, "getpid", &[]), ALLOW);
    // No arm table and i386 cannot run on aarch64: both are foreign.
    assert_eq!(filter.raw(0x4000_0028, 39, [0; 6]), KILL_THREAD, "arm");
    assert_eq!(filter.raw(AUDIT_I386, 39, [0; 6]), KILL_THREAD, "i386");
    assert_eq!(filter.raw(AUDIT_X86_64, 83, [0; 6]), KILL_THREAD, "x86_64");
}

/// Values around a 64-bit boundary where hand-written BPF goes wrong: equal low halves with
/// different high halves, and the reverse.
const EDGE_VALUES: [u64; 9] = [
    0,
    5,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0004,
    0x1_0000_0005,
    0x1_0000_0006,
    0x2_0000_0005,
    u64::MAX,
];

#[test]
fn every_operator_compares_all_64_bits() {
    type Holds = fn(u64, u64) -> bool;
    let ops: [(&str, Holds); 6] = [
        ("SCMP_CMP_EQ", |a, v| a == v),
        ("SCMP_CMP_NE", |a, v| a != v),
        ("SCMP_CMP_LT", |a, v| a < v),
        ("SCMP_CMP_LE", |a, v| a <= v),
        ("SCMP_CMP_GT", |a, v| a > v),
        ("SCMP_CMP_GE", |a, v| a >= v),
    ];
    for (op, holds) in ops {
        for value in EDGE_VALUES {
            // On argument 3, to check the offsets of an argument other than the first.
            let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9,
                              "args": [{"index": 3, "value": value, "op": op}]}]}));
            let filter = Filter::x86_64(&spec);
            for arg in EDGE_VALUES {
                let expected = if holds(arg, value) { errno(9) } else { ALLOW };
                let got = filter.call(Arch::X86_64, "ioctl", &[0, 0, 0, arg]);
                assert_eq!(got, expected, "arg {arg:#x} {op} {value:#x}");
            }
        }
    }
}

#[test]
fn masked_eq_compares_the_masked_argument_with_value_two() {
    // Docker's clone rule: allowed only when no namespace flag is set.
    let namespaces: u64 = 0x7e02_0000;
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": namespaces, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    let filter = Filter::x86_64(&spec);
    let clone = |flags| filter.call(Arch::X86_64, "clone", &[flags]);
    assert_eq!(
        clone(0x0001_1111),
        ALLOW,
        "CLONE_VM|CLONE_FS|… plus SIGCHLD"
    );
    assert_eq!(clone(0x0002_0000), errno(1), "CLONE_NEWNS");
    assert_eq!(clone(0x4000_0000), errno(1), "CLONE_NEWNET");
    assert_eq!(
        clone(0xffff_ffff_0000_0000),
        ALLOW,
        "high bits outside the mask"
    );

    let high_mask = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mmap"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 2, "value": 0xff_0000_00ffu64, "valueTwo": 0x12_0000_0034u64,
                      "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    let filter = Filter::x86_64(&high_mask);
    let mmap = |prot| filter.call(Arch::X86_64, "mmap", &[0, 0, prot]);
    assert_eq!(mmap(0x12_abcd_ef34), errno(1));
    assert_eq!(mmap(0x13_0000_0034), ALLOW);
    assert_eq!(mmap(0x12_0000_0035), ALLOW);
}

#[test]
fn rules_for_one_syscall_are_ored_and_their_conditions_anded() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
         "args": [{"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]}));
    let filter = Filter::x86_64(&spec);
    let kill = |pid, sig| filter.call(Arch::X86_64, "kill", &[pid, sig]);
    assert_eq!(kill(1, 9), errno(1), "both conditions of rule 1");
    assert_eq!(kill(2, 9), ALLOW, "only one condition of rule 1");
    assert_eq!(kill(1, 15), errno(2), "rule 2");
    assert_eq!(kill(7, 15), errno(2), "rule 2");
}

#[test]
fn comparing_one_argument_twice_means_either_as_in_runc() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}));
    let filter = Filter::x86_64(&spec);
    let personality = |p| filter.call(Arch::X86_64, "personality", &[p]);
    assert_eq!(personality(0), ALLOW);
    assert_eq!(personality(8), ALLOW);
    assert_eq!(personality(1), errno(1));
}

#[test]
fn the_first_matching_rule_decides() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
         "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_LOG"},
        {"names": ["socket"], "action": "SCMP_ACT_KILL_PROCESS"}]}));
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.call(Arch::X86_64, "socket", &[40]), errno(97));
    assert_eq!(filter.call(Arch::X86_64, "socket", &[2]), LOG);
}

#[test]
fn rules_with_the_default_action_are_skipped_as_in_runc() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}));
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.call(Arch::X86_64, "read", &[3]), ALLOW);
    // The same action with another errno is not the default, and is kept.
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
         "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}));
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.call(Arch::X86_64, "read", &[3]), errno(5));
    assert_eq!(filter.call(Arch::X86_64, "read", &[4]), ALLOW);
}

#[test]
fn unknown_names_are_skipped_and_the_rest_applied() {
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall", "arm_fadvise64_64", "mkdir"], "action": "SCMP_ACT_TRAP"}]}));
    let filter = Filter::x86_64(&spec);
    assert_eq!(filter.call(Arch::X86_64, "mkdir", &[]), TRAP);
}

// ---------------------------------------------------------------------------------------------
// Size: jump ranges and the kernel's length limit
// ---------------------------------------------------------------------------------------------

/// Syscalls that need privileges a container should not have: the deny part of a
/// Docker-like profile, written for these tests.
#[rustfmt::skip]
const PRIVILEGED: &[&str] = &[
    "_sysctl", "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount",
    "mount_setattr", "move_mount", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "process_vm_readv",
    "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot", "request_key",
    "set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs", "syslog",
    "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
];

/// Syscalls the profile below allows only with some arguments.
const CONDITIONAL: &[&str] = &["clone", "clone3", "personality", "socket"];

/// A profile the size of Docker's default one, and larger: deny by default, allow every
/// syscall of x86_64, i386 and x32 except the privileged ones, with Docker-style argument
/// rules for clone, personality and socket.
fn docker_like_profile() -> LinuxSeccomp {
    let mut allowed = BTreeSet::new();
    for arch in [Arch::X86_64, Arch::X86, Arch::X32] {
        allowed.extend(syscalls::table(arch).iter().map(|(name, _)| *name));
    }
    for name in PRIVILEGED.iter().chain(CONDITIONAL) {
        allowed.remove(name);
    }
    let personality = |value: u64| {
        json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]})
    };
    profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": allowed, "action": "SCMP_ACT_ALLOW"},
            personality(0), personality(8), personality(0x20000), personality(0x20008),
            personality(0xffff_ffff),
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
        ]
    }))
}

#[test]
fn a_docker_sized_profile_fits_and_behaves() {
    let spec = docker_like_profile();
    let filter = Filter::x86_64(&spec);
    assert!(
        filter.0.len() > 2000,
        "big enough to need far jumps: {}",
        filter.0.len()
    );
    assert!(filter.0.len() <= MAX_INSTRUCTIONS);
    for arch in [Arch::X86_64, Arch::X86, Arch::X32] {
        for (name, _) in syscalls::table(arch) {
            let expected = if PRIVILEGED.contains(name) {
                errno(1)
            } else if CONDITIONAL.contains(name) {
                continue;
            } else {
                ALLOW
            };
            assert_eq!(filter.call(arch, name, &[]), expected, "{name} on {arch:?}");
        }
        assert_eq!(
            filter.call(arch, "clone", &[0x0001_1111]),
            ALLOW,
            "{arch:?}"
        );
        assert_eq!(
            filter.call(arch, "clone", &[0x1000_0000]),
            errno(1),
            "CLONE_NEWUSER"
        );
        assert_eq!(filter.call(arch, "clone3", &[]), errno(38));
        assert_eq!(filter.call(arch, "personality", &[0x20008]), ALLOW);
        assert_eq!(filter.call(arch, "personality", &[0xffff_ffff]), ALLOW);
        assert_eq!(filter.call(arch, "personality", &[0x1_ffff_ffff]), errno(1));
        assert_eq!(filter.call(arch, "personality", &[3]), errno(1));
    }
    // socket is a syscall on x86_64 and x32; i386 also has it since Linux 4.3.
    assert_eq!(filter.call(Arch::X86_64, "socket", &[2]), ALLOW);
    assert_eq!(
        filter.call(Arch::X86_64, "socket", &[40]),
        errno(1),
        "AF_VSOCK"
    );
    assert_eq!(filter.call(Arch::X86, "socket", &[40 | 1 << 32]), ALLOW);
    assert_eq!(filter.raw(AUDIT_AARCH64, 0, [0; 6]), KILL_THREAD);
}

#[test]
fn long_rule_bodies_keep_every_jump_in_range() {
    // 300 conditional rules on one syscall: its body is ~3000 instructions long, so a
    // conditional jump from its first rule to the default action would need ~3000.
    let rules: Vec<_> = (0..300u64)
        .map(|i| {
            json!({"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1,
                   "args": [{"index": 1, "value": 0x1000_0000_0000 + i, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    let filter = Filter::x86_64(&spec);
    for i in [0u64, 1, 150, 298, 299] {
        let got = filter.call(Arch::X86_64, "ioctl", &[0, 0x1000_0000_0000 + i]);
        assert_eq!(got, errno(i as u32 + 1), "rule {i}");
    }
    assert_eq!(
        filter.call(Arch::X86_64, "ioctl", &[0, 0x1000_0000_0000 + 300]),
        ALLOW
    );
    assert_eq!(filter.call(Arch::X86_64, "ioctl", &[0, 5]), ALLOW);
}

#[test]
fn a_profile_longer_than_the_kernel_allows_is_refused() {
    let rules: Vec<_> = (0..1000u64)
        .map(|i| {
            json!({"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    let err = compile_for(&spec, Arch::X86_64).unwrap_err();
    assert!(matches!(err, SeccompError::TooLong { .. }), "{err}");
    assert!(err.to_string().contains("4096"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Property test: the compiled filter agrees with a direct evaluation of the rules
// ---------------------------------------------------------------------------------------------

/// What the profile means, evaluated directly on the spec without BPF: the semantics the
/// module documentation promises, written a second time, independently of the compiler.
fn evaluate(spec: &LinuxSeccomp, data: &SeccompData) -> u32 {
    let i386_listed = spec
        .architectures()
        .iter()
        .flatten()
        .any(|a| *a == oci_spec::runtime::Arch::ScmpArchX86);
    let nr = data.nr as u32;
    let arch = match data.arch {
        AUDIT_X86_64 if nr & X32_BIT == 0 => Arch::X86_64,
        AUDIT_I386 if i386_listed => Arch::X86,
        _ => return KILL_THREAD,
    };
    let default = expected_action(spec.default_action(), spec.default_errno_ret());
    for entry in spec.syscalls().iter().flatten() {
        let action = expected_action(entry.action(), entry.errno_ret());
        let names_this_call = entry
            .names()
            .iter()
            .any(|name| syscalls::lookup(arch, name) == Some(nr));
        if action != default && names_this_call && arguments_match(entry, &data.args) {
            return action;
        }
    }
    default
}

fn expected_action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> u32 {
    use LinuxSeccompAction::*;
    match action {
        ScmpActKill | ScmpActKillThread => KILL_THREAD,
        ScmpActKillProcess => KILL_PROCESS,
        ScmpActTrap => TRAP,
        ScmpActErrno => errno(errno_ret.unwrap_or(1)),
        ScmpActTrace => trace(errno_ret.unwrap_or(1)),
        ScmpActLog => LOG,
        ScmpActAllow => ALLOW,
        ScmpActNotify => unreachable!("not generated"),
    }
}

fn arguments_match(entry: &LinuxSyscall, args: &[u64; 6]) -> bool {
    let conditions = entry.args().clone().unwrap_or_default();
    let holds = |c: &oci_spec::runtime::LinuxSeccompArg| {
        let (a, v) = (args[c.index()], c.value());
        match c.op() {
            LinuxSeccompOperator::ScmpCmpNe => a != v,
            LinuxSeccompOperator::ScmpCmpLt => a < v,
            LinuxSeccompOperator::ScmpCmpLe => a <= v,
            LinuxSeccompOperator::ScmpCmpEq => a == v,
            LinuxSeccompOperator::ScmpCmpGe => a >= v,
            LinuxSeccompOperator::ScmpCmpGt => a > v,
            LinuxSeccompOperator::ScmpCmpMaskedEq => a & v == c.value_two().unwrap_or(0),
        }
    };
    let indexes: BTreeSet<usize> = conditions.iter().map(|c| c.index()).collect();
    if indexes.len() < conditions.len() {
        conditions.iter().any(holds)
    } else {
        conditions.iter().all(holds)
    }
}

/// A few syscalls, so that generated rules often share one.
const HOT_NAMES: &[&str] = &["read", "write", "ioctl", "mmap", "clone", "kill", "socket"];

fn any_name() -> impl Strategy<Value = String> {
    let table = syscalls::table(Arch::X86_64);
    prop_oneof![
        3 => proptest::sample::select(HOT_NAMES).prop_map(str::to_owned),
        1 => proptest::sample::select(table).prop_map(|(name, _)| name.to_owned()),
        1 => Just("chown32".to_owned()),   // i386 only
        1 => Just("not_a_syscall".to_owned()),
    ]
}

/// Values near the edges of 32-bit halves, and any other.
fn any_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        0u64..4,
        any::<u32>().prop_map(u64::from),
        any::<u32>().prop_map(|high| u64::from(high) << 32),
        (0u64..3, 0u64..3).prop_map(|(high, low)| high << 32 | low),
        any::<u64>(),
    ]
}

fn any_action() -> impl Strategy<Value = (LinuxSeccompAction, Option<u32>)> {
    use LinuxSeccompAction::*;
    prop_oneof![
        Just((ScmpActAllow, None)),
        Just((ScmpActKillProcess, None)),
        Just((ScmpActKill, None)),
        Just((ScmpActTrap, None)),
        Just((ScmpActLog, None)),
        proptest::option::of(0u32..3).prop_map(|e| (ScmpActErrno, e)),
        proptest::option::of(0u32..0x1_0000).prop_map(|e| (ScmpActTrace, e)),
    ]
}

fn any_operator() -> impl Strategy<Value = LinuxSeccompOperator> {
    use LinuxSeccompOperator::*;
    proptest::sample::select(vec![
        ScmpCmpNe,
        ScmpCmpLt,
        ScmpCmpLe,
        ScmpCmpEq,
        ScmpCmpGe,
        ScmpCmpGt,
        ScmpCmpMaskedEq,
    ])
}

fn any_rule() -> impl Strategy<Value = LinuxSyscall> {
    let arg = (
        0usize..6,
        any_operator(),
        any_value(),
        proptest::option::of(any_value()),
    );
    (
        proptest::collection::vec(any_name(), 1..4),
        any_action(),
        proptest::collection::vec(arg, 0..4),
    )
        .prop_map(|(names, (action, errno_ret), args)| {
            let args: Vec<_> = args
                .into_iter()
                .map(|(index, op, value, value_two)| {
                    let arg = LinuxSeccompArgBuilder::default()
                        .index(index)
                        .op(op)
                        .value(value);
                    let arg = match value_two {
                        Some(two) => arg.value_two(two),
                        None => arg,
                    };
                    arg.build().unwrap()
                })
                .collect();
            let rule = LinuxSyscallBuilder::default()
                .names(names)
                .action(action)
                .args(args);
            let rule = match errno_ret {
                Some(e) => rule.errno_ret(e),
                None => rule,
            };
            rule.build().unwrap()
        })
}

fn any_profile() -> impl Strategy<Value = LinuxSeccomp> {
    (
        any_action(),
        proptest::collection::vec(any_rule(), 0..40),
        any::<bool>(),
    )
        .prop_map(|((default, errno_ret), rules, with_i386)| {
            let mut arches = vec![oci_spec::runtime::Arch::ScmpArchX86_64];
            if with_i386 {
                arches.push(oci_spec::runtime::Arch::ScmpArchX86);
            }
            let spec = LinuxSeccompBuilder::default()
                .default_action(default)
                .architectures(arches)
                .syscalls(rules);
            let spec = match errno_ret {
                Some(e) => spec.default_errno_ret(e),
                None => spec,
            };
            spec.build().unwrap()
        })
}

/// Calls aimed at the profile: its syscalls' numbers and values at and around its constants.
fn calls_for(spec: &LinuxSeccomp) -> impl Strategy<Value = Vec<SeccompData>> {
    let mut numbers = vec![0u32, 9999, X32_BIT | 1];
    let mut values = vec![0u64, u64::MAX];
    for entry in spec.syscalls().iter().flatten() {
        for name in entry.names() {
            numbers.extend(syscalls::lookup(Arch::X86_64, name));
            numbers.extend(syscalls::lookup(Arch::X86, name));
        }
        for arg in entry.args().iter().flatten() {
            for v in [arg.value(), arg.value_two().unwrap_or(0)] {
                let swapped = v.rotate_left(32);
                values.extend([v, v.wrapping_add(1), v.wrapping_sub(1), swapped]);
                values.extend([v ^ 1 << 32, v & 0xffff_ffff, v & !0xffff_ffff]);
            }
        }
    }
    let arch =
        proptest::sample::select(vec![AUDIT_X86_64, AUDIT_X86_64, AUDIT_I386, AUDIT_AARCH64]);
    let nr = proptest::sample::select(numbers);
    let value = prop_oneof![4 => proptest::sample::select(values), 1 => any::<u64>()];
    let args = proptest::array::uniform6(value);
    let call = (arch, nr, args).prop_map(|(arch, nr, args)| SeccompData {
        nr: nr as i32,
        arch,
        instruction_pointer: 0,
        args,
    });
    proptest::collection::vec(call, 1..64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_compiled_filter_agrees_with_direct_evaluation(
        (spec, calls) in any_profile().prop_flat_map(|spec| {
            let calls = calls_for(&spec);
            (Just(spec), calls)
        })
    ) {
        let program = compile_for(&spec, Arch::X86_64).unwrap();
        prop_assert!(validate(&program).is_ok(), "{:?}", validate(&program));
        for call in calls {
            prop_assert_eq!(run(&program, &call), evaluate(&spec, &call), "call {:x?}", call);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real kernel, in forked children
// ---------------------------------------------------------------------------------------------

/// Runs `child` in a forked child and returns how it ended. The test harness is
/// multi-threaded, so `child` must only make async-signal-safe calls: system calls, no
/// allocation, no locks, no panics. It reports through its exit code.
fn in_child(child: impl FnOnce() -> i32) -> WaitStatus {
    // SAFETY: the child only runs `child`, which keeps to async-signal-safe calls, then _exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // A child killed by SIGSYS would dump core into the crate directory.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
            let code = child();
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

fn exited_with(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        _ => None,
    }
}

fn seccomp_available() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let available = status.contains("Seccomp:");
    if !available {
        eprintln!("skipping: this kernel has no seccomp");
    }
    available
}

fn set_no_new_privs() -> bool {
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 }
}

#[test]
fn kernel_denies_mkdir_with_eperm_and_allows_the_rest() {
    if !seccomp_available() {
        return;
    }
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}));
    let program = compile(&spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let denied = CString::new(dir.path().join("denied").as_os_str().as_bytes()).unwrap();
    let status = in_child(|| {
        if !set_no_new_privs() {
            return 10;
        }
        if install(&program, FilterFlags::default()).is_err() {
            return 11;
        }
        if unsafe { libc::mkdir(denied.as_ptr(), 0o755) } == 0 {
            return 12;
        }
        if Errno::last() != Errno::EPERM {
            return 13;
        }
        if unsafe { libc::getppid() } <= 0 {
            return 14;
        }
        0
    });
    assert_eq!(exited_with(status), Some(0), "{status:?}");
    assert!(!dir.path().join("denied").exists());
}

#[test]
fn kernel_compares_both_halves_of_64_bit_arguments() {
    if !seccomp_available() || !cfg!(target_pointer_width = "64") {
        return;
    }
    const MAGIC: u64 = 0x1234_5678_9abc_def0;
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
         "args": [{"index": 0, "value": MAGIC, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 43,
         "args": [{"index": 2, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT"}]}]}));
    let program = compile(&spec).unwrap();
    // getpid and getppid ignore their arguments, but the filter sees the registers anyway.
    let getpid = |arg: u64| unsafe { libc::syscall(libc::SYS_getpid, arg) };
    let getppid = |arg: u64| unsafe { libc::syscall(libc::SYS_getppid, 0, 0, arg) };
    let status = in_child(|| {
        if !set_no_new_privs() || install(&program, FilterFlags::default()).is_err() {
            return 10;
        }
        if getpid(MAGIC) != -1 || Errno::last() != Errno::from_raw(42) {
            return 11;
        }
        if getpid(MAGIC & 0xffff_ffff) <= 0 || getpid(MAGIC & !0xffff_ffff) <= 0 {
            return 12; // only one half equal: must not match
        }
        if getppid(0x1_0000_0001) != -1 || Errno::last() != Errno::from_raw(43) {
            return 13;
        }
        if getppid(0xffff_ffff) <= 0 || getppid(0x1_0000_0000) <= 0 {
            return 14; // bigger low half, smaller value; equal value
        }
        0
    });
    assert_eq!(exited_with(status), Some(0), "{status:?}");
}

#[test]
fn kernel_kills_the_process_with_sigsys_for_kill_process_and_trap() {
    if !seccomp_available() {
        return;
    }
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"] {
        let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]}));
        let program = compile(&spec).unwrap();
        let status = in_child(|| {
            if !set_no_new_privs() || install(&program, FilterFlags::default()).is_err() {
                return 10;
            }
            unsafe { libc::syscall(libc::SYS_getppid) };
            20 // still alive: the filter did not act
        });
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
            "{action}: {status:?}"
        );
    }
}

#[test]
fn kernel_accepts_the_specs_flags() {
    if !seccomp_available() {
        return;
    }
    let spec = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 44}]}));
    let program = compile(&spec).unwrap();
    let flags = filter_flags(&spec);
    let status = in_child(|| {
        if !set_no_new_privs() || install(&program, flags).is_err() {
            return 10;
        }
        // Through syscall(): glibc's getppid() "cannot fail" and does not set errno.
        if unsafe { libc::syscall(libc::SYS_getppid) } != -1 || Errno::last() != Errno::from_raw(44)
        {
            return 11;
        }
        0
    });
    assert_eq!(exited_with(status), Some(0), "{status:?}");
}

#[test]
fn kernel_refusals_come_with_a_hint() {
    if !seccomp_available() {
        return;
    }
    let program = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
    // An unknown flag bit: the kernel says EINVAL, and the message names the flags.
    let status = in_child(|| {
        if !set_no_new_privs() {
            return 10;
        }
        match install(&program, FilterFlags(0x8000)) {
            Err(SeccompError::Install {
                errno: Errno::EINVAL,
                flags: 0x8000,
            }) => 0,
            _ => 11,
        }
    });
    assert_eq!(exited_with(status), Some(0), "{status:?}");
    let message = SeccompError::Install {
        errno: Errno::EACCES,
        flags: 0,
    }
    .to_string();
    assert!(message.contains("no_new_privileges") && message.contains("CAP_SYS_ADMIN"));
}
