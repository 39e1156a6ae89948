//! A plan: the cgroup files to write for a `LinuxResources`, in order, decided before writing.
//!
//! The v1 and v2 planners (`v1.rs`, `v2.rs`) only decide; [`Cgroup::apply`](super::Cgroup::apply)
//! only writes. The split lets unit tests check every file and value without root, by
//! answering the planner's few questions about the host through a fake [`Probe`].

use std::fmt;

use super::devices_bpf::DeviceRule;

/// One value to write into one file of the container's cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    /// The controller the file belongs to. On v1 it picks the hierarchy (and so the directory);
    /// on v2 every file is in the one directory and this only explains errors.
    pub controller: &'static str,
    /// The file's name inside the cgroup directory, e.g. `memory.limit_in_bytes`.
    pub file: String,
    /// Exactly what is written.
    pub value: String,
    /// The part of config.json the value came from, for error messages.
    pub setting: &'static str,
}

/// A setting the spec asked for that this host cannot apply; logged as a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub setting: &'static str,
    pub reason: String,
}

/// Everything a planner decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub writes: Vec<Write>,
    /// v2 only: device rules to compile into an eBPF program and attach to the cgroup, since
    /// v2 has no file to write them to (see `devices_bpf.rs`). `None`: leave devices alone.
    pub device_program: Option<Vec<DeviceRule>>,
    pub skipped: Vec<Skipped>,
}

/// What a planner may ask about the cgroup it plans for. [`Cgroup`](super::Cgroup) answers
/// from the real directories; tests answer from a list.
pub(crate) trait Probe {
    /// Is `controller` there at all? (v1: is its hierarchy mounted; v2: always yes, a missing
    /// controller shows as missing files and a clear write error.)
    fn mounted(&self, controller: &str) -> bool;
    /// Does this kernel offer `file` for `controller`? Asked only about optional files.
    fn has(&self, controller: &str, file: &str) -> bool;
    /// The number currently in `file`, if it can be read (`max` reads as `u64::MAX`).
    fn number(&self, controller: &str, file: &str) -> Option<u64>;
}

/// Collects a plan, skipping writes for controllers the host does not have.
pub(crate) struct Planner<'a> {
    pub probe: &'a dyn Probe,
    pub plan: Plan,
}

impl<'a> Planner<'a> {
    pub fn new(probe: &'a dyn Probe) -> Self {
        Planner {
            probe,
            plan: Plan::default(),
        }
    }

    /// Plans writing `value` to `file`, or skips it if `controller` is not mounted.
    pub fn write(
        &mut self,
        setting: &'static str,
        controller: &'static str,
        file: &str,
        value: impl ToString,
    ) {
        if !self.probe.mounted(controller) {
            self.skip(
                setting,
                format!("no {controller} hierarchy is mounted on this host"),
            );
            return;
        }
        self.plan.writes.push(Write {
            controller,
            file: file.to_string(),
            value: value.to_string(),
            setting,
        });
    }

    /// Plans the write only if the kernel offers `file`; otherwise records why it is skipped.
    pub fn write_if_offered(
        &mut self,
        setting: &'static str,
        controller: &'static str,
        file: &str,
        value: impl ToString,
        missing_means: &str,
    ) {
        if self.probe.mounted(controller) && !self.probe.has(controller, file) {
            self.skip(
                setting,
                format!("this kernel has no {file} ({missing_means})"),
            );
            return;
        }
        self.write(setting, controller, file, value);
    }

    pub fn skip(&mut self, setting: &'static str, reason: impl Into<String>) {
        self.plan.skipped.push(Skipped {
            setting,
            reason: reason.into(),
        });
    }
}

impl fmt::Display for Plan {
    /// One line per write, `controller: file = value`, a line for the device program if
    /// any, then one per skipped setting: the form
    /// the table tests compare against.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.writes {
            writeln!(f, "{}: {} = {}", w.controller, w.file, w.value)?;
        }
        if let Some(rules) = &self.device_program {
            let rules: Vec<String> = rules.iter().map(ToString::to_string).collect();
            writeln!(f, "devices: eBPF program = {}", rules.join(", "))?;
        }
        for s in &self.skipped {
            writeln!(f, "skipped {}: {}", s.setting, s.reason)?;
        }
        Ok(())
    }
}

/// The value cgroup files take for "no limit" where the spec says `-1` (or any negative).
pub(crate) fn limit_or_max(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// A spec number that runc treats as "not set" when zero: absent and `0` both mean "leave alone".
pub(crate) fn nonzero<T: Default + PartialEq + Copy>(value: Option<T>) -> Option<T> {
    value.filter(|v| *v != T::default())
}

#[cfg(test)]
pub(crate) mod fake {
    //! A [`Probe`] for tests: every controller mounted and every file offered, unless listed.

    use super::Probe;

    #[derive(Default)]
    pub(crate) struct FakeProbe {
        pub unmounted: Vec<&'static str>,
        pub missing: Vec<&'static str>,
        /// What `memory.limit_in_bytes` holds now (v1 write ordering depends on it).
        pub memory_limit: Option<u64>,
    }

    impl Probe for FakeProbe {
        fn mounted(&self, controller: &str) -> bool {
            !self.unmounted.contains(&controller)
        }
        fn has(&self, controller: &str, file: &str) -> bool {
            self.mounted(controller) && !self.missing.contains(&file)
        }
        fn number(&self, _controller: &str, file: &str) -> Option<u64> {
            (file == "memory.limit_in_bytes")
                .then_some(self.memory_limit)
                .flatten()
        }
    }
}
