//! Which runtime a container uses, from the runtime options containerd sends.
//!
//! containerd passes a container's runtime options through untouched, as a protobuf
//! `Any`, to `start` (on stdin) and to Create. Two kinds reach a shim:
//! - `containerd.runc.v1.Options`, runc's own (what `ctr run --runc-binary` makes for
//!   the runc shim, and what containerd's CRI config `options.BinaryName` becomes);
//! - `runtimeoptions.v1.Options`, a path to a config file of the shim's own (what
//!   `ctr run --runtime-config-path FILE` makes for any other runtime). berth-shim reads
//!   the same keys from it, one `Key = "value"` a line: `BinaryName`, `Root`,
//!   `NoPivotRoot`, `NoNewKeyring`.
//!
//! Create writes the result to `options.json` in the bundle, so the `delete` action,
//! run later by a containerd that has forgotten them, uses the same runtime.

use std::path::{Path, PathBuf};

use protobuf::well_known_types::any::Any;
use protobuf::Message;

use crate::protos::shim::oci::Options as RuncOptions;

/// The file in the bundle that keeps the options for later.
pub const OPTIONS_FILE: &str = "options.json";
const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// The runtime binary, a name or a path; empty means berth-runc.
    pub binary_name: String,
    /// The runtime's state root; empty means the default (see `runtime::root_for`).
    pub root: String,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("cannot decode the runtime options ({type_url}): {source}")]
    Decode {
        type_url: String,
        source: protobuf::Error,
    },
    #[error("runtime options of type {0:?} are not understood; berth-shim takes {RUNC_OPTIONS} or {RUNTIME_OPTIONS}")]
    UnknownType(String),
    #[error(
        "runtimeoptions.v1.Options holds a config path that does not decode; send a plain string"
    )]
    BadConfigPath,
    #[error("cannot read the runtime config file {0}: {1}")]
    ConfigFile(PathBuf, std::io::Error),
    #[error("line {line} of {path} is not `Key = \"value\"`: {text:?}")]
    ConfigLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("cannot keep the options in {0}: {1}")]
    Save(PathBuf, std::io::Error),
    #[error(
        "the options kept in {0} do not parse ({1}); remove the file to fall back to the defaults"
    )]
    Load(PathBuf, serde_json::Error),
}

impl RuntimeOptions {
    /// Decodes the options of a Create request (absent or empty: the defaults).
    pub fn from_any(any: Option<&Any>) -> Result<RuntimeOptions, OptionsError> {
        let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
            return Ok(RuntimeOptions::default());
        };
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        match name {
            RUNC_OPTIONS => {
                let runc = RuncOptions::parse_from_bytes(&any.value).map_err(|source| {
                    OptionsError::Decode {
                        type_url: any.type_url.clone(),
                        source,
                    }
                })?;
                Ok(RuntimeOptions {
                    binary_name: runc.binary_name,
                    root: runc.root,
                    no_pivot_root: runc.no_pivot_root,
                    no_new_keyring: runc.no_new_keyring,
                })
            }
            RUNTIME_OPTIONS => match config_path(&any.value)? {
                Some(path) if !path.is_empty() => {
                    RuntimeOptions::from_config_file(Path::new(&path))
                }
                _ => Ok(RuntimeOptions::default()),
            },
            other => Err(OptionsError::UnknownType(other.to_owned())),
        }
    }

    /// Reads a config file of `Key = "value"` lines (a subset of TOML: comments, blank
    /// lines and `[tables]` are skipped).
    pub fn from_config_file(path: &Path) -> Result<RuntimeOptions, OptionsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OptionsError::ConfigFile(path.to_owned(), e))?;
        let mut options = RuntimeOptions::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let bad = || OptionsError::ConfigLine {
                path: path.to_owned(),
                line: n + 1,
                text: line.to_owned(),
            };
            let (key, value) = line.split_once('=').ok_or_else(bad)?;
            let value = value.trim();
            let string = value.trim_matches('"').to_owned();
            match key.trim() {
                "BinaryName" | "binary_name" => options.binary_name = string,
                "Root" | "root" => options.root = string,
                "NoPivotRoot" | "no_pivot_root" => options.no_pivot_root = value == "true",
                "NoNewKeyring" | "no_new_keyring" => options.no_new_keyring = value == "true",
                _ => {} // keys for other tools share the file
            }
        }
        Ok(options)
    }

    pub fn save(&self, bundle: &Path) -> Result<(), OptionsError> {
        let path = bundle.join(OPTIONS_FILE);
        let json = serde_json::json!({
            "binary_name": self.binary_name,
            "root": self.root,
            "no_pivot_root": self.no_pivot_root,
            "no_new_keyring": self.no_new_keyring,
        });
        std::fs::write(&path, json.to_string()).map_err(|e| OptionsError::Save(path, e))
    }

    /// The options Create kept in the bundle; the defaults if it never ran.
    pub fn load(bundle: &Path) -> Result<RuntimeOptions, OptionsError> {
        let path = bundle.join(OPTIONS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(RuntimeOptions::default());
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| OptionsError::Load(path, e))?;
        let string = |key: &str| json[key].as_str().unwrap_or_default().to_owned();
        Ok(RuntimeOptions {
            binary_name: string("binary_name"),
            root: string("root"),
            no_pivot_root: json["no_pivot_root"].as_bool().unwrap_or(false),
            no_new_keyring: json["no_new_keyring"].as_bool().unwrap_or(false),
        })
    }
}

/// Field 2 (`config_path`) of a `runtimeoptions.v1.Options`, decoded by hand: the
/// message has three string fields, and containerd-shim-protos does not carry it.
fn config_path(mut bytes: &[u8]) -> Result<Option<String>, OptionsError> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut found = None;
    while !bytes.is_empty() {
        let key = varint(&mut bytes).ok_or(OptionsError::BadConfigPath)?;
        match key & 7 {
            0 => {
                varint(&mut bytes).ok_or(OptionsError::BadConfigPath)?;
            }
            2 => {
                let len = varint(&mut bytes).ok_or(OptionsError::BadConfigPath)? as usize;
                if len > bytes.len() {
                    return Err(OptionsError::BadConfigPath);
                }
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                if key >> 3 == 2 {
                    let path = String::from_utf8(value.to_vec())
                        .map_err(|_| OptionsError::BadConfigPath)?;
                    found = Some(path);
                }
            }
            _ => return Err(OptionsError::BadConfigPath),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        let mut any = Any::new();
        any.type_url = type_url.into();
        any.value = value;
        any
    }

    #[test]
    fn runc_options_give_the_binary_and_root() {
        let mut runc = RuncOptions::new();
        runc.binary_name = "/usr/sbin/runc".into();
        runc.root = "/run/x".into();
        let options =
            RuntimeOptions::from_any(Some(&any(RUNC_OPTIONS, runc.write_to_bytes().unwrap())))
                .unwrap();
        assert_eq!(options.binary_name, "/usr/sbin/runc");
        assert_eq!(options.root, "/run/x");
    }

    #[test]
    fn a_config_path_is_read_like_the_cri_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runtime.toml");
        std::fs::write(
            &file,
            "# berth\n[options]\nBinaryName = \"/usr/sbin/runc\"\nNoPivotRoot = true\n",
        )
        .unwrap();
        // type_name = "x" (field 1), config_path (field 2).
        let path = file.to_str().unwrap();
        let mut value = vec![0x0a, 1, b'x', 0x12, path.len() as u8];
        value.extend_from_slice(path.as_bytes());
        let options = RuntimeOptions::from_any(Some(&any(RUNTIME_OPTIONS, value))).unwrap();
        assert_eq!(options.binary_name, "/usr/sbin/runc");
        assert!(options.no_pivot_root);
    }

    #[test]
    fn no_options_and_unknown_options() {
        assert_eq!(
            RuntimeOptions::from_any(None).unwrap(),
            RuntimeOptions::default()
        );
        let err = RuntimeOptions::from_any(Some(&any("x.Other", vec![]))).unwrap_err();
        assert!(err.to_string().contains("x.Other"), "{err}");
    }

    #[test]
    fn options_survive_in_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            RuntimeOptions::load(dir.path()).unwrap(),
            RuntimeOptions::default()
        );
        let options = RuntimeOptions {
            binary_name: "runc".into(),
            root: "/r".into(),
            no_pivot_root: true,
            no_new_keyring: false,
        };
        options.save(dir.path()).unwrap();
        assert_eq!(RuntimeOptions::load(dir.path()).unwrap(), options);
    }
}
