//! Tests of the capability sets: names and numbers, the plan built from a spec, the order of
//! the system calls (against a recording fake), and, as root, the real sets of a forked child
//! read back from `/proc/self/status`.

use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult};
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn spec(json: serde_json::Value) -> LinuxCapabilities {
    serde_json::from_value(json).expect("test capabilities are valid OCI JSON")
}

fn set_of(numbers: &[u8]) -> CapSet {
    let mut set = CapSet::EMPTY;
    numbers.iter().for_each(|n| set.insert(*n));
    set
}

const CHOWN: u8 = 0;
const KILL: u8 = 5;
const NET_BIND_SERVICE: u8 = 10;

// ---------------------------------------------------------------------------------------------
// Names and numbers
// ---------------------------------------------------------------------------------------------

#[test]
fn numbers_follow_linux_capability_h() {
    assert_eq!(number(Capability::Chown), 0);
    assert_eq!(number(Capability::Setpcap), 8);
    assert_eq!(number(Capability::NetBindService), 10);
    assert_eq!(number(Capability::SysAdmin), 21);
    assert_eq!(number(Capability::AuditRead), 37);
    assert_eq!(number(Capability::CheckpointRestore), 40);
    assert_eq!(name(Capability::SysAdmin), "CAP_SYS_ADMIN");
    assert_eq!(from_number(41), None);
}

#[test]
fn every_capability_round_trips_through_number_and_name() {
    for n in 0..=40u8 {
        let cap = from_number(n).unwrap();
        assert_eq!(number(cap), n, "{cap:?}");
        assert_eq!(parse(name(cap)).unwrap(), cap);
        // The table's names are the ones oci-spec reads from config.json.
        let from_json: Capability = serde_json::from_value(json!(name(cap))).unwrap();
        assert_eq!(from_json, cap);
    }
}

proptest! {
    #[test]
    fn names_parse_in_any_case_with_or_without_prefix(n in 0u8..=40, lower in any::<bool>(), prefix in any::<bool>()) {
        let cap = from_number(n).unwrap();
        let mut written = name(cap).to_owned();
        if !prefix {
            written = written["CAP_".len()..].to_owned();
        }
        if lower {
            written = written.to_lowercase();
        }
        prop_assert_eq!(parse(&written).unwrap(), cap);
    }

    #[test]
    fn other_names_are_refused_by_name(name in "[A-Z_]{1,20}") {
        let known = BY_NUMBER.iter().any(|(_, n)| n[4..] == *name.strip_prefix("CAP_").unwrap_or(&name));
        prop_assume!(!known);
        let message = parse(&name).unwrap_err().to_string();
        prop_assert!(message.contains(&format!("{name:?}")), "{}", message);
    }
}

#[test]
fn the_kernels_last_capability_is_readable() {
    let last = kernel_last_cap().unwrap();
    assert!((36..64).contains(&last), "{last}");
}

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

#[test]
fn the_plan_holds_each_set_as_bits() {
    let caps = spec(json!({
        "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    }));
    let plan = CapabilityPlan::from_spec(&caps, 40).unwrap();
    assert_eq!(plan.bounding, set_of(&[CHOWN, KILL, NET_BIND_SERVICE]));
    assert_eq!(plan.bounding.bits(), 0x421);
    assert_eq!(plan.process.effective, set_of(&[CHOWN]));
    assert_eq!(plan.process.permitted, set_of(&[CHOWN, NET_BIND_SERVICE]));
    assert_eq!(plan.process.inheritable, set_of(&[NET_BIND_SERVICE]));
    assert_eq!(plan.ambient, set_of(&[NET_BIND_SERVICE]));
}

#[test]
fn sets_the_spec_leaves_out_are_empty() {
    let plan = CapabilityPlan::from_spec(&spec(json!({})), 40).unwrap();
    assert_eq!(plan.bounding, CapSet::EMPTY);
    assert_eq!(plan.process, ProcessSets::default());
    assert_eq!(plan.ambient, CapSet::EMPTY);
}

#[test]
fn capabilities_the_kernel_does_not_know_are_skipped_as_in_runc() {
    // A 5.4 kernel: cap_last_cap is 39, CAP_CHECKPOINT_RESTORE (40) came in 5.9.
    let caps = spec(json!({
        "bounding": ["CAP_CHOWN", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"],
        "permitted": ["CAP_CHECKPOINT_RESTORE"]
    }));
    let plan = CapabilityPlan::from_spec(&caps, 39).unwrap();
    assert_eq!(plan.bounding, set_of(&[CHOWN, 39]));
    assert_eq!(plan.process.permitted, CapSet::EMPTY);
}

#[test]
fn effective_outside_permitted_is_refused_by_name() {
    let caps = spec(json!({"effective": ["CAP_KILL"], "permitted": ["CAP_CHOWN"]}));
    let message = CapabilityPlan::from_spec(&caps, 40)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("CAP_KILL") && message.contains("permitted"),
        "{message}"
    );
}

#[test]
fn ambient_capabilities_need_permitted_and_inheritable() {
    let caps = spec(json!({
        "permitted": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    }));
    let plan = CapabilityPlan::from_spec(&caps, 40).unwrap();
    assert_eq!(plan.ambient, set_of(&[KILL]));
}

// ---------------------------------------------------------------------------------------------
// The order of the system calls, against a recording fake
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    DropBounding(u8),
    KeepCaps(bool),
    Capset(ProcessSets),
    ClearAmbient,
    RaiseAmbient(u8),
}

/// Records every call, and fails the ones it was told to.
#[derive(Default)]
struct Recorder {
    calls: RefCell<Vec<Call>>,
    refuse: Option<(Call, Errno)>,
}

impl Recorder {
    fn record(&self, call: Call) -> Result<(), Errno> {
        self.calls.borrow_mut().push(call);
        match self.refuse {
            Some((refused, errno)) if refused == call => Err(errno),
            _ => Ok(()),
        }
    }
}

impl CapSyscalls for Recorder {
    fn drop_bounding(&self, number: u8) -> Result<(), Errno> {
        self.record(Call::DropBounding(number))
    }
    fn set_keep_caps(&self, keep: bool) -> Result<(), Errno> {
        self.record(Call::KeepCaps(keep))
    }
    fn capset(&self, sets: ProcessSets) -> Result<(), Errno> {
        self.record(Call::Capset(sets))
    }
    fn clear_ambient(&self) -> Result<(), Errno> {
        self.record(Call::ClearAmbient)
    }
    fn raise_ambient(&self, number: u8) -> Result<(), Errno> {
        self.record(Call::RaiseAmbient(number))
    }
}

fn small_plan() -> CapabilityPlan {
    let caps = spec(json!({
        "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    }));
    CapabilityPlan::from_spec(&caps, 40).unwrap()
}

#[test]
fn apply_drops_bounding_then_capsets_then_raises_ambient() {
    let plan = small_plan();
    let sys = Recorder::default();
    plan.apply(&sys).unwrap();

    let mut expected: Vec<Call> = (0..=40)
        .filter(|n| *n != CHOWN && *n != NET_BIND_SERVICE)
        .map(Call::DropBounding)
        .collect();
    expected.extend([
        Call::KeepCaps(true),
        Call::KeepCaps(false),
        Call::Capset(ProcessSets {
            effective: set_of(&[CHOWN, NET_BIND_SERVICE]),
            permitted: set_of(&[CHOWN, NET_BIND_SERVICE]),
            inheritable: set_of(&[NET_BIND_SERVICE]),
        }),
        Call::ClearAmbient,
        Call::RaiseAmbient(NET_BIND_SERVICE),
    ]);
    assert_eq!(*sys.calls.borrow(), expected);
}

#[test]
fn the_user_switch_goes_between_the_two_halves() {
    let plan = small_plan();
    let sys = Recorder::default();
    plan.before_user_switch(&sys).unwrap();
    let before = sys.calls.borrow().clone();
    assert_eq!(before.last(), Some(&Call::KeepCaps(true)));
    assert!(before
        .iter()
        .all(|c| matches!(c, Call::DropBounding(_) | Call::KeepCaps(true))));
    plan.after_user_switch(&sys).unwrap();
    assert_eq!(sys.calls.borrow()[before.len()], Call::KeepCaps(false));
}

#[test]
fn a_refused_bounding_drop_stops_and_names_the_capability() {
    let sys = Recorder {
        refuse: Some((Call::DropBounding(21), Errno::EPERM)),
        ..Default::default()
    };
    let message = small_plan().apply(&sys).unwrap_err().to_string();
    assert!(
        message.contains("CAP_SYS_ADMIN") && message.contains("CAP_SETPCAP"),
        "{message}"
    );
    assert_eq!(sys.calls.borrow().last(), Some(&Call::DropBounding(21)));
}

#[test]
fn a_refused_capset_shows_the_sets() {
    let plan = small_plan();
    let sys = Recorder {
        refuse: Some((Call::Capset(plan.process), Errno::EPERM)),
        ..Default::default()
    };
    let message = plan.apply(&sys).unwrap_err().to_string();
    assert!(
        message.contains("effective 0x401") && message.contains("inheritable 0x400"),
        "{message}"
    );
    assert!(
        !sys.calls.borrow().contains(&Call::ClearAmbient),
        "stops at capset"
    );
}

#[test]
fn a_refused_ambient_raise_is_only_a_warning_as_in_runc() {
    let sys = Recorder {
        refuse: Some((Call::RaiseAmbient(NET_BIND_SERVICE), Errno::EPERM)),
        ..Default::default()
    };
    small_plan().apply(&sys).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The real kernel, as root, in forked children
// ---------------------------------------------------------------------------------------------

/// Whether this test can change capabilities: it needs root (with CAP_SETPCAP).
fn running_as_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipping: changing capabilities needs root");
    }
    root
}

/// Runs `child` in a forked child, handing it the write end of a pipe; returns how the child
/// ended and what it wrote. The harness is multi-threaded, so `child` must keep to
/// async-signal-safe calls: system calls, no allocation, no locks, no panics.
fn in_child(child: impl FnOnce(RawFd) -> i32) -> (WaitStatus, String) {
    // Close-on-exec, so a program another test starts meanwhile does not hold the write end
    // open and keep the read below from ending.
    let (read_end, write_end): (OwnedFd, OwnedFd) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    // SAFETY: the child only runs `child`, which keeps to async-signal-safe calls, then _exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = child(write_end.as_raw_fd());
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let output = std::io::read_to_string(std::fs::File::from(read_end)).unwrap();
            (waitpid(child, None).expect("waitpid"), output)
        }
    }
}

/// Copies the calling process's `/proc/self/status` to `fd` with a stack buffer only.
fn copy_status_to(fd: RawFd) -> bool {
    let fd_in = unsafe { libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY) };
    if fd_in < 0 {
        return false;
    }
    let mut buffer = [0u8; 4096];
    loop {
        let n = unsafe { libc::read(fd_in, buffer.as_mut_ptr().cast(), buffer.len()) };
        if n <= 0 {
            unsafe { libc::close(fd_in) };
            return n == 0;
        }
        if unsafe { libc::write(fd, buffer.as_ptr().cast(), n as usize) } != n {
            return false;
        }
    }
}

/// The hexadecimal set `field` (`CapEff`, …) of a `/proc/<pid>/status` text.
fn status_set(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

#[test]
fn kernel_sets_every_set_bit_exactly() {
    if !running_as_root() {
        return;
    }
    let plan = CapabilityPlan::from_spec(
        &spec(json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "ambient": ["CAP_NET_BIND_SERVICE"]
        })),
        kernel_last_cap().unwrap(),
    )
    .unwrap();
    let (status, output) = in_child(|out| {
        if plan.apply(&Kernel).is_err() {
            return 10;
        }
        if !copy_status_to(out) {
            return 11;
        }
        0
    });
    assert_eq!(
        status,
        WaitStatus::Exited(status.pid().unwrap(), 0),
        "{output}"
    );
    assert_eq!(status_set(&output, "CapBnd"), 0x421);
    assert_eq!(status_set(&output, "CapPrm"), 0x421);
    assert_eq!(status_set(&output, "CapEff"), 0x401);
    assert_eq!(status_set(&output, "CapInh"), 0x420);
    assert_eq!(status_set(&output, "CapAmb"), 0x400);
}

/// `chown` of `path` to uid/gid 1000 in a child after `plan` was applied: the errno, or 0.
fn chown_after(plan: &CapabilityPlan, path: &CString) -> i32 {
    let (status, _) = in_child(|_| {
        if plan.apply(&Kernel).is_err() {
            return 100;
        }
        match unsafe { libc::chown(path.as_ptr(), 1000, 1000) } {
            0 => 0,
            _ => Errno::last_raw(),
        }
    });
    match status {
        WaitStatus::Exited(_, code) => code,
        other => panic!("child ended with {other:?}"),
    }
}

#[test]
fn a_dropped_capability_is_really_gone_even_for_uid_0() {
    if !running_as_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("owned-by-root");
    std::fs::write(&file, b"").unwrap();
    let path = CString::new(file.as_os_str().as_bytes()).unwrap();
    let last_cap = kernel_last_cap().unwrap();
    let only = |caps: serde_json::Value| {
        let sets = json!({"bounding": caps, "effective": caps, "permitted": caps});
        CapabilityPlan::from_spec(&spec(sets), last_cap).unwrap()
    };
    let without_chown = only(json!(["CAP_NET_BIND_SERVICE"]));
    assert_eq!(chown_after(&without_chown, &path), libc::EPERM);
    let with_chown = only(json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]));
    assert_eq!(
        chown_after(&with_chown, &path),
        0,
        "the control: CAP_CHOWN kept"
    );
}

#[test]
fn capabilities_survive_the_switch_to_a_non_root_user() {
    if !running_as_root() {
        return;
    }
    let plan = CapabilityPlan::from_spec(
        &spec(json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        })),
        kernel_last_cap().unwrap(),
    )
    .unwrap();
    let (status, output) = in_child(|out| {
        if plan.before_user_switch(&Kernel).is_err() {
            return 10;
        }
        // Step 2, the caller's: become uid/gid 1000.
        if unsafe { libc::setgid(1000) } != 0 || unsafe { libc::setuid(1000) } != 0 {
            return 11;
        }
        if plan.after_user_switch(&Kernel).is_err() {
            return 12;
        }
        if !copy_status_to(out) {
            return 13;
        }
        0
    });
    assert!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "{status:?} {output}"
    );
    assert!(status_field(&output, "Uid").starts_with("1000"), "{output}");
    assert_eq!(status_set(&output, "CapEff"), 0x401);
    assert_eq!(status_set(&output, "CapPrm"), 0x401);
    assert_eq!(status_set(&output, "CapBnd"), 0x401);
}

#[test]
fn without_keep_caps_setuid_takes_every_capability_away() {
    if !running_as_root() {
        return;
    }
    let plan = small_plan();
    let (status, _) = in_child(|_| {
        // The wrong order: setuid before PR_SET_KEEPCAPS clears the permitted set...
        if unsafe { libc::setuid(1000) } != 0 {
            return 10;
        }
        // ...so capset cannot give anything back.
        match plan.after_user_switch(&Kernel) {
            Err(CapabilityError::Capset {
                errno: Errno::EPERM,
                ..
            }) => 0,
            _ => 11,
        }
    });
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}
