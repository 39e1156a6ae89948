//! `cargo xtask demo`: from nothing to a running container, one printed step at a time.
//!
//! Today the demo stops at the runtime: it turns the test image into an OCI bundle
//! (a root filesystem plus `config.json`), starts berth-viz, has berth-runc run the
//! bundle with tracing on, and prints the address of the page showing that run's trace.
//! As the shim, the supervisor and the daemon land, the demo grows to run the whole
//! traced engine, and their spans join the same trace.
//!
//! berth-viz is left running after the demo, detached, so the printed address keeps
//! working; except under CI (`CI` set), where nobody will open it and a leftover server
//! would outlive the run: there the demo checks the trace through the API and stops the
//! berth-viz it started. A berth-viz already answering on the default port is reused.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use berth_oci::layout::Layout;
use berth_oci::{spec, unpack};

use crate::{cmd, setup};

/// What the demo container prints: proof that it runs in its own namespaces on the
/// image's files, not the host's.
const DEMO_SCRIPT: &str = "echo \"hello from a container made of berth's busybox image\"; \
     echo \"  hostname: $(hostname)   pid: $$\"; echo '  / holds:' $(ls /)";

/// Where berth-viz listens when the demo starts it: the standard OTLP/HTTP port and
/// berth-viz's default page port.
const VIZ_OTLP: &str = "127.0.0.1:4318";
const VIZ_PAGE: &str = "127.0.0.1:16686";

pub fn run() -> anyhow::Result<()> {
    setup::run()?;
    if !cmd::is_root() {
        bail!("creating a container needs root: run `cargo xtask demo` as root");
    }
    let dir = cmd::root().join("target/berth-demo");
    let bundle = dir.join("bundle");
    step(1, "unpack the test image into an OCI bundle");
    prepare_bundle(&bundle)?;
    eprintln!("   bundle: {} (rootfs/ and config.json)", bundle.display());

    step(2, "build berth-runc and berth-viz, and start berth-viz");
    cmd::run(cmd::cargo().args([
        "build",
        "--quiet",
        "--package",
        "berth-runc",
        "--package",
        "berth-viz",
    ]))?;
    let viz = start_viz(&dir)?;

    step(
        3,
        "run the bundle with berth-runc, sending its spans to berth-viz",
    );
    let runtime = cmd::root().join("target/debug/berth-runc");
    let id = format!("berth-demo-{}", std::process::id());
    let started_ms = unix_ms().saturating_sub(1000);
    cmd::run(
        Command::new(&runtime)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{VIZ_OTLP}"))
            .arg("--root")
            .arg(dir.join("runtime-state"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id),
    )?;

    step(4, "find the run's trace in berth-viz");
    // berth-runc flushed its spans before it exited, and berth-viz stores a batch before
    // it answers: the trace is there now, no waiting needed.
    let found = find_trace(&id, started_ms);
    let stopped = viz.finish();
    let (trace_id, spans, lanes) = found?;
    eprintln!("   trace {trace_id}: {spans} spans in {lanes} lanes");
    eprintln!("   Open http://{VIZ_PAGE}/#/trace/{trace_id}");
    eprintln!("   {stopped}");

    step(5, "done");
    eprintln!(
        "   Look inside the bundle: {}/config.json is what the runtime read.",
        bundle.display()
    );
    eprintln!(
        "   Run it again yourself:  OTEL_EXPORTER_OTLP_ENDPOINT=http://{VIZ_OTLP} {} run --bundle {} mine",
        runtime.display(),
        bundle.display()
    );
    Ok(())
}

/// The berth-viz the demo talks to: one it started, or one that was already running.
struct Viz {
    started: Option<Child>,
}

// ANCHOR: start_viz
/// Starts berth-viz on its default ports, detached (its own process group, output to a
/// log file), unless one already answers there.
fn start_viz(dir: &Path) -> anyhow::Result<Viz> {
    if is_berth_viz() {
        eprintln!("   berth-viz already answers on {VIZ_PAGE}: using it");
        return Ok(Viz { started: None });
    }
    let log = dir.join("berth-viz.log");
    let data = dir.join("viz-data");
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(cmd::root().join("target/debug/berth-viz"))
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: a Ctrl-C in this terminal ends the demo, not berth-viz.
        .process_group(0)
        .spawn()
        .context("cannot start target/debug/berth-viz")?;
    let mut viz = Viz {
        started: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !is_berth_viz() {
        let exited = viz.started.as_mut().unwrap().try_wait()?;
        if exited.is_some() || Instant::now() > deadline {
            viz.finish();
            bail!(
                "berth-viz did not start serving on {VIZ_PAGE} (is the port taken?); see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "   berth-viz: page on http://{VIZ_PAGE}, traces in {}, log in {}",
        data.display(),
        log.display()
    );
    Ok(viz)
}
// ANCHOR_END: start_viz

impl Viz {
    /// Leaves berth-viz running for the reader, or stops it under CI. Says which.
    fn finish(mut self) -> String {
        let Some(mut child) = self.started.take() else {
            return "berth-viz was already running, and still is.".into();
        };
        if std::env::var_os("CI").is_some() {
            let _ = child.kill();
            let _ = child.wait();
            return "CI: the berth-viz the demo started is stopped again.".into();
        }
        format!(
            "berth-viz keeps running (pid {}); stop it with `kill {}`.",
            child.id(),
            child.id()
        )
    }
}

fn is_berth_viz() -> bool {
    http_get("/api/health").is_some_and(|body| body.contains("berth-viz"))
}

/// The trace of the run of container `id`: the newest trace since `since_ms` with a span
/// whose `id` attribute names it. Returns `(trace id, span count, lane count)`.
fn find_trace(id: &str, since_ms: u64) -> anyhow::Result<(String, usize, usize)> {
    let list = http_get(&format!(
        "/api/traces?service=berth-runc&since_unix_ms={since_ms}"
    ))
    .context("berth-viz's API did not answer")?;
    let list: serde_json::Value = serde_json::from_str(&list)?;
    for line in list.as_array().into_iter().flatten() {
        let trace_id = line["trace_id"].as_str().unwrap_or_default();
        let Some(view) = http_get(&format!("/api/traces/{trace_id}")) else {
            continue;
        };
        let view: serde_json::Value = serde_json::from_str(&view)?;
        let spans = view["spans"].as_array().cloned().unwrap_or_default();
        let ours = spans.iter().any(|span| {
            span["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["key"] == "id" && a["value"] == id)
        });
        if ours {
            let lanes = view["lanes"].as_array().map_or(0, Vec::len);
            return Ok((trace_id.to_string(), spans.len(), lanes));
        }
    }
    bail!(
        "berth-viz holds no trace of container {id}; did berth-runc export? (see its stderr above)"
    )
}

/// A GET on berth-viz's page server; the body if the answer is 200. One connection per
/// request, every wait bounded: the demo must never hang on a missing server.
fn http_get(path: &str) -> Option<String> {
    let addr = VIZ_PAGE.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {VIZ_PAGE}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn step(n: u32, what: &str) {
    eprintln!("\n[{n}] {what}");
}

// ANCHOR: prepare_bundle
/// Unpacks `busybox:latest` into `bundle/rootfs` and writes `bundle/config.json`
/// from the image's config, with the demo's command line.
fn prepare_bundle(bundle: &Path) -> anyhow::Result<()> {
    if bundle.exists() {
        fs::remove_dir_all(bundle)
            .with_context(|| format!("removing the old {}", bundle.display()))?;
    }
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(&rootfs)?;

    let image_dir = &berth_tests::images::busybox().layout;
    let layout = Layout::open(image_dir)?;
    let image = layout.resolve(Some("latest"))?;
    unpack::unpack_image(&layout, &image, &rootfs)?;

    let mut spec = spec::image_spec(image.config(), Some(&rootfs))?;
    let mut process = spec
        .process()
        .clone()
        .context("an image spec has a process")?;
    process.set_args(Some(vec!["sh".into(), "-c".into(), DEMO_SCRIPT.into()]));
    spec.set_process(Some(process));
    spec.set_hostname(Some("berth-demo".into()));
    fs::write(bundle.join("config.json"), spec::to_json(&spec)?)?;
    Ok(())
}
// ANCHOR_END: prepare_bundle
