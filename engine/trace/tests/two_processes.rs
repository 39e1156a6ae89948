//! One trace across two real processes, the way berth-shim starts berth-runc.
//!
//! Three processes take part: this test (the runner) listens as an OTLP/HTTP receiver
//! and starts a *parent*; the parent opens a span and starts a *child* with
//! `TRACEPARENT` in its environment; the child opens a span under that parent, flushes
//! and exits at once, as a short-lived runtime does. Parent and child each export to
//! the runner, under their own `service.name`.

mod common;

use std::time::Duration;

use berth_trace::context::has_span;
use common::{Receiver, SpanSeen};
use opentelemetry_proto::tonic::trace::v1::SpanFlags;

const TEST: &str = "a_child_process_continues_its_parents_trace";
const PARENT_SERVICE: &str = "berth-trace-test-parent";
const CHILD_SERVICE: &str = "berth-trace-test-child";
const PARENT_SPAN: &str = "start child";
const CHILD_SPAN: &str = "child work";

#[test]
fn a_child_process_continues_its_parents_trace() {
    match common::role().as_deref() {
        Some("parent") => parent(),
        Some("child") => child(),
        _ => runner(),
    }
}

fn runner() {
    let receiver = Receiver::start();
    let mut parent = common::rerun_as(TEST, "parent");
    // The base endpoint, as a user would set it: the exporter appends `/v1/traces`.
    parent.env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint);
    common::assert_success(&common::run_bounded(parent), "the parent process");

    let exports = receiver.collect_until(|spans| {
        [PARENT_SPAN, CHILD_SPAN]
            .iter()
            .all(|name| spans.iter().any(|span| span.name == *name))
    });
    for export in &exports {
        assert_eq!(export.path, "/v1/traces");
        assert_eq!(export.content_type, "application/x-protobuf");
    }
    let spans: Vec<SpanSeen> = exports.iter().flat_map(|export| export.spans()).collect();
    let find = |name: &str| spans.iter().find(|span| span.name == name).unwrap().clone();
    let (parent, child) = (find(PARENT_SPAN), find(CHILD_SPAN));

    // One trace: every span the two processes sent has the same trace id.
    assert_eq!(parent.trace_id.len(), 16);
    for span in &spans {
        assert_eq!(
            span.trace_id, parent.trace_id,
            "{span:?} is in another trace"
        );
    }
    // The parent's span starts the trace; the child's hangs under it, across the process
    // boundary, and says its parent was remote.
    assert!(
        parent.parent_span_id.is_empty(),
        "the parent span has a parent: {parent:?}"
    );
    assert_eq!(child.parent_span_id, parent.span_id);
    let remote = SpanFlags::ContextHasIsRemoteMask as u32 | SpanFlags::ContextIsRemoteMask as u32;
    assert_eq!(
        child.flags & remote,
        remote,
        "the child's parent is not marked remote"
    );
    // Two processes, two lanes.
    assert_eq!(parent.service, PARENT_SERVICE);
    assert_eq!(child.service, CHILD_SERVICE);
}

/// The parent lets its [`berth_trace::Guard`] drop at the end: `Drop` must send its span.
fn parent() {
    let guard = berth_trace::init(PARENT_SERVICE).unwrap();
    assert!(guard.is_exporting());
    {
        let span = tracing::info_span!(PARENT_SPAN);
        let _entered = span.enter();
        let mut child = common::rerun_as(TEST, "child");
        // `rerun_as` starts from a clean slate; a real child would inherit the endpoint.
        child.env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap(),
        );
        berth_trace::env::set_on_command(&mut child);
        let traceparent = child
            .get_envs()
            .find(|(name, _)| *name == "TRACEPARENT")
            .and_then(|(_, value)| value)
            .expect("set_on_command set no TRACEPARENT")
            .to_owned();
        eprintln!("parent: starting the child with TRACEPARENT={traceparent:?}");
        common::assert_success(&common::run_bounded(child), "the child process");
    }
}

/// The child flushes and exits on the spot, as a runtime does: `Drop` never runs.
fn child() {
    let guard = berth_trace::init(CHILD_SERVICE).unwrap();
    assert!(guard.is_exporting());
    let parent = berth_trace::env::extract_from_process();
    assert!(has_span(&parent), "no parent context in TRACEPARENT");
    {
        let span = tracing::info_span!(CHILD_SPAN);
        berth_trace::set_parent(&span, parent);
        let _entered = span.enter();
        std::thread::sleep(Duration::from_millis(5));
    }
    guard.flush().expect("flush the child's span");
    std::process::exit(0);
}
