//! Running OCI runtimes on throwaway bundles: what the runtime conformance suite
//! (`tests/tests/runtime_conformance.rs`) is built from.
//!
//! A test case is written once and run against each runtime in turn with
//! [`on_both`]: berth-runc and Debian's runc (the judge). Each run gets its own
//! [`Runtime`] (a fresh `--root` state directory, fresh container ids) and its own
//! [`Bundle`] (the test image unpacked afresh, plus a `config.json`), so cases can run
//! in parallel and never see each other. After a case, [`Runtime::assert_clean`]
//! checks that the runtime left nothing behind: no state directory, no cgroup, no
//! mount. Every wait is bounded: a runtime that hangs fails its case, it never hangs
//! the suite.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_oci::layout::Layout;
use berth_oci::oci_spec::runtime::Spec;
use serde_json::Value;
use tempfile::TempDir;

use crate::images;

/// Debian's runc, the runtime berth-runc is judged against.
pub const RUNC: &str = "/usr/sbin/runc";
/// The longest any one runtime command may take before the case fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

// ANCHOR: berth_runc
/// The berth-runc binary, built once per test process.
///
/// Cargo builds a package's own binaries for its integration tests, but not another
/// package's (`env!("CARGO_BIN_EXE_berth-runc")` only exists inside berth-runc), so the
/// first caller runs `cargo build -p berth-runc` with the profile this test binary was
/// built with, and every later caller gets the same path. Cargo has released its build
/// lock by the time tests run, and an up-to-date build takes a fraction of a second.
/// `BERTH_RUNC=/path/to/berth-runc` skips the build (to test an installed binary).
pub fn berth_runc() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("BERTH_RUNC") {
            return PathBuf::from(path);
        }
        crate::build::workspace_binary("berth-runc")
    })
}
// ANCHOR_END: berth_runc

/// Container ids unique across the tests of one process; the pid makes them unique
/// across processes, so a leftover cgroup can always be traced to its test run.
fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// What a runtime command did: its exit status (128 + n if a signal killed it),
/// and everything it and the container wrote to stdout and stderr.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Panics, showing the output, unless the command succeeded.
    pub fn success(self) -> Outcome {
        assert_eq!(self.status, 0, "the command failed:\n{self}");
        self
    }

    /// Panics, showing the output, unless the command failed.
    pub fn failure(self) -> Outcome {
        assert_ne!(self.status, 0, "the command should have failed:\n{self}");
        self
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit status {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// One runtime binary with a state directory of its own (`--root`), for one case.
/// Dropping it force-deletes every container it created that is still there.
pub struct Runtime {
    /// `berth-runc` or `runc`, for messages.
    pub name: &'static str,
    binary: PathBuf,
    dir: TempDir,
    /// Every id handed out, to check and clean up.
    ids: Mutex<Vec<String>>,
    /// Every bundle run, to look for leaked mounts of its rootfs.
    bundles: Mutex<Vec<PathBuf>>,
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Runtime {
    pub fn berth() -> Runtime {
        Runtime::new("berth-runc", berth_runc().to_owned())
    }

    pub fn runc() -> Runtime {
        Runtime::new("runc", PathBuf::from(RUNC))
    }

    fn new(name: &'static str, binary: PathBuf) -> Runtime {
        Runtime {
            name,
            binary,
            dir: tempfile::Builder::new()
                .prefix("berth-rt-state-")
                .tempdir()
                .expect("create a temporary directory"),
            ids: Mutex::new(Vec::new()),
            bundles: Mutex::new(Vec::new()),
        }
    }

    pub fn is_berth(&self) -> bool {
        self.name == "berth-runc"
    }

    /// The `--root` state directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A scratch directory beside the state, removed with the runtime.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh container id, remembered for [`assert_clean`](Self::assert_clean).
    pub fn new_id(&self) -> String {
        let prefix = if self.is_berth() { "berth" } else { "runc" };
        let id = unique_id(prefix);
        self.ids.lock().unwrap().push(id.clone());
        id
    }

    /// The runtime's binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// `<binary> --root <state> ARGS...`, not yet run.
    pub fn command<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(self.root()).args(args);
        // A test must never export spans to whatever collector the developer runs.
        cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        cmd
    }

    /// Runs `<binary> --root <state> ARGS...` to the end; see [`output`](Self::output).
    pub fn invoke<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Outcome {
        self.output(self.command(args))
    }

    /// Runs `cmd` with stdin from /dev/null and waits at most [`TIMEOUT`].
    ///
    /// stdout and stderr go to files, not pipes: a container started by `create` or
    /// `run -d` inherits them and may hold them open long after the runtime exits,
    /// and reading a pipe until its end would wait for the container too.
    pub fn output(&self, mut cmd: Command) -> Outcome {
        let n = unique_id("out");
        let (out_path, err_path) = (
            self.dir.path().join(format!("{n}.stdout")),
            self.dir.path().join(format!("{n}.stderr")),
        );
        let create = |p: &Path| fs::File::create(p).expect("create an output file");
        cmd.stdin(Stdio::null())
            .stdout(create(&out_path))
            .stderr(create(&err_path));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let status = wait_bounded(&mut child, TIMEOUT);
        let read =
            |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        let outcome = Outcome {
            status: status.unwrap_or(-1),
            stdout: read(&out_path),
            stderr: read(&err_path),
        };
        if status.is_none() {
            panic!("{self}: {cmd:?} did not finish within {TIMEOUT:?}:\n{outcome}");
        }
        outcome
    }

    /// `run --bundle B <new id>`: creates, starts, waits for and deletes a container.
    pub fn run(&self, bundle: &Bundle) -> Outcome {
        let id = self.new_id();
        self.run_with(bundle, &id, &[])
    }

    /// `run [EXTRA...] --bundle B ID`.
    pub fn run_with(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> Outcome {
        self.bundles.lock().unwrap().push(bundle.rootfs());
        let mut cmd = self.command(["run"]);
        cmd.args(extra).arg("--bundle").arg(bundle.path()).arg(id);
        self.output(cmd)
    }

    /// `create [EXTRA...] --bundle B ID`, which must succeed.
    pub fn create(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> Outcome {
        self.bundles.lock().unwrap().push(bundle.rootfs());
        let mut cmd = self.command(["create"]);
        cmd.args(extra).arg("--bundle").arg(bundle.path()).arg(id);
        self.output(cmd)
    }

    /// `state ID` parsed, or `None` if the runtime says the container does not exist.
    pub fn state(&self, id: &str) -> Option<Value> {
        let out = self.invoke(["state", id]);
        if out.status != 0 {
            return None;
        }
        Some(
            serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("{self}: `state {id}` printed no JSON ({e}):\n{out}")),
        )
    }

    /// The container's `status` from `state` (`"gone"` if it does not exist).
    pub fn status(&self, id: &str) -> String {
        self.state(id).map_or("gone".into(), |s| {
            s["status"].as_str().unwrap_or_default().to_owned()
        })
    }

    /// Polls `state` until the container has `status`, or panics after [`TIMEOUT`].
    pub fn wait_for_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let now = self.status(id);
            if now == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{self}: container {id} is still {now}, not {status}, after {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Checks that no container of this runtime left anything behind: no state
    /// directory, no cgroup directory in any hierarchy, no mount of a bundle's rootfs.
    pub fn assert_clean(&self) {
        let mut leftovers = Vec::new();
        for id in self.ids.lock().unwrap().iter() {
            let dir = self.root().join(id);
            if dir.exists() {
                leftovers.push(format!("state directory {}", dir.display()));
            }
            leftovers.extend(
                cgroup_dirs_named(id)
                    .into_iter()
                    .map(|d| format!("cgroup {}", d.display())),
            );
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for rootfs in self.bundles.lock().unwrap().iter() {
            let rootfs = rootfs.to_string_lossy();
            leftovers.extend(
                mountinfo
                    .lines()
                    .filter(|line| line.contains(rootfs.as_ref()))
                    .map(|line| format!("mount {line}")),
            );
        }
        assert!(
            leftovers.is_empty(),
            "{self} left these behind:\n{}",
            leftovers.join("\n")
        );
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Only after a failed case is anything left; never panic here, the case's
        // own failure is the one worth reading.
        for id in self.ids.lock().unwrap().iter() {
            if self.root().join(id).exists() {
                let mut cmd = self.command(["delete", "--force", id.as_str()]);
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                if let Ok(mut child) = cmd.spawn() {
                    wait_bounded(&mut child, TIMEOUT);
                }
            }
        }
    }
}

/// Waits for `child` at most `limit`; kills it and returns `None` if it is still
/// running then. The status is the code, or 128 + the signal that killed it.
pub fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Some(
                    status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                )
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Every directory named `name` in any cgroup hierarchy under /sys/fs/cgroup.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            if entry.file_name() == name {
                found.push(path.clone());
            }
            // Containers sit a few levels down at most (/parent/of/runtime/<id>).
            if depth < 6 {
                walk(&path, name, depth + 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 0, &mut found);
    found
}

// ANCHOR: on_both
/// Runs `case` with berth-runc and with runc, each with its own [`Runtime`], and
/// checks each left nothing behind. Both always run; the test fails naming every
/// runtime that failed, so "berth-runc fails, runc passes" is a berth bug at a glance.
pub fn on_both(case: impl Fn(&Runtime)) {
    check(&[Runtime::runc(), Runtime::berth()], &case);
}

/// Runs `case` with berth-runc only, for what runc cannot do on this host or does
/// not do at all: `why_not_runc` says which, and is printed with the result.
pub fn on_berth_only(why_not_runc: &str, case: impl Fn(&Runtime)) {
    eprintln!("runc skipped: {why_not_runc}");
    check(&[Runtime::berth()], &case);
}
// ANCHOR_END: on_both

fn check(runtimes: &[Runtime], case: &dyn Fn(&Runtime)) {
    let mut failures = Vec::new();
    for runtime in runtimes {
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            case(runtime);
            runtime.assert_clean();
        }));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("[{runtime}] {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failed on {} of {} runtimes:\n{}",
        failures.len(),
        runtimes.len(),
        failures.join("\n\n")
    );
}

/// A bundle in a temporary directory: `rootfs/` (the test image, unpacked afresh:
/// about 2 MB, a few milliseconds) and `config.json`.
pub struct Bundle {
    dir: TempDir,
}

impl Bundle {
    /// The test image's spec ([`berth_oci::spec::image_spec`]: `sh` as root, the
    /// default namespaces and mounts, a writable root), changed by `configure`.
    pub fn new(configure: impl FnOnce(&mut Spec)) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-bundle-")
            .tempdir()
            .expect("create a temporary directory");
        // 0755, not tempfile's 0700: in a user namespace the container's root is
        // not the host's, and must still reach its rootfs through the bundle.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the bundle");
        let rootfs = dir.path().join("rootfs");
        fs::create_dir(&rootfs).expect("create rootfs/");
        let layout = Layout::open(&images::busybox().layout).expect("open the test image");
        let image = layout
            .resolve(Some(images::REFERENCE))
            .expect("the test image has busybox:latest");
        berth_oci::unpack::unpack_image(&layout, &image, &rootfs).expect("unpack the test image");
        let mut spec = berth_oci::spec::image_spec(image.config(), Some(&rootfs))
            .expect("the test image makes a spec");
        configure(&mut spec);
        let bundle = Bundle { dir };
        bundle.write_config(&berth_oci::spec::to_json(&spec).expect("the spec serializes"));
        bundle
    }

    /// Edits `config.json` as JSON, for what a [`Spec`] cannot hold (an unknown
    /// namespace type, a misspelt capability).
    pub fn edit_json(&self, edit: impl FnOnce(&mut Value)) {
        let path = self.path().join("config.json");
        let mut config: Value = serde_json::from_slice(&fs::read(&path).expect("read config.json"))
            .expect("config.json is JSON");
        edit(&mut config);
        self.write_config(&config.to_string());
    }

    /// Replaces `config.json` with `text`, valid or not.
    pub fn write_config(&self, text: &str) {
        fs::write(self.path().join("config.json"), text).expect("write config.json");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// Sets the container's process to `sh -c SCRIPT`.
pub fn sh(spec: &mut Spec, script: &str) {
    patch(
        spec,
        serde_json::json!({ "process": { "args": ["sh", "-c", script] } }),
    );
}

// ANCHOR: patch
/// Changes `spec` the way a JSON merge patch (RFC 7386) changes a document: objects
/// are merged key by key, `null` removes a key, anything else replaces. A case then
/// shows the very `config.json` fragment it is about:
/// `patch(spec, json!({"process": {"noNewPrivileges": false}}))`.
pub fn patch(spec: &mut Spec, fragment: Value) {
    fn merge(target: &mut Value, fragment: Value) {
        match (target, fragment) {
            (Value::Object(target), Value::Object(fragment)) => {
                for (key, value) in fragment {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, fragment) => *target = fragment,
        }
    }
    let mut document = serde_json::to_value(&*spec).expect("a spec serializes");
    merge(&mut document, fragment);
    *spec = serde_json::from_value(document)
        .unwrap_or_else(|e| panic!("the patched spec is not a valid spec: {e}"));
}
// ANCHOR_END: patch

/// The value of `Name:` in a `/proc/PID/status` text, e.g. `CapEff`.
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_merge_objects_and_replace_the_rest() {
        let mut spec = berth_oci::spec::default_spec();
        patch(
            &mut spec,
            serde_json::json!({
                "hostname": "box",
                "process": { "args": ["true"], "cwd": "/tmp", "capabilities": null },
            }),
        );
        assert_eq!(spec.hostname().as_deref(), Some("box"));
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_deref(), Some(&["true".to_owned()][..]));
        assert_eq!(process.cwd(), Path::new("/tmp"));
        assert!(process.capabilities().is_none());
        // Untouched keys stay.
        assert_eq!(process.rlimits().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn status_fields_are_found_by_name() {
        let status = "Name:\tsh\nCapEff:\t0000000020000420\nNoNewPrivs:\t1\n";
        assert_eq!(status_field(status, "CapEff"), Some("0000000020000420"));
        assert_eq!(status_field(status, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(status, "Cap"), None);
    }
}
