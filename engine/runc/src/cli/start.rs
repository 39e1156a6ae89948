//! `berth-runc start`: let a created container run its program.

use berth_libcontainer::container;
use berth_libcontainer::state::Root;

#[derive(clap::Args)]
pub struct Args {
    pub id: String,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    let _span = tracing::info_span!("start", id = %args.id).entered();
    let started = container::start(root, &args.id)?;
    crate::spans::record(&started.stages);
    for warning in &started.warnings {
        eprintln!("berth-runc: warning: {warning}");
    }
    Ok(())
}
