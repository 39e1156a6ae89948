//! `berth-runc run`: create, start, and (unless `--detach`) wait for the container
//! and remove it, exiting with its program's status.

use berth_libcontainer::container;
use berth_libcontainer::state::Root;
use nix::unistd::Pid;

use super::{create, wait};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub create: create::Args,
    /// Return once the container is running, instead of waiting for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Keep the container's state after it exits (no delete).
    #[arg(long)]
    pub keep: bool,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<i32> {
    let id = args.create.id.clone();
    // Blocked before init exists, so its exit cannot slip past us.
    let signals = if args.detach {
        None
    } else {
        Some(wait::block_signals()?)
    };
    let created = {
        let _span = tracing::info_span!("create", id = %id).entered();
        let created = container::create(root, &args.create.options())?;
        crate::spans::record(&created.stages);
        created
    };
    if let Some(path) = &args.create.pid_file {
        super::write_pid_file(path, created.pid)?;
    }
    let started = {
        let _span = tracing::info_span!("start", id = %id).entered();
        container::start(root, &id)
    };
    let Some(signals) = signals else {
        return started.map(|_| 0).map_err(Into::into);
    };
    let status = match started {
        Ok(warnings) => {
            warnings
                .iter()
                .for_each(|w| eprintln!("berth-runc: warning: {w}"));
            wait::wait_forwarding(Pid::from_raw(created.pid), &signals)
        }
        Err(e) => Err(e.into()),
    };
    if !args.keep {
        let _span = tracing::info_span!("delete", id = %id).entered();
        container::delete(root, &id, true)?;
    }
    status
}
