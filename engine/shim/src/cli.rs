//! The command line, as containerd 1.6 writes it.
//!
//! containerd is written in Go and uses Go's `flag` package conventions: one dash,
//! the value as the next word (`-namespace default -id web start`); `-flag=value` and
//! two dashes are accepted too. The action comes last: `start` (the handshake, see
//! [`crate::start`]), `delete` (clean up after a dead shim, see [`crate::cleanup`]),
//! or none: serve, which is how `start` runs the long-lived shim (see [`crate::serve`]).
//! Twelve flags do not need a parser library; this file is the whole grammar.

use std::ffi::OsString;
use std::path::PathBuf;

/// Everything containerd passes on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// The containerd namespace of the container (`-namespace`).
    pub namespace: String,
    /// The container's id (`-id`).
    pub id: String,
    /// containerd's gRPC socket (`-address`); the shim's own socket is placed beside it.
    pub address: String,
    /// The `containerd` binary, for the old way of publishing events (`-publish-binary`);
    /// berth-shim forwards events over ttrpc instead, so it only passes it on.
    pub publish_binary: String,
    /// The bundle (`-bundle`, given to `delete`; the others run in the bundle directory).
    pub bundle: Option<PathBuf>,
    /// Log more (`-debug`).
    pub debug: bool,
    /// Print the version and exit (`-v`).
    pub version: bool,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Action {
    /// No action word: be the long-running shim.
    #[default]
    Serve,
    Start,
    Delete,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("flag -{0} needs a value (containerd passes `-{0} VALUE`)")]
    MissingValue(String),
    #[error("unknown flag -{0}; berth-shim takes -namespace, -id, -address, -publish-binary, -bundle, -debug and -v")]
    UnknownFlag(String),
    #[error("unknown action {0:?}; the actions are `start` and `delete` (none: serve)")]
    UnknownAction(String),
    #[error("-{0} is required for `{1}`")]
    Required(&'static str, &'static str),
    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(OsString),
}

impl Flags {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Flags, ArgsError> {
        let mut flags = Flags::default();
        let mut args = args
            .into_iter()
            .map(|a| a.into_string().map_err(ArgsError::NotUtf8));
        while let Some(arg) = args.next() {
            let arg = arg?;
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                flags.action = match arg.as_str() {
                    "start" => Action::Start,
                    "delete" => Action::Delete,
                    _ => return Err(ArgsError::UnknownAction(arg)),
                };
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            match name {
                "debug" => flags.debug = inline.is_none_or(|v| v != "false"),
                "v" | "version" => flags.version = true,
                "namespace" | "id" | "address" | "publish-binary" | "bundle" => {
                    let value = match inline {
                        Some(value) => value,
                        None => args
                            .next()
                            .transpose()?
                            .ok_or_else(|| ArgsError::MissingValue(name.to_owned()))?,
                    };
                    match name {
                        "namespace" => flags.namespace = value,
                        "id" => flags.id = value,
                        "address" => flags.address = value,
                        "publish-binary" => flags.publish_binary = value,
                        _ => flags.bundle = Some(PathBuf::from(value)),
                    }
                }
                _ => return Err(ArgsError::UnknownFlag(name.to_owned())),
            }
        }
        Ok(flags)
    }

    /// Checks the flags every action needs.
    fn require(&self) -> Result<(), ArgsError> {
        let action = match self.action {
            Action::Serve => "serve",
            Action::Start => "start",
            Action::Delete => "delete",
        };
        if self.namespace.is_empty() {
            return Err(ArgsError::Required("namespace", action));
        }
        if self.id.is_empty() {
            return Err(ArgsError::Required("id", action));
        }
        if self.address.is_empty() && self.action != Action::Delete {
            return Err(ArgsError::Required("address", action));
        }
        Ok(())
    }
}

/// Parses the command line, runs the action; returns the exit status.
pub fn main() -> i32 {
    let flags = match Flags::parse(std::env::args_os().skip(1)) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            return 2;
        }
    };
    if flags.version {
        println!("{}", crate::VERSION);
        return 0;
    }
    if let Err(e) = flags.require() {
        eprintln!("berth-shim: {e}");
        return 2;
    }
    let result = match flags.action {
        Action::Start => crate::start::run(&flags).map_err(|e| e.to_string()),
        Action::Delete => crate::cleanup::run(&flags).map_err(|e| e.to_string()),
        Action::Serve => crate::serve::run(&flags).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            // containerd shows a failed `start` or `delete` with this text.
            eprintln!("berth-shim: {message}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, ArgsError> {
        Flags::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_what_containerd_passes_to_start() {
        let flags = parse(&[
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "web",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(flags.namespace, "default");
        assert_eq!(flags.id, "web");
        assert_eq!(flags.address, "/run/containerd/containerd.sock");
        assert_eq!(flags.publish_binary, "/usr/bin/containerd");
        assert!(flags.debug);
        assert_eq!(flags.action, Action::Start);
    }

    #[test]
    fn parses_delete_with_a_bundle_and_go_spellings() {
        let flags = parse(&["--namespace=ns", "-id=web", "-bundle", "/b", "delete"]).unwrap();
        assert_eq!(flags.bundle, Some(PathBuf::from("/b")));
        assert_eq!(flags.action, Action::Delete);
        assert_eq!(flags.require(), Ok(()));
    }

    #[test]
    fn no_action_means_serve() {
        let flags = parse(&["-namespace", "ns", "-id", "x", "-address", "a"]).unwrap();
        assert_eq!(flags.action, Action::Serve);
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(parse(&["-id"]), Err(ArgsError::MissingValue("id".into())));
        assert_eq!(
            parse(&["-socket", "x"]),
            Err(ArgsError::UnknownFlag("socket".into()))
        );
        assert_eq!(
            parse(&["stop"]),
            Err(ArgsError::UnknownAction("stop".into()))
        );
        let flags = parse(&["-namespace", "ns", "start"]).unwrap();
        assert_eq!(flags.require(), Err(ArgsError::Required("id", "start")));
    }
}
