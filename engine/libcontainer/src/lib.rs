//! # berth-libcontainer: turning an OCI bundle into a running, confined process
//!
//! This is the library under `berth-runc` (as libcontainer is under runc): everything a
//! runtime does between reading `config.json` and `exec`ing the container's program.
//! The runtime side ([`container`], [`process`]) runs in the short-lived `berth-runc`
//! process; the container side ([`init`] and what it calls) runs in the container's
//! first process, which re-executes `berth-runc init` right after the clone.
//!
//! # Layout
//! - [`container`]: the lifecycle verbs: create, start, kill, delete, pause, resume,
//!   state. Start reading here.
//! - [`exec`]: one more process in a running container, through the same handshake.
//! - [`state`]: what one verb leaves for the next (`<root>/<id>/state.json`), and how a
//!   container's status is read from the world.
//! - [`process`]: the clone into new namespaces and the re-exec as `init`.
//! - [`sync`]: the one message enum the runtime and init exchange.
//! - [`init`]: the container's first process, step by step, up to `exec`.
//! - [`namespaces`]: new, joined and user namespaces.
//! - [`rootfs`]: mounts, devices, `pivot_root`, masked and read-only paths.
//! - [`cgroups`]: control groups on cgroup v1, v2 and hybrid hosts.
//! - [`capabilities`]: the five capability sets of the container's process.
//! - [`seccomp`]: the spec's seccomp rules compiled to a BPF filter and installed.
//! - [`attrs`]: rlimits, user and groups, scheduling and other process attributes.
//! - [`console`]: the pseudo-terminal handed out through `--console-socket`.
//! - [`hooks`]: the OCI lifecycle hooks.
//! - [`mount_options`]: mount options to `mount(2)` flags and data, for every process that mounts.

pub mod attrs;
pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod exec;
pub mod hooks;
pub mod init;
pub mod mount_options;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod state;
pub mod sync;
