//! berth's own client library (`berth_containerd::client`) against real peers: a real
//! registry (Debian's `docker-registry`), berth-containerd, and the real containerd 1.6,
//! which the library must drive just as well. What it stores, the real `ctr` then
//! checks and runs; what it pushes or exports, `skopeo` and `ctr` read back.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};

use berth_containerd::client::archive::{self, ImportOptions};
use berth_containerd::client::content::{BlobWriter, Opened};
use berth_containerd::client::pull::{pull, PullError, PullOptions};
use berth_containerd::client::push::push;
use berth_containerd::client::registry::{Credentials, RegistryOptions};
use berth_containerd::client::Client;
use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::images::{busybox, layered_busybox};
use berth_tests::peers::{first_column, output, require, run_ok, Containerd};
use berth_tests::registry::Registry;
use berth_tests::relay::OverlapWatch;
use berth_tests::token_auth::{self, TokenGate};
use std::process::Command;

const NAMESPACE: &str = "berth-client";

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Runs `echo` in `image` with the real ctr and the given runtime; returns its output.
fn run_echo(mut ctr: impl FnMut() -> Command, image: &str, runtime: &str, id: &str) -> String {
    run_ok(ctr().args([
        "run",
        "--rm",
        "--runtime",
        runtime,
        image,
        id,
        "echo",
        "ran",
    ]))
}

#[test]
fn pulls_oci_docker_and_index_images_and_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    registry.push_busybox("oci/busybox:latest");
    registry.push_busybox_v2s2("docker/busybox:v2s2");
    let index_digest = registry.push_busybox_index("index/busybox:multi");
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let addr = registry.addr();
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        for (name, runtime) in [
            (
                format!("{addr}/oci/busybox:latest"),
                "io.containerd.berth.v2",
            ),
            (
                format!("{addr}/docker/busybox:v2s2"),
                "io.containerd.runc.v2",
            ),
            (
                format!("{addr}/index/busybox:multi"),
                "io.containerd.berth.v2",
            ),
        ] {
            let pulled = pull(&client, &name, &PullOptions::default())
                .await
                .unwrap_or_else(|e| panic!("pull {name}: {e}\nregistry log:\n{}", registry.log()));
            assert_eq!(pulled.name, name);
            assert!(pulled.chain_id.is_some(), "{name} was unpacked");
            let check = run_ok(daemon.ctr(NAMESPACE).args(["images", "check"]));
            let line = check
                .lines()
                .find(|l| l.starts_with(&name))
                .unwrap_or_default();
            assert!(line.contains("complete"), "ctr images check:\n{check}");
            let out = run_echo(|| daemon.ctr(NAMESPACE), &name, runtime, "echo");
            assert_eq!(out.trim(), "ran");
        }
        let images = run_ok(daemon.ctr(NAMESPACE).args(["images", "ls"]));
        let index_line = images
            .lines()
            .find(|l| l.contains("index/busybox"))
            .unwrap();
        assert!(
            index_line.contains(&index_digest),
            "the name points at the index:\n{images}"
        );
        // The three names share one layer, unpacked once.
        let snapshots = first_column(&run_ok(daemon.ctr(NAMESPACE).args(["snapshots", "ls"])));
        assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    });
    daemon.assert_clean();
}

#[test]
fn pull_push_import_and_export_work_against_real_containerd_too() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    registry.push_busybox("busybox:latest");
    let containerd = Containerd::start(&dir.path().join("containerd"));
    let name = format!("{}/busybox:latest", registry.addr());
    let copy = format!("{}/copies/busybox:v1", registry.addr());
    let exported = dir.path().join("exported.tar");
    block_on(async {
        let client = Client::connect(&containerd.socket, NAMESPACE)
            .await
            .unwrap();
        pull(&client, &name, &PullOptions::default()).await.unwrap();
        push(&client, &name, Some(&copy), &RegistryOptions::default())
            .await
            .unwrap();
        let mut out = tokio::fs::File::create(&exported).await.unwrap();
        archive::export(&client, &[name.as_str()], &mut out)
            .await
            .unwrap();
        // Into another namespace of the same containerd, under another name.
        let other = Client::connect(&containerd.socket, "berth-other")
            .await
            .unwrap();
        let imported = import(&other, &exported, None).await.unwrap();
        assert_eq!(imported[0].name, name);
    });
    let check = run_ok(containerd.ctr(NAMESPACE).args(["images", "check"]));
    assert!(check.contains("complete"), "{check}");
    let out = run_echo(
        || containerd.ctr(NAMESPACE),
        &name,
        "io.containerd.runc.v2",
        "real",
    );
    assert_eq!(out.trim(), "ran");
    let out = run_echo(
        || containerd.ctr("berth-other"),
        &name,
        "io.containerd.runc.v2",
        "imported",
    );
    assert_eq!(out.trim(), "ran");
    run_ok(
        Command::new(require("skopeo"))
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{copy}")),
    );
}

#[test]
fn a_blob_with_the_wrong_digest_fails_the_pull_and_nothing_stays() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    registry.push_busybox("busybox:latest");
    let layer = layer_digest();
    registry.corrupt_blob(&layer);
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let name = format!("{}/busybox:latest", registry.addr());
    let err = block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        pull(&client, &name, &PullOptions::default())
            .await
            .unwrap_err()
    });
    assert_refused_for_layer(&daemon, &err, &layer);
}

/// That a pull failed on `layer`'s digest, and left no image, ingest or snapshot, and
/// (once collected) no content: what it fetched before went with its lease.
fn assert_refused_for_layer(daemon: &BerthContainerd, err: &PullError, layer: &str) {
    let message = err.to_string();
    assert!(
        message.contains("digest mismatch") && message.contains(layer),
        "the error names the mismatch and the layer: {message}"
    );
    let ctr = |args: &[&str]| run_ok(daemon.ctr(NAMESPACE).args(args));
    assert!(first_column(&ctr(&["images", "ls"])).is_empty());
    assert!(first_column(&ctr(&["content", "active"])).is_empty());
    assert!(first_column(&ctr(&["snapshots", "ls"])).is_empty());
    berth_tests::shim::wait_until("the failed pull's content is collected", || {
        first_column(&ctr(&["content", "ls"])).is_empty()
    });
    daemon.assert_clean();
}

/// A five-layer image with one layer listed twice: its distinct layers are downloaded
/// three at once (a relay in front of the registry holds each download until three
/// are asked for; fetching the repeated layer twice would leave one writer waiting on
/// the other's ingest past its patience) and applied in order. With one layer
/// corrupt, the pull fails naming it and leaves nothing behind.
#[test]
fn layers_are_fetched_together_once_each_and_applied_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    let layout = dir.path().join("layout");
    layered_busybox(&layout, &[1, 1, 2, 3]).unwrap();
    registry.push_layout(&layout, "layered:good");
    registry.push_layout(&layout, "layered:bad");
    let layers = layer_digests(&layout);
    assert_eq!(layers.len(), 5);
    assert_eq!(
        layers[1], layers[2],
        "the first small layer is listed twice"
    );
    let watch = OverlapWatch::start(&registry.addr(), layers.clone(), 3);
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let ctr = |args: &[&str]| run_ok(daemon.ctr(NAMESPACE).args(args));

    let good = format!("{}/layered:good", watch.addr());
    let pulled = block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        pull(&client, &good, &PullOptions::default()).await
    })
    .unwrap_or_else(|e| panic!("pull {good}: {e}\nregistry log:\n{}", registry.log()));
    assert_eq!(watch.most_at_once(), 3, "layers downloaded fewer at a time");
    assert_eq!(first_column(&ctr(&["snapshots", "ls"])).len(), 5);
    let shown = ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.berth.v2",
        &pulled.name,
        "layered",
        "sh",
        "-c",
        "ls /layers; cat /layers/top",
    ]);
    assert_eq!(shown, "1\n2\n3\ntop\n3", "every layer, the top one last");
    ctr(&["images", "rm", &good]);
    berth_tests::shim::wait_until("the good image's content is collected", || {
        first_column(&ctr(&["content", "ls"])).is_empty()
    });

    // The registry's copy of layer 2 is now wrong; the others download beside it.
    registry.corrupt_blob(&layers[3]);
    let bad = format!("{}/layered:bad", registry.addr());
    let err = block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        pull(&client, &bad, &PullOptions::default()).await
    })
    .expect_err("a corrupt layer fails the pull");
    assert_refused_for_layer(&daemon, &err, &layers[3]);
}

/// A registry that speaks HTTPS only, with a certificate from a certificate authority
/// the system does not know: refused until that authority is given, then pulled and
/// run. The errors name what went wrong: the certificate, a CA file that is not one,
/// plain HTTP sent to an HTTPS server.
#[test]
fn an_https_registry_is_trusted_once_its_certificate_authority_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_tls(&dir.path().join("registry"));
    registry.push_busybox("secure/busybox:latest");
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let name = format!("{}/secure/busybox:latest", registry.addr());
    let https = |ca_certificates: Vec<PathBuf>| PullOptions {
        registry: RegistryOptions {
            plain_http: Some(false),
            ca_certificates,
            ..RegistryOptions::default()
        },
        ..PullOptions::default()
    };
    let not_a_ca = dir.path().join("registry/registry.key");
    let (unknown, not_pem, plain, pulled) = block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        let attempt = |options: PullOptions| {
            let (client, name) = (client.clone(), name.clone());
            async move { pull(&client, &name, &options).await }
        };
        (
            attempt(https(Vec::new())).await.unwrap_err().to_string(),
            attempt(https(vec![not_a_ca.clone()]))
                .await
                .unwrap_err()
                .to_string(),
            // A loopback registry is reached over plain HTTP unless told otherwise.
            attempt(PullOptions::default())
                .await
                .unwrap_err()
                .to_string(),
            attempt(https(vec![registry.ca_certificate().to_owned()])).await,
        )
    });
    assert!(
        unknown.contains("https://") && unknown.contains("invalid peer certificate"),
        "{unknown}"
    );
    assert!(
        not_pem.contains(&not_a_ca.display().to_string()) && not_pem.contains("no certificate"),
        "{not_pem}"
    );
    assert!(plain.contains("HTTPS server"), "{plain}");
    let pulled = pulled.unwrap_or_else(|e| panic!("pull over HTTPS: {e}\n{}", registry.log()));
    assert_eq!(pulled.name, name);
    let out = run_echo(
        || daemon.ctr(NAMESPACE),
        &name,
        "io.containerd.berth.v2",
        "tls",
    );
    assert_eq!(out.trim(), "ran");
}

#[test]
fn basic_auth_is_answered_only_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_htpasswd(&dir.path().join("registry"), "student", "s3cret");
    registry.push_busybox("private/busybox:latest");
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let name = format!("{}/private/busybox:latest", registry.addr());
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        let err = pull(&client, &name, &PullOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("needs credentials"), "{err}");
        let mut options = PullOptions::default();
        options.registry.credentials = Some(Credentials {
            username: "student".into(),
            password: "wrong".into(),
        });
        let err = pull(&client, &name, &options).await.unwrap_err();
        assert!(err.to_string().contains("refused the ones given"), "{err}");
        options.registry.credentials = Some(Credentials {
            username: "student".into(),
            password: "s3cret".into(),
        });
        pull(&client, &name, &options).await.unwrap();
    });
    let out = run_echo(
        || daemon.ctr(NAMESPACE),
        &name,
        "io.containerd.berth.v2",
        "auth",
    );
    assert_eq!(out.trim(), "ran");
}

#[test]
fn token_auth_gives_anonymous_pulls_and_pushes_only_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    registry.push_busybox("busybox:latest");
    let gate = TokenGate::start(&registry.addr());
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let name = format!("{}/busybox:latest", gate.addr());
    let destination = format!("{}/team/busybox:v1", gate.addr());
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        pull(&client, &name, &PullOptions::default()).await.unwrap();
        let anonymous = RegistryOptions::default();
        let err = push(&client, &name, Some(&destination), &anonymous)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("needs credentials"), "{err}");
        let options = RegistryOptions {
            credentials: Some(Credentials {
                username: token_auth::USER.into(),
                password: token_auth::PASSWORD.into(),
            }),
            plain_http: None,
            ca_certificates: Vec::new(),
        };
        push(&client, &name, Some(&destination), &options)
            .await
            .unwrap();
    });
    let asked = gate.token_requests.lock().unwrap().join("\n");
    assert!(
        asked.contains("scope=repository%3Abusybox%3Apull&service=berth-test"),
        "{asked}"
    );
    assert!(
        asked.contains("scope=repository%3Ateam%2Fbusybox%3Apull%2Cpush"),
        "{asked}"
    );
    // What went through the gate is in the registry behind it.
    run_ok(
        Command::new(require("skopeo"))
            .args(["inspect", "--tls-verify=false"])
            .arg(format!("docker://{}/team/busybox:v1", registry.addr())),
    );
    let out = run_echo(
        || daemon.ctr(NAMESPACE),
        &name,
        "io.containerd.berth.v2",
        "token",
    );
    assert_eq!(out.trim(), "ran");
}

#[test]
fn a_pushed_image_is_pulled_back_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&dir.path().join("registry"));
    let first = BerthContainerd::start(&dir.path().join("first"));
    first.import_busybox(NAMESPACE);
    let destination = format!("{}/pushed/busybox:v1", registry.addr());
    let pushed = block_on(async {
        let client = Client::connect(&first.socket, NAMESPACE).await.unwrap();
        let options = RegistryOptions::default();
        push(&client, "busybox:latest", Some(&destination), &options)
            .await
            .unwrap()
    });
    let inspect = run_ok(
        Command::new(require("skopeo"))
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{destination}")),
    );
    assert_eq!(
        berth_oci::digest::sha256(inspect.as_bytes()).to_string(),
        pushed.digest,
        "the registry serves the manifest byte for byte"
    );
    // A second push finds every blob there already.
    block_on(async {
        let client = Client::connect(&first.socket, NAMESPACE).await.unwrap();
        push(
            &client,
            "busybox",
            Some(&destination),
            &RegistryOptions::default(),
        )
        .await
        .unwrap();
    });
    let second = BerthContainerd::start(&dir.path().join("second"));
    run_ok(
        second
            .ctr(NAMESPACE)
            .args(["images", "pull", "--plain-http", &destination]),
    );
    let out = run_echo(
        || second.ctr(NAMESPACE),
        &destination,
        "io.containerd.berth.v2",
        "p",
    );
    assert_eq!(out.trim(), "ran");
}

#[test]
fn export_and_import_round_trip_through_other_tools() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let old_style = dir.path().join("old-docker-save.tar");
    docker_save_only(&busybox().archive, &old_style);
    let exported = dir.path().join("exported.tar");
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        let imported = import(&client, &old_style, None).await.unwrap();
        let names: Vec<_> = imported.iter().map(|i| i.name.clone()).collect();
        assert_eq!(names, ["docker.io/library/busybox:latest"]);
        let mut out = tokio::fs::File::create(&exported).await.unwrap();
        archive::export(&client, &["busybox"], &mut out)
            .await
            .unwrap();
    });
    let out = run_echo(
        || daemon.ctr(NAMESPACE),
        "docker.io/library/busybox:latest",
        "io.containerd.berth.v2",
        "imported",
    );
    assert_eq!(out.trim(), "ran");
    for transport in ["oci-archive", "docker-archive"] {
        // Panics with skopeo's output unless it reads the export in this form.
        output(
            Command::new(require("skopeo"))
                .arg("inspect")
                .arg(format!("{transport}:{}", exported.display())),
        )
        .success();
    }
    let containerd = Containerd::start(&dir.path().join("real"));
    run_ok(
        containerd
            .ctr(NAMESPACE)
            .args(["images", "import"])
            .arg(&exported),
    );
    let out = run_echo(
        || containerd.ctr(NAMESPACE),
        "docker.io/library/busybox:latest",
        "io.containerd.runc.v2",
        "exported",
    );
    assert_eq!(out.trim(), "ran");
    daemon.assert_clean();
}

#[test]
fn a_layout_blob_that_does_not_match_its_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let layer = layer_digest();
    let broken = dir.path().join("broken.tar");
    let corrupt = |path: &str, bytes: &mut Vec<u8>| {
        if path.ends_with(layer.trim_start_matches("sha256:")) {
            bytes.iter_mut().take(64).for_each(|b| *b = !*b);
        }
        true
    };
    rewrite_tar(&busybox().archive, &broken, corrupt, Vec::new());
    let err = block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        import(&client, &broken, None).await.unwrap_err()
    });
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    let ctr = |args: &[&str]| run_ok(daemon.ctr(NAMESPACE).args(args));
    assert!(first_column(&ctr(&["images", "ls"])).is_empty());
    assert!(!ctr(&["content", "ls"]).contains(&layer));
    daemon.assert_clean();
}

#[test]
fn an_image_named_by_tag_alone_needs_a_base_name() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let tag_only = dir.path().join("tag-only.tar");
    let untag = |path: &str, bytes: &mut Vec<u8>| {
        if path == "index.json" {
            let mut index: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            let annotations = index["manifests"][0]["annotations"]
                .as_object_mut()
                .unwrap();
            annotations.remove("io.containerd.image.name");
            *bytes = serde_json::to_vec(&index).unwrap();
        }
        true
    };
    rewrite_tar(&busybox().archive, &tag_only, untag, Vec::new());
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        let err = import(&client, &tag_only, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only the tag \"latest\"") && err.contains("base name"),
            "{err}"
        );
        let base = Some("127.0.0.1:5000/team/tool");
        let imported = import(&client, &tag_only, base).await.unwrap();
        assert_eq!(imported[0].name, "127.0.0.1:5000/team/tool:latest");
    });
    let images = first_column(&run_ok(daemon.ctr(NAMESPACE).args(["images", "ls"])));
    assert_eq!(images, ["127.0.0.1:5000/team/tool:latest"]);
}

#[test]
fn an_interrupted_write_resumes_and_a_stale_ingest_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let blob: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let other: Vec<u8> = blob.iter().map(|b| !b).collect();
    let digest_of = |bytes: &[u8]| berth_oci::digest::sha256(bytes).to_string();
    let (digest, other_digest) = (digest_of(&blob), digest_of(&other));
    let size = blob.len() as u64;
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        let open = |reference: &'static str, digest: &str| {
            let (client, digest) = (client.clone(), digest.to_owned());
            async move {
                match BlobWriter::open(&client, reference, &digest, size)
                    .await
                    .unwrap()
                {
                    Opened::Writer(writer) => writer,
                    Opened::Exists => panic!("{reference}: the blob is not there yet"),
                }
            }
        };
        // A writer that dies after 2 MiB leaves them in the ingest, and the next
        // one sends only the rest, though it is given (and hashes) every byte.
        let mut first = open("resumed", &digest).await;
        first.write(&blob[..2 << 20]).await.unwrap();
        drop(first);
        let mut second = open("resumed", &digest).await;
        assert_eq!(second.resumed(), 2 << 20);
        second.write(&blob).await.unwrap();
        let committed = second.commit("the test", Some((&digest, size)), Default::default());
        committed.await.unwrap();

        // An ingest holding other bytes under the ref: the writer resumes it, the
        // store refuses the mixture at commit, and the ingest is cleared...
        let mut wrong = open("stale", &other_digest).await;
        wrong.write(&blob[..1 << 20]).await.unwrap();
        drop(wrong);
        let mut resumed = open("stale", &other_digest).await;
        assert_eq!(resumed.resumed(), 1 << 20);
        resumed.write(&other).await.unwrap();
        let refused = resumed.commit("the test", Some((&other_digest, size)), Default::default());
        assert!(
            refused.await.is_err(),
            "the store took a blob that does not hash right"
        );
        // ...so the next attempt starts from the first byte and goes through.
        let mut clean = open("stale", &other_digest).await;
        assert_eq!(clean.resumed(), 0);
        clean.write(&other).await.unwrap();
        let committed = clean.commit("the test", Some((&other_digest, size)), Default::default());
        committed.await.unwrap();
    });
    for (digest, bytes) in [(&digest, &blob), (&other_digest, &other)] {
        let got = std::process::Command::new(require("ctr"))
            .arg("--address")
            .arg(&daemon.socket)
            .args(["-n", NAMESPACE, "content", "get", digest])
            .output()
            .unwrap();
        assert!(got.stdout == *bytes, "{digest} reads back whole");
    }
}

#[test]
fn an_image_whose_layer_does_not_match_its_config_is_neither_imported_nor_pulled() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let registry = Registry::start(&dir.path().join("registry"));
    let tarball = dir.path().join("inconsistent.tar");
    inconsistent_image(&tarball);
    run_ok(
        Command::new(require("skopeo"))
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}:latest", tarball.display()))
            .arg(format!("docker://{}/broken:latest", registry.addr())),
    );
    let name = format!("{}/broken:latest", registry.addr());
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        let err = import(&client, &tarball, None).await.unwrap_err();
        assert!(err.to_string().contains("the image config says"), "{err}");
        let err = pull(&client, &name, &PullOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the image config says"), "{err}");
    });
    let ctr = |args: &[&str]| run_ok(daemon.ctr(NAMESPACE).args(args));
    assert!(
        first_column(&ctr(&["images", "ls"])).is_empty(),
        "no image was named"
    );
    assert!(
        first_column(&ctr(&["snapshots", "ls"])).is_empty(),
        "nothing was committed"
    );
    daemon.assert_clean();
}

#[test]
fn a_docker_save_layer_shared_through_a_symlink_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let tarball = dir.path().join("linked.tar");
    let layer = format!("blobs/sha256/{}", &layer_digest()[7..]);
    // Docker before 25 stores a layer two images share once and links the other
    // image's layer.tar to it; here the one image's manifest names the link.
    let link_manifest = |path: &str, bytes: &mut Vec<u8>| {
        if path == "manifest.json" {
            let mut entries: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            entries[0]["Layers"][0] = "other/layer.tar".into();
            *bytes = serde_json::to_vec(&entries).unwrap();
        }
        !["index.json", "oci-layout"].contains(&path)
    };
    let target = format!("../{layer}");
    let link = vec![Extra::Symlink("other/layer.tar", &target)];
    rewrite_tar(&busybox().archive, &tarball, link_manifest, link);
    block_on(async {
        let client = Client::connect(&daemon.socket, NAMESPACE).await.unwrap();
        import(&client, &tarball, None).await.unwrap();
    });
    let name = "docker.io/library/busybox:latest";
    let out = run_echo(
        || daemon.ctr(NAMESPACE),
        name,
        "io.containerd.berth.v2",
        "linked",
    );
    assert_eq!(out.trim(), "ran");
}

#[test]
fn a_blob_the_store_has_joins_the_writers_lease() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(&dir.path().join("containerd"));
    let blob = b"kept by the lease of a writer that did not need to write it".to_vec();
    let digest = berth_oci::digest::sha256(&blob).to_string();
    let size = blob.len() as u64;
    let collect_garbage = || {
        run_ok(
            daemon
                .ctr(NAMESPACE)
                .args(["leases", "create", "--id", "gc"]),
        );
        run_ok(daemon.ctr(NAMESPACE).args(["leases", "rm", "--sync", "gc"]));
    };
    let stored = || run_ok(daemon.ctr(NAMESPACE).args(["content", "ls"])).contains(&digest);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = runtime
        .block_on(Client::connect(&daemon.socket, NAMESPACE))
        .unwrap();
    // Written with no lease and referenced by nothing: the collector's.
    runtime.block_on(async {
        let Opened::Writer(mut writer) = BlobWriter::open(&client, "first", &digest, size)
            .await
            .unwrap()
        else {
            panic!("the blob is new")
        };
        writer.write(&blob).await.unwrap();
        writer
            .commit("the test", Some((&digest, size)), Default::default())
            .await
            .unwrap();
    });
    // A writer in a lease finds it there; the blob is now the lease's.
    let lease = runtime.block_on(client.start_lease("test")).unwrap();
    runtime.block_on(async {
        let leased = client.in_lease(&lease).unwrap();
        let opened = BlobWriter::open(&leased, "second", &digest, size)
            .await
            .unwrap();
        assert!(matches!(opened, Opened::Exists));
    });
    collect_garbage();
    assert!(stored(), "the lease keeps the blob its writer found");
    runtime.block_on(client.end_lease(&lease)).unwrap();
    collect_garbage();
    assert!(!stored(), "with the lease gone, nothing keeps it");
}

/// Imports the tarball at `path` (unpacking it) through the library.
async fn import(
    client: &Client,
    path: &Path,
    base_name: Option<&str>,
) -> Result<Vec<archive::Imported>, archive::ArchiveError> {
    let options = ImportOptions {
        base_name: base_name.map(str::to_owned),
        unpack: true,
    };
    archive::import(client, fs::File::open(path).unwrap(), &options).await
}

/// The test image's one layer.
fn layer_digest() -> String {
    layer_digests(&busybox().layout).remove(0)
}

/// The layers of the image in the OCI layout `layout`, bottom first.
fn layer_digests(layout: &Path) -> Vec<String> {
    let layout = berth_oci::layout::Layout::open(layout).unwrap();
    let image = layout.resolve(None).unwrap();
    image
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect()
}

/// The test image's tarball as Docker wrote it before version 25: `manifest.json`
/// only, no OCI layout around it.
fn docker_save_only(from: &Path, to: &Path) {
    rewrite_tar(
        from,
        to,
        |path, _| !["index.json", "oci-layout"].contains(&path),
        Vec::new(),
    );
}

/// An entry [`rewrite_tar`] adds at the end.
enum Extra<'a> {
    File(&'a str, Vec<u8>),
    Symlink(&'a str, &'a str),
}

/// Copies a tarball, letting `edit` change each file's bytes or drop it, then adds
/// `extra`.
fn rewrite_tar(
    from: &Path,
    to: &Path,
    mut edit: impl FnMut(&str, &mut Vec<u8>) -> bool,
    extra: Vec<Extra>,
) {
    use std::io::Read;
    let mut input = tar::Archive::new(fs::File::open(from).unwrap());
    let mut output = tar::Builder::new(fs::File::create(to).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if edit(&path, &mut bytes) {
            let mut header = entry.header().clone();
            header.set_size(bytes.len() as u64);
            output.append_data(&mut header, &path, &bytes[..]).unwrap();
        }
    }
    for extra in extra {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match extra {
            Extra::File(path, bytes) => {
                header.set_size(bytes.len() as u64);
                output.append_data(&mut header, path, &bytes[..]).unwrap();
            }
            Extra::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                output.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    output.finish().unwrap();
}

/// The test image's tarball (OCI part only), its config naming a diffID the layer
/// does not have: every blob matches its digest; only the image is inconsistent.
fn inconsistent_image(to: &Path) {
    let layout = busybox().layout.clone();
    let blob = |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
    };
    let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap();
    let digest_of = |bytes: &[u8]| berth_oci::digest::sha256(bytes).to_string();
    let mut index = json(&fs::read(layout.join("index.json")).unwrap());
    let mut manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    config["rootfs"]["diff_ids"][0] = digest_of(b"not the layer").into();
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = digest_of(&config).into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = digest_of(&manifest).into();
    index["manifests"][0]["size"] = manifest.len().into();
    let index = serde_json::to_vec(&index).unwrap();
    let path = |bytes: &[u8]| format!("blobs/sha256/{}", &digest_of(bytes)[7..]);
    let (config_path, manifest_path) = (path(&config), path(&manifest));
    rewrite_tar(
        &busybox().archive,
        to,
        |name, bytes| match name {
            "index.json" => {
                bytes.clone_from(&index);
                true
            }
            // Its docker part would describe the old config: leave it out.
            "manifest.json" | "repositories" => false,
            _ => true,
        },
        vec![
            Extra::File(&config_path, config),
            Extra::File(&manifest_path, manifest),
        ],
    );
}
