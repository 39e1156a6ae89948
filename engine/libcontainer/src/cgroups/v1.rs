//! The cgroup v1 planner: which file of which controller's hierarchy gets which value.
//!
//! Used on v1 and hybrid hosts (a hybrid host's v2 hierarchy controls nothing). The spec's
//! `linux.resources` were designed on v1, so most settings map one to one onto a v1 file;
//! the exceptions (write order for memory, optional files) are explained where they occur.

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNetwork,
    LinuxResources,
};

use super::plan::{nonzero, Plan, Planner, Probe};
use super::CgroupError;

/// Plans the v1 writes for `resources`. Only the settings present (and non-zero, as runc
/// reads them) are written, so the same plan serves `create` and `update`.
pub(crate) fn plan(resources: &LinuxResources, probe: &dyn Probe) -> Result<Plan, CgroupError> {
    let mut p = Planner::new(probe);
    if let Some(memory) = resources.memory() {
        plan_memory(&mut p, memory)?;
    }
    if let Some(cpu) = resources.cpu() {
        plan_cpu(&mut p, cpu);
    }
    if let Some(pids) = resources.pids() {
        if pids.limit() != 0 {
            p.write(
                "linux.resources.pids",
                "pids",
                "pids.max",
                super::plan::limit_or_max(pids.limit()),
            );
        }
    }
    if let Some(block_io) = resources.block_io() {
        plan_blkio(&mut p, block_io);
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let file = format!("hugetlb.{}.limit_in_bytes", limit.page_size());
        p.write(
            "linux.resources.hugepageLimits",
            "hugetlb",
            &file,
            limit.limit(),
        );
    }
    if let Some(network) = resources.network() {
        plan_network(&mut p, network);
    }
    for rule in resources.devices().iter().flatten() {
        plan_device_rule(&mut p, rule);
    }
    if resources.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        // A real engine would write rdma.max; berth doesn't because none of its test
        // machines has RDMA hardware to prove the values right.
        p.skip("linux.resources.rdma", "berth does not apply RDMA limits");
    }
    if resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::Unsupported {
            setting: "linux.resources.unified",
            version: "v1 (or hybrid)",
            reason: "its keys are cgroup v2 file names",
        });
    }
    Ok(p.plan)
}

fn plan_memory(p: &mut Planner, memory: &LinuxMemory) -> Result<(), CgroupError> {
    const SETTING: &str = "linux.resources.memory";
    plan_limit_and_swap(p, memory)?;
    if let Some(reservation) = nonzero(memory.reservation()) {
        p.write(SETTING, "memory", "memory.soft_limit_in_bytes", reservation);
    }
    // Kernel memory limits are deprecated since Linux 5.4 (runc 1.1 ignores them); berth
    // still writes them where the kernel offers the file, so old configs keep their meaning.
    #[allow(deprecated)]
    if let Some(kernel) = nonzero(memory.kernel()) {
        p.write_if_offered(
            SETTING,
            "memory",
            "memory.kmem.limit_in_bytes",
            kernel,
            "kernel memory limits were removed",
        );
    }
    if let Some(kernel_tcp) = nonzero(memory.kernel_tcp()) {
        p.write_if_offered(
            SETTING,
            "memory",
            "memory.kmem.tcp.limit_in_bytes",
            kernel_tcp,
            "kernel memory limits were removed",
        );
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(CgroupError::InvalidValue {
                setting: "linux.resources.memory.swappiness",
                value: swappiness.to_string(),
                reason: "it must be between 0 and 100",
            });
        }
        p.write(SETTING, "memory", "memory.swappiness", swappiness);
    }
    if let Some(disable) = memory.disable_oom_killer() {
        p.write(SETTING, "memory", "memory.oom_control", u8::from(disable));
    }
    Ok(())
}

/// `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`, in an order the kernel accepts.
fn plan_limit_and_swap(p: &mut Planner, memory: &LinuxMemory) -> Result<(), CgroupError> {
    const SETTING: &str = "linux.resources.memory";
    let limit = nonzero(memory.limit());
    let mut swap = nonzero(memory.swap());
    if let (Some(limit), Some(swap)) = (limit, swap) {
        if limit > 0 && swap > 0 && swap < limit {
            return Err(CgroupError::InvalidValue {
                setting: "linux.resources.memory.swap",
                value: swap.to_string(),
                reason: "on Linux it is memory plus swap, so it must be at least memory.limit",
            });
        }
    }
    let has_swap_file = p.probe.has("memory", "memory.memsw.limit_in_bytes");
    // Lifting the memory limit must lift memory+swap too, or the kernel refuses the new
    // limit for being above the old memory+swap limit.
    if limit == Some(-1) && swap.is_none() && has_swap_file {
        swap = Some(-1);
    }
    let write_limit = |p: &mut Planner| {
        if let Some(limit) = limit {
            p.write(SETTING, "memory", "memory.limit_in_bytes", limit);
        }
    };
    let write_swap = |p: &mut Planner| {
        if let Some(swap) = swap {
            p.write_if_offered(
                SETTING,
                "memory",
                "memory.memsw.limit_in_bytes",
                swap,
                "swap accounting is off; boot with swapaccount=1",
            );
        }
    };
    // The kernel keeps memory.limit <= memory+swap.limit at every moment. When the new
    // memory+swap limit is above the current memory limit, writing it first keeps that true
    // (and raising both then works); otherwise the memory limit must shrink first.
    let current_limit = p
        .probe
        .number("memory", "memory.limit_in_bytes")
        .unwrap_or(u64::MAX);
    let swap_first = swap.is_some_and(|s| s < 0 || s as u64 > current_limit);
    if swap_first {
        write_swap(p);
        write_limit(p);
    } else {
        write_limit(p);
        write_swap(p);
    }
    Ok(())
}

fn plan_cpu(p: &mut Planner, cpu: &LinuxCpu) {
    const SETTING: &str = "linux.resources.cpu";
    if let Some(shares) = nonzero(cpu.shares()) {
        p.write(SETTING, "cpu", "cpu.shares", shares);
    }
    // Period before quota: the kernel checks a quota against the period it will be used with.
    if let Some(period) = nonzero(cpu.period()) {
        p.write(SETTING, "cpu", "cpu.cfs_period_us", period);
    }
    if let Some(quota) = nonzero(cpu.quota()) {
        p.write(SETTING, "cpu", "cpu.cfs_quota_us", quota);
    }
    if let Some(burst) = cpu.burst() {
        p.write_if_offered(
            SETTING,
            "cpu",
            "cpu.cfs_burst_us",
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
    if let Some(period) = nonzero(cpu.realtime_period()) {
        p.write(SETTING, "cpu", "cpu.rt_period_us", period);
    }
    if let Some(runtime) = nonzero(cpu.realtime_runtime()) {
        p.write(SETTING, "cpu", "cpu.rt_runtime_us", runtime);
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        p.write(SETTING, "cpuset", "cpuset.cpus", cpus);
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        p.write(SETTING, "cpuset", "cpuset.mems", mems);
    }
}

fn plan_blkio(p: &mut Planner, block_io: &LinuxBlockIo) {
    const SETTING: &str = "linux.resources.blockIO";
    // CFQ named the files blkio.weight*; BFQ, the scheduler left since Linux 5.0, names
    // them blkio.bfq.weight* with the same 10..1000 scale.
    let prefix = if p.probe.has("blkio", "blkio.weight") {
        "blkio"
    } else {
        "blkio.bfq"
    };
    if let Some(weight) = nonzero(block_io.weight()) {
        let file = format!("{prefix}.weight");
        p.write_if_offered(
            SETTING,
            "blkio",
            &file,
            weight,
            "no proportional I/O scheduler (CFQ or BFQ)",
        );
    }
    if let Some(leaf_weight) = nonzero(block_io.leaf_weight()) {
        p.write_if_offered(
            SETTING,
            "blkio",
            "blkio.leaf_weight",
            leaf_weight,
            "leaf weights went with CFQ",
        );
    }
    for device in block_io.weight_device().iter().flatten() {
        if let Some(weight) = device.weight() {
            let value = format!("{}:{} {weight}", device.major(), device.minor());
            let file = format!("{prefix}.weight_device");
            p.write_if_offered(
                SETTING,
                "blkio",
                &file,
                value,
                "no proportional I/O scheduler (CFQ or BFQ)",
            );
        }
        if let Some(leaf_weight) = device.leaf_weight() {
            let value = format!("{}:{} {leaf_weight}", device.major(), device.minor());
            p.write_if_offered(
                SETTING,
                "blkio",
                "blkio.leaf_weight_device",
                value,
                "leaf weights went with CFQ",
            );
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            block_io.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            block_io.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            block_io.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            block_io.throttle_write_iops_device(),
        ),
    ];
    for (file, devices) in throttles {
        for device in devices.iter().flatten() {
            let value = format!("{}:{} {}", device.major(), device.minor(), device.rate());
            p.write(SETTING, "blkio", file, value);
        }
    }
}

fn plan_network(p: &mut Planner, network: &LinuxNetwork) {
    const SETTING: &str = "linux.resources.network";
    if let Some(class_id) = network.class_id() {
        p.write(SETTING, "net_cls", "net_cls.classid", class_id);
    }
    for priority in network.priorities().iter().flatten() {
        let value = format!("{} {}", priority.name(), priority.priority());
        p.write(SETTING, "net_prio", "net_prio.ifpriomap", value);
    }
}

/// One device rule becomes one line in `devices.allow` or `devices.deny`, in the spec's order:
/// the kernel applies them one after the other, so "deny all, then allow a few" works.
///
/// The rules are applied exactly as the spec gives them. runc appends its own allow-list
/// (`/dev/null`, `/dev/zero`, `/dev/tty`, `/dev/pts/*`, …) while converting the spec, before
/// this point; berth-runc must do the same, or a "deny all" spec leaves no `/dev/null`.
fn plan_device_rule(p: &mut Planner, rule: &LinuxDeviceCgroup) {
    const SETTING: &str = "linux.resources.devices";
    let kind = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        // The kernel's device controller knows only block and char devices;
        // an unbuffered char device ("u") is a char device to it.
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => {
            p.skip(
                SETTING,
                "FIFOs are not device nodes; the device controller ignores them",
            );
            return;
        }
    };
    let number = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    let value = format!(
        "{kind} {}:{} {access}",
        number(rule.major()),
        number(rule.minor())
    );
    let file = if rule.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    p.write(SETTING, "devices", file, value);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cgroups::plan::fake::FakeProbe;

    /// Every setting berth knows, as a config.json would hold them.
    pub(crate) const FULL: &str = r#"{
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rw"}
        ],
        "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200,
                   "kernel": 10485760, "kernelTCP": 1048576, "swappiness": 10,
                   "disableOOMKiller": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0,
                "realtimeRuntime": 950000, "realtimePeriod": 1000000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 50},
        "blockIO": {"weight": 300, "leafWeight": 100,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}
    }"#;

    pub(crate) fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_full_spec_becomes_these_files_in_this_order() {
        // A kernel like this test machine's: BFQ weights, no leaf weights, no hugetlb mount.
        let probe = FakeProbe {
            unmounted: vec!["hugetlb", "net_cls", "net_prio"],
            missing: vec!["blkio.weight", "blkio.leaf_weight"],
            ..FakeProbe::default()
        };
        let plan = plan(&resources(FULL), &probe).unwrap();
        assert_eq!(
            plan.to_string(),
            "\
memory: memory.limit_in_bytes = 104857600
memory: memory.memsw.limit_in_bytes = 209715200
memory: memory.soft_limit_in_bytes = 52428800
memory: memory.kmem.limit_in_bytes = 10485760
memory: memory.kmem.tcp.limit_in_bytes = 1048576
memory: memory.swappiness = 10
memory: memory.oom_control = 1
cpu: cpu.shares = 512
cpu: cpu.cfs_period_us = 100000
cpu: cpu.cfs_quota_us = 50000
cpu: cpu.cfs_burst_us = 1000
cpu: cpu.idle = 0
cpu: cpu.rt_period_us = 1000000
cpu: cpu.rt_runtime_us = 950000
cpuset: cpuset.cpus = 0-1
cpuset: cpuset.mems = 0
pids: pids.max = 50
blkio: blkio.bfq.weight = 300
blkio: blkio.bfq.weight_device = 8:0 500
blkio: blkio.throttle.read_bps_device = 8:0 1048576
blkio: blkio.throttle.write_bps_device = 8:0 2097152
blkio: blkio.throttle.read_iops_device = 8:0 100
blkio: blkio.throttle.write_iops_device = 8:0 200
devices: devices.deny = a *:* rwm
devices: devices.allow = c 1:3 rwm
devices: devices.allow = c 136:* rw
skipped linux.resources.blockIO: this kernel has no blkio.leaf_weight (leaf weights went with CFQ)
skipped linux.resources.hugepageLimits: no hugetlb hierarchy is mounted on this host
skipped linux.resources.network: no net_cls hierarchy is mounted on this host
skipped linux.resources.network: no net_prio hierarchy is mounted on this host
"
        );
    }

    #[test]
    fn every_controller_mounted_writes_cfq_hugetlb_and_network_files() {
        let plan = plan(&resources(FULL), &FakeProbe::default())
            .unwrap()
            .to_string();
        for line in [
            "blkio: blkio.weight = 300",
            "blkio: blkio.leaf_weight = 100",
            "hugetlb: hugetlb.2MB.limit_in_bytes = 4194304",
            "net_cls: net_cls.classid = 1048577",
            "net_prio: net_prio.ifpriomap = eth0 5",
        ] {
            assert!(plan.contains(line), "missing {line:?} in\n{plan}");
        }
    }

    #[test]
    fn raising_memory_past_the_current_limit_writes_swap_first() {
        let probe = FakeProbe {
            memory_limit: Some(50 << 20),
            ..FakeProbe::default()
        };
        let plan = plan(
            &resources(r#"{"memory": {"limit": 209715200, "swap": 419430400}}"#),
            &probe,
        )
        .unwrap();
        assert_eq!(
            plan.to_string(),
            "memory: memory.memsw.limit_in_bytes = 419430400\nmemory: memory.limit_in_bytes = 209715200\n"
        );
    }

    #[test]
    fn lowering_memory_writes_the_limit_first() {
        let probe = FakeProbe {
            memory_limit: Some(500 << 20),
            ..FakeProbe::default()
        };
        let plan = plan(
            &resources(r#"{"memory": {"limit": 104857600, "swap": 209715200}}"#),
            &probe,
        )
        .unwrap();
        assert_eq!(plan.writes[0].file, "memory.limit_in_bytes");
    }

    #[test]
    fn unlimited_memory_unlimits_swap_too() {
        let plan = plan(
            &resources(r#"{"memory": {"limit": -1}}"#),
            &FakeProbe::default(),
        )
        .unwrap();
        assert_eq!(
            plan.to_string(),
            "memory: memory.memsw.limit_in_bytes = -1\nmemory: memory.limit_in_bytes = -1\n"
        );
    }

    #[test]
    fn swap_is_skipped_with_a_reason_when_swap_accounting_is_off() {
        let probe = FakeProbe {
            missing: vec!["memory.memsw.limit_in_bytes"],
            ..FakeProbe::default()
        };
        let plan = plan(
            &resources(r#"{"memory": {"limit": 1048576, "swap": 2097152}}"#),
            &probe,
        )
        .unwrap();
        assert_eq!(plan.writes.len(), 1);
        assert!(plan.skipped[0].reason.contains("swapaccount=1"));
    }

    #[test]
    fn zero_means_unset_and_negative_pids_mean_max() {
        let json =
            r#"{"memory": {"limit": 0}, "cpu": {"shares": 0, "quota": 0}, "pids": {"limit": -1}}"#;
        assert_eq!(
            plan(&resources(json), &FakeProbe::default())
                .unwrap()
                .to_string(),
            "pids: pids.max = max\n"
        );
    }

    #[test]
    fn invalid_values_are_reported_with_the_setting() {
        let err = plan(
            &resources(r#"{"memory": {"limit": 2000, "swap": 1000}}"#),
            &FakeProbe::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("linux.resources.memory.swap = 1000"),
            "{err}"
        );
        let err = plan(
            &resources(r#"{"memory": {"swappiness": 101}}"#),
            &FakeProbe::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("between 0 and 100"), "{err}");
    }

    #[test]
    fn unified_keys_are_refused_on_v1() {
        let err = plan(
            &resources(r#"{"unified": {"memory.high": "1000000"}}"#),
            &FakeProbe::default(),
        )
        .unwrap_err();
        assert!(matches!(err, CgroupError::Unsupported { .. }));
    }
}
