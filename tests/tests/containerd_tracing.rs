//! berth-containerd's server spans: one per gRPC request, named by its method as
//! containerd names them, exported to the OTLP endpoint in its environment.

use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::otlp::Receiver;
use berth_tests::peers::run_ok;

#[test]
fn every_request_is_a_span_named_by_its_grpc_method() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = BerthContainerd::start_with_env(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)],
    );
    run_ok(daemon.ctr("traced").args(["version"]));
    run_ok(daemon.ctr("traced").args(["images", "ls"]));
    // A clean stop flushes the spans still batched.
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let wanted = [
        "containerd.services.version.v1.Version/Version",
        "containerd.services.introspection.v1.Introspection/Server",
        "containerd.services.images.v1.Images/List",
    ];
    let exports = receiver.collect_until(|spans| {
        wanted.iter().all(|name| {
            spans
                .iter()
                .any(|s| s.name == *name && s.service == "berth-containerd")
        })
    });
    assert!(!exports.is_empty());
}

/// Sends `Version/Version` with `traceparent` in its metadata, over HTTP/2 by hand
/// (a gRPC request is a POST whose body is a 5-byte frame header and the message:
/// here the empty message), and returns the `grpc-status` it answers with.
fn version_request_with_traceparent(socket: &std::path::Path, traceparent: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let io = tokio::net::UnixStream::connect(socket).await.unwrap();
        let (client, connection) = h2::client::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request =
            http::Request::post("http://berth/containerd.services.version.v1.Version/Version")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("containerd-namespace", "traced")
                .header("traceparent", traceparent)
                .body(())
                .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .unwrap();
        let mut response = response.await.unwrap().into_body();
        while let Some(chunk) = response.data().await {
            chunk.unwrap();
        }
        let trailers = response.trailers().await.unwrap().unwrap_or_default();
        trailers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    })
}

#[test]
fn a_span_is_the_child_of_the_traceparent_in_the_metadata() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = BerthContainerd::start_with_env(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)],
    );
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let status =
        version_request_with_traceparent(&daemon.socket, &format!("00-{trace}-{parent}-01"));
    assert_eq!(status, "0", "Version/Version failed");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let name = "containerd.services.version.v1.Version/Version";
    let exports = receiver.collect_until(|spans| spans.iter().any(|s| s.name == name));
    let spans: Vec<_> = exports.iter().flat_map(|e| e.spans()).collect();
    let span = spans.iter().find(|s| s.name == name).unwrap();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(&span.trace_id), trace);
    assert_eq!(hex(&span.parent_span_id), parent);
}

/// `ctr run` through berth-containerd and berth-shim is one trace: the shim's
/// `Task/Create` is a child of berth-containerd's `Tasks/Create` (the trace context
/// went along in the ttrpc metadata), and berth-runc's spans are in it too (the shim
/// passed it on in `TRACEPARENT`).
#[test]
fn a_task_create_is_one_trace_through_the_shim_and_the_runtime() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = BerthContainerd::start_with_env(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)],
    );
    daemon.import_busybox("traced");
    let image = "docker.io/library/busybox:latest";
    let out = run_ok(daemon.ctr("traced").args([
        "run",
        "--rm",
        "--runtime",
        "io.containerd.berth.v2",
        image,
        "traced",
        "echo",
        "hi",
    ]));
    assert_eq!(out.trim(), "hi");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

    let supervisor = "containerd.services.tasks.v1.Tasks/Create";
    let shim = "containerd.task.v2.Task/Create";
    let exports = receiver.collect_until(|spans| {
        spans.iter().any(|s| s.name == supervisor)
            && spans.iter().any(|s| s.name == shim)
            && spans.iter().any(|s| s.service == "berth-runc")
    });
    let spans: Vec<_> = exports.iter().flat_map(|e| e.spans()).collect();
    let create = spans
        .iter()
        .find(|s| s.name == supervisor && s.service == "berth-containerd")
        .unwrap_or_else(|| panic!("no Tasks/Create span from berth-containerd in {spans:#?}"));
    let task = spans
        .iter()
        .find(|s| s.name == shim && s.service == "berth-shim")
        .expect("berth-shim's Task/Create span");
    assert_eq!(task.trace_id, create.trace_id, "one trace");
    // The shim's span hangs below the supervisor's request, directly or through
    // berth-containerd's own spans inside it.
    let in_supervisor = |id: &Vec<u8>| {
        spans.iter().any(|s| {
            &s.span_id == id && s.service == "berth-containerd" && s.trace_id == create.trace_id
        })
    };
    assert!(in_supervisor(&task.parent_span_id), "{task:?}");
    assert!(
        spans
            .iter()
            .any(|s| s.service == "berth-runc" && s.trace_id == create.trace_id),
        "berth-runc's spans are in the same trace"
    );
}
