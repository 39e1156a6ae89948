//! Two traces side by side: the same `run` in chapter 01 and chapter 03, or a run before
//! and after a change. Steps are matched by their *path*: the (process, span name) pairs
//! from the root down to the step, so `berth-runc:create / container init:pivot_root`
//! in one trace meets the same path in the other, whatever the span ids and start times.
//! A name repeated under one parent is numbered (`#2`, `#3`) in order of start.
//!
//! Processes are matched by `service.name` (not pid, which differs between runs), or by
//! the recorded-for name of a lane such as `container init`. A step that finds no such
//! match is then matched by its span names alone, from the root down: that is how the
//! same `run` lines up between chapters whose processes are named differently (chapter
//! 01's daemon is `lxc-era`, chapter 03's is `split-era-daemon`), and how a step that
//! moved to another process still meets its old self.
//!
//! Read next: [`crate::api`], where the page asks for all this.

use std::collections::HashMap;

use serde::Serialize;

use crate::view::TraceView;

#[derive(Debug, Serialize)]
pub struct CompareView {
    pub a: Side,
    pub b: Side,
    /// Steps in tree order: A's steps, with B's extra steps after their predecessor in B.
    pub steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
pub struct Side {
    pub trace_id: String,
    pub root_name: String,
    pub duration_us: u64,
    pub span_count: usize,
}

#[derive(Debug, Serialize)]
pub struct Step {
    /// The matching key: `process:name` pairs from the root, joined by ` / `.
    pub path: String,
    /// The second key: the span names alone from the root, for steps the first misses.
    #[serde(skip)]
    names: String,
    pub depth: usize,
    pub name: String,
    pub process: String,
    /// The lane colour, as in the trace view.
    pub color: usize,
    pub a: Option<Timing>,
    pub b: Option<Timing>,
    /// `b.duration_us - a.duration_us`, when both have the step.
    pub diff_us: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub span: String,
    pub start_us: u64,
    pub duration_us: u64,
    pub self_us: u64,
}

struct Keyed {
    path: String,
    names: String,
    depth: usize,
    name: String,
    process: String,
    color: usize,
    timing: Timing,
}

// ANCHOR: step_paths
/// Each span of `view` with its path key, in tree order.
fn keyed(view: &TraceView) -> Vec<Keyed> {
    let mut path_of: HashMap<&str, (String, String)> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for span in &view.spans {
        let lane = &view.lanes[span.lane];
        let process = match lane.recorded_by {
            Some(_) => lane.name.clone(),
            None => lane.service.clone(),
        };
        let step = format!("{process}:{}", span.name);
        let parent = span.parent.as_deref().and_then(|p| path_of.get(p));
        let (path, names) = match parent {
            Some((path, names)) => (
                format!("{path} / {step}"),
                format!("{names} / {}", span.name),
            ),
            None => (step, span.name.clone()),
        };
        let path = numbered(&mut seen, path);
        let names = numbered(&mut seen_names, names);
        path_of.insert(&span.id, (path.clone(), names.clone()));
        out.push(Keyed {
            path,
            names,
            depth: span.depth,
            name: span.name.clone(),
            process,
            color: lane.color,
            timing: Timing {
                span: span.id.clone(),
                start_us: span.start_us,
                duration_us: span.duration_us,
                self_us: span.self_us,
            },
        });
    }
    out
}
// ANCHOR_END: step_paths

/// `key`, or `key#n` for the n-th time it is seen: a name repeated under one parent.
fn numbered(seen: &mut HashMap<String, usize>, key: String) -> String {
    let n = seen.entry(key.clone()).or_insert(0);
    *n += 1;
    if *n > 1 {
        format!("{key}#{n}")
    } else {
        key
    }
}

fn side(view: &TraceView) -> Side {
    Side {
        trace_id: view.trace_id.clone(),
        root_name: view
            .spans
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        duration_us: view.duration_us,
        span_count: view.spans.len(),
    }
}

/// Aligns `b` against `a`.
pub fn compare(a: &TraceView, b: &TraceView) -> CompareView {
    let b_steps = keyed(b);
    let mut steps: Vec<Step> = keyed(a)
        .into_iter()
        .map(|k| Step {
            path: k.path,
            names: k.names,
            depth: k.depth,
            name: k.name,
            process: k.process,
            color: k.color,
            a: Some(k.timing),
            b: None,
            diff_us: None,
        })
        .collect();
    // Which of A's steps each of B's meets: first by path, then, among A's steps still
    // alone, by span names.
    let mut matched: Vec<Option<usize>> = b_steps
        .iter()
        .map(|k| steps.iter().position(|s| s.path == k.path))
        .collect();
    for (i, k) in b_steps.iter().enumerate() {
        if matched[i].is_none() {
            matched[i] = (0..steps.len())
                .find(|at| steps[*at].names == k.names && !matched.contains(&Some(*at)));
        }
    }
    // Merge B in: a step both have gets B's timing; a step only B has goes right after
    // the step that precedes it in B, so it lands under its parent.
    let mut after: Vec<Vec<Step>> = (0..=steps.len()).map(|_| Vec::new()).collect();
    let mut anchor = 0; // 0: before A's first step; i + 1: after A's step i.
    for (k, at) in b_steps.into_iter().zip(matched) {
        match at {
            Some(at) => {
                steps[at].b = Some(k.timing);
                anchor = at + 1;
            }
            None => after[anchor].push(Step {
                path: k.path,
                names: k.names,
                depth: k.depth,
                name: k.name,
                process: k.process,
                color: k.color,
                a: None,
                b: Some(k.timing),
                diff_us: None,
            }),
        }
    }
    let mut merged = Vec::with_capacity(steps.len());
    let mut after = after.into_iter();
    merged.extend(after.next().unwrap_or_default());
    for (step, extra) in steps.into_iter().zip(after) {
        merged.push(step);
        merged.extend(extra);
    }
    let mut steps = merged;
    for step in &mut steps {
        if let (Some(a), Some(b)) = (&step.a, &step.b) {
            step.diff_us = Some(b.duration_us as i64 - a.duration_us as i64);
        }
    }
    CompareView {
        a: side(a),
        b: side(b),
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::to_traces;
    use crate::testdata;
    use crate::view::build;

    #[test]
    fn compare_snapshot() {
        let a = build(&to_traces(testdata::container_start())[0]);
        let b = build(&to_traces(testdata::slower_container_start())[0]);
        insta::assert_json_snapshot!(compare(&a, &b));
    }

    #[test]
    fn steps_match_by_path_and_extra_steps_sit_under_their_parent() {
        let a = build(&to_traces(testdata::container_start())[0]);
        let b = build(&to_traces(testdata::slower_container_start())[0]);
        let view = compare(&a, &b);
        let pull = view
            .steps
            .iter()
            .position(|s| s.name == "pull busybox")
            .unwrap();
        assert_eq!(view.steps[pull - 1].name, "POST /containers/create");
        assert!(view.steps[pull].a.is_none());
        let clone = view.steps.iter().find(|s| s.name == "clone").unwrap();
        assert_eq!(clone.diff_us, Some(300));
        assert_eq!(
            clone.path,
            "berth:run / berthd:POST /containers/{id}/start / \
             berth-containerd:containerd.services.tasks.v1.Tasks/Create / \
             berth-shim:containerd.task.v2.Task/Create / berth-runc:create / berth-runc:clone"
        );
    }

    #[test]
    fn steps_of_differently_named_processes_meet_by_span_names() {
        let a = build(&to_traces(testdata::container_start())[0]);
        // The same run, every process renamed, as another chapter names its binaries.
        let mut renamed = testdata::slower_container_start();
        for received in &mut renamed {
            for attribute in &mut received.process.attributes {
                if attribute.key == "service.name" {
                    let crate::model::Value::String(name) = &attribute.value else {
                        continue;
                    };
                    attribute.value = crate::model::Value::String(format!("other-{name}"));
                }
            }
        }
        let b = build(&to_traces(renamed)[0]);
        let view = compare(&a, &b);
        let clone = view.steps.iter().find(|s| s.name == "clone").unwrap();
        assert!(clone.a.is_some() && clone.b.is_some(), "{:?}", clone.path);
        assert_eq!(clone.diff_us, Some(300));
        // Matched steps are not listed twice, and B's extra step still sits in place.
        assert_eq!(view.steps.iter().filter(|s| s.name == "clone").count(), 1);
        let pull = view
            .steps
            .iter()
            .position(|s| s.name == "pull busybox")
            .unwrap();
        assert_eq!(view.steps[pull - 1].name, "POST /containers/create");
    }
}
