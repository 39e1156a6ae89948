//! A classic BPF interpreter for seccomp filters, used only by the tests: it checks a compiled
//! program the way the kernel does when it is installed, then runs it on a synthetic
//! `seccomp_data`, so the compiler's output can be tested for thousands of calls without
//! installing anything.
//!
//! It knows the instructions a seccomp filter may use that berth's compiler emits, plus
//! `jset`; anything else is reported as invalid rather than guessed at.

use libc::sock_filter;

/// What the kernel hands a filter for one syscall (`struct seccomp_data`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// `sizeof(struct seccomp_data)`: loads must stay inside it.
const DATA_LEN: u32 = 64;

impl SeccompData {
    /// The 32-bit word at byte `offset`, in the machine's byte order, as the kernel lays the
    /// struct out in memory.
    fn word(&self, offset: u32) -> u32 {
        let mut bytes = [0u8; DATA_LEN as usize];
        bytes[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        bytes[8..16].copy_from_slice(&self.instruction_pointer.to_ne_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        let at = offset as usize;
        u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    }
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JMP_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JMP_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JMP_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JMP_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JMP_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The checks the kernel makes before accepting a filter: a length of 1 to 4096, known
/// opcodes, aligned loads inside `seccomp_data`, every jump landing inside the program, and
/// a `ret` as the last instruction (so execution can never run off the end).
pub(super) fn validate(program: &[sock_filter]) -> Result<(), String> {
    if program.is_empty() || program.len() > libc::BPF_MAXINSNS as usize {
        return Err(format!("length {} is not in 1..=4096", program.len()));
    }
    let len = program.len();
    for (pc, insn) in program.iter().enumerate() {
        let lands = |offset: usize| pc + 1 + offset < len;
        let ok = match insn.code {
            LD_W_ABS => insn.k % 4 == 0 && insn.k < DATA_LEN,
            ALU_AND_K | RET_K => true,
            JMP_JA => lands(insn.k as usize),
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K | JMP_JSET_K => {
                lands(insn.jt as usize) && lands(insn.jf as usize)
            }
            _ => false,
        };
        if !ok {
            return Err(format!("invalid instruction {pc}: {insn:?}"));
        }
    }
    match program[len - 1].code {
        RET_K => Ok(()),
        _ => Err("the last instruction is not a ret".to_owned()),
    }
}

/// Runs a program (which must have passed [`validate`]) and returns the action it picks.
pub(super) fn run(program: &[sock_filter], data: &SeccompData) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0;
    loop {
        let insn = program[pc];
        let branch = |taken: bool| pc + 1 + if taken { insn.jt } else { insn.jf } as usize;
        pc = match insn.code {
            LD_W_ABS => {
                a = data.word(insn.k);
                pc + 1
            }
            ALU_AND_K => {
                a &= insn.k;
                pc + 1
            }
            JMP_JA => pc + 1 + insn.k as usize,
            JMP_JEQ_K => branch(a == insn.k),
            JMP_JGT_K => branch(a > insn.k),
            JMP_JGE_K => branch(a >= insn.k),
            JMP_JSET_K => branch(a & insn.k != 0),
            RET_K => return insn.k,
            other => panic!("instruction {pc} has opcode {other:#x}, which validate() refuses"),
        };
    }
}

/// The interpreter checked against hand-assembled programs, so the compiler's tests can trust it.
#[cfg(test)]
mod self_tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    #[test]
    fn loads_words_of_seccomp_data_in_native_order() {
        let data = SeccompData {
            nr: 59,
            arch: 0xc000_003e,
            instruction_pointer: 0,
            args: [0x1111_2222_3333_4444, 0, 0, 0, 0, 0x5555_6666_7777_8888],
        };
        assert_eq!(data.word(0), 59);
        assert_eq!(data.word(4), 0xc000_003e);
        if cfg!(target_endian = "little") {
            assert_eq!(data.word(16), 0x3333_4444);
            assert_eq!(data.word(20), 0x1111_2222);
            assert_eq!(data.word(60), 0x5555_6666);
        }
    }

    #[test]
    fn follows_branches_and_returns() {
        // if nr == 7 { return 1 } else if nr > 9 { return 2 } else { return 3 }
        let program = [
            insn(LD_W_ABS, 0, 0, 0),
            insn(JMP_JEQ_K, 0, 1, 7),
            insn(RET_K, 0, 0, 1),
            insn(JMP_JGT_K, 1, 0, 9),
            insn(JMP_JA, 0, 0, 1),
            insn(RET_K, 0, 0, 2),
            insn(RET_K, 0, 0, 3),
        ];
        validate(&program).unwrap();
        let with_nr = |nr| SeccompData {
            nr,
            ..Default::default()
        };
        assert_eq!(run(&program, &with_nr(7)), 1);
        assert_eq!(run(&program, &with_nr(10)), 2);
        assert_eq!(run(&program, &with_nr(9)), 3);
        assert_eq!(run(&program, &with_nr(0)), 3);
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        let ret = insn(RET_K, 0, 0, 0);
        assert!(validate(&[]).is_err(), "empty");
        assert!(
            validate(&[insn(LD_W_ABS, 0, 0, 2), ret]).is_err(),
            "unaligned load"
        );
        assert!(
            validate(&[insn(LD_W_ABS, 0, 0, 64), ret]).is_err(),
            "load past the end"
        );
        assert!(
            validate(&[insn(JMP_JEQ_K, 1, 0, 0), ret]).is_err(),
            "jump off the end"
        );
        assert!(
            validate(&[insn(JMP_JA, 0, 0, 5), ret]).is_err(),
            "ja off the end"
        );
        assert!(
            validate(&[ret, insn(LD_W_ABS, 0, 0, 0)]).is_err(),
            "no final ret"
        );
        assert!(
            validate(&[insn(0x07, 0, 0, 0), ret]).is_err(),
            "unknown opcode (tax)"
        );
        assert!(validate(&[ret]).is_ok());
    }
}
