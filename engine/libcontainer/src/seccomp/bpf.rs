//! Classic BPF, just the part seccomp uses: the instructions the compiler in [`super`] emits
//! and a small assembler that turns symbolic labels into the jump offsets the kernel wants.
//!
//! A classic BPF jump is relative and forward only. A conditional jump (`jeq`, `jgt`, `jge`)
//! carries two 8-bit offsets, `jt` and `jf`, so it can skip at most 255 instructions; only the
//! unconditional `ja` has a 32-bit offset. The compiler keeps to one rule so that no profile,
//! however long, hits the 8-bit limit: a conditional jump only ever goes a few instructions
//! ahead, and every long distance is covered by a `ja` (see [`Assembler::far_jump_if`]). The
//! assembler checks that rule, so a compiler bug becomes an error, not a filter that jumps to
//! the wrong place.

use libc::sock_filter;

use super::SeccompError;

/// A place in the program a jump can go to, bound to an instruction by [`Assembler::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Label(usize);

/// Where a conditional jump goes on one of its two branches.
#[derive(Clone, Copy, Debug)]
pub(super) enum Target {
    /// Fall through to the next instruction (offset 0).
    Next,
    /// Go to a label, which must be a few instructions ahead.
    To(Label),
}

/// The comparisons classic BPF can make between the accumulator `A` and a constant `k`.
/// There is no "less than": the compiler swaps the two branches of `jge`/`jgt` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compare {
    /// `A == k`
    Eq,
    /// `A > k` (unsigned)
    Gt,
    /// `A >= k` (unsigned)
    Ge,
}

impl Compare {
    fn opcode(self) -> u16 {
        let op = match self {
            Compare::Eq => libc::BPF_JEQ,
            Compare::Gt => libc::BPF_JGT,
            Compare::Ge => libc::BPF_JGE,
        };
        (libc::BPF_JMP | op | libc::BPF_K) as u16
    }
}

/// One instruction whose jump offsets may still be symbolic.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// An instruction with no jump: load, and, return.
    Plain { code: u16, k: u32 },
    /// `jeq`/`jgt`/`jge k`, with its two branches.
    Conditional {
        compare: Compare,
        k: u32,
        if_true: Target,
        if_false: Target,
    },
    /// `ja`: always jump, as far as needed.
    Always(Label),
}

/// Builds a BPF program instruction by instruction, then resolves its labels.
#[derive(Debug, Default)]
pub(super) struct Assembler {
    slots: Vec<Slot>,
    /// For each label, the index of the instruction it is bound to (once bound).
    labels: Vec<Option<usize>>,
}

impl Assembler {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// How many instructions have been emitted so far.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// A new label, not yet bound to any instruction.
    pub(super) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction emitted.
    pub(super) fn bind(&mut self, label: Label) {
        debug_assert!(self.labels[label.0].is_none(), "{label:?} bound twice");
        self.labels[label.0] = Some(self.slots.len());
    }

    /// `ld [offset]`: load the 32-bit word at `offset` in `struct seccomp_data` into `A`.
    pub(super) fn load(&mut self, offset: u32) {
        let code = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        self.slots.push(Slot::Plain { code, k: offset });
    }

    /// `and #mask`: `A &= mask`.
    pub(super) fn and(&mut self, mask: u32) {
        let code = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
        self.slots.push(Slot::Plain { code, k: mask });
    }

    /// `ret #value`: stop, and give the kernel this `SECCOMP_RET_*` action.
    pub(super) fn ret(&mut self, value: u32) {
        let code = (libc::BPF_RET | libc::BPF_K) as u16;
        self.slots.push(Slot::Plain { code, k: value });
    }

    /// A conditional jump. Both targets must be near: see the module documentation.
    pub(super) fn jump(&mut self, compare: Compare, k: u32, if_true: Target, if_false: Target) {
        self.slots.push(Slot::Conditional {
            compare,
            k,
            if_true,
            if_false,
        });
    }

    /// `ja label`: an unconditional jump, as far ahead as needed.
    pub(super) fn jump_always(&mut self, to: Label) {
        self.slots.push(Slot::Always(to));
    }

    /// "If `A <compare> k`, go to `to`", however far `to` is: a conditional jump over a `ja`.
    ///
    /// ```text
    ///     jeq #k, 0, 1     ; true: fall into the ja; false: skip it
    ///     ja  to           ; 32-bit offset, so `to` may be thousands of instructions away
    /// ```
    pub(super) fn far_jump_if(&mut self, compare: Compare, k: u32, to: Label) {
        let skip = self.label();
        self.jump(compare, k, Target::Next, Target::To(skip));
        self.jump_always(to);
        self.bind(skip);
    }

    /// "If `A <compare> k`, return `value`": the same two-instruction shape as
    /// [`far_jump_if`](Self::far_jump_if), with a `ret` where the `ja` was.
    pub(super) fn return_if(&mut self, compare: Compare, k: u32, value: u32) {
        let skip = self.label();
        self.jump(compare, k, Target::Next, Target::To(skip));
        self.ret(value);
        self.bind(skip);
    }

    /// Resolves every label into a relative offset and returns the finished program.
    pub(super) fn finish(self) -> Result<Vec<sock_filter>, SeccompError> {
        self.slots
            .iter()
            .enumerate()
            .map(|(at, slot)| self.resolve(at, slot))
            .collect()
    }

    fn resolve(&self, at: usize, slot: &Slot) -> Result<sock_filter, SeccompError> {
        Ok(match *slot {
            Slot::Plain { code, k } => instruction(code, 0, 0, k),
            Slot::Always(to) => {
                let distance = self.distance(at, to)?;
                // A program is at most 4096 instructions long, so this never truncates.
                let k = distance as u32;
                instruction((libc::BPF_JMP | libc::BPF_JA) as u16, 0, 0, k)
            }
            Slot::Conditional {
                compare,
                k,
                if_true,
                if_false,
            } => {
                let jt = self.short_offset(at, if_true)?;
                let jf = self.short_offset(at, if_false)?;
                instruction(compare.opcode(), jt, jf, k)
            }
        })
    }

    /// The 8-bit offset of a conditional branch; an error if the compiler broke the
    /// "conditional jumps stay near" rule.
    fn short_offset(&self, at: usize, target: Target) -> Result<u8, SeccompError> {
        match target {
            Target::Next => Ok(0),
            Target::To(label) => {
                let distance = self.distance(at, label)?;
                u8::try_from(distance).map_err(|_| SeccompError::Compiler {
                    at,
                    problem: "makes a conditional jump farther than 255 instructions",
                })
            }
        }
    }

    /// How many instructions a jump at `at` skips to reach `label` (BPF offsets count from
    /// the instruction after the jump).
    fn distance(&self, at: usize, label: Label) -> Result<usize, SeccompError> {
        let bound = self.labels[label.0].ok_or(SeccompError::Compiler {
            at,
            problem: "jumps to a label that was never placed",
        })?;
        bound.checked_sub(at + 1).ok_or(SeccompError::Compiler {
            at,
            problem: "jumps backwards, which BPF cannot do",
        })
    }
}

fn instruction(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}
