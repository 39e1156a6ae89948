//! A process's stdio: the fifos containerd names, or a pty.
//!
//! containerd (really its client, `ctr`) makes one fifo per stream and opens its own
//! ends before Create. Without a terminal the shim opens the other ends and hands
//! them to the runtime as its stdin, stdout and stderr, which the process inherits:
//! bytes go from the process to `ctr` with no copy in between.
//!
//! The shim also keeps a *reader* of its own on stdout and stderr, so that the
//! process never notices containerd or `ctr` coming and going (a fifo whose readers
//! are all gone makes the writer fail with `EPIPE`). It keeps no writer on stdin: the
//! process's input ends when `ctr`'s writer goes (a fifo whose writers are all gone
//! reads as end-of-file), as with containerd's own shim. It cannot wait for CloseIO
//! instead: `ctr` 1.6 sends CloseIO only if its own input ends after the task was
//! created, and piped input (`printf 'a\nb\n' | ctr run ... cat`) has usually ended
//! before; `cat` would wait for more forever.
//!
//! With `terminal`, the runtime makes a pty inside the container and sends its master
//! end over a unix socket (`--console-socket`); two threads then copy between the
//! master and the fifos, and ResizePty sets the master's window size.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::runtime::RuntimeStdio;

/// How long the runtime may take to send the pty master once it has returned.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The stdio containerd asked for, as paths (empty: none) and whether it is a tty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("cannot open {stream} {path}: {source}")]
    Open {
        stream: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("stdio URI {0:?} is not supported by berth-shim: give a fifo or a file:// path")]
    Scheme(String),
    #[error("cannot listen for the pty on {0}: {1}")]
    Console(PathBuf, io::Error),
    #[error("the runtime sent no pty master on {0} within {CONSOLE_TIMEOUT:?}: {1}")]
    NoMaster(PathBuf, String),
    #[error("cannot resize the pty: {0}")]
    Resize(io::Error),
    #[error("cannot duplicate the pty master: {0}")]
    Dup(io::Error),
}

/// The shim's ends of one process's stdio. Dropping it lets go of them all.
#[derive(Default)]
pub struct Io {
    /// With a pty: the writer that keeps the fifo stdin open until CloseIO, so the
    /// copy to the master survives a client going and another attaching.
    stdin_writer: Option<File>,
    /// The readers that keep stdout and stderr from breaking while no one reads.
    _readers: Vec<File>,
    /// The pty master, when the process has a terminal.
    master: Option<File>,
}

impl Io {
    /// CloseIO: no more input. With a pty, the copy to the master ends once `ctr`'s
    /// writer is gone too; without, the shim holds no writer, and the process's stdin
    /// ends when `ctr`'s does.
    pub fn close_stdin(&mut self) {
        self.stdin_writer = None;
    }

    /// ResizePty: the window size the pty reports to the process.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), StdioError> {
        let Some(master) = &self.master else {
            return Ok(()); // no terminal: nothing to resize, as runc's shim does
        };
        let size = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
            return Err(StdioError::Resize(io::Error::last_os_error()));
        }
        Ok(())
    }
}

// ANCHOR: fifos
/// Opens the fifos for a process without a terminal: the shim's keep-alive readers go
/// in the [`Io`], the process's ends to the runtime.
pub fn open_fifos(paths: &StdioPaths) -> Result<(Io, RuntimeStdio), StdioError> {
    let mut io = Io::default();
    let mut stdio = RuntimeStdio::null();
    if !paths.stdin.is_empty() {
        let path = fifo_path(&paths.stdin)?;
        // Read-write never blocks on a fifo: held for a moment, it lets the process's
        // read-only end open at once. Then it goes, so that the process's stdin ends
        // with `ctr`'s writer, which `ctr` opened (or is waiting to open, which counts
        // too) before it asked for the task.
        let opener = open("stdin", path, OpenOptions::new().read(true).write(true))?;
        stdio.stdin = open("stdin", path, OpenOptions::new().read(true))?.into();
        drop(opener);
    }
    for (stream, name, slot) in [
        ("stdout", &paths.stdout, &mut stdio.stdout),
        ("stderr", &paths.stderr, &mut stdio.stderr),
    ] {
        if name.is_empty() {
            continue;
        }
        if let Some(file) = name.strip_prefix("file://") {
            let log = open(stream, file, OpenOptions::new().create(true).append(true))?;
            *slot = log.into();
            continue;
        }
        let path = fifo_path(name)?;
        // The reader first (non-blocking, so it opens with no writer), then the writer,
        // which would block until some reader exists.
        let reader = open(
            stream,
            path,
            OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK),
        )?;
        *slot = open(stream, path, OpenOptions::new().write(true))?.into();
        io._readers.push(reader);
    }
    Ok((io, stdio))
}
// ANCHOR_END: fifos

fn fifo_path(name: &str) -> Result<&str, StdioError> {
    match name.split_once("://") {
        None => Ok(name),
        Some(("fifo", path)) => Ok(path),
        Some(_) => Err(StdioError::Scheme(name.to_owned())),
    }
}

fn open(stream: &'static str, path: &str, options: &OpenOptions) -> Result<File, StdioError> {
    options.open(path).map_err(|source| StdioError::Open {
        stream,
        path: path.to_owned(),
        source,
    })
}

/// The socket the runtime sends a pty master to (`--console-socket`).
pub struct Console {
    listener: UnixListener,
    pub path: PathBuf,
}

impl Console {
    pub fn bind(path: &Path) -> Result<Console, StdioError> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).map_err(|e| StdioError::Console(path.to_owned(), e))?;
        Ok(Console {
            listener,
            path: path.to_owned(),
        })
    }

    // ANCHOR: receive_master
    /// The master the runtime sent. It connected and sent it during `create` (or
    /// `exec`), which has returned by now: the connection waits in the listen queue.
    pub fn receive_master(&self) -> Result<File, StdioError> {
        let fail = |e: String| StdioError::NoMaster(self.path.clone(), e);
        let mut poll = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, CONSOLE_TIMEOUT.as_millis() as i32) };
        if ready != 1 {
            return Err(fail("the runtime never connected".into()));
        }
        let (stream, _) = self.listener.accept().map_err(|e| fail(e.to_string()))?;
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| fail(e.to_string()))?;
        for cmsg in msg.cmsgs().map_err(|e| fail(e.to_string()))? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just gave us this fd; nothing else owns it.
                    return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        Err(fail("the message carried no file descriptor".into()))
    }
    // ANCHOR_END: receive_master
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connects a pty master to the fifos: one thread copies the fifo stdin to the master,
/// one the master to the fifo stdout. Each ends by itself: output when the process
/// and everything it started have closed the pty (the master then reads `EIO`), input
/// when `ctr` and the shim's keep-alive writer (dropped at CloseIO) have both gone.
pub fn attach_pty(master: File, paths: &StdioPaths) -> Result<Io, StdioError> {
    let mut io = Io::default();
    if !paths.stdout.is_empty() {
        let path = fifo_path(&paths.stdout)?;
        let reader = open(
            "stdout",
            path,
            OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK),
        )?;
        let writer = open("stdout", path, OpenOptions::new().write(true))?;
        io._readers.push(reader);
        let from = master.try_clone().map_err(StdioError::Dup)?;
        copy_in_thread("pty-out", from, writer);
    }
    if !paths.stdin.is_empty() {
        let path = fifo_path(&paths.stdin)?;
        io.stdin_writer = Some(open(
            "stdin",
            path,
            OpenOptions::new().read(true).write(true),
        )?);
        let reader = open("stdin", path, OpenOptions::new().read(true))?;
        let to = master.try_clone().map_err(StdioError::Dup)?;
        copy_in_thread("pty-in", reader, to);
    }
    io.master = Some(master);
    Ok(io)
}

/// Copies until either side ends. A small buffer: this is keyboard and terminal
/// traffic, and every byte of buffer is paid for in every shim.
fn copy_in_thread(name: &str, mut from: File, mut to: File) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // EIO: the pty's last slave end is closed; the process is gone.
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the {name} copy thread: {e}");
    }
}

/// The runtime's stdio for a process with a terminal: nothing (the pty replaces it).
pub fn for_terminal() -> RuntimeStdio {
    RuntimeStdio {
        stdin: Stdio::null(),
        stdout: Stdio::null(),
        stderr: Stdio::null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }

    #[test]
    fn stdout_survives_its_reader_going_away() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        mkfifo(&out);
        let paths = StdioPaths {
            stdout: out.to_str().unwrap().into(),
            ..StdioPaths::default()
        };
        // No reader at all, as after `ctr` has gone: opening still works.
        let (io, stdio) = open_fifos(&paths).unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo hello"])
            .stdout(stdio.stdout)
            .spawn()
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "no EPIPE while the shim reads"
        );
        drop(io);
    }

    #[test]
    fn stdin_ends_when_the_clients_writer_goes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in");
        mkfifo(&fifo);
        let paths = StdioPaths {
            stdin: fifo.to_str().unwrap().into(),
            ..StdioPaths::default()
        };
        // The client's writer exists before the task, as `ctr`'s does. (Read-write, so
        // that it opens with no reader yet; it is the only writer either way.)
        let mut client = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let (io, stdio) = open_fifos(&paths).unwrap();
        let copy = dir.path().join("copy");
        let mut cat = std::process::Command::new("sh")
            .args(["-c", &format!("cat > {}", copy.display())])
            .stdin(stdio.stdin)
            .spawn()
            .unwrap();
        client.write_all(b"typed\n").unwrap();
        assert!(
            cat.try_wait().unwrap().is_none(),
            "stdin ended while the client was still there"
        );
        // No CloseIO: the client's end going is the end of input.
        drop(client);
        assert!(cat.wait().unwrap().success());
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), "typed\n");
        drop(io);
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        let paths = StdioPaths {
            stdout: "binary:///usr/bin/logger".into(),
            ..StdioPaths::default()
        };
        let err = open_fifos(&paths).err().unwrap().to_string();
        assert!(err.contains("binary:///usr/bin/logger"), "{err}");
    }
}
