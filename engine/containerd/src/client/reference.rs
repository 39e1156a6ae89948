//! Image references as Docker users write them, and the normalised form every other
//! part of the engine uses.
//!
//! `busybox` means `docker.io/library/busybox:latest`; `team/app` is on Docker Hub too;
//! a first component with a dot or a port, or `localhost`, names a registry
//! (`127.0.0.1:5000/busybox`). A reference names a tag, a digest, or both (`app:v1@sha256:…`,
//! where the digest wins).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// Docker Hub, as image names spell it.
pub const DOCKER_HUB: &str = "docker.io";

/// The tag a reference without tag or digest means.
const DEFAULT_TAG: &str = "latest";

/// The longest repository name a registry accepts (domain included), per the
/// distribution spec's reference grammar.
const MAX_NAME: usize = 255;

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    let label = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    Regex::new(&format!(
        r"^(?:{label}(?:\.{label})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
    ))
    .expect("the domain pattern is valid")
});
static PATH_COMPONENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").expect("the path pattern is valid")
});
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("the tag pattern is valid")
});
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^sha256:[a-f0-9]{64}$").expect("the digest pattern is valid"));

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("{reference:?} is not an image reference: it is empty")]
    Empty { reference: String },
    #[error(
        "{reference:?} is not an image reference: repository names are lowercase \
         (write {lower:?})"
    )]
    Uppercase { reference: String, lower: String },
    #[error(
        "{reference:?} is not an image reference: {part:?} is not a valid {what}; \
         write [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST]"
    )]
    Invalid {
        reference: String,
        part: String,
        what: &'static str,
    },
    #[error("{reference:?} is not an image reference: the name is over {MAX_NAME} characters")]
    TooLong { reference: String },
}

/// A normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, `registry.example:443`.
    pub domain: String,
    /// `library/busybox`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:…`; when present, it is what is fetched, and the tag only a name.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text` the way `docker pull` does, filling in Docker Hub, `library/`
    /// and `latest` where the user left them out.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let invalid = |part: &str, what: &'static str| ReferenceError::Invalid {
            reference: text.to_owned(),
            part: part.to_owned(),
            what,
        };
        if text.is_empty() {
            return Err(ReferenceError::Empty {
                reference: text.to_owned(),
            });
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) if DIGEST.is_match(digest) => (rest, Some(digest.to_owned())),
            Some((_, digest)) => return Err(invalid(digest, "sha256 digest")),
            None => (text, None),
        };
        // A colon after the last slash starts a tag; one before it is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let (name, tag) = rest.split_at(last_slash + i);
                (name, Some(&tag[1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !TAG.is_match(tag) {
                return Err(invalid(tag, "tag"));
            }
        }
        let (domain, repository) = split_domain(name);
        if !DOMAIN.is_match(&domain) {
            return Err(invalid(&domain, "registry host"));
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                reference: text.to_owned(),
                lower: text.to_ascii_lowercase(),
            });
        }
        if let Some(bad) = repository
            .split('/')
            .find(|component| !PATH_COMPONENT.is_match(component))
        {
            return Err(invalid(bad, "repository path component"));
        }
        if domain.len() + 1 + repository.len() > MAX_NAME {
            return Err(ReferenceError::TooLong {
                reference: text.to_owned(),
            });
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            repository,
            tag,
            digest,
        })
    }

    /// `docker.io/library/busybox`: the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest if there is one.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// The short form Docker shows (`busybox:latest`, `team/app:v1`), as in a
    /// `docker save` tarball's `RepoTags`.
    pub fn familiar(&self) -> String {
        let name = if self.domain == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            self.name()
        };
        match &self.tag {
            Some(tag) => format!("{name}:{tag}"),
            None => name,
        }
    }
}

/// Splits a name into registry and repository, Docker's way: the first component is
/// a registry only if it looks like a host (a dot, a port, or `localhost`).
fn split_domain(name: &str) -> (String, String) {
    let (domain, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_owned()
    } else {
        domain
    };
    let repository = if domain == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    (domain, repository)
}

impl fmt::Display for Reference {
    /// The full form containerd stores image names in:
    /// `docker.io/library/busybox:latest`, `…@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    #[test]
    fn short_names_mean_docker_hub() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("team/app:v1"), "docker.io/team/app:v1");
        assert_eq!(
            full("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("docker.io/library/busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
    }

    #[test]
    fn a_host_first_names_a_registry() {
        assert_eq!(
            full("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(full("localhost/a/b:c"), "localhost/a/b:c");
        assert_eq!(full("registry.example/app"), "registry.example/app:latest");
        let r = Reference::parse("127.0.0.1:5000/busybox:v1").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "busybox")
        );
        assert_eq!(r.familiar(), "127.0.0.1:5000/busybox:v1");
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
    }

    #[test]
    fn a_digest_is_what_is_fetched() {
        let r = Reference::parse(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.object(), format!("sha256:{HEX}"));
        let r = Reference::parse(&format!("busybox:v1@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.object(), format!("sha256:{HEX}"));
    }

    #[test]
    fn bad_references_say_which_part_is_wrong() {
        let err = Reference::parse("Busybox").unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        assert!(Reference::parse("busybox:välj").is_err(), "tags are ASCII");
        let err = Reference::parse("busybox:bad tag").unwrap_err();
        assert!(
            err.to_string().contains("\"bad tag\" is not a valid tag"),
            "{err}"
        );
        let err = Reference::parse("busybox@sha256:abc").unwrap_err();
        assert!(err.to_string().contains("sha256 digest"), "{err}");
        let err = Reference::parse("a//b").unwrap_err();
        assert!(
            err.to_string().contains("repository path component"),
            "{err}"
        );
        assert!(matches!(
            Reference::parse(""),
            Err(ReferenceError::Empty { .. })
        ));
        let long = format!("x/{}", "a".repeat(300));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn the_full_form_parses_back_to_itself(
            domain in "(docker\\.io|127\\.0\\.0\\.1:[1-9][0-9]{0,3}|reg\\.example)",
            path in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
            digest in proptest::option::of("[a-f0-9]{64}"),
        ) {
            let mut text = format!("{domain}/{path}");
            if let Some(tag) = &tag { text += &format!(":{tag}"); }
            if let Some(digest) = &digest { text += &format!("@sha256:{digest}"); }
            let parsed = Reference::parse(&text).unwrap();
            let again = Reference::parse(&parsed.to_string()).unwrap();
            prop_assert_eq!(&parsed, &again);
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,80}") {
            let _ = Reference::parse(&text);
        }
    }
}
