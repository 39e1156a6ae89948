//! # libcontainer-era: the same Docker, without LXC
//!
//! In 2014 Docker 0.9 stopped running the LXC tools and started containers itself, with
//! libcontainer: Go code inside the daemon that makes the system calls (clone with new
//! namespaces, mounts, pivot_root, cgroups) that LXC used to make for it. This chapter is
//! chapter 01's binary with exactly that change: `libcontainer-era daemon` serves the same
//! HTTP/JSON API, `libcontainer-era run …` calls it, and the daemon clones each container's
//! process itself. The container is still the daemon's child, so killing the daemon still
//! kills every container: what the tests prove, and what chapter 03 cures.
//!
//! # Layout
//! - [`cli`]: the command line of the one binary (daemon and client verbs).
//! - [`http`]: a tiny HTTP/1.1 framing over a unix socket, written with std alone.
//! - [`api`]: the JSON bodies client and daemon exchange.
//! - [`client`]: the client half: one request per verb, carrying `traceparent`.
//! - [`daemon`]: the daemon half: routing, container records, restart and shutdown.
//! - [`images`]: `load`: a `docker save` tar extracted into `ROOT/images/<name>`.
//! - [`driver`]: the execution driver, an in-process libcontainer: clone, namespaces,
//!   mounts, pivot_root, cgroups, exec.
//!
//! Read next: [`daemon`], then [`driver`]; chapter 03 splits the daemon into processes
//! so that containers outlive it.

pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod driver;
pub mod http;
pub mod images;
