//! What the integration tests share: the OTLP/HTTP receiver of `berth-tests`, and a way
//! to run this very test binary again as another process playing another role.
//!
//! Why other processes: [`berth_trace::init`] installs a process-wide subscriber, so
//! each process may call it once, and what is under test is precisely what happens
//! between processes. Each test re-runs its own binary (`current_exe`) with
//! `--exact <test name>`, and an environment variable saying which role to play.
//!
//! Every wait here is bounded: a broken exporter fails a test, it never hangs one.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

// Each test file uses its own part of the receiver too.
#[allow(unused_imports)]
pub use berth_tests::otlp::{Receiver, SpanSeen, PATIENCE};

/// The environment variable naming the role a re-run test binary plays.
pub const ROLE: &str = "BERTH_TRACE_TEST_ROLE";

/// The role this process plays; `None` for the test runner itself.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A command running this test binary again, only `test_name`, in `role`, with every
/// trace-related variable of the runner's own environment removed (the machine
/// running the tests may have its own collector configured).
pub fn rerun_as(test_name: &str, role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(ROLE, role);
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "TRACEPARENT",
        "TRACESTATE",
    ] {
        command.env_remove(var);
    }
    command
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub output: String,
}

/// Runs `command` to completion, for at most [`PATIENCE`]: killed and reported if
/// it takes longer. Its stdout and stderr are kept, to be shown if it fails.
pub fn run_bounded(mut command: Command) -> Finished {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the test binary again");
    // Drained by threads while we wait, so a chatty process cannot fill a pipe and stall.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the test binary") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {PATIENCE:?}; killed it");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    Finished { status, output }
}

/// Panics with the process's output unless it exited with status 0.
pub fn assert_success(finished: &Finished, what: &str) {
    assert!(
        finished.status.success(),
        "{what} failed ({}):\n{}",
        finished.status,
        finished.output
    );
}
