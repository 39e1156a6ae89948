//! What every carrier shares: the W3C Trace Context propagator, the current span's
//! context, and how a span is made the child of a span in another process.
//!
//! A *carrier* is anything that can take a few string key/value pairs to the next
//! process: HTTP headers, gRPC or ttrpc metadata, environment variables. OpenTelemetry
//! writes into a carrier through an [`Injector`] and reads from one through an
//! [`Extractor`]; [`crate::headers`] and [`crate::env`] are two such adapters, a dozen
//! lines each. What travels is the W3C `traceparent` (`00-<trace id>-<span id>-<flags>`)
//! and, when there is one, `tracestate`. A real engine would also propagate W3C
//! Baggage (application key/values riding along with the trace); berth doesn't because
//! nothing in it reads baggage.
//!
//! Read next: [`crate::headers`], the simplest carrier.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

/// The context a child of the current span should name as its parent: the innermost
/// entered span that is exported. Empty (no span in it) when exporting is off or no
/// exported span is entered.
pub fn current_context() -> Context {
    // OpenTelemetry's own current context, not `tracing::Span::current().context()`.
    // tracing-opentelemetry makes a span's context current while the span is entered,
    // but only for spans it exports (`INFO` and above); so inside a `DEBUG` span this
    // still names the exported span around it, where the `tracing` span would name
    // nothing at all.
    Context::current()
}

/// Writes the current span's context into a carrier. Writes nothing when there is none.
pub fn inject_current(injector: &mut dyn Injector) {
    inject_context(&current_context(), injector);
}

/// Writes `cx` into a carrier, as W3C `traceparent` (and `tracestate`). Writes nothing
/// when `cx` holds no valid span, which is what makes every helper a no-op when
/// exporting is off.
pub fn inject_context(cx: &Context, injector: &mut dyn Injector) {
    // A propagator made here rather than the global one: the helpers then behave the
    // same before `init`, without `init` (quiet mode) and in unit tests. The W3C format
    // is the only one berth speaks, so there is nothing to configure.
    TraceContextPropagator::new().inject_context(cx, injector);
}

/// Reads a context from a carrier. The result holds no span (see [`has_span`]) when
/// the carrier has no `traceparent`, or one that does not parse.
pub fn extract(extractor: &dyn Extractor) -> Context {
    // From an empty context, not `Context::current()` (what `TextMapPropagator::extract`
    // starts from): a carrier without a valid `traceparent` must mean "no parent", never
    // silently "whatever span this thread is in".
    TraceContextPropagator::new().extract_with_context(&Context::new(), extractor)
}

/// Whether `cx` names a span, that is, whether it can be a parent.
pub fn has_span(cx: &Context) -> bool {
    cx.span().span_context().is_valid()
}

/// Makes `span` the child of `parent`, a context extracted from another process.
///
/// Call it after creating the span and *before* entering it: once a span has started,
/// its parent is fixed. Does nothing when `parent` names no span (the span keeps its
/// ordinary `tracing` parent), when exporting is off, or when the span is filtered out.
///
/// ```
/// let parent = berth_trace::env::extract_from_vars([(
///     "TRACEPARENT".to_string(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
/// )]);
/// let span = tracing::info_span!("create");
/// berth_trace::set_parent(&span, parent);
/// let _entered = span.enter();
/// ```
pub fn set_parent(span: &tracing::Span, parent: Context) {
    if !has_span(&parent) {
        return;
    }
    match span.set_parent(parent) {
        Ok(()) => {}
        // A mistake in the caller, not in the environment: say so, loudly enough to be fixed.
        Err(SetParentError::AlreadyStarted) => tracing::warn!(
            "set_parent called on a span that has already started; \
             call it right after creating the span, before entering it"
        ),
        // No OpenTelemetry layer (exporting is off) or the span is filtered out:
        // there is no exported span to give a parent to, which is fine.
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    use super::*;
    use crate::env;

    /// Keeps every ended span in memory, so a test can look at parents without a receiver.
    #[derive(Debug, Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Recorder {
        fn on_start(&self, _span: &mut Span, _cx: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    /// Runs `f` under a subscriber layered as `init`'s is, for this thread only (unit
    /// tests share a process, so none of them may install a global one).
    fn with_exporting_subscriber(f: impl FnOnce()) -> Vec<SpanData> {
        let recorder = Recorder::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(recorder.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            // A log layer that wants everything, as with `RUST_LOG=trace`: `DEBUG` spans
            // then exist, even though they are not exported.
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(LevelFilter::INFO),
            );
        tracing::subscriber::with_default(subscriber, f);
        let spans = recorder.0.lock().unwrap().clone();
        spans
    }

    const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const REMOTE_SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn set_parent_hangs_a_span_under_a_remote_one() {
        let spans = with_exporting_subscriber(|| {
            let parent = env::extract_from_vars([(
                "TRACEPARENT".to_string(),
                format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"),
            )]);
            let span = tracing::info_span!("runc create");
            set_parent(&span, parent);
            let _entered = span.enter();
        });
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].span_context.trace_id(),
            TraceId::from_hex(REMOTE_TRACE).unwrap()
        );
        assert_eq!(
            spans[0].parent_span_id,
            SpanId::from_hex(REMOTE_SPAN).unwrap()
        );
        assert!(spans[0].parent_span_is_remote);
    }

    #[test]
    fn the_current_span_is_what_gets_injected() {
        let mut injected = Vec::new();
        let spans = with_exporting_subscriber(|| {
            let span = tracing::info_span!("shim start");
            let _entered = span.enter();
            injected = env::vars_for_child();
        });
        let span = &spans[0].span_context;
        assert_eq!(
            injected,
            [(
                "TRACEPARENT".to_string(),
                format!("00-{}-{}-01", span.trace_id(), span.span_id())
            )]
        );
    }

    #[test]
    fn inside_an_unexported_span_the_exported_one_around_it_is_injected() {
        let mut injected = Vec::new();
        let spans = with_exporting_subscriber(|| {
            let span = tracing::info_span!("shim start");
            let _entered = span.enter();
            let detail = tracing::debug_span!("spawn runtime");
            let _detail = detail.enter();
            injected = env::vars_for_child();
        });
        assert_eq!(spans.len(), 1, "the DEBUG span was exported");
        let span = &spans[0].span_context;
        assert_eq!(
            injected,
            [(
                "TRACEPARENT".to_string(),
                format!("00-{}-{}-01", span.trace_id(), span.span_id())
            )]
        );
    }

    #[test]
    fn once_a_span_is_left_it_is_no_longer_current() {
        let mut injected = vec![("not".to_string(), "called".to_string())];
        with_exporting_subscriber(|| {
            tracing::info_span!("done").in_scope(|| {});
            injected = env::vars_for_child();
        });
        assert!(injected.is_empty(), "{injected:?}");
    }

    #[test]
    fn an_empty_parent_leaves_the_tracing_parent_alone() {
        let spans = with_exporting_subscriber(|| {
            let outer = tracing::info_span!("outer");
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner");
            set_parent(&inner, env::extract_from_vars([]));
            let _inner = inner.enter();
        });
        let find = |name: &str| spans.iter().find(|span| span.name == name).unwrap();
        assert_eq!(
            find("inner").parent_span_id,
            find("outer").span_context.span_id()
        );
    }

    #[test]
    fn set_parent_after_entering_does_not_panic() {
        let spans = with_exporting_subscriber(|| {
            let span = tracing::info_span!("late");
            let _entered = span.enter();
            set_parent(
                &span,
                env::extract_from_vars([(
                    "TRACEPARENT".to_string(),
                    format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"),
                )]),
            );
        });
        // Too late: the span keeps the parent it started with (none).
        assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
    }
}
