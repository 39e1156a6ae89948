//! `run` in the foreground with `terminal: true` and no `--console-socket`: berth-runc
//! is the console itself, as runc is. It listens on a socket of its own, receives the
//! pty master from init like any caller would, and copies bytes between its own
//! terminal and the container's until the container ends.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use berth_libcontainer::console;
use nix::sys::termios::{self, SetArg, Termios};

/// How long init may take to send the pty master once `create` has returned.
const MASTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to keep copying the container's last output after it has exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The console socket berth-runc listens on for its own container.
pub struct Listening {
    listener: UnixListener,
    pub path: PathBuf,
}

impl Listening {
    pub fn new(root: &std::path::Path, id: &str) -> anyhow::Result<Listening> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let path = root.join(format!(".console-{id}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        Ok(Listening { listener, path })
    }

    /// Receives the master init sent during `create`.
    pub fn master(&self) -> anyhow::Result<OwnedFd> {
        let (master, _) = console::receive_master(&self.listener, MASTER_TIMEOUT)?;
        Ok(master)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Our terminal in raw mode (keys go to the container as typed), restored on drop.
pub struct RawMode(Option<Termios>);

impl RawMode {
    pub fn enter() -> RawMode {
        let stdin = io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None); // not a terminal: nothing to change
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Gives the pty our terminal's size (at start, and on every SIGWINCH).
pub fn copy_size(master: &OwnedFd) {
    if let Ok((rows, cols)) = terminal_size() {
        let _ = console::set_window_size(master, rows, cols);
    }
}

fn terminal_size() -> nix::Result<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass, nothing more.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut size) };
    nix::errno::Errno::result(rc).map(|_| (size.ws_row, size.ws_col))
}

/// Starts copying in both directions. Returns a handle that, once the container
/// has exited, waits (bounded) for its last output to reach our stdout.
pub fn proxy(master: OwnedFd) -> anyhow::Result<Drained> {
    let mut to_container = File::from(master.try_clone()?);
    let mut from_container = File::from(master);
    // Keys: our stdin to the pty. Never joined: it blocks in read until we exit.
    thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut to_container);
    });
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        let mut stdout = io::stdout();
        // EIO once every process holding the pty's other end has gone.
        while let Ok(n @ 1..) = from_container.read(&mut buffer) {
            if stdout
                .write_all(&buffer[..n])
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
        let _ = done.send(());
    });
    Ok(Drained(finished))
}

pub struct Drained(mpsc::Receiver<()>);

impl Drained {
    pub fn wait(self) {
        let _ = self.0.recv_timeout(DRAIN_TIMEOUT);
    }
}
