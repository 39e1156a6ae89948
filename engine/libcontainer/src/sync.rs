//! The handshake between the runtime and the container's init process.
//!
//! `berth-runc create` clones a child into new namespaces and the child re-executes
//! itself as `berth-runc init`. From then on the two talk over one socket pair, and
//! every word they exchange is one [`Message`], one JSON object per line. Reading
//! this enum top to bottom is reading the whole conversation:
//!
//! ```text
//! runtime (parent)                         init (child, in the new namespaces)
//!   │── Bootstrap {spec, rootfs, …} ──────────▶│  join namespaces, mount, devices
//!   │◀───────────────────────── RunHooks ──────│  (before pivot_root)
//!   │  createRuntime + prestart hooks           │
//!   │── HooksDone ─────────────────────────────▶│  createContainer hooks, pivot_root,
//!   │                                           │  user, capabilities, seccomp
//!   │◀──────────────────── Ready {stages} ──────│  then blocks on the exec fifo
//!   │  write state, exit                        │  … until `start` opens the fifo
//!                                      then, over the fifo, to `start`:
//!                                               │  startContainer hooks
//!                                  ◀── Released {stages, exec_us}, then exec (EOF)
//! ```
//!
//! Any step can instead answer [`Message::Failed`], and the runtime reports that
//! error as its own.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::init::InitConfig;

// ANCHOR: message
/// Everything the runtime and init ever say to each other.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// Runtime → init: what to build. Sent once the runtime has put the child in its
    /// cgroup and written its uid/gid maps, so init may start at once.
    Bootstrap(Box<InitConfig>),
    /// Init → runtime: namespaces and mounts are ready and the root is not yet
    /// pivoted; run the `createRuntime` and `prestart` hooks now.
    RunHooks,
    /// Runtime → init: the hooks have run; carry on.
    HooksDone,
    /// Init → runtime: all set up, about to wait for `start`. `stages` are the
    /// moments init passed each step, for the runtime to record as spans.
    Ready { stages: Vec<Stage> },
    /// Either way: this step failed, and nothing more will be sent.
    Failed { error: String },
}
// ANCHOR_END: message

/// Init → `start`, over the exec fifo (the handshake channel closed with `create`):
/// the steps between `start` and `exec`, written just before `execve`. The fifo's
/// write end closes on exec, so the end of file that follows tells `start` when the
/// exec happened.
#[derive(Debug, Serialize, Deserialize)]
pub struct Released {
    pub stages: Vec<Stage>,
    /// When init called `execve`, microseconds since the Unix epoch.
    pub exec_us: u64,
}

/// One timed step of init's setup. Init cannot export spans itself (it is about to
/// `exec` a program that knows nothing of tracing), so it measures and reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stage {
    pub name: String,
    /// Microseconds since the Unix epoch.
    pub start_us: u64,
    pub end_us: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the handshake with the container's init broke: {0}")]
    Io(#[from] io::Error),
    #[error("the container's init closed the handshake without a word; it probably died (see the runtime's log)")]
    Closed,
    #[error("unreadable handshake message {line:?}: {source}")]
    Malformed {
        line: String,
        source: serde_json::Error,
    },
    #[error("the container's init failed: {0}")]
    InitFailed(String),
    #[error("unexpected handshake message: wanted {wanted}, got {got}")]
    Unexpected { wanted: &'static str, got: String },
}

/// One end of the handshake.
pub struct Channel {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Channel {
    pub fn new(stream: UnixStream) -> io::Result<Channel> {
        Ok(Channel {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn send(&mut self, message: &Message) -> Result<(), SyncError> {
        let mut line = serde_json::to_vec(message).expect("messages always serialize");
        line.push(b'\n');
        self.writer.write_all(&line)?;
        Ok(())
    }

    pub fn receive(&mut self) -> Result<Message, SyncError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(SyncError::Closed);
        }
        serde_json::from_str(&line).map_err(|source| SyncError::Malformed { line, source })
    }

    /// Receives a message, turning `Failed` into an error.
    pub fn expect(&mut self, wanted: &'static str) -> Result<Message, SyncError> {
        match self.receive()? {
            Message::Failed { error } => Err(SyncError::InitFailed(error)),
            message => Ok(message),
        }
        .and_then(|message| {
            let got = name(&message);
            if got == wanted {
                Ok(message)
            } else {
                Err(SyncError::Unexpected {
                    wanted,
                    got: got.to_owned(),
                })
            }
        })
    }
}

fn name(message: &Message) -> &'static str {
    match message {
        Message::Bootstrap(_) => "Bootstrap",
        Message::RunHooks => "RunHooks",
        Message::HooksDone => "HooksDone",
        Message::Ready { .. } => "Ready",
        Message::Failed { .. } => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_a_socket_pair_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut parent, mut child) = (Channel::new(a).unwrap(), Channel::new(b).unwrap());
        child.send(&Message::RunHooks).unwrap();
        let stage = Stage {
            name: "pivot_root".into(),
            start_us: 1,
            end_us: 2,
        };
        child
            .send(&Message::Ready {
                stages: vec![stage.clone()],
            })
            .unwrap();
        assert!(matches!(
            parent.expect("RunHooks").unwrap(),
            Message::RunHooks
        ));
        match parent.expect("Ready").unwrap() {
            Message::Ready { stages } => assert_eq!(stages, [stage]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failure_and_silence_are_errors() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut parent, mut child) = (Channel::new(a).unwrap(), Channel::new(b).unwrap());
        child
            .send(&Message::Failed {
                error: "mount /proc: EPERM".into(),
            })
            .unwrap();
        child.send(&Message::HooksDone).unwrap();
        drop(child);
        let err = parent.expect("Ready").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the container's init failed: mount /proc: EPERM"
        );
        assert!(matches!(
            parent.expect("Ready"),
            Err(SyncError::Unexpected { .. })
        ));
        assert!(matches!(parent.expect("Ready"), Err(SyncError::Closed)));
    }
}
