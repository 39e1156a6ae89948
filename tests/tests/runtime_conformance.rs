//! The runtime conformance suite: berth-runc against Debian's runc, case by case.
//!
//! Every case runs against both runtimes ([`on_both`]) and checks its feature from
//! *inside* the container, with the test image's busybox tools: `/proc/self/status`,
//! `/proc/self/mountinfo`, `id`, `ulimit`, `ip link`. runc is the judge: a case that
//! passes on runc and fails on berth-runc is a berth bug. A case runc cannot pass here
//! (a limit of this host, or of runc 1.1) runs with [`on_berth_only`], which says why.
//! After every case the harness checks that the runtime left nothing behind (state
//! directory, cgroup, mount); see `berth_tests::runtime`.
//!
//! The host is cgroup *hybrid* (v1 controllers, cgroup2 at /sys/fs/cgroup/unified) and
//! its bounding set lacks CAP_SYS_RESOURCE, so limits are only ever lowered here.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use berth_oci::oci_spec::runtime::Spec;
use berth_tests::runtime::{
    cgroup_dirs_named, on_berth_only, on_both, patch, sh, status_field, Bundle, Runtime, TIMEOUT,
};
use serde_json::{json, Value};

/// The namespaces of the default spec, as config.json lists them.
fn default_namespaces() -> Vec<Value> {
    ["pid", "network", "ipc", "uts", "mount"]
        .iter()
        .map(|t| json!({ "type": t }))
        .collect()
}

fn set_namespaces(spec: &mut Spec, namespaces: Vec<Value>) {
    patch(spec, json!({ "linux": { "namespaces": namespaces } }));
}

/// `/proc/self/ns/NAME` of the test process: the host's namespaces.
fn host_ns(name: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A directory for files a case shares with its container or its hooks: 0755, so a
/// container's root in a user namespace can read it too.
fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("berth-rt-shared-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

// ---------------------------------------------------------------------------------
// The process: output, exit status, arguments, environment, directory.

#[test]
fn stdout_stderr_and_exit_code_reach_the_caller() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "echo to-stdout; echo to-stderr >&2; exit 3"));
        let out = rt.run(&bundle);
        assert_eq!(out.status, 3, "{out}");
        assert_eq!(out.stdout, "to-stdout\n", "{out}");
        assert!(out.stderr.contains("to-stderr"), "{out}");
    });
}

#[test]
fn death_by_a_signal_is_128_plus_its_number() {
    // The first process of a pid namespace ignores every signal it has no handler for,
    // even SIGKILL, when sent from inside; so this container keeps the host's.
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "kill -KILL $$");
            set_namespaces(s, default_namespaces().split_off(1));
        });
        let out = rt.run(&bundle);
        assert_eq!(out.status, 128 + 9, "{out}");
    });
}

#[test]
fn args_env_and_cwd_are_the_specs() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            patch(
                s,
                json!({ "process": {
                    "args": ["sh", "-c", "echo \"$0 $1\"; echo \"$GREETING\"; pwd", "zero", "one"],
                    "env": ["PATH=/bin:/sbin", "GREETING=hello there"],
                    "cwd": "/tmp",
                }}),
            )
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout, "zero one\nhello there\n/tmp\n");
    });
}

#[test]
fn the_environment_is_exactly_the_specs_plus_home() {
    // runc adds HOME (from the image's /etc/passwd) when the spec has none; so must berth.
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            patch(
                s,
                json!({ "process": {
                    "args": ["env"],
                    "env": ["PATH=/bin:/usr/bin", "A=1"],
                }}),
            )
        });
        let out = rt.run(&bundle).success();
        let mut env: Vec<&str> = out.stdout.lines().collect();
        env.sort();
        assert_eq!(env, ["A=1", "HOME=/root", "PATH=/bin:/usr/bin"], "{out}");
    });
}

#[test]
fn a_missing_cwd_is_created() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "pwd");
            patch(s, json!({ "process": { "cwd": "/made/by/the/runtime" } }));
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout, "/made/by/the/runtime\n");
    });
}

// ---------------------------------------------------------------------------------
// Namespaces.

#[test]
fn hostname() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "hostname");
            patch(s, json!({ "hostname": "box" }));
        });
        assert_eq!(rt.run(&bundle).success().stdout, "box\n");
    });
}

#[test]
fn domainname() {
    on_berth_only(
        "runc 1.1 ignores `domainname` (it prints \"(none)\"); runc 1.2 sets it",
        |rt| {
            let bundle = Bundle::new(|s| {
                sh(s, "cat /proc/sys/kernel/domainname");
                patch(s, json!({ "domainname": "example.org" }));
            });
            assert_eq!(rt.run(&bundle).success().stdout, "example.org\n");
        },
    );
}

#[test]
fn the_program_is_pid_1_of_a_new_pid_namespace() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "echo $$; ls -d /proc/[0-9]* | wc -l"));
        let out = rt.run(&bundle).success();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], "1", "{out}");
        // sh, and the subshell running ls and wc: nothing of the host's.
        let count: u32 = lines[1].trim().parse().unwrap();
        assert!(count <= 4, "the container sees {count} processes:\n{out}");
    });
}

#[test]
fn new_namespaces_are_really_new() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "for ns in pid net ipc uts mnt cgroup user; do \
                   echo $ns $(readlink /proc/self/ns/$ns); done; ip link",
            );
            let mut namespaces = default_namespaces();
            namespaces.push(json!({ "type": "cgroup" }));
            set_namespaces(s, namespaces);
        });
        let out = rt.run(&bundle).success();
        for line in out.stdout.lines().take(7) {
            let (name, inside) = line.split_once(' ').unwrap();
            if name == "user" {
                assert_eq!(inside, host_ns(name), "no new user namespace was asked for");
            } else {
                assert_ne!(inside, host_ns(name), "the {name} namespace is the host's");
            }
        }
        // A new network namespace has nothing but its own loopback.
        let links: Vec<&str> = out
            .stdout
            .lines()
            .skip(7)
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(links.len(), 1, "{out}");
        assert!(links[0].starts_with("1: lo:"), "{out}");
    });
}

/// A process holding a network namespace of its own (`unshare --net sleep`), killed on drop.
struct NetnsHolder(Child);

impl NetnsHolder {
    fn start() -> NetnsHolder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "60"])
            .spawn()
            .expect("start unshare");
        let holder = NetnsHolder(child);
        // unshare execs sleep once it is in the new namespace.
        let deadline = Instant::now() + TIMEOUT;
        while fs::read_link(holder.ns_path()).ok() == fs::read_link("/proc/self/ns/net").ok() {
            assert!(Instant::now() < deadline, "unshare --net never unshared");
            std::thread::sleep(Duration::from_millis(5));
        }
        holder
    }

    fn ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.0.id()))
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_namespace_is_joined_by_path() {
    let holder = NetnsHolder::start();
    let theirs = fs::read_link(holder.ns_path()).unwrap();
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "readlink /proc/self/ns/net");
            let mut namespaces = default_namespaces();
            namespaces[1] = json!({ "type": "network", "path": holder.ns_path() });
            set_namespaces(s, namespaces);
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout.trim(), theirs.to_string_lossy());
    });
}

#[test]
fn a_user_namespace_maps_the_spec_ids() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            // Device nodes (bound from the host's: no mknod in a user namespace) and
            // the cgroup files must still be there.
            sh(
                s,
                "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g
                 echo x > /dev/null && head -c 2 /dev/zero | wc -c
                 cat /sys/fs/cgroup/pids/pids.max",
            );
            let mut namespaces = default_namespaces();
            namespaces.push(json!({ "type": "user" }));
            set_namespaces(s, namespaces);
            let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
            patch(
                s,
                json!({ "linux": { "uidMappings": map, "gidMappings": map } }),
            );
        });
        let out = rt.run(&bundle).success();
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        assert_eq!(
            words,
            ["0", "100000", "65536", "0", "100000", "65536", "0", "0", "2", "max"],
            "{out}"
        );
    });
}

#[test]
fn exec_joins_the_user_namespace_too() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "exec sleep 60");
            let mut namespaces = default_namespaces();
            namespaces.push(json!({ "type": "user" }));
            set_namespaces(s, namespaces);
            let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
            patch(
                s,
                json!({ "linux": { "uidMappings": map, "gidMappings": map } }),
            );
        });
        let id = rt.new_id();
        rt.create(&bundle, &id, &[]).success();
        rt.invoke(["start", &id]).success();
        let out = rt
            .invoke(["exec", &id, "sh", "-c", "cat /proc/self/uid_map; id -u"])
            .success();
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        assert_eq!(words, ["0", "100000", "65536", "0"], "{out}");
        rt.invoke(["delete", "--force", &id]).success();
    });
}

// ---------------------------------------------------------------------------------
// The filesystem.

#[test]
fn a_readonly_rootfs_cannot_be_written() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "touch /x; echo \"root: $?\"; touch /dev/shm/x && echo shm: ok",
            );
            patch(s, json!({ "root": { "readonly": true } }));
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout, "root: 1\nshm: ok\n", "{out}");
        assert!(out.stderr.contains("Read-only file system"), "{out}");
    });
}

/// A host directory `dir` holding `hello`, and a tmpfs mounted at `dir/sub` holding
/// `deep`: what tells a recursive bind mount from a plain one. Unmounted on drop.
struct HostTree {
    dir: tempfile::TempDir,
}

impl HostTree {
    fn new() -> HostTree {
        let dir = shared_dir();
        fs::write(dir.path().join("hello"), "from the host\n").unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &sub,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        fs::write(sub.join("deep"), "below a mount\n").unwrap();
        HostTree { dir }
    }
}

impl Drop for HostTree {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(
            &self.dir.path().join("sub"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}

#[test]
fn tmpfs_bind_and_rbind_mounts() {
    let tree = HostTree::new();
    let host = tree.dir.path();
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "echo \"scratch: $(grep ' /scratch ' /proc/self/mountinfo | grep -o 'size=[0-9a-z]*')\"
                 echo \"bound: $(cat /bound/hello)\"
                 touch /bound/new 2>/dev/null && echo bound: writable || echo bound: read-only
                 echo \"bound/sub: $(ls /bound/sub)\"
                 echo \"rbound/sub: $(cat /rbound/sub/deep)\"
                 touch /rbound/new 2>/dev/null && echo rbound: writable || echo rbound: read-only",
            );
            let mut mounts = s.mounts().clone().unwrap();
            let extra: Vec<_> = [
                json!({ "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "size=1m"] }),
                json!({ "destination": "/bound", "type": "bind", "source": host,
                        "options": ["bind", "ro"] }),
                json!({ "destination": "/rbound", "type": "bind", "source": host,
                        "options": ["rbind", "ro"] }),
            ]
            .into_iter()
            .map(|m| serde_json::from_value(m).unwrap())
            .collect();
            mounts.extend(extra);
            s.set_mounts(Some(mounts));
        });
        let out = rt.run(&bundle).success();
        assert_eq!(
            out.stdout,
            "scratch: size=1024k\n\
             bound: from the host\n\
             bound: read-only\n\
             bound/sub: \n\
             rbound/sub: below a mount\n\
             rbound: read-only\n",
            "{out}"
        );
    });
    assert!(!host.join("new").exists());
}

/// `(mount point, file system type, mount options)` of each line of a mountinfo text.
fn mounts_of(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            Some((left[4].to_owned(), fstype.to_owned(), left[5].to_owned()))
        })
        .collect()
}

#[test]
fn the_default_spec_mounts_proc_sys_dev_pts_shm_and_mqueue() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "cat /proc/self/mountinfo"));
        let out = rt.run(&bundle).success();
        let mounts = mounts_of(&out.stdout);
        let find = |point: &str| {
            mounts
                .iter()
                .find(|(p, _, _)| p == point)
                .unwrap_or_else(|| panic!("nothing mounted on {point}:\n{out}"))
        };
        for (point, fstype) in [
            ("/proc", "proc"),
            ("/dev", "tmpfs"),
            ("/dev/pts", "devpts"),
            ("/dev/shm", "tmpfs"),
            ("/dev/mqueue", "mqueue"),
            ("/sys", "sysfs"),
        ] {
            assert_eq!(find(point).1, fstype, "{point}:\n{out}");
        }
        assert!(
            find("/sys").2.starts_with("ro,"),
            "/sys is writable:\n{out}"
        );
        // This host is hybrid: a memory controller hierarchy under /sys/fs/cgroup.
        assert_eq!(find("/sys/fs/cgroup/memory").1, "cgroup", "{out}");
    });
}

#[test]
fn default_devices_and_a_spec_device() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "echo discarded > /dev/null && echo null: ok
                 echo \"zero: $(head -c 4 /dev/zero | wc -c)\"
                 echo \"urandom: $(head -c 4 /dev/urandom | wc -c)\"
                 echo \"fd: $(readlink /dev/fd)\"
                 echo \"extra: $(head -c 3 /dev/berth-zero | wc -c)\"
                 stat -c '%n %F %t:%T %a' /dev/null /dev/berth-zero",
            );
            patch(
                s,
                json!({ "linux": { "devices": [{
                    "path": "/dev/berth-zero", "type": "c", "major": 1, "minor": 5,
                    "fileMode": 0o640, "uid": 0, "gid": 0,
                }]}}),
            );
        });
        let out = rt.run(&bundle).success();
        assert_eq!(
            out.stdout,
            "null: ok\nzero: 4\nurandom: 4\nfd: /proc/self/fd\nextra: 3\n\
             /dev/null character special file 1:3 666\n\
             /dev/berth-zero character special file 1:5 640\n",
            "{out}"
        );
    });
}

#[test]
fn masked_paths_are_empty_and_readonly_paths_cannot_be_written() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "echo \"keys: $(wc -c < /proc/keys)\"
                 echo \"version: $(wc -c < /proc/version)\"
                 echo \"acpi: $(grep ' /proc/acpi ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1) \
                   $(ls -A /proc/acpi | wc -l)\"
                 echo 1 > /proc/sys/vm/overcommit_memory",
            );
            let linux = s.linux_mut().as_mut().unwrap();
            let mut masked = linux.masked_paths().clone().unwrap();
            masked.push("/proc/version".into());
            linux.set_masked_paths(Some(masked));
        });
        let out = rt.run(&bundle);
        assert_eq!(out.stdout, "keys: 0\nversion: 0\nacpi: tmpfs 0\n", "{out}");
        assert_ne!(out.status, 0, "{out}");
        assert!(out.stderr.contains("Read-only file system"), "{out}");
    });
}

#[test]
fn sysctls_are_set_in_the_containers_namespaces() {
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "cat /proc/sys/net/ipv4/ip_forward");
            patch(
                s,
                json!({ "linux": { "sysctl": { "net.ipv4.ip_forward": "1" } } }),
            );
        });
        assert_eq!(rt.run(&bundle).success().stdout, "1\n");
    });
    let host_after = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(host_before, host_after, "the host's own sysctl changed");
}

// ---------------------------------------------------------------------------------
// Process attributes and privileges.

#[test]
fn rlimits() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "ulimit -n; ulimit -Hn");
            patch(
                s,
                json!({ "process": { "rlimits": [
                    { "type": "RLIMIT_NOFILE", "soft": 777, "hard": 888 }
                ]}}),
            );
        });
        assert_eq!(rt.run(&bundle).success().stdout, "777\n888\n");
    });
}

/// The five capability lines of a `/proc/self/status` text, as (name, hex) pairs.
fn capability_lines(status: &str) -> Vec<(String, String)> {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .map(|name| {
            let value =
                status_field(status, name).unwrap_or_else(|| panic!("no {name} in:\n{status}"));
            (name.to_string(), value.to_owned())
        })
        .collect()
}

fn expect_capabilities(expected: [(&str, u64); 5], status: &str) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(name, bits)| (name.to_string(), format!("{bits:016x}")))
        .collect();
    assert_eq!(capability_lines(status), expected);
}

#[test]
fn capabilities_of_the_default_spec() {
    // AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10). Root gets its whole bounding
    // set as permitted and effective at exec; no inheritable set, so no ambient one.
    let default = 1 << 29 | 1 << 5 | 1 << 10;
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "cat /proc/self/status"));
        let out = rt.run(&bundle).success();
        expect_capabilities(
            [
                ("CapInh", 0),
                ("CapPrm", default),
                ("CapEff", default),
                ("CapBnd", default),
                ("CapAmb", 0),
            ],
            &out.stdout,
        );
    });
}

#[test]
fn capabilities_of_a_reduced_set_for_a_non_root_user() {
    // For a non-root user exec keeps only the ambient set (in permitted and effective):
    // the runtime must keep KILL across the switch from root and raise it as ambient.
    let (chown, kill, setuid) = (1u64 << 0, 1u64 << 5, 1u64 << 7);
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "cat /proc/self/status");
            patch(
                s,
                json!({ "process": {
                    "user": { "uid": 1000, "gid": 1000 },
                    "capabilities": {
                        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"],
                        "effective": ["CAP_KILL"],
                        "permitted": ["CAP_KILL", "CAP_CHOWN"],
                        "inheritable": ["CAP_KILL"],
                        "ambient": ["CAP_KILL"],
                    },
                }}),
            );
        });
        let out = rt.run(&bundle).success();
        expect_capabilities(
            [
                ("CapInh", kill),
                ("CapPrm", kill),
                ("CapEff", kill),
                ("CapBnd", chown | kill | setuid),
                ("CapAmb", kill),
            ],
            &out.stdout,
        );
    });
}

#[test]
fn no_new_privileges() {
    on_both(|rt| {
        for (setting, expected) in [(true, "1"), (false, "0")] {
            let bundle = Bundle::new(|s| {
                sh(s, "grep NoNewPrivs /proc/self/status");
                patch(s, json!({ "process": { "noNewPrivileges": setting } }));
            });
            let out = rt.run(&bundle).success();
            assert_eq!(
                status_field(&out.stdout, "NoNewPrivs"),
                Some(expected),
                "{out}"
            );
        }
    });
}

#[test]
fn user_groups_and_umask() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "id; cat /proc/self/status");
            patch(
                s,
                json!({ "process": { "user": {
                    "uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027,
                }}}),
            );
        });
        let out = rt.run(&bundle).success();
        let status = out.stdout.as_str();
        assert_eq!(status_field(status, "Uid"), Some("1000\t1000\t1000\t1000"));
        assert_eq!(status_field(status, "Gid"), Some("1001\t1001\t1001\t1001"));
        assert_eq!(status_field(status, "Groups"), Some("10 20"));
        assert_eq!(status_field(status, "Umask"), Some("0027"));
        assert!(
            status.starts_with("uid=1000 gid=1001 groups=10,20"),
            "{out}"
        );
    });
}

#[test]
fn oom_score_adj() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "cat /proc/self/oom_score_adj");
            patch(s, json!({ "process": { "oomScoreAdj": 500 } }));
        });
        assert_eq!(rt.run(&bundle).success().stdout, "500\n");
    });
}

#[test]
fn seccomp_denies_with_an_errno_and_allows_the_rest() {
    let script = "mkdir /tmp/made; echo \"mkdir: $?\"; touch /tmp/touched && echo touch: ok; \
                  grep '^Seccomp:' /proc/self/status";
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, script);
            patch(
                s,
                json!({ "linux": { "seccomp": {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{
                        "names": ["mkdir", "mkdirat"],
                        "action": "SCMP_ACT_ERRNO",
                        "errnoRet": 1,
                    }],
                }}}),
            );
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout, "mkdir: 1\ntouch: ok\nSeccomp:\t2\n", "{out}");
        assert!(out.stderr.contains("Operation not permitted"), "{out}");

        // A profile that allows everything filters nothing.
        let bundle = Bundle::new(|s| {
            sh(s, script);
            patch(
                s,
                json!({ "linux": { "seccomp": { "defaultAction": "SCMP_ACT_ALLOW" } } }),
            );
        });
        let out = rt.run(&bundle).success();
        assert!(out.stdout.starts_with("mkdir: 0\ntouch: ok\n"), "{out}");
    });
}

// ---------------------------------------------------------------------------------
// Cgroups, seen from inside.

fn cgroup_limits(cgroup_namespace: bool) {
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max",
            );
            patch(
                s,
                json!({ "linux": { "resources": {
                    "memory": { "limit": 64 << 20 },
                    "pids": { "limit": 50 },
                }}}),
            );
            if cgroup_namespace {
                let mut namespaces = default_namespaces();
                namespaces.push(json!({ "type": "cgroup" }));
                set_namespaces(s, namespaces);
            }
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout, format!("{}\n50\n", 64 << 20), "{out}");
    });
}

#[test]
fn cgroup_limits_are_visible_inside() {
    cgroup_limits(false);
}

#[test]
fn cgroup_limits_are_visible_inside_a_cgroup_namespace() {
    cgroup_limits(true);
}

// ---------------------------------------------------------------------------------
// Hooks.

#[test]
fn hooks_get_the_state_on_stdin() {
    let kinds = ["prestart", "createRuntime", "poststart", "poststop"];
    on_both(|rt| {
        let dir = shared_dir();
        let bundle = Bundle::new(|s| {
            sh(s, "true");
            let hook = |kind: &str| {
                let file = dir.path().join(format!("{kind}.json"));
                json!([{ "path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", file.display())] }])
            };
            let hooks: serde_json::Map<String, Value> =
                kinds.iter().map(|k| (k.to_string(), hook(k))).collect();
            patch(s, json!({ "hooks": hooks }));
        });
        let id = rt.new_id();
        let pid_file = dir.path().join("pid");
        let pid_arg = pid_file.to_str().unwrap();
        rt.run_with(&bundle, &id, &["--pid-file", pid_arg])
            .success();
        let pid: i64 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // runc 1.1 still says "created" to poststart hooks, which run once the program
        // has started; berth says "running", the status the container has by then.
        let poststart = if rt.is_berth() { "running" } else { "created" };
        for (kind, status, has_pid) in [
            ("prestart", "creating", true),
            ("createRuntime", "creating", true),
            ("poststart", poststart, true),
            ("poststop", "stopped", false),
        ] {
            let path = dir.path().join(format!("{kind}.json"));
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("the {kind} hook did not run ({e})"));
            let state: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{kind} got no JSON ({e}): {text}"));
            assert_eq!(state["id"], id.as_str(), "{kind}: {state}");
            assert_eq!(state["status"], status, "{kind}: {state}");
            assert_eq!(
                state["bundle"],
                bundle.path().to_str().unwrap(),
                "{kind}: {state}"
            );
            if has_pid {
                assert_eq!(state["pid"], pid, "{kind}: {state}");
            } else {
                assert!(
                    state["pid"].is_null() || state["pid"] == 0,
                    "{kind}: {state}"
                );
            }
        }
    });
}

// ---------------------------------------------------------------------------------
// The lifecycle, verb by verb.

#[test]
fn create_start_kill_delete() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "echo started; exec sleep 60"));
        let id = rt.new_id();
        rt.create(&bundle, &id, &[]).success();
        let state = rt.state(&id).expect("created");
        assert_eq!(state["status"], "created", "{state}");
        assert_eq!(state["id"], id.as_str());
        assert_eq!(state["bundle"], bundle.path().to_str().unwrap());
        let pid = state["pid"].as_i64().unwrap();
        assert!(pid > 0, "{state}");

        rt.invoke(["start", &id]).success();
        assert_eq!(rt.status(&id), "running");
        assert_eq!(rt.state(&id).unwrap()["pid"], pid);

        rt.invoke(["kill", &id, "KILL"]).success();
        rt.wait_for_status(&id, "stopped");
        rt.invoke(["delete", &id]).success();
        assert_eq!(rt.status(&id), "gone");
    });
}

#[test]
fn pause_resume_exec_ps_and_list() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "exec sleep 60"));
        let id = rt.new_id();
        rt.create(&bundle, &id, &[]).success();
        rt.invoke(["start", &id]).success();
        let pid = rt.state(&id).unwrap()["pid"].as_i64().unwrap();

        rt.invoke(["pause", &id]).success();
        assert_eq!(rt.status(&id), "paused");
        rt.invoke(["resume", &id]).success();
        assert_eq!(rt.status(&id), "running");

        let out = rt.invoke(["exec", &id, "sh", "-c", "echo from exec; hostname; exit 7"]);
        assert_eq!(out.status, 7, "{out}");
        assert_eq!(out.stdout, "from exec\nrunc\n", "{out}");

        let out = rt.invoke(["ps", "--format", "json", &id]).success();
        let pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(pids, [pid], "{out}");

        let out = rt.invoke(["list", "--format", "json"]).success();
        let list: Value = serde_json::from_str(&out.stdout).unwrap();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1, "{out}");
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["status"], "running");
        assert_eq!(list[0]["pid"], pid);

        rt.invoke(["delete", "--force", &id]).success();
        assert_eq!(rt.status(&id), "gone");
    });
}

#[test]
fn the_program_starts_with_sigpipe_at_its_default_and_nothing_blocked() {
    // Rust programs (berth-runc, and its init) ignore SIGPIPE, and an ignored signal
    // stays ignored across exec: the program must not inherit that, or `yes | head`
    // would spin. (Other ignored signals are the caller's to pass on, as runc does.)
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "grep -E '^Sig(Ign|Blk)' /proc/self/status"));
        let out = rt.run(&bundle).success();
        let field = |name: &str| {
            let line = out
                .stdout
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name}: {out}"));
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "{out}");
        let sigpipe = 1 << (libc::SIGPIPE - 1);
        assert_eq!(field("SigIgn:") & sigpipe, 0, "SIGPIPE is ignored: {out}");
    });
}

#[test]
fn no_pivot_moves_the_rootfs_and_chroots() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "ls /; cat /etc/passwd | head -1"));
        let out = rt
            .run_with(&bundle, &rt.new_id(), &["--no-pivot"])
            .success();
        assert!(
            out.stdout.contains("linuxrc"),
            "not the image's root: {out}"
        );
        assert!(
            out.stdout.ends_with("root:x:0:0:root:/root:/bin/sh\n"),
            "{out}"
        );
    });
}

#[test]
fn personality_linux32_makes_uname_say_i686() {
    on_berth_only("runc 1.1 ignores linux.personality", |rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "uname -m");
            patch(
                s,
                json!({ "linux": { "personality": { "domain": "LINUX32" } } }),
            );
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout, "i686\n", "{out}");
    });
}

#[test]
fn io_priority_is_set_for_the_program() {
    on_berth_only("runc 1.1 does not support process.ioPriority", |rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "ionice -p $$");
            patch(
                s,
                json!({ "process": { "ioPriority": { "class": "IOPRIO_CLASS_IDLE", "priority": 0 } } }),
            );
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout.trim(), "idle", "{out}");
    });
}

#[test]
fn scheduler_sets_policy_and_nice() {
    on_berth_only("runc 1.1 does not support process.scheduler", |rt| {
        // SCHED_BATCH with nice 7 needs no privilege; fields 19 (nice) and 41
        // (policy: 3 is SCHED_BATCH) of /proc/self/stat show what the kernel applied.
        let bundle = Bundle::new(|s| {
            sh(s, "cut -d' ' -f19,41 /proc/self/stat");
            patch(
                s,
                json!({ "process": { "scheduler": { "policy": "SCHED_BATCH", "nice": 7 } } }),
            );
        });
        let out = rt.run(&bundle).success();
        assert_eq!(out.stdout, "7 3\n", "{out}");
    });
}

#[test]
fn a_time_namespace_shifts_the_boot_clock() {
    on_berth_only("runc 1.1 does not support time namespaces", |rt| {
        // A year of extra uptime, inside only.
        let bundle = Bundle::new(|s| {
            sh(s, "cut -d. -f1 /proc/uptime; readlink /proc/self/ns/time");
            let mut namespaces = default_namespaces();
            namespaces.push(json!({ "type": "time" }));
            patch(
                s,
                json!({ "linux": { "namespaces": namespaces, "timeOffsets": { "boottime": { "secs": 31_536_000 } } } }),
            );
        });
        let out = rt.run(&bundle).success();
        let mut lines = out.stdout.lines();
        let uptime: u64 = lines.next().unwrap().parse().unwrap();
        assert!(uptime >= 31_536_000, "uptime inside is {uptime}: {out}");
        let host = fs::read_link("/proc/self/ns/time").unwrap();
        assert_ne!(lines.next().unwrap(), host.to_str().unwrap(), "{out}");
    });
}

#[test]
fn container_hooks_run_inside_the_container() {
    // createContainer runs in the container's namespaces before pivot_root, so it
    // sees the host's paths with the container's mounts on them; startContainer runs
    // after `start`, inside the container's root. Both write into the container's own
    // tmpfs /dev, which the host cannot see, so only the program can report them.
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "grep -ho 'status\":\"[a-z]*' /dev/createContainer.json /dev/startContainer.json",
            )
        });
        let dev = bundle.rootfs().join("dev");
        let hook = |target: String| json!([{ "path": "/bin/sh", "args": ["sh", "-c", format!("cat > {target}")] }]);
        let hooks = json!({
            "createContainer": hook(format!("{}/createContainer.json", dev.display())),
            "startContainer": hook("/dev/startContainer.json".into()),
        });
        bundle.edit_json(|config| config["hooks"] = hooks);
        let out = rt.run(&bundle).success();
        assert_eq!(
            out.stdout, "status\":\"creating\nstatus\":\"created\n",
            "{out}"
        );
        assert!(
            !dev.join("createContainer.json").exists(),
            "the hook wrote on the host's side"
        );
    });
}

#[test]
fn kill_all_reaches_every_process() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "sleep 60 & sleep 61 & wait"));
        let id = rt.new_id();
        rt.create(&bundle, &id, &[]).success();
        rt.invoke(["start", &id]).success();
        let deadline = Instant::now() + TIMEOUT;
        while rt
            .invoke(["ps", "--format", "json", &id])
            .success()
            .stdout
            .matches(',')
            .count()
            < 2
        {
            assert!(Instant::now() < deadline, "the two sleeps never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        rt.invoke(["kill", "--all", &id, "KILL"]).success();
        rt.wait_for_status(&id, "stopped");
        let out = rt.invoke(["ps", "--format", "json", &id]);
        let left: Vec<i64> = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
        assert!(left.is_empty(), "processes survived kill --all: {left:?}");
        rt.invoke(["delete", &id]).success();
    });
}

#[test]
fn update_changes_a_running_containers_limits() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "exec sleep 60"));
        let id = rt.new_id();
        rt.create(&bundle, &id, &[]).success();
        let resources = rt.scratch().join("resources.json");
        fs::write(&resources, r#"{"pids": {"limit": 42}}"#).unwrap();
        rt.invoke(["update", "--resources", resources.to_str().unwrap(), &id])
            .success();
        let limits: Vec<String> = cgroup_dirs_named(&id)
            .iter()
            .filter_map(|dir| fs::read_to_string(dir.join("pids.max")).ok())
            .collect();
        assert_eq!(limits, ["42\n"], "pids.max after update");
        rt.invoke(["delete", "--force", &id]).success();
    });
}

#[test]
fn events_stats_reports_usage() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "exec sleep 60"));
        let id = rt.new_id();
        rt.create(&bundle, &id, &[]).success();
        rt.invoke(["start", &id]).success();
        let out = rt.invoke(["events", "--stats", &id]).success();
        let event: Value =
            serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(event["type"], "stats", "{out}");
        assert_eq!(event["id"], id.as_str(), "{out}");
        assert!(
            event["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
            "{out}"
        );
        assert!(
            event["data"]["memory"]["usage"]["usage"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{out}"
        );
        rt.invoke(["delete", "--force", &id]).success();
    });
}

#[test]
fn run_forwards_signals_to_the_container() {
    on_both(|rt| {
        // A shell that turns SIGTERM into exit status 42: only a forwarded signal
        // can end it so.
        let bundle = Bundle::new(|s| {
            sh(
                s,
                "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done",
            )
        });
        let id = rt.new_id();
        let mut cmd = rt.command(["run", "--bundle"]);
        cmd.arg(bundle.path()).arg(&id);
        let out = rt.scratch().join("forward.out");
        cmd.stdout(fs::File::create(&out).unwrap())
            .stdin(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while !fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("ready")
        {
            assert!(Instant::now() < deadline, "the container never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = berth_tests::runtime::wait_bounded(&mut child, TIMEOUT);
        assert_eq!(status, Some(42), "{}: run did not pass SIGTERM on", rt.name);
    });
}

#[test]
fn pid_file() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "exec sleep 60"));
        let id = rt.new_id();
        let pid_file = rt.scratch().join("init.pid");
        rt.create(&bundle, &id, &["--pid-file", pid_file.to_str().unwrap()])
            .success();
        let written: i64 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(rt.state(&id).unwrap()["pid"], written);
        rt.invoke(["delete", "--force", &id]).success();
    });
}

/// Reads a pty master until the other side is closed (EIO) or `deadline`.
fn read_terminal(master: OwnedFd, deadline: Instant) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut file = fs::File::from(master);
    let mut text = Vec::new();
    while Instant::now() < deadline {
        let ready = poll(
            &mut [PollFd::new(file.as_fd(), PollFlags::POLLIN)],
            PollTimeout::from(100u16),
        )
        .unwrap();
        if ready == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO: every slave fd is closed
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn terminal_through_the_console_socket() {
    on_both(|rt| {
        let socket = rt.scratch().join("console.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let bundle = Bundle::new(|s| {
            sh(s, "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all three");
            patch(s, json!({ "process": { "terminal": true } }));
        });
        let id = rt.new_id();
        rt.create(
            &bundle,
            &id,
            &["--console-socket", socket.to_str().unwrap()],
        )
        .success();
        let (master, _) = berth_libcontainer::console::receive_master(&listener, TIMEOUT).unwrap();
        rt.invoke(["start", &id]).success();
        let text = read_terminal(master, Instant::now() + TIMEOUT);
        // A terminal turns "\n" into "\r\n".
        assert_eq!(text, "/dev/pts/0\r\nall three\r\n");
        rt.wait_for_status(&id, "stopped");
        rt.invoke(["delete", &id]).success();
    });
}

#[test]
fn run_in_a_terminal_without_a_console_socket_is_its_own_console() {
    // Under `script` the runtime's stdio is a pty, as at an interactive shell; with
    // no --console-socket the runtime must relay the container's own pty itself.
    on_both(|rt| {
        let bundle = Bundle::new(|s| {
            sh(s, "tty; stty size; echo done; exit 4");
            patch(s, json!({ "process": { "terminal": true } }));
        });
        let id = rt.new_id();
        let line = format!(
            "{} --root {} run --bundle {} {id}",
            rt.binary().display(),
            rt.root().display(),
            bundle.path().display()
        );
        let mut script = Command::new("script");
        script.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
        let out = rt.output(script);
        assert_eq!(out.status, 4, "{out}");
        assert!(out.stdout.contains("/dev/pts/0"), "no pty inside: {out}");
        assert!(out.stdout.contains("done"), "output lost: {out}");
    });
}

#[test]
fn preserve_fds_passes_extra_fds_and_only_those() {
    let dir = shared_dir();
    let file = dir.path().join("passed");
    fs::write(&file, "passed along\n").unwrap();
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "cat <&3"));
        for (preserve, expected_status, expected) in [("1", 0, "passed along\n"), ("0", 1, "")] {
            let id = rt.new_id();
            let runtime = rt.command(["run", "--preserve-fds", preserve, "--bundle"]);
            // The runtime is started with `file` open as fd 3, by a shell.
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", "exec 3<\"$0\" && exec \"$@\""])
                .arg(&file)
                .arg(runtime.get_program())
                .args(runtime.get_args())
                .arg(bundle.path())
                .arg(&id);
            let out = rt.output(cmd);
            assert_eq!(
                out.status, expected_status,
                "--preserve-fds {preserve}: {out}"
            );
            assert_eq!(out.stdout, expected, "--preserve-fds {preserve}: {out}");
        }
    });
}

#[test]
fn a_hundred_quick_exits_never_hang() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| patch(s, json!({ "process": { "args": ["true"] } })));
        for _ in 0..100 {
            // Each run is bounded by the harness: a lost exit fails, it does not hang.
            rt.run(&bundle).success();
        }
    });
}

// ---------------------------------------------------------------------------------
// Bad input: a clear error naming the value, a failed exit, nothing left behind.

/// Creates container `id` from `bundle`, expecting failure with an error. berth-runc's
/// must name the culprit (`needle`); runc's often does not ("invalid container ID
/// format", "unexpected EOF"), so for runc only an error is required.
fn refused(rt: &Runtime, bundle: &Bundle, id: &str, needle: &str) {
    let out = rt.create(bundle, id, &[]).failure();
    if rt.is_berth() {
        assert!(
            out.stderr.contains(needle),
            "the error does not name {needle:?}:\n{out}"
        );
        // One line, and no part of it said twice ("X: Y: Y").
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let parts: Vec<&str> = lines[0].split(": ").collect();
        assert!(
            parts.windows(2).all(|w| w[0] != w[1]),
            "the error repeats itself:\n{out}"
        );
    } else {
        assert!(!out.stderr.trim().is_empty(), "no error at all:\n{out}");
    }
}

#[test]
fn malformed_config_json_is_refused() {
    on_both(|rt| {
        let bundle = Bundle::new(|_| {});
        bundle.write_config("{\"ociVersion\": \"1.0.2\", \"process\": ");
        refused(rt, &bundle, &rt.new_id(), "config.json");
    });
}

#[test]
fn a_missing_rootfs_is_refused() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| patch(s, json!({ "root": { "path": "no-such-rootfs" } })));
        refused(rt, &bundle, &rt.new_id(), "no-such-rootfs");
    });
}

#[test]
fn an_unknown_namespace_type_is_refused() {
    on_both(|rt| {
        let bundle = Bundle::new(|_| {});
        bundle.edit_json(|config| {
            config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "type": "bogus" }));
        });
        refused(rt, &bundle, &rt.new_id(), "bogus");
    });
}

#[test]
fn an_unknown_capability_is_refused() {
    on_berth_only(
        "runc 1.1 only warns about an unknown capability and starts the container",
        |rt| {
            let bundle = Bundle::new(|_| {});
            bundle.edit_json(|config| {
                config["process"]["capabilities"]["bounding"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_BOGUS"));
            });
            refused(rt, &bundle, &rt.new_id(), "CAP_BOGUS");
        },
    );
}

#[test]
fn ids_that_are_paths_are_refused() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "true"));
        for id in ["a/b", "..", "../escape"] {
            refused(rt, &bundle, id, id);
            assert!(cgroup_dirs_named("escape").is_empty());
        }
        // Nothing was made under --root, nor next to it.
        let made: Vec<_> = fs::read_dir(rt.root())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(made.is_empty(), "{made:?}");
        assert!(!rt.scratch().join("escape").exists());
        assert!(!rt.scratch().join("a").exists());
    });
}

#[test]
fn a_duplicate_id_is_refused_and_the_first_container_survives() {
    on_both(|rt| {
        let bundle = Bundle::new(|s| sh(s, "exec sleep 60"));
        let id = rt.new_id();
        rt.create(&bundle, &id, &[]).success();
        refused(rt, &bundle, &id, &id);
        assert_eq!(rt.status(&id), "created");
        assert!(
            !cgroup_dirs_named(&id).is_empty(),
            "the first container lost its cgroup"
        );
        rt.invoke(["delete", "--force", &id]).success();
    });
}

/// The runtime binaries themselves are what every case above judges.
#[test]
fn both_runtimes_report_a_version() {
    for rt in [Runtime::runc(), Runtime::berth()] {
        let out = rt.invoke(["--version"]).success();
        assert!(out.stdout.contains("version"), "{rt}: {out}");
        assert!(out.stdout.contains("spec: 1.0.2-dev"), "{rt}: {out}");
    }
}
