//! The `libcontainer-era` binary: daemon or client, as the first argument says. All the work is
//! in the library; this file only turns its errors into an exit status.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let guard = berth_trace::init("libcontainer-era")?;
    let cli = libcontainer_era::cli::Cli::parse();
    let outcome = libcontainer_era::cli::run(cli);
    // Flush before `process::exit`, which skips destructors.
    let _ = guard.flush();
    match outcome? {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}
