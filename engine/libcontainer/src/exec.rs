//! `exec`: one more process in a running container.
//!
//! The new process goes through the same door as init did: a clone (into the
//! container's pid namespace), a re-exec as `berth-runc init`, the same handshake.
//! Only the Bootstrap differs: `exec: true` tells init to enter every namespace of
//! the running container and skip the filesystem, which is already built.

use std::path::PathBuf;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::container::{connect_console, load_in, ContainerError};
use crate::init::InitConfig;
use crate::namespaces;
use crate::process::{self, Inherit};
use crate::state::{Root, Status};
use crate::sync::Message;

/// How to run an extra process in a running container: `berth-runc exec`'s flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
}

// ANCHOR: exec
/// `exec`: starts `process` inside a running container's namespaces and cgroup.
/// Returns the new process's pid; the caller may wait for it (it is our child).
pub fn exec(
    root: &Root,
    id: &str,
    process: Process,
    options: &ExecOptions,
) -> Result<Pid, ContainerError> {
    let (state, _) = load_in(
        root,
        id,
        &[Status::Running],
        "exec needs a running container",
    )?;
    if process.terminal().unwrap_or(false) && options.console_socket.is_none() {
        return Err(ContainerError::TerminalWithoutConsole);
    }
    let joins = namespaces::of_process(state.pid);
    let pid_ns = joins
        .iter()
        .find(|j| j.kind == oci_spec::runtime::LinuxNamespaceType::Pid)
        .map(|j| j.path.clone());
    let console = connect_console(&process, options.console_socket.as_deref())?;
    let mut child = process::spawn_init(
        nix::sched::CloneFlags::empty(),
        pid_ns.as_deref(),
        None,
        Inherit {
            fifo: None,
            console: console.as_ref(),
        },
    )?;
    let cleanup = |pid| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    };
    let result = (|| {
        if let Some(cgroup) = &state.cgroup {
            cgroup.add_process(child.pid)?;
        }
        let mut spec = state.config.clone();
        spec.set_process(Some(process));
        let config = InitConfig {
            id: id.to_owned(),
            bundle: state.bundle.clone(),
            rootfs: state.rootfs.clone(),
            spec,
            exec: true,
            join: joins
                .into_iter()
                .filter(|j| j.kind != oci_spec::runtime::LinuxNamespaceType::Pid)
                .collect(),
            new_cgroup_namespace: false,
            no_pivot: false,
            preserve_fds: options.preserve_fds,
        };
        child.channel.send(&Message::Bootstrap(Box::new(config)))?;
        child.channel.expect("Ready")?;
        Ok::<_, ContainerError>(())
    })();
    match result {
        Ok(()) => Ok(child.pid),
        Err(e) => {
            cleanup(child.pid);
            Err(e)
        }
    }
}
// ANCHOR_END: exec
