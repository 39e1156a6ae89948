//! The long-running shim: what `start` leaves behind, serving until Shutdown.
//!
//! It runs in the bundle directory, in a session of its own, with the listening socket
//! as fd 3. The setup order matters:
//! 1. stderr goes to the bundle's `log` fifo, which containerd reads into its own log;
//! 2. the shim becomes a *subreaper*, so the container's processes are re-parented to
//!    it, not to pid 1, when the runtime that started them exits;
//! 3. `SIGCHLD` is blocked before any thread exists (threads inherit the mask) and
//!    read from a signalfd instead, so exits arrive in the main loop and nowhere else;
//! 4. the ttrpc server starts its threads, and the main thread becomes the main loop:
//!    reap every exited child, route it (see [`crate::reaper`]), and pass on the
//!    container's OOMs (see [`crate::oom`]), until Shutdown. It sleeps in one
//!    `epoll_wait` for all of them ([`crate::poller`]).
//!
//! The shim has no other signal handling: containerd dying, or being SIGKILLed, is
//! nothing the shim needs to notice. Its socket stays; a new containerd reconnects.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::cli::Flags;
use crate::events::Publisher;
use crate::poller::{Poller, Token};
use crate::reaper::{self, Reaper};
use crate::start::{self, LISTENER_FD};
use crate::task::{MainLoop, Shim};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the bundle directory (the working directory): {0}")]
    Bundle(std::io::Error),
    #[error(transparent)]
    Socket(#[from] start::StartError),
    #[error("cannot become a subreaper (PR_SET_CHILD_SUBREAPER): {0}")]
    Subreaper(std::io::Error),
    #[error("cannot set up the signals the main loop waits for: {0}")]
    Signals(Errno),
    #[error("cannot set up the main loop's epoll: {0}")]
    Poll(std::io::Error),
    #[error("cannot serve ttrpc on fd {LISTENER_FD} (was the shim started by `start`?): {0}")]
    Ttrpc(ttrpc::Error),
}

// ANCHOR: serve
pub fn run(flags: &Flags) -> Result<(), ServeError> {
    let bundle = std::env::current_dir().map_err(ServeError::Bundle)?;
    log_to_containerd(&bundle);
    // glibc gives each thread that allocates a malloc arena of its own; one arena is
    // plenty for a shim, and every arena is memory paid in every shim on the host.
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    reaper::become_subreaper().map_err(ServeError::Subreaper)?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(ServeError::Signals)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(ServeError::Signals)?;
    let _trace = berth_trace::init("berth-shim")
        .map_err(|e| tracing::warn!("tracing is off: {e}"))
        .ok();

    let socket = start::socket_path(&flags.address, &flags.namespace, &flags.id)?;
    let (wake_read, wake_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ServeError::Signals)?;
    let poller = Arc::new(Poller::new().map_err(ServeError::Poll)?);
    poller
        .add(signals.as_fd(), Token::Signals)
        .map_err(ServeError::Poll)?;
    poller
        .add(wake_read.as_fd(), Token::Wake)
        .map_err(ServeError::Poll)?;
    let publisher = Publisher::new(std::env::var("TTRPC_ADDRESS").ok(), &flags.namespace);
    let reaper = Arc::new(Reaper::routed());
    let shim = Arc::new(Shim::new(
        flags.id.clone(),
        flags.namespace.clone(),
        bundle,
        socket.clone(),
        reaper.clone(),
        publisher,
        MainLoop {
            poller: poller.clone(),
            exit: Box::new(move || {
                let _ = nix::unistd::write(&wake_write, b"x");
            }),
        },
    ));

    // Two idle threads: one to sleep in Wait, one for everything else; more are
    // started when both are busy.
    let mut server = ttrpc::Server::new()
        .add_listener(LISTENER_FD)
        .map_err(ServeError::Ttrpc)?
        .register_service(crate::protos::create_task(shim.clone()))
        .set_thread_count_default(2)
        .set_thread_count_min(1)
        .set_thread_count_max(3);
    server.start().map_err(ServeError::Ttrpc)?;

    main_loop(&poller, &signals, &reaper, &shim);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: main_loop
/// Waits for exits, OOMs and Shutdown. Each SIGCHLD may stand for several exits
/// (signals do not queue), so every wake-up by the signalfd reaps until no exited
/// child is left. An OOM is passed on before the exits it woke with: containerd hears
/// `/tasks/oom` before the `/tasks/exit` of the process the OOM killer took.
fn main_loop(poller: &Poller, signals: &SignalFd, reaper: &Reaper, shim: &Shim) {
    loop {
        let ready = poller.wait();
        if ready.contains(&Token::Oom) {
            shim.memory_event();
        }
        if ready.contains(&Token::Signals) {
            while let Ok(Some(_)) = signals.read_signal() {}
            reap(reaper, shim);
        }
        if ready.contains(&Token::Wake) {
            return;
        }
    }
}

fn reap(reaper: &Reaper, shim: &Shim) {
    loop {
        let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, 128 + signal as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        if !reaper.claim(pid.as_raw(), code) {
            shim.process_exited(pid.as_raw() as u32, code as u32);
        }
    }
}
// ANCHOR_END: main_loop

/// Sends stderr (tracing's log lines, a panic) to the `log` fifo containerd made in the
/// bundle and copies into its own log. Non-blocking: a containerd that is not reading
/// (or is dead) costs the shim a lost log line, never a stuck thread.
fn log_to_containerd(bundle: &std::path::Path) {
    let opened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(bundle.join("log"));
    if let Ok(log) = opened {
        // SAFETY: dup2 onto stderr; `log` stays valid for the call.
        unsafe { libc::dup2(log.as_raw_fd(), 2) };
    }
}
