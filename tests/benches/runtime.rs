//! berth-runc against runc: `run` of `true` on the same bundle, alternating, so both
//! see the same machine. Prints each one's median and their ratio. The target is
//! for berth-runc to take at most half of runc's time; it is printed, never asserted.

use std::time::{Duration, Instant};

use berth_tests::runtime::{Bundle, Runtime};

const RUNS: usize = 50;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let bundle = Bundle::new(|spec| {
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec!["true".into()]));
        spec.set_process(Some(process));
    });
    let runtimes = [Runtime::berth(), Runtime::runc()];
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        for (runtime, times) in runtimes.iter().zip(&mut times) {
            let start = Instant::now();
            let outcome = runtime.run(&bundle);
            times.push(start.elapsed());
            assert_eq!(outcome.status, 0, "{} failed:\n{outcome}", runtime.name);
        }
    }
    let [berth, runc] = times.map(median);
    println!("run of `true`, median of {RUNS}:  berth-runc {berth:>9.2?}   runc {runc:>9.2?}   ratio {:.2} (target <= 0.50)", berth.as_secs_f64() / runc.as_secs_f64());
}
