//! What goes wrong, and how it is reported: a bad endpoint fails `init`; a failed export
//! is tried once, dropped, and reported by `flush`.
//!
//! Retries are off because a short-lived runtime cannot wait out a retry backoff before
//! it exits. The receiver here answers `503 Service Unavailable`, which OTLP/HTTP
//! defines as worth retrying, so an exporter with retries on would send the same batch
//! again; this one must not.

mod common;

use berth_trace::SetupError;
use common::Receiver;

#[test]
fn a_failed_export_is_sent_once_and_reported() {
    const TEST: &str = "a_failed_export_is_sent_once_and_reported";
    if common::role().is_some() {
        let guard = berth_trace::init("berth-runc").unwrap();
        tracing::info_span!("create").in_scope(|| {});
        let error = guard.flush().expect_err("the receiver answered 503");
        assert!(matches!(error, SetupError::Flush { .. }), "{error}");
        return;
    }
    let receiver = Receiver::answering("503 Service Unavailable");
    let mut runtime = common::rerun_as(TEST, "runtime");
    runtime.env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    common::assert_success(&common::run_bounded(runtime), "the runtime process");

    // The runtime's flush returned only after its export's answer, and the receiver
    // hands a request over before answering it: every request is in by now.
    let exports = receiver.received();
    assert_eq!(
        exports.len(),
        1,
        "the batch was sent {} times",
        exports.len()
    );
    assert_eq!(exports[0].spans()[0].name, "create");
}

#[test]
fn a_malformed_endpoint_fails_init() {
    const TEST: &str = "a_malformed_endpoint_fails_init";
    if common::role().is_some() {
        let error = berth_trace::init("berthd").expect_err("a URL with a space in it");
        assert!(matches!(error, SetupError::Exporter { .. }), "{error}");
        // The message names the variable to fix.
        assert!(
            error
                .to_string()
                .contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            "{error}"
        );
        return;
    }
    let mut daemon = common::rerun_as(TEST, "daemon");
    daemon.env(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://127.0.0.1:4318/not a url",
    );
    common::assert_success(&common::run_bounded(daemon), "the daemon process");
}
