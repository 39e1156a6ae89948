//! OTLP/HTTP bodies: decoding what exporters send, and encoding a stored trace back.
//!
//! An OTLP/HTTP trace export is one `ExportTraceServiceRequest`, sent as protobuf
//! (`application/x-protobuf`, what berth-trace and most SDKs send) or as OTLP/JSON
//! (`application/json`: the same message with hex trace and span ids, camelCase names
//! and 64-bit integers as strings), optionally gzip-compressed. One set of types, from
//! the `opentelemetry-proto` crate, reads both; this module then checks what the types
//! cannot (id lengths, known enum values) and flattens the batch into [`Received`]
//! spans for [`crate::store`].
//!
//! Everything is decoded and checked before anything is stored, so a bad export is
//! refused whole and never leaves half a batch behind.
//!
//! A real collector would also keep span links and dropped-attribute counts; berth-viz
//! doesn't because no berth process makes links, and the page has nowhere to show them.
//!
//! Read next: [`crate::store`], where the spans go.

use std::io::Read;

use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as proto;
use prost::Message;

use crate::model::{Attribute, Event, Process, Span, SpanKind, Status, StatusCode, Trace, Value};

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("content-type {0:?} is not an OTLP encoding; send application/x-protobuf or application/json")]
    ContentType(String),
    #[error("content-encoding {0:?} is not supported; send the body as is or gzip-compressed")]
    ContentEncoding(String),
    #[error("the gzip body does not decompress: {0}; compress it with gzip, or drop the content-encoding header")]
    Gzip(std::io::Error),
    #[error("the body is larger than {limit} bytes once decompressed; send smaller batches or raise --max-body-bytes")]
    TooLarge { limit: usize },
    #[error("the body is not a protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("the body is not an OTLP/JSON ExportTraceServiceRequest: {0} (ids are hex strings, as the OTLP specification's JSON encoding has them)")]
    Json(#[from] serde_json::Error),
    #[error("span {span:?} has a trace id of {len} bytes; a trace id is 16 bytes, not all zero")]
    TraceId { span: String, len: usize },
    #[error("span {span:?} has a span id of {len} bytes; a span id is 8 bytes, not all zero")]
    SpanId { span: String, len: usize },
    #[error("span {span:?} has a parent span id of {len} bytes; a parent id is 8 bytes, or empty for a root span")]
    ParentId { span: String, len: usize },
    #[error("span {span:?} ends ({end}) before it starts ({start}); send end_time_unix_nano >= start_time_unix_nano")]
    EndsBeforeStart { span: String, start: u64, end: u64 },
}

/// How the body is encoded, from the request's `content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a `content-type` header names. Parameters (`; charset=utf-8`) are
    /// ignored. A missing header means protobuf, OTLP/HTTP's default.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Encoding, OtlpError> {
        let Some(content_type) = content_type else {
            return Ok(Encoding::Protobuf);
        };
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            _ => Err(OtlpError::ContentType(content_type.to_string())),
        }
    }
}

/// Undoes the `content-encoding`, refusing to grow past `limit` bytes: a gzip body of a
/// few kilobytes can expand to gigabytes, and the size check must hold after expansion.
pub fn decompress(
    body: Vec<u8>,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, OtlpError> {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => Ok(body),
        Some(e) if e.is_empty() || e == "identity" => Ok(body),
        Some(e) if e == "gzip" => {
            let mut out = Vec::new();
            GzDecoder::new(body.as_slice())
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(OtlpError::Gzip)?;
            if out.len() > limit {
                return Err(OtlpError::TooLarge { limit });
            }
            Ok(out)
        }
        Some(_) => Err(OtlpError::ContentEncoding(
            content_encoding.unwrap_or_default().to_string(),
        )),
    }
}

/// Decodes an (already decompressed) export request.
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, OtlpError> {
    Ok(match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)?,
        Encoding::Json => serde_json::from_slice(body)?,
    })
}

/// One span out of an export, with the process that sent it and its trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub trace_id: String,
    pub process: Process,
    pub span: Span,
}

// ANCHOR: flatten
/// Flattens an export into spans, checking each. The batch is all or nothing: the first
/// bad span refuses it whole.
pub fn flatten(request: ExportTraceServiceRequest) -> Result<Vec<Received>, OtlpError> {
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        // The resource is the process: every span under it was sent by that process.
        // Sorted by key: SDKs send a resource's attributes in no fixed order (Rust's from
        // a hash map), and two exports of one process must compare equal.
        let mut process = Process {
            attributes: attributes(resource_spans.resource.map(|r| r.attributes)),
        };
        process.attributes.sort_by(|a, b| a.key.cmp(&b.key));
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                let (trace_id, span) = convert_span(span, &scope)?;
                received.push(Received {
                    trace_id,
                    process: process.clone(),
                    span,
                });
            }
        }
    }
    Ok(received)
}
// ANCHOR_END: flatten

fn convert_span(span: proto::Span, scope: &str) -> Result<(String, Span), OtlpError> {
    let name = span.name;
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
        return Err(OtlpError::TraceId {
            span: name,
            len: span.trace_id.len(),
        });
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
        return Err(OtlpError::SpanId {
            span: name,
            len: span.span_id.len(),
        });
    }
    // An all-zero parent is how some SDKs write "no parent".
    let parent_span_id = match span.parent_span_id.len() {
        0 => None,
        8 if span.parent_span_id.iter().all(|b| *b == 0) => None,
        8 => Some(hex(&span.parent_span_id)),
        len => return Err(OtlpError::ParentId { span: name, len }),
    };
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(OtlpError::EndsBeforeStart {
            span: name,
            start: span.start_time_unix_nano,
            end: span.end_time_unix_nano,
        });
    }
    let status = span.status.unwrap_or_default();
    let converted = Span {
        span_id: hex(&span.span_id),
        parent_span_id,
        name,
        kind: kind_from_proto(span.kind),
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        process: 0,
        scope: scope.to_string(),
        attributes: attributes(Some(span.attributes)),
        events: span
            .events
            .into_iter()
            .map(|event| Event {
                name: event.name,
                time_unix_nano: event.time_unix_nano,
                attributes: attributes(Some(event.attributes)),
            })
            .collect(),
        status: Status {
            code: match status.code {
                1 => StatusCode::Ok,
                2 => StatusCode::Error,
                // Unknown codes read as unset: the span still shows.
                _ => StatusCode::Unset,
            },
            message: status.message,
        },
        flags: span.flags,
    };
    Ok((hex(&span.trace_id), converted))
}

fn kind_from_proto(kind: i32) -> SpanKind {
    match kind {
        1 => SpanKind::Internal,
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Unspecified,
    }
}

fn kind_to_proto(kind: SpanKind) -> i32 {
    match kind {
        SpanKind::Unspecified => 0,
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn attributes(kvs: Option<Vec<KeyValue>>) -> Vec<Attribute> {
    kvs.unwrap_or_default()
        .into_iter()
        .map(|kv| Attribute {
            key: kv.key,
            value: value(kv.value.and_then(|v| v.value)),
        })
        .collect()
}

fn value(any: Option<any_value::Value>) -> Value {
    use any_value::Value as V;
    match any {
        None => Value::Empty,
        Some(V::StringValue(s)) => Value::String(s),
        Some(V::BoolValue(b)) => Value::Bool(b),
        Some(V::IntValue(i)) => Value::Int(i),
        Some(V::DoubleValue(d)) => Value::Double(d),
        Some(V::BytesValue(b)) => Value::Bytes(b),
        Some(V::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(|v| value(v.value)).collect())
        }
        Some(V::KvlistValue(kv)) => Value::Map(attributes(Some(kv.values))),
        // Newer OTLP versions add value kinds (string_value_strindex, …) that only
        // profiles use; anything unknown shows as empty rather than refusing the span.
        #[allow(unreachable_patterns)]
        Some(_) => Value::Empty,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

// ANCHOR: to_request
/// A stored trace as one OTLP export request, one `ResourceSpans` per process: what an
/// export of the trace holds, and what the store writes to disk.
pub fn to_request(trace: &Trace) -> ExportTraceServiceRequest {
    let trace_id = unhex(&trace.trace_id);
    let resource_spans = trace
        .processes
        .iter()
        .enumerate()
        .map(|(index, process)| {
            // Spans of one process, grouped by scope in order of first appearance.
            let mut scopes: Vec<proto::ScopeSpans> = Vec::new();
            for span in trace.spans.iter().filter(|s| s.process == index) {
                let span_proto = span_to_proto(span, &trace_id);
                match scopes
                    .iter_mut()
                    .find(|s| s.scope.as_ref().is_some_and(|sc| sc.name == span.scope))
                {
                    Some(scope) => scope.spans.push(span_proto),
                    None => scopes.push(proto::ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: span.scope.clone(),
                            ..Default::default()
                        }),
                        spans: vec![span_proto],
                        schema_url: String::new(),
                    }),
                }
            }
            proto::ResourceSpans {
                resource: Some(Resource {
                    attributes: key_values(&process.attributes),
                    ..Default::default()
                }),
                scope_spans: scopes,
                schema_url: String::new(),
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}
// ANCHOR_END: to_request

fn span_to_proto(span: &Span, trace_id: &[u8]) -> proto::Span {
    proto::Span {
        trace_id: trace_id.to_vec(),
        span_id: unhex(&span.span_id),
        parent_span_id: span
            .parent_span_id
            .as_deref()
            .map(unhex)
            .unwrap_or_default(),
        flags: span.flags,
        name: span.name.clone(),
        kind: kind_to_proto(span.kind),
        start_time_unix_nano: span.start_unix_nano,
        end_time_unix_nano: span.end_unix_nano,
        attributes: key_values(&span.attributes),
        events: span
            .events
            .iter()
            .map(|e| proto::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        status: Some(proto::Status {
            message: span.status.message.clone(),
            code: match span.status.code {
                StatusCode::Unset => 0,
                StatusCode::Ok => 1,
                StatusCode::Error => 2,
            },
        }),
        ..Default::default()
    }
}

fn key_values(attributes: &[Attribute]) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|kv| KeyValue {
            key: kv.key.clone(),
            value: Some(any_value(&kv.value)),
            ..Default::default()
        })
        .collect()
}

fn any_value(value: &Value) -> AnyValue {
    use any_value::Value as V;
    let value = match value {
        Value::Empty => None,
        Value::String(s) => Some(V::StringValue(s.clone())),
        Value::Bool(b) => Some(V::BoolValue(*b)),
        Value::Int(i) => Some(V::IntValue(*i)),
        Value::Double(d) => Some(V::DoubleValue(*d)),
        Value::Bytes(b) => Some(V::BytesValue(b.clone())),
        Value::Array(items) => Some(V::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        })),
        Value::Map(entries) => Some(V::KvlistValue(KeyValueList {
            values: key_values(entries),
        })),
    };
    AnyValue { value }
}

/// The stored trace as OTLP/JSON text.
pub fn to_json(trace: &Trace) -> Vec<u8> {
    serde_json::to_vec_pretty(&to_request(trace)).expect("OTLP types always serialize")
}

/// Rebuilds a trace from OTLP (what [`to_json`] wrote, or any export of one trace).
pub fn to_traces(received: Vec<Received>) -> Vec<Trace> {
    let mut traces: Vec<Trace> = Vec::new();
    for r in received {
        let index = match traces.iter().position(|t| t.trace_id == r.trace_id) {
            Some(index) => index,
            None => {
                traces.push(Trace {
                    trace_id: r.trace_id.clone(),
                    processes: Vec::new(),
                    spans: Vec::new(),
                });
                traces.len() - 1
            }
        };
        traces[index].add(&r.process, r.span);
    }
    traces
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;

    use super::*;

    pub(crate) const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn json_export(span_id: &str, parent: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[
                {{"key":"service.name","value":{{"stringValue":"berth-runc"}}}},
                {{"key":"process.pid","value":{{"intValue":"42"}}}}]}},
              "scopeSpans":[{{"scope":{{"name":"berth-runc"}},"spans":[{{
                "traceId":"{TRACE}","spanId":"{span_id}","parentSpanId":"{parent}",
                "name":"create","kind":1,
                "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000002000000",
                "attributes":[{{"key":"id","value":{{"stringValue":"web"}}}},
                              {{"key":"n","value":{{"intValue":"7"}}}},
                              {{"key":"ok","value":{{"boolValue":true}}}}],
                "events":[{{"name":"ready","timeUnixNano":"1700000000001000000"}}],
                "status":{{"code":2,"message":"boom"}}
              }}]}}]}}]}}"#
        )
    }

    #[test]
    fn json_decodes_into_spans_with_their_process() {
        let request = decode(
            json_export("00f067aa0ba902b7", "").as_bytes(),
            Encoding::Json,
        )
        .unwrap();
        let spans = flatten(request).unwrap();
        assert_eq!(spans.len(), 1);
        let r = &spans[0];
        assert_eq!(r.trace_id, TRACE);
        assert_eq!(r.process.service(), "berth-runc");
        assert_eq!(r.process.pid(), Some(42));
        assert_eq!(r.span.parent_span_id, None);
        assert_eq!(r.span.duration_nano(), 2_000_000);
        assert_eq!(r.span.attribute("n"), Some(&Value::Int(7)));
        assert_eq!(r.span.status.code, StatusCode::Error);
        assert_eq!(r.span.events[0].name, "ready");
    }

    #[test]
    fn one_process_whatever_the_order_of_its_resource_attributes() {
        // The Rust SDK sends a resource's attributes in hash-map order, which differs
        // between exports of the same binary.
        let swapped = json_export("1111111111111111", "").replace(
            r#"{"key":"service.name","value":{"stringValue":"berth-runc"}},
                {"key":"process.pid","value":{"intValue":"42"}}"#,
            r#"{"key":"process.pid","value":{"intValue":"42"}},
                {"key":"service.name","value":{"stringValue":"berth-runc"}}"#,
        );
        assert_ne!(swapped, json_export("1111111111111111", ""));
        let mut received = Vec::new();
        for json in [json_export("00f067aa0ba902b7", ""), swapped] {
            received.extend(flatten(decode(json.as_bytes(), Encoding::Json).unwrap()).unwrap());
        }
        let traces = to_traces(received);
        assert_eq!(traces[0].processes.len(), 1, "{:#?}", traces[0].processes);
        assert_eq!(traces[0].spans.len(), 2);
    }

    #[test]
    fn protobuf_and_json_round_trip_through_a_stored_trace() {
        let request = decode(
            json_export("00f067aa0ba902b7", "1111111111111111").as_bytes(),
            Encoding::Json,
        )
        .unwrap();
        let traces = to_traces(flatten(request).unwrap());
        let bytes = to_request(&traces[0]).encode_to_vec();
        let again = to_traces(flatten(decode(&bytes, Encoding::Protobuf).unwrap()).unwrap());
        assert_eq!(again, traces);
        let json = to_json(&traces[0]);
        let again = to_traces(flatten(decode(&json, Encoding::Json).unwrap()).unwrap());
        assert_eq!(again, traces);
    }

    #[test]
    fn bad_ids_are_refused_with_the_span_named() {
        let request = decode(json_export("00f067aa", "").as_bytes(), Encoding::Json).unwrap();
        let error = flatten(request).unwrap_err().to_string();
        assert!(
            error.contains("\"create\"") && error.contains("4 bytes"),
            "{error}"
        );
    }

    #[test]
    fn gzip_is_undone_within_the_limit() {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'x'; 1000]).unwrap();
        let body = gz.finish().unwrap();
        assert_eq!(
            decompress(body.clone(), Some("gzip"), 1000).unwrap().len(),
            1000
        );
        assert!(matches!(
            decompress(body, Some("gzip"), 999),
            Err(OtlpError::TooLarge { limit: 999 })
        ));
        assert!(matches!(
            decompress(b"not gzip".to_vec(), Some("gzip"), 999),
            Err(OtlpError::Gzip(_))
        ));
        assert!(matches!(
            decompress(Vec::new(), Some("br"), 9),
            Err(OtlpError::ContentEncoding(_))
        ));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_content_type(None).unwrap(),
            Encoding::Protobuf
        );
        assert!(Encoding::from_content_type(Some("text/plain")).is_err());
    }
}
