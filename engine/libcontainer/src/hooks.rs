//! OCI lifecycle hooks: the programs a bundle's `config.json` asks the runtime to run
//! at six points of a container's life, each fed the container's state on stdin.
//!
//! This module knows *how* to run a list of hooks (argv, environment, stdin, timeout,
//! errors); *when* to run them, and from which process, is the caller's business:
//!
//! | hook              | runs …                                          | from                |
//! | ----------------- | ----------------------------------------------- | ------------------- |
//! | `prestart`        | deprecated twin of `createRuntime`              | `berth-runc create` |
//! | `createRuntime`   | after namespaces and mounts, before pivot_root  | `berth-runc create` |
//! | `createContainer` | right after `createRuntime`, before pivot_root  | init, in container  |
//! | `startContainer`  | on `start`, just before the user's program      | init, in container  |
//! | `poststart`       | once the user's program has started             | `berth-runc start`  |
//! | `poststop`        | when the container is deleted                   | `berth-runc delete` |
//!
//! A hook runs in the namespaces of the process that starts it, so "from" also says
//! whose filesystem its `path` is looked up in.
//!
//! The first four must stop the container when they fail: use [`run_hooks`]. For
//! `poststart` and `poststop` the spec says a failure is only a warning and the remaining
//! hooks still run: use [`run_hooks_best_effort`] and print what it returns. Either way
//! the caller decides; this module never logs. Next: `crate::init`, which calls the two
//! in-container kinds.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{ContainerState, Hook, Hooks, Spec};
use serde::{Deserialize, Serialize};

/// How long a hook without a `timeout` may run.
///
/// A real engine would wait forever, as the spec allows and runc does; berth doesn't
/// because a hung hook would then hang `create` (and every test) with no message at
/// all. A hook that needs longer says so with its own `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long we wait for a killed hook to be reaped. SIGKILL cannot be caught, but a
/// process stuck in the kernel (a dead NFS server, say) dies only when it returns.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// How often we look whether a hook has exited. Short enough not to slow `create`
/// down noticeably, long enough not to spin.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How much of a failing hook's stderr goes into the error message.
const MAX_STDERR: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{hook}: the path is not absolute; the OCI spec requires hooks to name their program by absolute path")]
    RelativePath { hook: HookId },
    #[error("{hook}: \"timeout\" is {timeout}; it must be a number of seconds greater than zero")]
    BadTimeout { hook: HookId, timeout: i64 },
    #[error("{hook}: environment entry {entry:?} is not KEY=VALUE; fix the hook's \"env\" in config.json")]
    BadEnv { hook: HookId, entry: String },
    #[error("cannot start {hook}: {source}; check that it exists and is executable")]
    Spawn { hook: HookId, source: io::Error },
    #[error("{hook} {status}; its stderr: {stderr:?}")]
    Failed {
        hook: HookId,
        status: String,
        stderr: String,
    },
    #[error(
        "{hook} did not finish within {seconds}s and was killed; fix it or raise its \"timeout\""
    )]
    TimedOut { hook: HookId, seconds: u64 },
    #[error("cannot {what} for {hook}: {source}")]
    Io {
        hook: HookId,
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot encode the container state as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The six points of a container's life where hooks run, named as in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    /// This kind's list from the spec's `hooks` object (empty when absent).
    pub fn select(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            // Deprecated by the spec, not by us: runc and containerd still honour it.
            #[allow(deprecated)]
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        })
    }
}

/// Which hook an error is about: `createRuntime hook #1 (/usr/bin/netns-setup)`.
/// Numbered from 0, as runc numbers them, so messages from both read alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookId {
    pub kind: HookKind,
    pub index: usize,
    pub path: PathBuf,
}

impl fmt::Display for HookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} hook #{} ({})",
            self.kind,
            self.index,
            self.path.display()
        )
    }
}

// ANCHOR: oci_state
/// The container's state as the OCI runtime spec defines it: what every hook reads on
/// its stdin, and the core of what `berth-runc state` prints (which adds runc's
/// `rootfs`, `created` and `owner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciState {
    /// The version of the runtime spec this state follows.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    /// `creating`, `created`, `running` or `stopped`.
    pub status: ContainerState,
    /// The container's init, as the *host* sees it. Absent once it has exited (and,
    /// as runc does, whenever it is 0).
    #[serde(default, skip_serializing_if = "no_pid")]
    pub pid: Option<i32>,
    /// Absolute path of the bundle directory.
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
// ANCHOR_END: oci_state

fn no_pid(pid: &Option<i32>) -> bool {
    matches!(pid, None | Some(0))
}

impl OciState {
    /// The state of container `id`, with the annotations of its `spec`. A `pid` of 0
    /// means "no process" and is left out of the JSON.
    pub fn new(id: &str, status: ContainerState, pid: i32, bundle: &Path, spec: &Spec) -> Self {
        let annotations = spec.annotations().clone().unwrap_or_default();
        OciState {
            oci_version: oci_spec::runtime::VERSION.to_owned(),
            id: id.to_owned(),
            status,
            pid: (pid != 0).then_some(pid),
            bundle: bundle.to_owned(),
            annotations: annotations.into_iter().collect(),
        }
    }
}

/// Runs `hooks` one after the other, each with `state` on its stdin, and stops at the
/// first that fails. For the four kinds whose failure must stop the container.
pub fn run_hooks(kind: HookKind, hooks: &[Hook], state: &OciState) -> Result<(), HookError> {
    let state = serde_json::to_vec(state)?;
    for (index, hook) in hooks.iter().enumerate() {
        run_hook(kind, index, hook, &state)?;
    }
    Ok(())
}

/// Runs every hook even when some fail, and returns the failures for the caller to
/// print as warnings: the spec's rule for `poststart` and `poststop`.
pub fn run_hooks_best_effort(kind: HookKind, hooks: &[Hook], state: &OciState) -> Vec<HookError> {
    let state = match serde_json::to_vec(state) {
        Ok(state) => state,
        Err(e) => return vec![e.into()],
    };
    let results = hooks
        .iter()
        .enumerate()
        .map(|(index, hook)| run_hook(kind, index, hook, &state));
    results.filter_map(Result::err).collect()
}

// ANCHOR: run_hook
/// Runs one hook to completion: started directly (no shell) with exactly its own
/// argv and environment, the state JSON on stdin, killed if it outlives its timeout.
fn run_hook(kind: HookKind, index: usize, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let id = HookId {
        kind,
        index,
        path: hook.path().clone(),
    };
    let timeout = timeout_of(&id, hook)?;
    let mut command = command_for(&id, hook)?;
    let stdin = file_holding(&id, state)?;
    // stderr goes to a file too: through a pipe, a hook writing more than 64 KiB
    // would block until we read, and a background process it left holding the
    // pipe would keep us reading after the hook itself had exited.
    let stderr = memfd(&id, c"hook-stderr")?;
    command
        .stdin(stdin)
        // The hook's stdout is not ours to pass on: berth-runc's own stdout may be the
        // container's output stream, read by a shim.
        .stdout(Stdio::null())
        .stderr(
            stderr
                .try_clone()
                .map_err(io_error(&id, "duplicate the stderr file"))?,
        )
        // Its own process group, so a timeout kills whatever the hook started, too.
        .process_group(0);
    let mut child = command.spawn().map_err(|source| HookError::Spawn {
        hook: id.clone(),
        source,
    })?;

    match wait_until(&mut child, Instant::now() + timeout).map_err(io_error(&id, "wait"))? {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(HookError::Failed {
            status: describe(status),
            stderr: captured(&stderr),
            hook: id,
        }),
        None => {
            kill_and_reap(&mut child);
            Err(HookError::TimedOut {
                hook: id,
                seconds: timeout.as_secs(),
            })
        }
    }
}
// ANCHOR_END: run_hook

fn timeout_of(id: &HookId, hook: &Hook) -> Result<Duration, HookError> {
    match hook.timeout() {
        None => Ok(DEFAULT_TIMEOUT),
        Some(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds as u64)),
        Some(timeout) => Err(HookError::BadTimeout {
            hook: id.clone(),
            timeout,
        }),
    }
}

/// The hook's program, argv and environment, exactly as `config.json` gives them.
fn command_for(id: &HookId, hook: &Hook) -> Result<Command, HookError> {
    let path = hook.path();
    if !path.is_absolute() {
        return Err(HookError::RelativePath { hook: id.clone() });
    }
    let mut command = Command::new(path);
    // `args` is execve's argv, argv[0] included; without it argv[0] is the path.
    if let Some((arg0, rest)) = hook.args().as_deref().and_then(<[String]>::split_first) {
        command.arg0(arg0).args(rest);
    }
    // Nothing inherited from the runtime's environment: a hook sees only its own.
    // (std passes the variables sorted by name, and a repeated name keeps its last
    // value, as runc's Go does; order in `environ` means nothing to programs.)
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        let (key, value) = entry.split_once('=').ok_or_else(|| HookError::BadEnv {
            hook: id.clone(),
            entry: entry.clone(),
        })?;
        command.env(key, value);
    }
    Ok(command)
}

/// An anonymous in-memory file (a memfd), closed on exec unless handed to a child.
fn memfd(id: &HookId, name: &std::ffi::CStr) -> Result<File, HookError> {
    let fd: OwnedFd = memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(|e| HookError::Io {
        hook: id.clone(),
        what: "create an in-memory file",
        source: e.into(),
    })?;
    Ok(File::from(fd))
}

/// The state JSON as a file to read from the start. A file, not a pipe: a pipe holds
/// only 64 KiB, so writing a big state to a hook that never reads its stdin would
/// block us forever; writing to a file never blocks.
fn file_holding(id: &HookId, state: &[u8]) -> Result<File, HookError> {
    let mut file = memfd(id, c"hook-state")?;
    file.write_all(state)
        .map_err(io_error(id, "write the state"))?;
    // The hook shares this file's offset, so it must start at the beginning.
    file.rewind().map_err(io_error(id, "rewind the state"))?;
    Ok(file)
}

/// Waits for `child` to exit, until `deadline`. `None`: still running at the deadline.
///
/// Polls, because std has no wait-with-timeout. (A pidfd could be polled instead;
/// a 10 ms tick is simpler and costs nothing noticeable.)
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Kills the hook's whole process group and reaps the hook, within [`REAP_GRACE`].
fn kill_and_reap(child: &mut Child) {
    // The group's id is the hook's pid (we made it the group leader). Errors are
    // ignored: the only likely one is that everything has exited already.
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = wait_until(child, Instant::now() + REAP_GRACE);
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// The start of what the hook wrote to stderr, marked when cut short.
fn captured(file: &File) -> String {
    // One byte more than we keep, to know whether there was more.
    let mut buffer = vec![0; MAX_STDERR + 1];
    // `read_at` ignores the offset the hook left behind.
    let length = file.read_at(&mut buffer, 0).unwrap_or(0);
    let kept = &buffer[..length.min(MAX_STDERR)];
    let mut text = String::from_utf8_lossy(kept).trim_end().to_owned();
    if length > MAX_STDERR {
        text.push_str(" …(truncated)");
    }
    text
}

fn io_error<'a>(id: &'a HookId, what: &'static str) -> impl FnOnce(io::Error) -> HookError + 'a {
    move |source| HookError::Io {
        hook: id.clone(),
        what,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;
    use std::fs;

    /// A hook running `/bin/sh -c script` with `argv[0]` = `name`. The script sees
    /// the test's temp dir as `$1`.
    fn sh_hook(name: &str, script: &str, dir: &Path) -> Hook {
        HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                name.to_owned(),
                "-c".to_owned(),
                script.to_owned(),
                "sh".to_owned(),
                dir.display().to_string(),
            ])
            .env(vec![
                "PATH=/usr/bin:/bin".to_owned(),
                "ONLY=this".to_owned(),
            ])
            .build()
            .unwrap()
    }

    fn state() -> OciState {
        OciState {
            oci_version: "1.1.0".into(),
            id: "web".into(),
            status: ContainerState::Creating,
            pid: Some(4242),
            bundle: "/run/bundles/web".into(),
            annotations: BTreeMap::from([("org.example/key".to_owned(), "value".to_owned())]),
        }
    }

    #[test]
    fn state_json_uses_the_spec_field_names() {
        let json = serde_json::to_value(state()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ociVersion": "1.1.0", "id": "web", "status": "creating", "pid": 4242,
                "bundle": "/run/bundles/web", "annotations": {"org.example/key": "value"}
            })
        );
    }

    #[test]
    fn state_json_leaves_out_a_missing_or_zero_pid_and_empty_annotations() {
        for pid in [None, Some(0)] {
            let state = OciState {
                pid,
                annotations: BTreeMap::new(),
                status: ContainerState::Stopped,
                ..state()
            };
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(
                json,
                serde_json::json!({"ociVersion": "1.1.0", "id": "web", "status": "stopped", "bundle": "/run/bundles/web"})
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn state_json_round_trips_and_has_a_pid_only_when_there_is_one(
            id in "[a-z0-9_.-]{1,16}",
            status in proptest::sample::select(vec![
                ContainerState::Creating, ContainerState::Created,
                ContainerState::Running, ContainerState::Stopped,
            ]),
            pid in proptest::option::of(0..i32::MAX),
            bundle in "(/[a-z0-9]{1,8}){1,4}",
            annotations in proptest::collection::btree_map("[a-z./]{1,12}", ".{0,12}", 0..4),
        ) {
            let state = OciState { oci_version: "1.1.0".into(), id, status, pid, bundle: bundle.into(), annotations };
            let json = serde_json::to_value(&state).unwrap();
            proptest::prop_assert_eq!(json.get("pid").is_some(), !no_pid(&pid));
            let back: OciState = serde_json::from_value(json).unwrap();
            let expected = OciState { pid: pid.filter(|&p| p != 0), ..state };
            proptest::prop_assert_eq!(back, expected);
        }
    }

    #[test]
    fn new_takes_annotations_from_the_spec_and_drops_pid_zero() {
        let mut spec = Spec::default();
        spec.set_annotations(Some([("a".to_owned(), "b".to_owned())].into()));
        let state = OciState::new("db", ContainerState::Created, 0, Path::new("/b"), &spec);
        assert_eq!(state.pid, None);
        assert_eq!(
            state.annotations,
            BTreeMap::from([("a".to_owned(), "b".to_owned())])
        );
        assert_eq!(state.oci_version, oci_spec::runtime::VERSION);
    }

    #[test]
    fn a_hook_reads_the_state_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let hook = sh_hook("state-reader", r#"cat > "$1/state.json""#, dir.path());
        run_hooks(HookKind::CreateRuntime, &[hook], &state()).unwrap();
        let received: OciState =
            serde_json::from_slice(&fs::read(dir.path().join("state.json")).unwrap()).unwrap();
        assert_eq!(received, state());
    }

    #[test]
    fn a_hook_gets_exactly_its_argv_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        // /proc/$$ shows what execve gave the shell, before the shell adds anything.
        let script = r#"tr '\0' '\n' < /proc/$$/cmdline > "$1/argv"; tr '\0' '\n' < /proc/$$/environ > "$1/env""#;
        let hook = sh_hook("my-hook", script, dir.path());
        run_hooks(HookKind::Prestart, &[hook], &state()).unwrap();
        let argv = fs::read_to_string(dir.path().join("argv")).unwrap();
        assert_eq!(
            argv.lines().collect::<Vec<_>>(),
            [
                "my-hook",
                "-c",
                script,
                "sh",
                &dir.path().display().to_string()
            ]
        );
        let env = fs::read_to_string(dir.path().join("env")).unwrap();
        let mut env: Vec<_> = env.lines().collect();
        env.sort(); // std hands the environment over sorted by name
        assert_eq!(env, ["ONLY=this", "PATH=/usr/bin:/bin"]);
    }

    #[test]
    fn without_args_the_hook_gets_its_path_as_argv0_and_nothing_else() {
        // argv[0] itself cannot be observed from a program run without arguments
        // (a shell would read the state from stdin as its script), so look at the
        // command: std passes the program path as argv[0] unless told otherwise.
        let hook = HookBuilder::default().path("/usr/bin/env").build().unwrap();
        let id = HookId {
            kind: HookKind::Prestart,
            index: 0,
            path: hook.path().clone(),
        };
        let command = command_for(&id, &hook).unwrap();
        assert_eq!(command.get_program(), "/usr/bin/env");
        assert_eq!(command.get_args().count(), 0);
        assert!(
            command.get_envs().all(|(_, value)| value.is_none()),
            "env_clear leaves only removals"
        );
        run_hooks(HookKind::Prestart, &[hook], &state()).unwrap();
    }

    #[test]
    fn a_failing_hook_reports_kind_path_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let hook = sh_hook(
            "failing",
            "echo 'no network for you' >&2; exit 3",
            dir.path(),
        );
        let error = run_hooks(HookKind::CreateRuntime, &[hook], &state()).unwrap_err();
        assert!(matches!(error, HookError::Failed { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            r#"createRuntime hook #0 (/bin/sh) exited with status 3; its stderr: "no network for you""#
        );
    }

    #[test]
    fn a_stderr_of_exactly_the_limit_is_not_marked_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!("head -c {MAX_STDERR} /dev/zero | tr '\\0' y >&2; exit 1");
        let hook = sh_hook("exact", &script, dir.path());
        let HookError::Failed { stderr, .. } =
            run_hooks(HookKind::Prestart, &[hook], &state()).unwrap_err()
        else {
            panic!("expected Failed")
        };
        assert_eq!(stderr, "y".repeat(MAX_STDERR));
    }

    #[test]
    fn a_long_stderr_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let hook = sh_hook(
            "noisy",
            "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1",
            dir.path(),
        );
        let HookError::Failed { stderr, .. } =
            run_hooks(HookKind::Prestart, &[hook], &state()).unwrap_err()
        else {
            panic!("expected Failed")
        };
        assert_eq!(stderr, format!("{} …(truncated)", "x".repeat(MAX_STDERR)));
    }

    #[test]
    fn a_hook_that_outlives_its_timeout_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let mut hook = sh_hook(
            "sleeper",
            r#"sleep 30 & echo $! > "$1/pid"; wait"#,
            dir.path(),
        );
        // Three seconds, so that even a loaded machine has run the shell's first two
        // commands; the hook itself would take thirty.
        hook.set_timeout(Some(3));
        let started = Instant::now();
        let error = run_hooks(HookKind::StartContainer, &[hook], &state()).unwrap_err();
        assert!(
            matches!(error, HookError::TimedOut { seconds: 3, .. }),
            "{error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        // The shell's child, `sleep`, was in the hook's process group: it is gone
        // too (or a zombie waiting for whoever inherited it).
        let pid = fs::read_to_string(dir.path().join("pid")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_running(pid.trim()) {
            assert!(
                Instant::now() < deadline,
                "sleep (pid {}) survived its hook",
                pid.trim()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn is_running(pid: &str) -> bool {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        !matches!(state, None | Some("Z") | Some("X"))
    }

    #[test]
    fn hooks_run_in_order_and_the_first_failure_stops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = [
            sh_hook("first", r#"echo first >> "$1/log""#, dir.path()),
            sh_hook("second", r#"echo second >> "$1/log"; exit 1"#, dir.path()),
            sh_hook("third", r#"echo third >> "$1/log""#, dir.path()),
        ];
        let error = run_hooks(HookKind::CreateContainer, &hooks, &state()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("createContainer hook #1 (/bin/sh) exited with status 1"),
            "{error}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("log")).unwrap(),
            "first\nsecond\n"
        );
    }

    #[test]
    fn best_effort_runs_every_hook_and_returns_the_failures() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = [
            sh_hook("first", r#"echo first >> "$1/log"; exit 2"#, dir.path()),
            sh_hook("second", r#"echo second >> "$1/log""#, dir.path()),
        ];
        let errors = run_hooks_best_effort(HookKind::Poststop, &hooks, &state());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("poststop hook #0 (/bin/sh) exited with status 2"),
            "{}",
            errors[0]
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("log")).unwrap(),
            "first\nsecond\n"
        );
    }

    #[test]
    fn a_relative_path_is_refused_before_anything_runs() {
        let hook = HookBuilder::default().path("bin/hook").build().unwrap();
        let error = run_hooks(HookKind::Poststart, &[hook], &state()).unwrap_err();
        assert!(matches!(error, HookError::RelativePath { .. }));
        assert!(error
            .to_string()
            .starts_with("poststart hook #0 (bin/hook): the path is not absolute"));
    }

    #[test]
    fn a_missing_program_is_named() {
        let hook = HookBuilder::default()
            .path("/nonexistent/hook")
            .build()
            .unwrap();
        let error = run_hooks(HookKind::Prestart, &[hook], &state()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot start prestart hook #0 (/nonexistent/hook): "),
            "{error}"
        );
    }

    #[test]
    fn malformed_env_and_timeout_are_refused() {
        let bad_env = HookBuilder::default()
            .path("/bin/true")
            .env(vec!["NOEQUALS".to_owned()])
            .build()
            .unwrap();
        let error = run_hooks(HookKind::Prestart, &[bad_env], &state()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(r#"environment entry "NOEQUALS" is not KEY=VALUE"#),
            "{error}"
        );
        let bad_timeout = HookBuilder::default()
            .path("/bin/true")
            .timeout(0)
            .build()
            .unwrap();
        let error = run_hooks(HookKind::Prestart, &[bad_timeout], &state()).unwrap_err();
        assert!(error.to_string().contains("\"timeout\" is 0"), "{error}");
    }

    #[test]
    fn select_picks_each_kind_from_the_spec() {
        let hooks: Hooks = serde_json::from_value(serde_json::json!({
            "prestart": [{"path": "/p"}], "createRuntime": [{"path": "/cr"}],
            "createContainer": [{"path": "/cc"}], "startContainer": [{"path": "/sc"}],
            "poststart": [{"path": "/ps"}], "poststop": [{"path": "/pt"}],
        }))
        .unwrap();
        let kinds = [
            (HookKind::Prestart, "/p"),
            (HookKind::CreateRuntime, "/cr"),
            (HookKind::CreateContainer, "/cc"),
            (HookKind::StartContainer, "/sc"),
            (HookKind::Poststart, "/ps"),
            (HookKind::Poststop, "/pt"),
        ];
        for (kind, path) in kinds {
            assert_eq!(kind.select(&hooks)[0].path(), Path::new(path), "{kind}");
        }
        assert!(HookKind::Poststop.select(&Hooks::default()).is_empty());
    }
}
