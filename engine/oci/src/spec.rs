//! The OCI runtime spec: the `config.json` of a bundle, which tells a runtime
//! (berth-runc, or the real runc) which process to start and how to confine it.
//!
//! [`default_spec`] is what `runc spec` writes, built here field by field so that each
//! default can be read and explained. [`image_spec`] fills it in from an image's
//! config, the way docker turns `Entrypoint`, `Cmd`, `Env`, `WorkingDir` and `User`
//! into a process. Whoever creates a container (the daemons, berth-containerd) writes
//! the result next to the rootfs; the runtime reads it.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder,
    LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
    Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, User, UserBuilder,
};

use crate::unpack::open_in_root;

/// The runtime-spec version runc 1.1 writes, and that berth-runc speaks.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// The search path every Linux container starts with unless its image sets one:
/// the same one docker, runc and containerd use.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "the image has neither Entrypoint nor Cmd, so there is no process to run; \
         give the container a command"
    )]
    NoCommand,
    #[error("the image's WorkingDir {0:?} is not an absolute path; fix the image's WORKDIR")]
    RelativeWorkingDir(String),
    #[error(
        "user {0:?} is a name, but no rootfs was given to look it up in; use a numeric uid[:gid]"
    )]
    NameWithoutRootfs(String),
    #[error(
        "user {name:?} is not in the image's /etc/passwd; \
         use a numeric uid or add the user to the image"
    )]
    UnknownUser { name: String },
    #[error(
        "group {name:?} is not in the image's /etc/group; \
         use a numeric gid or add the group to the image"
    )]
    UnknownGroup { name: String },
    #[error("cannot read {file} in the rootfs {rootfs}: {source}")]
    Rootfs {
        rootfs: PathBuf,
        file: &'static str,
        source: io::Error,
    },
    #[error("cannot serialize the runtime spec: {0}")]
    Json(#[from] serde_json::Error),
}

// ANCHOR: default_spec
/// The spec `runc spec` writes: `sh` as root in a read-only `rootfs/`, with its own
/// namespaces, three capabilities, no devices, and the kernel's sensitive files hidden.
pub fn default_spec() -> Spec {
    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .process(default_process())
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()
                .expect(BUILT),
        )
        .hostname("runc")
        .mounts(default_mounts())
        .linux(default_linux())
        .build()
        .expect(BUILT);
    // The builder would fill in oci-spec's own default (an empty map); runc has none.
    spec.set_annotations(None);
    spec
}
// ANCHOR_END: default_spec

/// The builders below only fail when a required field is unset; all of them are set.
const BUILT: &str = "every field of the default spec is set";

fn default_process() -> oci_spec::runtime::Process {
    ProcessBuilder::default()
        // `runc spec` is for trying things by hand, so it asks for a terminal.
        .terminal(true)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .expect(BUILT),
        )
        .args(vec!["sh".to_owned()])
        .env(vec![DEFAULT_PATH.to_owned(), "TERM=xterm".to_owned()])
        .cwd("/")
        .capabilities(default_capabilities())
        // Open files: the old Unix default, which keeps `select()`-based programs safe.
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()
            .expect(BUILT)])
        // setuid binaries inside the container cannot raise privileges.
        .no_new_privileges(true)
        .build()
        .expect(BUILT)
}

/// Root in a container is not root on the host: it keeps only a few capabilities.
/// (Docker's default set is larger: CHOWN, SETUID, NET_RAW, ...; runc's is minimal.)
fn default_capabilities() -> LinuxCapabilities {
    let set: HashSet<Capability> = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into();
    let mut capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set.clone())
        .ambient(set)
        .build()
        .expect(BUILT);
    // The inheritable set stays out, as in runc 1.1: capabilities inherited across
    // exec are a known way for privileges to leak (CVE-2022-29162).
    capabilities.set_inheritable(None);
    capabilities
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut builder = MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source);
    if !options.is_empty() {
        builder = builder.options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>());
    }
    builder.build().expect(BUILT)
}

// ANCHOR: default_mounts
/// The file systems every container gets, mounted by the runtime inside the rootfs.
fn default_mounts() -> Vec<Mount> {
    vec![
        // The container's own processes, as its pid namespace sees them.
        mount("/proc", "proc", "proc", &[]),
        // A fresh /dev in memory: the runtime creates the few device nodes allowed.
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        // Pseudo-terminals private to the container (`newinstance`).
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        // POSIX shared memory, capped at 64 MiB.
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        // POSIX message queues of the container's ipc namespace.
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        // Kernel and device information, read-only.
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        // The container's cgroup, read-only: it may look at its limits, not change them.
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}
// ANCHOR_END: default_mounts

fn default_linux() -> oci_spec::runtime::Linux {
    // The device cgroup denies every device (read, write, mknod); the runtime then
    // allows the few a container always needs (null, zero, tty, ...).
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .expect(BUILT);
    let namespace = |typ| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .build()
            .expect(BUILT)
    };
    LinuxBuilder::default()
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![deny_all])
                .build()
                .expect(BUILT),
        )
        // New pid, network, ipc, uts and mount namespaces; user and cgroup namespaces
        // are not in runc 1.1's default.
        .namespaces(vec![
            namespace(LinuxNamespaceType::Pid),
            namespace(LinuxNamespaceType::Network),
            namespace(LinuxNamespaceType::Ipc),
            namespace(LinuxNamespaceType::Uts),
            namespace(LinuxNamespaceType::Mount),
        ])
        // Files that leak host information or allow attacks: hidden (a bind mount of
        // /dev/null or an empty tmpfs over them).
        .masked_paths(strings(&[
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ]))
        // Kernel knobs a container may read but not turn.
        .readonly_paths(strings(&[
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]))
        .build()
        .expect(BUILT)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ANCHOR: image_spec
/// The spec for running an image: [`default_spec`] with the process the image asks for.
///
/// `rootfs`, if given, is where the image was unpacked; user and group *names* are
/// looked up in its `/etc/passwd` and `/etc/group` (inside the root, never on the host).
/// Hostname, mounts and namespaces stay as in the default; the daemon adjusts them
/// per container.
pub fn image_spec(image: &ImageConfiguration, rootfs: Option<&Path>) -> Result<Spec, SpecError> {
    let config = image.config().clone().unwrap_or_default();
    let mut spec = default_spec();
    let process = spec
        .process_mut()
        .as_mut()
        .expect("the default spec has a process");

    // Docker's rule: the entrypoint, then the command as its arguments.
    let args: Vec<String> = config
        .entrypoint()
        .iter()
        .flatten()
        .chain(config.cmd().iter().flatten())
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    process.set_args(Some(args));
    process.set_env(Some(image_env(config.env().as_deref().unwrap_or_default())));
    let cwd = config
        .working_dir()
        .as_deref()
        .filter(|dir| !dir.is_empty())
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir(cwd.to_owned()));
    }
    process.set_cwd(cwd.into());
    process.set_user(resolve_user(
        config.user().as_deref().unwrap_or_default(),
        rootfs,
    )?);
    // A container started from an image is detached unless someone asks for a tty.
    process.set_terminal(Some(false));
    // Images expect a writable root; the engine gives each container its own writable
    // snapshot on top of the image, so the image itself stays unchanged.
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(false)
            .build()
            .expect(BUILT),
    ));
    Ok(spec)
}
// ANCHOR_END: image_spec

/// The image's environment, with the default `PATH` when the image sets none.
fn image_env(env: &[String]) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|var| var.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    env
}

// ANCHOR: resolve_user
/// Turns an image's `User` into ids: `""` (root), `uid`, `name`, and any of those
/// followed by `:gid` or `:group`. Without a group, a user listed in `/etc/passwd` gets
/// its primary group, and a numeric uid that is not listed gets group 0, as in docker.
///
/// A real engine would also add the user's supplementary groups from `/etc/group`
/// (`additionalGids`); berth doesn't because none of its images or tests need them.
pub fn resolve_user(user: &str, rootfs: Option<&Path>) -> Result<User, SpecError> {
    let (name, group) = match user.split_once(':') {
        Some((name, group)) => (name, Some(group)),
        None => (user, None),
    };
    let passwd = IdFile::new(rootfs, "/etc/passwd");
    let (uid, primary_gid) = match name.parse::<u32>() {
        _ if name.is_empty() => (0, 0),
        Ok(uid) => (
            uid,
            passwd
                .entries()?
                .iter()
                .find(|e| e.id == uid)
                .map_or(0, |e| e.gid),
        ),
        Err(_) => {
            let passwd = passwd.require(name)?;
            let entry = passwd.iter().find(|e| e.name == name);
            entry
                .map(|e| (e.id, e.gid))
                .ok_or_else(|| SpecError::UnknownUser {
                    name: name.to_owned(),
                })?
        }
    };
    let gid = match group {
        None | Some("") => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = IdFile::new(rootfs, "/etc/group").require(group)?;
                let entry = groups.iter().find(|e| e.name == group);
                entry.map(|e| e.id).ok_or_else(|| SpecError::UnknownGroup {
                    name: group.to_owned(),
                })?
            }
        },
    };
    Ok(UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .build()
        .expect("uid and gid are set"))
}
// ANCHOR_END: resolve_user

/// One line of `/etc/passwd` (`name:x:uid:gid:...`) or `/etc/group` (`name:x:gid:...`):
/// the name, the id, and for passwd the primary group.
struct IdEntry {
    name: String,
    id: u32,
    gid: u32,
}

/// `/etc/passwd` or `/etc/group` of the rootfs, read only when a lookup needs it.
struct IdFile<'a> {
    rootfs: Option<&'a Path>,
    file: &'static str,
}

impl<'a> IdFile<'a> {
    fn new(rootfs: Option<&'a Path>, file: &'static str) -> Self {
        IdFile { rootfs, file }
    }

    /// The entries, or none when there is no rootfs or no such file (numeric ids
    /// need no database).
    fn entries(&self) -> Result<Vec<IdEntry>, SpecError> {
        let Some(rootfs) = self.rootfs else {
            return Ok(Vec::new());
        };
        let rootfs_error = |source| SpecError::Rootfs {
            rootfs: rootfs.to_owned(),
            file: self.file,
            source,
        };
        let mut text = String::new();
        match open_in_root(rootfs, self.file) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(rootfs_error(err)),
            Ok(mut file) => file.read_to_string(&mut text).map_err(rootfs_error)?,
        };
        Ok(text.lines().filter_map(parse_id_line).collect())
    }

    /// The entries, for looking up `name`: a name needs a rootfs.
    fn require(&self, name: &str) -> Result<Vec<IdEntry>, SpecError> {
        if self.rootfs.is_none() {
            return Err(SpecError::NameWithoutRootfs(name.to_owned()));
        }
        self.entries()
    }
}

/// Comments, blank and malformed lines yield `None` and are skipped, as libc does.
fn parse_id_line(line: &str) -> Option<IdEntry> {
    let mut fields = line.split(':');
    let name = fields
        .next()
        .filter(|n| !n.is_empty() && !n.starts_with('#'))?;
    let _password = fields.next()?;
    let id = fields.next()?.parse().ok()?;
    let gid = fields.next().and_then(|g| g.parse().ok()).unwrap_or(0);
    Some(IdEntry {
        name: name.to_owned(),
        id,
        gid,
    })
}

// ANCHOR: to_json
/// The bytes of `config.json`: indented, object keys sorted and capability sets sorted,
/// so the same spec always gives the same file. (oci-spec holds capability sets in
/// `HashSet`s and annotations in `HashMap`s, whose order changes from run to run.)
pub fn to_json(spec: &Spec) -> Result<String, SpecError> {
    let mut value = serde_json::to_value(spec)?;
    sort_capabilities(&mut value);
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}
// ANCHOR_END: to_json

/// Sorts every list under `process.capabilities` in a JSON spec.
pub fn sort_capabilities(spec: &mut serde_json::Value) {
    let sets = spec
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut());
    for list in sets.into_iter().flat_map(|sets| sets.values_mut()) {
        if let Some(list) = list.as_array_mut() {
            list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::process::Command;

    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    use super::*;

    fn image(config: oci_spec::image::Config) -> ImageConfiguration {
        ImageConfigurationBuilder::default()
            .config(config)
            .build()
            .unwrap()
    }

    fn rootfs_with_users() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        let passwd = [
            "# users",
            "root:x:0:0:root:/root:/bin/sh",
            "www:x:33:33:web:/var/www:/sbin/nologin",
            "broken line",
        ];
        let passwd = passwd.join("\n") + "\n";
        fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn default_spec_snapshot() {
        insta::assert_snapshot!(to_json(&default_spec()).unwrap());
    }

    #[test]
    fn image_spec_snapshot() {
        let config = ConfigBuilder::default()
            .entrypoint(vec!["/docker-entrypoint.sh".to_owned()])
            .cmd(vec![
                "nginx".to_owned(),
                "-g".to_owned(),
                "daemon off;".to_owned(),
            ])
            .env(vec!["NGINX_VERSION=1.25.3".to_owned()])
            .working_dir("/srv")
            .user("www:staff")
            .build()
            .unwrap();
        let rootfs = rootfs_with_users();
        let spec = image_spec(&image(config), Some(rootfs.path())).unwrap();
        insta::assert_snapshot!(to_json(&spec).unwrap());
    }

    #[test]
    fn default_spec_matches_the_real_runc_spec() {
        let runc = ["runc", "/usr/sbin/runc", "/usr/bin/runc"]
            .into_iter()
            .find(|runc| {
                Command::new(runc)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
        let Some(runc) = runc else {
            eprintln!("skipped: runc is not installed, so there is nothing to compare with");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(runc)
            .arg("spec")
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "{runc} spec failed");
        let mut theirs: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        let mut ours = serde_json::to_value(default_spec()).unwrap();
        sort_capabilities(&mut theirs);
        sort_capabilities(&mut ours);
        // serde_json::Value compares objects as maps and arrays in order: the same
        // fields with the same values, mounts and namespaces in the same order.
        assert_eq!(ours, theirs, "ours:\n{ours:#}\nrunc's:\n{theirs:#}");
    }

    #[test]
    fn args_are_entrypoint_then_cmd_and_one_of_them_is_needed() {
        let only_cmd = ConfigBuilder::default()
            .cmd(vec!["sh".to_owned(), "-c".to_owned(), "true".to_owned()])
            .build()
            .unwrap();
        let spec = image_spec(&image(only_cmd), None).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_deref().unwrap(),
            ["sh", "-c", "true"]
        );

        let only_entrypoint = ConfigBuilder::default()
            .entrypoint(vec!["/init".to_owned()])
            .build()
            .unwrap();
        let spec = image_spec(&image(only_entrypoint), None).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_deref().unwrap(),
            ["/init"]
        );

        let err = image_spec(&image(ConfigBuilder::default().build().unwrap()), None).unwrap_err();
        assert!(matches!(err, SpecError::NoCommand), "{err}");
        let err =
            image_spec(&ImageConfigurationBuilder::default().build().unwrap(), None).unwrap_err();
        assert!(matches!(err, SpecError::NoCommand), "{err}");
    }

    #[test]
    fn env_gets_a_default_path_and_cwd_defaults_to_the_root() {
        let config = ConfigBuilder::default()
            .cmd(vec!["x".to_owned()])
            .env(vec!["A=1".to_owned()])
            .build()
            .unwrap();
        let spec = image_spec(&image(config), None).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.env().as_deref().unwrap(), [DEFAULT_PATH, "A=1"]);
        assert_eq!(process.cwd(), Path::new("/"));
        assert_eq!(process.terminal(), Some(false));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));

        let own_path = ConfigBuilder::default()
            .cmd(vec!["x".to_owned()])
            .env(vec!["PATH=/opt/bin".to_owned()])
            .build()
            .unwrap();
        let spec = image_spec(&image(own_path), None).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().env().as_deref().unwrap(),
            ["PATH=/opt/bin"]
        );

        let relative = ConfigBuilder::default()
            .cmd(vec!["x".to_owned()])
            .working_dir("srv")
            .build()
            .unwrap();
        let err = image_spec(&image(relative), None).unwrap_err();
        assert!(
            matches!(err, SpecError::RelativeWorkingDir(ref dir) if dir == "srv"),
            "{err}"
        );
    }

    #[test]
    fn users_resolve_from_numbers_and_from_the_images_own_databases() {
        let rootfs = rootfs_with_users();
        let ids = |user: &str, rootfs: Option<&Path>| {
            resolve_user(user, rootfs).map(|u| (u.uid(), u.gid()))
        };
        let root = Some(rootfs.path());
        assert_eq!(ids("", None).unwrap(), (0, 0));
        assert_eq!(ids("1000", None).unwrap(), (1000, 0));
        assert_eq!(ids("1000:1001", None).unwrap(), (1000, 1001));
        assert_eq!(
            ids("33", root).unwrap(),
            (33, 33),
            "a listed uid gets its primary group"
        );
        assert_eq!(ids("www", root).unwrap(), (33, 33));
        assert_eq!(ids("www:staff", root).unwrap(), (33, 50));
        assert_eq!(ids("www:7", root).unwrap(), (33, 7));
        assert_eq!(ids("0:staff", root).unwrap(), (0, 50));

        let err = ids("nobody", root).unwrap_err();
        assert!(
            matches!(err, SpecError::UnknownUser { ref name } if name == "nobody"),
            "{err}"
        );
        let err = ids("www:wheel", root).unwrap_err();
        assert!(
            matches!(err, SpecError::UnknownGroup { ref name } if name == "wheel"),
            "{err}"
        );
        let err = ids("www", None).unwrap_err();
        assert!(matches!(err, SpecError::NameWithoutRootfs(_)), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = ids("www", Some(empty.path())).unwrap_err();
        assert!(matches!(err, SpecError::UnknownUser { .. }), "{err}");
    }

    #[test]
    fn the_users_database_is_read_inside_the_rootfs() {
        // An image whose /etc/passwd is a symlink to the host's must not see the host's users.
        let rootfs = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        fs::write(
            host.path().join("passwd"),
            "hostonly:x:4242:4242::/:/bin/sh\n",
        )
        .unwrap();
        fs::create_dir(rootfs.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path().join("passwd"), rootfs.path().join("etc/passwd"))
            .unwrap();
        let err = resolve_user("hostonly", Some(rootfs.path())).unwrap_err();
        assert!(matches!(err, SpecError::UnknownUser { .. }), "{err}");
    }
}
