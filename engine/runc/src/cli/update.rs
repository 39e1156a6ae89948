//! `berth-runc update`: new resource limits for a container, from a JSON file or stdin.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use berth_libcontainer::container;
use berth_libcontainer::state::Root;
use oci_spec::runtime::LinuxResources;

#[derive(clap::Args)]
pub struct Args {
    /// A JSON file of linux.resources, or - for stdin.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    pub id: String,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    let Some(path) = args.resources else {
        anyhow::bail!("berth-runc update takes its limits from --resources FILE (or - for stdin); the per-limit flags are not supported yet");
    };
    let mut text = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading resources from stdin")?;
    } else {
        text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    }
    let resources: LinuxResources = serde_json::from_slice(&text)
        .context("the resources are not valid linux.resources JSON")?;
    Ok(container::update(root, &args.id, &resources)?)
}
