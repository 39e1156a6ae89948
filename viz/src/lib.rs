//! # berth-viz
//!
//! Where an engineer reads a container start. berth-viz receives the spans every berth
//! process exports (OTLP over HTTP, the standard protocol, so any OpenTelemetry SDK can
//! send too), keeps them on disk, and serves a page that draws one trace as a waterfall
//! with **one lane per process** and the **seams** between processes marked: what no
//! general trace viewer shows about an engine split into CLI, daemon, supervisor, shim,
//! runtime and container init.
//!
//! ```text
//! berth-runc, berth-shim, …  ──OTLP/HTTP──▶  receiver (:4318) ─▶ store (--data DIR)
//!                                                                   │
//!                            browser  ◀──HTML, JSON──  api (:16686) ◀┘
//! ```
//!
//! # Layout
//! - [`http`]: a small HTTP/1.1 server on threads, under both listeners.
//! - [`receiver`]: `POST /v1/traces`, the OTLP/HTTP endpoint.
//! - [`otlp`]: decoding exports (protobuf, JSON, gzip) and encoding a trace back to OTLP/JSON.
//! - [`model`]: what is stored: traces, processes, spans.
//! - [`store`]: traces in memory and on disk, written atomically, with bounded retention.
//! - [`list`]: the trace list and its filters.
//! - [`view`]: one trace made ready to draw: lanes, seams, self time.
//! - [`critical`]: the critical path.
//! - [`compare`]: two traces aligned step by step.
//! - [`api`]: the page's server: embedded files and the JSON API.
//! - [`assets`]: the page's HTML, CSS and JavaScript modules.

pub mod api;
pub mod assets;
pub mod compare;
pub mod critical;
pub mod http;
pub mod list;
pub mod model;
pub mod otlp;
pub mod receiver;
pub mod store;
pub mod view;

#[cfg(test)]
mod testdata;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread;

use store::{Store, StoreError};

/// berth-viz's command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "berth-viz",
    about = "Receive OTLP traces and show container starts, one lane per process"
)]
pub struct Config {
    /// Where OTLP/HTTP exporters send spans (`POST /v1/traces`). Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub otlp_addr: SocketAddr,
    /// Where the page and its JSON API are served. Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:16686")]
    pub ui_addr: SocketAddr,
    /// Where traces are kept, one OTLP/JSON file each; they survive a restart.
    #[arg(long, default_value = "/var/lib/berth/viz")]
    pub data: PathBuf,
    /// How many traces to keep; beyond it, the ones that started longest ago are deleted.
    #[arg(long, default_value_t = 1000)]
    pub max_traces: usize,
    /// The largest export body accepted, in bytes, after gzip is undone.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} for {what}: {source}; is another berth-viz (or an OpenTelemetry collector) running? Pass --{flag} with another address, or port 0")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the {what} listener stopped: {source}")]
    Stopped {
        what: &'static str,
        source: std::io::Error,
    },
}

/// A running berth-viz: both listeners bound and serving on their own threads.
pub struct Running {
    pub otlp_addr: SocketAddr,
    pub ui_addr: SocketAddr,
    stopped: mpsc::Receiver<StartError>,
}

impl Running {
    /// Blocks for as long as berth-viz serves; returns only if a listener fails.
    pub fn wait(self) -> anyhow::Result<()> {
        match self.stopped.recv() {
            Ok(error) => Err(error.into()),
            Err(_) => Ok(()),
        }
    }
}

// ANCHOR: start
/// Opens the store, binds both addresses, and starts serving. Prints where, on stdout,
/// one line each, so that a script (or a test that asked for port 0) can read them.
pub fn start(config: &Config) -> Result<Running, StartError> {
    let store = Arc::new(Store::open(&config.data, config.max_traces)?);
    let bind = |addr: SocketAddr, what, flag| {
        TcpListener::bind(addr).map_err(|source| StartError::Bind {
            addr,
            what,
            flag,
            source,
        })
    };
    let otlp = bind(config.otlp_addr, "OTLP/HTTP", "otlp-addr")?;
    let ui = bind(config.ui_addr, "the page", "ui-addr")?;
    let (otlp_addr, ui_addr) = (local_addr(&otlp), local_addr(&ui));

    let (tx, stopped) = mpsc::channel();
    let listeners = [
        (
            "OTLP/HTTP",
            otlp,
            receiver::handler(store.clone(), config.max_body_bytes),
        ),
        (
            "page",
            ui,
            api::handler(store.clone(), config.max_body_bytes),
        ),
    ];
    for (what, listener, handler) in listeners {
        let tx = tx.clone();
        let max_body = config.max_body_bytes;
        thread::spawn(move || {
            let source = http::serve(listener, max_body, handler);
            let _ = tx.send(StartError::Stopped { what, source });
        });
    }
    println!(
        "berth-viz: receiving OTLP/HTTP on http://{otlp_addr}{}",
        receiver::TRACES_PATH
    );
    println!("berth-viz: page on http://{ui_addr}/");
    println!("berth-viz: keeping traces in {}", config.data.display());
    Ok(Running {
        otlp_addr,
        ui_addr,
        stopped,
    })
}
// ANCHOR_END: start

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound TCP listener has a local address")
}
