//! `linux.cgroupsPath`: where in each hierarchy a container's cgroup goes.
//!
//! The OCI spec leaves the meaning of the path to the runtime; berth follows runc's cgroupfs
//! driver so that containerd, dockerd and the book's examples get the same layout with either
//! runtime. [`Cgroup::place`](super::Cgroup::place) applies the rule to each hierarchy.

use std::path::{Component, Path, PathBuf};

use super::CgroupError;

// ANCHOR: cgroups_path
/// Where a container's cgroup goes, as `linux.cgroupsPath` asks. runc 1.1's rules, checked
/// against `/usr/sbin/runc` on a hybrid host:
///
/// | `cgroupsPath`   | cgroup in each hierarchy                      | e.g. memory hierarchy, runc in `/user/1` |
/// |-----------------|-----------------------------------------------|------------------------------------------|
/// | `/berth/web`    | the same path below every hierarchy's root     | `/berth/web`                             |
/// | `berth/web`     | below the cgroup the runtime itself is in      | `/user/1/berth/web`                      |
/// | absent or `""`  | like the relative path `<container-id>`        | `/user/1/<container-id>`                 |
/// | `system.slice:berth:web` | refused: that is the systemd driver's form |                                   |
///
/// The relative case is per hierarchy: a runtime in `/` for cpu but `/user/1` for memory
/// puts the container in `/web` and `/user/1/web`, as runc does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupsPath {
    /// Below each hierarchy's root. Stored without the leading `/`.
    Absolute(PathBuf),
    /// Below the runtime's own cgroup in each hierarchy.
    Relative(PathBuf),
}

impl CgroupsPath {
    /// Applies the rules above to the spec's `linux.cgroupsPath` of container `container_id`.
    pub fn from_spec(cgroups_path: Option<&Path>, container_id: &str) -> Result<Self, CgroupError> {
        let given = cgroups_path
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if given.is_empty() {
            return Ok(CgroupsPath::Relative(clean(container_id)?));
        }
        // runc's systemd driver takes "slice:prefix:name"; berth has no systemd driver, and
        // treating the string as a directory name would silently put the container elsewhere.
        if given.split(':').count() == 3 && !given.starts_with('/') {
            return Err(CgroupError::SystemdPath { path: given });
        }
        let path = clean(&given)?;
        if given.starts_with('/') {
            Ok(CgroupsPath::Absolute(path))
        } else {
            Ok(CgroupsPath::Relative(path))
        }
    }

    /// The path, without a leading `/`, to join below a hierarchy's root or the runtime's cgroup.
    pub fn path(&self) -> &Path {
        match self {
            CgroupsPath::Absolute(p) | CgroupsPath::Relative(p) => p,
        }
    }
}
// ANCHOR_END: cgroups_path

/// The normal components of `path`, refusing `..` and an empty result.
///
/// runc resolves `..` lexically instead; berth refuses it, because a container config that
/// climbs out of its own cgroup is a mistake worth reporting, not a path worth guessing at.
fn clean(path: &str) -> Result<PathBuf, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let mut cleaned = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => cleaned.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(invalid(
                    "it contains \"..\", which could leave the hierarchy",
                ))
            }
            Component::Prefix(_) => return Err(invalid("it is not a Unix path")),
        }
    }
    if cleaned.as_os_str().is_empty() {
        return Err(invalid(
            "it names the root cgroup, which a container must not take over",
        ));
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: Option<&str>) -> Result<CgroupsPath, CgroupError> {
        CgroupsPath::from_spec(path.map(Path::new), "web")
    }

    #[test]
    fn absolute_paths_are_below_each_root() {
        assert_eq!(
            rule(Some("/berth/web")).unwrap(),
            CgroupsPath::Absolute("berth/web".into())
        );
        assert_eq!(
            rule(Some("//berth/./web/")).unwrap(),
            CgroupsPath::Absolute("berth/web".into())
        );
    }

    #[test]
    fn relative_paths_are_below_the_runtimes_cgroup() {
        assert_eq!(
            rule(Some("berth/web")).unwrap(),
            CgroupsPath::Relative("berth/web".into())
        );
    }

    #[test]
    fn no_path_means_the_container_id_below_the_runtimes_cgroup() {
        assert_eq!(rule(None).unwrap(), CgroupsPath::Relative("web".into()));
        assert_eq!(rule(Some("")).unwrap(), CgroupsPath::Relative("web".into()));
    }

    #[test]
    fn systemd_paths_are_refused_with_advice() {
        let err = rule(Some("system.slice:berth:web")).unwrap_err();
        assert!(matches!(err, CgroupError::SystemdPath { .. }));
        let message = err.to_string();
        assert!(
            message.contains("systemd cgroup driver not supported"),
            "{message}"
        );
        assert!(message.contains("/berth/ID"), "{message}");
    }

    #[test]
    fn climbing_out_and_taking_the_root_are_refused() {
        assert!(matches!(
            rule(Some("/berth/../../etc")),
            Err(CgroupError::InvalidPath { .. })
        ));
        assert!(matches!(
            rule(Some("/")),
            Err(CgroupError::InvalidPath { .. })
        ));
        assert!(matches!(
            CgroupsPath::from_spec(None, "../evil"),
            Err(CgroupError::InvalidPath { .. })
        ));
    }

    proptest::proptest! {
        /// Whatever the spec says, an accepted path has only plain components.
        #[test]
        fn accepted_paths_stay_inside(path in "[a-z./:]{0,20}") {
            if let Ok(rule) = CgroupsPath::from_spec(Some(Path::new(&path)), "id") {
                proptest::prop_assert!(rule.path().components().all(|c| matches!(c, Component::Normal(_))));
                proptest::prop_assert!(!rule.path().as_os_str().is_empty());
            }
        }
    }
}
