//! berth-shim as containerd finds it, and what it costs.
//!
//! containerd runs the shim of runtime `io.containerd.berth.v2` as
//! `containerd-shim-berth-v2` from its `PATH`. [`install`] builds berth-shim (and
//! berth-runc, which the shim looks for beside itself) and puts that name, a symlink,
//! in a directory of its own, for `Containerd::start_with_path`. [`memory_kb`] is how
//! the tests and the benchmark read one shim's memory.

use std::fs;
use std::path::{Path, PathBuf};

use crate::build::workspace_binary;
use crate::runtime::berth_runc;

/// Creates `dir/bin/containerd-shim-berth-v2` → the freshly built berth-shim, and
/// returns `dir/bin`.
pub fn install(dir: &Path) -> PathBuf {
    let shim = workspace_binary("berth-shim");
    // Built into the same directory as the shim, where the shim looks for it.
    berth_runc();
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("create the shim's bin directory");
    std::os::unix::fs::symlink(&shim, bin.join("containerd-shim-berth-v2"))
        .expect("link containerd-shim-berth-v2 to berth-shim");
    bin
}

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
