//! Binaries of other workspace packages, for tests that run them.
//!
//! Cargo gives a test the path of its own package's binaries only
//! (`env!("CARGO_BIN_EXE_name")`), so a test that needs another package's binary (the
//! runtime conformance suite needs berth-runc, the book's lab needs each chapter's)
//! builds it here, with the profile and target directory this test binary was built
//! with. Cargo has released its build lock by the time tests run, and an up-to-date
//! build takes a fraction of a second.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `package` (whose binary has the package's name) and returns the binary's path.
pub fn workspace_binary(package: &str) -> PathBuf {
    // This test binary is `<target>/<profile dir>/deps/<name>-<hash>`.
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps");
    let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "--package", package, "--profile"])
        .arg(profile)
        .env("CARGO_TARGET_DIR", profile_dir.parent().expect("<target>"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} failed");
    let binary = profile_dir.join(package);
    assert!(
        binary.is_file(),
        "{} is missing after the build",
        binary.display()
    );
    binary
}

/// Builds `package` with the `release` profile (berth as shipped, whatever profile this
/// test binary was built with) and returns the binary's path. Benchmarks measure this
/// build: a debug build's memory and speed say little about what users run.
pub fn release_binary(package: &str) -> PathBuf {
    // This binary is `<target>/<profile dir>/deps/<name>-<hash>`.
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test binaries live in <target>/<profile>/deps");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "--release", "--package", package])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    assert!(
        status.success(),
        "cargo build --release -p {package} failed"
    );
    let binary = target.join("release").join(package);
    assert!(
        binary.is_file(),
        "{} is missing after the build",
        binary.display()
    );
    binary
}
