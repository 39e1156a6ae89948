//! Token authentication in front of a real registry, the way Docker Hub does it.
//!
//! Debian's `docker-registry` can require tokens, but only ones signed by a token
//! service it trusts; Docker Hub's token service is not something a test can run. So
//! this is that service and the registry's gate in one small server: requests
//! without a token get `401` with a `Bearer realm=…,service=…,scope=…` challenge;
//! `GET /token` hands out a token for the scope asked (pull to anyone, push only with
//! the right basic credentials); requests with a valid token are passed to the real
//! registry behind it. One request per connection, every read bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The user the gate knows, and its password.
pub const USER: &str = "student";
pub const PASSWORD: &str = "s3cret";
/// `Basic base64("student:s3cret")`.
const BASIC: &str = "Basic c3R1ZGVudDpzM2NyZXQ=";

/// How long a connection may sit idle before the gate drops it.
const IDLE: Duration = Duration::from_secs(30);

pub struct TokenGate {
    addr: String,
    stop: Arc<AtomicBool>,
    /// Every token request's query, in order: what clients asked for.
    pub token_requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl TokenGate {
    /// Guards the registry at `registry` (`127.0.0.1:PORT`).
    pub fn start(registry: &str) -> TokenGate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token gate");
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let (registry, gate) = (registry.to_owned(), addr.clone());
        let (stopping, requests) = (stop.clone(), token_requests.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (registry, gate, requests) = (registry.clone(), gate.clone(), requests.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &registry, &gate, &requests);
                });
            }
        });
        TokenGate {
            addr,
            stop,
            token_requests,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`: use it as the registry in image references.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }
}

impl Drop for TokenGate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request: a token, a challenge, or a pass to the registry.
fn serve(
    mut client: TcpStream,
    registry: &str,
    gate: &str,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push(line);
        if end || head.len() > 100 {
            break;
        }
    }
    let header = |name: &str| {
        head.iter().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let request_line = head[0].trim().to_owned();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;

    if let Some(query) = target.strip_prefix("/token?") {
        requests.lock().unwrap().push(query.to_owned());
        let wants_push = query.contains("push");
        let authorised = header("authorization").as_deref() == Some(BASIC);
        if wants_push && !authorised {
            return respond(
                &mut client,
                "401 Unauthorized",
                &[],
                b"{\"details\":\"push needs credentials\"}",
            );
        }
        let token = if wants_push {
            "push-token"
        } else {
            "pull-token"
        };
        let body = format!("{{\"token\":\"{token}\"}}");
        return respond(
            &mut client,
            "200 OK",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
    }
    let token = header("authorization");
    let allowed = match method {
        "GET" | "HEAD" => matches!(
            token.as_deref(),
            Some("Bearer pull-token" | "Bearer push-token")
        ),
        _ => token.as_deref() == Some("Bearer push-token"),
    };
    if !allowed {
        let repository = target
            .strip_prefix("/v2/")
            .and_then(|rest| rest.split("/manifests/").next())
            .and_then(|rest| rest.split("/blobs/").next())
            .unwrap_or("");
        let action = if matches!(method, "GET" | "HEAD") {
            "pull"
        } else {
            "pull,push"
        };
        let challenge = format!(
            "Bearer realm=\"http://{gate}/token\",service=\"berth-test\",scope=\"repository:{repository}:{action}\""
        );
        return respond(
            &mut client,
            "401 Unauthorized",
            &[("WWW-Authenticate", &challenge)],
            b"",
        );
    }
    // Pass it on, unchanged but for the authorization and a fresh connection each time.
    let mut upstream = TcpStream::connect(registry)?;
    upstream.set_read_timeout(Some(IDLE))?;
    write!(upstream, "{request_line}\r\n")?;
    for line in &head[1..] {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("authorization:") || lower.starts_with("connection:") || line == "\r\n"
        {
            continue;
        }
        upstream.write_all(line.as_bytes())?;
    }
    upstream.write_all(b"Connection: close\r\n\r\n")?;
    upstream.write_all(&body)?;
    // Locations the registry hands out must lead back through the gate.
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&response[..split]).replace(registry, gate);
    client.write_all(head.as_bytes())?;
    client.write_all(&response[split..])?;
    client.shutdown(Shutdown::Both)
}

fn respond(
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
