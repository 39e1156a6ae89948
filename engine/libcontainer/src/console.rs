//! The container's terminal, handed over through `--console-socket`.
//!
//! With `process.terminal: true`, init opens a new pseudo-terminal *inside* the
//! container, makes its slave end init's controlling terminal and stdio, and sends the
//! master end to whoever listens on the unix socket named by `--console-socket` (a shim,
//! for `docker run -t`). That listener then owns the container's terminal.
//!
//! ```text
//! shim (listener)            berth-runc create              init (in the container)
//!   bind, listen ──--console-socket=PATH──▶ connect(PATH) ──fd kept across exec──▶
//!                                                            pivot_root, then open_pty()
//!   receive_master() ◀──── "/dev/ptmx" + SCM_RIGHTS[master] ── send_master()
//!                                                            make_controlling_terminal(slave)
//! ```
//!
//! The pty must come from the container's own `/dev/ptmx` (its devpts instance, after
//! pivot_root), or `/dev/pts/N` would name nothing inside the container. But the
//! socket's path is a *host* path, invisible after pivot_root: so **connect first**
//! ([`connect`], before pivot_root or, as runc does, in the runtime before it starts
//! init) and **send later** ([`send_master`] takes the connected stream). Read next: the
//! shim, which copies between the received master and the client's stream.

use std::fs::OpenOptions;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, getpid, getsid, setsid};

/// What runc writes as the message's regular data: the name of the file it sends,
/// which is the master it opened, `/dev/ptmx`. Receivers (containerd's go-runc) only
/// use it to label the file; berth sends the same bytes so either side can be swapped.
pub const MASTER_NAME: &str = "/dev/ptmx";

/// The longest name we accept in a console message (runc's own limit).
const MAX_NAME: usize = 4096;

/// How long a send may block: a console message is a few bytes, so only a peer that
/// stopped reading can make it wait.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "cannot open a new pseudo-terminal: {0}; inside a container, devpts must be mounted on \
         /dev/pts and /dev/ptmx must lead to /dev/pts/ptmx"
    )]
    OpenMaster(Errno),
    #[error("cannot open the pseudo-terminal's slave {name}: {source}")]
    OpenSlave { name: String, source: io::Error },
    #[error("cannot connect to the console socket {path}: {source}; is the caller of --console-socket listening there?")]
    Connect { path: PathBuf, source: io::Error },
    #[error("cannot {what}: {source}")]
    Sys { what: &'static str, source: Errno },
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("no {what} within {timeout:?}; did the runtime fail before sending its terminal?")]
    TimedOut {
        what: &'static str,
        timeout: Duration,
    },
    #[error("the console socket's message {problem}; expected one pty master fd (SCM_RIGHTS) named by the data")]
    BadMessage { problem: String },
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> ConsoleError {
    move |source| ConsoleError::Sys { what, source }
}

/// Opens a new pseudo-terminal: `(master, slave, slave's name)`, e.g. `/dev/pts/0`.
///
/// Both ends are close-on-exec and opened `O_NOCTTY`, so neither becomes anybody's
/// controlling terminal by accident; [`make_controlling_terminal`] does it on purpose.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, String), ConsoleError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(ConsoleError::OpenMaster)?;
    // grantpt is a no-op on Linux's devpts, kept because POSIX asks for it; unlockpt
    // is what allows the slave to be opened at all.
    grantpt(&master).map_err(sys("grantpt the new pseudo-terminal"))?;
    unlockpt(&master).map_err(sys("unlockpt the new pseudo-terminal"))?;
    let name = ptsname_r(&master).map_err(sys("find the new pseudo-terminal's slave name"))?;
    // A real engine could open the slave with TIOCGPTPEER (Linux 4.13), straight from
    // the master and immune to whatever is mounted at /dev/pts; berth opens it by name,
    // as runc does, because inside the container that name is ours and it is the
    // classic way every tutorial shows. std opens with O_CLOEXEC; we add O_NOCTTY.
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)
        .map_err(|source| ConsoleError::OpenSlave {
            name: name.clone(),
            source,
        })?;
    Ok((master.into(), slave.into(), name))
}

/// Connects to the console socket. Do it while `path` is still visible: before
/// pivot_root, or in the runtime before it starts init.
pub fn connect(path: &Path) -> Result<UnixStream, ConsoleError> {
    UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
        path: path.to_owned(),
        source,
    })
}

// ANCHOR: send_master
/// Sends the pty `master` over the connected console socket, as runc does: the data
/// is [`MASTER_NAME`], the fd travels as `SCM_RIGHTS` ancillary data (the kernel
/// installs a duplicate of it in the receiving process).
pub fn send_master(socket: &UnixStream, master: impl AsFd) -> Result<(), ConsoleError> {
    socket
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(|source| ConsoleError::Io {
            what: "set a send timeout on the console socket",
            source,
        })?;
    let fds = [master.as_fd().as_raw_fd()];
    let data = [IoSlice::new(MASTER_NAME.as_bytes())];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &data,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(sys("send the pty master over the console socket"))?;
    Ok(())
}
// ANCHOR_END: send_master

/// Accepts one connection on `listener` and receives the pty master sent over it:
/// `(master, name)`. Gives up after `timeout`, so a runtime that died before sending
/// cannot hang its caller.
pub fn receive_master(
    listener: &UnixListener,
    timeout: Duration,
) -> Result<(OwnedFd, String), ConsoleError> {
    let deadline = Instant::now() + timeout;
    if !wait_readable(listener.as_fd(), deadline)? {
        return Err(ConsoleError::TimedOut {
            what: "connection on the console socket",
            timeout,
        });
    }
    let (stream, _) = listener.accept().map_err(|source| ConsoleError::Io {
        what: "accept on the console socket",
        source,
    })?;
    if !wait_readable(stream.as_fd(), deadline)? {
        return Err(ConsoleError::TimedOut {
            what: "pty master on the console socket",
            timeout,
        });
    }
    receive_fd(&stream)
}

/// Reads one message and takes ownership of the fds it carries.
fn receive_fd(stream: &UnixStream) -> Result<(OwnedFd, String), ConsoleError> {
    let mut name = vec![0u8; MAX_NAME];
    // Room for a few fds, so that a peer sending too many is caught, not truncated.
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut name)];
    // MSG_CMSG_CLOEXEC: the received fd must not leak into programs we start.
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("receive from the console socket"))?;
    let (bytes, truncated) = (message.bytes, message.flags.contains(MsgFlags::MSG_CTRUNC));
    let mut fds = Vec::new();
    for cmsg in message
        .cmsgs()
        .map_err(sys("read the console message's ancillary data"))?
    {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these fds in our table for us.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let bad = |problem: String| Err(ConsoleError::BadMessage { problem });
    match (truncated, fds.len()) {
        (true, _) => bad("carried more ancillary data than fits".into()),
        (false, 1) => Ok((
            fds.remove(0),
            String::from_utf8_lossy(&name[..bytes]).into_owned(),
        )),
        (false, n) => bad(format!("carried {n} fds")),
    }
}

/// Waits until `fd` can be read without blocking; `false` if `deadline` passed first.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, deadline: Instant) -> Result<bool, ConsoleError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], timeout) {
            Ok(ready) => return Ok(ready > 0),
            Err(Errno::EINTR) => continue,
            Err(source) => {
                return Err(ConsoleError::Sys {
                    what: "poll the console socket",
                    source,
                })
            }
        }
    }
}

// ANCHOR: controlling_terminal
/// Makes `slave` this process's controlling terminal and its stdin, stdout and stderr.
///
/// A terminal can only become the controlling terminal of a session leader that has
/// none, so we start a new session unless we lead one already. Only system calls
/// here, nothing allocated: this may run between `fork` and `exec`.
pub fn make_controlling_terminal(slave: OwnedFd) -> Result<(), ConsoleError> {
    if getsid(None).map_err(sys("read our session id"))? != getpid() {
        setsid().map_err(sys("start a new session (setsid)"))?;
    }
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal it from another session).
    unsafe { tiocsctty(slave.as_raw_fd(), 0) }.map_err(sys(
        "make the pty slave our controlling terminal (TIOCSCTTY)",
    ))?;
    let slave = above_stdio(slave)?;
    dup2_stdin(&slave).map_err(sys("make the pty slave our stdin"))?;
    dup2_stdout(&slave).map_err(sys("make the pty slave our stdout"))?;
    dup2_stderr(&slave).map_err(sys("make the pty slave our stderr"))?;
    Ok(())
}
// ANCHOR_END: controlling_terminal

/// `fd` itself if it is not 0, 1 or 2; else a copy above them. dup2 onto its own number
/// does nothing, not even clear close-on-exec, so a slave that *is* fd 0 would vanish
/// at exec; and dropping it after the dup2s would close our new stdin.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, ConsoleError> {
    if fd.as_raw_fd() > libc::STDERR_FILENO {
        return Ok(fd);
    }
    let copy = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(libc::STDERR_FILENO + 1))
        .map_err(sys("copy the pty slave above stdio"))?;
    // The original number is about to be replaced by a dup2; it must not be closed.
    let _ = fd.into_raw_fd();
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Sets the terminal's size (`TIOCSWINSZ`), on the master or the slave: for the
/// spec's `process.consoleSize` and for `berth-runc resize`. The foreground program
/// gets `SIGWINCH`.
pub fn set_window_size(terminal: impl AsFd, rows: u16, cols: u16) -> Result<(), ConsoleError> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid.
    unsafe { tiocswinsz(terminal.as_fd().as_raw_fd(), &size) }
        .map_err(sys("set the terminal's window size (TIOCSWINSZ)"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    const BOUND: Duration = Duration::from_secs(10);

    /// Reads from `fd` until `needle` has been seen, for at most [`BOUND`].
    fn read_until(fd: &OwnedFd, needle: &str) -> String {
        let deadline = Instant::now() + BOUND;
        let mut file = File::from(fd.try_clone().unwrap());
        let mut seen = String::new();
        while !seen.contains(needle) {
            assert!(
                wait_readable(fd.as_fd(), deadline).unwrap(),
                "no {needle:?} within {BOUND:?}; got {seen:?}"
            );
            let mut buffer = [0u8; 1024];
            match file.read(&mut buffer) {
                Ok(0) => panic!("end of file before {needle:?}; got {seen:?}"),
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
                // EIO on a master: every slave fd is closed. What we read is all there is.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    panic!("terminal closed before {needle:?}; got {seen:?}")
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        seen
    }

    fn write_all(fd: &OwnedFd, text: &str) {
        File::from(fd.try_clone().unwrap())
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn a_pty_master_sent_over_the_console_socket_works_at_the_other_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let socket = connect(&path).unwrap();
        let (master, slave, slave_name) = open_pty().unwrap();
        assert!(slave_name.starts_with("/dev/pts/"), "{slave_name}");

        send_master(&socket, &master).unwrap();
        // From here on only the received copy of the master is open.
        drop(master);
        let (received, name) = receive_master(&listener, BOUND).unwrap();
        assert_eq!(name, MASTER_NAME);

        write_all(&slave, "from the container\n");
        read_until(&received, "from the container");
        write_all(&received, "from the shim\n");
        read_until(&slave, "from the shim");
    }

    #[test]
    fn receive_master_gives_up_when_nobody_connects_or_sends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let started = Instant::now();
        let error = receive_master(&listener, Duration::from_millis(200)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("no connection on the console socket within 200ms"),
            "{error}"
        );

        let _silent = connect(&path).unwrap();
        let error = receive_master(&listener, Duration::from_millis(200)).unwrap_err();
        assert!(
            matches!(
                error,
                ConsoleError::TimedOut {
                    what: "pty master on the console socket",
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_message_without_an_fd_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut socket = connect(&path).unwrap();
        socket.write_all(b"/dev/ptmx").unwrap();
        let error = receive_master(&listener, BOUND).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the console socket's message carried 0 fds; expected one pty master fd (SCM_RIGHTS) named by the data"
        );
    }

    #[test]
    fn the_slave_becomes_the_childs_controlling_terminal_and_stdio() {
        let (master, slave, slave_name) = open_pty().unwrap();
        set_window_size(&master, 40, 120).unwrap();
        let mut slave = Some(slave);
        let mut command = Command::new("/bin/sh");
        // `tty` names the terminal on stdin; writing to /dev/tty only works for a
        // process that has a controlling terminal; `stty size` reads the window size.
        command
            .args([
                "-c",
                "tty; stty size; echo controlling > /dev/tty; echo done",
            ])
            .stdin(Stdio::null());
        // SAFETY: make_controlling_terminal makes system calls only.
        unsafe {
            command.pre_exec(move || {
                let slave = slave.take().expect("pre_exec runs once per child");
                make_controlling_terminal(slave).map_err(|_| io::Error::last_os_error())
            });
        }
        let mut child = command.spawn().unwrap();
        // Our copy of the slave lives in the command's closure: close it, so the
        // child's copies are the only ones.
        drop(command);

        let output = read_until(&master, "done");
        let lines: Vec<&str> = output.lines().map(str::trim_end).collect();
        assert_eq!(
            lines,
            [slave_name.as_str(), "40 120", "controlling", "done"],
            "{output:?}"
        );

        let deadline = Instant::now() + BOUND;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the shell did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(child.try_wait().unwrap().unwrap().success());
    }

    #[test]
    fn a_slave_on_stdin_survives_becoming_stdio() {
        // The awkward case above_stdio exists for: the slave *is* fd 0 already.
        let (_master, slave, _) = open_pty().unwrap();
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "tty"]);
        let slave_fd = slave.as_raw_fd();
        // SAFETY: system calls only, on fds this child owns.
        unsafe {
            command.pre_exec(move || {
                // Put the slave on fd 0, close-on-exec, as an OwnedFd would hold it.
                if libc::dup3(slave_fd, 0, libc::O_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
                make_controlling_terminal(OwnedFd::from_raw_fd(0))
                    .map_err(|_| io::Error::last_os_error())
            });
        }
        let child = command.spawn().unwrap();
        drop(slave);
        drop(command);
        // stdout is the pty too now, so `tty` writes to the master; what matters is
        // that it ran with a terminal on stdin rather than "not a tty" on a closed fd.
        let status = wait_bounded(child);
        assert!(status.success(), "tty saw no terminal on stdin: {status}");
    }

    fn wait_bounded(mut child: std::process::Child) -> std::process::ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit within {BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
