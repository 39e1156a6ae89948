//! `ctr image pull` from a real registry into berth-containerd: the test image pushed
//! by skopeo into Debian's `docker-registry` ([`berth_tests::registry`]), pulled by
//! the real `ctr` (containerd 1.6) with every manifest type a registry serves (OCI,
//! Docker schema 2, an OCI index), unpacked and run; pulled with basic authentication;
//! and, with a layer corrupted in the registry's storage, refused with nothing kept,
//! exactly as the real containerd refuses it.

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::peers::{first_column, output, run_ok, Containerd};
use berth_tests::registry::Registry;
use berth_tests::runtime::Outcome;
use berth_tests::shim::wait_until;
use tempfile::TempDir;

const NAMESPACE: &str = "berth-pull";

/// A registry and a berth-containerd, each in a directory of the one test directory.
fn start() -> (TempDir, Registry, BerthContainerd) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    (dir, registry, daemon)
}

fn ctr(daemon: &BerthContainerd, args: &[&str]) -> String {
    run_ok(daemon.ctr(NAMESPACE).args(args))
}

/// `ctr image pull --plain-http REFERENCE` plus `extra` flags, as `ctr` (a Command
/// bound to a daemon and namespace) runs it.
fn pull(mut ctr: Command, reference: &str, extra: &[&str]) -> Outcome {
    output(
        ctr.args(["image", "pull", "--plain-http"])
            .args(extra)
            .arg(reference),
    )
}

/// The test image's manifest, config and layer digests, read from its OCI layout
/// (skopeo pushes these blobs unchanged; only a v2s2 manifest is rewritten).
fn image_digests() -> (String, String, String) {
    let layout = &berth_tests::images::busybox().layout;
    let blob = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let body = blob(&manifest);
    let config = body["config"]["digest"].as_str().unwrap().to_owned();
    let layer = body["layers"][0]["digest"].as_str().unwrap().to_owned();
    (manifest, config, layer)
}

/// What a good pull leaves: the image listed with its manifest type, complete and
/// unpacked; manifest, config and layer stored; the layer's snapshot committed.
fn assert_pulled(daemon: &BerthContainerd, reference: &str, manifest_type: &str) {
    let images = ctr(daemon, &["images", "ls"]);
    assert_eq!(first_column(&images), vec![reference], "{images}");
    assert!(images.contains(manifest_type), "{images}");
    let check = ctr(daemon, &["images", "check"]);
    assert!(check.contains("complete (2/2)"), "{check}");
    assert!(check.trim_end().ends_with("true"), "not unpacked:\n{check}");

    let (_, config, layer) = image_digests();
    let content = first_column(&ctr(daemon, &["content", "ls"]));
    assert!(
        content.contains(&config) && content.contains(&layer),
        "{content:?}"
    );
    let manifests = if manifest_type.contains("index") {
        2
    } else {
        1
    };
    assert_eq!(content.len(), 2 + manifests, "{content:?}");

    let snapshots = ctr(daemon, &["snapshots", "ls"]);
    assert_eq!(first_column(&snapshots).len(), 1, "{snapshots}");
    assert!(snapshots.contains("Committed"), "{snapshots}");
    assert!(daemon.mounts().is_empty(), "{:?}", daemon.mounts());
}

/// `ctr run --rm` of the pulled image with `runtime`, printing `hi`.
fn run_echo(daemon: &BerthContainerd, runtime: &str, reference: &str) {
    let mut run = daemon.ctr(NAMESPACE);
    run.args(["run", "--rm", "--runtime", runtime])
        .arg("--cgroup")
        .arg(daemon.cgroup_of("t1"))
        .arg("--fifo-dir")
        .arg(daemon.fifo_dir())
        .args([reference, "t1", "echo", "hi"]);
    let hi = output(&mut run);
    assert_eq!(hi.status, 0, "{runtime}: {hi}\n{}", daemon.log());
    assert_eq!(hi.stdout.trim(), "hi", "{runtime}: {hi}");
    daemon.assert_clean();
}

#[test]
fn an_oci_image_is_pulled_unpacked_and_run_on_the_berth_shim() {
    let (_dir, registry, daemon) = start();
    registry.push_busybox("busybox:latest");
    let reference = format!("{}/busybox:latest", registry.addr());
    pull(daemon.ctr(NAMESPACE), &reference, &[]).success();
    assert_pulled(
        &daemon,
        &reference,
        "application/vnd.oci.image.manifest.v1+json",
    );
    run_echo(&daemon, "io.containerd.berth.v2", &reference);
}

#[test]
fn a_docker_schema_2_image_is_pulled_unpacked_and_run_on_runc() {
    let (_dir, registry, daemon) = start();
    registry.push_busybox_v2s2("library/busybox:v2s2");
    let reference = format!("{}/library/busybox:v2s2", registry.addr());
    pull(daemon.ctr(NAMESPACE), &reference, &[]).success();
    assert_pulled(
        &daemon,
        &reference,
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    run_echo(&daemon, "io.containerd.runc.v2", &reference);
}

#[test]
fn an_image_index_is_pulled_for_this_platform() {
    let (_dir, registry, daemon) = start();
    let index = registry.push_busybox_index("multi:latest");
    let reference = format!("{}/multi:latest", registry.addr());
    pull(daemon.ctr(NAMESPACE), &reference, &[]).success();
    assert_pulled(
        &daemon,
        &reference,
        "application/vnd.oci.image.index.v1+json",
    );
    assert!(ctr(&daemon, &["images", "ls"]).contains(&index));
}

#[test]
fn a_registry_with_basic_auth_is_pulled_from_with_user_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_htpasswd(&dir.path().join("registry"), "ann", "s3cret");
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    registry.push_busybox("private:latest");
    let reference = format!("{}/private:latest", registry.addr());

    let anonymous = pull(daemon.ctr(NAMESPACE), &reference, &[]).failure();
    assert!(
        anonymous.stderr.contains("401 Unauthorized") || anonymous.stderr.contains("unauthorized"),
        "{anonymous}"
    );
    let wrong = pull(daemon.ctr(NAMESPACE), &reference, &["--user", "ann:guess"]).failure();
    assert!(wrong.stderr.contains("nauthorized"), "{wrong}");
    assert!(first_column(&ctr(&daemon, &["images", "ls"])).is_empty());

    pull(daemon.ctr(NAMESPACE), &reference, &["--user", "ann:s3cret"]).success();
    assert_pulled(
        &daemon,
        &reference,
        "application/vnd.oci.image.manifest.v1+json",
    );
}

/// What a pull that failed left in a daemon, once its lease is gone: `ctr` deletes
/// the pull's lease when it exits, and the collector then takes what only the lease
/// kept (the manifest and config it had already stored).
#[derive(Debug, PartialEq)]
struct Leftovers {
    images: Vec<String>,
    content: Vec<String>,
    active: Vec<String>,
    snapshots: Vec<String>,
    leases: Vec<String>,
}

fn leftovers(ctr: impl Fn() -> Command) -> Leftovers {
    let column = |args: &[&str]| first_column(&run_ok(ctr().args(args)));
    Leftovers {
        images: column(&["images", "ls"]),
        content: column(&["content", "ls"]),
        active: column(&["content", "active"]),
        snapshots: column(&["snapshots", "ls"]),
        leases: column(&["leases", "ls"]),
    }
}

/// Pulls `reference`, whose layer the registry serves corrupted, through `ctr`;
/// checks the refusal names the layer; returns what is left once the collector has
/// had its chance (bounded).
fn pull_corrupt(ctr: impl Fn() -> Command, reference: &str, layer: &str) -> Leftovers {
    let refused = pull(ctr(), reference, &[]).failure();
    assert!(
        refused.stderr.contains("unexpected commit digest") && refused.stderr.contains(layer),
        "the refusal does not name the digest mismatch of {layer}:\n{refused}"
    );
    wait_until("the failed pull's content is collected", || {
        leftovers(&ctr).content.is_empty()
    });
    leftovers(&ctr)
}

#[test]
fn a_corrupt_layer_is_refused_and_nothing_is_kept_as_by_containerd() {
    let (dir, registry, daemon) = start();
    registry.push_busybox("corrupt:latest");
    let (_, _, layer) = image_digests();
    registry.corrupt_blob(&layer);
    let reference = format!("{}/corrupt:latest", registry.addr());

    let berth = pull_corrupt(|| daemon.ctr(NAMESPACE), &reference, &layer);
    assert!(daemon.mounts().is_empty(), "{:?}", daemon.mounts());

    let containerd = Containerd::start(&dir.path().join("real"));
    let real = pull_corrupt(|| containerd.ctr(NAMESPACE), &reference, &layer);

    let nothing = Leftovers {
        images: vec![],
        content: vec![],
        active: vec![],
        snapshots: vec![],
        leases: vec![],
    };
    assert_eq!(real, nothing, "containerd 1.6 changed its mind");
    assert_eq!(berth, real);
    assert!(
        !berth_blob_exists(&daemon.root, &layer),
        "the corrupt layer's bytes are in berth-containerd's blob store"
    );
}

fn berth_blob_exists(root: &Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    root.join("content/blobs/sha256").join(hex).exists()
}
