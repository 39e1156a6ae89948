//! The ttrpc socket the shims send their events to (`SOCK.ttrpc`, given to each shim
//! as `TTRPC_ADDRESS`).
//!
//! Shims speak ttrpc, not gRPC: a smaller protocol over the same protobuf messages,
//! so a shim carries no HTTP/2 stack. A shim's task events (`/tasks/create`,
//! `/tasks/start`, `/tasks/exit`, …) arrive here as
//! `containerd.services.events.ttrpc.v1.Events/Forward` requests and go on, unchanged,
//! into the event exchange ([`crate::events`]).
//!
//! The server is ttrpc's synchronous one, on threads of its own: a forward only
//! hands an envelope to the exchange, which never waits.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::api::Empty;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::Events;

use crate::proto::containerd::types::Envelope;
use crate::supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
pub enum ShimEventsError {
    #[error("{0} is already served by another process; stop it or choose another --address")]
    InUse(PathBuf),
    #[error("cannot remove the stale socket {0}: {1}")]
    Stale(PathBuf, io::Error),
    #[error("cannot serve ttrpc on {0}: {1}")]
    Serve(PathBuf, ttrpc::Error),
}

struct Forwarder {
    supervisor: Arc<Supervisor>,
}

impl Events for Forwarder {
    fn forward(&self, _ctx: &ttrpc::TtrpcContext, request: ForwardRequest) -> ttrpc::Result<Empty> {
        let Some(envelope) = request.envelope.into_option() else {
            return Ok(Empty::new());
        };
        self.supervisor.events.forward(Envelope {
            timestamp: envelope
                .timestamp
                .into_option()
                .map(|t| prost_types::Timestamp {
                    seconds: t.seconds,
                    nanos: t.nanos,
                }),
            namespace: envelope.namespace,
            topic: envelope.topic,
            event: envelope.event.into_option().map(|any| prost_types::Any {
                type_url: any.type_url,
                value: any.value,
            }),
        });
        Ok(Empty::new())
    }
}

/// Serves the shims' events on `path` until the returned server is shut down.
pub fn serve(path: &Path, supervisor: Arc<Supervisor>) -> Result<ttrpc::Server, ShimEventsError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ShimEventsError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(|e| ShimEventsError::Stale(path.to_owned(), e))?;
    }
    let service = containerd_shim_protos::create_events(Arc::new(Forwarder { supervisor }));
    let serve_err = |e| ShimEventsError::Serve(path.to_owned(), e);
    let mut server = ttrpc::Server::new()
        .bind(&format!("unix://{}", path.display()))
        .map_err(serve_err)?
        .register_service(service);
    server.start().map_err(serve_err)?;
    Ok(server)
}
