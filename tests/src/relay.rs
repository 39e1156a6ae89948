//! Relays in front of a real registry, for tests that must see (or shape) what a client
//! sends it: [`Relay`] accepts connections and hands each to a handler on a thread of
//! its own; [`Request`] and [`Request::forward`] read a request and pass it on.
//! One request per connection, every read bounded.
//!
//! [`crate::token_auth`] is one such handler. [`OverlapWatch`] is another: it holds
//! blob downloads back until several have been asked for, so a test can tell a client
//! that fetches blobs a few at once from one that fetches them one by one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection may sit idle before a relay drops it.
const IDLE: Duration = Duration::from_secs(30);

/// A listener on 127.0.0.1 whose every connection goes to a handler.
pub struct Relay {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Starts listening; `handle` gets each connection and the relay's own address.
    pub fn start(handle: impl Fn(TcpStream, &str) + Send + Sync + 'static) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a relay");
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (stopping, own) = (stop.clone(), addr.clone());
        let handle = Arc::new(handle);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (handle, own) = (handle.clone(), own.clone());
                std::thread::spawn(move || handle(stream, &own));
            }
        });
        Relay {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`: use it as the registry in image references.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One HTTP request, read whole.
pub struct Request {
    /// `GET /v2/ HTTP/1.1`.
    pub line: String,
    /// The header lines, each with its `\r\n`.
    head: Vec<String>,
    pub body: Vec<u8>,
}

impl Request {
    /// Reads one request from `client`; `None` if it closed first.
    pub fn read(client: &TcpStream) -> std::io::Result<Option<Request>> {
        client.set_read_timeout(Some(IDLE))?;
        let mut reader = BufReader::new(client.try_clone()?);
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let mut head = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" || head.len() > 100 {
                break;
            }
            head.push(header);
        }
        let mut request = Request {
            line: line.trim().to_owned(),
            head,
            body: Vec::new(),
        };
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        request.body = vec![0; length];
        reader.read_exact(&mut request.body)?;
        Ok(Some(request))
    }

    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }

    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// Passes the request to `registry` on a fresh connection, without its
    /// `Authorization`, and its answer back to `client`, with the registry's address
    /// in the answer's headers (upload `Location`s) replaced by the relay's.
    pub fn forward(
        &self,
        client: &mut TcpStream,
        registry: &str,
        relay: &str,
    ) -> std::io::Result<()> {
        let mut upstream = TcpStream::connect(registry)?;
        upstream.set_read_timeout(Some(IDLE))?;
        write!(upstream, "{}\r\n", self.line)?;
        for line in &self.head {
            let lower = line.to_ascii_lowercase();
            if !lower.starts_with("authorization:") && !lower.starts_with("connection:") {
                upstream.write_all(line.as_bytes())?;
            }
        }
        upstream.write_all(b"Connection: close\r\n\r\n")?;
        upstream.write_all(&self.body)?;
        let mut response = Vec::new();
        upstream.read_to_end(&mut response)?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |i| i + 4);
        let head = String::from_utf8_lossy(&response[..split]).replace(registry, relay);
        client.write_all(head.as_bytes())?;
        client.write_all(&response[split..])?;
        client.shutdown(Shutdown::Both)
    }
}

/// Answers `client` directly, closing the connection after.
pub fn respond(
    client: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )?;
    for (name, value) in headers {
        write!(client, "{name}: {value}\r\n")?;
    }
    client.write_all(b"\r\n")?;
    client.write_all(body)?;
    client.shutdown(Shutdown::Both)
}

/// How long [`OverlapWatch`] holds a download back waiting for others. A client that
/// never has enough under way waits this long once; later downloads are not held.
const OVERLAP_PATIENCE: Duration = Duration::from_secs(10);

/// A relay that counts how many downloads of the watched blobs were asked for at
/// once. Until `at_once` have been, each one is held back (up to [`OVERLAP_PATIENCE`])
/// for the others to arrive, so the count does not depend on how fast the registry
/// answers. Only held requests count: a client that asks for one blob after another
/// cannot have a second request arrive while its first is held.
pub struct OverlapWatch {
    relay: Relay,
    state: Arc<(Mutex<Overlap>, Condvar)>,
}

#[derive(Default)]
struct Overlap {
    held: usize,
    most: usize,
    gave_up: bool,
}

impl OverlapWatch {
    /// Relays to `registry`, watching `GET`s of blobs named in `digests`, holding them
    /// until `at_once` arrive together.
    pub fn start(registry: &str, digests: Vec<String>, at_once: usize) -> OverlapWatch {
        let state = Arc::new((Mutex::new(Overlap::default()), Condvar::new()));
        let (shared, registry) = (state.clone(), registry.to_owned());
        let relay = Relay::start(move |mut client, own| {
            let Ok(Some(request)) = Request::read(&client) else {
                return;
            };
            let watched = request.method() == "GET"
                && digests
                    .iter()
                    .any(|d| request.target().ends_with(&format!("/blobs/{d}")));
            if watched {
                let (lock, changed) = &*shared;
                let mut overlap = lock.lock().unwrap();
                if !overlap.gave_up {
                    overlap.held += 1;
                    overlap.most = overlap.most.max(overlap.held);
                    changed.notify_all();
                    let (mut overlap, waited) = changed
                        .wait_timeout_while(overlap, OVERLAP_PATIENCE, |o| o.most < at_once)
                        .unwrap();
                    overlap.gave_up |= waited.timed_out();
                    overlap.held -= 1;
                }
            }
            let _ = request.forward(&mut client, &registry, own);
        });
        OverlapWatch { relay, state }
    }

    pub fn addr(&self) -> String {
        self.relay.addr()
    }

    /// The most downloads of watched blobs that were asked for at the same time.
    pub fn most_at_once(&self) -> usize {
        self.state.0.lock().unwrap().most
    }
}
