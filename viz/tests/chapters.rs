//! The same `run` in chapter 01 and chapter 03, as berth-viz receives, lists, compares
//! and draws it: real chapter daemons and clients (`lxc-era`, `split-era`) exporting
//! to a real berth-viz on ephemeral ports, with nothing in between.
//!
//! Chapter 01 is one process for client and daemon (LXC's tools do the rest); chapter 03
//! splits the engine into client, daemon, supervisor, shim and runtime, five services in
//! one trace. Both daemons name their API span by route, so `POST /containers` (the
//! `run`) is the step the two chapters share.

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use berth_tests::build::workspace_binary;
use berth_tests::chapter::Daemon;
use serde_json::Value;

use common::{dump_dom, Viz};

/// Long-lived processes (daemons, the supervisor, shims) export on a batch timer of
/// about 5 s; twelve of those is plenty, and still a bound.
const EXPORT_PATIENCE: Duration = Duration::from_secs(60);

const CHAPTER_03_SERVICES: [&str; 5] = [
    "split-era",
    "split-era-daemon",
    "split-era-supervisor",
    "split-era-shim",
    "split-era-runtime",
];

fn services(summary: &Value) -> Vec<&str> {
    summary["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// The listed trace of a chapter's `run`, once all of it is in: the client's `request`
/// as the root (it is exported last, when the client exits), every service in
/// `want`, and the daemon's `POST /containers` in it.
fn run_trace<'a>(viz: &Viz, list: &'a [Value], want: &[&str]) -> Option<&'a Value> {
    list.iter().find(|summary| {
        let have = services(summary);
        summary["root_name"] == "request"
            && want.iter().all(|w| have.contains(w))
            && viz.get_json(&format!(
                "/api/traces/{}",
                summary["trace_id"].as_str().unwrap()
            ))["spans"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "POST /containers")
    })
}

/// Both chapters' `run`, traced into one berth-viz, and their trace ids once whole.
struct Runs {
    viz: Viz,
    /// Chapter 01's `run` and chapter 03's, as the list shows them.
    one: Value,
    three: Value,
    // Dropped before `viz`'s data: the daemons (and chapter 03's supervisor, shims and
    // containers) are killed by their Drop.
    _daemons: (Daemon, Daemon),
    _data: tempfile::TempDir,
}

impl Runs {
    fn a(&self) -> &str {
        self.one["trace_id"].as_str().unwrap()
    }
    fn b(&self) -> &str {
        self.three["trace_id"].as_str().unwrap()
    }
}

/// Starts berth-viz on ephemeral ports, runs `run busybox true` through chapter 01 and
/// chapter 03 with their exporters pointed at it, and waits (bounded) for both traces.
fn run_both_chapters() -> Runs {
    let data = tempfile::tempdir().unwrap();
    let viz = Viz::start(data.path());
    let env = vec![(
        "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
        viz.otlp_endpoint(),
    )];

    let lxc_era = workspace_binary("lxc-era");
    let split_era = workspace_binary("split-era");
    let chapter_01 = Daemon::start_with_env(lxc_era.to_str().unwrap(), env.clone());
    chapter_01.load();
    chapter_01.stdout(&["run", "busybox", "true"]);
    let chapter_03 = Daemon::start_with_env(split_era.to_str().unwrap(), env);
    chapter_03.load();
    chapter_03.stdout(&["run", "busybox", "true"]);

    let deadline = Instant::now() + EXPORT_PATIENCE;
    let (one, three) = loop {
        let list = viz.get_json("/api/traces?limit=1000");
        let list = list.as_array().unwrap();
        let one = run_trace(&viz, list, &["lxc-era"]);
        let three = run_trace(&viz, list, &CHAPTER_03_SERVICES);
        if let (Some(one), Some(three)) = (one, three) {
            break (one.clone(), three.clone());
        }
        assert!(
            Instant::now() < deadline,
            "after {EXPORT_PATIENCE:?}, berth-viz has not both runs' traces: \
             chapter 01 {}, chapter 03 {}; it lists {list:#?}",
            one.is_some(),
            three.is_some()
        );
        sleep(Duration::from_millis(250));
    };
    Runs {
        viz,
        one,
        three,
        _daemons: (chapter_01, chapter_03),
        _data: data,
    }
}

/// Whether some span of `lane` has its parent in another lane, with the seam marked.
fn entered_by_a_seam(spans: &[Value], lane: u64) -> bool {
    spans.iter().any(|s| {
        s["lane"] == lane
            && s["seam"]["from_lane"]
                .as_u64()
                .is_some_and(|from| from != lane)
    })
}

#[test]
fn both_chapters_runs_are_container_starts_with_a_lane_per_process() {
    let runs = run_both_chapters();
    let (one, three) = (&runs.one, &runs.three);
    assert_eq!(one["container_start"], true, "{one:#}");
    assert_eq!(three["container_start"], true, "{three:#}");
    assert_eq!(services(one), ["lxc-era"]);
    assert_eq!(services(three), CHAPTER_03_SERVICES);

    // Chapter 03: five processes, five lanes, and every lane but the client's entered
    // through a seam from another lane.
    let view = runs.viz.get_json(&format!("/api/traces/{}", runs.b()));
    let lanes = view["lanes"].as_array().unwrap();
    let spans = view["spans"].as_array().unwrap();
    assert_eq!(lanes.len(), 5, "{lanes:#?}");
    let root_lane = spans[0]["lane"].as_u64().unwrap();
    assert_eq!(lanes[root_lane as usize]["service"], "split-era");
    for lane in lanes {
        let index = lane["index"].as_u64().unwrap();
        if index != root_lane {
            assert!(
                entered_by_a_seam(spans, index),
                "no seam into {}",
                lane["name"]
            );
        }
    }

    // Chapter 01: client and daemon are one binary with one service.name, yet two
    // processes; the daemon's `POST /containers` still sits across a seam.
    let view = runs.viz.get_json(&format!("/api/traces/{}", runs.a()));
    let lanes = view["lanes"].as_array().unwrap();
    let spans = view["spans"].as_array().unwrap();
    assert_eq!(lanes.len(), 2, "{lanes:#?}");
    let api = spans
        .iter()
        .find(|s| s["name"] == "POST /containers")
        .unwrap();
    assert!(!api["seam"].is_null(), "{api:#}");
    assert_ne!(api["lane"], spans[0]["lane"]);

    // The compare page draws every step of both (matched or not).
    let compare = runs
        .viz
        .get_json(&format!("/api/compare?a={}&b={}", runs.a(), runs.b()));
    let steps = compare["steps"].as_array().unwrap();
    let dom = dump_dom(&format!(
        "{}#/compare/{}/{}",
        runs.viz.page_url(),
        runs.a(),
        runs.b()
    ));
    assert!(dom.contains(r#"data-ready="compare""#), "{dom}");
    for step in steps {
        let path = step["path"].as_str().unwrap();
        assert!(
            dom.contains(&format!(r#"data-path="{path}""#)),
            "no row {path}"
        );
    }
}

/// The issue's claim: the compare view is for "the same `run` in chapter 01 and
/// chapter 03". The chapters' processes are named differently (`lxc-era` for client
/// and daemon in chapter 01; `split-era`, `split-era-daemon` in chapter 03), so the
/// steps meet by their span names from the root: `request / POST /containers`.
#[test]

fn the_compare_view_aligns_post_containers_across_chapters() {
    let runs = run_both_chapters();
    let compare = runs
        .viz
        .get_json(&format!("/api/compare?a={}&b={}", runs.a(), runs.b()));
    let steps = compare["steps"].as_array().unwrap();
    let aligned = steps
        .iter()
        .find(|s| s["name"] == "POST /containers" && !s["a"].is_null() && !s["b"].is_null())
        .unwrap_or_else(|| panic!("POST /containers is not aligned: {steps:#?}"));
    let diff = aligned["diff_us"].as_i64().expect("a difference");

    // And the page draws that row, with its difference.
    let dom = dump_dom(&format!(
        "{}#/compare/{}/{}",
        runs.viz.page_url(),
        runs.a(),
        runs.b()
    ));
    assert!(dom.contains(r#"data-ready="compare""#), "{dom}");
    let path = aligned["path"].as_str().unwrap();
    assert!(
        dom.contains(&format!(r#"data-path="{path}" data-diff="{diff}""#)),
        "no aligned row {path} with diff {diff}:\n{dom}"
    );
}
