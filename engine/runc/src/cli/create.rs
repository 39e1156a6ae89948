//! `berth-runc create`: build the container; its init waits for `start`.

use std::path::PathBuf;

use berth_libcontainer::container::{self, CreateOptions};
use berth_libcontainer::state::Root;

#[derive(clap::Args)]
#[group(id = "create_args")]
pub struct Args {
    /// The bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// Write init's pid here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Send the pty master here when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Move the rootfs over / and chroot, instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; berth-runc never creates a session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (from 3 on) to the container's process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
}

impl Args {
    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
        }
    }
}

pub fn run(root: &Root, args: Args) -> anyhow::Result<()> {
    let created = {
        let _span = tracing::info_span!("create", id = %args.id).entered();
        let created = container::create(root, &args.options())?;
        crate::spans::record(&created.stages);
        created
    };
    if let Some(path) = &args.pid_file {
        super::write_pid_file(path, created.pid)?;
    }
    Ok(())
}
