//! The command line: `libcontainer-era daemon …` runs the daemon, every other verb is a client
//! request. One binary for both, as `docker` was until 1.11 split out `dockerd`.
//!
//! Read next: [`crate::client`] for the requests, [`crate::daemon`] for the answers.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::api::{ContainerInfo, ImageInfo, LoadRequest, RunRequest, State};
use crate::client::{Client, ClientError};
use crate::daemon::{self, DaemonError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
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
    name = "libcontainer-era",
    about = "Chapter 02: a container engine with its own libcontainer"
)]
pub struct Cli {
    /// The daemon's unix socket.
    #[arg(
        long,
        global = true,
        env = "BERTH_CHAPTER_SOCKET",
        default_value = "/run/libcontainer-era.sock"
    )]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Run the daemon in the foreground.
    Daemon {
        /// Where images, containers and their logs live.
        #[arg(long)]
        root: PathBuf,
    },
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

/// Runs one invocation; the result is the process's exit status.
pub fn run(cli: Cli) -> Result<i32, CliError> {
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
