//! Hand-made traces for the unit and snapshot tests: a container start as the whole
//! engine will trace it, one process per berth binary, with fixed ids and times so that
//! snapshots never change by themselves.

use crate::model::{Attribute, Event, Process, Span, SpanKind, Status, StatusCode, Value};
use crate::otlp::Received;

pub const TRACE_A: &str = "0af7651916cd43dd8448eb211c80319c";
pub const TRACE_B: &str = "1bf7651916cd43dd8448eb211c80319c";

/// The trace starts here (Unix nanoseconds): 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000_000_000;

fn process(service: &str) -> Process {
    Process {
        attributes: vec![Attribute {
            key: "service.name".into(),
            value: Value::String(service.into()),
        }],
    }
}

struct Builder {
    trace_id: &'static str,
    spans: Vec<Received>,
}

impl Builder {
    /// A span from `start_us` to `end_us` (microseconds after T0).
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &str,
        id: u8,
        parent: Option<u8>,
        name: &str,
        start_us: u64,
        end_us: u64,
        attributes: &[(&str, &str)],
    ) -> &mut Span {
        self.spans.push(Received {
            trace_id: self.trace_id.into(),
            process: process(service),
            span: Span {
                span_id: format!("{id:016x}"),
                parent_span_id: parent.map(|p| format!("{p:016x}")),
                name: name.into(),
                kind: SpanKind::Internal,
                start_unix_nano: T0 + start_us * 1000,
                end_unix_nano: T0 + end_us * 1000,
                process: 0,
                scope: service.into(),
                attributes: attributes
                    .iter()
                    .map(|(k, v)| Attribute {
                        key: (*k).into(),
                        value: Value::String((*v).into()),
                    })
                    .collect(),
                events: Vec::new(),
                status: Status {
                    code: StatusCode::Unset,
                    message: String::new(),
                },
                flags: 0,
            },
        });
        &mut self.spans.last_mut().unwrap().span
    }
}

/// `berth run` across all six lanes. `slow` stretches the runtime's `clone` and adds an
/// image pull in the daemon, as a second run to compare against.
fn build(trace_id: &'static str, shift_us: u64, slow: bool) -> Vec<Received> {
    let mut b = Builder {
        trace_id,
        spans: Vec::new(),
    };
    let s = shift_us;
    let extra = if slow { 300 } else { 0 };
    b.span("berth", 1, None, "run", s, s + 2000 + extra, &[]);
    b.span(
        "berthd",
        2,
        Some(1),
        "POST /containers/create",
        s + 50,
        s + 400,
        &[("http.request.method", "POST")],
    );
    if slow {
        b.span("berthd", 12, Some(2), "pull busybox", s + 60, s + 390, &[]);
    }
    b.span(
        "berthd",
        3,
        Some(1),
        "POST /containers/{id}/start",
        s + 450,
        s + 1900 + extra,
        &[("http.request.method", "POST")],
    );
    b.span(
        "berth-containerd",
        4,
        Some(3),
        "containerd.services.tasks.v1.Tasks/Create",
        s + 500,
        s + 1800 + extra,
        &[("rpc.system", "grpc")],
    );
    b.span(
        "berth-shim",
        5,
        Some(4),
        "containerd.task.v2.Task/Create",
        s + 600,
        s + 1700 + extra,
        &[("rpc.system", "ttrpc")],
    );
    let runc = b.span(
        "berth-runc",
        6,
        Some(5),
        "create",
        s + 700,
        s + 1600 + extra,
        &[],
    );
    runc.events.push(Event {
        name: "init ready".into(),
        time_unix_nano: T0 + (s + 1500 + extra) * 1000,
        attributes: Vec::new(),
    });
    b.span("berth-runc", 7, Some(6), "cgroups", s + 720, s + 800, &[]);
    b.span(
        "berth-runc",
        8,
        Some(6),
        "clone",
        s + 800,
        s + 1000 + extra,
        &[],
    );
    let init = [("process", "container init")];
    b.span(
        "berth-runc",
        9,
        Some(6),
        "mounts",
        s + 1000 + extra,
        s + 1200 + extra,
        &init,
    );
    b.span(
        "berth-runc",
        10,
        Some(6),
        "pivot_root",
        s + 1200 + extra,
        s + 1400 + extra,
        &init,
    );
    let failed = b.span(
        "berth-runc",
        11,
        Some(5),
        "delete",
        s + 1650 + extra,
        s + 1690 + extra,
        &[],
    );
    failed.status = Status {
        code: StatusCode::Error,
        message: "no such container".into(),
    };
    b.spans
}

/// A container start: 11 spans in 6 lanes.
pub fn container_start() -> Vec<Received> {
    build(TRACE_A, 0, false)
}

/// The same start an hour later, slower, with an image pull: 12 spans.
pub fn slower_container_start() -> Vec<Received> {
    build(TRACE_B, 3_600_000_000, true)
}
