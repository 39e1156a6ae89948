//! The page's files, embedded in the binary at build time: berth-viz is one file to
//! copy and run, and the page it serves always matches the API it talks to.
//!
//! They are plain HTML, CSS and JavaScript modules, written to be read: no bundler, no
//! framework, no build step. The browser loads `app.js`, which imports the rest.
//!
//! | file | what it draws |
//! | --- | --- |
//! | `index.html` | the frame: header, navigation, where each view goes |
//! | `app.js` | the router: `#/` the list, `#/trace/ID` a trace, `#/compare/A/B` a comparison |
//! | `api.js` | the calls to the JSON API |
//! | `dom.js` | building elements (trace data only ever becomes text, never HTML) |
//! | `format.js` | durations and times |
//! | `list.js` | the trace list and its filters |
//! | `waterfall.js` | one trace: lanes, spans, seams, critical path, zoom, minimap |
//! | `details.js` | the selected span's details |
//! | `compare.js` | two traces side by side |
//! | `style.css` | every style, with one colour per process role |

/// `(content type, bytes)` of the embedded file `name`, if there is one.
pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    const JS: &str = "text/javascript; charset=utf-8";
    Some(match name {
        "index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../assets/index.html"),
        ),
        "style.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../assets/style.css"),
        ),
        "app.js" => (JS, include_bytes!("../assets/app.js")),
        "api.js" => (JS, include_bytes!("../assets/api.js")),
        "dom.js" => (JS, include_bytes!("../assets/dom.js")),
        "format.js" => (JS, include_bytes!("../assets/format.js")),
        "list.js" => (JS, include_bytes!("../assets/list.js")),
        "waterfall.js" => (JS, include_bytes!("../assets/waterfall.js")),
        "details.js" => (JS, include_bytes!("../assets/details.js")),
        "compare.js" => (JS, include_bytes!("../assets/compare.js")),
        _ => return None,
    })
}
