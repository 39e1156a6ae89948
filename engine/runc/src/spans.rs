//! Init's stages as spans. Init measures when it passed each step of its setup
//! and reports the times over the handshake; it never exports anything itself,
//! since it is about to `exec` a program that knows nothing of tracing. This
//! process records those times as children of its current span.

use std::time::{Duration, SystemTime};

use berth_libcontainer::sync::Stage;
use opentelemetry::trace::{Span, Tracer, TracerProvider};

/// Records each stage as a span, child of the current span, with init's own times.
/// Does nothing when tracing is off.
pub fn record(stages: &[Stage]) {
    let parent = berth_trace::current_context();
    if !berth_trace::context::has_span(&parent) {
        return;
    }
    let tracer = opentelemetry::global::tracer_provider().tracer("berth-runc");
    let at = |us: u64| SystemTime::UNIX_EPOCH + Duration::from_micros(us);
    for stage in stages {
        let mut span = tracer
            .span_builder(stage.name.clone())
            .with_start_time(at(stage.start_us))
            .with_attributes([opentelemetry::KeyValue::new("process", "container init")])
            .start_with_context(&tracer, &parent);
        span.end_with_timestamp(at(stage.end_us));
    }
}
