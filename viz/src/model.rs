//! The stored trace: what berth-viz keeps of the spans that processes sent it.
//!
//! OTLP groups spans by *resource* (the process that sent them) and *scope* (the library
//! that made them), batch after batch; a trace's spans arrive in many exports, from
//! several processes, in any order. berth-viz regroups them by trace: a [`Trace`] holds
//! the processes that took part and their spans. Nothing is interpreted here (no lanes,
//! no seams, no critical path: that is [`crate::view`]), so that what is stored is what
//! was sent, and can be exported again as OTLP ([`crate::otlp::to_request`]).
//!
//! Read next: [`crate::otlp`], where exports become these types and back.

use serde::Serialize;

/// One trace: every span received with one trace id, and the processes that sent them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    pub processes: Vec<Process>,
    pub spans: Vec<Span>,
}

/// A process, as OTLP names it: its resource attributes (`service.name`,
/// `process.pid`, `telemetry.sdk.*`, …), sorted by key. Two exports with equal
/// attributes come from the same process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub attributes: Vec<Attribute>,
}

impl Process {
    /// `service.name`, which every OpenTelemetry SDK sets (to `unknown_service` at worst).
    pub fn service(&self) -> &str {
        match self.attribute("service.name") {
            Some(Value::String(name)) => name,
            _ => "unknown_service",
        }
    }

    /// `process.pid`, when the SDK reports it (Python's, Java's and berth's do; without
    /// it, two processes of one binary would be one lane).
    pub fn pid(&self) -> Option<i64> {
        match self.attribute("process.pid") {
            Some(Value::Int(pid)) => Some(*pid),
            _ => None,
        }
    }

    pub fn attribute(&self, key: &str) -> Option<&Value> {
        find(&self.attributes, key)
    }
}

/// One span. Times are Unix nanoseconds, as OTLP sends them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Index into [`Trace::processes`].
    pub process: usize,
    /// The instrumentation scope (`berth-runc`, `opentelemetry.instrumentation.requests`).
    pub scope: String,
    pub attributes: Vec<Attribute>,
    pub events: Vec<Event>,
    pub status: Status,
    /// The OTLP flags: bit 8 says whether the span knows if its parent is remote, bit 9
    /// whether it is. Kept as sent; [`Span::parent_is_remote`] reads them.
    pub flags: u32,
}

impl Span {
    /// Whether the span's parent lives in another process, when the SDK said so
    /// (OTLP 1.1's span flags); `None` when it did not.
    pub fn parent_is_remote(&self) -> Option<bool> {
        const HAS_IS_REMOTE: u32 = 0x100;
        const IS_REMOTE: u32 = 0x200;
        (self.flags & HAS_IS_REMOTE != 0).then_some(self.flags & IS_REMOTE != 0)
    }

    pub fn duration_nano(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    pub fn attribute(&self, key: &str) -> Option<&Value> {
        find(&self.attributes, key)
    }
}

/// What a span stands for, as OTLP's `SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// A moment inside a span (a log line, an exception), with its own attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: Vec<Attribute>,
}

/// How the span ended. `Unset` is the common case: OpenTelemetry sets `Error` when
/// something failed and leaves the rest alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub code: StatusCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    pub key: String,
    pub value: Value,
}

/// An attribute's value, with the type OTLP gave it, so that an export sends back
/// exactly what was received (an integer stays an integer, bytes stay bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Value {
    Empty,
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Bytes, shown as hex.
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<Attribute>),
}

impl Value {
    /// How the page shows the value: strings as they are, everything else as JSON-ish text.
    pub fn display(&self) -> String {
        match self {
            Value::Empty => String::new(),
            Value::String(text) => text.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Bytes(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(Value::display).collect();
                format!("[{}]", items.join(", "))
            }
            Value::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|kv| format!("{}: {}", kv.key, kv.value.display()))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }
}

fn find<'a>(attributes: &'a [Attribute], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value)
}

impl Trace {
    /// The earliest start among the spans, in Unix nanoseconds (0 for an empty trace).
    pub fn start_unix_nano(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.start_unix_nano)
            .min()
            .unwrap_or(0)
    }

    /// The latest end among the spans, in Unix nanoseconds.
    pub fn end_unix_nano(&self) -> u64 {
        self.spans
            .iter()
            .map(|s| s.end_unix_nano)
            .max()
            .unwrap_or(0)
    }

    /// Adds `span`, sent by `process`, to this trace. A span already present (same id)
    /// is replaced: an exporter that retried after a lost answer sends it twice.
    pub fn add(&mut self, process: &Process, mut span: Span) {
        span.process = match self.processes.iter().position(|p| p == process) {
            Some(index) => index,
            None => {
                self.processes.push(process.clone());
                self.processes.len() - 1
            }
        };
        match self.spans.iter_mut().find(|s| s.span_id == span.span_id) {
            Some(old) => *old = span,
            None => self.spans.push(span),
        }
    }
}
