//! Benchmarks for the test image: building it end to end (tar, gzip, digests),
//! writing both on-disk forms, and unpacking it with every digest verified.

use std::hint::black_box;
use std::time::{Duration, Instant};

use berth_oci::layout::Layout;
use berth_oci::unpack;
use berth_tests::images;

/// Runs `f` `runs` times and prints the minimum, median and maximum.
fn measure(name: &str, runs: usize, mut f: impl FnMut()) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{name:<40} min {:>9.2?}  median {:>9.2?}  max {:>9.2?}  ({runs} runs)",
        times[0],
        times[runs / 2],
        times[runs - 1]
    );
}

fn main() {
    measure("build busybox image (in memory)", 10, || {
        black_box(images::busybox_image().unwrap());
    });
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::open(&images::busybox().layout).unwrap();
    let image = layout.resolve(Some("latest")).unwrap();
    let mut n = 0;
    measure("unpack busybox into a rootfs (verified)", 10, || {
        n += 1;
        let rootfs = dir.path().join(format!("rootfs-{n}"));
        std::fs::create_dir(&rootfs).unwrap();
        black_box(unpack::unpack_image(&layout, &image, &rootfs).unwrap());
    });
    measure("write busybox layout + docker tar", 10, || {
        n += 1;
        black_box(images::build_busybox(&dir.path().join(n.to_string())).unwrap());
    });
}
