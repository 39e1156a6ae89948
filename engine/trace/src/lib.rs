//! # berth-trace: one trace per `docker run`, across every berth process
//!
//! Every berth binary (berthd, berth-containerd, berth-shim, berth-runc, the CLI, the
//! chapter daemons) calls [`init`] first thing in `main` and keeps the [`Guard`] it gets
//! back until it is done. From then on its `tracing` spans are exported as OpenTelemetry
//! spans, and the helpers here carry a span's identity (its W3C `traceparent`) to the
//! next process, so that the spans of all four processes form one trace.
//!
//! Exporting is on only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and non-empty; when it is not, no
//! OpenTelemetry object exists at all and every helper here does nothing.
//!
//! # Layout
//! - [`setup`]: [`init`] and the [`Guard`]: the stderr log layer, the OTLP/HTTP exporter
//!   (when an endpoint is set) and flushing before the process ends.
//! - [`context`]: what every carrier shares: the W3C propagator, the current span's
//!   context, and [`set_parent`] to make a span the child of a context that came from
//!   another process.
//! - [`headers`]: the carrier for HTTP headers (and gRPC metadata, which is HTTP/2 headers).
//! - [`env`](mod@env): the carrier for environment variables (`TRACEPARENT`), for a parent that
//!   starts a child process instead of sending it a request.
//!
//! # How context crosses each hop
//!
//! | hop | carrier | helpers |
//! | --- | --- | --- |
//! | CLI → berthd | HTTP header `traceparent` | [`headers::inject`] / [`headers::extract`] |
//! | berthd → berth-containerd | gRPC metadata `traceparent` | [`headers::inject`] / [`headers::extract`] on the request's `http::HeaderMap` |
//! | berth-containerd → berth-shim | ttrpc request metadata `traceparent` | [`context::inject_current`] / [`context::extract`] with a small `Injector`/`Extractor` over the metadata map |
//! | berth-shim → berth-runc | environment variable `TRACEPARENT` | [`env::set_on_command`] / [`env::extract_from_process`] |
//! | berth-runc → container init | timestamps sent back over the runtime's sync channel, recorded as spans by berth-runc (init never exports: it is about to `exec` the user's program) | none: plain timestamps, no trace context |
//!
//! On the receiving side every hop ends the same way: extract a [`opentelemetry::Context`],
//! open the span for the work, call [`set_parent`] on it, *then* enter it.
//!
//! ```no_run
//! # fn main() -> Result<(), berth_trace::SetupError> {
//! let guard = berth_trace::init("berth-runc")?;
//! {
//!     let span = tracing::info_span!("create");
//!     berth_trace::set_parent(&span, berth_trace::env::extract_from_process());
//!     let _entered = span.enter();
//!     // ... the work ...
//! } // the span ends here, and only an ended span is exported
//! guard.flush()?; // before exit or exec, where Drop would not run
//! # Ok(())
//! # }
//! ```

pub mod context;
pub mod env;
pub mod headers;
pub mod setup;

pub use context::{current_context, set_parent};
pub use setup::{init, Guard, SetupError};
