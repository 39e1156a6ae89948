//! `cargo xtask setup`: make a fresh Debian 12 machine ready, and do nothing on a
//! ready one. Every package berth's tests and demo rely on is listed here with the
//! reason it is needed; nothing may be installed by hand only.

use std::process::Command;

use anyhow::{bail, Context};

use crate::cmd;

// ANCHOR: packages
/// Debian packages, and why berth needs each.
const PACKAGES: &[(&str, &str)] = &[
    (
        "busybox-static",
        "its static /bin/busybox is the whole test image",
    ),
    (
        "runc",
        "the reference runtime: peer and judge of berth-runc",
    ),
    (
        "containerd",
        "the real supervisor and ctr: peers of berth-containerd and berth-shim",
    ),
    (
        "docker.io",
        "the real dockerd and docker CLI: judges of berthd's API",
    ),
    (
        "docker-registry",
        "a registry server on 127.0.0.1 for pull and push tests",
    ),
    ("skopeo", "reads the test image as a third party would"),
    (
        "openssl",
        "a certificate authority of the test's own, for HTTPS registries",
    ),
    ("umoci", "a second opinion on unpacking OCI images"),
    ("lxc", "chapter 01's execution driver is the real LXC tools"),
    ("iptables", "container networking"),
    (
        "iproute2",
        "network namespaces, veth pairs and bridges in tests",
    ),
    (
        "util-linux",
        "unshare, nsenter and mount for isolated test peers",
    ),
    (
        "chromium",
        "headless browser for the trace visualizer's page tests",
    ),
    (
        "python3-venv",
        "a virtual environment for Python's OpenTelemetry SDK, the foreign exporter in berth-viz's tests",
    ),
];
// ANCHOR_END: packages

/// Cargo tools, pinned so every machine renders the book the same way.
const MDBOOK_VERSION: &str = "0.5.4";

/// Python's OpenTelemetry SDK and OTLP/HTTP exporter (from PyPI, released together),
/// pinned: berth-viz's receiver must take what an SDK berth did not write sends.
const OTEL_PYTHON_VERSION: &str = "1.45.2";

pub fn run() -> anyhow::Result<()> {
    install_packages()?;
    install_mdbook()?;
    install_otel_python()?;
    build_test_image()
}

fn installed(package: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args([
        "--show",
        "--showformat=${db:Status-Status}",
        package,
    ]))
    .is_some_and(|status| status == "installed")
}

fn install_packages() -> anyhow::Result<()> {
    let missing: Vec<_> = PACKAGES
        .iter()
        .filter(|(name, _)| !installed(name))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: all {} Debian packages present", PACKAGES.len());
        return Ok(());
    }
    for (name, why) in &missing {
        eprintln!("setup: installing {name}: {why}");
    }
    if !cmd::is_root() {
        bail!("installing Debian packages needs root; run `sudo cargo xtask setup` (or as root)");
    }
    cmd::run(Command::new("apt-get").args(["update", "-qq"]))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "--yes", "--quiet", "--no-install-recommends"])
            .args(missing.iter().map(|(name, _)| name)),
    )
}

fn install_mdbook() -> anyhow::Result<()> {
    let wanted = format!("mdbook v{MDBOOK_VERSION}");
    let current = cmd::output(cmd::cargo_tool("mdbook").arg("--version"));
    if current.as_deref().map(str::trim) == Some(wanted.as_str()) {
        eprintln!("setup: {wanted} present");
        return Ok(());
    }
    eprintln!("setup: installing {wanted}: it builds the book (found: {current:?})");
    cmd::run(cmd::cargo().args(["install", "--locked", "mdbook", "--version", MDBOOK_VERSION]))
}

/// A virtual environment under `target/` with Python's OpenTelemetry SDK, for
/// `viz/tests/foreign_python.rs`. Made once; the tests then run offline. Debian's own
/// Python (not whatever `python3` is first on `PATH`), so every machine gets the same.
fn install_otel_python() -> anyhow::Result<()> {
    let venv = cmd::root().join("target/viz-otel-venv");
    let python = venv.join("bin/python");
    let wanted = format!("opentelemetry-sdk {OTEL_PYTHON_VERSION}");
    let check = "import opentelemetry.exporter.otlp.proto.http, importlib.metadata as m; \
                 print('opentelemetry-sdk', m.version('opentelemetry-sdk'))";
    let current = cmd::output(Command::new(&python).args(["-c", check]));
    if current.as_deref().map(str::trim) == Some(wanted.as_str()) {
        eprintln!("setup: {wanted} present in {}", venv.display());
        return Ok(());
    }
    eprintln!(
        "setup: installing {wanted} into {}: the foreign exporter of berth-viz's tests",
        venv.display()
    );
    cmd::run(
        Command::new("/usr/bin/python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    cmd::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("opentelemetry-sdk=={OTEL_PYTHON_VERSION}"))
            .arg(format!(
                "opentelemetry-exporter-otlp-proto-http=={OTEL_PYTHON_VERSION}"
            )),
    )
}

/// Builds the test image afresh: it is quick, and an upgraded busybox-static then
/// never leaves a stale image behind.
fn build_test_image() -> anyhow::Result<()> {
    let dir = berth_tests::images::images_dir();
    let paths = berth_tests::images::build_busybox(&dir).context("building the test image")?;
    eprintln!(
        "setup: test image {} (manifest {}) at {} and {}",
        berth_tests::images::REFERENCE,
        paths.manifest_digest()?,
        paths.layout.display(),
        paths.archive.display()
    );
    Ok(())
}
