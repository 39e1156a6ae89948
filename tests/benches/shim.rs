//! Memory per shim: berth-shim against containerd-shim-runc-v2, one run, one machine.
//!
//! One real containerd (isolated, see `berth_tests::peers`) starts 20 containers of
//! `sleep` under berth-shim (runtime `io.containerd.berth.v2`, with berth-runc) and 20
//! under containerd's own runc shim (with the real runc), then reads each shim's
//! `/proc/PID/smaps_rollup`. RSS counts every page a shim has in memory; PSS divides
//! the pages shared between processes (the binary's code, the C library) among those
//! sharing them, so PSS is what one more container really costs. The targets (berth-shim
//! under 3 MB RSS and 1 MB PSS) are printed, never asserted.
//!
//! The berth-shim measured is the shipping build (`berth_tests::shim::shipping_binary`:
//! profile `shim`, glibc static); the tests run the ordinary build of the same code.
//! Measured here (per shim, mean of 20; containerd-shim-runc-v2: 12.9 MB RSS, 2.9 MB PSS):
//!
//! | berth-shim | RSS | PSS |
//! | --- | --- | --- |
//! | release, PIE, as first built | 3.98 MB | 0.57 MB |
//! | release, linked `-no-pie` (engine/shim/build.rs) | 3.83 MB | 0.45 MB |
//! | and glibc static | 3.03 MB | 0.38 MB |
//! | profile `shim` (fat LTO, one codegen unit, `opt-level = "s"`), glibc static | 2.80 MB | 0.37 MB |
//!
//! With glibc shared, about 1.8 MB of the RSS were the C library, the loader and
//! libgcc_s: pages mapped around every one the shim touched. Static, only the touched
//! parts of libc come along. See book/src/shim.md.

use std::path::Path;
use std::process::Command;

use berth_tests::images::busybox;
use berth_tests::peers::{run_ok, Containerd};
use berth_tests::shim::{memory_kb, processes_naming};

const CONTAINERS: usize = 20;
const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "bench";

/// Pids of the processes whose program (first word of the command line) ends with one
/// of `programs`, and whose command line names `dir`. (The serving berth-shim runs as
/// `berth-shim`: `start` re-executes its own binary, whatever name it was run by.)
fn shims(programs: &[&str], dir: &Path) -> Vec<i32> {
    processes_naming(dir)
        .into_iter()
        .filter(|(_, cmdline)| {
            let first = cmdline.split(' ').next().unwrap_or_default();
            programs.iter().any(|p| first.ends_with(p))
        })
        .map(|(pid, _)| pid)
        .collect()
}

fn report(name: &str, pids: &[i32]) {
    let samples: Vec<(u64, u64)> = pids.iter().map(|&pid| memory_kb(pid)).collect();
    let mean = |f: fn(&(u64, u64)) -> u64| {
        samples.iter().map(f).sum::<u64>() as f64 / samples.len().max(1) as f64 / 1024.0
    };
    println!(
        "{name:<24} {:>2} shims   RSS {:>6.2} MB   PSS {:>6.2} MB   (per shim, mean)",
        samples.len(),
        mean(|s| s.0),
        mean(|s| s.1)
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let bin = berth_tests::shim::install(dir.path(), Some(&berth_tests::shim::shipping_binary()));
    let containerd = Containerd::start_with_path(&dir.path().join("c"), Some(&bin));
    let ctr = || containerd.ctr(NAMESPACE);
    let archive = busybox().archive.to_str().unwrap().to_owned();
    run_ok(ctr().args(["images", "import", &archive]));

    let run = |runtime: &[&str], id: &str| -> Command {
        let mut cmd = ctr();
        cmd.args(["run", "--detach"])
            .args(runtime)
            .arg("--cgroup")
            .arg(format!("{}/{id}", containerd.cgroup_parent().path()))
            .arg("--fifo-dir")
            .arg(containerd.fifo_dir())
            .args([IMAGE, id, "sleep", "100000"]);
        cmd
    };
    let runc_root = dir.path().join("runc");
    let runc_root = runc_root.to_str().unwrap();
    for n in 0..CONTAINERS {
        run_ok(&mut run(
            &["--runtime", "io.containerd.berth.v2"],
            &format!("berth-{n}"),
        ));
        run_ok(&mut run(
            &[
                "--runtime",
                "io.containerd.runc.v2",
                "--runc-root",
                runc_root,
            ],
            &format!("runc-{n}"),
        ));
    }
    println!("{CONTAINERS} containers of `sleep` under each shim:");
    report(
        "berth-shim",
        &shims(
            &["berth-shim", "containerd-shim-berth-v2"],
            containerd.dir(),
        ),
    );
    report(
        "containerd-shim-runc-v2",
        &shims(&["containerd-shim-runc-v2"], containerd.dir()),
    );
    println!("target for berth-shim: RSS < 3 MB, PSS < 1 MB");
    // Dropping the containerd kills the containers and deletes the tasks.
}
