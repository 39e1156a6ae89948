//! berth-shim's spans, judged end to end with real processes: real containerd 1.6 runs
//! berth-shim, which runs berth-runc, and both export to a test OTLP receiver
//! (`berth_tests::otlp`), named by `OTEL_EXPORTER_OTLP_ENDPOINT` in containerd's
//! environment, which containerd hands to its shims and they to the runtime.
//!
//! Two claims. Every Task method is a span named after it
//! (`containerd.task.v2.Task/Create`), and the runtime commands it runs hang below it
//! (the shim passes its span as `TRACEPARENT`). And a caller's `traceparent` in the
//! ttrpc request metadata parents the method's span. containerd 1.6 sends none, so the
//! test is that caller: it sends `Pids` to the shim's socket itself.

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::images::busybox;
use berth_tests::otlp::{Receiver, SpanSeen};
use berth_tests::peers::{self, run_ok, Containerd};
use containerd_shim_protos::api;
use containerd_shim_protos::{ttrpc, TaskClient};
use tempfile::TempDir;

const IMAGE: &str = "docker.io/library/busybox:latest";
const NAMESPACE: &str = "berth-shim-tracing";
const RUNTIME: &str = "io.containerd.berth.v2";

/// The test's own span, sent as the `traceparent` of a ttrpc request.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// A containerd running containers through berth-shim, exporting to `receiver`.
struct Lab {
    containerd: Containerd,
    receiver: Receiver,
    _dir: TempDir,
}

impl Lab {
    fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let bin = berth_tests::shim::install(dir.path(), None);
        let receiver = Receiver::start();
        let containerd = Containerd::start_with_env(
            &dir.path().join("c"),
            Some(&bin),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
                // A long-running shim exports in batches; send them every 200 ms, so
                // the spans of a shim that keeps running arrive while the test waits.
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ],
        );
        let archive = busybox().archive.to_str().unwrap().to_owned();
        run_ok(
            containerd
                .ctr(NAMESPACE)
                .args(["images", "import", &archive]),
        );
        Lab {
            containerd,
            receiver,
            _dir: dir,
        }
    }

    /// `ctr run --runtime io.containerd.berth.v2 FLAGS IMAGE ID COMMAND...`.
    fn run(&self, flags: &[&str], id: &str, command: &[&str]) -> Command {
        let mut cmd = self.containerd.ctr(NAMESPACE);
        cmd.args(["run", "--runtime", RUNTIME])
            .args(flags)
            .arg("--cgroup")
            .arg(format!("{}/{id}", self.containerd.cgroup_parent().path()))
            .arg("--fifo-dir")
            .arg(self.containerd.fifo_dir())
            .args([IMAGE, id])
            .args(command);
        cmd
    }

    /// The shim's address, from the `address` file it wrote in the task's bundle.
    fn shim_address(&self, id: &str) -> String {
        let bundle = self
            .containerd
            .dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id);
        fs::read_to_string(bundle.join("address"))
            .unwrap_or_else(|e| panic!("no address file in {}: {e}", bundle.display()))
            .trim()
            .to_owned()
    }
}

impl Lab {
    /// Nothing of a removed task may be left: no shim, no mount, no socket, no cgroup.
    fn assert_clean(&self) {
        let dir = self.containerd.dir().to_str().unwrap().to_owned();
        let shims = || -> Vec<String> {
            fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains(&format!("{dir}/")) && c.contains("berth-shim"))
                .collect()
        };
        // The shim exits once the task is deleted: bounded, not timed.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !shims().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(shims(), Vec::<String>::new(), "shims left running");
        let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|point| point.starts_with(&dir))
            .map(str::to_owned)
            .collect();
        assert_eq!(mounts, Vec::<String>::new(), "mounts left behind");
        let sockets: Vec<_> = fs::read_dir(self.containerd.dir().join("s"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(sockets.is_empty(), "shim sockets left behind: {sockets:?}");
        let cgroups = self.containerd.cgroup_parent().children();
        assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn named<'a>(spans: &'a [SpanSeen], service: &str, name: &str) -> Vec<&'a SpanSeen> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

/// berth-runc's top span (one per command) whose parent is `parent`.
fn runtime_child<'a>(spans: &'a [SpanSeen], parent: &SpanSeen) -> Option<&'a SpanSeen> {
    spans.iter().find(|s| {
        s.service == "berth-runc" && s.name == "berth-runc" && s.parent_span_id == parent.span_id
    })
}

#[test]
fn ctr_run_traces_each_task_method_with_the_runtime_below_it() {
    let lab = Lab::start();
    let out = peers::output(&mut lab.run(&["--rm"], "traced", &["true"]));
    assert_eq!(out.status, 0, "{out}\n{}", lab.containerd.log());

    // The shim exports its last spans when it shuts down, after Delete.
    let complete = |spans: &[SpanSeen]| {
        ["Create", "Start"].iter().all(|method| {
            let name = format!("containerd.task.v2.Task/{method}");
            named(spans, "berth-shim", &name)
                .iter()
                .any(|span| runtime_child(spans, span).is_some())
        }) && !named(spans, "berth-shim", "containerd.task.v2.Task/Delete").is_empty()
    };
    let exports = lab.receiver.collect_until(complete);
    let spans: Vec<SpanSeen> = exports.iter().flat_map(|e| e.spans()).collect();

    for method in ["Create", "Start"] {
        let name = format!("containerd.task.v2.Task/{method}");
        let shim = named(&spans, "berth-shim", &name);
        assert_eq!(shim.len(), 1, "one {name} span: {shim:#?}");
        let shim = shim[0];
        // containerd 1.6 sends no traceparent: the method's span starts a trace.
        assert!(shim.parent_span_id.is_empty(), "{shim:?}");
        let runtime = runtime_child(&spans, shim).expect("checked by collect_until");
        assert_eq!(
            runtime.trace_id, shim.trace_id,
            "berth-runc joins the shim's trace through TRACEPARENT"
        );
        // The runtime ran inside the method.
        assert!(
            runtime.start_unix_nano >= shim.start_unix_nano
                && runtime.end_unix_nano <= shim.end_unix_nano,
            "{runtime:?} outside {shim:?}"
        );
    }
    // The verb berth-runc ran for each method is a child of its top span.
    let verb_under = |method: &str, verb: &str| {
        let name = format!("containerd.task.v2.Task/{method}");
        let shim = named(&spans, "berth-shim", &name)[0];
        let top = runtime_child(&spans, shim).unwrap();
        assert!(
            spans
                .iter()
                .any(|s| s.name == verb && s.parent_span_id == top.span_id),
            "no berth-runc {verb:?} span below {name}: {spans:#?}"
        );
    };
    verb_under("Create", "create");
    verb_under("Start", "start");
    lab.assert_clean();
}

#[test]
fn a_traceparent_in_the_ttrpc_metadata_parents_the_methods_span() {
    let lab = Lab::start();
    let id = "sleeper";
    run_ok(&mut lab.run(&["--detach"], id, &["sleep", "1000"]));

    let client = ttrpc::Client::connect(&lab.shim_address(id)).expect("connect to the shim");
    let task = TaskClient::new(client);
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let context = ttrpc::context::with_metadata(HashMap::from([(
        "traceparent".to_owned(),
        vec![traceparent],
    )]));
    let request = api::PidsRequest {
        id: id.into(),
        ..Default::default()
    };
    let pids = task
        .pids(context, &request)
        .expect("Pids through the shim's socket");
    assert_eq!(pids.processes.len(), 1, "{pids:?}");

    let in_our_trace = |s: &&SpanSeen| hex(&s.trace_id) == TRACE_ID;
    let exports = lab.receiver.collect_until(|spans| {
        named(spans, "berth-shim", "containerd.task.v2.Task/Pids")
            .into_iter()
            .filter(in_our_trace)
            .any(|shim| runtime_child(spans, shim).is_some())
    });
    let spans: Vec<SpanSeen> = exports.iter().flat_map(|e| e.spans()).collect();
    let shim: Vec<&SpanSeen> = named(&spans, "berth-shim", "containerd.task.v2.Task/Pids")
        .into_iter()
        .filter(in_our_trace)
        .collect();
    assert_eq!(shim.len(), 1, "{shim:#?}");
    assert_eq!(
        hex(&shim[0].parent_span_id),
        CALLER_SPAN,
        "the shim's Pids span hangs under the caller's span"
    );
    // And `berth-runc ps` below it, in the same trace: one trace from caller to runtime.
    let runtime = runtime_child(&spans, shim[0]).unwrap();
    assert_eq!(hex(&runtime.trace_id), TRACE_ID);
    // Spans of other calls (containerd's own, with no traceparent) are not in it.
    assert!(
        named(&spans, "berth-shim", "containerd.task.v2.Task/Create")
            .iter()
            .all(|s| hex(&s.trace_id) != TRACE_ID),
        "{spans:#?}"
    );

    drop(task);
    let ctr = || lab.containerd.ctr(NAMESPACE);
    run_ok(ctr().args(["task", "delete", "--force", id]));
    run_ok(ctr().args(["container", "delete", id]));
    lab.assert_clean();
}
