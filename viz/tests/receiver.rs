//! The receiver, over its real protocol: exports from OpenTelemetry SDKs berth did not
//! write (the OpenTelemetry project's Rust SDK sending protobuf, and JSON with gzip;
//! Python's `opentelemetry-sdk`, see `foreign_python.rs`), bad payloads refused with a
//! reason and nothing stored, and traces that survive a restart.

mod common;

use common::{fixture, request, Viz};
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

/// Sends a parent span and its child through the Rust SDK, the way an application would.
/// Returns the trace id, as hex.
fn export_with_rust_sdk(
    viz: &Viz,
    protocol: Protocol,
    gzip: bool,
    service: &'static str,
) -> String {
    // reqwest with rustls on (as in a workspace build) needs a crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(format!("{}/v1/traces", viz.otlp_endpoint()));
    if gzip {
        builder = builder.with_compression(Compression::Gzip);
    }
    let exporter = builder.build().expect("build the exporter");
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("foreign-test");
    let trace_id = tracer.in_span("handle request", |cx| {
        cx.span()
            .set_attribute(KeyValue::new("http.request.method", "GET"));
        tracer.in_span("query database", |cx| {
            cx.span()
                .add_event("rows fetched", vec![KeyValue::new("rows", 3)]);
        });
        cx.span().span_context().trace_id().to_string()
    });
    // The simple exporter has sent each span as it ended; shutdown waits for the last.
    provider
        .shutdown()
        .expect("the exporter's requests succeeded");
    trace_id
}

fn check_foreign_trace(viz: &Viz, trace_id: &str, service: &str) {
    let view = viz.get_json(&format!("/api/traces/{trace_id}"));
    let names: Vec<&str> = view["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["handle request", "query database"], "{view:#}");
    assert_eq!(view["lanes"][0]["name"], service);
    assert_eq!(view["spans"][1]["depth"], 1);
    assert_eq!(view["spans"][1]["events"][0]["name"], "rows fetched");
    let method = &view["spans"][0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "http.request.method")
        .unwrap()["value"];
    assert_eq!(method, "GET");
}

#[test]
fn protobuf_from_the_opentelemetry_rust_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    let trace_id = export_with_rust_sdk(&viz, Protocol::HttpBinary, false, "proto-app");
    check_foreign_trace(&viz, &trace_id, "proto-app");
}

#[test]
fn gzipped_json_from_the_opentelemetry_rust_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    let trace_id = export_with_rust_sdk(&viz, Protocol::HttpJson, true, "json-app");
    check_foreign_trace(&viz, &trace_id, "json-app");
}

#[test]
fn bad_payloads_are_refused_with_a_reason_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start_with(dir.path(), &["--max-body-bytes", "100000"]);
    let good = viz.import(&fixture("runc-run-1.json"));
    let before = viz.get_json("/api/traces");

    let post = |content_type: &str, extra: &[(&str, &str)], body: &[u8]| {
        let mut headers = vec![("content-type", content_type)];
        headers.extend_from_slice(extra);
        request(viz.otlp, "POST", "/v1/traces", &headers, body)
    };
    let cases: Vec<(&str, common::HttpResponse, u16, &str)> = vec![
        ("garbage protobuf", post("application/x-protobuf", &[], b"\xff\xff\xff\xff"), 400, "not a protobuf"),
        ("broken JSON", post("application/json", &[], b"{\"resourceSpans\": ["), 400, "not an OTLP/JSON"),
        (
            "a short trace id",
            post(
                "application/json",
                &[],
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abcd","spanId":"00f067aa0ba902b7","name":"x"}]}]}]}"#,
            ),
            400,
            "trace id of 2 bytes",
        ),
        ("not gzip", post("application/x-protobuf", &[("content-encoding", "gzip")], b"plain"), 400, "does not decompress"),
        ("brotli", post("application/x-protobuf", &[("content-encoding", "br")], b""), 400, "content-encoding"),
        ("text", post("text/plain", &[], b"hello"), 400, "not an OTLP encoding"),
        ("too large", post("application/x-protobuf", &[], &vec![0u8; 200_000]), 400, "larger than 100000 bytes"),
    ];
    for (what, response, status, reason) in cases {
        assert_eq!(response.status, status, "{what}: {}", response.text());
        assert!(
            response.text().contains(reason),
            "{what}: {:?}",
            response.text()
        );
    }
    let get = request(viz.otlp, "GET", "/v1/traces", &[], &[]);
    assert_eq!(get.status, 405);
    assert_eq!(
        viz.get_json("/api/traces"),
        before,
        "a refused export changed the store"
    );
    assert_eq!(before[0]["trace_id"], good[0].as_str());
}

#[test]
fn traces_survive_a_crash_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    let trace_id = export_with_rust_sdk(&viz, Protocol::HttpBinary, false, "before-crash");
    let before = viz.get_json(&format!("/api/traces/{trace_id}"));
    viz.kill();
    let viz = Viz::start(dir.path());
    assert_eq!(viz.get_json(&format!("/api/traces/{trace_id}")), before);
}

#[test]
fn retention_keeps_the_newest_traces() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start_with(dir.path(), &["--max-traces", "1"]);
    viz.import(&fixture("runc-run-1.json"));
    let newer = viz.import(&fixture("runc-run-2.json"));
    let list = viz.get_json("/api/traces");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [newer[0].as_str()]);
}

#[test]
fn export_then_import_gives_the_same_trace() {
    let first = tempfile::tempdir().unwrap();
    let viz = Viz::start(first.path());
    let ids = viz.import(&fixture("runc-run-1.json"));
    let exported = request(
        viz.ui,
        "GET",
        &format!("/api/traces/{}/otlp", ids[0]),
        &[],
        &[],
    );
    assert_eq!(exported.status, 200);
    assert!(exported
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    let view = viz.get_json(&format!("/api/traces/{}", ids[0]));

    let second = tempfile::tempdir().unwrap();
    let other = Viz::start(second.path());
    assert_eq!(other.import(&exported.body), ids);
    assert_eq!(other.get_json(&format!("/api/traces/{}", ids[0])), view);
}

#[test]
fn the_list_filters() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    viz.import(&fixture("runc-run-1.json"));
    let count = |query: &str| -> usize {
        match viz.get_json(&format!("/api/traces?{query}")) {
            Value::Array(lines) => lines.len(),
            other => panic!("not a list: {other}"),
        }
    };
    assert_eq!(count(""), 1);
    assert_eq!(count("service=berth-runc"), 1);
    assert_eq!(count("service=berthd"), 0);
    assert_eq!(count("root=RUNC"), 1);
    assert_eq!(count("min_duration_us=999999999"), 0);
    assert_eq!(count("max_duration_us=999999999"), 1);
    assert_eq!(count("since_unix_ms=99999999999999"), 0);
    let bad = request(viz.ui, "GET", "/api/traces?limit=many", &[], &[]);
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("limit=\\\"many\\\""), "{}", bad.text());
}
