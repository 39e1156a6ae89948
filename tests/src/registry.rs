//! A real image registry for one test: Debian's `docker-registry` (distribution v2),
//! the program behind Docker Hub's API, serving plain HTTP on 127.0.0.1 (or HTTPS, with
//! a certificate from a certificate authority made for the test by `openssl`).
//!
//! A pull test needs something to pull from. [`Registry::start`] runs a registry of
//! the test's own, its storage and log under the test's directory; the `push_busybox*`
//! methods fill it with the test image ([`crate::images::busybox`]) through `skopeo`,
//! as an OCI manifest, a Docker schema 2 manifest or an image index; and
//! [`Registry::corrupt_blob`] damages a stored blob, so a test can check what a client
//! does when the bytes it gets are not the ones it asked for. Dropping the handle
//! kills the registry and waits for it.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::{require, run_ok};
use crate::runtime::wait_bounded;

/// How long the registry gets to answer `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports are tried: another process may take the port between our
/// probe releasing it and the registry binding it.
const PORT_ATTEMPTS: usize = 3;

/// A running `docker-registry`, everything of it under one directory.
pub struct Registry {
    addr: String,
    dir: PathBuf,
    /// `user:password`, when the registry asks for basic authentication.
    credentials: Option<String>,
    /// The certificate authority that signed its certificate, when it speaks HTTPS.
    ca: Option<PathBuf>,
    child: Child,
}

impl Registry {
    /// A registry open to anyone, with its files under `dir`.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_configured(dir, None, false)
    }

    /// A registry that answers only requests with HTTP basic authentication as
    /// `user` / `password` (its `htpasswd` file is written under `dir`).
    pub fn start_with_htpasswd(dir: &Path, user: &str, password: &str) -> Registry {
        Registry::start_configured(dir, Some((user, password)), false)
    }

    /// A registry that speaks HTTPS only, with a certificate for 127.0.0.1 signed by a
    /// certificate authority of its own ([`Registry::ca_certificate`]).
    pub fn start_with_tls(dir: &Path) -> Registry {
        Registry::start_configured(dir, None, true)
    }

    /// The PEM file of the certificate authority an HTTPS registry's certificate is
    /// signed by.
    pub fn ca_certificate(&self) -> &Path {
        self.ca
            .as_deref()
            .expect("only a registry started with TLS has a certificate authority")
    }

    fn start_configured(dir: &Path, auth: Option<(&str, &str)>, tls: bool) -> Registry {
        fs::create_dir_all(dir).expect("create the registry's directory");
        let dir = fs::canonicalize(dir).expect("resolve the registry's directory");
        let (ca, tls_config) = if tls {
            let (ca, certificate, key) = certificates(&dir);
            let config = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            );
            (Some(ca), config)
        } else {
            (None, String::new())
        };
        let auth_config = match auth {
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                fs::write(&htpasswd, format!("{user}:{}\n", bcrypt(password)))
                    .expect("write the registry's htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let addr = free_addr();
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n{tls_config}{auth_config}",
                    dir.join("storage").display()
                ),
            )
            .expect("write the registry's config");
            let log = fs::File::create(dir.join("registry.log")).expect("create the registry log");
            let child = Command::new(require("docker-registry"))
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
            let mut registry = Registry {
                addr,
                dir: dir.clone(),
                credentials: auth.map(|(user, password)| format!("{user}:{password}")),
                ca: ca.clone(),
                child,
            };
            if registry.wait_until_serving() {
                return registry;
            }
            last_log = registry.log();
        }
        panic!("docker-registry did not serve on any of {PORT_ATTEMPTS} free ports:\n{last_log}");
    }

    /// Waits (bounded) until `GET /v2/` gets an HTTP answer: 200, or 401 when
    /// authentication is on. False if the registry exited (its port was taken, say).
    fn wait_until_serving(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // Plain HTTP to an HTTPS server gets 400, which says it serves all the same.
            let status = http_status(&self.addr, "/v2/");
            let serving: &[u16] = if self.ca.is_some() {
                &[400]
            } else {
                &[200, 401]
            };
            if status.is_some_and(|s| serving.contains(&s)) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer GET /v2/ on {} within {START_TIMEOUT:?}:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`: the registry's host in an image reference.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The registry's log so far, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Pushes the test image as `REPOSITORY:TAG`, with its OCI image manifest
    /// (`application/vnd.oci.image.manifest.v1+json`).
    pub fn push_busybox(&self, repository_and_tag: &str) {
        self.skopeo_copy(repository_and_tag, &[]);
    }

    /// Pushes the test image as `REPOSITORY:TAG` with a Docker schema 2 manifest
    /// (`application/vnd.docker.distribution.manifest.v2+json`): skopeo converts it.
    pub fn push_busybox_v2s2(&self, repository_and_tag: &str) {
        self.skopeo_copy(repository_and_tag, &["--format", "v2s2"]);
    }

    /// Pushes the test image as `REPOSITORY:TAG` behind an OCI image index with one
    /// entry, for this machine's platform; returns the index's digest. skopeo copies
    /// indexes but cannot make one, so the index is written here and PUT by hand.
    pub fn push_busybox_index(&self, repository_and_tag: &str) -> String {
        self.push_busybox(repository_and_tag);
        let layout_index = crate::images::busybox().layout.join("index.json");
        let layout: serde_json::Value =
            serde_json::from_slice(&fs::read(&layout_index).expect("read the layout's index"))
                .expect("the layout's index.json is JSON");
        let manifest = &layout["manifests"][0];
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": manifest["mediaType"],
                "digest": manifest["digest"],
                "size": manifest["size"],
                "platform": {"architecture": architecture, "os": "linux"},
            }],
        });
        let body = serde_json::to_vec(&index).expect("an index serializes");
        let (repository, tag) = repository_and_tag
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{repository_and_tag:?} has no :TAG"));
        assert!(
            self.credentials.is_none(),
            "push_busybox_index speaks to open registries only"
        );
        let path = format!("/v2/{repository}/manifests/{tag}");
        let status = put(
            &self.addr,
            &path,
            "application/vnd.oci.image.index.v1+json",
            &body,
        );
        assert_eq!(
            status,
            Some(201),
            "PUT {path} of the index:\n{}",
            self.log()
        );
        berth_oci::digest::sha256(&body).to_string()
    }

    /// Pushes the image tagged `latest` in the OCI layout `layout` as `REPOSITORY:TAG`.
    pub fn push_layout(&self, layout: &Path, repository_and_tag: &str) {
        self.skopeo_copy_from(layout, repository_and_tag, &[]);
    }

    fn skopeo_copy(&self, repository_and_tag: &str, extra: &[&str]) {
        self.skopeo_copy_from(&crate::images::busybox().layout, repository_and_tag, extra);
    }

    fn skopeo_copy_from(&self, layout: &Path, repository_and_tag: &str, extra: &[&str]) {
        let layout = layout.display();
        let mut skopeo = Command::new(require("skopeo"));
        skopeo
            .args(["copy", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{layout}:latest"))
            .arg(format!("docker://{}/{repository_and_tag}", self.addr));
        if let Some(credentials) = &self.credentials {
            skopeo.arg("--dest-creds").arg(credentials);
        }
        run_ok(&mut skopeo);
    }

    /// Where the registry keeps blob `digest` (`sha256:HEX`) in its storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{digest:?} is not a sha256: digest"));
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Overwrites the stored blob `digest` with as many different bytes (each one
    /// inverted), so the registry serves content that does not match its digest.
    pub fn corrupt_blob(&self, digest: &str) {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "blob {digest} is not in the registry ({}): {e}; push it first",
                path.display()
            )
        });
        let inverted: Vec<u8> = bytes.iter().map(|b| !b).collect();
        fs::write(&path, inverted).expect("overwrite the registry's blob");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The registry keeps nothing that needs a clean shutdown.
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(10));
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> String {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    probe.local_addr().expect("a bound port").to_string()
}

/// The status code of `GET path` on `addr`, if an HTTP answer came within a second.
/// A certificate authority and a certificate it signed for 127.0.0.1, made with
/// `openssl` under `dir`: the CA's certificate, the registry's, and the registry's key.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let [ca_key, ca, key, request, certificate, extensions] = [
        "ca.key",
        "ca.crt",
        "registry.key",
        "registry.csr",
        "registry.crt",
        "registry.ext",
    ]
    .map(|name| dir.join(name));
    let openssl = |args: &[&str]| run_ok(Command::new(require("openssl")).args(args));
    let path = |p: &Path| p.display().to_string();
    // EC keys: quick to make, and what a modern registry would have.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=berth test CA"],
            &["-keyout", &path(&ca_key), "-out", &path(&ca)],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=127.0.0.1"],
            &["-keyout", &path(&key), "-out", &path(&request)],
        ]
        .concat(),
    );
    // A server certificate, named by IP as the tests reach it, that is no CA itself:
    // what webpki (rustls' verifier) insists on.
    fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the certificate's extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path(&request),
        "-CA",
        &path(&ca),
        "-CAkey",
        &path(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path(&extensions),
        "-out",
        &path(&certificate),
    ]);
    (ca, certificate, key)
}

fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The status code of a `PUT path` of `body` on `addr`, if an answer came in time.
fn put(addr: &str, path: &str, content_type: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "PUT {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    stream.write_all(body).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A bcrypt hash of `password`, as the registry's `htpasswd` wants, from Python's
/// `crypt` (glibc's libxcrypt does bcrypt; the standard library has no bcrypt).
fn bcrypt(password: &str) -> String {
    let hash = run_ok(
        Command::new(require("python3"))
            .args(["-W", "ignore", "-c"])
            .arg(
                "import crypt, sys; \
                 print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            )
            .arg(password),
    );
    let hash = hash.trim().to_owned();
    assert!(
        hash.starts_with("$2"),
        "python3's crypt made {hash:?}, not a bcrypt hash; this libc has no bcrypt"
    );
    hash
}
