//! Tests against the real cgroup hierarchies of the machine running them (v1, v2 or hybrid).
//!
//! They need root, and skip (with a note on stderr) without it. Each test makes its own cgroup
//! `/berth-test-<pid>-<n>`, and a guard kills the test's process and removes the cgroup even
//! when an assertion fails. Nothing else is written, except that on a pure v2 host `create`
//! enables the available controllers in the root's `cgroup.subtree_control`, as every
//! container start does. Every wait is bounded.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::v1::tests::resources;
use super::{Cgroup, CgroupError, CgroupsPath, FreezerState, Hierarchy, Membership};

/// A cgroup made for one test, and the processes put in it; removed when dropped.
struct TestCgroup {
    name: String,
    cgroup: Cgroup,
    children: Vec<Child>,
}

impl TestCgroup {
    /// A new, not yet created cgroup with a name no other test uses; `None` when not root.
    fn new() -> Option<Self> {
        Self::on(Hierarchy::detect().unwrap())
    }

    /// Like [`new`](Self::new), but placed in the given hierarchies (a subset of the host's).
    fn on(hierarchy: Hierarchy) -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: cgroup tests on the real hierarchy need root");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("/berth-test-{}-{n}", std::process::id());
        let rule = CgroupsPath::from_spec(Some(Path::new(&name)), "unused").unwrap();
        let cgroup = Cgroup::place(&hierarchy, &Membership::of_self().unwrap(), &rule).unwrap();
        Some(TestCgroup {
            name,
            cgroup,
            children: Vec::new(),
        })
    }

    /// Starts a shell that waits for a line on stdin and then `exec`s `sleep 30`, and moves it
    /// into the cgroup. Like runc's init waiting to be started, it allocates its new program's
    /// memory only after joining, so that memory is charged to this cgroup.
    fn spawn_member(&mut self) -> Pid {
        self.spawn_running("exec sleep 30")
    }

    /// Starts a shell that runs `script` once told to (see [`release_last`](Self::release_last)),
    /// and moves it into the cgroup before then, so everything `script` starts is in it too.
    fn spawn_running(&mut self, script: &str) -> Pid {
        let child = Command::new("/bin/sh")
            .args(["-c", &format!("read go; {script}")])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        self.children.push(child);
        self.cgroup.add_process(pid).unwrap();
        pid
    }

    /// Tells the last spawned shell to go on.
    fn release_last(&mut self) {
        let child = self.children.last_mut().unwrap();
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }

    /// Releases the last spawned member and waits (bounded) until it has exec'd `sleep`.
    fn release_sleeper(&mut self) {
        self.release_last();
        let comm = PathBuf::from(format!("/proc/{}/comm", self.children.last().unwrap().id()));
        wait_until("the shell to exec sleep", || {
            std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
        });
    }

    fn dir(&self, controller: &str) -> PathBuf {
        self.cgroup.paths()[controller].clone()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Thaw first: a process frozen by cgroup v1 would not act on SIGKILL until thawed.
        let _ = self.cgroup.thaw();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.cgroup.destroy() {
            eprintln!("could not clean up test cgroup {}: {e}", self.name);
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn pure_v2() -> bool {
    matches!(Hierarchy::detect().unwrap(), Hierarchy::V2 { .. })
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn root_limits_written_are_the_limits_the_kernel_reports() {
    let Some(t) = TestCgroup::new() else { return };
    t.cgroup.create().unwrap();
    for dir in t.cgroup.paths().values() {
        assert!(dir.is_dir(), "{} was not created", dir.display());
    }
    // 64 MiB is a whole number of pages, so the kernel keeps it exactly.
    t.cgroup
        .apply(&resources(
            r#"{"memory": {"limit": 67108864}, "pids": {"limit": 20}}"#,
        ))
        .unwrap();
    if pure_v2() {
        assert_eq!(read(t.dir("").join("memory.max")), "67108864");
        assert_eq!(read(t.dir("").join("pids.max")), "20");
    } else {
        assert_eq!(
            read(t.dir("memory").join("memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(t.dir("pids").join("pids.max")), "20");
        if t.cgroup.paths().contains_key("cpuset") {
            assert!(
                !read(t.dir("cpuset").join("cpuset.cpus")).is_empty(),
                "cpuset.cpus was not inherited"
            );
        }
    }
}

#[test]
fn root_raising_memory_and_swap_together_is_accepted() {
    let Some(t) = TestCgroup::new() else { return };
    t.cgroup.create().unwrap();
    let has_swap = !pure_v2() && t.dir("memory").join("memory.memsw.limit_in_bytes").exists();
    let spec = |limit: u64| {
        let swap = if has_swap {
            format!(r#", "swap": {}"#, limit * 2)
        } else {
            String::new()
        };
        resources(&format!(r#"{{"memory": {{"limit": {limit}{swap}}}}}"#))
    };
    t.cgroup.apply(&spec(64 << 20)).unwrap();
    // Raising both above the current memory+swap limit only works in the right order.
    t.cgroup.update(&spec(512 << 20)).unwrap();
    t.cgroup.update(&spec(32 << 20)).unwrap();
    assert_eq!(t.cgroup.stats().unwrap().memory.usage.limit, 32 << 20);
}

#[test]
fn root_a_process_added_is_listed_and_sees_its_cgroup() {
    let Some(mut t) = TestCgroup::new() else {
        return;
    };
    t.cgroup.create().unwrap();
    let pid = t.spawn_member();
    assert_eq!(t.cgroup.pids().unwrap(), [pid]);

    let membership = Membership::of_process(pid).unwrap();
    let expected = Path::new(&t.name);
    for (controller, dir) in t.cgroup.paths() {
        let seen = if controller.is_empty() {
            membership.v2.clone()
        } else {
            membership.v1.get(&controller).cloned()
        };
        assert_eq!(
            seen.as_deref(),
            Some(expected),
            "{controller} ({})",
            dir.display()
        );
    }
}

/// Starts a member that appends a line to a file every 10 ms, then checks that freezing stops
/// it (the file stops growing) and thawing lets it go on: what "frozen" means, whatever the
/// cgroup version. Returns the member's pid.
fn assert_freezing_stops_and_thawing_resumes(t: &mut TestCgroup) -> Pid {
    let ticks = tempfile::NamedTempFile::new().unwrap();
    let path = ticks.path().display().to_string();
    let pid = t.spawn_running(&format!(
        "while :; do echo tick >> {path}; sleep 0.01; done"
    ));
    t.release_last();
    let len = || std::fs::metadata(ticks.path()).unwrap().len();
    wait_until("the member to start ticking", || len() > 0);

    t.cgroup.freeze().unwrap();
    assert_eq!(t.cgroup.state().unwrap(), FreezerState::Frozen);
    let frozen_at = len();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(len(), frozen_at, "a frozen process kept running");

    t.cgroup.thaw().unwrap();
    assert_eq!(t.cgroup.state().unwrap(), FreezerState::Thawed);
    wait_until("the thawed process to tick again", || len() > frozen_at);
    pid
}

#[test]
fn root_a_frozen_container_makes_no_progress_until_thawed() {
    let Some(mut t) = TestCgroup::new() else {
        return;
    };
    t.cgroup.create().unwrap();
    assert_freezing_stops_and_thawing_resumes(&mut t);

    if t.cgroup.paths().contains_key("freezer") {
        // v1's freezer parks tasks in uninterruptible sleep, which ps shows as D; so even
        // SIGTERM waits for the thaw. (v2 lets fatal signals through to frozen tasks.)
        let pid = t.spawn_member();
        t.release_sleeper();
        t.cgroup.freeze().unwrap();
        let status = read(PathBuf::from(format!("/proc/{pid}/status")));
        assert!(status.contains("State:\tD"), "{status}");
        kill(pid, Signal::SIGTERM).unwrap();
        thread::sleep(Duration::from_millis(200));
        let child = t.children.last_mut().unwrap();
        assert!(child.try_wait().unwrap().is_none(), "a frozen process died");
        t.cgroup.thaw().unwrap();
        wait_until("the thawed process to act on SIGTERM", || {
            child.try_wait().unwrap().is_some()
        });
    }
}

#[test]
fn root_stats_count_the_processes_memory_and_cpu() {
    let Some(mut t) = TestCgroup::new() else {
        return;
    };
    t.cgroup.create().unwrap();
    t.cgroup
        .apply(&resources(r#"{"pids": {"limit": 20}}"#))
        .unwrap();
    t.spawn_member();
    t.release_sleeper();

    let stats = t.cgroup.stats().unwrap();
    assert_eq!(stats.pids.current, 1, "{stats:?}");
    assert_eq!(stats.pids.limit, 20, "{stats:?}");
    assert!(stats.memory.usage.usage > 0, "{stats:?}");
    assert!(stats.cpu.usage.total > 0, "{stats:?}");
}

#[test]
fn root_destroy_leaves_nothing_behind_and_can_run_twice() {
    let Some(mut t) = TestCgroup::new() else {
        return;
    };
    t.cgroup.create().unwrap();
    t.spawn_member();
    let mut child = t.children.pop().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    t.cgroup.destroy().unwrap();
    for dir in t.cgroup.paths().values() {
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
    t.cgroup.destroy().unwrap();
}

#[test]
fn root_destroy_refuses_while_a_process_lives_and_names_it() {
    let Some(mut t) = TestCgroup::new() else {
        return;
    };
    t.cgroup.create().unwrap();
    let pid = t.spawn_member();
    let started = Instant::now();
    let err = t.cgroup.destroy().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "destroy waited {:?}",
        started.elapsed()
    );
    match &err {
        CgroupError::Busy { pids, .. } => assert_eq!(pids, &[pid.as_raw()]),
        other => panic!("expected Busy, got {other}"),
    }
    assert!(err.to_string().contains("kill --all"), "{err}");
}

#[test]
fn root_on_a_hybrid_host_without_a_v1_freezer_the_v2_one_freezes() {
    // Only a hybrid host has both: drop v1's freezer so the cgroup falls back to cgroup2's
    // built-in cgroup.freeze. (On a hybrid host create() enables no v2 controllers, so this
    // writes nothing outside the test's own cgroup.)
    let Hierarchy::Hybrid {
        mut controllers,
        unified,
    } = Hierarchy::detect().unwrap()
    else {
        eprintln!("skipping: this host is not hybrid");
        return;
    };
    controllers.remove("freezer");
    let Some(mut t) = TestCgroup::on(Hierarchy::Hybrid {
        controllers,
        unified,
    }) else {
        return;
    };
    assert!(!t.cgroup.paths().contains_key("freezer"));
    t.cgroup.create().unwrap();
    assert_freezing_stops_and_thawing_resumes(&mut t);
}
