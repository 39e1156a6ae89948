//! The real dockerd (Debian's 20.10) driving berth-containerd through `--containerd`:
//! the experiment of issue 7. dockerd keeps images and root filesystems itself (its
//! graphdriver) and asks containerd only for containers, tasks, execs and events, in
//! namespace `moby`, with Debian's `containerd-shim-runc-v2` as the shim. If `docker
//! run`, `logs`, `exec`, `top`, `pause`, `stop` and `rm` work, berth-containerd speaks
//! containerd's API well enough for the client it was written to replace.

use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::images::busybox;
use berth_tests::peers::{output, output_with_input, run_ok, Dockerd};
use berth_tests::shim::wait_until;
use tempfile::TempDir;

/// berth-containerd and a dockerd on it, with the test image loaded. Dropped in
/// reverse order: dockerd first, then berth-containerd.
fn start(extra_args: &[&str]) -> (TempDir, BerthContainerd, Dockerd) {
    let dir = tempfile::tempdir().unwrap();
    let berth = BerthContainerd::start(&dir.path().join("berth"));
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    let dockerd =
        Dockerd::start_on_containerd(&dir.path().join("docker"), &berth.socket, extra_args);
    let archive = busybox().archive.to_str().unwrap().to_owned();
    let loaded = run_ok(dockerd.docker().args(["load", "--input", &archive]));
    assert!(loaded.contains("busybox:latest"), "{loaded}");
    (dir, berth, dockerd)
}

/// Runs `docker ARGS`, failing with both daemons' logs if it fails.
fn docker(berth: &BerthContainerd, dockerd: &Dockerd, args: &[&str]) -> String {
    let out = output(dockerd.docker().args(args));
    assert_eq!(
        out.status,
        0,
        "docker {args:?} failed:\n{out}\n--- dockerd:\n{}\n--- berth-containerd:\n{}",
        dockerd.log(),
        berth.log()
    );
    out.stdout
}

/// `docker inspect -f FORMAT ID`, trimmed.
fn inspect(berth: &BerthContainerd, dockerd: &Dockerd, format: &str, id: &str) -> String {
    docker(berth, dockerd, &["inspect", "-f", format, id])
        .trim()
        .to_owned()
}

#[test]
fn docker_run_rm_prints_the_output() {
    let (_dir, berth, dockerd) = start(&[]);
    let out = docker(&berth, &dockerd, &["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(out, "hi\n");
    // --rm: dockerd deleted the container, and berth-containerd's task and shim.
    // The exit status comes back through the shim's /tasks/exit event, and stdin
    // through the fifo dockerd made under its exec-root.
    let out = output(
        dockerd
            .docker()
            .args(["run", "--rm", "busybox", "sh", "-c", "exit 3"]),
    );
    assert_eq!(out.status, 3, "{out}");
    let out = output_with_input(
        dockerd
            .docker()
            .args(["run", "--rm", "-i", "busybox", "cat"]),
        b"through stdin\n",
    );
    assert_eq!(out.stdout, "through stdin\n", "{out}");
    let listed = docker(&berth, &dockerd, &["ps", "-aq"]);
    assert_eq!(listed.trim(), "", "containers left: {listed}");
    berth.assert_clean();
    assert_eq!(run_ok(berth.ctr("moby").args(["tasks", "ls", "-q"])), "");
    assert_eq!(
        run_ok(berth.ctr("moby").args(["containers", "ls", "-q"])),
        ""
    );
}

#[test]
fn a_detached_container_logs_execs_pauses_and_stops() {
    let (_dir, berth, dockerd) = start(&[]);
    let id = docker(
        &berth,
        &dockerd,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo started; exec sleep 1000",
        ],
    );
    let id = id.trim();
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.Status}}", "web"),
        "running"
    );
    // berth-containerd has the task, in dockerd's namespace.
    let tasks = run_ok(berth.ctr("moby").args(["tasks", "ls"]));
    assert!(tasks.contains(id) && tasks.contains("RUNNING"), "{tasks}");

    wait_until("docker logs shows the output", || {
        docker(&berth, &dockerd, &["logs", "web"]) == "started\n"
    });
    assert_eq!(
        docker(&berth, &dockerd, &["exec", "web", "echo", "x"]),
        "x\n"
    );
    let top = docker(&berth, &dockerd, &["top", "web"]);
    assert!(top.contains("sleep 1000"), "{top}");

    docker(&berth, &dockerd, &["pause", "web"]);
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.Status}}", "web"),
        "paused"
    );
    let tasks = run_ok(berth.ctr("moby").args(["tasks", "ls"]));
    assert!(tasks.contains("PAUSED"), "{tasks}");
    docker(&berth, &dockerd, &["unpause", "web"]);
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.Status}}", "web"),
        "running"
    );

    // A pid 1 with a SIGTERM handler gets the signal (Tasks.Kill 15) and exits itself.
    docker(
        &berth,
        &dockerd,
        &[
            "run",
            "-d",
            "--name",
            "trap",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 3' TERM; echo ready; sleep 1000 & wait",
        ],
    );
    // Stopped only once the handler is set: a pid 1 without one ignores SIGTERM.
    wait_until("the trap is set", || {
        docker(&berth, &dockerd, &["logs", "trap"]) == "ready\n"
    });
    docker(&berth, &dockerd, &["stop", "trap"]);
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.ExitCode}}", "trap"),
        "3"
    );
    docker(&berth, &dockerd, &["rm", "trap"]);

    // `sleep` is the container's pid 1, which the kernel shields from every signal
    // it has no handler for: SIGTERM does nothing, and after the grace period
    // dockerd kills it (Tasks.Kill 15, then 9), as it would on real containerd.
    docker(&berth, &dockerd, &["stop", "-t", "1", "web"]);
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.Status}}", "web"),
        "exited"
    );
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.ExitCode}}", "web"),
        "137"
    );
    wait_until("the shim has exited", || berth.shim_pids().is_empty());

    // Started again, then removed by force while running.
    docker(&berth, &dockerd, &["start", "web"]);
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.Status}}", "web"),
        "running"
    );
    docker(&berth, &dockerd, &["rm", "-f", "web"]);
    assert_eq!(docker(&berth, &dockerd, &["ps", "-aq"]).trim(), "");
    wait_until("the shim has exited", || berth.shim_pids().is_empty());
    assert_eq!(
        run_ok(berth.ctr("moby").args(["containers", "ls", "-q"])),
        ""
    );
    berth.assert_clean();
}

#[test]
fn live_restore_keeps_a_container_through_a_dockerd_restart() {
    let (_dir, berth, mut dockerd) = start(&["--live-restore"]);
    docker(
        &berth,
        &dockerd,
        &["run", "-d", "--name", "kept", "busybox", "sleep", "1000"],
    );
    let pid = inspect(&berth, &dockerd, "{{.State.Pid}}", "kept");

    dockerd.restart();
    let listed = docker(
        &berth,
        &dockerd,
        &["ps", "--format", "{{.Names}} {{.Status}}"],
    );
    assert!(listed.contains("kept Up"), "{listed}");
    // The same process, never restarted.
    assert_eq!(inspect(&berth, &dockerd, "{{.State.Pid}}", "kept"), pid);
    assert_eq!(
        docker(&berth, &dockerd, &["exec", "kept", "echo", "x"]),
        "x\n"
    );

    docker(&berth, &dockerd, &["stop", "kept"]);
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.Status}}", "kept"),
        "exited"
    );
    docker(&berth, &dockerd, &["rm", "kept"]);
    berth.assert_clean();
}

#[test]
fn a_container_keeps_running_while_berth_containerd_is_killed_and_restarted() {
    let (_dir, mut berth, dockerd) = start(&[]);
    let counter = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done";
    docker(
        &berth,
        &dockerd,
        &[
            "run", "-d", "--name", "counter", "busybox", "sh", "-c", counter,
        ],
    );
    let pid = inspect(&berth, &dockerd, "{{.State.Pid}}", "counter");

    let lines = |berth: &BerthContainerd| {
        docker(berth, &dockerd, &["logs", "counter"])
            .lines()
            .count()
    };
    berth.kill();
    // With the supervisor gone, the container is only its shim's child: still running,
    // its output still reaching dockerd through the shim's fifo.
    let before = lines(&berth);
    wait_until(
        "the counter keeps printing while berth-containerd is down",
        || lines(&berth) > before + 5,
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    berth.restart();

    // dockerd reconnects by itself (gRPC retries with backoff) and subscribes to
    // events again; the first exec that goes through proves both sides are back.
    wait_until("docker exec works again after the restart", || {
        output(dockerd.docker().args(["exec", "counter", "true"])).status == 0
    });
    assert_eq!(inspect(&berth, &dockerd, "{{.State.Pid}}", "counter"), pid);
    let numbers: Vec<u64> = docker(&berth, &dockerd, &["logs", "counter"])
        .lines()
        .map(|line| line.parse().expect("the counter prints numbers"))
        .collect();
    // Every line once, in order: nothing was lost or repeated while the supervisor
    // was down, because the shim, not the supervisor, holds the output pipe.
    let expected: Vec<u64> = (0..numbers.len() as u64).collect();
    assert_eq!(numbers, expected);

    docker(&berth, &dockerd, &["stop", "--time", "1", "counter"]);
    assert_eq!(
        inspect(&berth, &dockerd, "{{.State.Status}}", "counter"),
        "exited"
    );
    docker(&berth, &dockerd, &["rm", "counter"]);
    berth.assert_clean();
}

#[test]
fn a_tty_stats_and_a_live_memory_update_go_through_berth_containerd() {
    let (_dir, berth, dockerd) = start(&[]);
    // -t: the shim gives the container a pseudo-terminal as its stdio.
    let tty = docker(&berth, &dockerd, &["run", "--rm", "-t", "busybox", "tty"]);
    assert_eq!(tty.trim(), "/dev/pts/0");

    docker(
        &berth,
        &dockerd,
        &[
            "run", "-d", "--name", "sized", "--memory", "64m", "busybox", "sleep", "1000",
        ],
    );
    // docker stats reads Tasks.Metrics, which berth-containerd asks the shim for.
    let stats = docker(
        &berth,
        &dockerd,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}}",
            "sized",
        ],
    );
    assert!(
        stats.starts_with("sized ") && stats.contains("/ 64MiB"),
        "{stats}"
    );
    // docker update changes the running task's limit through Tasks.Update.
    docker(
        &berth,
        &dockerd,
        &[
            "update",
            "--memory",
            "96m",
            "--memory-swap",
            "192m",
            "sized",
        ],
    );
    let stats = docker(
        &berth,
        &dockerd,
        &["stats", "--no-stream", "--format", "{{.MemUsage}}", "sized"],
    );
    assert!(stats.contains("/ 96MiB"), "{stats}");
    docker(&berth, &dockerd, &["rm", "-f", "sized"]);
    berth.assert_clean();
}
