//! `berth-runc pause` and `resume`: freeze and thaw every process of a container.

use berth_libcontainer::container;
use berth_libcontainer::state::Root;

#[derive(clap::Args)]
pub struct Args {
    pub id: String,
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    pub id: String,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    Ok(container::pause(root, &args.id)?)
}

pub fn resume(root: &Root, args: ResumeArgs) -> anyhow::Result<()> {
    Ok(container::resume(root, &args.id)?)
}
