//! berth-containerd SIGKILLed at the worst moments, judged by the real `ctr` (Debian's
//! containerd 1.6): in the middle of a content write and in the middle of a layer
//! unpack. After the restart nothing is lost and nothing is half there: a blob is
//! whole or absent, a snapshot is committed only if its layer is complete, nothing
//! stays mounted, and the same work done again succeeds. Then leases: what a lease
//! holds survives a collection until the lease expires.
//!
//! Read with `engine/containerd/src/content.rs` (ingests), `snapshot.rs` and `gc.rs`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_containerd::client::Client;
use berth_containerd::proto::containerd::services::leases::v1::{AddResourceRequest, Resource};
use berth_oci::oci_spec::image::ConfigBuilder;
use berth_oci::write::{build_image, LayerBuilder};
use berth_tests::berth_containerd::BerthContainerd;
use berth_tests::peers::{first_column, output, run_ok};
use berth_tests::runtime::wait_bounded;
use berth_tests::shim::wait_until;
use tempfile::TempDir;

const NAMESPACE: &str = "berth-crash";

fn start() -> (TempDir, BerthContainerd) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = BerthContainerd::start(dir.path());
    (dir, daemon)
}

fn ctr(daemon: &BerthContainerd, args: &[&str]) -> String {
    run_ok(daemon.ctr(NAMESPACE).args(args))
}

/// The files directly in `dir` (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn sha256(data: &[u8]) -> String {
    berth_oci::digest::sha256(data).to_string()
}

/// Bytes that do not compress and are the same in every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            // xorshift64: cheap, and nothing like a run of equal bytes.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// SIGKILLs a child `ctr` (if it is still there) and reaps it, bounded.
fn kill_child(child: &mut Child) {
    let _ = child.kill();
    assert!(
        wait_bounded(child, Duration::from_secs(10)).is_some() || child.try_wait().is_ok(),
        "ctr did not die"
    );
}

// --- A kill in the middle of a content write ---

/// ctr 1.6 copies in chunks of this size (containerd's `content.copyWithBuffer` fills
/// a 1 MiB buffer before each Write): a write is only visible in whole chunks.
const CTR_CHUNK: usize = 1 << 20;

/// `ctr content ingest` of a blob that announces `digest` and `size`, its stdin
/// `input` (a file, so that a resumed write can seek past what the server has).
fn ingest_from_file(
    daemon: &BerthContainerd,
    reference: &str,
    digest: &str,
    size: usize,
    input: &Path,
) -> berth_tests::runtime::Outcome {
    let mut cmd = daemon.ctr(NAMESPACE);
    cmd.args(["content", "ingest", "--expected-digest", digest])
        .args(["--expected-size", &size.to_string(), reference]);
    // `output` gives stdin /dev/null; ingest reads the blob from stdin, so go by sh.
    let line = format!(
        "{} < '{}'",
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" "),
        input.display()
    );
    output(Command::new("sh").args(["-c", &line]))
}

/// Where the content store keeps blob `digest`.
fn blob_file(daemon: &BerthContainerd, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    daemon.root.join("content/blobs/sha256").join(hex)
}

/// The size of the one ingest's `data` file (what `ctr content active` reports as its
/// offset), if there is exactly one ingest.
fn ingest_offset(daemon: &BerthContainerd) -> Option<u64> {
    let ingests = daemon.root.join("content/ingest");
    match &entries(&ingests)[..] {
        [one] => fs::metadata(ingests.join(one).join("data"))
            .ok()
            .map(|m| m.len()),
        _ => None,
    }
}

// ANCHOR: kill_mid_write
#[test]
fn a_content_write_killed_half_way_commits_nothing_and_resumes_by_its_ref() {
    let (dir, mut daemon) = start();
    let blob = noise(4 * CTR_CHUNK);
    let digest = sha256(&blob);
    let reference = "half-written";

    // ctr reads the blob from a pipe the test holds: it gets 2.5 chunks, then waits.
    let mut writer = daemon
        .ctr(NAMESPACE)
        .args(["content", "ingest", "--expected-digest", &digest])
        .args(["--expected-size", &blob.len().to_string(), reference])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start `ctr content ingest`");
    let mut pipe = writer.stdin.take().unwrap();
    pipe.write_all(&blob[..CTR_CHUNK * 5 / 2]).unwrap();
    // Two whole chunks reach the server; the half chunk waits in ctr's buffer.
    let written = 2 * CTR_CHUNK as u64;
    wait_until("two chunks of the write have reached the ingest", || {
        ingest_offset(&daemon) == Some(written)
    });
    let active = ctr(&daemon, &["content", "active"]);
    assert_eq!(first_column(&active), vec![reference], "{active}");

    daemon.kill();
    drop(pipe);
    kill_child(&mut writer);
    daemon.restart();

    // Nothing is committed: no record, no blob file.
    assert!(first_column(&ctr(&daemon, &["content", "ls"])).is_empty());
    assert!(entries(&daemon.root.join("content/blobs/sha256")).is_empty());
    // content.rs promises a resumable ingest: the bytes written so far, under the ref.
    let active = ctr(&daemon, &["content", "active"]);
    assert_eq!(first_column(&active), vec![reference], "{active}");
    assert_eq!(ingest_offset(&daemon), Some(written));

    // Resumed: ctr asks where the ingest stands and seeks its input past that. The
    // first two chunks of this input are zeros, so the commit's digest can only
    // match if the server kept the two chunks it had before the kill.
    let mut resumed = blob.clone();
    resumed[..written as usize].fill(0);
    let input = dir.path().join("resumed");
    fs::write(&input, &resumed).unwrap();
    let outcome = ingest_from_file(&daemon, reference, &digest, blob.len(), &input);
    assert_eq!(outcome.status, 0, "the resumed write failed:\n{outcome}");
    assert_eq!(
        first_column(&ctr(&daemon, &["content", "ls"])),
        vec![digest.clone()]
    );
    assert!(first_column(&ctr(&daemon, &["content", "active"])).is_empty());
    assert!(
        fs::read(blob_file(&daemon, &digest)).unwrap() == blob,
        "the stored blob is not the bytes written"
    );

    // The whole blob written again, under a new ref: it is there already, and ctr
    // is told so (and succeeds); `content get` gives exactly the bytes.
    let whole = dir.path().join("whole");
    fs::write(&whole, &blob).unwrap();
    let again = ingest_from_file(&daemon, "whole", &digest, blob.len(), &whole);
    assert_eq!(again.status, 0, "{again}");
    let got = dir.path().join("got");
    let line = format!(
        "'{}' --address '{}' --namespace {NAMESPACE} content get {digest} > '{}'",
        berth_tests::peers::require("ctr").display(),
        daemon.socket.display(),
        got.display()
    );
    run_ok(Command::new("sh").args(["-c", &line]));
    assert!(fs::read(&got).unwrap() == blob, "content get differs");
}
// ANCHOR_END: kill_mid_write

// --- A kill in the middle of an unpack ---

/// How many files the slow layer has: enough that unpacking it takes far longer than
/// the 20 ms between two looks at the mount table (on a 2-core machine, about a
/// second), so the kill lands while the layer is being applied.
const MANY: usize = 30_000;
const MANY_IMAGE: &str = "docker.io/library/many:latest";

/// An image of two layers: busybox (to run a check with), then [`MANY`] small files
/// under `/many`. Returns its `docker save` archive and its layers' chain IDs.
fn many_files_image(dir: &Path) -> (PathBuf, [String; 2]) {
    let busybox = fs::read(berth_tests::images::HOST_BUSYBOX).expect("read /bin/busybox");
    let mut base = LayerBuilder::new();
    base.dir("bin", 0o755).unwrap();
    base.file("bin/busybox", 0o755, &busybox).unwrap();
    let base = base.finish().unwrap();
    let mut many = LayerBuilder::new();
    many.dir("many", 0o755).unwrap();
    for d in 0..MANY / 100 {
        many.dir(&format!("many/{d}"), 0o755).unwrap();
        for f in 0..100 {
            let name = format!("many/{d}/{f}");
            many.file(&name, 0o644, name.as_bytes()).unwrap();
        }
    }
    let many = many.finish().unwrap();
    // A layer's chain ID: its diff ID for the first, then sha256 of "PARENT DIFF".
    let first = sha256(&base);
    let second = sha256(format!("{first} {}", sha256(&many)).as_bytes());
    let config = ConfigBuilder::default()
        .cmd(vec!["/bin/busybox".to_owned(), "true".to_owned()])
        .build()
        .unwrap();
    let image = build_image("many", "latest", config, vec![base, many]).unwrap();
    let archive = dir.join("many.tar");
    image.write_docker_archive(&archive).unwrap();
    (archive, [first, second])
}

/// `ctr snapshots ls` as (key, parent, kind). Columns are cut where the header's
/// are: ctr's unpack keys hold a space (`extract-NONCE CHAINID`).
fn snapshots(daemon: &BerthContainerd) -> Vec<(String, String, String)> {
    let table = ctr(daemon, &["snapshots", "ls"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let (parent_at, kind_at) = (header.find("PARENT").unwrap(), header.find("KIND").unwrap());
    lines
        .filter(|line| line.len() > kind_at)
        .map(|line| {
            (
                line[..parent_at].trim().to_owned(),
                line[parent_at..kind_at].trim().to_owned(),
                line[kind_at..].trim().to_owned(),
            )
        })
        .collect()
}

/// The directory holding the files of committed snapshot `key`, from the mounts of a
/// view of it (one layer seen alone is a read-only bind mount of its directory).
fn files_of(daemon: &BerthContainerd, key: &str) -> PathBuf {
    ctr(daemon, &["snapshots", "view", "files-of", key]);
    let mounts = ctr(daemon, &["snapshots", "mounts", "/mnt", "files-of"]);
    ctr(daemon, &["snapshots", "rm", "files-of"]);
    // `mount -t bind /ROOT/snapshots/overlayfs/ID/fs /mnt -o ro,rbind`
    let source = mounts
        .split_whitespace()
        .find(|word| word.starts_with('/') && *word != "/mnt")
        .unwrap_or_else(|| panic!("no bind source in {mounts:?}"));
    PathBuf::from(source)
}

// ANCHOR: kill_mid_unpack
#[test]
fn an_unpack_killed_half_way_commits_no_partial_layer_and_leaves_no_mount() {
    let (dir, mut daemon) = start();
    let (archive, [base_chain, many_chain]) = many_files_image(dir.path());
    let log = dir.path().join("import.log");
    let mut import = daemon
        .ctr(NAMESPACE)
        .args(["images", "import"])
        .arg(&archive)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(dir.path().join("import.err")).unwrap())
        .spawn()
        .expect("start `ctr images import`");

    // Apply mounts the active snapshot on a scratch directory under STATE/apply for
    // exactly as long as it unpacks, and the many-files layer keeps it there for
    // a second or so: killing while that mount is there is killing mid-unpack.
    let scratch = daemon.state.join("apply");
    let unpacking = || {
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .all(|l| {
                l.split(' ')
                    .nth(4)
                    .is_none_or(|p| !Path::new(p).starts_with(&scratch))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // The first layer is unpacked too: wait for the second one's extract snapshot.
    while !(unpacking() && many_layer_is_extracting(&daemon, &base_chain)) {
        assert!(
            import.try_wait().unwrap().is_none(),
            "the import ended before the kill; it unpacked too fast to be killed \
             inside: raise MANY.\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the unpack never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill();
    kill_child(&mut import);
    daemon.restart();

    // Every list answers: the metadata is whole.
    ctr(&daemon, &["images", "ls"]);
    ctr(&daemon, &["content", "ls"]);
    let after = snapshots(&daemon);
    // The layer being unpacked was never committed; the one before it is whole.
    for (key, parent, kind) in &after {
        match kind.as_str() {
            "Committed" => assert_eq!(key, &base_chain, "{after:?}"),
            "Active" => {
                assert!(key.starts_with("extract-"), "{after:?}");
                assert_eq!(parent, &base_chain, "{after:?}");
            }
            _ => panic!("unexpected snapshot {key} ({kind})"),
        }
    }
    assert!(!after.iter().any(|(k, _, _)| k == &many_chain), "{after:?}");
    // The kill came while the second layer was unpacking: the first is committed
    // and whole, the second still active, kept by the killed ctr's lease.
    let busybox = files_of(&daemon, &base_chain).join("bin/busybox");
    assert!(
        fs::read(&busybox).unwrap() == fs::read(berth_tests::images::HOST_BUSYBOX).unwrap(),
        "the committed first layer is not whole"
    );
    assert_eq!(
        after.iter().filter(|(_, _, kind)| kind == "Active").count(),
        1,
        "{after:?}"
    );
    // The dead Apply's scratch mount went with the restart.
    assert_eq!(daemon.mounts(), Vec::<String>::new(), "{}", daemon.log());

    // The killed ctr's lease still holds the half-unpacked snapshot; deleting the
    // lease lets the collector take it, and its directory.
    for lease in first_column(&ctr(&daemon, &["leases", "ls"])) {
        ctr(&daemon, &["leases", "rm", "--sync", &lease]);
    }
    assert!(
        !snapshots(&daemon)
            .iter()
            .any(|(k, _, _)| k.starts_with("extract-")),
        "{:?}",
        snapshots(&daemon)
    );
    let dirs = entries(&daemon.root.join("snapshots/overlayfs"));
    assert_eq!(dirs.len(), snapshots(&daemon).len(), "{dirs:?}");

    // Importing again works, and a container sees every file of both layers.
    let out = run_ok(
        daemon
            .ctr(NAMESPACE)
            .args(["images", "import"])
            .arg(&archive),
    );
    assert!(out.contains("done"), "{out}");
    let check = ctr(&daemon, &["images", "check"]);
    assert!(check.trim_end().ends_with("true"), "not unpacked:\n{check}");
    let id = "many-check";
    let mut run = daemon.ctr(NAMESPACE);
    run.args(["run", "--rm", "--runtime", "io.containerd.berth.v2"])
        .arg("--cgroup")
        .arg(daemon.cgroup_of(id))
        .arg("--fifo-dir")
        .arg(daemon.fifo_dir())
        .args([MANY_IMAGE, id, "/bin/busybox", "sh", "-c"])
        .arg("/bin/busybox find /many -type f | /bin/busybox wc -l");
    assert_eq!(run_ok(&mut run).trim(), MANY.to_string());
    daemon.assert_clean();
}
// ANCHOR_END: kill_mid_unpack

/// Whether the active snapshot being unpacked is the second layer's (its parent is
/// the first layer's chain).
fn many_layer_is_extracting(daemon: &BerthContainerd, base_chain: &str) -> bool {
    snapshots(daemon).iter().any(|(key, parent, kind)| {
        key.starts_with("extract-") && parent == base_chain && kind == "Active"
    })
}

// --- Leases ---

/// `Leases/AddResource` of blob `digest` to lease `lease`, through berth's client
/// library: ctr 1.6 has no command that puts a resource in a lease (its `content
/// ingest` sends no lease). Returns the answer's gRPC code.
fn add_blob_to_lease(socket: &Path, lease: &str, digest: &str) -> tonic::Code {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::connect(socket, NAMESPACE).await.unwrap();
        let request = client.request(AddResourceRequest {
            id: lease.to_owned(),
            resource: Some(Resource {
                id: digest.to_owned(),
                r#type: "content".to_owned(),
            }),
        });
        match client.leases().add_resource(request).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        }
    })
}

/// `ctr content ingest` of `data`; returns its digest.
fn ingest(daemon: &BerthContainerd, dir: &Path, reference: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let input = dir.join(reference);
    fs::write(&input, data).unwrap();
    let outcome = ingest_from_file(daemon, reference, &digest, data.len(), &input);
    assert_eq!(outcome.status, 0, "{outcome}");
    digest
}

/// A synchronous collection, as ctr can ask for one: `leases rm --sync` of a lease
/// made for the purpose.
fn collect_garbage(daemon: &BerthContainerd) {
    ctr(daemon, &["leases", "create", "--id", "trigger"]);
    ctr(daemon, &["leases", "rm", "--sync", "trigger"]);
}

// ANCHOR: lease_expiry
#[test]
fn a_leased_blob_survives_collection_until_its_lease_expires() {
    let (dir, daemon) = start();
    // Long enough that the steps before the first collection (seven client processes,
    // beside this binary's other tests unpacking 30 000 files) finish well within it.
    const LIFETIME: Duration = Duration::from_secs(15);
    let created = Instant::now();
    let expires = format!("{}s", LIFETIME.as_secs());
    ctr(
        &daemon,
        &["leases", "create", "--id", "keep", "--expires", &expires],
    );
    let kept = ingest(&daemon, dir.path(), "kept", b"held by a lease");
    let stray = ingest(&daemon, dir.path(), "stray", b"held by nothing");
    assert_eq!(
        add_blob_to_lease(&daemon.socket, "keep", &kept),
        tonic::Code::Ok
    );
    // A lease that does not exist is refused, not created.
    assert_eq!(
        add_blob_to_lease(&daemon.socket, "nope", &kept),
        tonic::Code::NotFound
    );

    collect_garbage(&daemon);
    assert_eq!(
        first_column(&ctr(&daemon, &["content", "ls"])),
        vec![kept.clone()],
        "only the leased blob survives a collection"
    );
    assert!(blob_file(&daemon, &kept).exists());
    assert!(!blob_file(&daemon, &stray).exists());

    // `--expires` becomes an RFC 3339 label with whole seconds: wait a second more, so
    // it has certainly passed.
    let expired = created + LIFETIME + Duration::from_secs(1);
    std::thread::sleep(expired.saturating_duration_since(Instant::now()));
    collect_garbage(&daemon);
    assert!(first_column(&ctr(&daemon, &["content", "ls"])).is_empty());
    assert!(!blob_file(&daemon, &kept).exists());
    assert!(first_column(&ctr(&daemon, &["leases", "ls"])).is_empty());
}
// ANCHOR_END: lease_expiry
