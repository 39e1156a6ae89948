//! `berth-runc state`: the container's state as JSON, as runc prints it.

use berth_libcontainer::container;
use berth_libcontainer::state::Root;

#[derive(clap::Args)]
pub struct Args {
    pub id: String,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    let state = container::state_json(root, &args.id)?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(())
}
