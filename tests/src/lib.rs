//! # berth-tests: what every cross-process test shares
//!
//! The tests in `tests/tests/` start real processes (berth's and the real engine's)
//! and judge berth by what real clients see. They need the same few things over and
//! over; those live here, so each test reads as the scenario it checks.
//!
//! # Layout
//! - [`berth_containerd`]: berth-containerd started in a temporary directory, driven by `ctr`.
//! - [`build`]: other workspace packages' binaries, built for the tests that run them.
//! - [`chapter`]: a history chapter's daemon and client, driven the same way for every chapter.
//! - [`images`]: the `busybox` test image, built from Debian's busybox-static binary.
//!   Every test and `cargo xtask demo` get it through [`images::busybox`].
//! - [`otlp`]: a small OTLP/HTTP receiver, for tests that check the spans a process exports.
//! - [`peers`]: finding and starting the real peers (skopeo, containerd, dockerd) in
//!   isolated temporary directories, so a test never touches the host's engine.
//! - [`relay`]: relays in front of a registry that see (or shape) what clients send it.
//! - [`registry`]: a real registry (distribution's `docker-registry`) to pull the test
//!   image from, with the image pushed by `skopeo`.
//! - [`runtime`]: running berth-runc and the real runc on throwaway bundles, one case
//!   against both, and checking that neither left a state directory, cgroup or mount.
//! - [`shim`]: berth-shim installed where containerd finds it, and its memory.
//! - [`token_auth`]: Docker Hub's token authentication, as a gate in front of a registry.

pub mod berth_containerd;
pub mod build;
pub mod chapter;
pub mod images;
pub mod otlp;
pub mod peers;
pub mod registry;
pub mod relay;
pub mod runtime;
pub mod shim;
pub mod token_auth;
