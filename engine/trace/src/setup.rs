//! Setup: the one [`init`] every berth binary calls first in `main`, and the [`Guard`]
//! that sends the last spans before the process ends.
//!
//! Two modes, chosen by the standard OpenTelemetry variables so that berth behaves like
//! any other instrumented program:
//!
//! - **quiet**, when neither `OTEL_EXPORTER_OTLP_ENDPOINT` nor
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (or both are empty): log lines on stderr,
//!   filtered by `RUST_LOG` (default `warn`), and nothing else: no OpenTelemetry provider,
//!   no exporter, no thread. A span then costs what an uninteresting `tracing` span
//!   costs, which is almost nothing.
//! - **exporting**: the same log lines, plus a layer that turns every span at `INFO` or
//!   above into an OpenTelemetry span and sends it, in batches, as OTLP over HTTP with
//!   protobuf bodies (berth-viz listens on `http://127.0.0.1:4318`).
//!
//! Read next: [`crate::context`], how a span's identity reaches the next process.

use std::fmt;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{
    ExporterBuildError, Protocol, RetryPolicy, SpanExporter, WithExportConfig, WithHttpConfig,
};
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::Layer;

/// The standard variable naming the OTLP receiver's base URL; the exporter adds `/v1/traces`.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable naming the full URL for traces only; it wins over [`ENDPOINT_VAR`].
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// How long one export (one HTTP request) may take. Short, because a process waits for
/// its last export before it exits, and the receiver is on the same machine: one that
/// has not answered in two seconds is not going to.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`Guard`]'s `Drop` waits for the final export: one export, plus slack.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot build the OTLP/HTTP span exporter for {endpoint}: {source}; fix the variable or unset it to turn exporting off")]
    Exporter {
        endpoint: Endpoint,
        source: ExporterBuildError,
    },
    #[error("a global tracing subscriber is already installed ({source}); call berth_trace::init once per process, first thing in main")]
    AlreadyInitialized { source: TryInitError },
    #[error("sending spans to {endpoint} failed: {source}; is an OTLP/HTTP receiver (berth-viz) listening there?")]
    Flush {
        endpoint: Endpoint,
        source: OTelSdkError,
    },
}

/// Where spans go: which standard variable named the receiver, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub var: &'static str,
    pub url: String,
}

impl Endpoint {
    /// The endpoint the standard variables name, if any. The traces-only variable is
    /// read first, as the OpenTelemetry specification orders them, and an empty value
    /// counts as unset. opentelemetry-otlp reads the same variables the same way when it
    /// builds the exporter; this function only decides *whether* to build it.
    pub fn from_env() -> Option<Endpoint> {
        [TRACES_ENDPOINT_VAR, ENDPOINT_VAR]
            .into_iter()
            .find_map(|var| {
                let url = std::env::var(var).ok().filter(|url| !url.is_empty())?;
                Some(Endpoint { var, url })
            })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.url, self.var)
    }
}

// ANCHOR: init
/// Installs this process's tracing: call it once, first thing in `main`, and keep the
/// [`Guard`] until the end of `main`.
///
/// `service_name` becomes the OpenTelemetry `service.name` of every span this process
/// exports (`"berthd"`, `"berth-runc"`, …): it is how a trace viewer puts each process
/// in its own lane. Works from plain code and from inside a tokio runtime alike.
pub fn init(service_name: &'static str) -> Result<Guard, SetupError> {
    // What a reader sees on stderr. `RUST_LOG` decides it, and only it: it must not
    // decide what the trace shows too, or its default (`warn`) would export nothing.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .from_env_lossy(),
        );

    let Some(endpoint) = Endpoint::from_env() else {
        // Quiet mode: not a single OpenTelemetry object is created.
        tracing_subscriber::registry()
            .with(stderr)
            .try_init()
            .map_err(|source| SetupError::AlreadyInitialized { source })?;
        return Ok(Guard { exporting: None });
    };

    // Built with rustls on (in a workspace build, where berth-containerd's registry
    // client turns it on for everyone), reqwest panics on building a client unless a
    // crypto provider is the process's default. One already set is left as it is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = provider(service_name, &endpoint)?;
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service_name))
        // `INFO` and above: berth's own spans are `info_span!`s. Lower levels are left
        // out so that the HTTP client sending the spans (whose spans are `DEBUG` and
        // `TRACE`) is never traced into the very trace it is sending.
        .with_filter(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(stderr)
        .with(spans)
        .try_init()
        .map_err(|source| SetupError::AlreadyInitialized { source })?;

    // berth's own helpers do not need these two globals (they use a propagator of their
    // own and the layer's tracer), but a library instrumented with the plain
    // OpenTelemetry API (`global::tracer`, `global::get_text_map_propagator`) then joins
    // the same trace instead of a silent no-op one.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    Ok(Guard {
        exporting: Some(Exporting { provider, endpoint }),
    })
}
// ANCHOR_END: init

/// The provider: turns ended spans into batches and hands them to the exporter.
fn provider(
    service_name: &'static str,
    endpoint: &Endpoint,
) -> Result<SdkTracerProvider, SetupError> {
    // The HTTP client is `reqwest::blocking` (opentelemetry-otlp's default). It has one
    // trap: it panics if it is *built* or *used* on a thread that is running a tokio
    // runtime, which is every thread of a `#[tokio::main]` daemon. Neither happens here:
    // opentelemetry-otlp builds the client on a short-lived thread of its own, and the
    // batch processor below sends from its own plain thread. Dropping the client only
    // joins its internal thread, which is safe anywhere. tests/tokio_runtime.rs holds
    // both runtime flavours to this.
    //
    // The client speaks plain HTTP only (no TLS feature is enabled). A real engine would
    // enable TLS to reach a remote collector; berth doesn't because its receiver,
    // berth-viz, listens on 127.0.0.1.
    let exporter = SpanExporter::builder()
        .with_http()
        // berth-viz and the tests decode protobuf, whatever `OTEL_EXPORTER_OTLP_PROTOCOL` says.
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        // Retries off. A runtime that lives 50 ms cannot wait out a backoff (100 ms, then
        // 200 ms, …) before it exits, and a receiver on the same machine that failed once
        // will fail again. A real engine exporting to a remote collector would retry;
        // berth doesn't because its receiver is local, and a missing trace must never
        // delay a container start.
        .with_retry_policy(RetryPolicy::disabled())
        .build()
        .map_err(|source| SetupError::Exporter {
            endpoint: endpoint.clone(),
            source,
        })?;

    // The batch processor, not the simple one: the simple one exports on the thread that
    // ends the span, so every span would cost a blocking HTTP round trip on a daemon's
    // tokio worker (where `reqwest::blocking` panics). The batch one queues ended spans
    // for its own thread, which sends them every few seconds and on every flush.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // `with_service_name` is applied last, so it wins over `OTEL_SERVICE_NAME`: every
        // berth process inherits its parent's environment, yet each must keep its own lane.
        // `process.pid` tells apart two processes of one binary (chapter 01's client and
        // daemon); without it their resources are equal and a viewer merges them.
        .with_resource(
            Resource::builder()
                .with_service_name(service_name)
                .with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())))
                .build(),
        )
        .build())
}

/// Keeps tracing alive; flushes and shuts the exporter down when dropped.
///
/// `Drop` does not run when a process calls `std::process::exit`, `exec`s, or is killed,
/// so a binary about to do one of those calls [`Guard::flush`] first. Only *ended* spans
/// are sent: close (drop) a span before flushing, or it is lost. A forked child (the
/// container's init, before it `exec`s) must neither flush nor drop the guard: the
/// exporter's thread exists only in the parent.
#[must_use = "dropping the Guard shuts tracing down at once: bind it with `let _guard = …` in main"]
#[derive(Debug)]
pub struct Guard {
    /// `None` in quiet mode: there is nothing to flush.
    exporting: Option<Exporting>,
}

#[derive(Debug)]
struct Exporting {
    provider: SdkTracerProvider,
    endpoint: Endpoint,
}

impl Guard {
    /// Whether this process exports spans. `false` means no OpenTelemetry provider,
    /// exporter or thread exists in it.
    pub fn is_exporting(&self) -> bool {
        self.exporting.is_some()
    }

    /// Sends every ended span now and waits until the receiver has answered (or the
    /// export timed out). For a binary about to `exit` or `exec`, where `Drop` won't run.
    /// Always `Ok` in quiet mode.
    pub fn flush(&self) -> Result<(), SetupError> {
        let Some(exporting) = &self.exporting else {
            return Ok(());
        };
        exporting
            .provider
            .force_flush()
            .map_err(|source| SetupError::Flush {
                endpoint: exporting.endpoint.clone(),
                source,
            })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(exporting) = self.exporting.take() else {
            return;
        };
        // Shutting down drains the queue and exports it before stopping the batch thread,
        // so it is a flush and a stop in one.
        if let Err(source) = exporting.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            // Drop cannot return an error, and a lost trace must not fail the program
            // it traced: say it on stderr and carry on.
            let error = SetupError::Flush {
                endpoint: exporting.endpoint,
                source,
            };
            tracing::warn!("{error}");
        }
    }
}
