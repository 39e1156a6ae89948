//! # lxc-era: the first Docker, in one binary
//!
//! In 2013 `docker` was one program: `docker -d` was the daemon, every other verb was a
//! client talking to it over a unix socket, and containers were started by running the
//! LXC tools. This chapter rebuilds that shape: `lxc-era daemon` serves a small HTTP/JSON
//! API, `lxc-era run …` calls it, and the daemon runs `lxc-execute` as its own child.
//! Because each container's monitor is the daemon's child, killing the daemon kills every
//! container: the defining property of this era, and what the tests prove.
//!
//! # Layout
//! - [`cli`]: the command line of the one binary (daemon and client verbs).
//! - [`http`]: a tiny HTTP/1.1 framing over a unix socket, written with std alone.
//! - [`api`]: the JSON bodies client and daemon exchange.
//! - [`client`]: the client half: one request per verb, carrying `traceparent`.
//! - [`daemon`]: the daemon half: routing, container records, restart and shutdown.
//! - [`images`]: `load`: a `docker save` tar extracted into `ROOT/images/<name>`.
//! - [`driver`]: the execution driver: rootfs, LXC configuration, `lxc-execute`.
//!
//! Read next: [`daemon`], then [`driver`]; chapter 02 replaces the driver with
//! in-process namespaces and cgroups.

pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod driver;
pub mod http;
pub mod images;
