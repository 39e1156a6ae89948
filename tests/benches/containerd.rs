//! The supervisor's cost: berth-containerd against the real containerd 1.6, one run,
//! one machine.
//!
//! Both supervisors are started side by side, each in its own temporary directory
//! (`berth_tests::peers::Containerd`, `berth_tests::berth_containerd::BerthContainerd`),
//! and given the test image. Then each runs 20 detached tasks of `sleep` through the
//! same shim, Debian's `containerd-shim-runc-v2` (runtime `io.containerd.runc.v2`), so
//! only the supervisor differs. Measured for each:
//!
//! - its memory (RSS and PSS, `/proc/PID/smaps_rollup`) idle after the import, and
//!   with the 20 tasks running: the supervisor process only, never its shims (whose
//!   cost `benches/shim.rs` measures);
//! - the latency of `ctr run -d` (create the container, create and start the task):
//!   `ctr` returns once the task is started, so the command's wall time is create to
//!   RUNNING, ctr's own start-up included, the same for both.
//!
//! The starts alternate between the two (and which goes first), so whatever else the
//! machine does weighs on both alike. The targets (berth-containerd's PSS under a third
//! of containerd's, a faster median start) are printed, never asserted.
//!
//! The berth-containerd measured is the release build
//! (`berth_tests::build::release_binary`), as shipped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::build::release_binary;
use berth_tests::images::busybox;
use berth_tests::peers::{require, run_ok, Containerd};
use berth_tests::shim::{memory_kb, processes_naming, wait_until};

const TASKS: usize = 20;
const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "bench";
const RUNTIME: &str = "io.containerd.runc.v2";
/// How long a supervisor is left alone before its memory is read, so the work just
/// done (an import, 20 starts) has settled.
const SETTLE: Duration = Duration::from_secs(3);

/// One supervisor under measurement, and what `ctr run` needs to know to use it.
struct Subject<'a> {
    name: &'static str,
    pid: i32,
    ctr: Box<dyn Fn() -> Command + 'a>,
    /// The cgroup for task `id` (`ctr run --cgroup`), below the supervisor's own parent.
    cgroup_of: Box<dyn Fn(&str) -> String + 'a>,
    fifo_dir: PathBuf,
    /// `ctr run --runc-root`: each supervisor's runc keeps its state apart, since both
    /// use the same namespace and container ids.
    runc_root: PathBuf,
    /// (RSS, PSS) in kB: idle, then with the tasks running.
    idle: (u64, u64),
    busy: (u64, u64),
    starts: Vec<Duration>,
}

impl Subject<'_> {
    /// `ctr run -d` of task `id`, timed.
    fn start_task(&mut self, id: &str) {
        let mut run = (self.ctr)();
        run.args(["run", "--detach", "--runtime", RUNTIME, "--runc-root"])
            .arg(&self.runc_root)
            .arg("--cgroup")
            .arg((self.cgroup_of)(id))
            .arg("--fifo-dir")
            .arg(&self.fifo_dir)
            .args([IMAGE, id, "sleep", "600"]);
        let began = Instant::now();
        run_ok(&mut run);
        self.starts.push(began.elapsed());
    }

    /// The tasks `ctr task ls` shows in `status`.
    fn tasks_in(&self, status: &str) -> usize {
        run_ok((self.ctr)().args(["task", "ls"]))
            .lines()
            .filter(|line| line.split_whitespace().nth(2) == Some(status))
            .count()
    }

    /// Kills and deletes every task, then removes every container.
    fn clean_up(&self, ids: &[String]) {
        for id in ids {
            run_ok((self.ctr)().args(["task", "kill", "--signal", "SIGKILL", id]));
        }
        wait_until(&format!("{}'s tasks have stopped", self.name), || {
            self.tasks_in("STOPPED") == ids.len()
        });
        for id in ids {
            run_ok((self.ctr)().args(["task", "delete", id]));
            run_ok((self.ctr)().args(["containers", "rm", id]));
        }
    }

    /// (median, min, max) of the starts, in ms.
    fn start_ms(&self) -> (f64, f64, f64) {
        let mut ms: Vec<f64> = self
            .starts
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n.is_multiple_of(2) {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        } else {
            ms[n / 2]
        };
        (median, ms[0], ms[n - 1])
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn row(what: &str, berth: f64, containerd: f64, unit: &str) {
    println!(
        "{what:<26} {berth:>10.2} {unit:<2} {containerd:>10.2} {unit:<2} {:>8.2}",
        berth / containerd
    );
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "NOT met"
    }
}

fn main() {
    let release = release_binary("berth-containerd");
    let dir = tempfile::tempdir().unwrap();
    let archive = busybox().archive.to_str().unwrap().to_owned();

    let berth = BerthContainerd::start_binary(&dir.path().join("berth"), &release);
    let containerd = Containerd::start(&dir.path().join("containerd"));
    // containerd's own process: the one whose program is containerd (its shims'
    // command lines name its directory too).
    let containerd_pid = processes_naming(containerd.dir())
        .into_iter()
        .find(|(_, cmdline)| {
            let program = cmdline.split(' ').next().unwrap_or_default();
            program.ends_with("/containerd") || program == "containerd"
        })
        .map(|(pid, _)| pid)
        .expect("containerd's process is running");

    let mut subjects = [
        Subject {
            name: "berth-containerd",
            pid: berth.pid().expect("berth-containerd is running"),
            ctr: Box::new(|| berth.ctr(NAMESPACE)),
            cgroup_of: Box::new(|id| berth.cgroup_of(id)),
            fifo_dir: berth.fifo_dir(),
            runc_root: dir.path().join("runc-berth"),
            idle: (0, 0),
            busy: (0, 0),
            starts: Vec::new(),
        },
        Subject {
            name: "containerd",
            pid: containerd_pid,
            ctr: Box::new(|| containerd.ctr(NAMESPACE)),
            cgroup_of: Box::new(|id| format!("{}/{id}", containerd.cgroup_parent().path())),
            fifo_dir: containerd.fifo_dir(),
            runc_root: dir.path().join("runc-containerd"),
            idle: (0, 0),
            busy: (0, 0),
            starts: Vec::new(),
        },
    ];

    for subject in &subjects {
        run_ok((subject.ctr)().args(["images", "import", &archive]));
    }
    std::thread::sleep(SETTLE);
    for subject in &mut subjects {
        subject.idle = memory_kb(subject.pid);
    }

    let ids: Vec<String> = (0..TASKS).map(|n| format!("c{n}")).collect();
    for (n, id) in ids.iter().enumerate() {
        // Alternate which supervisor goes first.
        let order = if n.is_multiple_of(2) { [0, 1] } else { [1, 0] };
        for i in order {
            subjects[i].start_task(id);
        }
    }
    for subject in &subjects {
        let running = subject.tasks_in("RUNNING");
        assert_eq!(running, TASKS, "{}: {running} tasks running", subject.name);
    }
    std::thread::sleep(SETTLE);
    for subject in &mut subjects {
        subject.busy = memory_kb(subject.pid);
    }

    let version = run_ok(Command::new(require("containerd")).arg("--version"));
    println!(
        "supervisor process only (no shims); {TASKS} tasks of `sleep`, runtime {RUNTIME} for both"
    );
    println!("containerd: {}", version.trim());
    println!(
        "{:<26} {:>13} {:>13} {:>8}",
        "", "berth (rel.)", "containerd", "ratio"
    );
    let [b, c] = &subjects;
    row("PSS idle", mb(b.idle.1), mb(c.idle.1), "MB");
    row("RSS idle", mb(b.idle.0), mb(c.idle.0), "MB");
    row(
        &format!("PSS, {TASKS} tasks running"),
        mb(b.busy.1),
        mb(c.busy.1),
        "MB",
    );
    row(
        &format!("RSS, {TASKS} tasks running"),
        mb(b.busy.0),
        mb(c.busy.0),
        "MB",
    );
    let (b_median, b_min, b_max) = b.start_ms();
    let (c_median, c_min, c_max) = c.start_ms();
    row("`ctr run -d`, median", b_median, c_median, "ms");
    row("`ctr run -d`, min", b_min, c_min, "ms");
    row("`ctr run -d`, max", b_max, c_max, "ms");
    println!(
        "target PSS < 1/3 of containerd's: idle {}, {TASKS} tasks {}",
        met(b.idle.1 * 3 < c.idle.1),
        met(b.busy.1 * 3 < c.busy.1)
    );
    println!("target faster median start: {}", met(b_median < c_median));

    for subject in &subjects {
        subject.clean_up(&ids);
    }
    // Dropping the supervisors removes whatever is left: shims, mounts, cgroups.
}
