//! containerd's filter language, used by every `List` call: `ctr images ls
//! 'name==docker.io/library/busybox:latest'`, `labels."containerd.io/gc.root"`,
//! `topic~=/tasks/`.
//!
//! One filter string is a comma-separated list of selectors that must *all* match;
//! a request's several filter strings match if *any* does. A selector is a field path
//! (`name`, `labels.KEY`, `target.digest`), optionally followed by an operator (`==`,
//! `!=`, `~=` for a regular expression) and a value. A bare field path asks that the
//! field be present and non-empty. A path element or value can be quoted with `"…"`
//! (Go escapes), or with `/…/` or `|…|` (handy for regular expressions: dockerd
//! subscribes with `topic~=|^/tasks/|`, which unquoted would be a regex matching
//! everything).
//!
//! What a field path means is up to the thing being listed: each service passes a
//! function from field path to value (see [`Filters::matches`]).

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("filter {filter:?}: {problem} at byte {at}; write selectors like name==VALUE or labels.\"KEY\"==VALUE, joined by ','")]
    Syntax {
        filter: String,
        problem: &'static str,
        at: usize,
    },
    #[error("filter {filter:?}: {pattern:?} is not a valid regular expression: {message}")]
    Regex {
        filter: String,
        pattern: String,
        message: String,
    },
}

impl From<FilterError> for tonic::Status {
    fn from(err: FilterError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equal,
    NotEqual,
    Matches,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Equal => "==",
            Operator::NotEqual => "!=",
            Operator::Matches => "~=",
        })
    }
}

/// One `path OP value` (or bare `path`) test.
#[derive(Debug, Clone)]
pub struct Selector {
    pub path: Vec<String>,
    pub test: Option<(Operator, String)>,
    regex: Option<regex::Regex>,
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.test == other.test
    }
}

impl Selector {
    fn matches(&self, value: Option<String>) -> bool {
        // A missing field fails every test, `!=` included, as in containerd.
        let Some(value) = value else { return false };
        match (&self.test, &self.regex) {
            (None, _) => !value.is_empty(),
            (Some((Operator::Equal, want)), _) => value == *want,
            (Some((Operator::NotEqual, want)), _) => value != *want,
            (Some((Operator::Matches, _)), Some(regex)) => regex.is_match(&value),
            (Some((Operator::Matches, _)), None) => false,
        }
    }
}

/// Parsed filters: any of the conjunctions must match; an empty set matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filters {
    pub any: Vec<Vec<Selector>>,
}

impl Filters {
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Filters, FilterError> {
        let any = filters
            .iter()
            .map(|f| f.as_ref())
            .filter(|f| !f.trim().is_empty())
            .map(parse_one)
            .collect::<Result<_, _>>()?;
        Ok(Filters { any })
    }

    /// Whether the object whose fields `field` reads passes the filters.
    pub fn matches(&self, field: impl Fn(&[String]) -> Option<String>) -> bool {
        self.any.is_empty()
            || self
                .any
                .iter()
                .any(|all| all.iter().all(|s| s.matches(field(&s.path))))
    }
}

/// The value of `labels.KEY` (a key may have been split on its dots: they are joined back).
pub fn label<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    rest: &[String],
) -> Option<String> {
    let key = rest.join(".");
    labels
        .into_iter()
        .find(|(k, _)| **k == key)
        .map(|(_, v)| v.clone())
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, problem: &'static str) -> FilterError {
        FilterError::Syntax {
            filter: self.text.to_owned(),
            problem,
            at: self.at,
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// `"…"`, `/…/` or `|…|`, with the quote and backslash escapes taken out.
    fn quoted(&mut self) -> Result<String, FilterError> {
        let quote = self.peek().expect("called on a quote");
        self.at += 1;
        let mut out = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| self.error("unterminated quoted string"))?;
            self.at += c.len_utf8();
            match c {
                '\\' => {
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated escape"))?;
                    self.at += escaped.len_utf8();
                    match (quote, escaped) {
                        (_, c) if c == quote => out.push(c),
                        ('"', 'n') => out.push('\n'),
                        ('"', 't') => out.push('\t'),
                        ('"', '\\') => out.push('\\'),
                        // In a /regex/ or |regex|, other escapes belong to the regex.
                        ('/' | '|', c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        _ => return Err(self.error("unknown escape in quoted string")),
                    }
                }
                c if c == quote => return Ok(out),
                c => out.push(c),
            }
        }
    }

    fn field(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some('"' | '/' | '|') => self.quoted(),
            _ => {
                let len = self
                    .rest()
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(self.rest().len());
                if len == 0 {
                    return Err(self.error("expected a field name"));
                }
                let field = self.rest()[..len].to_owned();
                self.at += len;
                Ok(field)
            }
        }
    }

    fn value(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some('"' | '/' | '|') => self.quoted(),
            _ => {
                let len = self
                    .rest()
                    .find(|c: char| c == ',' || c.is_whitespace())
                    .unwrap_or(self.rest().len());
                if len == 0 {
                    return Err(self.error("expected a value"));
                }
                let value = self.rest()[..len].to_owned();
                self.at += len;
                Ok(value)
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        self.skip_space();
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.at += 1;
            path.push(self.field()?);
        }
        self.skip_space();
        let operator = match self.rest().get(..2) {
            Some("==") => Some(Operator::Equal),
            Some("!=") => Some(Operator::NotEqual),
            Some("~=") => Some(Operator::Matches),
            _ => None,
        };
        let mut selector = Selector {
            path,
            test: None,
            regex: None,
        };
        if let Some(operator) = operator {
            self.at += 2;
            self.skip_space();
            let value = self.value()?;
            if operator == Operator::Matches {
                let regex = regex::Regex::new(&value).map_err(|e| FilterError::Regex {
                    filter: self.text.to_owned(),
                    pattern: value.clone(),
                    message: e.to_string(),
                })?;
                selector.regex = Some(regex);
            }
            selector.test = Some((operator, value));
        }
        self.skip_space();
        Ok(selector)
    }
}

fn parse_one(text: &str) -> Result<Vec<Selector>, FilterError> {
    let mut parser = Parser { text, at: 0 };
    let mut all = vec![parser.selector()?];
    while parser.peek() == Some(',') {
        parser.at += 1;
        all.push(parser.selector()?);
    }
    if parser.at != text.len() {
        return Err(parser.error("unexpected text after a selector"));
    }
    Ok(all)
}

/// Writes `selectors` back as one filter string that parses to the same thing.
pub fn render(selectors: &[Selector]) -> String {
    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
    selectors
        .iter()
        .map(|s| {
            let path: Vec<String> = s.path.iter().map(|p| quote(p)).collect();
            match &s.test {
                None => path.join("."),
                Some((op, value)) => format!("{}{op}{}", path.join("."), quote(value)),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn image_fields<'a>(
        name: &str,
        labels: &'a HashMap<String, String>,
    ) -> impl Fn(&[String]) -> Option<String> + 'a {
        let name = name.to_owned();
        move |path: &[String]| match path {
            [f] if f == "name" => Some(name.clone()),
            [f, rest @ ..] if f == "labels" => label(labels, rest),
            _ => None,
        }
    }

    #[test]
    fn the_shapes_ctr_and_dockerd_send() {
        let labels: HashMap<String, String> = [
            ("containerd.io/gc.root".to_string(), "x".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into();
        let fields = image_fields("docker.io/library/busybox:latest", &labels);
        let yes = |f: &[&str]| Filters::parse(f).unwrap().matches(&fields);
        assert!(yes(&[]));
        assert!(yes(&["name==docker.io/library/busybox:latest"]));
        assert!(!yes(&["name==other"]));
        assert!(yes(&["name!=other"]));
        assert!(yes(&[r#"labels."containerd.io/gc.root""#]));
        assert!(yes(&["name~=busybox,labels.a==1"]));
        assert!(!yes(&["name~=busybox,labels.a==2"]));
        assert!(yes(&["name==nope", "labels.a==1"]), "filters are OR'ed");
        assert!(!yes(&["labels.missing!=x"]), "a missing field fails !=");
        assert!(yes(&[r#"name~=/^docker\.io\//"#]));
    }

    #[test]
    fn dockerd_s_event_filter_matches_only_task_events_in_moby() {
        let filters = Filters::parse(&["namespace==moby,topic~=|^/tasks/|"]).unwrap();
        let event = |namespace: &str, topic: &str| {
            let (namespace, topic) = (namespace.to_owned(), topic.to_owned());
            filters.matches(move |path: &[String]| match path {
                [f] if f == "namespace" => Some(namespace.clone()),
                [f] if f == "topic" => Some(topic.clone()),
                _ => None,
            })
        };
        assert!(event("moby", "/tasks/exit"));
        assert!(!event("moby", "/containers/create"), "the | are quotes");
        assert!(!event("default", "/tasks/exit"));
        assert!(Filters::parse(&[r"topic~=|a\|b|"])
            .unwrap()
            .matches(|_| Some("a|b".into())));
    }

    #[test]
    fn errors_say_where() {
        let err = Filters::parse(&["name=="]).unwrap_err();
        assert!(err.to_string().contains("expected a value"), "{err}");
        assert!(Filters::parse(&["name~=("]).is_err());
        assert!(Filters::parse(&["name==a b"]).is_err());
        assert!(Filters::parse(&["\"open"]).is_err());
    }

    fn selector() -> impl Strategy<Value = Selector> {
        let word = "[a-zA-Z0-9_./:\"\\\\ =,~!-]{1,12}";
        (
            prop::collection::vec(word, 1..4),
            prop::option::of((
                prop_oneof![Just(Operator::Equal), Just(Operator::NotEqual)],
                word,
            )),
        )
            .prop_map(|(path, test)| Selector {
                path,
                test,
                regex: None,
            })
    }

    proptest! {
        #[test]
        fn rendered_filters_parse_back_to_themselves(all in prop::collection::vec(selector(), 1..4)) {
            let text = render(&all);
            let parsed = Filters::parse(&[text.as_str()]).unwrap();
            prop_assert_eq!(parsed.any, vec![all]);
        }

        #[test]
        fn the_parser_never_panics(text in "\\PC{0,40}") {
            let _ = Filters::parse(&[text.as_str()]);
        }
    }
}
