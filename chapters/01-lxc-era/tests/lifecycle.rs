//! The chapter's claims, checked against a real daemon on a temporary root, driven by
//! the real binary as a client, running containers through the real LXC tools.
//! Needs root and Debian's `lxc` package.

use std::path::Path;
use std::process::Command;

use berth_tests::chapter::{line_of, process_with, text, unique_seconds, wait_for, Daemon};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_lxc-era");

/// Killing the daemon, hard or cleanly, leaves no container running.
fn containers_die_with_the_daemon(signal: Signal) {
    let mut daemon = Daemon::start(BIN);
    daemon.load();
    let seconds = unique_seconds();
    daemon.stdout(&["run", "-d", "--name", "long", "busybox", "sleep", &seconds]);
    wait_for("the container's sleep to start", || process_with(&seconds));
    assert!(line_of(&daemon.stdout(&["ps"]), "long").is_some());

    daemon.signal(signal);
    wait_for("the container's sleep to die with the daemon", || {
        !process_with(&seconds)
    });

    daemon.restart();
    assert!(!process_with(&seconds), "the container came back");
    assert!(
        line_of(&daemon.stdout(&["ps"]), "long").is_none(),
        "ps shows it running"
    );
    let all = daemon.stdout(&["ps", "-a"]);
    let line =
        line_of(&all, "long").unwrap_or_else(|| panic!("ps -a should list the container: {all}"));
    assert!(line.contains("Exited"), "{line}");
}

#[test]
fn sigkill_of_the_daemon_kills_its_containers() {
    containers_die_with_the_daemon(Signal::SIGKILL);
}

#[test]
fn sigterm_of_the_daemon_stops_its_containers() {
    containers_die_with_the_daemon(Signal::SIGTERM);
}

#[test]
fn run_prints_the_output_and_exits_with_the_code() {
    let daemon = Daemon::start(BIN);
    daemon.load();
    assert!(daemon.stdout(&["images"]).contains("busybox"));
    let out = daemon.ok(&[
        "run",
        "--name",
        "hi",
        "busybox",
        "sh",
        "-c",
        "echo hello; hostname; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("hello\n"), "{stdout}");
    assert_eq!(daemon.stdout(&["logs", "hi"]), stdout);
    let ps = daemon.stdout(&["ps", "-a"]);
    assert!(
        line_of(&ps, "hi").expect("listed").contains("Exited (3)"),
        "{ps}"
    );
}

#[test]
fn stop_then_rm() {
    let daemon = Daemon::start(BIN);
    daemon.load();
    let seconds = unique_seconds();
    let id = daemon.stdout(&["run", "-d", "--name", "web", "busybox", "sleep", &seconds]);
    assert_eq!(id.trim().len(), 32, "run -d prints the id: {id}");
    wait_for("the container to start", || process_with(&seconds));
    assert!(daemon
        .fails(&["rm", "web"])
        .contains("is running; stop it first"));

    daemon.stdout(&["stop", "web"]);
    assert!(
        !process_with(&seconds),
        "stop returned before the container died"
    );
    assert!(line_of(&daemon.stdout(&["ps"]), "web").is_none());
    assert!(daemon.fails(&["stop", "web"]).contains("is not running"));

    daemon.stdout(&["rm", "web"]);
    assert!(line_of(&daemon.stdout(&["ps", "-a"]), "web").is_none());
    assert!(!Path::new(&daemon.root.path().join("root/containers").join(id.trim())).exists());
    assert!(daemon
        .fails(&["logs", "web"])
        .contains("no such container \"web\""));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let daemon = Daemon::start(BIN);
    daemon.load();
    let err = daemon.fails(&["run", "nosuchimage", "true"]);
    assert!(
        err.contains("no such image \"nosuchimage\"") && err.contains("lxc-era load"),
        "{err}"
    );

    let err = daemon.fails(&["run", "busybox", "no-such-program"]);
    assert!(
        err.contains("command \"no-such-program\" not found in the image"),
        "{err}"
    );

    daemon.stdout(&["run", "--name", "taken", "busybox", "true"]);
    let err = daemon.fails(&["run", "--name", "taken", "busybox", "true"]);
    assert!(err.contains("name \"taken\" is already in use"), "{err}");

    // Failed runs leave no container behind.
    let all = daemon.stdout(&["ps", "-a"]);
    assert_eq!(
        all.lines().count(),
        2,
        "only the header and \"taken\": {all}"
    );
}

#[test]
fn a_client_without_a_daemon_says_how_to_start_one() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let out = Command::new(BIN)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("ps")
        .output()
        .expect("the client runs");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("lxc-era daemon --root"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn each_request_is_one_trace_across_client_and_daemon() {
    let receiver = berth_tests::otlp::Receiver::start();
    let endpoint = (
        "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
        receiver.endpoint.clone(),
    );
    let mut daemon = Daemon::start_with_env(BIN, vec![endpoint]);
    daemon.stdout(&["ps"]);
    // A clean stop makes the daemon return from `serve` and flush its spans.
    daemon.signal(Signal::SIGTERM);

    let is_ps = |s: &berth_tests::otlp::SpanSeen, service: &str, name: &str| {
        s.service == service && s.name == name
    };
    let exports = receiver.collect_until(|spans| {
        let client = spans.iter().filter(|s| is_ps(s, "lxc-era", "request"));
        client.into_iter().any(|request| {
            spans
                .iter()
                .any(|s| s.name == "GET /containers" && s.parent_span_id == request.span_id)
        })
    });
    let spans: Vec<_> = exports.iter().flat_map(|e| e.spans()).collect();
    let api = spans
        .iter()
        .find(|s| s.name == "GET /containers")
        .expect("the daemon's span");
    let request = spans
        .iter()
        .find(|s| s.span_id == api.parent_span_id)
        .expect("the client's span");
    assert_eq!(
        api.trace_id, request.trace_id,
        "one trace across both processes"
    );
}
