//! Task events, forwarded to containerd.
//!
//! containerd learns what happens to a task from the shim's events: `/tasks/create`,
//! `/tasks/start`, `/tasks/exit`, `/tasks/delete`, `/tasks/exec-added`,
//! `/tasks/exec-started`, `/tasks/paused`, `/tasks/resumed` and `/tasks/oom` (from the
//! main loop, see [`crate::oom`]). Each is a
//! protobuf message in an `Envelope` (namespace, topic, time), sent as one ttrpc
//! request, `containerd.services.events.ttrpc.v1.Events/Forward`, to the address in
//! `TTRPC_ADDRESS` (containerd's ttrpc socket).
//!
//! Events are queued in the order things happened (under the task lock, see
//! [`crate::task`]) and sent after the lock is let go, by whichever thread gets to
//! [`Publisher::flush`] first: containerd is never called while the shim's state is
//! locked, and never hears two events out of order.
//!
//! The client is a few lines of ttrpc by hand: a connection per flush, one request
//! frame out and one response frame in per event. A kept-open ttrpc client would cost
//! two threads in every shim for a few events in its lifetime. If containerd is down,
//! the event is dropped with a warning, as the runc shim does after its retries: a
//! restarted containerd asks the shim for the task's state instead.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::Message;

use crate::names::{pack, TypeName};

use crate::protos::shim::event::Envelope;
use crate::protos::shim::events::ForwardRequest;

/// How long containerd may take to accept one event.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
/// ttrpc frame types.
const MESSAGE_REQUEST: u8 = 1;
const MESSAGE_RESPONSE: u8 = 2;
/// The largest response accepted; a Forward answer is an empty message.
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot reach containerd's ttrpc socket {0}: {1}")]
    Connect(String, io::Error),
    #[error("forwarding to {0} failed: {1}")]
    Io(String, io::Error),
    #[error("containerd refused the event: {0}")]
    Refused(String),
    #[error("cannot encode the event: {0}")]
    Encode(protobuf::Error),
    #[error("containerd answered with a frame that does not parse: {0}")]
    BadResponse(String),
}

/// The queue of events not yet sent, and where they go.
pub struct Publisher {
    /// containerd's ttrpc socket, from `TTRPC_ADDRESS`; `None`: events go nowhere.
    address: Option<String>,
    namespace: String,
    queue: Mutex<VecDeque<Envelope>>,
    /// Held while sending, so events leave in queue order.
    sending: Mutex<()>,
}

impl Publisher {
    pub fn new(address: Option<String>, namespace: &str) -> Publisher {
        Publisher {
            address: address.filter(|a| !a.is_empty()),
            namespace: namespace.to_owned(),
            queue: Mutex::new(VecDeque::new()),
            sending: Mutex::new(()),
        }
    }

    /// Queues an event; [`flush`](Self::flush) sends it.
    pub fn queue<M: TypeName>(&self, topic: &str, event: &M) {
        // containerd names event types by their protobuf name, with no URL prefix.
        let any = match pack(event) {
            Ok(any) => any,
            Err(e) => {
                tracing::warn!("cannot encode the {topic} event: {e}");
                return;
            }
        };
        let mut envelope = Envelope::new();
        envelope.timestamp = Some(timestamp(SystemTime::now())).into();
        envelope.namespace = self.namespace.clone();
        envelope.topic = topic.to_owned();
        envelope.event = Some(any).into();
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(envelope);
    }

    /// Sends every queued event, in order. Call it with no lock held.
    pub fn flush(&self) {
        let _sending = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut connection = None;
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(envelope) = next else { return };
            let Some(address) = &self.address else {
                continue;
            };
            if let Err(e) = forward(address, &mut connection, &envelope) {
                tracing::warn!("event {} dropped: {e}", envelope.topic);
                connection = None;
            }
        }
    }
}

// ANCHOR: forward
/// Sends one envelope as a ttrpc request on `connection` (made if `None`) and reads
/// the answer. A ttrpc frame is a 10-byte header (length, stream id, type, flags)
/// and a protobuf message; a request carries the service, the method and the
/// method's own message as bytes.
fn forward(
    address: &str,
    connection: &mut Option<(UnixStream, u32)>,
    envelope: &Envelope,
) -> Result<(), EventsError> {
    if connection.is_none() {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let stream =
            UnixStream::connect(path).map_err(|e| EventsError::Connect(address.into(), e))?;
        let timeout = Some(FORWARD_TIMEOUT);
        let io = |e| EventsError::Io(address.into(), e);
        stream.set_read_timeout(timeout).map_err(io)?;
        stream.set_write_timeout(timeout).map_err(io)?;
        *connection = Some((stream, 1));
    }
    let Some((stream, stream_id)) = connection else {
        unreachable!()
    };
    let io = |e| EventsError::Io(address.into(), e);

    let mut forward = ForwardRequest::new();
    forward.envelope = Some(envelope.clone()).into();
    let mut request = ttrpc::Request::new();
    request.service = SERVICE.into();
    request.method = "Forward".into();
    request.payload = forward.write_to_bytes().map_err(EventsError::Encode)?;
    request.timeout_nano = FORWARD_TIMEOUT.as_nanos() as i64;
    let body = request.write_to_bytes().map_err(EventsError::Encode)?;

    let mut frame = Vec::with_capacity(10 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&stream_id.to_be_bytes());
    frame.extend_from_slice(&[MESSAGE_REQUEST, 0]);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).map_err(io)?;

    let mut header = [0u8; 10];
    stream.read_exact(&mut header).map_err(io)?;
    let len = u32::from_be_bytes(header[0..4].try_into().unwrap()) as usize;
    let answered = u32::from_be_bytes(header[4..8].try_into().unwrap());
    if header[8] != MESSAGE_RESPONSE || answered != *stream_id || len > MAX_RESPONSE {
        return Err(EventsError::BadResponse(format!("{header:?}")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(io)?;
    // Client streams are odd numbers, one per request.
    *stream_id += 2;
    let response = ttrpc::Response::parse_from_bytes(&body)
        .map_err(|e| EventsError::BadResponse(e.to_string()))?;
    match response.status.as_ref() {
        Some(status) if status.code.value() != 0 => {
            Err(EventsError::Refused(status.message.clone()))
        }
        _ => Ok(()),
    }
}
// ANCHOR_END: forward

pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protos::events::task::TaskStart;
    use std::os::unix::net::UnixListener;

    /// A fake containerd: reads `n` frames, answers each with an empty success.
    fn fake_containerd(listener: UnixListener, n: usize) -> std::thread::JoinHandle<Vec<Envelope>> {
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            for _ in 0..n {
                let mut header = [0u8; 10];
                stream.read_exact(&mut header).unwrap();
                assert_eq!(header[8], MESSAGE_REQUEST);
                let len = u32::from_be_bytes(header[0..4].try_into().unwrap()) as usize;
                let mut body = vec![0u8; len];
                stream.read_exact(&mut body).unwrap();
                let request = ttrpc::Request::parse_from_bytes(&body).unwrap();
                assert_eq!(
                    (request.service.as_str(), request.method.as_str()),
                    (SERVICE, "Forward")
                );
                let forward = ForwardRequest::parse_from_bytes(&request.payload).unwrap();
                got.push(forward.envelope.unwrap());
                let answer = ttrpc::Response::new().write_to_bytes().unwrap();
                let mut frame = (answer.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&header[4..8]);
                frame.extend_from_slice(&[MESSAGE_RESPONSE, 0]);
                frame.extend_from_slice(&answer);
                stream.write_all(&frame).unwrap();
            }
            got
        })
    }

    #[test]
    fn events_arrive_in_order_in_envelopes() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ttrpc.sock");
        let containerd = fake_containerd(UnixListener::bind(&socket).unwrap(), 2);
        let publisher = Publisher::new(Some(format!("unix://{}", socket.display())), "ns");
        for pid in [1, 2] {
            let mut start = TaskStart::new();
            start.container_id = "web".into();
            start.pid = pid;
            publisher.queue("/tasks/start", &start);
        }
        publisher.flush();
        let got = containerd.join().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].namespace.as_str(), got[0].topic.as_str()),
            ("ns", "/tasks/start")
        );
        let event = got[1].event.as_ref().unwrap();
        assert_eq!(event.type_url, "containerd.events.TaskStart");
        assert_eq!(TaskStart::parse_from_bytes(&event.value).unwrap().pid, 2);
    }

    #[test]
    fn with_containerd_away_events_are_dropped_not_kept() {
        let publisher = Publisher::new(Some("unix:///nonexistent/ttrpc.sock".into()), "ns");
        publisher.queue("/tasks/exit", &TaskStart::new());
        publisher.flush();
        assert!(publisher.queue.lock().unwrap().is_empty());
    }
}
