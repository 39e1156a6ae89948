//! Mount options as runtimes and snapshotters write them (`ro`, `nosuid`, `rbind`,
//! `rslave`, `lowerdir=…`), turned into what `mount(2)` takes: flags, propagation and
//! the file system's data string. One parser for every berth process that mounts:
//! the runtime (a spec's mounts), the shim (the rootfs a snapshotter describes) and
//! the supervisor (a snapshot it unpacks a layer into).

use std::path::Path;

use nix::mount::{mount, MsFlags};

/// Every mount option berth-runc understands (for `berth-runc features`).
pub const KNOWN_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "tmpcopyup",
    "unbindable",
];

// ANCHOR: mount_options
/// Splits a mount's options into kernel flags, propagation flags (which need a call
/// of their own), and the rest, which is passed to the file system as data.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, Vec<String>) {
    let (mut flags, mut propagation, mut data) = (MsFlags::empty(), MsFlags::empty(), Vec::new());
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            // containerd's way of saying "no options".
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            other => {
                match propagation_flags(other) {
                    Some(p) => propagation |= p,
                    // `tmpcopyup` (copy the image's files into a tmpfs) is a runc
                    // extension; berth skips it rather than pass it to the kernel.
                    None if other == "tmpcopyup" => {}
                    None => data.push(other.to_owned()),
                }
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, propagation, data)
}
// ANCHOR_END: mount_options

pub(crate) fn propagation_flags(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

// ANCHOR: mount_described
/// Mounts on `target` what a containerd `Mount` describes (`kind`, `source`,
/// `options`): the root filesystem a snapshotter hands to a shim, or a snapshot the
/// supervisor unpacks a layer into. A bind mount takes its other flags (`ro`, …) on a
/// second, remounting call, since the kernel ignores them on the first; propagation
/// takes a call of its own.
pub fn mount_described(
    kind: &str,
    source: &str,
    target: &Path,
    options: &[String],
) -> nix::Result<()> {
    let (flags, propagation, data) = parse_options(options);
    let fstype = (!matches!(kind, "" | "none" | "bind")).then_some(kind);
    let data = (!data.is_empty()).then(|| data.join(","));
    mount(Some(source), target, fstype, flags, data.as_deref())?;
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if flags.contains(MsFlags::MS_BIND) && !extra.is_empty() {
        let remount = flags | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, remount, None::<&str>)?;
    }
    if !propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        )?;
    }
    Ok(())
}
// ANCHOR_END: mount_described

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let options: Vec<String> = ["nosuid", "ro", "rw", "mode=755", "rslave", "size=65536k"]
            .map(String::from)
            .into();
        let (flags, propagation, data) = parse_options(&options);
        assert_eq!(flags, MsFlags::MS_NOSUID);
        assert_eq!(propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(data, ["mode=755", "size=65536k"]);
    }

    #[test]
    fn a_snapshotters_options_split_the_same_way() {
        let options: Vec<String> = ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]
            .map(String::from)
            .into();
        let (flags, propagation, data) = parse_options(&options);
        assert!(flags.is_empty() && propagation.is_empty());
        assert_eq!(
            data.join(","),
            "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b"
        );
        let options: Vec<String> = ["defaults", "rbind", "ro", "nosuid", "rw"]
            .map(String::from)
            .into();
        let (flags, _, data) = parse_options(&options);
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert!(data.is_empty(), "{data:?}");
    }
}
