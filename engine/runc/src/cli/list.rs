//! `berth-runc list`: every container under `--root`, as a table or JSON.

use berth_libcontainer::container;
use berth_libcontainer::state::Root;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, short = 'f', value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
    /// Print only the ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    let containers = container::list(root)?;
    if args.quiet {
        containers
            .iter()
            .for_each(|c| println!("{}", c["id"].as_str().unwrap_or_default()));
    } else if args.format == "json" {
        println!("{}", serde_json::to_string(&containers)?);
    } else {
        println!(
            "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
            "ID", "PID", "STATUS", "BUNDLE", "CREATED"
        );
        for c in &containers {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} root",
                field("id"),
                c["pid"].to_string(),
                field("status"),
                field("bundle"),
                field("created")
            );
        }
    }
    Ok(())
}
