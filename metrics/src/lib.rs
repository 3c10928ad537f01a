//! The servers' counters and latency histograms: lock-free statics that the request paths bump
//! with one call (`mds::compound`, `ds::server::nfs3`, the namespace writer), and the
//! Prometheus text format they are rendered in by the admin listener in `cfs`.
//!
//! Statics, not values threaded through the servers: one process is one scrape target, and a
//! hook at a dispatch point then costs one line there. Label sets are fixed arrays (operation
//! numbers), so cardinality is bounded by construction; the busiest clients and files, which
//! are not bounded, live in `top` (a bounded table, JSON only, never labels).
//!
//! Everything can be switched off at run time (`set_enabled(false)`, `CFS_METRICS=off` in
//! `cfs`), which is how the benchmark measures what the metrics cost.
#![forbid(unsafe_code)]

pub mod expo;
pub mod persist;
pub mod top;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns every hook into a no-op (or back on).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The start of a timed operation, `None` while metrics are off (no clock read).
#[inline]
pub fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    #[inline]
    pub fn add(&self, n: u64) {
        if enabled() {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds a persisted total (at start, see `persist`), whatever `enabled` says.
    pub fn restore(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Upper bounds of the latency buckets, in nanoseconds: 25 µs to 10 s, about ×2–2.5 apart, so
/// a page-cache READ (tens of µs), an fdatasync on SSD (~1 ms) and one on a disk or a slow
/// data server (tens of ms) fall in different buckets. The last bucket (+Inf) is implicit.
pub const BOUNDS_NS: [u64; 19] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// A latency histogram: a count per bucket (not cumulative; `expo` sums them) and the sum.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn observe(&self, d: Duration) {
        if !enabled() {
            return;
        }
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observes the time since `start` (nothing if it is `None`: metrics were off).
    #[inline]
    pub fn observe_since(&self, start: Option<Instant>) {
        if let Some(t) = start {
            self.observe(t.elapsed());
        }
    }

    /// Per-bucket counts (not cumulative) and the sum in nanoseconds.
    pub fn snapshot(&self) -> ([u64; BUCKETS], u64) {
        let mut b = [0u64; BUCKETS];
        for (o, a) in b.iter_mut().zip(&self.buckets) {
            *o = a.load(Ordering::Relaxed);
        }
        (b, self.sum_ns.load(Ordering::Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Adds persisted counts (at start, see `persist`).
    pub fn restore(&self, buckets: &[u64; BUCKETS], sum_ns: u64) {
        for (a, n) in self.buckets.iter().zip(buckets) {
            a.fetch_add(*n, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(sum_ns, Ordering::Relaxed);
    }
}

/// A latency histogram and an error count per operation number (`N` bounds the label set).
#[derive(Debug)]
pub struct OpTable<const N: usize> {
    ops: [Histogram; N],
    errors: [Counter; N],
}

impl<const N: usize> Default for OpTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> OpTable<N> {
    pub const fn new() -> Self {
        OpTable {
            ops: [const { Histogram::new() }; N],
            errors: [const { Counter::new() }; N],
        }
    }

    /// Records one operation `op` that began at `start` and ended with `status` (0 = OK).
    /// Numbers past the table count under the last slot ("other").
    #[inline]
    pub fn done(&self, op: u32, start: Option<Instant>, status: u32) {
        let Some(t) = start else { return };
        let i = (op as usize).min(N - 1);
        self.ops[i].observe(t.elapsed());
        if status != 0 {
            self.errors[i].inc();
        }
    }

    pub fn histogram(&self, op: usize) -> &Histogram {
        &self.ops[op.min(N - 1)]
    }

    pub fn errors(&self, op: usize) -> &Counter {
        &self.errors[op.min(N - 1)]
    }

    pub const fn len(&self) -> usize {
        N
    }

    pub const fn is_empty(&self) -> bool {
        N == 0
    }

    /// Operations counted so far, all numbers together.
    pub fn total(&self) -> u64 {
        self.ops.iter().map(Histogram::count).sum()
    }
}

/// The metadata server's metrics.
pub mod mds {
    use super::*;

    /// NFSv4 operations by number (the highest, OP_REMOVEXATTR, is 75; 79 is "other").
    pub static OPS: OpTable<80> = OpTable::new();
    /// COMPOUND procedures.
    pub static COMPOUNDS: Counter = Counter::new();
    /// RPC record bytes on the NFS port, both programs, headers included.
    pub static RPC_RECEIVED_BYTES: Counter = Counter::new();
    pub static RPC_SENT_BYTES: Counter = Counter::new();
    /// File bytes READ (and READ_PLUS) returned and WRITE carried, through the MDS itself.
    pub static READ_BYTES: Counter = Counter::new();
    pub static WRITE_BYTES: Counter = Counter::new();
    /// fdatasync of the metadata log (one per durable batch).
    pub static LOG_FSYNC: Histogram = Histogram::new();
    /// Writing one checkpoint into redb.
    pub static CHECKPOINT: Histogram = Histogram::new();
    /// The busiest clients and files (bounded; see `top`).
    pub static TOP: top::Top = top::Top::new();
}

/// The data server's metrics.
pub mod ds {
    use super::*;

    /// NFSv3 procedures by number (COMMIT is 21).
    pub static OPS: OpTable<22> = OpTable::new();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(25));
        h.observe(Duration::from_micros(26));
        h.observe(Duration::from_secs(100));
        let (b, sum) = h.snapshot();
        assert_eq!(b[0], 2, "≤ 25 µs");
        assert_eq!(b[1], 1, "≤ 50 µs");
        assert_eq!(b[BUCKETS - 1], 1, "+Inf");
        assert_eq!(sum, 10_000 + 25_000 + 26_000 + 100_000_000_000);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn op_table_clamps_unknown_numbers_and_counts_errors() {
        let t: OpTable<4> = OpTable::new();
        t.done(1, Some(Instant::now()), 0);
        t.done(1, Some(Instant::now()), 2);
        t.done(99, Some(Instant::now()), 0);
        t.done(1, None, 0);
        assert_eq!(t.histogram(1).count(), 2);
        assert_eq!(t.errors(1).get(), 1);
        assert_eq!(t.histogram(3).count(), 1);
        assert_eq!(t.total(), 3);
    }
}
