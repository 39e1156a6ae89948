//! `init`, flush and drop from inside a tokio runtime, where the daemons call them.
//!
//! `#[tokio::main]` runs all of `main` (so `init`, and the `Guard`'s drop) on a runtime
//! thread, and `reqwest::blocking` panics when its client is built or used on one. Each
//! test re-runs this binary with an endpoint set, does there what a daemon's `main`
//! does, and checks that the process exits cleanly and its spans arrive.

mod common;

use std::time::Duration;

use common::Receiver;
use tracing::Instrument;

const BEFORE_FLUSH: &str = "async work";
const AFTER_FLUSH: &str = "after flush";

#[test]
fn init_works_inside_a_current_thread_runtime() {
    check("init_works_inside_a_current_thread_runtime", || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
}

#[test]
fn init_works_inside_a_multi_thread_runtime() {
    check("init_works_inside_a_multi_thread_runtime", || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    });
}

fn check(test: &str, runtime: fn() -> tokio::runtime::Runtime) {
    if common::role().is_some() {
        runtime().block_on(daemon_main(test));
        return;
    }
    let receiver = Receiver::start();
    let mut daemon = common::rerun_as(test, "daemon");
    daemon.env(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        format!("{}/v1/traces", receiver.endpoint),
    );
    common::assert_success(&common::run_bounded(daemon), "the daemon process");

    receiver.collect_until(|spans| {
        [BEFORE_FLUSH, AFTER_FLUSH].iter().all(|name| {
            spans
                .iter()
                .any(|span| span.name == *name && span.service == test)
        })
    });
}

/// What a `#[tokio::main] async fn main` does: everything, the guard's drop included,
/// happens on a runtime thread.
async fn daemon_main(service: &str) {
    // `init` wants a `'static` name, as a binary's literal is; a test's is leaked once.
    let service: &'static str = Box::leak(service.to_owned().into_boxed_str());
    let guard = berth_trace::init(service).unwrap();
    assert!(guard.is_exporting());

    tokio::time::sleep(Duration::from_millis(5))
        .instrument(tracing::info_span!(BEFORE_FLUSH))
        .await;
    guard.flush().expect("flush from inside the runtime");

    // A span ended after the flush is sent by the guard's drop, also on the runtime.
    tokio::time::sleep(Duration::from_millis(5))
        .instrument(tracing::info_span!(AFTER_FLUSH))
        .await;
    drop(guard);
}
