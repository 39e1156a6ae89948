//! `berth-runc features`: what this runtime supports, as the OCI runtime spec's
//! "features" document, so a caller can check before it asks.

use berth_libcontainer::mount_options;

pub fn run() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&features())?);
    Ok(())
}

pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": berth_oci::spec::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options::KNOWN_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capability_names(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP",
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
                ],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
        },
    })
}

/// Every capability berth-runc knows by name, in number order.
fn capability_names() -> Vec<&'static str> {
    use berth_libcontainer::capabilities::{from_number, name};
    (0..=63).filter_map(from_number).map(name).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_document() {
        insta::assert_json_snapshot!(super::features());
    }
}
