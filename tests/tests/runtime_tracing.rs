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
        "wait for start",
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
    // Each step is a child of its verb's span, and falls inside it in time: init's
    // stages carry init's own clock readings, reported over the handshake (create)
    // or the exec fifo (start).
    let assert_steps_of = |verb: &str, steps: &[&str]| {
        let parent = find(verb);
        for step in steps {
            let span = find(step);
            assert_eq!(
                span.parent_span_id, parent.span_id,
                "{step} is not a step of {verb}"
            );
            assert!(
                span.start_unix_nano >= parent.start_unix_nano
                    && span.end_unix_nano <= parent.end_unix_nano,
                "{step} outside {verb}: {span:?} vs {parent:?}"
            );
        }
    };
    for verb_step in ["create", "start", "delete"] {
        assert_eq!(find(verb_step).parent_span_id, verb.span_id, "{verb_step}");
    }
    assert_steps_of(
        "create",
        &[
            "cgroups",
            "clone",
            "mounts",
            "pivot_root",
            "user and capabilities",
        ],
    );
    assert_steps_of("start", &["startContainer hooks", "exec"]);
    // The wait for start began inside create and ends inside start.
    let (waited, create, start) = (find("wait for start"), find("create"), find("start"));
    assert_eq!(waited.parent_span_id, start.span_id);
    assert!(
        waited.start_unix_nano <= create.end_unix_nano,
        "{waited:?} vs {create:?}"
    );
    assert!(
        waited.end_unix_nano >= start.start_unix_nano
            && waited.end_unix_nano <= start.end_unix_nano,
        "{waited:?} vs {start:?}"
    );
    // The stages come in the order init passed them.
    assert!(find("mounts").end_unix_nano <= find("pivot_root").start_unix_nano);
}

/// With exporting on, berth-runc has threads of its own before it creates the
/// container. Were SIGCHLD not blocked before they start, one of them could take the
/// container's exit signal and drop it, leaving `run` waiting for ever (it did, about
/// one run in twelve, before `main` blocked the signals first). Each run is bounded
/// by the harness: a hang fails the test.
#[test]
fn traced_runs_of_a_program_that_exits_at_once_never_hang() {
    let receiver = Receiver::start();
    let runtime = Runtime::berth();
    let bundle = Bundle::new(|spec| {
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec!["true".into()]));
        spec.set_process(Some(process));
    });
    for _ in 0..40 {
        let mut cmd = runtime.command(["run", "--bundle"]);
        cmd.arg(bundle.path())
            .arg(runtime.new_id())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)
            .env("TRACEPARENT", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"));
        runtime.output(cmd).success();
    }
    runtime.assert_clean();
}
