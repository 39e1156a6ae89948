//! The protocol between the engine's own processes: daemon → supervisor → shim.
//!
//! One connection carries one request and one answer, each a single line of JSON. The
//! supervisor and every shim speak the same [`Request`]s: the supervisor answers
//! [`Request::Create`] itself and passes every other request on to the container's
//! shim, which is the only process that really knows the container.
//!
//! | request | supervisor | shim |
//! | --- | --- | --- |
//! | `create` | starts a shim, which runs the runtime | (refused) |
//! | `state` | asks the shim | pid, running or exited, exit code |
//! | `wait` | asks the shim | answers once the container has exited (or at the timeout) |
//! | `kill` | asks the shim | signals the container's first process |
//! | `delete` | asks the shim, then forgets the task | cleans up with the runtime, then exits |
//!
//! A real engine uses gRPC between daemon and supervisor and ttrpc between supervisor
//! and shim (see `engine/`); the shape of the conversation is the same.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot reach {socket:?}: {source}")]
    Connect { socket: PathBuf, source: io::Error },
    #[error("talking to {socket:?}: {source}")]
    Io { socket: PathBuf, source: io::Error },
    #[error("{socket:?} answered something this build does not understand: {source}")]
    Decode {
        socket: PathBuf,
        source: serde_json::Error,
    },
    /// The other side understood the request and refused it; its message is the error.
    #[error("{0}")]
    Refused(String),
}

// ANCHOR: request
/// What the daemon asks of the supervisor, and the supervisor of a shim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start container `id` from the bundle `ROOT/containers/<id>`.
    Create {
        id: String,
        bundle: PathBuf,
    },
    State {
        id: String,
    },
    /// Answer once the container has exited, or after `timeout_ms` with its state then.
    Wait {
        id: String,
        timeout_ms: Option<u64>,
    },
    Kill {
        id: String,
        signal: i32,
    },
    /// Forget an exited container: the shim cleans up and exits.
    Delete {
        id: String,
    },
}

/// A container as its shim sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    /// The container's first process, in the host's PID namespace.
    pub pid: i32,
    /// `None` while it runs.
    pub exit_code: Option<i32>,
    /// How it ended when the code alone does not say ("killed by signal 9").
    pub note: Option<String>,
}
// ANCHOR_END: request

impl Request {
    pub fn id(&self) -> &str {
        match self {
            Request::Create { id, .. }
            | Request::State { id }
            | Request::Wait { id, .. }
            | Request::Kill { id, .. }
            | Request::Delete { id } => id,
        }
    }

    /// The span name the serving side records the request under.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Create { .. } => "create",
            Request::State { .. } => "state",
            Request::Wait { .. } => "wait",
            Request::Kill { .. } => "kill",
            Request::Delete { .. } => "delete",
        }
    }
}

/// What travels on the wire: the request and the caller's trace context.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    request: Request,
    /// W3C `traceparent` (and `tracestate`), so the callee's span joins the trace.
    context: HashMap<String, String>,
}

/// The answer: exactly one of the two fields.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Ok(Task),
    Error(String),
}

// ANCHOR: call
/// Sends `request` to the process listening on `socket` and waits for its answer.
pub fn call(socket: &Path, request: Request) -> Result<Task, RpcError> {
    let span = tracing::info_span!("call", op = request.op(), id = request.id());
    let _entered = span.enter();
    let mut context = HashMap::new();
    berth_trace::context::inject_current(&mut context);

    let io = |source| RpcError::Io {
        socket: socket.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| RpcError::Connect {
        socket: socket.to_owned(),
        source,
    })?;
    let mut line =
        serde_json::to_vec(&Envelope { request, context }).map_err(|source| RpcError::Decode {
            socket: socket.to_owned(),
            source,
        })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;

    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        // The other side died mid-request: for the caller, the same as not reaching it.
        return Err(RpcError::Connect {
            socket: socket.to_owned(),
            source: io::ErrorKind::UnexpectedEof.into(),
        });
    }
    match serde_json::from_str(&answer) {
        Ok(Answer::Ok(task)) => Ok(task),
        Ok(Answer::Error(message)) => Err(RpcError::Refused(message)),
        Err(source) => Err(RpcError::Decode {
            socket: socket.to_owned(),
            source,
        }),
    }
}
// ANCHOR_END: call

/// What a handler answers, and whether it was the last request this server takes.
#[derive(Debug)]
pub struct Reply {
    pub answer: Result<Task, String>,
    /// After this answer is sent, [`serve`] returns (a shim after `delete`).
    pub last: bool,
}

impl From<Result<Task, String>> for Reply {
    fn from(answer: Result<Task, String>) -> Reply {
        Reply {
            answer,
            last: false,
        }
    }
}

// ANCHOR: serve
/// Answers every connection on `listener` with `handle`, each on its own thread (a
/// `wait` may take as long as the container lives). Returns once a [`Reply`] marked
/// `last` has been sent, so its caller can exit without cutting that answer short.
pub fn serve<H>(listener: UnixListener, handle: H)
where
    H: Fn(Request) -> Reply + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (handle, done) = (handle.clone(), done.clone());
            std::thread::spawn(move || {
                if answer(stream, &*handle) {
                    let _ = done.send(());
                }
            });
        }
    });
    let _ = finished.recv();
}
// ANCHOR_END: serve

/// Answers one connection; true if that was the last request.
fn answer(stream: UnixStream, handle: &dyn Fn(Request) -> Reply) -> bool {
    let mut line = String::new();
    let Ok(reader) = stream.try_clone() else {
        return false;
    };
    if BufReader::new(reader).read_line(&mut line).is_err() {
        return false;
    }
    let reply = match serde_json::from_str::<Envelope>(&line) {
        Ok(Envelope { request, context }) => {
            let span = tracing::info_span!("serve", op = request.op(), id = request.id());
            berth_trace::set_parent(&span, berth_trace::context::extract(&context));
            let _entered = span.enter();
            handle(request)
        }
        Err(e) => Err(format!("malformed request {line:?}: {e}")).into(),
    };
    let answer = match reply.answer {
        Ok(task) => Answer::Ok(task),
        Err(message) => Answer::Error(message),
    };
    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
    out.push(b'\n');
    let _ = (&stream).write_all(&out);
    reply.last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_its_answer_cross_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            serve(listener, |request| {
                match request {
                    Request::State { id } => Ok(Task {
                        id,
                        pid: 42,
                        exit_code: None,
                        note: None,
                    }),
                    other => Err(format!("{} is not supported", other.op())),
                }
                .into()
            })
        });
        let task = call(&socket, Request::State { id: "c1".into() }).unwrap();
        assert_eq!((task.id.as_str(), task.pid), ("c1", 42));
        let refused = call(&socket, Request::Delete { id: "c1".into() }).unwrap_err();
        assert_eq!(refused.to_string(), "delete is not supported");
    }

    #[test]
    fn serve_returns_after_the_last_answer_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            serve(listener, |request| Reply {
                answer: Err(format!("bye from {}", request.op())),
                last: matches!(request, Request::Delete { .. }),
            })
        });
        let state = call(&socket, Request::State { id: "c".into() }).unwrap_err();
        assert_eq!(state.to_string(), "bye from state");
        assert!(!server.is_finished());
        let delete = call(&socket, Request::Delete { id: "c".into() }).unwrap_err();
        assert_eq!(delete.to_string(), "bye from delete");
        server.join().unwrap();
    }

    #[test]
    fn nobody_listening_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = call(&dir.path().join("none"), Request::State { id: "x".into() });
        assert!(matches!(err, Err(RpcError::Connect { .. })), "{err:?}");
    }

    #[test]
    fn requests_read_as_json_a_person_can_type() {
        let line = r#"{"request":{"op":"kill","id":"c1","signal":15},"context":{}}"#;
        let envelope: Envelope = serde_json::from_str(line).unwrap();
        assert!(matches!(envelope.request, Request::Kill { signal: 15, .. }));
    }
}
