//! # xtask: the one driver for everything berth does besides being an engine
//!
//! `cargo xtask <command>` (an alias in `.cargo/config.toml`) works the same on a
//! fresh machine and on a developer's: it installs what is missing, then builds,
//! tests or demonstrates. CI runs `cargo xtask test` and nothing else.
//!
//! # Layout
//! - [`setup`]: Debian packages, cargo tools and the test image, installed when missing.
//! - [`test`]: every check the project has, in order, with a summary at the end.
//! - [`demo`]: builds the test image into a bundle and runs a container from it.
//! - [`bench`]: runs the benchmarks (`cargo bench`); speed targets live there, never in tests.
//! - [`book`]: builds the mdBook and checks every link in it.
//! - [`captures`]: runs the book's experiments and saves their output for it to include.
//! - [`chapter_diff`]: each chapter's `DIFF.md` from the chapter before, and the check
//!   that they are current.
//! - [`cmd`]: running commands loudly, so a reader of the log sees what happened.

mod bench;
mod book;
mod captures;
mod chapter_diff;
mod cmd;
mod demo;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "berth's project driver: setup, demo, test, bench, book, captures, chapter-diff")]
struct Args {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what this machine lacks (Debian packages, mdbook) and build the test image.
    Setup,
    /// Set up, then run every test, lint and book check, and print a summary.
    Test,
    /// Set up, build, and run a container from the test image, step by step.
    Demo,
    /// Run the benchmarks (optimised build).
    Bench,
    /// Build the book into book/build and check its links.
    Book,
    /// Run the book's experiments and save their output under book/src/captured/.
    Captures,
    /// Write each chapter's DIFF.md (the diff from the chapter before it).
    ChapterDiff {
        /// Fail if a DIFF.md is stale instead of rewriting it.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Task::Setup => setup::run(),
        Task::Test => test::run(),
        Task::Demo => demo::run(),
        Task::Bench => bench::run(),
        Task::Book => book::run(),
        Task::Captures => captures::run(),
        Task::ChapterDiff { check } => chapter_diff::run(check),
    }
}
