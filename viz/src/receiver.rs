//! The OTLP/HTTP receiver: `POST /v1/traces` on 127.0.0.1:4318, the standard port, so
//! that any OpenTelemetry SDK pointed at `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318`
//! sends its spans here with no further setting.
//!
//! What the specification asks of a receiver, and how berth-viz does it:
//! - protobuf or JSON bodies, by `content-type`; gzip by `content-encoding`;
//! - the answer is an `ExportTraceServiceResponse` in the request's encoding (empty:
//!   berth-viz never accepts part of a batch);
//! - a body that cannot be decoded, has a content type that is neither, or is over
//!   `--max-body-bytes` gets `400` with a `google.rpc.Status` saying why, and nothing of
//!   it is stored. A conforming exporter does not retry a 400, which is right: the same
//!   bytes would fail again. (HTTP has 413 and 415 for the last two; one status for
//!   every refused payload is what berth's issue asks, and what OTLP requires for
//!   undecodable data.)
//!
//! Read next: [`crate::api`], the page's side.

use std::sync::Arc;

use crate::http::{Handler, Request, Response};
use crate::otlp::{self, Encoding, OtlpError};
use crate::store::{Store, StoreError};

/// The path OTLP/HTTP exporters post traces to.
pub const TRACES_PATH: &str = "/v1/traces";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::Otlp(_) => 400,
            IngestError::Store(_) => 500,
        }
    }
}

// ANCHOR: ingest
/// Decodes an export request's body and stores its spans. Returns the trace ids it
/// touched. Shared by the receiver and the page's import.
pub fn ingest(
    store: &Store,
    request: &Request,
    max_body: usize,
) -> Result<Vec<String>, IngestError> {
    let encoding = Encoding::from_content_type(request.header("content-type"))?;
    let body = otlp::decompress(
        request.body.clone(),
        request.header("content-encoding"),
        max_body,
    )?;
    let export = otlp::decode(&body, encoding)?;
    let spans = otlp::flatten(export)?;
    Ok(store.add(spans)?)
}
// ANCHOR_END: ingest

/// `google.rpc.Status`, the body OTLP/HTTP asks for on an error: a code and a message.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The receiver's handler.
pub fn handler(store: Arc<Store>, max_body: usize) -> Handler {
    Arc::new(move |request: Request| {
        if request.path != TRACES_PATH {
            return Response::error(
                404,
                format!(
                    "berth-viz receives traces only, at {TRACES_PATH}; {} is not served here",
                    request.path
                ),
            );
        }
        if request.method != "POST" {
            return Response::error(
                405,
                format!("{TRACES_PATH} takes POST, not {}", request.method),
            )
            .with_header("allow", "POST");
        }
        let json = matches!(
            Encoding::from_content_type(request.header("content-type")),
            Ok(Encoding::Json)
        );
        match ingest(&store, &request, max_body) {
            // An empty ExportTraceServiceResponse: no partial success to report.
            Ok(_) if json => Response::new(200, "application/json", "{}"),
            Ok(_) => Response::new(200, "application/x-protobuf", Vec::new()),
            Err(error) => {
                eprintln!("berth-viz: refused an export: {error}");
                // gRPC's INVALID_ARGUMENT (3) for a bad body, INTERNAL (13) for a store failure.
                let code = if error.status() == 500 { 13 } else { 3 };
                let message = error.to_string();
                if json {
                    Response::json(
                        error.status(),
                        &serde_json::json!({ "code": code, "message": message }),
                    )
                } else {
                    let status = RpcStatus { code, message };
                    Response::new(
                        error.status(),
                        "application/x-protobuf",
                        prost::Message::encode_to_vec(&status),
                    )
                }
            }
        }
    })
}
