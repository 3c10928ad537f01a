//! Nanoseconds per metrics hook sequence (see `metrics::cost`), on one thread and on as many
//! threads as the host has CPUs; prints one JSON object. `conformance hostbench` runs it in the
//! same run as the servers it measures and uses the larger of the two figures.
//!
//! cargo run --release -p metrics --example hook_cost [-- --iters N --reps R]
fn main() {
    let mut iters: u64 = 200_000;
    let mut reps: u32 = 7;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--iters", Some(v)) => iters = v.max(1),
            ("--reps", Some(v)) => reps = u32::try_from(v).unwrap_or(u32::MAX).max(1),
            _ => {
                eprintln!("usage: hook_cost [--iters N] [--reps R]");
                std::process::exit(2);
            }
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = metrics::cost::measure(1, iters, reps);
    let all = metrics::cost::measure(cpus, iters, reps);
    let j = |c: &metrics::cost::HookCosts| {
        format!(
            "{{\"v4_op_ns\":{:.1},\"compound_ns\":{:.1},\"ds_op_ns\":{:.1},\"log_fsync_ns\":{:.1}}}",
            c.v4_op_ns, c.compound_ns, c.ds_op_ns, c.log_fsync_ns
        )
    };
    println!(
        "{{\"bench\":\"hook_cost\",\"iters\":{iters},\"reps\":{reps},\"cpus\":{cpus},\"one_thread\":{},\"all_threads\":{}}}",
        j(&one),
        j(&all)
    );
}
