//! `berth-runc exec`: run another process inside a running container.

use std::path::PathBuf;

use anyhow::Context;
use berth_libcontainer::exec::{self, ExecOptions};
use berth_libcontainer::state::Root;
use oci_spec::runtime::{Process, UserBuilder};

use super::wait;

#[derive(clap::Args)]
pub struct Args {
    /// A JSON file holding the whole process (as in config.json's "process").
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Extra environment variables, KEY=VALUE.
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// uid[:gid]
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
    /// The command and its arguments (unless --process is given).
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<i32> {
    let process = process_for(root, &args)?;
    let signals = if args.detach {
        None
    } else {
        Some(wait::block_signals()?)
    };
    let options = ExecOptions {
        console_socket: args.console_socket.clone(),
        preserve_fds: args.preserve_fds,
    };
    let pid = {
        let _span = tracing::info_span!("exec", id = %args.id).entered();
        exec::exec(root, &args.id, process, &options)?
    };
    if let Some(path) = &args.pid_file {
        super::write_pid_file(path, pid.as_raw())?;
    }
    match signals {
        Some(signals) => wait::wait_forwarding(pid, &signals, || {}),
        None => Ok(0),
    }
}

/// The process to run: from `--process`, or the container's own process with the
/// command line, environment, directory and user replaced as the flags say.
fn process_for(root: &Root, args: &Args) -> anyhow::Result<Process> {
    if let Some(path) = &args.process {
        let text =
            std::fs::read(path).with_context(|| format!("reading --process {}", path.display()))?;
        return serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a valid process JSON", path.display()));
    }
    if args.command.is_empty() {
        anyhow::bail!("exec needs a command (or --process FILE)");
    }
    let state = root.load(&args.id)?;
    let mut process = state.config.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    process.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &args.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |s: &str| {
            s.parse::<u32>()
                .with_context(|| format!("--user {user:?}: use numeric uid[:gid]"))
        };
        process.set_user(
            UserBuilder::default()
                .uid(parse(uid)?)
                .gid(parse(gid)?)
                .build()?,
        );
    }
    Ok(process)
}
