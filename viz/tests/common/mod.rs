//! What berth-viz's integration tests share: a real `berth-viz` process on ephemeral
//! ports with its own data directory, and a tiny HTTP client to talk to it.
//!
//! Every wait is bounded by [`PATIENCE`]: a broken server fails a test, never hangs it.

#![allow(dead_code)] // each test file uses a different part of this

pub mod cdp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running berth-viz, killed when dropped.
pub struct Viz {
    child: Child,
    pub otlp: SocketAddr,
    pub ui: SocketAddr,
    pub data: PathBuf,
}

impl Viz {
    /// Starts berth-viz on 127.0.0.1, ports chosen by the kernel, keeping traces in `data`.
    pub fn start(data: &Path) -> Viz {
        Viz::start_with(data, &[])
    }

    pub fn start_with(data: &Path, extra: &[&str]) -> Viz {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth-viz"))
            .args([
                "--otlp-addr",
                "127.0.0.1:0",
                "--ui-addr",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start berth-viz");
        // berth-viz prints its two addresses on stdout as it starts serving.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let addr = |what: &str| -> SocketAddr {
            let line = rx
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("berth-viz did not say where it serves {what}"));
            let url = line
                .split("http://")
                .nth(1)
                .unwrap_or_else(|| panic!("no URL in {line:?}"));
            url.split('/').next().unwrap().parse().unwrap()
        };
        let otlp = addr("OTLP");
        let ui = addr("the page");
        Viz {
            child,
            otlp,
            ui,
            data: data.to_path_buf(),
        }
    }

    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.otlp)
    }

    pub fn page_url(&self) -> String {
        format!("http://{}/", self.ui)
    }

    /// GET on the page's server; panics unless 200; the body as JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let response = request(self.ui, "GET", path, &[], &[]);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        serde_json::from_slice(&response.body).unwrap()
    }

    /// Imports an OTLP/JSON file through the API; returns the trace ids.
    pub fn import(&self, otlp_json: &[u8]) -> Vec<String> {
        let response = request(
            self.ui,
            "POST",
            "/api/traces",
            &[("content-type", "application/json")],
            otlp_json,
        );
        assert_eq!(response.status, 200, "import: {}", response.text());
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        serde_json::from_value(body["trace_ids"].clone()).unwrap()
    }

    /// Stops berth-viz as a crash would: SIGKILL, no chance to tidy up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Viz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`connection: close`), read to the end.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect to berth-viz");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (400) and close before reading all of a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A fixture file from `viz/tests/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs Debian's Chromium headless (no CDP: it loads the page, runs it to the end of
/// `--virtual-time-budget`, and exits), on a fresh profile, on `url` with `extra` flags; returns its stdout.
pub fn chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,900",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        // To a file, not a pipe: nothing has to read while we wait.
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium (Debian's `chromium` package; `cargo xtask setup` installs it)");
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed ({status}) on {url}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish with {url} in {:?}", PATIENCE * 2);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// The DOM the page drew at `url`, once it was idle.
pub fn dump_dom(url: &str) -> String {
    chromium(url, &["--dump-dom".to_string()])
}
