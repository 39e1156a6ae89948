//! # berth-oci: the Open Container Initiative formats, shared by every berth process
//!
//! The OCI image spec says how an image is stored (a tree of content-addressed blobs);
//! the OCI runtime spec says how a container is described to a runtime (a bundle: a
//! `config.json` beside a root filesystem). Everything in berth that touches either
//! format goes through this crate, so the rules live in one place.
//!
//! # Layout
//! - [`digest`]: `sha256:` names for blobs, and readers/writers that hash as they go.
//! - [`layout`]: reading an OCI image layout directory: index → manifest → config → layers,
//!   with every digest verified.
//! - [`unpack`]: applying layer tarballs to a root filesystem without letting any entry
//!   escape it, including OCI whiteouts.
//! - [`spec`]: the default runtime `config.json` for a rootfs (the shape `runc spec`
//!   writes), and the same filled in from an image's config.
//! - [`write`](mod@write): writing an image, both as an OCI layout and as a `docker save` tarball.
//!
//! The types themselves (manifests, descriptors, runtime specs) come from the
//! `oci-spec` crate; this crate adds the behaviour.

pub mod digest;
pub mod layout;
pub mod spec;
pub mod unpack;
pub mod write;

pub use oci_spec;
