//! The `split-era` binary: client, daemon, supervisor, shim or runtime, as the first
//! argument says. All the work is in the library; this file only names the process for
//! its traces and turns its errors into an exit status.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = split_era::cli::Cli::parse();
    let guard = berth_trace::init(cli.service_name())?;
    let outcome = split_era::cli::run(cli, || {
        let _ = guard.flush();
    });
    // Flush before `process::exit`, which skips destructors.
    let _ = guard.flush();
    match outcome? {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}
