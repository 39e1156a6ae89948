//! berth-runc continues its caller's trace: with `TRACEPARENT` set (as berth-shim will
//! set it), `run` exports its verb, its own steps and init's stages as spans of that
//! one trace, to the OTLP endpoint in its environment.

use berth_tests::otlp::{Receiver, SpanSeen};
use berth_tests::runtime::{Bundle, Runtime};

/// The caller's span, as a shim would pass it: trace id and span id in W3C form.
const TRACE_ID: &str = "4f2a9c1e6b7d8e9f0a1b2c3d4e5f6a7b";
const CALLER_SPAN: &str = "1a2b3c4d5e6f7a8b";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn run_exports_its_steps_and_inits_stages_under_the_callers_span() {
    let receiver = Receiver::start();
    let runtime = Runtime::berth();
    let bundle = Bundle::new(|spec| {
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec!["true".into()]));
        spec.set_process(Some(process));
    });
    let mut cmd = runtime.command(["run", "--bundle"]);
    cmd.arg(bundle.path())
        .arg(runtime.new_id())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
        .env("TRACEPARENT", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"));
    runtime.output(cmd).success();

    let wanted = [
        "berth-runc",
        "create",
        "cgroups",
        "clone",
        "mounts",
        "pivot_root",
        "user and capabilities",
        "start",
        "startContainer hooks",
        "exec",
        "delete",
    ];
    let exports = receiver.collect_until(|spans| {
        wanted
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name))
    });
    let spans: Vec<SpanSeen> = exports.iter().flat_map(|e| e.spans()).collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?}"))
    };

    for span in &spans {
        assert_eq!(
            hex(&span.trace_id),
            TRACE_ID,
            "{span:?} left the caller's trace"
        );
        assert_eq!(span.service, "berth-runc");
    }
    let verb = find("berth-runc");
    assert_eq!(
        hex(&verb.parent_span_id),
        CALLER_SPAN,
        "the verb hangs under the caller's span"
    );
    let create = find("create");
    assert_eq!(create.parent_span_id, verb.span_id);
    for step in [
        "cgroups",
        "clone",
        "mounts",
        "pivot_root",
        "user and capabilities",
    ] {
        let span = find(step);
        assert_eq!(
            span.parent_span_id, create.span_id,
            "{step} is not a step of create"
        );
        // Init's stages carry init's own clock readings, which fall inside create.
        assert!(
            span.start_unix_nano >= create.start_unix_nano
                && span.end_unix_nano <= create.end_unix_nano,
            "{step} outside create: {span:?} vs {create:?}"
        );
    }
    // After start: init's last steps, reported over the exec fifo, inside start.
    let start = find("start");
    for step in ["startContainer hooks", "exec"] {
        let span = find(step);
        assert_eq!(
            span.parent_span_id, start.span_id,
            "{step} is not a step of start"
        );
        assert!(
            span.start_unix_nano >= start.start_unix_nano
                && span.end_unix_nano <= start.end_unix_nano,
            "{step} outside start: {span:?} vs {start:?}"
        );
    }
    // The stages come in the order init passed them.
    assert!(find("mounts").end_unix_nano <= find("pivot_root").start_unix_nano);
}
