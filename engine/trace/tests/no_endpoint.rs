//! Without an endpoint, berth-trace is only a log layer: no OpenTelemetry provider, no
//! exporter, no thread, and every propagation helper does nothing.
//!
//! Each test re-runs this binary as a quiet process (an endpoint unset, or set but
//! empty, which the OpenTelemetry specification says means the same), because `init`
//! may run once per process.

mod common;

use std::process::Command;

use berth_trace::context::{current_context, has_span};
use berth_trace::{env, headers, SetupError};

#[test]
fn nothing_is_exported_when_no_endpoint_is_set() {
    check("nothing_is_exported_when_no_endpoint_is_set", |_| {});
}

#[test]
fn nothing_is_exported_when_the_endpoint_is_empty() {
    check(
        "nothing_is_exported_when_the_endpoint_is_empty",
        |command| {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", "");
            command.env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "");
        },
    );
}

fn check(test: &str, environment: fn(&mut Command)) {
    if common::role().is_some() {
        quiet_main();
        return;
    }
    let mut quiet = common::rerun_as(test, "quiet");
    environment(&mut quiet);
    common::assert_success(&common::run_bounded(quiet), "the quiet process");
}

fn quiet_main() {
    let threads_before = thread_count();
    let guard = berth_trace::init("quiet").unwrap();
    assert!(!guard.is_exporting());
    // The exporting mode would have started the batch processor's thread by now.
    assert_eq!(thread_count(), threads_before, "init started a thread");

    let span = tracing::info_span!("quiet work");
    let _entered = span.enter();
    // Inside a span, yet nothing to pass on: no span is exported.
    assert!(!has_span(&current_context()));
    let mut request = http::HeaderMap::new();
    headers::inject(&mut request);
    assert!(request.is_empty(), "headers injected: {request:?}");
    assert!(env::vars_for_child().is_empty());

    // A parent that did come in (from an exporting process) is accepted and ignored.
    let parent = env::extract_from_vars([(
        "TRACEPARENT".to_string(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
    )]);
    assert!(has_span(&parent));
    let child = tracing::info_span!("quiet child");
    berth_trace::set_parent(&child, parent);
    drop(child);

    guard.flush().expect("a quiet flush is always Ok");
    assert!(
        matches!(
            berth_trace::init("again"),
            Err(SetupError::AlreadyInitialized { .. })
        ),
        "a second init must fail, not replace the first"
    );
}

/// The threads of this process, as Linux lists them.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}
