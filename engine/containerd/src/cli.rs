//! The command line: `berth-containerd --root DIR --state DIR --address SOCK
//! --log-level LEVEL`, with containerd's defaults moved under `berth`.

use std::path::PathBuf;

use clap::Parser;

use crate::server::{self, Config};

#[derive(Debug, Parser)]
#[command(
    name = "berth-containerd",
    version,
    about = "berth's container supervisor, speaking containerd's gRPC API",
    // A flag given twice takes its last value, so a wrapper can override a default.
    args_override_self = true
)]
pub struct Args {
    /// Persistent state: content, snapshots, metadata.
    #[arg(long, default_value = "/var/lib/berth/containerd")]
    pub root: PathBuf,
    /// Runtime state (gone after a reboot): the tasks' bundles, scratch mounts.
    #[arg(long, default_value = "/run/berth/containerd")]
    pub state: PathBuf,
    /// The unix socket to serve gRPC on.
    #[arg(long, default_value = "/run/berth/containerd/containerd.sock")]
    pub address: PathBuf,
    /// trace, debug, info, warn or error (overrides RUST_LOG).
    #[arg(long, value_parser = ["trace", "debug", "info", "warn", "error"])]
    pub log_level: Option<String>,
}

/// Runs the supervisor; the exit code for `main`.
pub fn main() -> i32 {
    // glibc gives every thread that allocates an arena of its own, up to eight per
    // core; a supervisor's threads (tokio's workers, its blocking pool, the shims'
    // events server) share two well enough, and each arena is memory kept for good.
    // SAFETY: mallopt only sets an allocator parameter, before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let args = Args::parse();
    if let Some(level) = &args.log_level {
        // Before any thread exists: berth_trace::init reads RUST_LOG next.
        std::env::set_var("RUST_LOG", level);
    }
    let guard = match berth_trace::init("berth-containerd") {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("berth-containerd: {err}");
            return 1;
        }
    };
    let config = Config {
        // Shims log at debug level too when asked (`-debug`), as containerd's do.
        debug: matches!(args.log_level.as_deref(), Some("debug" | "trace")),
        root: args.root,
        state: args.state,
        address: args.address,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("berth-containerd: cannot start the async runtime: {err}");
            return 1;
        }
    };
    let result = runtime.block_on(server::run(config));
    drop(runtime);
    let _ = guard.flush();
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("berth-containerd: {err}");
            1
        }
    }
}
