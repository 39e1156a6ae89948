//! A bounded soak: a thousand `berth-runc run`s of a program that exits at once.
//! None may hang (the race `run` is built to avoid), and afterwards nothing may be
//! left: no state directory, no cgroup, no mount, no zombie.

use std::time::{Duration, Instant};

use berth_tests::runtime::{Bundle, Runtime};

const RUNS: usize = 1000;

#[test]
fn a_thousand_runs_of_true_neither_hang_nor_leak() {
    let runtime = Runtime::berth();
    let bundle = Bundle::new(|spec| {
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec!["true".into()]));
        spec.set_process(Some(process));
    });
    // Mounts are counted only where the runtime works (the bundle and its own
    // directories): other tests, or anything else on the host, may mount and
    // unmount meanwhile, and the mount table is the host's.
    let ours = [bundle.path().to_owned(), runtime.scratch().to_owned()];
    let mounts_before = mount_count(&ours);
    let start = Instant::now();
    for n in 0..RUNS {
        let outcome = runtime.run(&bundle);
        assert_eq!(outcome.status, 0, "run {n} of {RUNS} failed:\n{outcome}");
    }
    eprintln!("{RUNS} runs in {:?}", start.elapsed());
    runtime.assert_clean();
    assert_eq!(mount_count(&ours), mounts_before, "mounts leaked");
    assert_eq!(zombies(), 0, "zombie children left behind");
}

/// Mounts whose line names one of `dirs` (as mount point or source).
fn mount_count(dirs: &[std::path::PathBuf]) -> usize {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| dirs.iter().any(|dir| line.contains(dir.as_str())))
        .count()
}

/// Our own children that have exited but were never reaped.
fn zombies() -> usize {
    // Give a just-exited child a moment to be reaped by whoever owns it.
    std::thread::sleep(Duration::from_millis(50));
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let fields: Vec<&str> = after.split(' ').collect();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str())
        })
        .count()
}
