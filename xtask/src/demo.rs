//! `cargo xtask demo`: (being written)
pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
