//! The client library: containerd's API from the caller's side, and the image work
//! a daemon does through it.
//!
//! A daemon (berthd, or dockerd in the real engine) never touches the content store or
//! the snapshots itself: it asks the supervisor over gRPC. So this library speaks to
//! berth-containerd and to a real containerd alike, and everything it does is a
//! sequence of the same calls `ctr` makes.
//!
//! # Layout
//! - [`Client`]: one connection to the socket, and the namespace (and lease) every
//!   request carries in its metadata, with the caller's trace context.
//! - [`reference`]: image names as Docker users write them (`busybox`,
//!   `127.0.0.1:5000/team/app:v1`, `…@sha256:…`) and their normalised form.
//! - [`registry`]: the OCI distribution protocol over HTTP, with basic and token auth.
//! - [`content`]: writing a blob through `Content.Write`, verified as it streams, and
//!   reading one back.
//! - [`pull`] and [`unpack`]: a registry's image into the content store, then into
//!   snapshots; [`push`]: the other way.
//! - [`archive`]: importing and exporting image tarballs (OCI layout and `docker save`).

pub mod archive;
pub mod content;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod unpack;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request, Status};

use crate::proto::containerd::services::content::v1::content_client::ContentClient;
use crate::proto::containerd::services::diff::v1::diff_client::DiffClient;
use crate::proto::containerd::services::images::v1::images_client::ImagesClient;
use crate::proto::containerd::services::images::v1::GetImageRequest;
use crate::proto::containerd::services::leases::v1::leases_client::LeasesClient;
use crate::proto::containerd::services::leases::v1::{CreateRequest, DeleteRequest};
use crate::proto::containerd::services::snapshots::v1::snapshots_client::SnapshotsClient;
use crate::proto::containerd::types::Descriptor;
use crate::scope::{LEASE_HEADER, NAMESPACE_HEADER};

/// The snapshotter images are unpacked with: the only one berth-containerd has, and
/// the default of a real containerd.
pub const SNAPSHOTTER: &str = "overlayfs";

/// The largest message either side sends: a `Read` chunk is 1 MiB, a `Write` chunk
/// (see [`content`]) the same; this leaves room for the envelope.
const MAX_MESSAGE: usize = 4 << 20;

/// How long a lease taken for one operation lives if the caller dies before ending
/// it: long enough for any pull, short enough that nothing is kept forever.
const LEASE_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to {socket}: {source}; is berth-containerd (or containerd) \
         listening there? Start it, or name its socket with --address"
    )]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("{call} failed: {} ({:?})", status.message(), status.code())]
    Call {
        call: &'static str,
        status: Box<Status>,
    },
    #[error("namespace {namespace:?} cannot be sent in gRPC metadata: use letters, digits, '.', '_' and '-'")]
    Namespace { namespace: String },
    #[error(
        "lease id {lease:?} cannot be sent in gRPC metadata: use letters, digits, '.', '_' and '-'"
    )]
    Lease { lease: String },
    #[error("no image named {name} in namespace {namespace}")]
    NoImage { name: String, namespace: String },
    #[error("image {name} has no target; delete it and pull or import it again")]
    NoTarget { name: String },
}

impl ClientError {
    /// The error for a failed call, naming the method so the message says what failed.
    pub fn call(call: &'static str) -> impl FnOnce(Status) -> ClientError {
        move |status| ClientError::Call {
            call,
            status: Box::new(status),
        }
    }

    /// The gRPC code of a failed call, to tell "not found" from a real failure.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Call { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// A connection to containerd's API in one namespace, optionally inside a lease.
/// Cloning is cheap: clones share the connection.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    namespace: String,
    lease: Option<String>,
}

impl Client {
    /// Connects to the unix socket at `socket`. Requests go to `namespace`.
    pub async fn connect(socket: impl AsRef<Path>, namespace: &str) -> Result<Client, ClientError> {
        let socket = socket.as_ref().to_path_buf();
        if MetadataValue::try_from(namespace).is_err() {
            return Err(ClientError::Namespace {
                namespace: namespace.to_owned(),
            });
        }
        let path = socket.clone();
        // tonic wants a URI, but the connector below is what dials: the socket.
        let channel =
            Endpoint::from_static("http://containerd.sock")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|source| ClientError::Connect { socket, source })?;
        Ok(Client {
            channel,
            namespace: namespace.to_owned(),
            lease: None,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// This client with every request made inside `lease`: what it creates stays
    /// alive, whatever the garbage collector finds, until the lease ends.
    pub fn in_lease(&self, lease: &str) -> Result<Client, ClientError> {
        if MetadataValue::try_from(lease).is_err() {
            return Err(ClientError::Lease {
                lease: lease.to_owned(),
            });
        }
        Ok(Client {
            lease: Some(lease.to_owned()),
            ..self.clone()
        })
    }

    /// `message` as a request carrying the namespace, the lease and the trace context.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        // Both were checked: the namespace by `connect`, the lease by `in_lease`.
        if let Ok(value) = MetadataValue::try_from(self.namespace.as_str()) {
            metadata.insert(NAMESPACE_HEADER, value);
        }
        if let Some(Ok(value)) = self.lease.as_deref().map(MetadataValue::try_from) {
            metadata.insert(LEASE_HEADER, value);
        }
        berth_trace::context::inject_current(&mut Metadata(metadata));
        request
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }

    /// What the image stored as `name` (its full name) points at.
    pub async fn image_target(&self, name: &str) -> Result<Descriptor, ClientError> {
        let request = self.request(GetImageRequest {
            name: name.to_owned(),
        });
        match self.images().get(request).await {
            Ok(response) => response
                .into_inner()
                .image
                .and_then(|image| image.target)
                .filter(|target| !target.digest.is_empty())
                .ok_or_else(|| ClientError::NoTarget {
                    name: name.to_owned(),
                }),
            Err(status) if status.code() == Code::NotFound => Err(ClientError::NoImage {
                name: name.to_owned(),
                namespace: self.namespace.clone(),
            }),
            Err(status) => Err(ClientError::call("Images.Get")(status)),
        }
    }

    /// A lease for one operation (a pull, an import), expiring by itself should the
    /// caller die before [`end_lease`](Self::end_lease).
    pub async fn start_lease(&self, purpose: &str) -> Result<String, ClientError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!("berth-{purpose}-{}-{}", now.as_nanos(), std::process::id());
        let expires = crate::gc::format_rfc3339((now + LEASE_LIFETIME).as_secs());
        let labels = [("containerd.io/gc.expire".to_owned(), expires)].into();
        self.leases()
            .create(self.request(CreateRequest {
                id: id.clone(),
                labels,
            }))
            .await
            .map_err(ClientError::call("Leases.Create"))?;
        Ok(id)
    }

    /// Ends a lease: what nothing else references is now the garbage collector's.
    pub async fn end_lease(&self, lease: &str) -> Result<(), ClientError> {
        let request = DeleteRequest {
            id: lease.to_owned(),
            sync: false,
        };
        match self.leases().delete(self.request(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(ClientError::call("Leases.Delete")(status)),
        }
    }
}

/// gRPC metadata as an OpenTelemetry carrier, for the caller's `traceparent`.
struct Metadata<'a>(&'a mut MetadataMap);

impl opentelemetry::propagation::Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        let key = tonic::metadata::MetadataKey::from_bytes(key.as_bytes());
        if let (Ok(key), Ok(value)) = (key, MetadataValue::try_from(value)) {
            self.0.insert(key, value);
        }
    }
}

/// `sha256:<hex>` of `bytes`: how blobs are named.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
