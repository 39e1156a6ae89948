//! `cargo xtask demo`: from nothing to a running container, one printed step at a time.
//!
//! Today the demo stops at the runtime: it turns the test image into an OCI bundle
//! (a root filesystem plus `config.json`) and has berth-runc run it. As the shim, the
//! supervisor, the daemon and the visualizer land, the demo grows to run the whole
//! traced engine.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use berth_oci::layout::Layout;
use berth_oci::{spec, unpack};

use crate::{cmd, setup};

/// What the demo container prints: proof that it runs in its own namespaces on the
/// image's files, not the host's.
const DEMO_SCRIPT: &str = "echo \"hello from a container made of berth's busybox image\"; \
     echo \"  hostname: $(hostname)   pid: $$\"; echo '  / holds:' $(ls /)";

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

    step(2, "build berth-runc and run the bundle with it");
    cmd::run(cmd::cargo().args(["build", "--quiet", "--package", "berth-runc"]))?;
    let runtime = cmd::root().join("target/debug/berth-runc");
    let id = format!("berth-demo-{}", std::process::id());
    cmd::run(
        Command::new(&runtime)
            .arg("--root")
            .arg(dir.join("runtime-state"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id),
    )?;

    step(3, "done");
    eprintln!(
        "   Look inside the bundle: {}/config.json is what the runtime read.",
        bundle.display()
    );
    eprintln!(
        "   Run it again yourself:  {} run --bundle {} mine",
        runtime.display(),
        bundle.display()
    );
    Ok(())
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
