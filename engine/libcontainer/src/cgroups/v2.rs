//! The cgroup v2 planner, the v1→v2 value conversions, and enabling controllers for children.
//!
//! Used on pure v2 hosts. The spec's `linux.resources` speak v1's language (shares, memory
//! plus swap, blkio weights); v2 files take other units, so several values are converted here
//! with the same formulas runc uses, so that a container gets the same share under either runtime.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};

use super::devices_bpf::DeviceRule;
use super::fs;
use super::plan::{limit_or_max, nonzero, Plan, Planner, Probe};
use super::CgroupError;

/// Plans the v2 writes for `resources`; like v1, only the settings present are written.
pub(crate) fn plan(resources: &LinuxResources, probe: &dyn Probe) -> Result<Plan, CgroupError> {
    let mut p = Planner::new(probe);
    if let Some(memory) = resources.memory() {
        plan_memory(&mut p, memory)?;
    }
    if let Some(cpu) = resources.cpu() {
        plan_cpu(&mut p, cpu)?;
    }
    if let Some(pids) = resources.pids() {
        if pids.limit() != 0 {
            p.write(
                "linux.resources.pids",
                "pids",
                "pids.max",
                limit_or_max(pids.limit()),
            );
        }
    }
    if let Some(block_io) = resources.block_io() {
        plan_io(&mut p, block_io);
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let file = format!("hugetlb.{}.max", limit.page_size());
        p.write(
            "linux.resources.hugepageLimits",
            "hugetlb",
            &file,
            limit_or_max(limit.limit()),
        );
    }
    if let Some(devices) = resources.devices().as_ref().filter(|d| !d.is_empty()) {
        plan_devices(&mut p, devices)?;
    }
    if resources.network().is_some() {
        p.skip(
            "linux.resources.network",
            "cgroup v2 has no net_cls or net_prio controller",
        );
    }
    if resources.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        p.skip("linux.resources.rdma", "berth does not apply RDMA limits");
    }
    // `unified` is the spec's escape hatch: raw v2 file names and values, written last so
    // they win over anything converted above. Sorted, so the order does not depend on a hash.
    let mut unified: Vec<_> = resources.unified().iter().flatten().collect();
    unified.sort();
    for (file, value) in unified {
        if file.contains('/') || file.starts_with('.') {
            return Err(CgroupError::InvalidValue {
                setting: "linux.resources.unified",
                value: file.clone(),
                reason: "a key must be a file name in the cgroup directory, like memory.high",
            });
        }
        let controller = controller_of(file);
        p.write("linux.resources.unified", controller, file, value);
    }
    Ok(p.plan)
}

/// v2 has no devices controller: the rules become an eBPF program, attached by
/// [`Cgroup::apply`](super::Cgroup::apply). FIFO rules are dropped, as v1 drops them.
fn plan_devices(p: &mut Planner, devices: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let mut rules = Vec::new();
    for (index, device) in devices.iter().enumerate() {
        match DeviceRule::from_spec(index, device)? {
            Some(rule) => rules.push(rule),
            None => p.skip(
                "linux.resources.devices",
                "FIFOs are not device nodes; the device program is never asked about them",
            ),
        }
    }
    if !rules.is_empty() {
        p.plan.device_program = Some(rules);
    }
    Ok(())
}

fn plan_memory(p: &mut Planner, memory: &LinuxMemory) -> Result<(), CgroupError> {
    const SETTING: &str = "linux.resources.memory";
    if let Some(limit) = nonzero(memory.limit()) {
        p.write(SETTING, "memory", "memory.max", limit_or_max(limit));
    }
    if let Some(swap) = swap_max(memory.limit(), memory.swap())? {
        p.write_if_offered(
            SETTING,
            "memory",
            "memory.swap.max",
            swap,
            "this kernel has no swap accounting",
        );
    }
    if let Some(reservation) = nonzero(memory.reservation()) {
        p.write(SETTING, "memory", "memory.low", limit_or_max(reservation));
    }
    #[allow(deprecated)]
    if nonzero(memory.kernel()).is_some() || nonzero(memory.kernel_tcp()).is_some() {
        p.skip(
            SETTING,
            "cgroup v2 has no separate kernel memory limit; kernel memory counts toward memory.max",
        );
    }
    if memory.swappiness().is_some() {
        p.skip(SETTING, "cgroup v2 has no per-cgroup swappiness");
    }
    if memory.disable_oom_killer() == Some(true) {
        p.skip(
            SETTING,
            "cgroup v2 cannot turn the OOM killer off for a cgroup",
        );
    }
    Ok(())
}

/// v1's `swap` is memory+swap; v2's `memory.swap.max` is swap alone. runc's rules:
/// unset swap stays unset (unless memory is unlimited: then swap is too), `-1` is `max`,
/// otherwise swap-only = memory+swap − memory, which needs a memory limit to subtract.
fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>, CgroupError> {
    let limit = nonzero(limit);
    match (limit, nonzero(swap)) {
        (Some(-1), None) => Ok(Some("max".into())),
        (_, None) => Ok(None),
        (_, Some(swap)) if swap < 0 => Ok(Some("max".into())),
        (Some(limit), Some(swap)) if limit > 0 && swap >= limit => {
            Ok(Some((swap - limit).to_string()))
        }
        (Some(limit), Some(swap)) if limit > 0 => Err(CgroupError::InvalidValue {
            setting: "linux.resources.memory.swap",
            value: swap.to_string(),
            reason: "it is memory plus swap, so it must be at least memory.limit",
        }),
        (_, Some(swap)) => Err(CgroupError::InvalidValue {
            setting: "linux.resources.memory.swap",
            value: swap.to_string(),
            reason: "cgroup v2 limits swap alone, so berth needs memory.limit to subtract from it",
        }),
    }
}

fn plan_cpu(p: &mut Planner, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    const SETTING: &str = "linux.resources.cpu";
    if let Some(shares) = nonzero(cpu.shares()) {
        p.write(SETTING, "cpu", "cpu.weight", cpu_shares_to_weight(shares));
    }
    if let Some(max) = cpu_max(nonzero(cpu.quota()), nonzero(cpu.period())) {
        p.write(SETTING, "cpu", "cpu.max", max);
    }
    if let Some(burst) = cpu.burst() {
        p.write_if_offered(
            SETTING,
            "cpu",
            "cpu.max.burst",
            burst,
            "CPU burst needs Linux 5.14",
        );
    }
    if let Some(idle) = cpu.idle() {
        p.write_if_offered(
            SETTING,
            "cpu",
            "cpu.idle",
            idle,
            "SCHED_IDLE groups need Linux 5.15",
        );
    }
    if nonzero(cpu.realtime_runtime()).is_some() || nonzero(cpu.realtime_period()).is_some() {
        return Err(CgroupError::Unsupported {
            setting: "linux.resources.cpu.realtimeRuntime/realtimePeriod",
            version: "v2",
            reason: "cgroup v2 has no realtime group scheduling",
        });
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        p.write(SETTING, "cpuset", "cpuset.cpus", cpus);
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        p.write(SETTING, "cpuset", "cpuset.mems", mems);
    }
    Ok(())
}

/// v1's two files `cfs_quota_us` and `cfs_period_us` are one v2 line, `cpu.max`:
/// `QUOTA PERIOD`, with `max` for no quota and 100000 µs when no period is given.
fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let quota = quota
        .filter(|q| *q > 0)
        .map_or("max".to_string(), |q| q.to_string());
    Some(format!("{quota} {}", period.unwrap_or(100_000)))
}

fn plan_io(p: &mut Planner, block_io: &LinuxBlockIo) {
    const SETTING: &str = "linux.resources.blockIO";
    // BFQ's v2 file takes v1's 10..1000 scale as is; the generic io.weight takes 1..10000.
    let bfq = p.probe.has("io", "io.bfq.weight");
    let weight_file = if bfq { "io.bfq.weight" } else { "io.weight" };
    let scaled = |weight: u16| {
        if bfq {
            u64::from(weight)
        } else {
            blkio_weight_to_io_weight(weight)
        }
    };
    if let Some(weight) = nonzero(block_io.weight()) {
        // io.weight names the default weight "default N"; BFQ takes the bare number.
        let value = if bfq {
            weight.to_string()
        } else {
            format!("default {}", scaled(weight))
        };
        p.write(SETTING, "io", weight_file, value);
    }
    if nonzero(block_io.leaf_weight()).is_some() {
        p.skip(SETTING, "cgroup v2 has no leaf weights");
    }
    for device in block_io.weight_device().iter().flatten() {
        if let Some(weight) = device.weight() {
            let value = format!("{}:{} {}", device.major(), device.minor(), scaled(weight));
            p.write(SETTING, "io", weight_file, value);
        }
    }
    // v1's four throttle files are keys of one v2 file; each line sets only its own key.
    let throttles = [
        ("rbps", block_io.throttle_read_bps_device()),
        ("wbps", block_io.throttle_write_bps_device()),
        ("riops", block_io.throttle_read_iops_device()),
        ("wiops", block_io.throttle_write_iops_device()),
    ];
    for (key, devices) in throttles {
        for device in devices.iter().flatten() {
            let value = format!(
                "{}:{} {key}={}",
                device.major(),
                device.minor(),
                device.rate()
            );
            p.write(SETTING, "io", "io.max", value);
        }
    }
}

/// v1 `cpu.shares` (2..=262144, default 1024) → v2 `cpu.weight` (1..=10000, default 100).
///
/// runc's linear map: `1 + ((shares - 2) * 9999) / 262142`, so the ends meet the ends.
/// Shares outside 2..=262144 are clamped first, as the v1 kernel itself would.
/// Note the default 1024 maps to 39, not 100: runc chose a linear map over a faithful default.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 `blkio.weight` (10..=1000) → v2 `io.weight` (1..=10000), runc's linear map:
/// `1 + ((weight - 10) * 9999) / 990`, clamped to v1's range first.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + ((weight - 10) * 9999) / 990
}

/// `memory.high` → `memory`: a v2 file's name starts with its controller's.
fn controller_of(file: &str) -> &'static str {
    const CONTROLLERS: &[&str] = &[
        "cgroup", "cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma",
    ];
    let prefix = file.split('.').next().unwrap_or_default();
    CONTROLLERS
        .iter()
        .find(|c| **c == prefix)
        .copied()
        .unwrap_or("unified")
}

// ANCHOR: enable_controllers
/// Lets `parent`'s children use every controller `parent` has, by writing `+NAME` to its
/// `cgroup.subtree_control`.
///
/// In v2 a cgroup only has the files of controllers its parent enabled for its children, so
/// berth does this for every ancestor, top down, before the container's own directory exists.
/// The "no internal processes" rule: a cgroup other than the root cannot both hold
/// processes and give controllers to its children (the kernel answers EBUSY), because the
/// processes would then compete with the children with no rules to decide between them.
/// Hence containers go under a parent that holds no processes, like `/berth/ID`.
pub(crate) fn enable_controllers(parent: &Path) -> Result<(), CgroupError> {
    let available = fs::read(&parent.join("cgroup.controllers"))?;
    let enabled = fs::read(&parent.join("cgroup.subtree_control"))?;
    for controller in missing_controllers(&available, &enabled) {
        // One controller per write, so a refusal names the controller. Like runc, a refusal
        // is a warning, not an error: a container without limits still runs, and a limit that
        // needs the controller fails later with a message naming its file.
        let result = fs::write(
            &parent.join("cgroup.subtree_control"),
            &format!("+{controller}"),
            |e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    "this cgroup holds processes, and cgroup v2's no-internal-processes rule forbids \
                 it to delegate controllers; use a cgroupsPath whose parents hold none, like /berth/ID"
                    .to_string()
                } else {
                    "the controller may be in use by a threaded subtree or disabled at boot"
                        .to_string()
                }
            },
        );
        if let Err(e) = result {
            tracing::warn!("{e}");
        }
    }
    Ok(())
}
// ANCHOR_END: enable_controllers

/// The controllers listed in `cgroup.controllers` but not yet in `cgroup.subtree_control`.
fn missing_controllers<'a>(available: &'a str, enabled: &str) -> Vec<&'a str> {
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    available
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::plan::fake::FakeProbe;
    use crate::cgroups::v1::tests::{resources, FULL};

    #[test]
    fn a_full_spec_becomes_these_files_in_this_order() {
        // FULL has realtime settings, which v2 cannot honour: take them out first.
        let full = FULL.replace(
            r#""realtimeRuntime": 950000, "realtimePeriod": 1000000, "#,
            "",
        );
        let probe = FakeProbe {
            missing: vec!["io.bfq.weight"],
            ..FakeProbe::default()
        };
        let plan = plan(&resources(&full), &probe).unwrap();
        assert_eq!(
            plan.to_string(),
            "\
memory: memory.max = 104857600
memory: memory.swap.max = 104857600
memory: memory.low = 52428800
cpu: cpu.weight = 20
cpu: cpu.max = 50000 100000
cpu: cpu.max.burst = 1000
cpu: cpu.idle = 0
cpuset: cpuset.cpus = 0-1
cpuset: cpuset.mems = 0
pids: pids.max = 50
io: io.weight = default 2930
io: io.weight = 8:0 4950
io: io.max = 8:0 rbps=1048576
io: io.max = 8:0 wbps=2097152
io: io.max = 8:0 riops=100
io: io.max = 8:0 wiops=200
hugetlb: hugetlb.2MB.max = 4194304
devices: eBPF program = deny a *:* rwm, allow c 1:3 rwm, allow c 136:* rw
skipped linux.resources.memory: cgroup v2 has no separate kernel memory limit; kernel memory counts toward memory.max
skipped linux.resources.memory: cgroup v2 has no per-cgroup swappiness
skipped linux.resources.memory: cgroup v2 cannot turn the OOM killer off for a cgroup
skipped linux.resources.blockIO: cgroup v2 has no leaf weights
skipped linux.resources.network: cgroup v2 has no net_cls or net_prio controller
"
        );
    }

    #[test]
    fn bfq_weights_keep_the_v1_scale() {
        let plan = plan(
            &resources(r#"{"blockIO": {"weight": 300}}"#),
            &FakeProbe::default(),
        )
        .unwrap();
        assert_eq!(plan.to_string(), "io: io.bfq.weight = 300\n");
    }

    #[test]
    fn realtime_is_refused_on_v2() {
        let json = r#"{"cpu": {"realtimeRuntime": 950000}}"#;
        let err = plan(&resources(json), &FakeProbe::default()).unwrap_err();
        assert!(err.to_string().contains("realtime"), "{err}");
    }

    #[test]
    fn swap_follows_runcs_rules() {
        assert_eq!(swap_max(Some(100), None).unwrap(), None);
        assert_eq!(swap_max(Some(-1), None).unwrap().as_deref(), Some("max"));
        assert_eq!(
            swap_max(Some(100), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(
            swap_max(Some(100), Some(300)).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(
            swap_max(Some(100), Some(100)).unwrap().as_deref(),
            Some("0")
        );
        assert!(swap_max(Some(100), Some(50)).is_err());
        assert!(swap_max(None, Some(300)).is_err());
    }

    #[test]
    fn cpu_max_combines_quota_and_period() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(50000), None).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(Some(-1), Some(20000)).as_deref(), Some("max 20000"));
        assert_eq!(cpu_max(None, Some(20000)).as_deref(), Some("max 20000"));
    }

    #[test]
    fn unified_keys_are_written_last_and_checked() {
        let json =
            r#"{"pids": {"limit": 5}, "unified": {"memory.high": "1000000", "cpu.weight": "7"}}"#;
        assert_eq!(
            plan(&resources(json), &FakeProbe::default())
                .unwrap()
                .to_string(),
            "pids: pids.max = 5\ncpu: cpu.weight = 7\nmemory: memory.high = 1000000\n"
        );
        let err = plan(
            &resources(r#"{"unified": {"../../etc/passwd": "x"}}"#),
            &FakeProbe::default(),
        )
        .unwrap_err();
        assert!(matches!(err, CgroupError::InvalidValue { .. }));
    }

    #[test]
    fn shares_to_weight_known_points() {
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(0), 1);
        assert_eq!(cpu_shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn blkio_to_io_weight_known_points() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    proptest::proptest! {
        #[test]
        fn shares_to_weight_stays_in_range_and_never_decreases(a in 0u64..400_000, b in 0u64..400_000) {
            let (low, high) = (a.min(b), a.max(b));
            let (wl, wh) = (cpu_shares_to_weight(low), cpu_shares_to_weight(high));
            proptest::prop_assert!((1..=10_000).contains(&wl) && (1..=10_000).contains(&wh));
            proptest::prop_assert!(wl <= wh);
        }

        #[test]
        fn blkio_to_io_weight_stays_in_range_and_never_decreases(a: u16, b: u16) {
            let (low, high) = (a.min(b), a.max(b));
            let (wl, wh) = (blkio_weight_to_io_weight(low), blkio_weight_to_io_weight(high));
            proptest::prop_assert!((1..=10_000).contains(&wl) && (1..=10_000).contains(&wh));
            proptest::prop_assert!(wl <= wh);
        }
    }

    #[test]
    fn only_controllers_not_yet_enabled_are_enabled() {
        assert_eq!(
            missing_controllers("cpu io memory pids\n", "memory\n"),
            ["cpu", "io", "pids"]
        );
        assert!(missing_controllers("cpu\n", "cpu\n").is_empty());
    }
}
