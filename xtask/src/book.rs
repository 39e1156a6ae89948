//! `cargo xtask book`: build the mdBook and check every link in the output.
//!
//! mdbook reports a missing `{{#include}}` file or a broken link as a warning and
//! carries on; here any warning fails the build, so the book cannot drift from
//! the code it includes. Then every `href` and `src` in the generated HTML that
//! points inside the book must name a file that exists, and a `#fragment` an
//! element that has that id.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::cmd;

pub fn run() -> anyhow::Result<()> {
    let book = cmd::root().join("book");
    let build = book.join("build");
    let bad = bad_includes(&book.join("src"))?;
    if !bad.is_empty() {
        bail!("bad includes in the book:\n  {}", bad.join("\n  "));
    }
    eprintln!("$ mdbook build {}", book.display());
    let out = cmd::cargo_tool("mdbook")
        .arg("build")
        .arg(&book)
        .output()
        .context("cannot run mdbook; run `cargo xtask setup`")?;
    let log = String::from_utf8_lossy(&out.stderr);
    eprint!("{log}");
    if !out.status.success() || log.contains(" WARN ") || log.contains(" ERROR ") {
        bail!("mdbook build reported problems (see above)");
    }
    let broken = broken_links(&build)?;
    if !broken.is_empty() {
        bail!("broken links in the book:\n  {}", broken.join("\n  "));
    }
    eprintln!(
        "book: built at {}, all links resolve",
        build.join("index.html").display()
    );
    Ok(())
}

fn files_with_extension(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files_with_extension(&path, extension, out)?;
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
    Ok(())
}

/// Where `cargo xtask captures` writes the transcripts the book includes whole.
const CAPTURED: &str = "captured";

/// Every `{{#include FILE:ANCHOR}}` in the book's sources must name an anchor that
/// exists in FILE: mdbook silently includes nothing for an unknown anchor. Line
/// numbers are refused outright, since they go stale with the first edit above them.
/// Only the generated transcripts in `src/captured/` may be included whole.
fn bad_includes(src: &Path) -> anyhow::Result<Vec<String>> {
    let mut pages = Vec::new();
    files_with_extension(src, "md", &mut pages)?;
    let mut bad = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page)?;
        for (at, _) in text.match_indices("{{#include ") {
            let rest = &text[at + "{{#include ".len()..];
            let Some(end) = rest.find("}}") else { continue };
            let directive = rest[..end].trim();
            let name = page.strip_prefix(src).unwrap_or(page).display();
            let Some((file, anchor)) = directive.split_once(':') else {
                // A captured transcript is output, not source: it is included whole.
                if Path::new(directive)
                    .components()
                    .any(|part| part.as_os_str() == CAPTURED)
                {
                    continue;
                }
                bad.push(format!(
                    "{name}: {directive}: include a named anchor, not a whole file"
                ));
                continue;
            };
            if anchor.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                bad.push(format!(
                    "{name}: {directive}: use a named anchor, not line numbers"
                ));
                continue;
            }
            let source = fs::read_to_string(page.parent().unwrap().join(file)).unwrap_or_default();
            let opens = source.contains(&format!("ANCHOR: {anchor}\n"));
            let closes = source.contains(&format!("ANCHOR_END: {anchor}\n"));
            if !(opens && closes) {
                bad.push(format!(
                    "{name}: {directive}: no `ANCHOR: {anchor}` … `ANCHOR_END: {anchor}` in {file}"
                ));
            }
        }
    }
    Ok(bad)
}

/// Every link target in one page: the values of `href="..."` and `src="..."`.
fn links(html: &str) -> impl Iterator<Item = &str> {
    ["href=\"", "src=\""].into_iter().flat_map(move |attr| {
        html.match_indices(attr).filter_map(move |(at, _)| {
            let rest = &html[at + attr.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
    })
}

/// Whether `html` has an element with `id="fragment"`.
fn has_id(html: &str, fragment: &str) -> bool {
    html.contains(&format!("id=\"{fragment}\""))
}

fn broken_links(build: &Path) -> anyhow::Result<Vec<String>> {
    let mut pages = Vec::new();
    files_with_extension(build, "html", &mut pages)?;
    let mut cache: HashMap<PathBuf, String> = HashMap::new();
    let mut broken = Vec::new();
    for page in &pages {
        let html = fs::read_to_string(page)?;
        for link in links(&html) {
            let external = ["http:", "https:", "mailto:", "javascript:", "data:"];
            if link.is_empty() || external.iter().any(|scheme| link.starts_with(scheme)) {
                continue;
            }
            let link_no_query = link.split('?').next().unwrap_or(link);
            let (file, fragment) = link_no_query.split_once('#').unwrap_or((link_no_query, ""));
            // A leading `/` is relative to the book's root (mdbook's `site-url`), and a
            // directory means its index page, as a web server would serve it.
            let mut target = match file {
                "" => page.clone(),
                absolute if absolute.starts_with('/') => {
                    build.join(absolute.trim_start_matches('/'))
                }
                relative => page.parent().unwrap().join(relative),
            };
            if target.is_dir() {
                target.push("index.html");
            }
            let ok = if !target.is_file() {
                false
            } else if fragment.is_empty() || target.extension().is_none_or(|e| e != "html") {
                true
            } else {
                let text = cache
                    .entry(target.clone())
                    .or_insert_with(|| fs::read_to_string(&target).unwrap_or_default());
                has_id(text, fragment)
            };
            if !ok {
                let page = page.strip_prefix(build).unwrap_or(page);
                broken.push(format!("{}: {link}", page.display()));
            }
        }
    }
    Ok(broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_must_name_an_existing_anchor() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("code.rs"),
            "// ANCHOR: here\nfn f() {}\n// ANCHOR_END: here\n",
        )
        .unwrap();
        let page = "{{#include code.rs:here}} {{#include code.rs:gone}} {{#include code.rs:3:5}} {{#include code.rs}} {{#include ../captured/lab.txt}}";
        fs::write(dir.path().join("page.md"), page).unwrap();
        let bad = bad_includes(dir.path()).unwrap();
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(
            bad[0].contains("code.rs:gone")
                && bad[1].contains("line numbers")
                && bad[2].contains("whole file")
        );
    }

    #[test]
    fn finds_links_and_ids() {
        let html = r#"<a href="a.html#x">a</a><img src="i.png"><h2 id="x">"#;
        assert_eq!(links(html).collect::<Vec<_>>(), ["a.html#x", "i.png"]);
        assert!(has_id(html, "x"));
        assert!(!has_id(html, "y"));
    }

    #[test]
    fn reports_a_missing_page_and_a_missing_fragment() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("index.html"), r##"<a href="gone.html">x</a><a href="b.html#nope">y</a><a href="b.html#here">z</a><a href="#top">t</a><a href="/">r</a><p id="top">"##).unwrap();
        fs::write(dir.path().join("b.html"), r#"<h1 id="here">"#).unwrap();
        let broken = broken_links(dir.path()).unwrap();
        assert_eq!(broken, ["index.html: gone.html", "index.html: b.html#nope"]);
    }
}
