//! `cargo xtask test`: set up, then every check berth has, in one run with one summary.
//!
//! Steps run in order and a failing step does not stop the next ones, so one run
//! shows everything that is wrong. The run fails if any step failed.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{book, chapter_diff, cmd, demo, setup};

type Step = (&'static str, fn() -> anyhow::Result<()>);

const STEPS: &[Step] = &[
    ("format (cargo fmt --check)", || {
        cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))
    }),
    ("lints (cargo clippy -D warnings)", || {
        cmd::run(cmd::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    }),
    ("unit and integration tests (cargo test)", || {
        cmd::run(cmd::cargo().args(["test", "--workspace"]))
    }),
    ("book (mdbook build + link check)", book::run),
    (
        "chapter diffs up to date (cargo xtask chapter-diff --check)",
        || chapter_diff::run(true),
    ),
    // The README's first command must keep working: CI runs it too.
    ("demo (cargo xtask demo)", demo::run),
];

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the integration tests create namespaces, mounts and cgroups: run `cargo xtask test` as root");
    }
    let mut results: Vec<(&str, Duration, Result<(), String>)> = Vec::new();
    for (name, step) in STEPS {
        eprintln!("\n==> {name}");
        let start = Instant::now();
        let result = step().map_err(|e| format!("{e:#}"));
        results.push((name, start.elapsed(), result));
    }

    eprintln!("\n==> summary");
    for (name, took, result) in &results {
        match result {
            Ok(()) => eprintln!("  ok    {name} ({:.0?})", took),
            Err(e) => eprintln!("  FAIL  {name} ({:.0?}): {e}", took),
        }
    }
    let failed = results.iter().filter(|(_, _, r)| r.is_err()).count();
    println!("steps: {} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        bail!("{failed} step(s) failed");
    }
    Ok(())
}
