//! The test image, judged by the real tools: skopeo reads the OCI layout and the
//! `docker save` tar, containerd's `ctr` imports the tar, and dockerd loads it.
//! If these accept it, every later test can trust the image berth made itself.

use std::fs;
use std::process::Command;

use berth_tests::images::{self, busybox};
use berth_tests::peers::{require, run_ok, Containerd, Dockerd};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn same_input_gives_the_same_digests_and_bytes() {
    let first = images::busybox_image().unwrap();
    let second = images::busybox_image().unwrap();
    assert_eq!(first.manifest_digest(), second.manifest_digest());

    let dir = tempfile::tempdir().unwrap();
    let a = images::build_busybox(&dir.path().join("a")).unwrap();
    let b = images::build_busybox(&dir.path().join("b")).unwrap();
    assert_eq!(fs::read(&a.archive).unwrap(), fs::read(&b.archive).unwrap());
    // ... and the shared copy every test uses is that same image.
    assert_eq!(
        fs::read(&busybox().archive).unwrap(),
        fs::read(&a.archive).unwrap()
    );
}

#[test]
fn skopeo_reads_the_layout_and_the_archive() {
    let image = images::busybox_image().unwrap();
    let skopeo = require("skopeo");
    let layout = format!("oci:{}:latest", busybox().layout.display());
    let archive = format!("docker-archive:{}", busybox().archive.display());

    let inspect = json(&run_ok(Command::new(&skopeo).args(["inspect", &layout])));
    assert_eq!(inspect["Digest"], image.manifest_digest().to_string());
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);

    // skopeo re-encodes a docker archive's manifest, but the config it finds
    // through `manifest.json` must be ours, byte for byte.
    let config = run_ok(Command::new(&skopeo).args(["inspect", "--raw", "--config", &archive]));
    let layout_config =
        run_ok(Command::new(&skopeo).args(["inspect", "--raw", "--config", &layout]));
    assert_eq!(config, layout_config);
    let config = json(&config);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
}

#[test]
fn containerd_imports_the_archive() {
    let image = images::busybox_image().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let containerd = Containerd::start(dir.path());

    let archive = busybox().archive.to_str().unwrap().to_owned();
    run_ok(
        containerd
            .ctr("berth-test")
            .args(["images", "import", &archive]),
    );
    let listed = run_ok(containerd.ctr("berth-test").args(["images", "ls"]));
    let line = listed
        .lines()
        .find(|l| l.starts_with("docker.io/library/busybox:latest "))
        .unwrap_or_else(|| panic!("busybox:latest not imported:\n{listed}"));
    assert!(
        line.contains(&image.manifest_digest().to_string()),
        "wrong digest: {line}"
    );

    // `check` re-reads every blob the manifest names from the content store.
    let check = run_ok(containerd.ctr("berth-test").args(["images", "check"]));
    assert!(
        check.contains("complete"),
        "image incomplete after import:\n{check}"
    );
}

#[test]
fn dockerd_loads_the_archive() {
    let image = images::busybox_image().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dockerd = Dockerd::start(dir.path());

    let archive = busybox().archive.to_str().unwrap().to_owned();
    let loaded = run_ok(dockerd.docker().args(["load", "--input", &archive]));
    assert!(
        loaded.contains("Loaded image: busybox:latest"),
        "unexpected load output:\n{loaded}"
    );

    // Docker names an image by its config's digest.
    let inspect = json(&run_ok(dockerd.docker().args([
        "image",
        "inspect",
        "busybox:latest",
    ])));
    assert_eq!(inspect[0]["Id"], image.config_digest().to_string());
    assert_eq!(inspect[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
}

#[test]
fn the_layout_records_the_manifest_digest() {
    let image = images::busybox_image().unwrap();
    assert_eq!(
        busybox().manifest_digest().unwrap(),
        image.manifest_digest().to_string()
    );
}

#[test]
fn the_image_unpacks_into_a_rootfs_whose_shell_runs() {
    use berth_oci::layout::Layout;
    use std::os::unix::fs::MetadataExt;

    let layout = Layout::open(&busybox().layout).unwrap();
    let image = layout.resolve(Some(images::REFERENCE)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    berth_oci::unpack::unpack_image(&layout, &image, dir.path()).unwrap();

    // Applets are hard links to the one binary, as in the real busybox image.
    let sh = fs::metadata(dir.path().join("bin/sh")).unwrap();
    let busybox = fs::metadata(dir.path().join("bin/busybox")).unwrap();
    assert_eq!(sh.ino(), busybox.ino());
    assert_eq!(
        fs::metadata(dir.path().join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );

    // The image's own shell, with the image's files as `/`.
    let out = run_ok(Command::new("chroot").arg(dir.path()).args([
        "/bin/sh",
        "-c",
        "echo $((6 * 7)) $(id -un)",
    ]));
    assert_eq!(out.trim(), "42 root");
}
