//! `cargo xtask bench`: every benchmark berth has, optimised. Speed and memory
//! targets belong here, measured and printed, never asserted in a timed test.
//! The benchmarks themselves are `harness = false` bench targets (see
//! `tests/benches/`), so `cargo bench` alone runs them too.

use crate::cmd;

pub fn run() -> anyhow::Result<()> {
    cmd::run(cmd::cargo().args(["bench", "--workspace"]))
}
