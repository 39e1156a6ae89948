//! The container's filesystem: mounts, device nodes, `pivot_root`, masked paths.
//!
//! Init runs this in its new mount namespace, in three parts: [`prepare`] (mount
//! everything the spec lists *inside* the rootfs while the host's files are still
//! visible), [`pivot`] (make the rootfs `/` and let go of the host's tree), and
//! [`finish`] (hide and freeze the kernel files a container must not touch).
//! Every system call goes through [`Syscalls`], so a test can record their order
//! without root.

use std::ffi::CString;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use berth_oci::unpack::resolve_in_root;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::cgroups::{Hierarchy, Membership, Mount as CgroupMount};
use crate::mount_options::{parse_options, propagation_flags};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot {what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("mount destination {0:?} is not absolute; use a path like /data in config.json")]
    RelativeDestination(PathBuf),
    #[error("unknown rootfsPropagation {0:?}; use private, rprivate, slave, rslave, shared, rshared or unbindable")]
    Propagation(String),
    #[error("mount of {destination:?} has no type and is not a bind mount; set \"type\" or add \"bind\" to its options")]
    NoType { destination: PathBuf },
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Sys { what, source }
}

// ANCHOR: syscalls
/// The system calls that build a container's filesystem. [`Linux`] makes them;
/// tests use a fake that records them, to check their order without root.
pub trait Syscalls {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount(&mut self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chdir(&mut self, path: &Path) -> nix::Result<()>;
    fn chroot(&mut self, path: &Path) -> nix::Result<()>;
    fn mknod(&mut self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> nix::Result<()>;
    fn symlink(&mut self, target: &Path, link: &Path) -> nix::Result<()>;
    fn chown(&mut self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> nix::Result<()>;
    /// Creates `dest` (a directory, or an empty file) inside `rootfs` if it is missing,
    /// resolving every symlink on the way *inside* the rootfs, and returns the host
    /// path it resolved to: the only place it is safe to mount on.
    fn mountpoint(&mut self, rootfs: &Path, dest: &Path, dir: bool) -> nix::Result<PathBuf>;
    /// Whether a path exists (for masked paths, which may be missing).
    fn kind_of(&mut self, path: &Path) -> Option<SFlag>;
}
// ANCHOR_END: syscalls

/// The real system calls.
pub struct Linux;

fn cstr(path: &Path) -> nix::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)
}

impl Syscalls for Linux {
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }
    fn umount(&mut self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }
    fn chdir(&mut self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }
    fn chroot(&mut self, path: &Path) -> nix::Result<()> {
        nix::unistd::chroot(path)
    }
    fn mknod(&mut self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, mode, dev)
    }
    fn symlink(&mut self, target: &Path, link: &Path) -> nix::Result<()> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
    }
    fn chown(&mut self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> nix::Result<()> {
        let path = cstr(path)?;
        nix::unistd::chown(path.as_c_str(), uid.map(Into::into), gid.map(Into::into))
    }
    fn mountpoint(&mut self, rootfs: &Path, dest: &Path, dir: bool) -> nix::Result<PathBuf> {
        let root = nix::fcntl::open(
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let fd = create_in_root(&root, dest, dir)?;
        // The kernel's name for what we opened: a host path with every symlink resolved.
        fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .map_err(|_| Errno::EIO)
    }
    fn kind_of(&mut self, path: &Path) -> Option<SFlag> {
        let stat = nix::sys::stat::lstat(path).ok()?;
        Some(SFlag::from_bits_truncate(
            stat.st_mode & SFlag::S_IFMT.bits(),
        ))
    }
}

/// `mkdir -p` (or `touch`) inside the root: each component is resolved with
/// `RESOLVE_IN_ROOT`, so a symlink in the image such as `/data -> /etc` leads to the
/// rootfs's `/etc`, never the host's.
fn create_in_root(root: &OwnedFd, dest: &Path, dir: bool) -> nix::Result<OwnedFd> {
    let parts: Vec<&std::ffi::OsStr> = dest
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut current = PathBuf::new();
    let mut parent = resolve_in_root(root, Path::new(""), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for (i, name) in parts.iter().enumerate() {
        current.push(name);
        let last = i + 1 == parts.len();
        let flags = if last && !dir {
            OFlag::O_PATH
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY
        };
        match resolve_in_root(root, &current, flags) {
            Ok(fd) => parent = fd,
            Err(Errno::ENOENT) => {
                if last && !dir {
                    let file = openat(
                        &parent,
                        *name,
                        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                        Mode::from_bits_truncate(0o755),
                    )?;
                    drop(file);
                } else {
                    nix::sys::stat::mkdirat(&parent, *name, Mode::from_bits_truncate(0o755))?;
                }
                parent = resolve_in_root(root, &current, flags)?;
            }
            Err(errno) => return Err(errno),
        }
    }
    Ok(parent)
}

// ANCHOR: prepare
/// Part one, before `pivot_root`: mounts and devices, all inside `rootfs`.
///
/// `own_cgroups` are the container's cgroups when it has no cgroup namespace of its
/// own; a `cgroup` mount then shows those, not the host's (see [`mount_cgroups`]).
pub fn prepare(
    sys: &mut dyn Syscalls,
    spec: &Spec,
    rootfs: &Path,
    cgroups: &Hierarchy,
    own_cgroups: Option<&Membership>,
) -> Result<(), RootfsError> {
    // Nothing we mount from here on may leak back to the host's mount table: make
    // our copy of it a slave (or what the spec asks), recursively.
    let linux = spec.linux().as_ref();
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(name) => {
            propagation_flags(name).ok_or_else(|| RootfsError::Propagation(name.to_owned()))?
                | MsFlags::MS_REC
        }
    };
    sys.mount(None, Path::new("/"), None, propagation, None)
        .map_err(sys_err("set the propagation of /"))?;
    // pivot_root needs the new root to be a mount point: bind the rootfs onto itself.
    sys.mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(sys_err(format!(
        "bind the rootfs {} onto itself",
        rootfs.display()
    )))?;

    for mount in spec.mounts().iter().flatten() {
        mount_one(sys, rootfs, mount, cgroups, own_cgroups)?;
    }
    let dev_is_bound = spec.mounts().iter().flatten().any(|m| {
        m.destination() == Path::new("/dev")
            && m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    });
    if !dev_is_bound {
        create_devices(
            sys,
            rootfs,
            linux
                .and_then(|l| l.devices().as_deref())
                .unwrap_or_default(),
        )?;
    }
    // A missing working directory is created, as runc does, so that a process may
    // start in a directory its image does not have.
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd()) {
        if cwd.is_absolute() {
            sys.mountpoint(rootfs, cwd, true).map_err(sys_err(format!(
                "create the working directory {}",
                cwd.display()
            )))?;
        }
    }
    Ok(())
}
// ANCHOR_END: prepare

fn mount_one(
    sys: &mut dyn Syscalls,
    rootfs: &Path,
    mount: &Mount,
    cgroups: &Hierarchy,
    own_cgroups: Option<&Membership>,
) -> Result<(), RootfsError> {
    let dest = mount.destination();
    if !dest.is_absolute() {
        return Err(RootfsError::RelativeDestination(dest.clone()));
    }
    let (flags, propagation, data) = parse_options(mount.options().as_deref().unwrap_or_default());
    let is_bind = flags.contains(MsFlags::MS_BIND);
    let fstype = mount
        .typ()
        .as_deref()
        .filter(|t| !t.is_empty() && *t != "none" && *t != "bind");
    let what = |verb: &str| {
        format!(
            "{verb} {} on {}",
            mount
                .source()
                .as_deref()
                .unwrap_or(Path::new("none"))
                .display(),
            dest.display()
        )
    };

    // A bind mount of a file needs a file to mount on; everything else a directory.
    let source_is_dir = !is_bind || mount.source().as_deref().is_none_or(|s| s.is_dir());
    let target = sys
        .mountpoint(rootfs, dest, source_is_dir)
        .map_err(sys_err(what("create the mount point for")))?;

    if fstype == Some("cgroup") {
        return mount_cgroups(sys, &target, flags, cgroups, own_cgroups);
    }
    if !is_bind && fstype.is_none() {
        return Err(RootfsError::NoType {
            destination: dest.clone(),
        });
    }
    let data = (!data.is_empty()).then(|| data.join(","));
    sys.mount(
        mount.source().as_deref(),
        &target,
        fstype,
        flags,
        data.as_deref(),
    )
    .map_err(sys_err(what("mount")))?;
    // A bind mount ignores every flag but MS_BIND and MS_REC on the first call; the
    // others (ro, nosuid, ...) take effect on a second, remounting call.
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if is_bind && !extra.is_empty() {
        sys.mount(
            None,
            &target,
            None,
            extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
            None,
        )
        .map_err(sys_err(what("remount with its options")))?;
    }
    if !propagation.is_empty() {
        sys.mount(None, &target, None, propagation, None)
            .map_err(sys_err(what("set the propagation of")))?;
    }
    Ok(())
}

// ANCHOR: cgroup_mount
/// A `cgroup` mount: the host's cgroup layout, seen from the container. On v2 that
/// is one `cgroup2` mount; on v1 and hybrid hosts it is a tmpfs holding one `cgroup`
/// mount per hierarchy (and `unified/` for a hybrid host's v2 part), as on the host.
///
/// Either way the container must find its *own* cgroup at the top of each hierarchy,
/// where programs look for their limits (`/sys/fs/cgroup/memory/memory.limit_in_bytes`).
/// With a cgroup namespace a fresh mount shows just that. Without one a fresh v1 mount
/// would show the host's root, so, as runc does, each hierarchy is instead a bind
/// mount of the container's own cgroup directory (`own_cgroups`); in a user namespace
/// that is also the only way, as only the host's cgroup namespace may mount v1 ones.
fn mount_cgroups(
    sys: &mut dyn Syscalls,
    target: &Path,
    flags: MsFlags,
    cgroups: &Hierarchy,
    own_cgroups: Option<&Membership>,
) -> Result<(), RootfsError> {
    let what = |name: &str| format!("mount the cgroup hierarchy {name} on {}", target.display());
    let (v1, unified) = match cgroups {
        Hierarchy::V2 { .. } => {
            return sys
                .mount(
                    Some(Path::new("cgroup2")),
                    target,
                    Some("cgroup2"),
                    flags,
                    None,
                )
                .map_err(sys_err(what("cgroup2")));
        }
        Hierarchy::V1 { controllers } => (controllers, None),
        Hierarchy::Hybrid {
            controllers,
            unified,
        } => (controllers, Some(unified)),
    };
    let dir_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    sys.mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        dir_flags,
        Some("mode=755"),
    )
    .map_err(sys_err(what("tmpfs")))?;
    // Co-mounted controllers (`cpu,cpuacct`) share one mount: mount each only once.
    let mut mounts: Vec<(String, Vec<&str>, &CgroupMount)> = Vec::new();
    for (controller, mount) in v1 {
        let name = mount
            .mountpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match mounts.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, controllers, _)) => controllers.push(controller),
            None => mounts.push((name, vec![controller], mount)),
        }
    }
    if let Some(unified) = unified {
        mounts.push(("unified".into(), Vec::new(), unified));
    }
    for (name, controllers, host) in &mounts {
        let dir = sys
            .mountpoint(target, Path::new(name), true)
            .map_err(sys_err(what(name)))?;
        if let Some(own) = own_cgroups {
            let cgroup = match controllers.first() {
                Some(controller) => own.v1.get(*controller),
                None => own.v2.as_ref(),
            };
            let source = own_cgroup_dir(host, cgroup);
            sys.mount(Some(&source), &dir, None, MsFlags::MS_BIND, None)
                .map_err(sys_err(what(name)))?;
            sys.mount(
                None,
                &dir,
                None,
                flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None,
            )
            .map_err(sys_err(what(name)))?;
            continue;
        }
        let (fstype, data) = if controllers.is_empty() {
            ("cgroup2", None)
        } else {
            ("cgroup", Some(controllers.join(",")))
        };
        sys.mount(
            Some(Path::new(fstype)),
            &dir,
            Some(fstype),
            flags,
            data.as_deref(),
        )
        .map_err(sys_err(what(name)))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        sys.mount(
            None,
            target,
            None,
            dir_flags | MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT,
            None,
        )
        .map_err(sys_err(what("tmpfs (read-only)")))?;
    }
    Ok(())
}
// ANCHOR_END: cgroup_mount

/// The host directory of `cgroup` (a path from `/proc/self/cgroup`) in hierarchy
/// `host`; the hierarchy's top if the container is not in it (or outside its mount).
fn own_cgroup_dir(host: &CgroupMount, cgroup: Option<&PathBuf>) -> PathBuf {
    let below = cgroup.and_then(|c| c.strip_prefix(&host.root).ok());
    match below {
        Some(below) => host.mountpoint.join(below),
        None => host.mountpoint.clone(),
    }
}

/// The devices every container gets, whatever the spec lists.
fn default_devices() -> [(&'static str, u64, u64); 6] {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
}

// ANCHOR: devices
/// Device nodes in the container's `/dev`: the six defaults, the spec's own, and the
/// conventional symlinks (`/dev/fd`, `/dev/stdin`, ..., `/dev/ptmx`).
fn create_devices(
    sys: &mut dyn Syscalls,
    rootfs: &Path,
    spec_devices: &[LinuxDevice],
) -> Result<(), RootfsError> {
    for (name, major, minor) in default_devices() {
        let path = Path::new("/dev").join(name);
        if spec_devices.iter().any(|d| d.path() == &path) {
            continue;
        }
        make_device(
            sys,
            rootfs,
            &path,
            SFlag::S_IFCHR,
            0o666,
            makedev(major, minor),
            None,
            None,
        )?;
    }
    for device in spec_devices {
        let kind = match device.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => continue, // "all": only meaningful in cgroup rules
        };
        let dev = makedev(device.major() as u64, device.minor() as u64);
        let mode = device.file_mode().unwrap_or(0o666);
        make_device(
            sys,
            rootfs,
            device.path(),
            kind,
            mode,
            dev,
            device.uid(),
            device.gid(),
        )?;
    }
    let links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    for (target, link) in links {
        let link = in_rootfs(rootfs, Path::new(link));
        match sys.symlink(Path::new(target), &link) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(sys_err(format!("create the symlink {}", link.display()))(e)),
        }
    }
    Ok(())
}
// ANCHOR_END: devices

#[allow(clippy::too_many_arguments)]
fn make_device(
    sys: &mut dyn Syscalls,
    rootfs: &Path,
    path: &Path,
    kind: SFlag,
    mode: u32,
    dev: u64,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), RootfsError> {
    let what = |verb: &str| format!("{verb} the device {}", path.display());
    let parent = path.parent().unwrap_or(Path::new("/dev"));
    let dir = sys
        .mountpoint(rootfs, parent, true)
        .map_err(sys_err(what("create the directory of")))?;
    let node = dir.join(path.file_name().unwrap_or_default());
    match sys.mknod(&node, kind, Mode::from_bits_truncate(mode), dev) {
        Ok(()) | Err(Errno::EEXIST) => {}
        // In a user namespace no device node can be made, only bound from the host's
        // node of the same path, as runc does; its owner and mode come with it.
        Err(Errno::EPERM) => {
            let file = sys
                .mountpoint(rootfs, path, false)
                .map_err(sys_err(what("create the mount point for")))?;
            return sys
                .mount(Some(path), &file, None, MsFlags::MS_BIND, None)
                .map_err(sys_err(what("bind the host's node for")));
        }
        Err(e) => return Err(sys_err(what("create"))(e)),
    }
    if uid.is_some() || gid.is_some() {
        sys.chown(&node, uid, gid).map_err(sys_err(what("chown")))?;
    }
    Ok(())
}

/// `rootfs` + `path`, lexically, for paths berth itself chose (never the image's).
fn in_rootfs(rootfs: &Path, path: &Path) -> PathBuf {
    rootfs.join(path.strip_prefix("/").unwrap_or(path))
}

// ANCHOR: pivot
/// Part two: the rootfs becomes `/`, and the host's tree is let go.
///
/// `pivot_root(".", ".")` stacks the old root on top of the new one, at the same
/// place; unmounting `.` then removes the old root, leaving the new one. With
/// `no_pivot` (for a rootfs on a ramdisk, where pivot_root is impossible) the rootfs
/// is moved over `/` and chrooted into instead, which a process with enough
/// privilege could escape.
pub fn pivot(sys: &mut dyn Syscalls, rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    sys.chdir(rootfs)
        .map_err(sys_err(format!("chdir to {}", rootfs.display())))?;
    if no_pivot {
        sys.mount(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)
            .map_err(sys_err("move the rootfs onto /"))?;
        sys.chroot(Path::new("."))
            .map_err(sys_err("chroot into the rootfs"))?;
    } else {
        let here = Path::new(".");
        sys.pivot_root(here, here)
            .map_err(sys_err("pivot_root into the rootfs"))?;
        // The old root is now stacked on `.`. Make it a slave first, so that
        // unmounting it here is not propagated to the host's own mounts.
        sys.mount(None, here, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
            .map_err(sys_err("make the old root a slave"))?;
        sys.umount(here, MntFlags::MNT_DETACH)
            .map_err(sys_err("unmount the old root"))?;
    }
    sys.chdir(Path::new("/"))
        .map_err(sys_err("chdir to the new /"))
}
// ANCHOR_END: pivot

// ANCHOR: finish
/// Part three, after the pivot: masked paths, read-only paths, a read-only root.
pub fn finish(sys: &mut dyn Syscalls, spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    // A masked path is hidden: a directory under an empty read-only tmpfs, a file
    // under /dev/null. Missing paths are fine (not every kernel has every file).
    for path in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        let path = Path::new(path);
        match sys.kind_of(path) {
            None => continue,
            Some(SFlag::S_IFDIR) => sys.mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            ),
            Some(_) => sys.mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                MsFlags::MS_BIND,
                None,
            ),
        }
        .map_err(sys_err(format!("mask {}", path.display())))?;
    }
    // A read-only path is bound onto itself, then remounted read-only.
    for path in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        let path = Path::new(path);
        if sys.kind_of(path).is_none() {
            continue;
        }
        let what = format!("make {} read-only", path.display());
        sys.mount(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(sys_err(what.clone()))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        sys.mount(None, path, None, flags, None)
            .map_err(sys_err(what))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        sys.mount(None, Path::new("/"), None, flags, None)
            .map_err(sys_err("remount / read-only"))?;
    }
    Ok(())
}
// ANCHOR_END: finish

/// Writes each `linux.sysctl` entry under `/proc/sys` (after the pivot, so it is the
/// container's `/proc`, in its own namespaces).
pub fn apply_sysctl(spec: &Spec) -> Result<(), RootfsError> {
    for (key, value) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, value).map_err(|e| RootfsError::Sys {
            what: format!("set sysctl {key}={value} ({})", path.display()),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_oci::spec::default_spec;

    /// Records each call as one line, in order.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
    }

    impl Syscalls for Recorder {
        fn mount(
            &mut self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> nix::Result<()> {
            let source = source.map_or("-".into(), |s| s.display().to_string());
            let flags: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
            let flags = flags.join(" | ");
            self.calls.push(format!(
                "mount {source} {} {} {flags} {}",
                target.display(),
                fstype.unwrap_or("-"),
                data.unwrap_or("-")
            ));
            Ok(())
        }
        fn umount(&mut self, target: &Path, _: MntFlags) -> nix::Result<()> {
            self.calls.push(format!("umount {}", target.display()));
            Ok(())
        }
        fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
            self.calls.push(format!(
                "pivot_root {} {}",
                new_root.display(),
                put_old.display()
            ));
            Ok(())
        }
        fn chdir(&mut self, path: &Path) -> nix::Result<()> {
            self.calls.push(format!("chdir {}", path.display()));
            Ok(())
        }
        fn chroot(&mut self, path: &Path) -> nix::Result<()> {
            self.calls.push(format!("chroot {}", path.display()));
            Ok(())
        }
        fn mknod(&mut self, path: &Path, _: SFlag, mode: Mode, dev: u64) -> nix::Result<()> {
            self.calls
                .push(format!("mknod {} {:o} {dev}", path.display(), mode.bits()));
            Ok(())
        }
        fn symlink(&mut self, target: &Path, link: &Path) -> nix::Result<()> {
            self.calls
                .push(format!("symlink {} {}", link.display(), target.display()));
            Ok(())
        }
        fn chown(&mut self, path: &Path, uid: Option<u32>, gid: Option<u32>) -> nix::Result<()> {
            self.calls
                .push(format!("chown {} {uid:?} {gid:?}", path.display()));
            Ok(())
        }
        fn mountpoint(&mut self, rootfs: &Path, dest: &Path, _: bool) -> nix::Result<PathBuf> {
            Ok(in_rootfs(rootfs, dest))
        }
        fn kind_of(&mut self, path: &Path) -> Option<SFlag> {
            // A pretend /proc where these two are directories and all else are files.
            let dirs = [Path::new("/proc/acpi"), Path::new("/proc/scsi")];
            let kind = if dirs.contains(&path) {
                SFlag::S_IFDIR
            } else {
                SFlag::S_IFREG
            };
            path.starts_with("/proc").then_some(kind)
        }
    }

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,cpu,cpuacct
32 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,memory
33 25 0:29 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,name=systemd
";

    fn no_cgroups() -> Hierarchy {
        Hierarchy::V2 {
            unified: crate::cgroups::hierarchy::Mount {
                mountpoint: "/sys/fs/cgroup".into(),
                root: "/".into(),
            },
        }
    }

    fn position(calls: &[String], prefix: &str) -> usize {
        calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
    }

    #[test]
    fn the_host_tree_is_made_a_slave_before_anything_is_mounted() {
        let mut sys = Recorder::default();
        prepare(
            &mut sys,
            &default_spec(),
            Path::new("/b/rootfs"),
            &no_cgroups(),
            None,
        )
        .unwrap();
        assert_eq!(sys.calls[0], "mount - / - MS_REC | MS_SLAVE -");
        assert_eq!(
            sys.calls[1],
            "mount /b/rootfs /b/rootfs - MS_BIND | MS_REC -"
        );
        assert!(position(&sys.calls, "mount proc /b/rootfs/proc proc") > 1);
        // /dev is mounted before its nodes are made, or they would be hidden.
        assert!(
            position(&sys.calls, "mount tmpfs /b/rootfs/dev tmpfs")
                < position(&sys.calls, "mknod /b/rootfs/dev/null")
        );
        assert!(sys
            .calls
            .contains(&"symlink /b/rootfs/dev/ptmx pts/ptmx".to_owned()));
    }

    #[test]
    fn pivot_root_stacks_then_detaches_the_old_root() {
        let mut sys = Recorder::default();
        pivot(&mut sys, Path::new("/b/rootfs"), false).unwrap();
        assert_eq!(
            sys.calls,
            [
                "chdir /b/rootfs",
                "pivot_root . .",
                "mount - . - MS_REC | MS_SLAVE -",
                "umount .",
                "chdir /"
            ]
        );
        let mut sys = Recorder::default();
        pivot(&mut sys, Path::new("/b/rootfs"), true).unwrap();
        assert_eq!(
            sys.calls,
            [
                "chdir /b/rootfs",
                "mount /b/rootfs / - MS_MOVE -",
                "chroot .",
                "chdir /"
            ]
        );
    }

    #[test]
    fn masked_and_readonly_paths_then_a_readonly_root() {
        let mut sys = Recorder::default();
        finish(&mut sys, &default_spec()).unwrap();
        assert!(
            sys.calls
                .contains(&"mount /dev/null /proc/kcore - MS_BIND -".to_owned()),
            "{:#?}",
            sys.calls
        );
        assert!(sys
            .calls
            .contains(&"mount tmpfs /proc/acpi tmpfs MS_RDONLY -".to_owned()));
        assert_eq!(
            sys.calls.last().unwrap(),
            "mount - / - MS_RDONLY | MS_REMOUNT | MS_BIND -"
        );
    }

    #[test]
    fn bind_mount_options_need_a_second_remount_call() {
        let mut sys = Recorder::default();
        let mount = oci_spec::runtime::MountBuilder::default()
            .destination("/data")
            .source("/srv")
            .options(vec![
                "rbind".to_owned(),
                "ro".to_owned(),
                "rprivate".to_owned(),
            ])
            .build()
            .unwrap();
        mount_one(&mut sys, Path::new("/r"), &mount, &no_cgroups(), None).unwrap();
        assert_eq!(
            sys.calls,
            [
                "mount /srv /r/data - MS_RDONLY | MS_BIND | MS_REC -",
                "mount - /r/data - MS_RDONLY | MS_REMOUNT | MS_BIND -",
                "mount - /r/data - MS_REC | MS_PRIVATE -",
            ]
        );
    }

    #[test]
    fn cgroup_mounts_mirror_the_host_layout() {
        let hybrid = Hierarchy::from_mountinfo(HYBRID_MOUNTINFO).unwrap();
        let mut sys = Recorder::default();
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        mount_cgroups(&mut sys, Path::new("/r/sys/fs/cgroup"), ro, &hybrid, None).unwrap();
        assert_eq!(
            sys.calls,
            [
                "mount tmpfs /r/sys/fs/cgroup tmpfs MS_NOSUID | MS_NODEV | MS_NOEXEC mode=755",
                "mount cgroup /r/sys/fs/cgroup/cpu,cpuacct cgroup MS_RDONLY | MS_NOSUID cpu,cpuacct",
                "mount cgroup /r/sys/fs/cgroup/memory cgroup MS_RDONLY | MS_NOSUID memory",
                "mount cgroup /r/sys/fs/cgroup/systemd cgroup MS_RDONLY | MS_NOSUID name=systemd",
                "mount cgroup2 /r/sys/fs/cgroup/unified cgroup2 MS_RDONLY | MS_NOSUID -",
                "mount - /r/sys/fs/cgroup - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_REMOUNT -",
            ]
        );
        let mut sys = Recorder::default();
        mount_cgroups(&mut sys, Path::new("/r/c"), ro, &no_cgroups(), None).unwrap();
        assert_eq!(
            sys.calls,
            ["mount cgroup2 /r/c cgroup2 MS_RDONLY | MS_NOSUID -"]
        );
    }

    #[test]
    fn without_a_cgroup_namespace_each_hierarchy_binds_the_containers_own_cgroup() {
        let hybrid = Hierarchy::from_mountinfo(HYBRID_MOUNTINFO).unwrap();
        let own = Membership::parse(
            "4:memory:/user/1/web\n3:cpu,cpuacct:/web\n9:name=systemd:/web\n0::/web\n",
        )
        .unwrap();
        let mut sys = Recorder::default();
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        mount_cgroups(&mut sys, Path::new("/r/c"), ro, &hybrid, Some(&own)).unwrap();
        let remount = "MS_RDONLY | MS_NOSUID | MS_REMOUNT | MS_BIND -";
        assert_eq!(
            sys.calls[1..9],
            [
                "mount /sys/fs/cgroup/cpu,cpuacct/web /r/c/cpu,cpuacct - MS_BIND -".to_owned(),
                format!("mount - /r/c/cpu,cpuacct - {remount}"),
                "mount /sys/fs/cgroup/memory/user/1/web /r/c/memory - MS_BIND -".to_owned(),
                format!("mount - /r/c/memory - {remount}"),
                "mount /sys/fs/cgroup/systemd/web /r/c/systemd - MS_BIND -".to_owned(),
                format!("mount - /r/c/systemd - {remount}"),
                "mount /sys/fs/cgroup/unified/web /r/c/unified - MS_BIND -".to_owned(),
                format!("mount - /r/c/unified - {remount}"),
            ]
        );
    }

    #[test]
    fn mountpoints_never_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink("/", rootfs.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../..", rootfs.join("up")).unwrap();
        let mut sys = Linux;
        let a = sys
            .mountpoint(&rootfs, Path::new("/escape/etc/new-dir"), true)
            .unwrap();
        assert_eq!(a, rootfs.join("etc/new-dir"));
        let b = sys
            .mountpoint(&rootfs, Path::new("/up/file"), false)
            .unwrap();
        assert_eq!(b, rootfs.join("file"));
        assert!(b.is_file());
    }
}
