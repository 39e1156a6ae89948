//! `berth-runc spec`: write a starting `config.json`, the same one `runc spec` writes.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write config.json.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// A spec for rootless containers (not supported yet).
    #[arg(long)]
    pub rootless: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.rootless {
        anyhow::bail!(
            "--rootless specs are not supported yet; write the user namespace mappings by hand"
        );
    }
    let path = args.bundle.join("config.json");
    if path.exists() {
        anyhow::bail!("{} already exists; remove it first", path.display());
    }
    let json = berth_oci::spec::to_json(&berth_oci::spec::default_spec())?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))
}
