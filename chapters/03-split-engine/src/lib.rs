//! # split-era: the same Docker, in four processes
//!
//! Between 2015 and 2016 Docker split in three steps: runc (2015) took the code that
//! makes containers out of the daemon, containerd (2016) took their lifecycle, and a
//! tiny per-container shim became each container's parent. Since then the daemon can
//! die, be upgraded, or restart, and the containers don't notice. This chapter is
//! chapter 02's binary with exactly that change: the same API and command line, but
//! `run` now crosses four processes, and none of them but the shim is a container's
//! parent.
//!
//! ```text
//! split-era (client) ─HTTP─▶ daemon ─JSON─▶ supervisor ─JSON─▶ shim ─exec─▶ runtime ─clone─▶ container
//!                            images,        lifecycle,         parent,      creates,
//!                            bundles        finds shims        stdio,       then exits
//!                                                              exit status
//! ```
//!
//! # Layout
//! - [`cli`]: the command line of the one binary (every role, and the client verbs).
//! - [`http`], [`api`], [`client`]: the client's HTTP/JSON API, as in chapter 02.
//! - [`daemon`]: the daemon: API, container records, recovery after a restart.
//! - [`images`] and [`bundle`]: `load`, and the bundle (rootfs + config.json) the
//!   daemon makes for each container.
//! - [`rpc`]: the JSON-lines protocol the daemon, the supervisor and the shims speak.
//! - [`supervisor`]: starts one shim per container and finds them again after a restart.
//! - [`shim`]: the container's parent: subreaper, keeper of its output and exit status.
//! - [`runtime`]: chapter 02's driver as a process that creates a container and exits.
//! - [`pidfile`]: who serves a root, and whether it still runs.
//!
//! Read next: [`daemon`], then [`supervisor`], [`shim`] and [`runtime`], in the order a
//! `run` reaches them.

pub mod api;
pub mod bundle;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod http;
pub mod images;
pub mod pidfile;
pub mod rpc;
pub mod runtime;
pub mod shim;
pub mod supervisor;
