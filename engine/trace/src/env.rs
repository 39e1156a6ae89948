//! The environment carrier: how a process that *starts* another hands it a trace context.
//!
//! berth-shim runs berth-runc as a command, not as a server it sends requests to, so
//! there is no header to put a `traceparent` in. OpenTelemetry's answer (its
//! specification's "environment variables as context propagation carriers") is the
//! child's environment: the same W3C fields, named `TRACEPARENT` and `TRACESTATE`.
//! Three rules from that specification shape this file:
//!
//! - names are upper-cased (`traceparent` → `TRACEPARENT`), as environment variables are;
//! - a variable that is set but empty counts as absent;
//! - nothing is set when there is no context to pass on.
//!
//! Read next: [`crate::setup`], where the receiving process's spans go.

use std::collections::HashMap;
use std::process::Command;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::Context;

use crate::context;

/// The variable that carries the parent span: `00-<trace id>-<span id>-<flags>`.
pub const TRACEPARENT: &str = "TRACEPARENT";
/// The variable that carries vendor-specific trace state, when there is any.
pub const TRACESTATE: &str = "TRACESTATE";

/// The `(NAME, value)` pairs that give a child process the current span as its parent.
/// Empty when exporting is off or no exported span is current.
pub fn vars_for_child() -> Vec<(String, String)> {
    vars_for_context(&context::current_context())
}

/// The `(NAME, value)` pairs for `cx`; [`vars_for_child`] with the context given.
pub fn vars_for_context(cx: &Context) -> Vec<(String, String)> {
    let mut injector = EnvInjector(Vec::new());
    context::inject_context(cx, &mut injector);
    injector.0
}

// ANCHOR: set_on_command
/// Sets [`vars_for_child`] on a command about to be spawned. Leaves the command alone
/// when there is nothing to pass on.
pub fn set_on_command(command: &mut Command) {
    let vars = vars_for_child();
    if vars.is_empty() {
        // Whatever this process inherited passes through untouched: a process that does
        // not export (or has no span open) then does not break the chain between its
        // parent and its child.
        return;
    }
    // A `TRACESTATE` inherited from this process's own parent belongs to another span:
    // the child must not read it beside the new `TRACEPARENT`.
    command.env_remove(TRACESTATE);
    command.envs(vars);
}
// ANCHOR_END: set_on_command

/// The parent context this process was started with, from its own environment.
/// Holds no span when `TRACEPARENT` is unset, empty or unparsable.
pub fn extract_from_process() -> Context {
    // `vars_os`, not `vars`: `std::env::vars` panics on a variable that is not UTF-8,
    // and a stray byte in an unrelated variable must not crash a container start.
    extract_from_vars(
        std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }),
    )
}

/// The parent context named by `vars`, a set of environment variables (for example a
/// child's environment being prepared, or a test's), without touching the process's own.
pub fn extract_from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Context {
    context::extract(&EnvExtractor(vars.into_iter().collect()))
}

// ANCHOR: env_carrier
struct EnvInjector(Vec<(String, String)>);

impl Injector for EnvInjector {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes `tracestate` even when empty; an empty variable would
        // only be skipped by the child, so it is not set at all.
        if !value.is_empty() {
            self.0.push((key.to_ascii_uppercase(), value));
        }
    }
}

struct EnvExtractor(HashMap<String, String>);

impl Extractor for EnvExtractor {
    fn get(&self, key: &str) -> Option<&str> {
        // The propagator asks for `traceparent`; the environment holds `TRACEPARENT`.
        // Only the upper-case name is read: environment variables are case-sensitive,
        // and the specification names them upper-case.
        let value = self.0.get(&key.to_ascii_uppercase())?;
        (!value.is_empty()).then_some(value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
// ANCHOR_END: env_carrier

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;
    use crate::context::has_span;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
    fn names_are_upper_case() {
        let state = TraceState::from_key_value([("berth", "shim")]).unwrap();
        assert_eq!(
            vars_for_context(&remote_context(state)),
            vars(&[(TRACEPARENT, PARENT), (TRACESTATE, "berth=shim")])
        );
    }

    #[test]
    fn an_empty_tracestate_is_not_set() {
        assert_eq!(
            vars_for_context(&remote_context(TraceState::default())),
            vars(&[(TRACEPARENT, PARENT)])
        );
    }

    #[test]
    fn nothing_is_set_without_a_context() {
        assert!(vars_for_context(&Context::new()).is_empty());
        // Outside any subscriber, "the current span" has no context either.
        assert!(vars_for_child().is_empty());

        let mut command = Command::new("true");
        command.env(TRACESTATE, "inherited=1");
        set_on_command(&mut command);
        let set: Vec<_> = command.get_envs().collect();
        assert_eq!(set.len(), 1, "set_on_command touched the command: {set:?}");
    }

    #[test]
    fn a_context_survives_a_round_trip_through_the_environment() {
        let state = TraceState::from_key_value([("berth", "shim")]).unwrap();
        let cx = extract_from_vars(vars_for_context(&remote_context(state)));
        let span = cx.span();
        let got = span.span_context();
        assert_eq!(
            got.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(got.span_id().to_string(), "00f067aa0ba902b7");
        assert!(got.is_remote());
        assert_eq!(got.trace_state().get("berth"), Some("shim"));
    }

    #[test]
    fn only_upper_case_names_are_read() {
        assert!(has_span(&extract_from_vars(vars(&[(TRACEPARENT, PARENT)]))));
        assert!(!has_span(&extract_from_vars(vars(&[(
            "traceparent",
            PARENT
        )]))));
    }

    #[test]
    fn empty_values_are_skipped() {
        let cx = extract_from_vars(vars(&[(TRACEPARENT, ""), (TRACESTATE, "")]));
        assert!(!has_span(&cx));

        // An empty TRACESTATE beside a good TRACEPARENT is simply no trace state.
        let cx = extract_from_vars(vars(&[(TRACEPARENT, PARENT), (TRACESTATE, "")]));
        assert!(has_span(&cx));
        assert_eq!(cx.span().span_context().trace_state().header(), "");
    }

    #[test]
    fn a_garbage_traceparent_gives_no_parent() {
        for garbage in [
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let cx = extract_from_vars(vars(&[(TRACEPARENT, garbage)]));
            assert!(!has_span(&cx), "{garbage:?} gave a parent");
        }
    }
}
