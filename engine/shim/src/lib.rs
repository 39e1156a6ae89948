//! # berth-shim: the process that stays with a container
//!
//! The runtime (berth-runc, or runc) creates a container and exits; containerd may be
//! stopped, upgraded or killed at any time. Someone has to stay: be the container's
//! parent, hold its stdio and keep its exit status until it is asked for. That is the
//! shim, one per container, speaking containerd's *shim v2* protocol: a `start`
//! handshake on the command line, then the ttrpc service `containerd.task.v2.Task`
//! on a unix socket. Real containerd 1.6 runs it as runtime `io.containerd.berth.v2`
//! (it looks for `containerd-shim-berth-v2` on its `PATH`).
//!
//! # Layout
//! - [`cli`]: the command line containerd uses (Go-style `-flag value`) and the three
//!   actions: `start`, `delete` and, with no action, serving.
//! - [`start`]: the handshake: the socket's address, the daemon started in a session of
//!   its own with the listening socket passed down, the `address` file.
//! - [`cleanup`]: the `delete` action, run by containerd when a shim died.
//! - [`serve`]: the long-running shim: subreaper, signals, the ttrpc server, the main loop.
//! - [`poller`]: the main loop's epoll: child exits, Shutdown, and OOMs, in one wait.
//! - [`reaper`]: every child exit, routed to whoever waits for it: a runtime command
//!   or a container process.
//! - [`task`]: the `containerd.task.v2.Task` service, method by method.
//! - [`process`]: one container process (init or exec): its states and its exit.
//! - [`runtime`]: the runtime's command line (runc's), and its `--log` JSON errors.
//! - [`options`]: which runtime binary and root a container uses.
//! - [`stdio`]: the fifos containerd names, and the pty for `terminal` processes.
//! - [`rootfs`]: mounting and unmounting the container's root filesystem.
//! - [`events`]: task events, forwarded to containerd over ttrpc.
//! - [`oom`]: the container's memory cgroup, watched for OOMs (`/tasks/oom`).
//! - [`names`]: the protobuf names containerd reads from each `Any` the shim sends.
//! - [`stats`]: the runtime's `events --stats`, as containerd's cgroup metrics.

pub mod cleanup;
pub mod cli;
pub mod events;
pub mod names;
pub mod oom;
pub mod options;
pub mod poller;
pub mod process;
pub mod reaper;
pub mod rootfs;
pub mod runtime;
pub mod serve;
pub mod start;
pub mod stats;
pub mod stdio;
pub mod task;

pub use containerd_shim_protos as protos;

/// What [`task::Task::connect`] reports, and `-v` prints.
pub const VERSION: &str = concat!("berth-shim ", env!("CARGO_PKG_VERSION"));
