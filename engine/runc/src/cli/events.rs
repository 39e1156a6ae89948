//! `berth-runc events`: the container's resource usage, once (`--stats`) or every
//! `--interval` until it stops.

use std::time::Duration;

use berth_libcontainer::container;
use berth_libcontainer::state::{Root, Status};

#[derive(clap::Args)]
pub struct Args {
    /// Print one snapshot and exit.
    #[arg(long)]
    pub stats: bool,
    /// Seconds between snapshots.
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    pub id: String,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    loop {
        let stats = container::stats(root, &args.id)?;
        let event = serde_json::json!({ "type": "stats", "id": args.id, "data": stats });
        println!("{event}");
        if args.stats {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
        if root.load(&args.id)?.status(root) == Status::Stopped {
            return Ok(());
        }
    }
}
