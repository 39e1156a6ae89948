//! Error reporting the way runc does it.
//!
//! containerd-shim-runc-v2 runs runc with `--log FILE --log-format json` and, when a
//! command fails, reads the last `error` line of that file to tell the user why. So a
//! failure is written there as one JSON object per line (`level`, `msg`, `time`), and
//! to stderr for a person at a terminal.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use berth_libcontainer::state::rfc3339_now;
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Where and how to report.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub file: Option<PathBuf>,
    pub format: LogFormat,
}

impl Log {
    /// Reports an error: to the log file if one was given, and always to stderr.
    pub fn error(&self, message: &str) {
        eprintln!("berth-runc: {message}");
        let Some(path) = &self.file else { return };
        let line = self.line("error", message);
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = file.write_all(line.as_bytes());
        }
    }

    /// One log line in the configured format, newline included.
    pub fn line(&self, level: &str, message: &str) -> String {
        let time = rfc3339_now();
        match self.format {
            LogFormat::Json => {
                let value = serde_json::json!({ "level": level, "msg": message, "time": time });
                format!("{value}\n")
            }
            LogFormat::Text => format!("time=\"{time}\" level={level} msg={message:?}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_message_and_time() {
        let log = Log {
            file: None,
            format: LogFormat::Json,
        };
        let line = log.line("error", "container \"a\" does not exist");
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["level"], "error");
        assert_eq!(value["msg"], "container \"a\" does not exist");
        assert!(value["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn errors_are_appended_to_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log {
            file: Some(dir.path().join("log.json")),
            format: LogFormat::Json,
        };
        log.error("first");
        log.error("second");
        let text = std::fs::read_to_string(dir.path().join("log.json")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().last().unwrap().contains("\"msg\":\"second\""));
    }
}
