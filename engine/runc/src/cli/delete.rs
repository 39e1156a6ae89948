//! `berth-runc delete`: remove a stopped container (or any, with `--force`).

use berth_libcontainer::container;
use berth_libcontainer::state::{Root, StateError};

#[derive(clap::Args)]
pub struct Args {
    /// Kill the container first if it is still running.
    #[arg(long, short = 'f')]
    pub force: bool,
    pub id: String,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    let _span = tracing::info_span!("delete", id = %args.id).entered();
    match container::delete(root, &args.id, args.force) {
        Ok(warnings) => {
            warnings
                .iter()
                .for_each(|w| eprintln!("berth-runc: warning: {w}"));
            Ok(())
        }
        // runc: deleting a container that is already gone with --force is not an error.
        Err(container::ContainerError::State(StateError::NotFound(_))) if args.force => Ok(()),
        Err(e) => Err(e.into()),
    }
}
