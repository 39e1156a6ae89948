//! `containerd.services.version.v1.Version`: what `ctr version` prints as the server.

use tonic::{Request, Response, Status};

use crate::proto::containerd::services::version::v1::{version_server, VersionResponse};

/// The containerd release whose API berth speaks, and berth's own version after it,
/// so a client that parses the version sees a containerd it knows.
pub const VERSION: &str = concat!("1.6.20+berth-", env!("CARGO_PKG_VERSION"));

pub struct Version;

#[tonic::async_trait]
impl version_server::Version for Version {
    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: VERSION.to_owned(),
            revision: "berth-containerd".to_owned(),
        }))
    }
}
