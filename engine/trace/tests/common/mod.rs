//! What the integration tests share: a tiny OTLP/HTTP receiver, and a way to run this
//! very test binary again as another process playing another role.
//!
//! Why other processes: [`berth_trace::init`] installs a process-wide subscriber, so
//! each process may call it once, and what is under test is precisely what happens
//! between processes. Each test re-runs its own binary (`current_exe`) with
//! `--exact <test name>`, and an environment variable saying which role to play.
//!
//! Every wait here is bounded: a broken exporter fails a test, it never hangs one.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// The longest any test waits for anything.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The environment variable naming the role a re-run test binary plays.
pub const ROLE: &str = "BERTH_TRACE_TEST_ROLE";

/// The role this process plays; `None` for the test runner itself.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// One export request, as the receiver saw it.
#[derive(Debug)]
pub struct Export {
    pub path: String,
    pub content_type: String,
    pub body: ExportTraceServiceRequest,
}

/// One span, flattened out of an export request with the service that sent it.
#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub service: String,
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub flags: u32,
}

impl Export {
    pub fn spans(&self) -> Vec<SpanSeen> {
        let mut spans = Vec::new();
        for resource_spans in &self.body.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource_spans
                .scope_spans
                .iter()
                .flat_map(|scope| &scope.spans)
            {
                spans.push(SpanSeen {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: span.trace_id.clone(),
                    span_id: span.span_id.clone(),
                    parent_span_id: span.parent_span_id.clone(),
                    flags: span.flags,
                });
            }
        }
        spans
    }
}

/// An OTLP/HTTP receiver on 127.0.0.1: it hands each decoded body to the test, then
/// answers (`200`, unless told otherwise). A thread per connection, because the
/// exporter's HTTP client keeps its connection open between exports.
pub struct Receiver {
    pub endpoint: String,
    exports: mpsc::Receiver<Result<Export, String>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::answering("200 OK")
    }

    /// A receiver that answers every request with `status` (`"503 Service Unavailable"`).
    pub fn answering(status: &'static str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test receiver");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, exports) = mpsc::channel();
        // The accept loop is never joined: it ends with the test process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let tx = tx.clone();
                thread::spawn(move || serve(stream, status, tx));
            }
        });
        Receiver { endpoint, exports }
    }

    /// Every export received so far, without waiting.
    pub fn received(&self) -> Vec<Export> {
        self.exports
            .try_iter()
            .map(|export| export.expect("a trace export"))
            .collect()
    }

    /// Collects spans until `done` says the set is complete, for at most [`PATIENCE`].
    /// Returns every export seen; panics with what arrived if `done` never held.
    pub fn collect_until(&self, done: impl Fn(&[SpanSeen]) -> bool) -> Vec<Export> {
        let deadline = Instant::now() + PATIENCE;
        let mut exports = Vec::new();
        loop {
            let spans: Vec<SpanSeen> = exports.iter().flat_map(Export::spans).collect();
            if done(&spans) {
                return exports;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.exports.recv_timeout(left) {
                Ok(Ok(export)) => exports.push(export),
                Ok(Err(error)) => panic!("the receiver got a bad request: {error}"),
                Err(_) => panic!("spans still missing after {PATIENCE:?}; got {spans:#?}"),
            }
        }
    }
}

/// Serves one connection: HTTP/1.1 requests with a `Content-Length` body, one after
/// the other, until the client closes it.
fn serve(stream: TcpStream, status: &str, tx: mpsc::Sender<Result<Export, String>>) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return, // closed (or idle too long): done
            Ok(_) => {}
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut content_length = 0;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        // Handed over before answering, so that once the exporter has its answer the
        // test is sure to see the request.
        let decoded = ExportTraceServiceRequest::decode(body.as_slice())
            .map(|body| Export {
                path,
                content_type,
                body,
            })
            .map_err(|error| format!("body of {content_length} bytes is no trace export: {error}"));
        let _ = tx.send(decoded);
        // An empty protobuf message is a valid (empty) ExportTraceServiceResponse.
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        let _ = writer.write_all(answer.as_bytes());
    }
}

/// A command running this test binary again, only `test_name`, in `role`, with every
/// trace-related variable of the runner's own environment removed (the machine
/// running the tests may have its own collector configured).
pub fn rerun_as(test_name: &str, role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(ROLE, role);
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "TRACEPARENT",
        "TRACESTATE",
    ] {
        command.env_remove(var);
    }
    command
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub output: String,
}

/// Runs `command` to completion, for at most [`PATIENCE`]: killed and reported if
/// it takes longer. Its stdout and stderr are kept, to be shown if it fails.
pub fn run_bounded(mut command: Command) -> Finished {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the test binary again");
    // Drained by threads while we wait, so a chatty process cannot fill a pipe and stall.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the test binary") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {PATIENCE:?}; killed it");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    Finished { status, output }
}

/// Panics with the process's output unless it exited with status 0.
pub fn assert_success(finished: &Finished, what: &str) {
    assert!(
        finished.status.success(),
        "{what} failed ({}):\n{}",
        finished.status,
        finished.output
    );
}
