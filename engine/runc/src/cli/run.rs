//! `berth-runc run`: create, start, and (unless `--detach`) wait for the container
//! and remove it, exiting with its program's status.

use berth_libcontainer::container;
use berth_libcontainer::state::Root;
use nix::unistd::Pid;

use super::{create, tty, wait};

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

pub fn run(root: &Root, mut args: Args) -> anyhow::Result<i32> {
    let id = args.create.id.clone();
    // With a terminal wanted and nobody to hand it to, berth-runc is the console.
    let wants_tty = !args.detach
        && args.create.console_socket.is_none()
        && container::load_spec(&args.create.bundle)?
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
    let console = match wants_tty {
        true => Some(tty::Listening::new(&root.0, &id)?),
        false => None,
    };
    if let Some(console) = &console {
        args.create.console_socket = Some(console.path.clone());
    }
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
        let started = container::start(root, &id);
        if let Ok(started) = &started {
            crate::spans::record(&started.stages);
        }
        started
    };
    let Some(signals) = signals else {
        return started.map(|_| 0).map_err(Into::into);
    };
    let terminal = match &console {
        Some(console) => {
            let master = console.master()?;
            tty::copy_size(&master);
            let resize = master.try_clone()?;
            Some((tty::RawMode::enter(), tty::proxy(master)?, resize))
        }
        None => None,
    };
    let status = match started {
        Ok(started) => {
            started
                .warnings
                .iter()
                .for_each(|w| eprintln!("berth-runc: warning: {w}"));
            let on_resize = || {
                if let Some((_, _, master)) = &terminal {
                    tty::copy_size(master);
                }
            };
            wait::wait_forwarding(Pid::from_raw(created.pid), &signals, on_resize)
        }
        Err(e) => Err(e.into()),
    };
    if let Some((raw, drained, _)) = terminal {
        drained.wait();
        drop(raw);
    }
    if !args.keep {
        let _span = tracing::info_span!("delete", id = %id).entered();
        container::delete(root, &id, true)?;
    }
    status
}
