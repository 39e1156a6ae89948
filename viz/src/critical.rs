//! The critical path: the chain of work the end of the trace waited on. Shortening
//! anything on it makes the container start sooner; shortening anything off it does not.
//!
//! The walk is the one Jaeger uses. Start at the end of a root span and go back in time.
//! At each moment, the span is waiting either on itself (its own code is running) or on
//! the child that finished last before that moment; follow that child down, then carry
//! on backwards from the child's start. Children that overlap a later critical child
//! are skipped: they ran in parallel with it and were not what the parent waited on.
//!
//! A child that reaches outside its parent is clipped to the parent: a span from another
//! process whose clock is a little off, or berth-runc's `wait for start`, which init
//! begins during `create`, long before the `start` it belongs to. So the path never
//! leaves its root's window, and no two of its segments overlap.
//!
//! Read next: [`crate::compare`], two traces side by side.

use serde::Serialize;

use crate::model::Trace;

/// A stretch of time during which `span` itself was what the trace waited on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub span: String,
    pub start_us: u64,
    pub end_us: u64,
}

/// A [`Segment`] in Unix nanoseconds, before it is made relative to the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSegment {
    pub span: String,
    pub start_nano: u64,
    pub end_nano: u64,
}

// ANCHOR: critical_path
/// The critical path of every root in `order` (the tree order of
/// [`crate::view::tree_order`]), in time order.
pub fn path(trace: &Trace, children: &[Vec<usize>], order: &[(usize, usize)]) -> Vec<RawSegment> {
    let mut out = Vec::new();
    let mut seen = vec![false; trace.spans.len()];
    for &(root, depth) in order {
        if depth == 0 {
            walk(trace, children, root, (0, u64::MAX), &mut seen, &mut out);
        }
    }
    out.sort_by_key(|s| s.start_nano);
    out
}

fn walk(
    trace: &Trace,
    children: &[Vec<usize>],
    index: usize,
    (from, until): (u64, u64),
    seen: &mut [bool],
    out: &mut Vec<RawSegment>,
) {
    if std::mem::replace(&mut seen[index], true) {
        return; // a cycle of parent ids: walk each span once
    }
    let span = &trace.spans[index];
    // The span's window, clipped to the part of its parent's that is still to explain.
    let start = span.start_unix_nano.max(from);
    let mut cursor = span.end_unix_nano.min(until);
    if cursor <= start {
        return;
    }
    let segment = |start: u64, end: u64, out: &mut Vec<RawSegment>| {
        if end > start {
            out.push(RawSegment {
                span: span.span_id.clone(),
                start_nano: start,
                end_nano: end,
            });
        }
    };
    // The children by end time, latest first: the one that ended last is the one waited on.
    let mut by_end = children[index].clone();
    by_end.sort_by_key(|&c| std::cmp::Reverse(trace.spans[c].end_unix_nano));
    for c in by_end {
        let child = &trace.spans[c];
        if child.start_unix_nano >= cursor || child.end_unix_nano <= start {
            continue; // ran beside a later critical child, or outside this span
        }
        let child_end = child.end_unix_nano.min(cursor);
        // Between the child's end and the cursor, the span was busy on its own.
        segment(child_end, cursor, out);
        walk(trace, children, c, (start, child_end), seen, out);
        cursor = child.start_unix_nano.max(start);
        if cursor <= start {
            break;
        }
    }
    segment(start, cursor, out);
}
// ANCHOR_END: critical_path

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Process, Span, SpanKind, Status, StatusCode};
    use crate::view::{children, tree_order};

    /// A trace from `(id, parent, start, end)`, times in nanoseconds.
    fn trace(spans: &[(u8, Option<u8>, u64, u64)]) -> Trace {
        Trace {
            trace_id: "0".repeat(32),
            processes: vec![Process {
                attributes: Vec::new(),
            }],
            spans: spans
                .iter()
                .map(|&(id, parent, start, end)| Span {
                    span_id: id.to_string(),
                    parent_span_id: parent.map(|p| p.to_string()),
                    name: id.to_string(),
                    kind: SpanKind::Internal,
                    start_unix_nano: start,
                    end_unix_nano: end,
                    process: 0,
                    scope: String::new(),
                    attributes: Vec::new(),
                    events: Vec::new(),
                    status: Status {
                        code: StatusCode::Unset,
                        message: String::new(),
                    },
                    flags: 0,
                })
                .collect(),
        }
    }

    fn critical(spans: &[(u8, Option<u8>, u64, u64)]) -> Vec<(String, u64, u64)> {
        let t = trace(spans);
        path(&t, &children(&t), &tree_order(&t))
            .into_iter()
            .map(|s| (s.span, s.start_nano, s.end_nano))
            .collect()
    }

    fn seg(span: &str, start: u64, end: u64) -> (String, u64, u64) {
        (span.to_string(), start, end)
    }

    #[test]
    fn sequential_children_are_all_on_the_path() {
        assert_eq!(
            critical(&[
                (1, None, 0, 100),
                (2, Some(1), 10, 40),
                (3, Some(1), 50, 90)
            ]),
            [
                seg("1", 0, 10),
                seg("2", 10, 40),
                seg("1", 40, 50),
                seg("3", 50, 90),
                seg("1", 90, 100)
            ]
        );
    }

    #[test]
    fn of_two_parallel_children_the_one_that_ends_last_is_waited_on() {
        assert_eq!(
            critical(&[
                (1, None, 0, 100),
                (2, Some(1), 10, 80),
                (3, Some(1), 20, 60)
            ]),
            [seg("1", 0, 10), seg("2", 10, 80), seg("1", 80, 100)]
        );
    }

    #[test]
    fn a_child_that_starts_before_its_parent_is_clipped() {
        assert_eq!(
            critical(&[
                (1, None, 0, 100),
                (2, Some(1), 20, 40),
                (3, Some(2), 10, 30)
            ]),
            [
                seg("1", 0, 20),
                seg("3", 20, 30),
                seg("2", 30, 40),
                seg("1", 40, 100)
            ]
        );
    }

    #[test]
    fn a_child_that_outlives_its_parent_is_clipped() {
        assert_eq!(
            critical(&[(1, None, 0, 100), (2, Some(1), 50, 120)]),
            [seg("1", 0, 50), seg("2", 50, 100)]
        );
    }
}
