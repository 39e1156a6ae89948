//! The command line: runc's global flags and verbs, one file per verb.
//!
//! Each verb's file holds its clap arguments and a `run` that calls into
//! `berth-libcontainer`. Errors come back here, go to `--log` (see [`crate::log`])
//! and end the process with status 1, as runc's do.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod tty;
mod update;
mod wait;

use std::path::PathBuf;

use berth_libcontainer::state::Root;
use clap::{Parser, Subcommand};

use crate::log::{Log, LogFormat};

/// Where containers' state lives unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/berth/runc";

#[derive(Parser)]
#[command(
    name = "berth-runc",
    about = "berth's OCI runtime: creates containers from bundles",
    disable_version_flag = true
)]
pub struct Args {
    /// Directory for containers' state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Append errors to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Print debug logging to stderr.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,
    #[command(subcommand)]
    pub verb: Option<Verb>,
}

#[derive(Subcommand)]
pub enum Verb {
    Create(create::Args),
    Start(start::Args),
    Run(run::Args),
    State(state::Args),
    List(list::Args),
    Kill(kill::Args),
    Delete(delete::Args),
    Exec(exec::Args),
    Ps(ps::Args),
    Pause(pause::Args),
    Resume(pause::ResumeArgs),
    Update(update::Args),
    Events(events::Args),
    Spec(spec::Args),
    Features,
    /// Internal: the container's init process (started by berth-runc itself).
    #[command(hide = true)]
    Init,
}

/// Parses the command line, runs the verb, reports any error; returns the exit status.
pub fn main() -> i32 {
    // Like any command-line tool, die quietly when a reader goes away (`state | head`)
    // instead of panicking on a failed write, as Rust's ignored SIGPIPE would make us.
    // SAFETY: restoring a default disposition installs no handler.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let args = Args::parse();
    // `init` must stay a bare, single-threaded process that ends in exec: no tracing
    // setup (which may start an exporter thread), nothing else before it.
    if let Some(Verb::Init) = args.verb {
        berth_libcontainer::init::main();
    }
    // Before any thread exists (the tracing exporter starts some): see `wait`.
    let waits = match &args.verb {
        Some(Verb::Run(run)) => !run.detach,
        Some(Verb::Exec(exec)) => !exec.detach,
        _ => false,
    };
    if waits {
        if let Err(e) = wait::block_signals() {
            eprintln!("berth-runc: cannot block signals: {e}");
            return 1;
        }
    }
    if args.debug && std::env::var_os("RUST_LOG").is_none() {
        // `--debug` is runc's spelling of "log more": berth's log filter is RUST_LOG.
        std::env::set_var("RUST_LOG", "debug");
    }
    let log = Log {
        file: args.log.clone(),
        format: args.log_format,
    };
    let guard = match berth_trace::init("berth-runc") {
        Ok(guard) => Some(guard),
        Err(e) => {
            log.error(&format!("tracing is off: {e}"));
            None
        }
    };
    let status = match dispatch(args) {
        Ok(status) => status,
        Err(e) => {
            log.error(&describe(&e));
            1
        }
    };
    if let Some(guard) = guard {
        let _ = guard.flush();
    }
    status
}

fn dispatch(args: Args) -> anyhow::Result<i32> {
    if args.version {
        print!("{}", version());
        return Ok(0);
    }
    if args.systemd_cgroup {
        anyhow::bail!("--systemd-cgroup is not supported: berth-runc manages cgroups through cgroupfs; drop the flag");
    }
    let root = Root(args.root);
    let Some(verb) = args.verb else {
        anyhow::bail!("no command given; run `berth-runc --help` for the list");
    };
    let span = tracing::info_span!("berth-runc", verb = verb_name(&verb));
    berth_trace::set_parent(&span, berth_trace::env::extract_from_process());
    let _entered = span.enter();
    match verb {
        Verb::Create(a) => create::run(&root, a).map(|()| 0),
        Verb::Start(a) => start::run(&root, a).map(|()| 0),
        Verb::Run(a) => run::run(&root, a),
        Verb::State(a) => state::run(&root, a).map(|()| 0),
        Verb::List(a) => list::run(&root, a).map(|()| 0),
        Verb::Kill(a) => kill::run(&root, a).map(|()| 0),
        Verb::Delete(a) => delete::run(&root, a).map(|()| 0),
        Verb::Exec(a) => exec::run(&root, a),
        Verb::Ps(a) => ps::run(&root, a).map(|()| 0),
        Verb::Pause(a) => pause::run(&root, a).map(|()| 0),
        Verb::Resume(a) => pause::resume(&root, a).map(|()| 0),
        Verb::Update(a) => update::run(&root, a).map(|()| 0),
        Verb::Events(a) => events::run(&root, a).map(|()| 0),
        Verb::Spec(a) => spec::run(a).map(|()| 0),
        Verb::Features => features::run().map(|()| 0),
        Verb::Init => unreachable!("handled before tracing starts"),
    }
}

/// The error and each of its causes, once. berth's errors already name their cause in
/// their own message (`cannot read X: No such file or directory`), so anyhow's
/// alternate form (`{e:#}`, every cause appended) would say it twice; a cause is
/// appended only if the text so far does not already hold it (as for the context
/// `anyhow` adds).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1).map(ToString::to_string) {
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn verb_name(verb: &Verb) -> &'static str {
    match verb {
        Verb::Create(_) => "create",
        Verb::Start(_) => "start",
        Verb::Run(_) => "run",
        Verb::State(_) => "state",
        Verb::List(_) => "list",
        Verb::Kill(_) => "kill",
        Verb::Delete(_) => "delete",
        Verb::Exec(_) => "exec",
        Verb::Ps(_) => "ps",
        Verb::Pause(_) => "pause",
        Verb::Resume(_) => "resume",
        Verb::Update(_) => "update",
        Verb::Events(_) => "events",
        Verb::Spec(_) => "spec",
        Verb::Features => "features",
        Verb::Init => "init",
    }
}

/// `--version`, in runc's three-line shape: dockerd reads the first line's last
/// word as the version and the `commit:` line for `docker info`.
pub fn version() -> String {
    format!(
        "berth-runc version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("BERTH_COMMIT").unwrap_or("unknown"),
        berth_oci::spec::OCI_VERSION
    )
}

/// Writes `pid` to `path` atomically, as the shim expects to read it.
pub(crate) fn write_pid_file(path: &std::path::Path, pid: i32) -> anyhow::Result<()> {
    use anyhow::Context;
    let tmp = path.with_extension("tmp-berth");
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("writing the pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing the pid file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn errors_name_each_cause_once() {
        let io = || std::io::Error::other("No such file or directory");
        // A cause the message already holds is not repeated...
        let state = berth_libcontainer::state::StateError::Io {
            action: "read",
            path: "/run/x".into(),
            source: io(),
        };
        assert_eq!(
            describe(&state.into()),
            "cannot read /run/x: No such file or directory"
        );
        // ... and one it does not hold (anyhow's context) is appended.
        let with_context = anyhow::Error::new(io()).context("writing the pid file /p");
        assert_eq!(
            describe(&with_context),
            "writing the pid file /p: No such file or directory"
        );
    }

    #[test]
    fn version_has_runcs_three_lines() {
        let text = version();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("berth-runc version "));
        assert!(lines[1].starts_with("commit: "));
        assert_eq!(lines[2], "spec: 1.0.2-dev");
    }
}
