//! A very small Chrome DevTools Protocol client, for the tests that must *use* the
//! page rather than only read what it drew: key presses, focus, state after each step.
//!
//! # Why a pipe
//! Chromium speaks CDP over a websocket (`--remote-debugging-port`) or over a pair of
//! pipes (`--remote-debugging-pipe`). The pipe needs no port (so no clash with a
//! parallel test or a developer's browser), no HTTP upgrade and no websocket framing,
//! and only the process that started Chromium can talk to it.
//!
//! # Framing
//! Chromium reads commands from its fd 3 and writes responses and events to its fd 4.
//! Each message is one JSON object followed by a NUL byte. A command carries an `id`
//! (and, for a page, the `sessionId` from `Target.attachToTarget` with `flatten`); its
//! response carries the same `id` and a `result` or an `error`. Everything without an
//! `id` is an event, which these tests do not need and skip.
//!
//! # Bounded waits
//! A thread reads fd 4, splits it at NULs and hands each message over a channel; every
//! wait for a response is a `recv_timeout` with a deadline ([`PATIENCE`]), and every
//! poll ([`Page::wait_for`]) has one too. Commands are small (far under the pipe's
//! 64 KiB buffer), so a write never waits on Chromium. Dropping a [`Chromium`] kills it.

#![allow(dead_code)] // each test file uses a different part of this

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::PATIENCE;

/// Headless Chromium with CDP on fds 3 and 4, killed when dropped.
pub struct Chromium {
    child: Child,
    commands: File,
    messages: Receiver<Value>,
    next_id: u64,
    stderr: tempfile::NamedTempFile,
    _profile: tempfile::TempDir,
}

/// A pipe whose both ends close on exec, so no other child (tests run in parallel
/// threads, each spawning processes) inherits them.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fresh descriptors into `fds`, which we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both are open and owned by no one else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Chromium {
    /// Starts Debian's `chromium` headless, with the flags `page.rs` uses, a fresh
    /// profile, and CDP on a pipe. The browser opens no page of its own worth using:
    /// [`Chromium::open`] makes one.
    pub fn start() -> Chromium {
        use std::os::fd::AsRawFd;
        let profile = tempfile::tempdir().unwrap();
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let (command_read, command_write) = pipe();
        let (message_read, message_write) = pipe();
        let (child_in, child_out) = (command_read.as_raw_fd(), message_write.as_raw_fd());
        let mut command = Command::new("chromium");
        command
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
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().unwrap());
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2).
        // The ends are first copied to 10 or above, so that moving one onto 3 cannot
        // overwrite the other; dup2 clears close-on-exec on 3 and 4 only.
        unsafe {
            command.pre_exec(move || {
                let input = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let output = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if input < 0 || output < 0 || libc::dup2(input, 3) < 0 || libc::dup2(output, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("run chromium (Debian's `chromium` package; `cargo xtask setup` installs it)");
        // Chromium holds its ends now; ours must close, or the reader never sees EOF.
        drop(command_read);
        drop(message_write);

        let (tx, messages) = mpsc::channel();
        let mut input = File::from(message_read);
        thread::spawn(move || {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            loop {
                let n = match input.read(&mut chunk) {
                    Ok(0) | Err(_) => return, // Chromium is gone: the channel closes
                    Ok(n) => n,
                };
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    let Ok(value) = serde_json::from_slice(&message[..end]) else {
                        continue;
                    };
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        Chromium {
            child,
            commands: File::from(command_write),
            messages,
            next_id: 0,
            stderr,
            _profile: profile,
        }
    }

    /// Sends one command (to the browser, or with `session` to a page) and waits,
    /// bounded, for its response; panics on a CDP error.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call(session, method, params.clone()) {
            Ok(result) => result,
            Err(error) => panic!("{method} {params}: {error}"),
        }
    }

    /// As [`Chromium::call`], but a CDP error (say, a page navigating away under an
    /// evaluation) is returned; a silent or dead Chromium still panics.
    pub fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            panic!("send {method} to chromium: {e}\n{}", self.log());
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(reply) if reply["id"] == id => {
                    return match reply.get("error") {
                        Some(error) => Err(error.clone()),
                        None => Ok(reply["result"].clone()),
                    };
                }
                Ok(_event) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method} within {PATIENCE:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium exited during {method}:\n{}", self.log())
                }
            }
        }
    }

    /// Opens a new tab on about:blank and attaches to it (flattened: the tab's
    /// commands go over this same pipe, tagged with its session id).
    pub fn open(&mut self) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        let mut page = Page {
            browser: self,
            session,
        };
        // A headless tab is never the focused window; without this, focus() and the
        // focus a key press moves would not be reported as such.
        page.call(
            "Emulation.setFocusEmulationEnabled",
            json!({ "enabled": true }),
        );
        page
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key as `Input.dispatchKeyEvent` needs it: the DOM `key`, the physical `code`, the
/// Windows virtual key code (what Chromium's input pipeline keys on), and the text a
/// printable key types.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub key: &'static str,
    pub code: &'static str,
    pub vk: u32,
    pub text: Option<&'static str>,
}

impl Key {
    const fn named(key: &'static str, vk: u32) -> Key {
        Key {
            key,
            code: key,
            vk,
            text: None,
        }
    }
    const fn typed(key: &'static str, code: &'static str, vk: u32) -> Key {
        Key {
            key,
            code,
            vk,
            text: Some(key),
        }
    }
    pub const TAB: Key = Key::named("Tab", 9);
    pub const ENTER: Key = Key {
        key: "Enter",
        code: "Enter",
        vk: 13,
        text: Some("\r"),
    };
    pub const HOME: Key = Key::named("Home", 36);
    pub const END: Key = Key::named("End", 35);
    pub const LEFT: Key = Key::named("ArrowLeft", 37);
    pub const UP: Key = Key::named("ArrowUp", 38);
    pub const RIGHT: Key = Key::named("ArrowRight", 39);
    pub const DOWN: Key = Key::named("ArrowDown", 40);
    /// `+` is Shift and `=` on a US keyboard; press it with [`SHIFT`].
    pub const PLUS: Key = Key::typed("+", "Equal", 187);
    pub const MINUS: Key = Key::typed("-", "Minus", 189);
    pub const ZERO: Key = Key::typed("0", "Digit0", 48);
    pub const C: Key = Key::typed("c", "KeyC", 67);
    pub const Z: Key = Key::typed("z", "KeyZ", 90);
}

/// CDP's modifier bits.
pub const NONE: u32 = 0;
pub const SHIFT: u32 = 8;

/// One tab, attached.
pub struct Page<'a> {
    browser: &'a mut Chromium,
    session: String,
}

impl Page<'_> {
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    pub fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({ "url": url }));
        assert!(
            result.get("errorText").is_none(),
            "navigate to {url}: {result}"
        );
    }

    /// Evaluates `expression` in the page; its value, as JSON. Panics if it threw.
    pub fn eval(&mut self, expression: &str) -> Value {
        match self.try_eval(expression) {
            Ok(value) => value,
            Err(error) => panic!("{expression}: {error}"),
        }
    }

    fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let result = self.browser.try_call(
            Some(&self.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        match result.get("exceptionDetails") {
            Some(thrown) => Err(thrown.clone()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Polls `expression` until it is `true`, at most [`PATIENCE`]; panics with `what`.
    /// While the page is still loading, an evaluation may fail: that is "not yet".
    pub fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.try_eval(expression) != Ok(json!(true)) {
            assert!(
                Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what} ({expression})"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses and releases `key` with `modifiers` ([`NONE`], [`SHIFT`]), as a user
    /// would: through Chromium's input pipeline, to whatever has focus.
    pub fn press(&mut self, key: Key, modifiers: u32) {
        let mut down = json!({
            "type": if key.text.is_some() { "keyDown" } else { "rawKeyDown" },
            "key": key.key,
            "code": key.code,
            "windowsVirtualKeyCode": key.vk,
            "nativeVirtualKeyCode": key.vk,
            "modifiers": modifiers,
        });
        if let Some(text) = key.text {
            down["text"] = json!(text);
            down["unmodifiedText"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({
                "type": "keyUp",
                "key": key.key,
                "code": key.code,
                "windowsVirtualKeyCode": key.vk,
                "nativeVirtualKeyCode": key.vk,
                "modifiers": modifiers,
            }),
        );
    }
}
