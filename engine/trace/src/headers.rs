//! The header carrier: a trace context in HTTP headers, and so in gRPC metadata too.
//!
//! The CLI sends `traceparent` to berthd as an ordinary HTTP header; berthd sends it to
//! berth-containerd as gRPC metadata, which is nothing but HTTP/2 headers (tonic's
//! `MetadataMap` wraps an [`http::HeaderMap`]: `into_headers` / `from_headers`). One
//! pair of functions serves both hops.
//!
//! Read next: [`crate::env`], the carrier for a hop that is a process start, not a request.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::Context;

use crate::context;

/// Adds the current span's `traceparent` (and `tracestate`) to `headers`, for an
/// outgoing request. Adds nothing when exporting is off or no exported span is current.
pub fn inject(headers: &mut HeaderMap) {
    inject_context(&context::current_context(), headers);
}

/// Adds `cx` to `headers`; [`inject`] with the context given rather than the current one.
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    context::inject_context(cx, &mut HeaderInjector(headers));
}

/// The parent context an incoming request names; no span in it when it names none.
/// Pass it to [`crate::set_parent`] for the span that handles the request.
pub fn extract(headers: &HeaderMap) -> Context {
    context::extract(&HeaderExtractor(headers))
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator always writes `tracestate`, empty when there is none; W3C lets
        // a sender leave an empty one out, and a shorter request is easier to read.
        if value.is_empty() {
            return;
        }
        // The propagator writes fixed lower-case names and ASCII values, so both parse;
        // a header that did not would be left out rather than sent half-formed.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // Header names are case-insensitive; `HeaderMap` already compares them that way.
        // Only the first of repeated headers is read. A real engine would join repeated
        // `tracestate` headers into one list, as W3C allows a sender to split it; berth
        // doesn't because its own senders never split it.
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;
    use crate::context::has_span;

    fn remote_context(trace_state: TraceState) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            trace_state,
        ))
    }

    #[test]
    fn a_context_survives_a_round_trip_through_headers() {
        let state = TraceState::from_key_value([("berth", "shim")]).unwrap();
        let mut headers = HeaderMap::new();
        inject_context(&remote_context(state), &mut headers);

        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(headers["tracestate"], "berth=shim");

        let back = extract(&headers);
        let span = back.span();
        let got = span.span_context();
        assert_eq!(
            got.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(got.span_id().to_string(), "00f067aa0ba902b7");
        assert!(got.is_sampled());
        assert!(got.is_remote(), "a context from another process is remote");
        assert_eq!(got.trace_state().get("berth"), Some("shim"));
    }

    #[test]
    fn an_empty_tracestate_is_left_out() {
        let mut headers = HeaderMap::new();
        inject_context(&remote_context(TraceState::default()), &mut headers);
        assert!(headers.contains_key("traceparent"));
        assert!(!headers.contains_key("tracestate"));
    }

    #[test]
    fn no_context_means_no_header() {
        let mut headers = HeaderMap::new();
        inject_context(&Context::new(), &mut headers);
        assert!(headers.is_empty());
        // And outside any subscriber, "the current span" has no context either.
        inject(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "TraceParent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(has_span(&extract(&headers)));
    }

    #[test]
    fn a_garbage_traceparent_gives_no_parent() {
        for garbage in [
            "",
            "hello",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", HeaderValue::from_str(garbage).unwrap());
            assert!(!has_span(&extract(&headers)), "{garbage:?} gave a parent");
        }
    }
}
