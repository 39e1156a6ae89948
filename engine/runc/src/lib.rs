//! # berth-runc: a runc-compatible OCI runtime
//!
//! Given a bundle (a root filesystem and `config.json`), berth-runc creates the
//! container and gets out of the way. Its command line is runc's, flag for flag where
//! the real shims and dockerd use one, so containerd-shim-runc-v2 and dockerd can run
//! it in runc's place without knowing. The mechanics live in `berth-libcontainer`;
//! this crate is argument parsing, error reporting and tracing.
//!
//! # Layout
//! - [`cli`]: the global flags and one file per verb (`cli/create.rs`, `cli/start.rs`, …).
//! - [`log`]: errors to `--log` as runc writes them (JSON lines with `--log-format json`),
//!   which is where the real shim looks for the reason a command failed.
//! - [`signals`]: signal names and numbers, as `kill` accepts them.
//! - [`spans`]: init's reported stages turned into spans of this process's trace.

pub mod cli;
pub mod log;
pub mod signals;
pub mod spans;
