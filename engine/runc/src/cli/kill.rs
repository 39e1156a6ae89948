//! `berth-runc kill`: send a signal to the container's init (or all its processes).

use berth_libcontainer::container;
use berth_libcontainer::state::Root;

#[derive(clap::Args)]
pub struct Args {
    /// Signal every process in the container, not just init.
    #[arg(long, short = 'a')]
    pub all: bool,
    pub id: String,
    /// A name (TERM, SIGTERM) or a number (15).
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    let signal = crate::signals::parse(&args.signal)?;
    Ok(container::kill_container(root, &args.id, signal, args.all)?)
}
