//! `berth-viz`: receive OTLP traces on 127.0.0.1:4318 and show them on 127.0.0.1:16686.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = berth_viz::Config::parse();
    let running = berth_viz::start(&config)?;
    running.wait()
}
