//! What the page is sent about a trace: the spans in tree order, each in its process's
//! lane, with the seams between processes named, self times and the critical path
//! worked out. The page only draws; every decision about a trace is made here, in Rust,
//! where it is unit-tested and snapshot-tested.
//!
//! Times are integer microseconds relative to the trace's start: small exact numbers the
//! page can do arithmetic on (JavaScript numbers lose precision past 2^53, and Unix
//! nanoseconds are already past 2^60).
//!
//! **Lanes.** A lane is a process: the spans one OTLP resource sent (`service.name`,
//! and `process.pid` when the SDK reports it). One exception: a span whose `process`
//! attribute names another process was recorded *on behalf of* that process and goes in
//! its lane. berth-runc does this for the container's init, which times its own steps
//! but never exports (it is about to `exec` the user's program).
//!
//! **Seams.** A span whose parent is in another lane crossed a process boundary; the
//! seam is named after how the trace context travelled (see [`Seam`]).
//!
//! Read next: [`crate::critical`], the critical path.

use std::collections::HashMap;

use serde::Serialize;

use crate::critical;
use crate::model::{Attribute, Span, StatusCode, Trace};

/// The span attribute naming the process a span was recorded for, when that is not
/// the process that sent it.
pub const LANE_ATTRIBUTE: &str = "process";

/// One trace, ready to draw.
#[derive(Debug, Serialize)]
pub struct TraceView {
    pub trace_id: String,
    pub start_unix_ms: u64,
    pub duration_us: u64,
    pub lanes: Vec<Lane>,
    /// In tree order: each span right after its parent, siblings by start time.
    pub spans: Vec<SpanView>,
    /// The stretches of time the trace's end waited on, in time order.
    pub critical_path: Vec<critical::Segment>,
}

/// One process.
#[derive(Debug, Serialize)]
pub struct Lane {
    pub index: usize,
    /// What the page shows: `berth-runc`, `container init`, `my-app (pid 42)`.
    pub name: String,
    /// The process's part in a container start, when it is one berth knows.
    pub role: Option<&'static str>,
    pub service: String,
    /// One of ten colours; fixed per role, so a runtime is the same colour everywhere.
    pub color: usize,
    pub span_count: usize,
    /// The resource's attributes; for a recorded-for lane, those of the recording process.
    pub attributes: Vec<Shown>,
    /// The lane whose process recorded this one's spans (`container init` ← `berth-runc`).
    pub recorded_by: Option<usize>,
}

/// One span, as drawn.
#[derive(Debug, Serialize)]
pub struct SpanView {
    pub id: String,
    pub parent: Option<String>,
    /// Nesting depth in the tree (0 for a root).
    pub depth: usize,
    pub name: String,
    pub lane: usize,
    pub start_us: u64,
    pub duration_us: u64,
    /// The time spent in this span and in none of its children.
    pub self_us: u64,
    pub child_count: usize,
    pub kind: crate::model::SpanKind,
    pub status: StatusCode,
    pub status_message: String,
    pub scope: String,
    /// Whether some of this span lies on the critical path.
    pub critical: bool,
    /// Set when the parent is in another process.
    pub seam: Option<Seam>,
    /// The span names a parent the trace does not hold (yet): it is shown as a root.
    pub missing_parent: bool,
    pub attributes: Vec<Shown>,
    pub events: Vec<EventView>,
}

/// A process boundary the trace crossed: how the context got from the parent's lane to
/// this span's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Seam {
    pub from_lane: usize,
    /// `HTTP`, `gRPC`, `ttrpc`, `environment`, `sync pipe`, or `remote` when unknown.
    pub kind: &'static str,
    /// What carried the context, in words.
    pub carrier: &'static str,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub name: String,
    pub time_us: u64,
    pub attributes: Vec<Shown>,
}

/// An attribute as text, with its OTLP type for the curious.
#[derive(Debug, Serialize)]
pub struct Shown {
    pub key: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

fn shown(attributes: &[Attribute]) -> Vec<Shown> {
    use crate::model::Value;
    attributes
        .iter()
        .map(|kv| Shown {
            key: kv.key.clone(),
            value: kv.value.display(),
            kind: match kv.value {
                Value::Empty => "empty",
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                Value::Int(_) => "int",
                Value::Double(_) => "double",
                Value::Bytes(_) => "bytes",
                Value::Array(_) => "array",
                Value::Map(_) => "map",
            },
        })
        .collect()
}

// ANCHOR: roles
/// The part a process plays in a container start, from its `service.name` (or lane
/// name): berth's binaries and the real ones they stand in for.
pub fn role(name: &str) -> Option<&'static str> {
    Some(match name {
        "berth" | "docker" => "CLI",
        "berthd" | "dockerd" => "daemon",
        "berth-containerd" | "containerd" => "supervisor",
        "berth-shim" | "containerd-shim-berth-v2" | "containerd-shim-runc-v2" => "shim",
        "berth-runc" | "runc" => "runtime",
        "container init" => "container init",
        _ => return None,
    })
}
// ANCHOR_END: roles

fn role_color(role: &str) -> usize {
    match role {
        "CLI" => 0,
        "daemon" => 1,
        "supervisor" => 2,
        "shim" => 3,
        "runtime" => 4,
        _ => 5, // container init
    }
}

// ANCHOR: seam_kind
/// How the context crossed from `parent`'s process to `child`'s. The span's own
/// attributes say it best (OpenTelemetry's `rpc.system`, `http.request.method`); when
/// they are silent, the two processes' roles do, since each berth hop has one carrier.
fn seam_kind(child: &Span, child_role: Option<&str>, parent_role: Option<&str>) -> Seam {
    let (kind, carrier) = match (
        child.attribute("rpc.system").and_then(|v| v.as_str()),
        child_role,
        parent_role,
    ) {
        (_, Some("container init"), _) => (
            "sync pipe",
            "timestamps sent back over the runtime's sync pipe",
        ),
        (Some("grpc"), _, _) => ("gRPC", "gRPC metadata traceparent"),
        (Some("ttrpc"), _, _) => ("ttrpc", "ttrpc request metadata traceparent"),
        _ if child.attribute("http.request.method").is_some()
            || child.attribute("http.method").is_some() =>
        {
            ("HTTP", "HTTP header traceparent")
        }
        (_, Some("daemon"), Some("CLI")) => ("HTTP", "HTTP header traceparent"),
        (_, Some("supervisor"), Some("daemon")) => ("gRPC", "gRPC metadata traceparent"),
        (_, Some("shim"), Some("supervisor")) => ("ttrpc", "ttrpc request metadata traceparent"),
        (_, Some("runtime"), _) => ("environment", "environment variable TRACEPARENT"),
        _ => (
            "remote",
            "a W3C traceparent, by a carrier the span does not name",
        ),
    };
    Seam {
        from_lane: 0,
        kind,
        carrier,
    }
}
// ANCHOR_END: seam_kind

/// The lane key of a span: its process, and the process it was recorded for, if any.
type LaneKey = (usize, Option<String>);

fn lane_key(span: &Span) -> LaneKey {
    let recorded_for = span
        .attribute(LANE_ATTRIBUTE)
        .and_then(|v| v.as_str())
        .map(str::to_string);
    (span.process, recorded_for)
}

/// Microseconds between `t0` and `t` (both Unix nanoseconds), rounded down.
fn us(t0: u64, t: u64) -> u64 {
    t.saturating_sub(t0) / 1000
}

/// Builds the view of one trace.
pub fn build(trace: &Trace) -> TraceView {
    let t0 = trace.start_unix_nano();
    let order = tree_order(trace);

    // Lanes in order of their first span in the tree, so the page reads top-down the
    // way the start went: CLI, daemon, supervisor, shim, runtime, init.
    let mut lane_keys: Vec<LaneKey> = Vec::new();
    for (index, _) in &order {
        let key = lane_key(&trace.spans[*index]);
        if !lane_keys.contains(&key) {
            lane_keys.push(key);
        }
    }
    let lane_of = |span: &Span| {
        let key = lane_key(span);
        lane_keys.iter().position(|k| *k == key).unwrap_or(0)
    };
    let mut next_free_color = 6;
    let lanes: Vec<Lane> = lane_keys
        .iter()
        .enumerate()
        .map(|(index, (process_index, recorded_for))| {
            let process = &trace.processes[*process_index];
            let name = match (recorded_for, process.pid()) {
                (Some(name), _) => name.clone(),
                (None, Some(pid)) => format!("{} (pid {pid})", process.service()),
                (None, None) => process.service().to_string(),
            };
            let role = role(&name).or_else(|| role(process.service()));
            let color = match role {
                Some(role) => role_color(role),
                None => {
                    next_free_color += 1;
                    6 + (next_free_color - 7) % 4
                }
            };
            Lane {
                index,
                name,
                role,
                service: process.service().to_string(),
                color,
                span_count: 0,
                attributes: shown(&process.attributes),
                recorded_by: recorded_for
                    .as_ref()
                    .and_then(|_| lane_keys.iter().position(|k| *k == (*process_index, None))),
            }
        })
        .collect();
    let mut lanes = lanes;

    let by_id: HashMap<&str, usize> = trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let children = children(trace);
    let critical = critical::path(trace, &children, &order);

    let spans = order
        .iter()
        .map(|(index, depth)| {
            let span = &trace.spans[*index];
            let lane = lane_of(span);
            lanes[lane].span_count += 1;
            let parent = span
                .parent_span_id
                .as_deref()
                .and_then(|id| by_id.get(id).copied());
            let seam = parent.and_then(|p| {
                let parent_lane = lane_of(&trace.spans[p]);
                let crossed = parent_lane != lane || span.parent_is_remote() == Some(true);
                crossed.then(|| Seam {
                    from_lane: parent_lane,
                    ..seam_kind(span, lanes[lane].role, lanes[parent_lane].role)
                })
            });
            let start_us = us(t0, span.start_unix_nano);
            SpanView {
                id: span.span_id.clone(),
                parent: span.parent_span_id.clone(),
                depth: *depth,
                name: span.name.clone(),
                lane,
                start_us,
                duration_us: us(t0, span.end_unix_nano) - start_us,
                self_us: self_time(trace, &children[*index], span) / 1000,
                child_count: children[*index].len(),
                kind: span.kind,
                status: span.status.code,
                status_message: span.status.message.clone(),
                scope: span.scope.clone(),
                critical: critical.iter().any(|s| s.span == span.span_id),
                seam,
                missing_parent: span.parent_span_id.is_some() && parent.is_none(),
                attributes: shown(&span.attributes),
                events: span
                    .events
                    .iter()
                    .map(|e| EventView {
                        name: e.name.clone(),
                        time_us: us(t0, e.time_unix_nano),
                        attributes: shown(&e.attributes),
                    })
                    .collect(),
            }
        })
        .collect();

    TraceView {
        trace_id: trace.trace_id.clone(),
        start_unix_ms: t0 / 1_000_000,
        duration_us: us(t0, trace.end_unix_nano()),
        lanes,
        spans,
        critical_path: critical
            .into_iter()
            .map(|s| critical::Segment {
                start_us: us(t0, s.start_nano),
                end_us: us(t0, s.end_nano),
                span: s.span,
            })
            .collect(),
    }
}

/// For each span (by index), the indices of its children, sorted by start time.
pub fn children(trace: &Trace) -> Vec<Vec<usize>> {
    let by_id: HashMap<&str, usize> = trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut children = vec![Vec::new(); trace.spans.len()];
    for (i, span) in trace.spans.iter().enumerate() {
        if let Some(&p) = span.parent_span_id.as_deref().and_then(|id| by_id.get(id)) {
            if p != i {
                children[p].push(i);
            }
        }
    }
    for list in &mut children {
        list.sort_by_key(|&i| sort_key(&trace.spans[i]));
    }
    children
}

fn sort_key(span: &Span) -> (u64, u64, String) {
    // Start, then the longer first (a parent before a child that starts with it), then
    // the name: a total order, so the page never reorders from one load to the next.
    (
        span.start_unix_nano,
        u64::MAX - span.end_unix_nano,
        span.name.clone(),
    )
}

/// The spans as `(index, depth)` in tree order: roots (spans without a parent in the
/// trace) by start time, each followed by its subtree.
pub fn tree_order(trace: &Trace) -> Vec<(usize, usize)> {
    let children = children(trace);
    let has_parent: Vec<bool> = {
        let mut has = vec![false; trace.spans.len()];
        for list in &children {
            for &c in list {
                has[c] = true;
            }
        }
        has
    };
    let mut roots: Vec<usize> = (0..trace.spans.len()).filter(|&i| !has_parent[i]).collect();
    roots.sort_by_key(|&i| sort_key(&trace.spans[i]));
    let mut order = Vec::with_capacity(trace.spans.len());
    let mut seen = vec![false; trace.spans.len()];
    let visit = |root: usize, order: &mut Vec<(usize, usize)>, seen: &mut Vec<bool>| {
        // An explicit stack, not recursion: a malicious or buggy export could nest deeply.
        let mut stack = vec![(root, 0)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue; // a cycle of parent ids: show each span once
            }
            order.push((i, depth));
            for &c in children[i].iter().rev() {
                stack.push((c, depth + 1));
            }
        }
    };
    for root in roots {
        visit(root, &mut order, &mut seen);
    }
    // Spans whose parent ids form a cycle have no root above them: shown as roots too,
    // so that no span received is ever missing from the page.
    for i in 0..trace.spans.len() {
        if !seen[i] {
            visit(i, &mut order, &mut seen);
        }
    }
    order
}

/// Nanoseconds of `span` covered by none of its children (children clipped to it).
fn self_time(trace: &Trace, children: &[usize], span: &Span) -> u64 {
    let mut covered = 0;
    let mut cursor = span.start_unix_nano;
    // Children are sorted by start: sweep once, counting each instant once.
    for &c in children {
        let child = &trace.spans[c];
        let start = child.start_unix_nano.max(cursor);
        let end = child.end_unix_nano.min(span.end_unix_nano);
        if end > start {
            covered += end - start;
            cursor = end;
        }
    }
    span.duration_nano().saturating_sub(covered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::to_traces;
    use crate::testdata;

    fn view() -> TraceView {
        build(&to_traces(testdata::container_start())[0])
    }

    #[test]
    fn one_lane_per_process_in_the_order_the_start_went() {
        let names: Vec<_> = view().lanes.into_iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "berth",
                "berthd",
                "berth-containerd",
                "berth-shim",
                "berth-runc",
                "container init"
            ]
        );
    }

    #[test]
    fn seams_name_their_carrier() {
        let view = view();
        let seams: Vec<(&str, &str)> = view
            .spans
            .iter()
            .filter_map(|s| Some((s.name.as_str(), s.seam.as_ref()?.kind)))
            .collect();
        assert_eq!(
            seams,
            [
                ("POST /containers/create", "HTTP"),
                ("POST /containers/{id}/start", "HTTP"),
                ("containerd.services.tasks.v1.Tasks/Create", "gRPC"),
                ("containerd.task.v2.Task/Create", "ttrpc"),
                ("create", "environment"),
                ("mounts", "sync pipe"),
                ("pivot_root", "sync pipe"),
                ("delete", "environment"),
            ]
        );
    }

    #[test]
    fn self_time_leaves_out_the_children() {
        let view = view();
        let create = view.spans.iter().find(|s| s.name == "create").unwrap();
        // 900 µs, of which cgroups, clone, mounts, pivot_root take 80+200+200+200.
        assert_eq!((create.duration_us, create.self_us), (900, 220));
    }

    #[test]
    fn container_start_snapshot() {
        insta::assert_json_snapshot!(view());
    }

    /// A real berth-runc run, as exported by berth-viz itself (tests/fixtures).
    #[test]
    fn real_runc_run_snapshot() {
        let body = include_bytes!("../tests/fixtures/runc-run-1.json");
        let request = crate::otlp::decode(body, crate::otlp::Encoding::Json).unwrap();
        let trace = &to_traces(crate::otlp::flatten(request).unwrap())[0];
        insta::assert_json_snapshot!(build(trace));
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_a_root() {
        let mut spans = testdata::container_start();
        spans.retain(|r| r.span.name != "containerd.task.v2.Task/Create");
        let view = build(&to_traces(spans)[0]);
        let create = view.spans.iter().find(|s| s.name == "create").unwrap();
        assert!(create.missing_parent);
        assert_eq!(create.depth, 0);
    }
}
