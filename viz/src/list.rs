//! The trace list: one line per trace, container starts first, and the filters the page
//! (and `curl`) can apply: by service, root span name, duration and time.
//!
//! Read next: [`crate::view`], one trace in full.

use serde::Serialize;

use crate::model::{StatusCode, Trace};
use crate::view::tree_order;

/// Span names that mark a trace as a container start, at any depth: the engine's API
/// call, the supervisor's and shim's task creation, the runtime's verbs, and the
/// chapters' daemons' `POST /containers` (their `run`).
const CONTAINER_START_SPANS: &[&str] = &[
    "run",
    "create",
    "POST /containers/create",
    "POST /containers",
    "containerd.services.tasks.v1.Tasks/Create",
    "containerd.task.v2.Task/Create",
];

/// One trace, in a line.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub trace_id: String,
    pub root_name: String,
    pub root_service: String,
    /// Every service that sent spans, in order of first span.
    pub services: Vec<String>,
    pub start_unix_ms: u64,
    pub duration_us: u64,
    pub span_count: usize,
    pub error_count: usize,
    pub container_start: bool,
}

pub fn summary(trace: &Trace) -> Summary {
    let order = tree_order(trace);
    let root = order.first().map(|(i, _)| &trace.spans[*i]);
    let mut services: Vec<String> = Vec::new();
    for (i, _) in &order {
        let service = trace.processes[trace.spans[*i].process].service();
        if !services.iter().any(|s| s == service) {
            services.push(service.to_string());
        }
    }
    Summary {
        trace_id: trace.trace_id.clone(),
        root_name: root.map(|s| s.name.clone()).unwrap_or_default(),
        root_service: root
            .map(|s| trace.processes[s.process].service().to_string())
            .unwrap_or_default(),
        services,
        start_unix_ms: trace.start_unix_nano() / 1_000_000,
        duration_us: (trace.end_unix_nano() - trace.start_unix_nano()) / 1000,
        span_count: trace.spans.len(),
        error_count: trace
            .spans
            .iter()
            .filter(|s| s.status.code == StatusCode::Error)
            .count(),
        container_start: trace
            .spans
            .iter()
            .any(|s| CONTAINER_START_SPANS.contains(&s.name.as_str())),
    }
}

/// What the list may be narrowed to. Every field is optional; all given must hold.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// A service that sent at least one span of the trace (exact name).
    pub service: Option<String>,
    /// Part of the root span's name (case-insensitive).
    pub root: Option<String>,
    pub min_duration_us: Option<u64>,
    pub max_duration_us: Option<u64>,
    /// Traces that started at or after this moment (Unix milliseconds).
    pub since_unix_ms: Option<u64>,
    /// Traces that started at or before this moment (Unix milliseconds).
    pub until_unix_ms: Option<u64>,
    /// At most this many lines (default [`DEFAULT_LIMIT`]).
    pub limit: Option<usize>,
}

pub const DEFAULT_LIMIT: usize = 200;

impl Filter {
    fn keeps(&self, s: &Summary) -> bool {
        self.service
            .as_ref()
            .is_none_or(|want| s.services.iter().any(|have| have == want))
            && self
                .root
                .as_ref()
                .is_none_or(|want| s.root_name.to_lowercase().contains(&want.to_lowercase()))
            && self.min_duration_us.is_none_or(|min| s.duration_us >= min)
            && self.max_duration_us.is_none_or(|max| s.duration_us <= max)
            && self.since_unix_ms.is_none_or(|t| s.start_unix_ms >= t)
            && self.until_unix_ms.is_none_or(|t| s.start_unix_ms <= t)
    }
}

// ANCHOR: list
/// The list: container starts first, then newest first within each group.
pub fn list(traces: &[Trace], filter: &Filter) -> Vec<Summary> {
    let mut lines: Vec<Summary> = traces
        .iter()
        .map(summary)
        .filter(|s| filter.keeps(s))
        .collect();
    lines.sort_by(|a, b| {
        b.container_start
            .cmp(&a.container_start)
            .then(b.start_unix_ms.cmp(&a.start_unix_ms))
            .then(a.trace_id.cmp(&b.trace_id))
    });
    lines.truncate(filter.limit.unwrap_or(DEFAULT_LIMIT));
    lines
}
// ANCHOR_END: list

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::to_traces;
    use crate::testdata;

    #[test]
    fn list_snapshot() {
        let mut traces = to_traces(testdata::container_start());
        traces.extend(to_traces(testdata::slower_container_start()));
        insta::assert_json_snapshot!(list(&traces, &Filter::default()));
    }
}
