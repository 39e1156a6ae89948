//! Python's OpenTelemetry SDK (`opentelemetry-sdk` and its OTLP/HTTP protobuf exporter,
//! from PyPI) sends a trace to berth-viz, plain and gzip-compressed, and the trace shows
//! as that SDK meant it: one lane for the process (named by `service.name` and
//! `process.pid`), nesting, attributes, events, the error status.
//!
//! `cargo xtask setup` installs the SDK in a virtual environment under `target/`; after
//! that the test needs no network.

mod common;

use std::process::Command;

use common::{workspace, Viz};

fn python_export(viz: &Viz, gzip: bool) -> String {
    let python = workspace().join("target/viz-otel-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup` to install Python's OpenTelemetry SDK",
        python.display()
    );
    let script = workspace().join("viz/tests/foreign/export_spans.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg(viz.otlp_endpoint())
        // A proxy set for the registries must not catch a request to 127.0.0.1.
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    if gzip {
        command.arg("gzip");
    }
    // The exporter's own timeout (10 s) bounds the run.
    let out = command.output().expect("run the Python exporter");
    assert!(
        out.status.success(),
        "the Python exporter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_python_sdk_trace_displays_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    for gzip in [false, true] {
        let trace_id = python_export(&viz, gzip);
        let view = viz.get_json(&format!("/api/traces/{trace_id}"));
        let lanes = view["lanes"].as_array().unwrap();
        assert_eq!(lanes.len(), 1, "{view:#}");
        let lane = lanes[0]["name"].as_str().unwrap();
        assert!(lane.starts_with("python-shop (pid "), "{lane}");

        let spans = view["spans"].as_array().unwrap();
        let shape: Vec<(u64, &str)> = spans
            .iter()
            .map(|s| (s["depth"].as_u64().unwrap(), s["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            shape,
            [(0, "checkout"), (1, "reserve stock"), (1, "charge card")]
        );
        assert_eq!(spans[0]["attributes"][0]["key"], "cart.items");
        assert_eq!(spans[0]["attributes"][0]["type"], "int");
        assert_eq!(spans[1]["events"][0]["name"], "stock reserved");
        assert_eq!(spans[2]["status"], "error");
        assert_eq!(spans[2]["status_message"], "card declined");
        assert!(spans[0]["critical"].as_bool().unwrap());

        let list = viz.get_json("/api/traces?service=python-shop");
        assert!(list
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["trace_id"] == trace_id.as_str()));
    }
}
