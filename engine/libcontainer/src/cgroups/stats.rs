//! What `berth-runc events --stats` reports: CPU time, memory and process counts of a container.
//!
//! The types serialize to the same JSON keys as the matching subset of runc's `events`
//! output (`cpu.usage.total`, `memory.usage.usage`, `pids.current`, …), so tools that parse
//! runc's numbers parse berth's. A real engine would also report per-CPU times, throttling,
//! block I/O and hugetlb; berth doesn't because these three are what `docker stats` shows.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{fs, CgroupError};

/// A container's resource usage at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    pub usage: CpuUsage,
}

/// CPU time used since the cgroup was created, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    pub total: u64,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    pub usage: MemoryUsage,
}

/// Memory in bytes. `limit` is what the kernel reports for "no limit": a huge number on v1,
/// `u64::MAX` for v2's `max`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryUsage {
    pub usage: u64,
    pub limit: u64,
    /// The highest usage seen (0 where the kernel does not record it).
    pub max: u64,
}

/// Processes (threads included) in the cgroup; `limit` 0 means no limit, as in runc.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    pub current: u64,
    pub limit: u64,
}

/// Reads the stats from v1 hierarchies; `dir` gives a controller's directory, if mounted.
/// A missing controller or file reads as zero: stats are for display, not for decisions.
pub(crate) fn read_v1(
    dir: impl Fn(&str) -> Option<std::path::PathBuf>,
) -> Result<Stats, CgroupError> {
    let number = |controller: &str, file: &str| -> Result<u64, CgroupError> {
        match dir(controller) {
            Some(d) => Ok(fs::read_u64_if_present(&d.join(file))?.unwrap_or(0)),
            None => Ok(0),
        }
    };
    let (user, kernel) = match dir("cpuacct") {
        Some(d) => cpuacct_stat(&d)?,
        None => (0, 0),
    };
    Ok(Stats {
        cpu: CpuStats {
            usage: CpuUsage {
                total: number("cpuacct", "cpuacct.usage")?,
                kernel,
                user,
            },
        },
        memory: MemoryStats {
            usage: MemoryUsage {
                usage: number("memory", "memory.usage_in_bytes")?,
                limit: number("memory", "memory.limit_in_bytes")?,
                max: number("memory", "memory.max_usage_in_bytes")?,
            },
        },
        pids: PidsStats {
            current: number("pids", "pids.current")?,
            limit: no_limit_as_zero(number("pids", "pids.max")?),
        },
    })
}

/// `cpuacct.stat` counts user and system time in clock ticks (USER_HZ); runc reports ns.
fn cpuacct_stat(dir: &Path) -> Result<(u64, u64), CgroupError> {
    let Some(text) = fs::read_if_present(&dir.join("cpuacct.stat"))? else {
        return Ok((0, 0));
    };
    // SAFETY: sysconf reads a system constant and touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ns_per_tick = 1_000_000_000 / u64::try_from(hz).unwrap_or(100).max(1);
    let ticks = |key| fs::keyed_value(&text, key).unwrap_or(0);
    Ok((ticks("user") * ns_per_tick, ticks("system") * ns_per_tick))
}

/// Reads the stats from the v2 cgroup directory `dir`.
pub(crate) fn read_v2(dir: &Path) -> Result<Stats, CgroupError> {
    let number = |file: &str| -> Result<u64, CgroupError> {
        Ok(fs::read_u64_if_present(&dir.join(file))?.unwrap_or(0))
    };
    let cpu = fs::read_if_present(&dir.join("cpu.stat"))?.unwrap_or_default();
    let usec = |key| fs::keyed_value(&cpu, key).unwrap_or(0) * 1000;
    Ok(Stats {
        cpu: CpuStats {
            usage: CpuUsage {
                total: usec("usage_usec"),
                kernel: usec("system_usec"),
                user: usec("user_usec"),
            },
        },
        memory: MemoryStats {
            usage: MemoryUsage {
                usage: number("memory.current")?,
                limit: number("memory.max")?,
                max: number("memory.peak")?,
            },
        },
        pids: PidsStats {
            current: number("pids.current")?,
            limit: no_limit_as_zero(number("pids.max")?),
        },
    })
}

fn no_limit_as_zero(limit: u64) -> u64 {
    if limit == u64::MAX {
        0
    } else {
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_stats_come_from_these_files() {
        let dir = tempfile::tempdir().unwrap();
        let put = |file: &str, text: &str| std::fs::write(dir.path().join(file), text).unwrap();
        put(
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
        );
        put("memory.current", "4096\n");
        put("memory.max", "max\n");
        put("pids.current", "3\n");
        put("pids.max", "max\n");
        let stats = read_v2(dir.path()).unwrap();
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            serde_json::json!({
                "cpu": {"usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000}},
                "memory": {"usage": {"usage": 4096, "limit": u64::MAX, "max": 0}},
                "pids": {"current": 3, "limit": 0}
            })
        );
    }

    #[test]
    fn v1_stats_come_from_three_hierarchies() {
        let root = tempfile::tempdir().unwrap();
        for (controller, file, text) in [
            ("cpuacct", "cpuacct.usage", "123456789\n"),
            ("memory", "memory.usage_in_bytes", "8192\n"),
            ("memory", "memory.limit_in_bytes", "9223372036854771712\n"),
            ("pids", "pids.current", "2\n"),
            ("pids", "pids.max", "50\n"),
        ] {
            std::fs::create_dir_all(root.path().join(controller)).unwrap();
            std::fs::write(root.path().join(controller).join(file), text).unwrap();
        }
        let stats = read_v1(|c| Some(root.path().join(c))).unwrap();
        assert_eq!(stats.cpu.usage.total, 123_456_789);
        assert_eq!(stats.memory.usage.usage, 8192);
        assert_eq!(stats.memory.usage.limit, 9_223_372_036_854_771_712);
        assert_eq!(
            stats.pids,
            PidsStats {
                current: 2,
                limit: 50
            }
        );
    }
}
