//! containerd's gRPC API as Rust types and tonic server traits, generated at build
//! time from the `.proto` files in `proto/` (see `build.rs` and `proto/PROVENANCE.md`).
//!
//! The module tree follows the protobuf packages: `containerd::services::content::v1`
//! is `containerd.services.content.v1`, so a reader can go from a type here to its
//! definition in the `.proto` file by its path.

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/containerd.rs"));
