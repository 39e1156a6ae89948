//! The command line: `split-era daemon …` runs the daemon; `supervisor`, `shim` and
//! `runtime` are the other three processes of the engine, which the daemon, the
//! supervisor and the shim start (a student may start them by hand too); every other
//! verb is a client request. One binary for all five roles keeps the chapter in one
//! crate; Docker ships them as `dockerd`, `containerd`, `containerd-shim` and `runc`.
//!
//! Read next: [`crate::client`] for the requests, [`crate::daemon`] for the answers.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::api::{ContainerInfo, ImageInfo, LoadRequest, RunRequest, State};
use crate::client::{Client, ClientError};
use crate::daemon::{self, DaemonError};
use crate::runtime::{self, RuntimeError};
use crate::shim::{self, ShimError};
use crate::supervisor::{self, SupervisorError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot make {path:?} absolute: {source}")]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
}

#[derive(Debug, Parser)]
#[command(
    name = "split-era",
    about = "Chapter 03: a container engine in four processes, whose containers outlive its daemons"
)]
pub struct Cli {
    /// The daemon's unix socket.
    #[arg(
        long,
        global = true,
        env = "BERTH_CHAPTER_SOCKET",
        default_value = "/run/split-era.sock"
    )]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Run the daemon in the foreground (it starts a supervisor if none runs).
    Daemon {
        /// Where images, containers and their logs live.
        #[arg(long)]
        root: PathBuf,
    },
    /// Run the supervisor in the foreground (the daemon starts it).
    Supervisor {
        #[arg(long)]
        root: PathBuf,
    },
    /// Run one container's shim (the supervisor starts it).
    Shim {
        #[arg(long)]
        id: String,
        /// The container's bundle: config.json and rootfs.
        #[arg(long)]
        bundle: PathBuf,
        /// The shim's own directory: its socket and the container's pid file.
        #[arg(long)]
        dir: PathBuf,
    },
    /// The runtime (the shim starts it).
    #[command(subcommand)]
    Runtime(RuntimeVerb),
    /// Load a `docker save` tar (with an OCI layout inside).
    Load { tar: PathBuf },
    /// List images.
    Images,
    /// Run a command in a new container.
    Run {
        /// Print the id and return at once instead of waiting for the exit.
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        name: Option<String>,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// List containers (running ones unless -a).
    Ps {
        #[arg(short, long)]
        all: bool,
    },
    /// Print a container's output.
    Logs { container: String },
    /// Stop a running container.
    Stop { container: String },
    /// Remove a stopped container.
    Rm { container: String },
}

#[derive(Debug, Subcommand)]
pub enum RuntimeVerb {
    /// Create and start a container from a bundle, write its pid, and exit.
    Create {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: PathBuf,
        id: String,
    },
    /// Remove what `create` left on the host (the container's cgroups).
    Delete { id: String },
}

impl Cli {
    /// The name this process's spans carry: one lane per role in a trace viewer.
    pub fn service_name(&self) -> &'static str {
        match self.verb {
            Verb::Daemon { .. } => "split-era-daemon",
            Verb::Supervisor { .. } => "split-era-supervisor",
            Verb::Shim { .. } => "split-era-shim",
            Verb::Runtime(_) => "split-era-runtime",
            _ => "split-era",
        }
    }
}

/// A command that runs this very binary, in another role: `/proc/self/exe`, so a
/// rebuild on disk never mixes two versions of the engine, shown as `split-era` in `ps`.
pub fn this_binary() -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("/proc/self/exe");
    command.arg0("split-era");
    command
}

/// Runs one invocation; the result is the process's exit status. `flush` sends the
/// spans recorded so far, for a shim that lives on after starting its container.
pub fn run(cli: Cli, flush: impl FnOnce()) -> Result<i32, CliError> {
    let client = Client::new(cli.socket.clone());
    let mut out = std::io::stdout().lock();
    let none = None::<&()>;
    match cli.verb {
        Verb::Daemon { root } => {
            daemon::serve(daemon::Config {
                root,
                socket: cli.socket,
            })?;
        }
        Verb::Supervisor { root } => supervisor::serve(&root)?,
        Verb::Shim { id, bundle, dir } => shim::main(shim::Paths { id, bundle, dir }, flush)?,
        Verb::Runtime(RuntimeVerb::Create {
            bundle,
            pid_file,
            id,
        }) => {
            runtime::create(&id, &bundle, &pid_file)?;
        }
        Verb::Runtime(RuntimeVerb::Delete { id }) => runtime::delete(&id),
        Verb::Load { tar } => {
            let tar = std::path::absolute(&tar).map_err(|source| CliError::Path {
                path: tar.clone(),
                source,
            })?;
            let request = LoadRequest {
                tar: tar.to_string_lossy().into_owned(),
            };
            let image: ImageInfo = client.call("POST", "/images/load", Some(&request))?;
            say(&mut out, format!("Loaded image: {}", image.name))?;
        }
        Verb::Images => {
            let images: Vec<ImageInfo> = client.call("GET", "/images", none)?;
            say(&mut out, format!("{:<20} ID", "NAME"))?;
            for image in images {
                say(&mut out, format!("{:<20} {}", image.name, image.id))?;
            }
        }
        Verb::Run {
            detach,
            name,
            image,
            cmd,
        } => {
            let request = RunRequest { image, name, cmd };
            let info: ContainerInfo = client.call("POST", "/containers", Some(&request))?;
            if detach {
                say(&mut out, info.id)?;
                return Ok(0);
            }
            // Attached, the simple way: wait for the exit, then print the whole log.
            // A real engine streams output as it comes (Docker's attach); this
            // chapter doesn't, to keep the protocol one request, one answer.
            let path = format!("/containers/{}", info.id);
            let done: ContainerInfo = client.call("POST", &format!("{path}/wait"), none)?;
            let log = client.raw("GET", &format!("{path}/logs"), Vec::new())?;
            out.write_all(&log).map_err(CliError::Stdout)?;
            return Ok(done.exit_code.unwrap_or(1));
        }
        Verb::Ps { all } => {
            let path = if all {
                "/containers?all=1"
            } else {
                "/containers"
            };
            let list: Vec<ContainerInfo> = client.call("GET", path, none)?;
            say(
                &mut out,
                format!(
                    "{:<14} {:<16} {:<10} {:<14} COMMAND",
                    "ID", "NAME", "IMAGE", "STATUS"
                ),
            )?;
            for c in list {
                let status = match (c.state, c.exit_code) {
                    (State::Running, _) => "Up".to_string(),
                    (State::Exited, Some(code)) => format!("Exited ({code})"),
                    (State::Exited, None) => "Exited (?)".to_string(),
                };
                let id = &c.id[..12.min(c.id.len())];
                let line = format!(
                    "{id:<14} {:<16} {:<10} {status:<14} {}",
                    c.name,
                    c.image,
                    c.cmd.join(" ")
                );
                say(&mut out, line)?;
            }
        }
        Verb::Logs { container } => {
            let log = client.raw("GET", &format!("/containers/{container}/logs"), Vec::new())?;
            out.write_all(&log).map_err(CliError::Stdout)?;
        }
        Verb::Stop { container } => {
            let _: ContainerInfo =
                client.call("POST", &format!("/containers/{container}/stop"), none)?;
            say(&mut out, container)?;
        }
        Verb::Rm { container } => {
            let _: ContainerInfo =
                client.call("DELETE", &format!("/containers/{container}"), none)?;
            say(&mut out, container)?;
        }
    }
    Ok(0)
}

fn say(out: &mut impl Write, line: String) -> Result<(), CliError> {
    writeln!(out, "{line}").map_err(CliError::Stdout)
}
