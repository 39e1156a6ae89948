//! Tests of the device program: an interpreter checks what the compiled code means, without
//! root; a root test attaches a program to a real cgroup and watches the kernel enforce it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;

use super::*;

// ANCHOR: device_program_interpreter
/// Runs `program` on one request, like the kernel would, and returns r0.
///
/// Only the instructions [`compile`] emits are known; anything else fails the test, as does a
/// read outside the context or a program that runs too long (the verifier forbids loops).
fn run(program: &[Insn], kind: u32, major: u32, minor: u32, access: u32) -> u64 {
    let ctx = [(access << 16) | kind, major, minor];
    let mut reg = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = program[pc];
        let (dst, src) = (usize::from(i.regs & 0x0f), usize::from(i.regs >> 4));
        let imm = i64::from(i.imm) as u64; // sign-extended, as the kernel does
        pc += 1;
        match i.code {
            c if c == op::LDX | op::MEM | op::W => {
                assert_eq!(src, usize::from(R_CTX), "loads only from the context");
                let off = usize::try_from(i.off).unwrap();
                assert!(off % 4 == 0 && off < 12, "context read at offset {off}");
                reg[dst] = u64::from(ctx[off / 4]);
            }
            c if c & 0x07 == op::ALU || c & 0x07 == op::ALU64 => {
                assert_eq!(c & 0x08, op::K, "only immediate operands");
                let value = match c & 0xf0 {
                    op::AND => reg[dst] & imm,
                    op::RSH => reg[dst] >> (imm & 63),
                    op::MOV => imm,
                    other => panic!("unknown ALU operation {other:#x}"),
                };
                // 32-bit ALU works on the low half and zeroes the high one.
                reg[dst] = if c & 0x07 == op::ALU {
                    value & 0xffff_ffff
                } else {
                    value
                };
            }
            c if c == op::JMP | op::EXIT => return reg[0],
            c if c & 0x07 == op::JMP => {
                let taken = match c & 0xf0 {
                    op::JA => true,
                    0x10 => reg[dst] == imm, // JEQ: not emitted today, but cheap to know
                    op::JNE => reg[dst] != imm,
                    op::JSET => reg[dst] & imm != 0,
                    other => panic!("unknown jump {other:#x}"),
                };
                if taken {
                    pc = pc.checked_add_signed(isize::from(i.off)).unwrap();
                }
            }
            other => panic!("unknown instruction {other:#x} at {}", pc - 1),
        }
    }
    panic!("the program did not exit");
}
// ANCHOR_END: device_program_interpreter

fn rule(
    allow: bool,
    kind: Kind,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
) -> DeviceRule {
    DeviceRule {
        allow,
        kind,
        major,
        minor,
        access,
    }
}

/// runc's usual list: deny everything, then allow /dev/null and the ptys read-write.
fn usual() -> Vec<DeviceRule> {
    vec![
        rule(false, Kind::All, None, None, ACC_ALL),
        rule(true, Kind::Char, Some(1), Some(3), ACC_ALL),
        rule(true, Kind::Char, Some(136), None, ACC_READ | ACC_WRITE),
    ]
}

#[test]
fn the_usual_rules_allow_null_and_ptys_only() {
    let program = compile(&usual());
    let rw = ACC_READ | ACC_WRITE;
    assert_eq!(run(&program, DEV_CHAR, 1, 3, rw | ACC_MKNOD), 1);
    assert_eq!(run(&program, DEV_CHAR, 136, 7, rw), 1);
    assert_eq!(
        run(&program, DEV_CHAR, 136, 7, ACC_MKNOD),
        0,
        "no mknod of ptys"
    );
    assert_eq!(run(&program, DEV_CHAR, 1, 5, ACC_READ), 0, "/dev/zero");
    assert_eq!(
        run(&program, DEV_BLOCK, 1, 3, ACC_READ),
        0,
        "a block 1:3 is not /dev/null"
    );
}

#[test]
fn a_catch_all_rule_ends_the_program() {
    // Everything before "allow a *:* rwm" is dead code, which the verifier would refuse.
    let rules = [
        rule(false, Kind::Char, Some(1), Some(3), ACC_ALL),
        rule(true, Kind::All, None, None, ACC_ALL),
    ];
    let program = compile(&rules);
    assert_eq!(program.len(), 6 + 2);
    assert_eq!(run(&program, DEV_CHAR, 1, 3, ACC_READ), 1);
}

#[test]
fn a_partial_deny_refuses_any_request_that_asks_for_it() {
    let rules = [
        rule(true, Kind::All, None, None, ACC_ALL),
        rule(false, Kind::Char, Some(1), Some(3), ACC_WRITE),
    ];
    let program = compile(&rules);
    assert_eq!(run(&program, DEV_CHAR, 1, 3, ACC_READ), 1);
    assert_eq!(run(&program, DEV_CHAR, 1, 3, ACC_READ | ACC_WRITE), 0);
}

#[test]
fn spec_rules_are_checked_and_converted() {
    let spec: Vec<LinuxDeviceCgroup> = serde_json::from_str(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "u", "major": 1, "minor": -1, "access": "wr"},
            {"allow": true, "type": "p"}]"#,
    )
    .unwrap();
    let rules: Vec<_> = spec
        .iter()
        .enumerate()
        .map(|(i, r)| DeviceRule::from_spec(i, r).unwrap())
        .collect();
    let text: Vec<_> = rules
        .iter()
        .map(|r| r.as_ref().map(|r| r.to_string()))
        .collect();
    assert_eq!(
        text,
        [
            Some("deny a *:* rwm".into()),
            Some("allow c 1:* rw".into()),
            None
        ]
    );

    let bad: LinuxDeviceCgroup =
        serde_json::from_str(r#"{"allow": true, "access": "rx"}"#).unwrap();
    let err = DeviceRule::from_spec(4, &bad).unwrap_err().to_string();
    assert!(
        err.contains("devices[4]") && err.contains("\"rx\""),
        "{err}"
    );
}

fn any_rule() -> impl Strategy<Value = DeviceRule> {
    // Small numbers, so that rules and requests often name the same device.
    let kind = prop_oneof![Just(Kind::All), Just(Kind::Block), Just(Kind::Char)];
    let number = proptest::option::of(0u32..3);
    (any::<bool>(), kind, number.clone(), number, 1u32..=7)
        .prop_map(|(allow, kind, major, minor, access)| rule(allow, kind, major, minor, access))
}

proptest! {
    #[test]
    fn the_program_agrees_with_the_rules(
        rules in proptest::collection::vec(any_rule(), 0..8),
        requests in proptest::collection::vec(
            (prop_oneof![Just(DEV_BLOCK), Just(DEV_CHAR)], 0u32..3, 0u32..3, 1u32..=7), 1..20),
    ) {
        let program = compile(&rules);
        for (kind, major, minor, access) in requests {
            let expected = u64::from(allows(&rules, kind, major, minor, access));
            prop_assert_eq!(
                run(&program, kind, major, minor, access), expected,
                "request {} {}:{} access {}", kind, major, minor, access
            );
        }
    }
}

/// A cgroup directory made for the root test, removed when dropped (even after a panic).
struct TestDir(PathBuf);

impl Drop for TestDir {
    fn drop(&mut self) {
        // The children have exited by now, so the cgroup is empty and rmdir works; the
        // attached program goes with the cgroup.
        if let Err(e) = fs::remove_dir(&self.0) {
            eprintln!("could not remove test cgroup {}: {e}", self.0.display());
        }
    }
}

/// Runs `sh -c script` inside the cgroup `dir`: the child joins it before it execs.
fn run_in(dir: &Path, script: &str) -> std::process::Output {
    let procs = CString::new(
        dir.join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let mut command = Command::new("/bin/sh");
    command.args(["-c", script]);
    // SAFETY: between fork and exec, in a copy of a multi-threaded process, only
    // async-signal-safe calls are allowed: no allocation. The closure makes three system
    // calls and formats the pid on the stack; writing "0" would mean "this process" too,
    // but the pid is clearer to read in an strace.
    unsafe {
        command.pre_exec(move || {
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut pid = libc::getpid() as u32;
            loop {
                at -= 1;
                digits[at] = b'0' + (pid % 10) as u8;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let len = digits.len() - at;
            let written = libc::write(fd, digits[at..].as_ptr().cast(), len);
            let error = io::Error::last_os_error();
            libc::close(fd);
            if written != len as isize {
                return Err(error);
            }
            Ok(())
        });
    }
    command.output().unwrap()
}

// ANCHOR: device_program_root_test
#[test]
fn the_kernel_enforces_the_program_on_a_real_cgroup() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: attaching a device program needs root");
        return;
    }
    // The v2 hierarchy: /sys/fs/cgroup itself on a pure v2 host, .../unified on a hybrid one.
    // Device programs work in either, even where v2 holds no controllers.
    let Some(mount) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists())
    else {
        eprintln!("skipping: no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified");
        return;
    };
    let dir = TestDir(mount.join(format!("berth-bpf-test-{}", std::process::id())));
    fs::create_dir(&dir.0).unwrap();

    // First a program that denies everything, then the real one, which must replace it:
    // if both stayed attached, both would have to allow and /dev/null would stay closed.
    install(&dir.0, &[rule(false, Kind::All, None, None, ACC_ALL)]).unwrap();
    let only_null = [
        rule(false, Kind::All, None, None, ACC_ALL),
        rule(true, Kind::Char, Some(1), Some(3), ACC_ALL),
    ];
    install(&dir.0, &only_null).unwrap();
    let cgroup = File::open(&dir.0).unwrap();
    assert_eq!(
        attached(&cgroup).unwrap().len(),
        1,
        "the first program was replaced"
    );

    let zero = run_in(&dir.0, "head -c1 /dev/zero");
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert!(!zero.status.success(), "/dev/zero was readable");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");

    let null = run_in(&dir.0, "echo > /dev/null");
    assert!(
        null.status.success(),
        "{}",
        String::from_utf8_lossy(&null.stderr)
    );
}
// ANCHOR_END: device_program_root_test

#[test]
fn attaching_to_a_directory_that_is_no_cgroup_says_so() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: loading a device program needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let err = install(dir.path(), &usual()).unwrap_err().to_string();
    assert!(err.contains("cgroup2 directory"), "{err}");
}
