//! A tiny OTLP/HTTP receiver, for tests that check what a process exports.
//!
//! Tests start one on 127.0.0.1, point `OTEL_EXPORTER_OTLP_ENDPOINT` at it, run the
//! processes under test, and read back the decoded spans. It stands in for berth-viz
//! so that the tracing tests depend on nothing but the protocol. Every wait is bounded:
//! a broken exporter fails a test, it never hangs one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// The longest the receiver waits for anything. A bound, not a wait: long-lived
/// processes export on a batch timer of about 5 s, and a loaded 2-core machine can be
/// slower than that to run what comes before.
pub const PATIENCE: Duration = Duration::from_secs(30);

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
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
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
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
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
