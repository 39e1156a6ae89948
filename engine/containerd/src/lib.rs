//! # berth-containerd: the supervisor, speaking containerd's gRPC API
//!
//! berth-containerd sits between the daemon (berthd, or the real dockerd) and the
//! shims. It owns what outlives any one container: the content store (every blob of
//! every image), the snapshots that image layers are unpacked into, the images' names,
//! and the leases and garbage collection that decide what may be deleted. It speaks
//! containerd's own gRPC API over a unix socket, so the real `ctr` and dockerd can use it.
//!
//! # Layout
//! - [`cli`] and [`server`]: the flags, taking the root (one instance per root),
//!   and serving every service on the socket, with a span per request.
//! - [`supervisor`]: the state every service shares, and where it lives on disk.
//! - [`scope`]: the namespace (and lease) each request names in its metadata.
//! - [`metadata`]: the embedded database (redb) every record lives in.
//! - [`content`]: blobs by digest, written through resumable, verified ingests.
//! - [`snapshot`] and [`mount`]: the overlayfs snapshotter, and performing its mounts.
//! - [`diff`]: applying a layer tarball to a snapshot (berth-oci does the unpacking),
//!   and the reverse, making a layer from two snapshots; [`diff_compare`] walks the
//!   two trees and writes what changed as a tar with whiteouts.
//! - [`lease`] and [`gc`]: what keeps things alive, and removing what nothing does.
//! - [`filters`]: containerd's filter language for `List` calls (and event filters).
//! - [`events`]: the in-process fan-out every event goes through to its subscribers.
//! - [`runtime`]: task runtime v2, starting a shim per task and calling it over ttrpc,
//!   reloading the tasks after a restart and cleaning up after dead shims;
//!   [`shim_events`]: the ttrpc socket the shims send their events to.
//! - [`services`]: the gRPC services, one file each, thin adapters over the above.
//! - [`proto`]: the API's types, generated from containerd's `.proto` files.
//! - [`client`]: the other side: a client of this API (or a real containerd's) with
//!   what a daemon needs on top: pulling, pushing, importing and exporting images.

pub mod cli;
pub mod client;
pub mod content;
pub mod diff;
pub mod diff_compare;
pub mod events;
pub mod filters;
pub mod gc;
pub mod lease;
pub mod metadata;
pub mod mount;
pub mod proto;
pub mod runtime;
pub mod scope;
pub mod server;
pub mod services;
pub mod shim_events;
pub mod snapshot;
pub mod supervisor;
