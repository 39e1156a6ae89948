//! Generates the Rust types, tonic servers and clients for containerd's gRPC API from the
//! `.proto` files vendored in `proto/` (see `proto/PROVENANCE.md`).
//!
//! protox parses the files in pure Rust, so building berth needs no `protoc`.

const API: &str = "github.com/containerd/containerd/api";

/// The services berth-containerd serves (or will: tasks, containers and events are
/// part of the API it compiles now so that their types are ready), and the event
/// payloads it publishes.
const FILES: &[&str] = &[
    "services/version/v1/version.proto",
    "services/namespaces/v1/namespace.proto",
    "services/introspection/v1/introspection.proto",
    "services/containers/v1/containers.proto",
    "services/tasks/v1/tasks.proto",
    "services/events/v1/events.proto",
    "services/leases/v1/leases.proto",
    "services/content/v1/content.proto",
    "services/images/v1/images.proto",
    "services/snapshots/v1/snapshots.proto",
    "services/diff/v1/diff.proto",
    "events/container.proto",
    "events/content.proto",
    "events/image.proto",
    "events/namespace.proto",
    "events/snapshot.proto",
    "events/task.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = FILES.iter().map(|f| format!("{API}/{f}")).collect();
    let fds = protox::compile(&files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        // Clients too: the client library (`berth_containerd::client`) speaks the same
        // API to berth-containerd or to a real containerd.
        .build_client(true)
        .include_file("containerd.rs")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
