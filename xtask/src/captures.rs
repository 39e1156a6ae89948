//! `cargo xtask captures`: the transcripts the book shows, made by running the real
//! thing, so no output in the book is typed by hand.
//!
//! Each capture is one command run from the repository's root, its stdout written to
//! `book/src/captured/<name>.txt`, which a page includes whole. Ids, pids and temporary
//! paths differ from run to run, so the check is not "same bytes" but "the command
//! still succeeds": the tests run the same commands (tests/tests/lab.rs), and this
//! command rewrites the files when someone wants them fresh.

use std::fs;
use std::process::Command;

use anyhow::{bail, Context};

use crate::{cmd, setup};

/// `(file name, command and arguments)`, from the repository's root.
const CAPTURES: &[(&str, &[&str])] = &[
    ("restart-lab-01", &["book/labs/restart-lab.sh", "01"]),
    ("restart-lab-02", &["book/labs/restart-lab.sh", "02"]),
    ("restart-lab-03", &["book/labs/restart-lab.sh", "03"]),
    ("supervisor-lab", &["book/labs/supervisor-lab.sh"]),
];

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("the captures run containers, which needs root: run `cargo xtask captures` as root");
    }
    let root = cmd::root();
    let dir = root.join("book/src/captured");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, command) in CAPTURES {
        eprintln!("captures: {}", command.join(" "));
        let out = Command::new(command[0])
            .args(&command[1..])
            .current_dir(&root)
            .output()
            .with_context(|| format!("running {}", command[0]))?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}):\n{}",
                command.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let path = dir.join(format!("{name}.txt"));
        // The transcript opens with a blank line (each section does); the page has its own.
        let text = String::from_utf8_lossy(&out.stdout);
        fs::write(&path, text.trim_start_matches('\n'))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("captures: wrote {}", path.display());
    }
    Ok(())
}
