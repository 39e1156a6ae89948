//! berth-shim as containerd finds it, and what it costs.
//!
//! containerd runs the shim of runtime `io.containerd.berth.v2` as
//! `containerd-shim-berth-v2` from its `PATH`. [`install`] builds berth-shim and
//! berth-runc and puts both, as symlinks, in a directory of their own for
//! `Containerd::start_with_path` (the shim finds berth-runc on that PATH when it is not
//! beside the shim's own binary). The tests install the build they were built with;
//! the benchmark installs [`shipping_binary`], the shim as it is meant to run.
//! [`memory_kb`] is how both read one shim's memory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::workspace_binary;
use crate::runtime::berth_runc;

/// Creates `dir/bin/containerd-shim-berth-v2` → `shim` (the test build when `None`) and
/// `dir/bin/berth-runc`, and returns `dir/bin`.
pub fn install(dir: &Path, shim: Option<&Path>) -> PathBuf {
    let shim = shim.map_or_else(|| workspace_binary("berth-shim"), Path::to_owned);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("create the shim's bin directory");
    std::os::unix::fs::symlink(&shim, bin.join("containerd-shim-berth-v2"))
        .expect("link containerd-shim-berth-v2 to berth-shim");
    std::os::unix::fs::symlink(berth_runc(), bin.join("berth-runc"))
        .expect("link berth-runc beside it");
    bin
}

// ANCHOR: shipping
/// berth-shim as it is shipped: the `shim` profile (one optimised unit, sized for code)
/// and glibc linked in statically, for the host. A shim runs per container, so every
/// page it maps is paid per container; a static, position-dependent binary touches
/// none of the shared C library's pages and relocates nothing at start. Built in a
/// target directory of its own, since its flags apply to every crate it compiles.
pub fn shipping_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let target_dir = workspace.join("target/shipping");
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--package",
            "berth-shim",
            "--profile",
            "shim",
        ])
        .args(["--target", &triple])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        .status()
        .expect("run cargo to build the shipping berth-shim");
    assert!(status.success(), "building the shipping berth-shim failed");
    target_dir.join(triple).join("shim/berth-shim")
}
// ANCHOR_END: shipping

/// `(Rss, Pss)` of process `pid`, in kB, from `/proc/PID/smaps_rollup`: RSS counts every
/// page it has in memory, PSS divides the shared ones among their sharers.
pub fn memory_kb(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}
