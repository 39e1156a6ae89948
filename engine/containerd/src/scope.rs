//! Which namespace (and which lease) a request works in, from its gRPC metadata.
//!
//! containerd is multi-tenant: every client names its namespace in the metadata
//! `containerd-namespace` (ctr's `--namespace`, dockerd's `moby`, berthd's `berth`),
//! and sees only that namespace's images, content and snapshots. A client that wants
//! what it creates kept alive while it works sends `containerd-lease: ID` too.

use tonic::Request;

pub const NAMESPACE_HEADER: &str = "containerd-namespace";
pub const LEASE_HEADER: &str = "containerd-lease";

/// The longest namespace name containerd accepts.
const MAX_NAME: usize = 76;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("namespace is required: send it in the gRPC metadata {NAMESPACE_HEADER:?} (ctr --namespace NAME)")]
    Missing,
    #[error(
        "namespace {name:?} is not a valid identifier: use letters and digits, separated \
         by single '.', '_' or '-', at most {MAX_NAME} characters"
    )]
    Invalid { name: String },
}

impl From<ScopeError> for tonic::Status {
    fn from(err: ScopeError) -> Self {
        match err {
            ScopeError::Missing => tonic::Status::failed_precondition(err.to_string()),
            ScopeError::Invalid { .. } => tonic::Status::invalid_argument(err.to_string()),
        }
    }
}

/// Where one request works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub namespace: String,
    pub lease: Option<String>,
}

impl Scope {
    pub fn of<T>(request: &Request<T>) -> Result<Scope, ScopeError> {
        let header = |name| {
            request
                .metadata()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let namespace = header(NAMESPACE_HEADER).ok_or(ScopeError::Missing)?;
        validate(&namespace)?;
        Ok(Scope {
            namespace,
            lease: header(LEASE_HEADER),
        })
    }
}

/// containerd's identifier rule: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, at most 76 bytes.
pub fn validate(name: &str) -> Result<(), ScopeError> {
    let invalid = || ScopeError::Invalid {
        name: name.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid());
    }
    let mut after_separator = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            after_separator = false;
        } else if matches!(c, '.' | '_' | '-') && !after_separator {
            after_separator = true;
        } else {
            return Err(invalid());
        }
    }
    if after_separator {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_containerds_rule() {
        for good in ["default", "berth", "moby", "k8s.io", "a-b_c.d", "x1"] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a/b", "a b", &"x".repeat(77)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_namespace_and_lease_come_from_the_metadata() {
        let mut request = Request::new(());
        assert_eq!(Scope::of(&request), Err(ScopeError::Missing));
        request
            .metadata_mut()
            .insert(NAMESPACE_HEADER, "berth".parse().unwrap());
        request
            .metadata_mut()
            .insert(LEASE_HEADER, "import-1".parse().unwrap());
        let scope = Scope::of(&request).unwrap();
        assert_eq!(scope.namespace, "berth");
        assert_eq!(scope.lease.as_deref(), Some("import-1"));
    }
}
