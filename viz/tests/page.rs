//! The page, in Debian's headless Chromium: load stored traces (real berth-runc runs,
//! kept as OTLP/JSON fixtures), let the page's scripts draw them, and assert on the DOM
//! they rendered: lanes, spans, seams, the critical path, the compare view. One test
//! also saves the screenshot the book shows (`book/src/images/berth-viz-trace.png`).
//!
//! No CDP client here: Chromium's `--dump-dom` prints the DOM once the page is idle, and
//! `--virtual-time-budget` lets the page's fetches and scripts run to the end first.
//! The page marks `<body data-ready="trace">` (or `compare`) when it has drawn.
//! (`keyboard.rs` presses keys, which needs the DevTools protocol: `common/cdp.rs`.)

mod common;

use std::path::Path;

use common::{chromium, dump_dom, fixture, workspace, Viz};

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn viz_with_fixtures() -> (tempfile::TempDir, Viz, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    let a = viz.import(&fixture("runc-run-1.json")).remove(0);
    let b = viz.import(&fixture("runc-run-2.json")).remove(0);
    (dir, viz, a, b)
}

#[test]
fn a_trace_is_drawn_with_a_lane_per_process_its_seams_and_critical_path() {
    let (_dir, viz, a, _) = viz_with_fixtures();
    let view = viz.get_json(&format!("/api/traces/{a}"));
    let dom = dump_dom(&format!("{}#/trace/{a}", viz.page_url()));
    assert!(
        dom.contains(r#"data-ready="trace""#),
        "the page never finished:\n{dom}"
    );

    // One legend entry per lane, and every span a tree item in its lane.
    for lane in ["berth-runc", "container init"] {
        assert!(
            dom.contains(r#"class="lane-legend lane-color-"#)
                && dom.contains(&format!(r#"data-lane="{lane}""#)),
            "no lane {lane}"
        );
    }
    let spans = view["spans"].as_array().unwrap();
    assert_eq!(count(&dom, r#"role="treeitem""#), spans.len());
    for span in spans {
        assert!(
            dom.contains(&format!(
                r#"data-span-id="{}""#,
                span["id"].as_str().unwrap()
            )),
            "span {} not drawn",
            span["name"]
        );
    }
    // Init's stages crossed back over the sync pipe: each is marked as a seam.
    let seams = spans.iter().filter(|s| !s["seam"].is_null()).count();
    assert!(seams > 0);
    assert_eq!(count(&dom, "⇢ sync pipe"), seams);
    // The critical path: the rows on it, and one drawn segment per segment.
    let critical = spans.iter().filter(|s| s["critical"] == true).count();
    assert!(critical > 0);
    assert_eq!(count(&dom, r#"data-critical="true""#), critical);
    assert_eq!(
        count(&dom, r#"class="crit""#),
        view["critical_path"].as_array().unwrap().len()
    );
    assert!(dom.contains("show-critical"));
    // The first span's details are shown.
    assert!(dom.contains(r#"data-fact="Self time""#));
    // The minimap draws every span.
    assert_eq!(count(&dom, "mini-bar lane-color-"), spans.len());
}

#[test]
fn the_list_puts_container_starts_first() {
    let (_dir, viz, a, b) = viz_with_fixtures();
    let dom = dump_dom(&viz.page_url());
    assert!(dom.contains(r#"data-ready="list""#), "{dom}");
    assert!(dom.contains(&format!(r#"data-trace-id="{a}""#)));
    assert!(dom.contains(&format!(r#"data-trace-id="{b}""#)));
    assert_eq!(
        count(&dom, r#"<span class="badge">container start</span>"#),
        2
    );
}

#[test]
fn two_runs_compare_step_by_step() {
    let (_dir, viz, a, b) = viz_with_fixtures();
    let compare = viz.get_json(&format!("/api/compare?a={a}&b={b}"));
    let dom = dump_dom(&format!("{}#/compare/{a}/{b}", viz.page_url()));
    assert!(dom.contains(r#"data-ready="compare""#), "{dom}");
    let steps = compare["steps"].as_array().unwrap();
    assert_eq!(count(&dom, r#"class="step lane-color-"#), steps.len());
    // Both runs have the same steps, so every one has a difference.
    for step in steps {
        let diff = step["diff_us"].as_i64().expect("both runs have every step");
        assert!(dom.contains(&format!(r#"data-diff="{diff}""#)));
    }
    assert!(dom.contains("berth-runc:berth-runc / berth-runc:create / container init:pivot_root"));
}

#[test]
fn an_unknown_trace_shows_why() {
    let (_dir, viz, _, _) = viz_with_fixtures();
    let dom = dump_dom(&format!(
        "{}#/trace/00000000000000000000000000000001",
        viz.page_url()
    ));
    assert!(dom.contains(r#"data-ready="error""#), "{dom}");
    assert!(dom.contains("no trace"), "{dom}");
}

/// Saves the screenshot the book's "Reading a container start" chapter shows: the first
/// fixture's trace, its root span selected. Regenerated on every run, so the
/// book always shows the page as it is.
#[test]
fn screenshot_for_the_book() {
    let (_dir, viz, a, _) = viz_with_fixtures();
    let path = workspace().join("book/src/images/berth-viz-trace.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    chromium(
        &format!("{}#/trace/{a}", viz.page_url()),
        &[format!("--screenshot={}", path.display())],
    );
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{} is no PNG", path.display());
    assert!(Path::new(&path).metadata().unwrap().len() > 10_000);
}
