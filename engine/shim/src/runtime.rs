//! The runtime's command line: runc's, which berth-runc and the real runc both speak.
//!
//! Every verb runs as `RUNTIME --root ROOT --log FILE --log-format json VERB ...`. A
//! runtime that fails writes its reason as JSON lines to the `--log` file (this is how
//! containerd-shim-runc-v2 learns it too), and that reason is what the caller sees:
//! `ctr` prints the runtime's own words, not "exit status 1". Each command gets a log
//! file of its own, so two commands failing at once cannot swap their reasons.
//!
//! Every command is started through the [`Reaper`], which the main loop routes exits
//! to, and carries the current span as `TRACEPARENT`, so the runtime's spans join the
//! trace of the ttrpc call that ran it.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::options::RuntimeOptions;
use crate::reaper::Reaper;

/// The runtime a shim uses when the options name none.
pub const DEFAULT_RUNTIME: &str = "berth-runc";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime binary {name:?} not found: tried {tried}; set BinaryName in the runtime options, or put it on containerd's PATH")]
    NotFound { name: String, tried: String },
    #[error("cannot run the runtime {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    /// The runtime ran and failed; `message` is its own reason, from its `--log`.
    #[error("{message}")]
    Failed {
        verb: String,
        code: i32,
        message: String,
    },
    #[error("runtime {verb} printed what does not parse ({source}): {text:?}")]
    Output {
        verb: String,
        source: serde_json::Error,
        text: String,
    },
    #[error("cannot prepare the runtime's {0}: {1}")]
    Prepare(PathBuf, std::io::Error),
}

impl RuntimeError {
    /// Whether the runtime said the container does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Failed { message, .. }
            if message.contains("does not exist") || message.contains("not found"))
    }
}

/// Where the stdio of the runtime (and so of the process it starts) goes.
pub struct RuntimeStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl RuntimeStdio {
    pub fn null() -> RuntimeStdio {
        RuntimeStdio {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
        }
    }
}

/// One container's runtime: which binary, which state root, which bundle.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub options: RuntimeOptions,
}

impl Runtime {
    pub fn new(
        options: RuntimeOptions,
        bundle: &Path,
        namespace: &str,
    ) -> Result<Runtime, RuntimeError> {
        let name = if options.binary_name.is_empty() {
            DEFAULT_RUNTIME
        } else {
            &options.binary_name
        };
        Ok(Runtime {
            binary: resolve(name)?,
            root: root_for(&options, bundle, namespace),
            bundle: bundle.to_owned(),
            options,
        })
    }

    // ANCHOR: create
    /// `create`: the container exists, its init waits for `start`. The runtime's stdio
    /// becomes init's; with `console` the runtime sends a pty master there instead.
    pub fn create(
        &self,
        reaper: &Reaper,
        id: &str,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: RuntimeStdio,
    ) -> Result<(), RuntimeError> {
        let mut args: Vec<&OsStr> = vec!["create".as_ref(), "--bundle".as_ref()];
        args.extend([
            self.bundle.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
        ]);
        if let Some(console) = console {
            args.extend(["--console-socket".as_ref(), console.as_os_str()]);
        }
        if self.options.no_pivot_root {
            args.push("--no-pivot".as_ref());
        }
        if self.options.no_new_keyring {
            args.push("--no-new-keyring".as_ref());
        }
        args.push(id.as_ref());
        self.run(reaper, &args, stdio, false).map(drop)
    }
    // ANCHOR_END: create

    /// `exec --detach`: a new process in the running container, described by the
    /// OCI process JSON at `process`.
    pub fn exec(
        &self,
        reaper: &Reaper,
        id: &str,
        process: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: RuntimeStdio,
    ) -> Result<(), RuntimeError> {
        let mut args: Vec<&OsStr> = vec!["exec".as_ref(), "--detach".as_ref()];
        args.extend(["--process".as_ref(), process.as_os_str()]);
        args.extend(["--pid-file".as_ref(), pid_file.as_os_str()]);
        if let Some(console) = console {
            args.extend(["--console-socket".as_ref(), console.as_os_str()]);
        }
        args.push(id.as_ref());
        self.run(reaper, &args, stdio, false).map(drop)
    }

    pub fn start(&self, reaper: &Reaper, id: &str) -> Result<(), RuntimeError> {
        self.simple(reaper, &["start", id])
    }

    pub fn kill(
        &self,
        reaper: &Reaper,
        id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), RuntimeError> {
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, &signal]);
        self.simple(reaper, &args)
    }

    pub fn delete(&self, reaper: &Reaper, id: &str, force: bool) -> Result<(), RuntimeError> {
        let args = if force {
            vec!["delete", "--force", id]
        } else {
            vec!["delete", id]
        };
        self.simple(reaper, &args)
    }

    pub fn pause(&self, reaper: &Reaper, id: &str) -> Result<(), RuntimeError> {
        self.simple(reaper, &["pause", id])
    }

    pub fn resume(&self, reaper: &Reaper, id: &str) -> Result<(), RuntimeError> {
        self.simple(reaper, &["resume", id])
    }

    pub fn update(&self, reaper: &Reaper, id: &str, resources: &Path) -> Result<(), RuntimeError> {
        let args: [&OsStr; 4] = [
            "update".as_ref(),
            "--resources".as_ref(),
            resources.as_os_str(),
            id.as_ref(),
        ];
        self.run(reaper, &args, RuntimeStdio::null(), false)
            .map(drop)
    }

    /// `ps --format json`: the pids in the container's cgroup.
    pub fn ps(&self, reaper: &Reaper, id: &str) -> Result<Vec<u32>, RuntimeError> {
        let out = self.run(
            reaper,
            &["ps", "--format", "json", id].map(OsStr::new),
            RuntimeStdio::null(),
            true,
        )?;
        parse("ps", &out)
    }

    /// `events --stats`: one snapshot of the container's resource usage, runc's JSON.
    pub fn stats(&self, reaper: &Reaper, id: &str) -> Result<serde_json::Value, RuntimeError> {
        let out = self.run(
            reaper,
            &["events", "--stats", id].map(OsStr::new),
            RuntimeStdio::null(),
            true,
        )?;
        let event: serde_json::Value = parse("events", &out)?;
        Ok(event["data"].clone())
    }

    fn simple(&self, reaper: &Reaper, args: &[&str]) -> Result<(), RuntimeError> {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.run(reaper, &args, RuntimeStdio::null(), false)
            .map(drop)
    }

    /// Runs one verb and waits for it; stdout is returned when `capture` is set.
    fn run(
        &self,
        reaper: &Reaper,
        args: &[&OsStr],
        stdio: RuntimeStdio,
        capture: bool,
    ) -> Result<Vec<u8>, RuntimeError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let verb = args
            .first()
            .and_then(|v| v.to_str())
            .unwrap_or("?")
            .to_owned();
        let log = self.bundle.join(format!(
            "runtime-{verb}-{}.json",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(args)
            .current_dir(&self.bundle)
            .stdin(stdio.stdin)
            .stdout(if capture {
                Stdio::piped()
            } else {
                stdio.stdout
            })
            .stderr(stdio.stderr);
        berth_trace::env::set_on_command(&mut cmd);
        let child = reaper
            .spawn(&mut cmd)
            .map_err(|e| RuntimeError::Spawn(self.binary.clone(), e))?;
        // The runtime's stdio (the container's fifos) is closed here, in the shim: only
        // the container holds it now, so the readers see EOF when the container ends.
        drop(cmd);
        let waited = reaper.wait(child);
        let reason = last_error(&log);
        let _ = fs::remove_file(&log);
        let (code, out) = waited.map_err(|e| RuntimeError::Spawn(self.binary.clone(), e))?;
        if code != 0 {
            let message = reason.unwrap_or_else(|| {
                format!(
                    "{} {verb} failed with exit status {code} and logged no reason",
                    self.binary.display()
                )
            });
            return Err(RuntimeError::Failed {
                verb,
                code,
                message,
            });
        }
        Ok(out)
    }
}

/// The message of the last `error` line in a runtime's JSON log, if any.
fn last_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["level"] == "error" || entry["level"] == "fatal")
        .find_map(|entry| entry["msg"].as_str().map(str::to_owned))
}

fn parse<T: serde::de::DeserializeOwned>(verb: &str, out: &[u8]) -> Result<T, RuntimeError> {
    serde_json::from_slice(out).map_err(|source| RuntimeError::Output {
        verb: verb.to_owned(),
        source,
        text: String::from_utf8_lossy(out).into_owned(),
    })
}

// ANCHOR: resolve
/// Finds the runtime binary: a path is taken as it is; a name is looked for next to
/// the shim's own binary first (where `cargo build` and an install put berth-runc),
/// then on `PATH`. The error lists every place tried.
pub fn resolve(name: &str) -> Result<PathBuf, RuntimeError> {
    let mut candidates = Vec::new();
    if name.contains('/') {
        candidates.push(PathBuf::from(name));
    } else {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_owned))
        {
            candidates.push(dir.join(name));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
    }
    candidates
        .iter()
        .find(|c| is_executable(c))
        .cloned()
        .ok_or_else(|| RuntimeError::NotFound {
            name: name.to_owned(),
            tried: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
// ANCHOR_END: resolve

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The runtime's state root: the options' `Root`, or `runc` in containerd's state
/// directory, in both cases one directory per containerd namespace (as the runc shim
/// does: `/run/containerd/runc/default` for a default containerd). The bundle is
/// `<containerd state>/io.containerd.runtime.v2.task/<namespace>/<id>`, so a containerd
/// started with its own state directory gets runtime state of its own too.
pub fn root_for(options: &RuntimeOptions, bundle: &Path, namespace: &str) -> PathBuf {
    if !options.root.is_empty() {
        return Path::new(&options.root).join(namespace);
    }
    match bundle.ancestors().nth(3) {
        Some(state) if state != Path::new("/") && state != Path::new("") => {
            state.join("runc").join(namespace)
        }
        _ => Path::new("/run/berth/runc").join(namespace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_follows_containerds_state_dir() {
        let bundle = Path::new("/tmp/x/state/io.containerd.runtime.v2.task/default/web");
        assert_eq!(
            root_for(&RuntimeOptions::default(), bundle, "default"),
            Path::new("/tmp/x/state/runc/default")
        );
        let options = RuntimeOptions {
            root: "/r".into(),
            ..RuntimeOptions::default()
        };
        assert_eq!(root_for(&options, bundle, "ns"), Path::new("/r/ns"));
    }

    #[test]
    fn a_missing_binary_names_every_place_tried() {
        let err = resolve("no-such-runtime-here").unwrap_err().to_string();
        assert!(err.contains("no-such-runtime-here"), "{err}");
        assert!(
            err.contains("/no-such-runtime-here,"),
            "lists the candidates: {err}"
        );
        let err = resolve("/nope/runc").unwrap_err().to_string();
        assert!(err.contains("tried /nope/runc"), "{err}");
    }

    #[test]
    fn the_reason_is_the_last_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"first\"}\nnot json\n{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"container \\\"x\\\" does not exist\"}\n",
        )
        .unwrap();
        assert_eq!(
            last_error(&log).as_deref(),
            Some("container \"x\" does not exist")
        );
        assert_eq!(last_error(&dir.path().join("none")), None);
    }
}
