//! The waterfall with the keyboard alone, in Debian's headless Chromium driven over the
//! DevTools protocol (see `common/cdp.rs`): real key presses through Chromium's input
//! pipeline, to whatever has focus, and the page's state read back after each one.
//!
//! What the page claims (the comment at the top of `viz/assets/waterfall.js`): the
//! waterfall is a WAI-ARIA tree (↑ ↓ Home End move, → ← expand and collapse or go to
//! child and parent, one row in the tab order), `+` `-` `0` `z` zoom, Shift+← → pan,
//! and `c` turns the critical path on and off; the minimap pans with ← →.

mod common;

use serde_json::{json, Value};

use common::cdp::{Chromium, Key, Page, NONE, SHIFT};
use common::{fixture, Viz};

/// The span the keyboard is on: the focused element's span id (or its tag name).
fn focused(page: &mut Page) -> String {
    page.eval("document.activeElement.dataset.spanId || document.activeElement.tagName")
        .as_str()
        .unwrap()
        .to_string()
}

/// The span ids of the rows marked `aria-selected="true"` (there must be one).
fn selected(page: &mut Page) -> Vec<String> {
    let ids = page.eval(
        "[...document.querySelectorAll('[role=treeitem][aria-selected=true]')].map((r) => r.dataset.spanId)",
    );
    serde_json::from_value(ids).unwrap()
}

/// The span ids of the rows drawn, top to bottom.
fn rows(page: &mut Page) -> Vec<String> {
    let ids =
        page.eval("[...document.querySelectorAll('[role=treeitem]')].map((r) => r.dataset.spanId)");
    serde_json::from_value(ids).unwrap()
}

fn attribute(page: &mut Page, span: &str, name: &str) -> Value {
    page.eval(&format!(
        "document.querySelector('[data-span-id=\"{span}\"]')?.getAttribute('{name}') ?? null"
    ))
}

/// The time axis's labels, left to right.
fn ticks(page: &mut Page) -> Vec<String> {
    let ticks =
        page.eval("[...document.querySelectorAll('.axis .tick')].map((t) => t.textContent)");
    serde_json::from_value(ticks).unwrap()
}

/// The visible window, as the minimap reports it: (start µs, "from to to" in words).
fn window(page: &mut Page) -> (i64, String) {
    let minimap = page.eval(
        "(() => { const m = document.querySelector('.minimap'); \
         return [Number(m.getAttribute('aria-valuenow')), m.getAttribute('aria-valuetext')]; })()",
    );
    (
        minimap[0].as_i64().unwrap(),
        minimap[1].as_str().unwrap().to_string(),
    )
}

/// Whether the critical path is shown: the tree's class, the switch, and whether a
/// critical segment is actually drawn.
fn critical_shown(page: &mut Page) -> (bool, bool, bool) {
    let shown = page.eval(
        "[document.querySelector('[role=tree]').classList.contains('show-critical'), \
          document.getElementById('critical-toggle').checked, \
          getComputedStyle(document.querySelector('.crit')).display !== 'none']",
    );
    let b = |i: usize| shown[i].as_bool().unwrap();
    (b(0), b(1), b(2))
}

/// The spans of the subtree under `spans[at]`, in tree order, without it.
fn descendants(spans: &[Value], at: usize) -> Vec<String> {
    let depth = spans[at]["depth"].as_u64().unwrap();
    spans[at + 1..]
        .iter()
        .take_while(|s| s["depth"].as_u64().unwrap() > depth)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_waterfall_works_from_the_keyboard_alone() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    let id = viz.import(&fixture("runc-run-1.json")).remove(0);
    let view = viz.get_json(&format!("/api/traces/{id}"));
    let spans = view["spans"].as_array().unwrap().clone();
    let ids: Vec<String> = spans
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let name = |i: usize| spans[i]["name"].as_str().unwrap().to_string();

    let mut browser = Chromium::start();
    let mut page = browser.open();
    page.navigate(&format!("{}#/trace/{id}", viz.page_url()));
    page.wait_for(
        "the trace to be drawn",
        "document.body.dataset.ready === 'trace'",
    );
    assert_eq!(rows(&mut page), ids, "every span drawn, in tree order");

    // Tab: the tree is one stop in the tab order (a roving tabindex on the selected
    // row), right after the minimap.
    let tabbable = page.eval("document.querySelectorAll('[role=treeitem][tabindex=\"0\"]').length");
    assert_eq!(tabbable, json!(1));
    page.eval("document.querySelector('.minimap').focus()");
    page.press(Key::TAB, NONE);
    assert_eq!(focused(&mut page), ids[0], "Tab lands on the selected row");
    assert_eq!(selected(&mut page), [ids[0].clone()]);

    // ↓ ↑ Home End move the focus and the selection; the details follow.
    page.press(Key::DOWN, NONE);
    assert_eq!(focused(&mut page), ids[1]);
    assert_eq!(selected(&mut page), [ids[1].clone()]);
    assert_eq!(attribute(&mut page, &ids[0], "aria-selected"), "false");
    assert_eq!(
        attribute(&mut page, &ids[1], "tabindex"),
        "0",
        "the tab stop moves with the selection"
    );
    assert_eq!(
        page.eval("document.querySelector('.details h2').textContent"),
        name(1)
    );
    page.press(Key::UP, NONE);
    assert_eq!(focused(&mut page), ids[0]);
    page.press(Key::END, NONE);
    assert_eq!(focused(&mut page), *ids.last().unwrap());
    page.press(Key::HOME, NONE);
    assert_eq!(focused(&mut page), ids[0]);
    page.press(Key::UP, NONE);
    assert_eq!(focused(&mut page), ids[0], "nothing above the first row");

    // ← on an open node closes it and hides its rows; ← again goes to its parent;
    // → opens it again, and → once more goes to its first child.
    let node = (1..spans.len())
        .find(|&i| spans[i]["child_count"].as_u64().unwrap() > 0)
        .expect("a span below the root with children");
    let parent = spans[node]["parent"].as_str().unwrap().to_string();
    let hidden = descendants(&spans, node);
    for _ in 0..node {
        page.press(Key::DOWN, NONE);
    }
    assert_eq!(focused(&mut page), ids[node]);
    assert_eq!(attribute(&mut page, &ids[node], "aria-expanded"), "true");
    page.press(Key::LEFT, NONE);
    assert_eq!(attribute(&mut page, &ids[node], "aria-expanded"), "false");
    assert_eq!(
        focused(&mut page),
        ids[node],
        "the closed node keeps the focus"
    );
    let drawn = rows(&mut page);
    assert_eq!(drawn.len(), ids.len() - hidden.len());
    assert!(
        hidden.iter().all(|h| !drawn.contains(h)),
        "its rows are hidden"
    );
    page.press(Key::LEFT, NONE);
    assert_eq!(
        focused(&mut page),
        parent,
        "← on a closed node goes to its parent"
    );
    page.press(Key::DOWN, NONE);
    assert_eq!(focused(&mut page), ids[node]);
    page.press(Key::RIGHT, NONE);
    assert_eq!(attribute(&mut page, &ids[node], "aria-expanded"), "true");
    assert_eq!(rows(&mut page), ids, "its rows are back");
    assert_eq!(focused(&mut page), ids[node]);
    page.press(Key::RIGHT, NONE);
    assert_eq!(
        focused(&mut page),
        ids[node + 1],
        "→ on an open node goes to its child"
    );
    // ← on a leaf goes to its parent; Enter toggles too.
    assert_eq!(
        spans[node + 1]["child_count"],
        0,
        "{} is a leaf",
        name(node + 1)
    );
    page.press(Key::LEFT, NONE);
    assert_eq!(focused(&mut page), ids[node]);
    assert_eq!(attribute(&mut page, &ids[node], "aria-expanded"), "true");
    page.press(Key::ENTER, NONE);
    assert_eq!(attribute(&mut page, &ids[node], "aria-expanded"), "false");
    page.press(Key::ENTER, NONE);
    assert_eq!(attribute(&mut page, &ids[node], "aria-expanded"), "true");

    // + zooms in around the selected span (the root: the middle half of the trace).
    page.press(Key::HOME, NONE);
    let whole = ticks(&mut page);
    assert_eq!(whole[0], "+0 µs");
    assert_eq!(window(&mut page).0, 0);
    page.press(Key::PLUS, SHIFT);
    let (from, _) = window(&mut page);
    let total = view["duration_us"].as_i64().unwrap();
    assert!(
        (from - total / 4).abs() <= 1,
        "zoomed to the middle: {from} of {total}"
    );
    let zoomed = ticks(&mut page);
    assert_ne!(zoomed, whole, "the axis shows the zoomed window");
    assert_ne!(zoomed[0], "+0 µs");
    // The keyboard stays in the tree after the rows are redrawn.
    assert_eq!(focused(&mut page), ids[0], "zooming keeps the focus");
    page.press(Key::DOWN, NONE);
    assert_eq!(focused(&mut page), ids[1], "keys still work after a zoom");
    page.press(Key::UP, NONE);

    // Shift+→ and Shift+← pan by a fifth of the window, and move no selection.
    page.press(Key::RIGHT, SHIFT);
    let (right, _) = window(&mut page);
    assert!(right > from, "panned right: {from} → {right}");
    assert_ne!(ticks(&mut page), zoomed);
    assert_eq!(selected(&mut page), [ids[0].clone()]);
    assert_eq!(focused(&mut page), ids[0]);
    page.press(Key::LEFT, SHIFT);
    page.press(Key::LEFT, SHIFT);
    let (left, _) = window(&mut page);
    assert!(left < from, "panned left: {from} → {left}");
    assert_eq!(
        attribute(&mut page, &ids[0], "aria-expanded"),
        "true",
        "Shift+← pans, it does not collapse"
    );

    // - zooms out, 0 shows the whole trace again.
    let (_, narrow) = window(&mut page);
    page.press(Key::MINUS, NONE);
    assert_ne!(window(&mut page).1, narrow, "zoomed out");
    page.press(Key::ZERO, NONE);
    assert_eq!(ticks(&mut page), whole, "0: the whole trace");
    assert_eq!(window(&mut page).0, 0);

    // z zooms to the selected span: the window starts where it starts.
    let deep = (1..spans.len())
        .filter(|&i| spans[i]["start_us"].as_i64().unwrap() > 0)
        .max_by_key(|&i| spans[i]["depth"].as_u64().unwrap())
        .expect("a nested span that starts after the trace");
    page.press(Key::HOME, NONE);
    for _ in 0..deep {
        page.press(Key::DOWN, NONE);
    }
    assert_eq!(focused(&mut page), ids[deep]);
    page.press(Key::Z, NONE);
    let start = spans[deep]["start_us"].as_i64().unwrap();
    assert_eq!(
        window(&mut page).0,
        start,
        "z: the window starts with {}",
        name(deep)
    );
    assert_eq!(focused(&mut page), ids[deep]);
    page.press(Key::ZERO, NONE);

    // c turns the critical path off and on: the switch, the class, the drawn segments.
    assert_eq!(critical_shown(&mut page), (true, true, true));
    page.press(Key::C, NONE);
    assert_eq!(critical_shown(&mut page), (false, false, false));
    assert_eq!(
        focused(&mut page),
        ids[deep],
        "c keeps the focus in the tree"
    );
    page.press(Key::C, NONE);
    assert_eq!(critical_shown(&mut page), (true, true, true));

    // Shift+Tab goes back to the minimap, whose ← → pan too.
    page.press(Key::HOME, NONE);
    page.press(Key::PLUS, SHIFT);
    let (from, _) = window(&mut page);
    page.press(Key::TAB, SHIFT);
    assert_eq!(
        page.eval("document.activeElement.className"),
        "minimap",
        "Shift+Tab leaves the tree in one step"
    );
    page.press(Key::RIGHT, NONE);
    assert!(window(&mut page).0 > from, "the minimap's → pans right");
    page.press(Key::LEFT, NONE);
    page.press(Key::LEFT, NONE);
    assert!(window(&mut page).0 < from, "the minimap's ← pans left");
}

/// "Collapse all" (a toolbar button) can hide the selected row; the keyboard must
/// still find its way back, from the nearest row still shown.
#[test]
fn keys_still_work_when_the_selected_row_was_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let viz = Viz::start(dir.path());
    let id = viz.import(&fixture("runc-run-1.json")).remove(0);
    let view = viz.get_json(&format!("/api/traces/{id}"));
    let spans = view["spans"].as_array().unwrap().clone();
    let ids: Vec<String> = spans
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    // A span two levels down: "Collapse all" hides it.
    let deep = spans
        .iter()
        .position(|s| s["depth"].as_u64().unwrap() >= 2)
        .expect("a span two levels down");
    let ancestor = (0..deep)
        .rev()
        .find(|&i| spans[i]["depth"].as_u64().unwrap() == 1)
        .unwrap();

    let mut browser = Chromium::start();
    let mut page = browser.open();
    page.navigate(&format!("{}#/trace/{id}", viz.page_url()));
    page.wait_for(
        "the trace to be drawn",
        "document.body.dataset.ready === 'trace'",
    );
    page.eval(&format!(
        "document.querySelector('[data-span-id=\"{}\"]').click()",
        ids[deep]
    ));
    assert_eq!(focused(&mut page), ids[deep]);
    page.eval(
        "[...document.querySelectorAll('.toolbar button')].find((b) => b.textContent === 'Collapse all').click()",
    );
    assert!(!rows(&mut page).contains(&ids[deep]));
    // The selection moves to the nearest row still shown: its collapsed ancestor.
    assert_eq!(selected(&mut page), [ids[ancestor].clone()]);
    page.eval("document.querySelector('[role=treeitem][tabindex=\"0\"]').focus()");
    assert_eq!(focused(&mut page), ids[ancestor]);
    page.press(Key::RIGHT, NONE);
    assert_eq!(
        attribute(&mut page, &ids[ancestor], "aria-expanded"),
        "true"
    );
    page.press(Key::Z, NONE);
    assert_eq!(
        window(&mut page).0,
        spans[ancestor]["start_us"].as_i64().unwrap()
    );
}
