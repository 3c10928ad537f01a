//! What the hooks cost: the exact sequences of metric updates the servers make per request,
//! timed in a loop. `hostbench` multiplies these by how many of each a workload caused (read
//! off the server's own counters) and divides by the server CPU the same workload took, which
//! gives the metrics' share of server CPU without comparing two noisy runs.
//!
//! Each sequence below calls the same functions as its hook, in the same order, on tables of
//! the same types and sizes (private statics, so timing does not move the process's own
//! counters). Keep them in step with the call sites named in each doc comment.
use crate::top::Top;
use crate::{start, Counter, Histogram, OpTable};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

static V4_OPS: OpTable<80> = OpTable::new();
static V4_BYTES: Counter = Counter::new();
static V4_TOP: Top = Top::new();
static COMPOUNDS: Counter = Counter::new();
static RPC_IN: Counter = Counter::new();
static RPC_OUT: Counter = Counter::new();
static DS_OPS: OpTable<22> = OpTable::new();
static FSYNC: Histogram = Histogram::new();

/// Files the `top` table sees: more than its cap, so the bench pays for the table's pruning
/// as a create-heavy workload does.
const FILES: u64 = 4 * crate::top::CAP as u64;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One NFSv4 operation of a COMPOUND (`mds::nfs::metered::op_done`, after the op): the latency
/// histogram under its number (its clock read ends this op and starts the next), the bytes
/// counter (charged every time, as if every op were a READ or WRITE), and `top`.
#[inline(never)]
pub fn v4_op(i: u64) {
    let Some(now) = V4_OPS.done_at(black_box(25), black_box(Some(START.with(|s| *s))), 0) else {
        return;
    };
    V4_BYTES.add(black_box(4096));
    V4_TOP.note_at(now, black_box(7), 1 + i % FILES, 4096, PEER);
}

thread_local! {
    static START: Instant = Instant::now();
}

/// One COMPOUND on the NFS port, besides its ops: `mds::nfs::server` counts the RPC's bytes in and
/// out, `mds::nfs::compound::run` the COMPOUND and takes the first op's start.
#[inline(never)]
pub fn compound(i: u64) {
    RPC_IN.add(black_box(200 + (i & 7)));
    COMPOUNDS.inc();
    black_box(start());
    RPC_OUT.add(black_box(300 + (i & 7)));
}

/// One NFSv3 procedure on a data server (`ds::server::nfs3`).
#[inline(never)]
pub fn ds_op(i: u64) {
    let t0 = start();
    black_box(i);
    DS_OPS.done(black_box(6), t0, black_box(0));
}

/// One fdatasync of the metadata log (`mds::namespace::wal`), the timing around it.
#[inline(never)]
pub fn log_fsync(i: u64) {
    let t0 = start();
    black_box(i);
    FSYNC.observe_since(t0);
}

/// Nanoseconds per call of each sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HookCosts {
    pub v4_op_ns: f64,
    pub compound_ns: f64,
    pub ds_op_ns: f64,
    pub log_fsync_ns: f64,
}

/// CPU time of the calling thread in nanoseconds (`/proc/thread-self/schedstat`: time on
/// CPU, in ns), None where the kernel does not say.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds per call of `f`: the fastest of `reps` timed loops of `iters` calls, each on
/// `threads` threads at once (the servers run their hooks on several worker threads, which
/// then share the counters' cache lines). A thread's time is its CPU time (wall time where
/// that is unknown): on a shared host, time spent preempted is not the hooks' cost, and CPU
/// time is what it is compared with (the server's utime + stime). Within a loop, contention
/// between our own threads counts.
pub fn time(f: fn(u64), threads: usize, iters: u64, reps: u32) -> f64 {
    let threads = threads.max(1);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let per_thread: Vec<f64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads as u64)
                .map(|t| {
                    s.spawn(move || {
                        let (c0, t0) = (thread_cpu_ns(), Instant::now());
                        for i in 0..iters {
                            f(i.wrapping_mul(threads as u64).wrapping_add(t));
                        }
                        let ns = match (c0, thread_cpu_ns()) {
                            (Some(a), Some(b)) if b > a => (b - a) as f64,
                            _ => t0.elapsed().as_nanos() as f64,
                        };
                        ns / iters.max(1) as f64
                    })
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        // The slowest thread of a loop: what the contended updates cost at worst.
        let loop_ns = per_thread.iter().copied().fold(0.0, f64::max);
        best = best.min(loop_ns);
    }
    best
}

/// Times every sequence with metrics on (restores the previous setting after).
pub fn measure(threads: usize, iters: u64, reps: u32) -> HookCosts {
    let was = crate::enabled();
    crate::set_enabled(true);
    let c = HookCosts {
        v4_op_ns: time(v4_op, threads, iters, reps),
        compound_ns: time(compound, threads, iters, reps),
        ds_op_ns: time(ds_op, threads, iters, reps),
        log_fsync_ns: time(log_fsync, threads, iters, reps),
    };
    crate::set_enabled(was);
    c
}

/// How many hook sequences a workload caused (from the server's counters) and what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HookCounts {
    pub v4_ops: f64,
    pub compounds: f64,
    pub ds_ops: f64,
    pub log_fsyncs: f64,
}

impl HookCounts {
    /// Nanoseconds the hooks took for these counts.
    pub fn ns(&self, c: &HookCosts) -> f64 {
        self.v4_ops * c.v4_op_ns
            + self.compounds * c.compound_ns
            + self.ds_ops * c.ds_op_ns
            + self.log_fsyncs * c.log_fsync_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hooks update process-wide statics: the test that counts them must not run beside
    /// the one that times them (a CI run saw 112 where 1 was due).
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn sequences_update_what_their_hooks_update() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        crate::set_enabled(true);
        let before = (
            V4_OPS.total(),
            COMPOUNDS.get(),
            DS_OPS.total(),
            FSYNC.count(),
        );
        v4_op(1);
        compound(1);
        ds_op(1);
        log_fsync(1);
        assert_eq!(V4_OPS.total(), before.0 + 1);
        assert_eq!(COMPOUNDS.get(), before.1 + 1);
        assert_eq!(DS_OPS.total(), before.2 + 1);
        assert_eq!(FSYNC.count(), before.3 + 1);
        assert!(V4_TOP.view(1).files.len() == 1);
    }

    #[test]
    fn costs_are_positive_and_counts_weight_them() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let c = measure(2, 2_000, 2);
        for ns in [c.v4_op_ns, c.compound_ns, c.ds_op_ns, c.log_fsync_ns] {
            assert!(ns > 0.0 && ns.is_finite(), "{c:?}");
        }
        let n = HookCounts {
            v4_ops: 2.0,
            compounds: 1.0,
            ds_ops: 0.0,
            log_fsyncs: 0.0,
        };
        assert_eq!(n.ns(&c), 2.0 * c.v4_op_ns + c.compound_ns);
    }
}
