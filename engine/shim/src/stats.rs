//! Stats: a container's resource usage, as containerd's cgroup metrics.
//!
//! containerd-shim-runc-v2 reads the container's cgroup files itself. berth-shim asks
//! the runtime instead (`events --stats`, which berth-runc and runc both answer with
//! runc's JSON) and only translates: the shim stays free of cgroup code, and the
//! numbers are the runtime's, which knows where the cgroup is. The answer's type
//! follows the host: `io.containerd.cgroups.v1.Metrics` on a v1 or hybrid host,
//! `io.containerd.cgroups.v2.Metrics` on a pure v2 host; `ctr task metrics` decodes both.

use std::path::Path;

use protobuf::well_known_types::any::Any;
use serde_json::Value;

use crate::names::pack;
use crate::protos::cgroups::metrics as v1;
use crate::protos::cgroups_v2::metrics as v2;

/// Whether this host's cgroups are v2 only (the unified hierarchy at the top).
pub fn host_is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// runc's stats JSON (the `data` of a `stats` event) as containerd's metrics.
pub fn metrics(data: &Value, v2_host: bool) -> Result<Any, protobuf::Error> {
    let n = |path: &[&str]| {
        path.iter()
            .fold(data, |v, key| &v[*key])
            .as_u64()
            .unwrap_or(0)
    };
    if v2_host {
        let mut m = v2::Metrics::new();
        let pids = m.pids.mut_or_insert_default();
        pids.current = n(&["pids", "current"]);
        pids.limit = n(&["pids", "limit"]);
        let cpu = m.cpu.mut_or_insert_default();
        // runc reports nanoseconds; cgroup v2 metrics are in microseconds.
        cpu.usage_usec = n(&["cpu", "usage", "total"]) / 1000;
        cpu.user_usec = n(&["cpu", "usage", "user"]) / 1000;
        cpu.system_usec = n(&["cpu", "usage", "kernel"]) / 1000;
        let memory = m.memory.mut_or_insert_default();
        memory.usage = n(&["memory", "usage", "usage"]);
        memory.usage_limit = n(&["memory", "usage", "limit"]);
        memory.max_usage = n(&["memory", "usage", "max"]);
        pack(&m)
    } else {
        let mut m = v1::Metrics::new();
        let pids = m.pids.mut_or_insert_default();
        pids.current = n(&["pids", "current"]);
        pids.limit = n(&["pids", "limit"]);
        let usage = m.cpu.mut_or_insert_default().usage.mut_or_insert_default();
        usage.total = n(&["cpu", "usage", "total"]);
        usage.user = n(&["cpu", "usage", "user"]);
        usage.kernel = n(&["cpu", "usage", "kernel"]);
        let entry = m
            .memory
            .mut_or_insert_default()
            .usage
            .mut_or_insert_default();
        entry.usage = n(&["memory", "usage", "usage"]);
        entry.limit = n(&["memory", "usage", "limit"]);
        entry.max = n(&["memory", "usage", "max"]);
        entry.failcnt = n(&["memory", "usage", "failcnt"]);
        pack(&m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;

    fn sample() -> Value {
        serde_json::json!({
            "cpu": {"usage": {"total": 5_000_000, "kernel": 1_000_000, "user": 4_000_000}},
            "memory": {"usage": {"usage": 4096, "limit": 8192, "max": 5000}},
            "pids": {"current": 2, "limit": 0}
        })
    }

    #[test]
    fn v1_metrics_keep_runcs_units() {
        let any = metrics(&sample(), false).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!((m.memory.usage.usage, m.memory.usage.limit), (4096, 8192));
    }

    #[test]
    fn v2_metrics_are_in_microseconds() {
        let any = metrics(&sample(), true).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!((m.cpu.usage_usec, m.cpu.system_usec), (5000, 1000));
        assert_eq!((m.memory.usage, m.memory.usage_limit), (4096, 8192));
    }
}
