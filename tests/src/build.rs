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
    let profile_dir = this_profile_dir();
    let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    build(package, profile)
}

/// Builds `package` with the `release` profile (berth as shipped, whatever profile this
/// test binary was built with) and returns the binary's path. Benchmarks measure this
/// build: a debug build's memory and speed say little about what users run.
pub fn release_binary(package: &str) -> PathBuf {
    build(package, "release")
}

/// `<target>/<profile dir>` of this test binary, which is
/// `<target>/<profile dir>/deps/<name>-<hash>`.
fn this_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps")
        .to_owned()
}

/// `cargo build -p package --profile profile` into this test binary's target directory.
fn build(package: &str, profile: &str) -> PathBuf {
    let target = this_profile_dir().parent().expect("<target>").to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--package",
            package,
            "--profile",
            profile,
        ])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    assert!(
        status.success(),
        "cargo build -p {package} --profile {profile} failed"
    );
    // Cargo names the `dev` profile's directory `debug`.
    let dir = if profile == "dev" { "debug" } else { profile };
    let binary = target.join(dir).join(package);
    assert!(
        binary.is_file(),
        "{} is missing after the build",
        binary.display()
    );
    binary
}
