//! Starting the supervisor: take the root, open the stores, collect garbage left by
//! the last run, and serve gRPC on the unix socket until SIGTERM or SIGINT.
//!
//! containerd is a gRPC server because its clients (dockerd, ctr, Kubernetes' CRI) are
//! other processes, written in other languages, that come and go while it keeps
//! running: a socket with a published schema is the one interface they all share.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use crate::proto::containerd::services::{
    containers::v1::containers_server::ContainersServer,
    content::v1::content_server::ContentServer, diff::v1::diff_server::DiffServer,
    events::v1::events_server::EventsServer, images::v1::images_server::ImagesServer,
    introspection::v1::introspection_server::IntrospectionServer,
    leases::v1::leases_server::LeasesServer, namespaces::v1::namespaces_server::NamespacesServer,
    snapshots::v1::snapshots_server::SnapshotsServer, tasks::v1::tasks_server::TasksServer,
    version::v1::version_server::VersionServer,
};
use crate::runtime::Runtime;
use crate::services;
use crate::supervisor::{Supervisor, SupervisorError};

/// Largest gRPC message accepted or sent (containerd's own limit is 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "root {root} is in use by another berth-containerd{holder}; stop it, or give this \
         one another --root"
    )]
    RootInUse { root: PathBuf, holder: String },
    #[error("{address} is already served by another process; stop it or choose another --address")]
    AddressInUse { address: PathBuf },
    #[error("cannot set up {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Gc(#[from] crate::gc::GcError),
    #[error(transparent)]
    ShimEvents(#[from] crate::shim_events::ShimEventsError),
    #[error("serving gRPC on {address}: {source}")]
    Serve {
        address: PathBuf,
        source: tonic::transport::Error,
    },
}

/// Where this instance keeps things (the command line's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub state: PathBuf,
    pub address: PathBuf,
    /// Start shims with `-debug`.
    pub debug: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_owned(),
        source,
    }
}

// ANCHOR: lock_root
/// Takes `ROOT/berth-containerd.lock` for as long as the returned lock lives. Two
/// instances on one root would each believe they own every blob and snapshot in it.
pub fn lock_root(root: &Path) -> Result<Flock<File>, ServerError> {
    fs::create_dir_all(root).map_err(io_err(root))?;
    let path = root.join("berth-containerd.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, _)| {
        let pid = fs::read_to_string(&path).unwrap_or_default();
        ServerError::RootInUse {
            root: root.to_owned(),
            holder: match pid.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            },
        }
    })?;
    lock.set_len(0).map_err(io_err(&path))?;
    write!(lock, "{}", std::process::id()).map_err(io_err(&path))?;
    Ok(lock)
}
// ANCHOR_END: lock_root

/// The server span of one request, named by its gRPC method as containerd's are
/// (`containerd.services.content.v1.Content/Write`), and made the child of the
/// `traceparent` the client sent in the request's metadata.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let method = request.uri().path().trim_start_matches('/');
    let span = tracing::info_span!("grpc", otel.name = %method, rpc.system = "grpc");
    berth_trace::set_parent(&span, berth_trace::headers::extract(request.headers()));
    span
}

fn listen(address: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = address.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    if address.exists() {
        // A live server answers; a socket left by a killed one does not, and goes.
        if UnixStream::connect(address).is_ok() {
            return Err(ServerError::AddressInUse {
                address: address.to_owned(),
            });
        }
        fs::remove_file(address).map_err(io_err(address))?;
    }
    UnixListener::bind(address).map_err(io_err(address))
}

// ANCHOR: serve
/// Runs berth-containerd until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let _lock = lock_root(&config.root)?;
    let supervisor = Arc::new(Supervisor::open(&config.root, &config.state)?);
    // What a crash left half-done: a layer's unpack still mounted, unreferenced blobs,
    // snapshot directories without a record, records whose lease expired while nobody
    // was running.
    supervisor.clear_abandoned_scratch();
    let s = supervisor.clone();
    let report = tokio::task::spawn_blocking(move || crate::gc::collect(&s))
        .await
        .expect("the startup collection does not panic")?;
    tracing::info!(?report, "startup garbage collection");
    tokio::spawn(crate::gc::run_forever(supervisor.clone()));

    let listener = listen(&config.address)?;
    let runtime = Arc::new(Runtime::new(
        &config.state,
        &config.address,
        config.debug,
        supervisor.events.clone(),
    ));
    let shim_events = crate::shim_events::serve(&runtime.ttrpc_address, supervisor.clone())?;
    // The tasks the last run left: after the events socket (a reloaded shim may be
    // sending), before any request (none may see a task half-loaded).
    runtime
        .reload(|namespace, id| {
            services::containers::get(&supervisor, namespace, id)
                .ok()
                .map(|c| c.runtime)
        })
        .await;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let s = || supervisor.clone();
    let router = Server::builder()
        .trace_fn(request_span)
        .add_service(health_service)
        .add_service(VersionServer::new(services::version::Version))
        .add_service(NamespacesServer::new(services::namespaces::Namespaces {
            supervisor: s(),
        }))
        .add_service(IntrospectionServer::new(
            services::introspection::Introspection { supervisor: s() },
        ))
        .add_service(LeasesServer::new(services::leases::Leases {
            supervisor: s(),
        }))
        .add_service(
            ContentServer::new(services::content::Content { supervisor: s() })
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(ImagesServer::new(services::images::Images {
            supervisor: s(),
        }))
        .add_service(SnapshotsServer::new(services::snapshots::Snapshots {
            supervisor: s(),
        }))
        .add_service(DiffServer::new(services::diff::Diff { supervisor: s() }))
        .add_service(EventsServer::new(services::events::Events {
            supervisor: s(),
        }))
        .add_service(ContainersServer::new(services::containers::Containers {
            supervisor: s(),
            runtime: runtime.clone(),
        }))
        .add_service(TasksServer::new(services::tasks::Tasks {
            supervisor: s(),
            runtime: runtime.clone(),
        }));
    tracing::info!(address = %config.address.display(), "serving");
    let stop = async {
        let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("install a SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let served = router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop)
        .await;
    let _ = fs::remove_file(&config.address);
    // The shims keep running (they outlive containerd by design); only the socket
    // their events come to goes.
    shim_events.shutdown();
    let _ = fs::remove_file(&runtime.ttrpc_address);
    served.map_err(|source| ServerError::Serve {
        address: config.address.clone(),
        source,
    })
}
// ANCHOR_END: serve

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_root(dir.path()).unwrap();
        let err = lock_root(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("in use by another berth-containerd"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
    }
}
