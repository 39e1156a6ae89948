//! The `start` action: containerd's handshake with a new shim.
//!
//! containerd runs `containerd-shim-berth-v2 -namespace NS -address ADDR
//! -publish-binary BIN -id ID start` in the bundle directory and reads its output until
//! stdout *and* stderr are closed. So `start` cannot be the shim itself: it binds the
//! socket, starts the real shim (this same binary, without an action) in a session of
//! its own with the listening socket as fd 3, writes the socket's address to the
//! `address` file in the bundle (where a restarted containerd finds it again), prints
//! the address and exits. The shim it leaves behind holds none of containerd's pipes,
//! and belongs to no process group containerd could signal.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::cli::Flags;

/// The fd the listening socket has in the long-running shim.
pub const LISTENER_FD: i32 = 3;
/// The file in the bundle that names the shim's socket.
pub const ADDRESS_FILE: &str = "address";
/// The file in the bundle that holds the shim's pid.
pub const PID_FILE: &str = "shim.pid";
/// The longest path a unix socket address can hold (`sun_path`, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the bundle directory (the working directory): {0}")]
    Bundle(std::io::Error),
    #[error("the shim socket path {0} is {1} bytes, longer than a unix socket allows ({MAX_SOCKET_PATH}); give containerd a shorter -address")]
    SocketPathTooLong(PathBuf, usize),
    #[error("a shim is already listening on {0}: is container {1:?} already running?")]
    AlreadyServing(PathBuf, String),
    #[error("cannot listen on {0}: {1}")]
    Listen(PathBuf, std::io::Error),
    #[error("cannot find this program's own path to start the shim: {0}")]
    OwnPath(std::io::Error),
    #[error("cannot start the long-running shim {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

// ANCHOR: socket_path
/// Where the shim for container `id` in `namespace` listens: `s/<sha256>` beside
/// containerd's own socket, as containerd-shim-runc-v2 does (`/run/containerd/s/...`
/// for a default containerd). The hash keeps the path short whatever the id, and a
/// containerd with its own directory gets shims of its own.
pub fn socket_path(address: &str, namespace: &str, id: &str) -> Result<PathBuf, StartError> {
    let address = address.strip_prefix("unix://").unwrap_or(address);
    let dir = Path::new(address).parent().unwrap_or(Path::new("/"));
    let hash = Sha256::digest(format!("{address}/{namespace}/{id}").as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("s").join(hex);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(StartError::SocketPathTooLong(path, len));
    }
    Ok(path)
}
// ANCHOR_END: socket_path

// ANCHOR: start
/// Runs the handshake; on success the address is on stdout and the shim is serving.
pub fn run(flags: &Flags) -> Result<(), StartError> {
    let bundle = std::env::current_dir().map_err(StartError::Bundle)?;
    // The runtime options come on stdin as a protobuf `Any`. The same options reach
    // Create again, so they are only drained here: containerd's writer must not fail.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());

    let socket = socket_path(&flags.address, &flags.namespace, &flags.id)?;
    let listener = listen(&socket, &flags.id)?;

    let exe = std::env::current_exe().map_err(StartError::OwnPath)?;
    let mut shim = Command::new(&exe);
    shim.args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args([
            "-address",
            &flags.address,
            "-publish-binary",
            &flags.publish_binary,
        ])
        .args(flags.debug.then_some("-debug"))
        // None of containerd's pipes: it waits for them to close before reading ours.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, dup2, fcntl.
    unsafe {
        shim.pre_exec(move || {
            // A session of its own: no signal containerd's process group gets (a ^C in
            // a terminal that started containerd, say) reaches the shim.
            nix::unistd::setsid()?;
            if fd == LISTENER_FD {
                // dup2 onto itself would keep close-on-exec set.
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTENER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = shim
        .spawn()
        .map_err(|e| StartError::Spawn(exe.clone(), e))?;
    // The shim is not waited for: it outlives this process (and containerd) by design.

    write_atomically(&bundle.join(PID_FILE), child.id().to_string().as_bytes())?;
    let address = format!("unix://{}", socket.display());
    write_atomically(&bundle.join(ADDRESS_FILE), address.as_bytes())?;
    print!("{address}");
    let _ = std::io::stdout().flush();
    Ok(())
}
// ANCHOR_END: start

/// Binds the socket, removing a stale one a dead shim left; refuses a live one.
fn listen(socket: &Path, id: &str) -> Result<UnixListener, StartError> {
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).map_err(|e| StartError::Listen(socket.to_owned(), e))?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(StartError::AlreadyServing(socket.to_owned(), id.to_owned()));
        }
        let _ = fs::remove_file(socket);
    }
    UnixListener::bind(socket).map_err(|e| StartError::Listen(socket.to_owned(), e))
}

/// Writes a file so that a reader sees the old content or the new, never half of it.
pub fn write_atomically(path: &Path, content: &[u8]) -> Result<(), StartError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| StartError::Write(path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_sits_beside_containerds_and_is_short() {
        let path = socket_path("/run/containerd/containerd.sock", "default", "web").unwrap();
        assert!(path.starts_with("/run/containerd/s/"), "{path:?}");
        assert_eq!(path.file_name().unwrap().len(), 64);
        let long_id = "x".repeat(500);
        let again = socket_path(
            "unix:///run/containerd/containerd.sock",
            "default",
            &long_id,
        );
        assert_eq!(again.unwrap().as_os_str().len(), path.as_os_str().len());
    }

    #[test]
    fn each_namespace_and_id_gets_its_own_socket() {
        let a = socket_path("/r/c.sock", "ns1", "web").unwrap();
        let b = socket_path("/r/c.sock", "ns2", "web").unwrap();
        let c = socket_path("/r/c.sock", "ns1", "db").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_socket_path_too_long_is_refused() {
        let dir = format!("/{}/c.sock", "d".repeat(60));
        assert!(matches!(
            socket_path(&dir, "ns", "id"),
            Err(StartError::SocketPathTooLong(..))
        ));
    }
}
