//! The servers' counters and latency histograms: lock-free statics that the request paths bump
//! with one call (`mds::nfs::compound`, `ds::server::nfs3`, the namespace writer), and the
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

pub mod cost;
pub mod expo;
pub mod persist;
pub mod top;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Copies of every counter and histogram, each on its own cache line(s); a thread updates
/// the copy of its stripe and readers sum them. With one shared copy, the server's worker
/// threads took turns owning the line: an NFSv3 op's hook cost 70 ns on one thread and 200 ns
/// with two threads updating the same histogram (`metrics::cost`, 2-CPU VM).
const STRIPES: usize = 4;

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's stripe (threads are dealt stripes in turn as they first update).
#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v < STRIPES {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Line(AtomicU64);

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
pub struct Counter([Line; STRIPES]);

impl Counter {
    pub const fn new() -> Self {
        Counter([const { Line(AtomicU64::new(0)) }; STRIPES])
    }

    #[inline]
    pub fn add(&self, n: u64) {
        if enabled() {
            self.0[stripe()].0.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    pub fn get(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |a, l| a.wrapping_add(l.0.load(Ordering::Relaxed)))
    }

    /// Adds a persisted total (at start, see `persist`), whatever `enabled` says.
    pub fn restore(&self, n: u64) {
        self.0[0].0.fetch_add(n, Ordering::Relaxed);
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

/// One stripe of a histogram.
#[derive(Debug)]
#[repr(align(64))]
struct HistStripe {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// A latency histogram: a count per bucket (not cumulative; `expo` sums them) and the sum.
#[derive(Debug)]
pub struct Histogram([HistStripe; STRIPES]);

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram(
            [const {
                HistStripe {
                    buckets: [const { AtomicU64::new(0) }; BUCKETS],
                    sum_ns: AtomicU64::new(0),
                }
            }; STRIPES],
        )
    }

    #[inline]
    pub fn observe(&self, d: Duration) {
        if !enabled() {
            return;
        }
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        let s = &self.0[stripe()];
        s.buckets[i].fetch_add(1, Ordering::Relaxed);
        s.sum_ns.fetch_add(ns, Ordering::Relaxed);
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
        let mut sum = 0u64;
        for s in &self.0 {
            for (o, a) in b.iter_mut().zip(&s.buckets) {
                *o = o.wrapping_add(a.load(Ordering::Relaxed));
            }
            sum = sum.wrapping_add(s.sum_ns.load(Ordering::Relaxed));
        }
        (b, sum)
    }

    pub fn count(&self) -> u64 {
        self.snapshot()
            .0
            .iter()
            .fold(0u64, |a, n| a.wrapping_add(*n))
    }

    /// Adds persisted counts (at start, see `persist`).
    pub fn restore(&self, buckets: &[u64; BUCKETS], sum_ns: u64) {
        let s = &self.0[0];
        for (a, n) in s.buckets.iter().zip(buckets) {
            a.fetch_add(*n, Ordering::Relaxed);
        }
        s.sum_ns.fetch_add(sum_ns, Ordering::Relaxed);
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
        self.done_at(op, start, status);
    }

    /// `done`, returning the time it took as the operation's end (None if `start` is None),
    /// for callers that need the time again: the next op of a COMPOUND starts then, and `top`
    /// files it under that time. One clock read serves all three (a read is ~20–25 ns here).
    #[inline]
    pub fn done_at(&self, op: u32, start: Option<Instant>, status: u32) -> Option<Instant> {
        let t = start?;
        let now = Instant::now();
        let i = (op as usize).min(N - 1);
        self.ops[i].observe(now.saturating_duration_since(t));
        if status != 0 {
            self.errors[i].inc();
        }
        Some(now)
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

/// The object-store tier's metrics (an MDS node's uploader and deleter).
pub mod tier {
    use super::*;

    /// File bytes and objects this node put in the bucket.
    pub static UPLOADED_BYTES: Counter = Counter::new();
    pub static UPLOADED_OBJECTS: Counter = Counter::new();
    /// Uploads given up (the store failing after its retries, or the file changing).
    pub static UPLOADS_FAILED: Counter = Counter::new();
    /// Objects deleted from the bucket after their grace delay.
    pub static DELETED_OBJECTS: Counter = Counter::new();
    /// Requests that failed after their retries.
    pub static S3_ERRORS: Counter = Counter::new();
    /// When the current run of failed requests began (Unix seconds), 0 while the last one
    /// succeeded: the store is unreachable or refusing (an alert, never a client's error).
    static FAILING_SINCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// A request failed after its retries.
    pub fn request_failed() {
        S3_ERRORS.inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1));
        let _ = FAILING_SINCE.compare_exchange(
            0,
            now,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// A request succeeded: the store answers.
    pub fn request_ok() {
        FAILING_SINCE.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Seconds since requests began failing (every one since), or `None` while the store
    /// answers.
    pub fn failing_for() -> Option<u64> {
        let since = FAILING_SINCE.load(std::sync::atomic::Ordering::Relaxed);
        (since > 0).then(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs().saturating_sub(since))
        })
    }
    /// Whether this node is in write-through (flash past `write_through_percent`: a write is
    /// acknowledged once its file is in the bucket), and the fullest flash's percent used.
    static WRITE_THROUGH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    static FLASH_PERCENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    /// Places (data servers, or this node's store) being emptied: past the high watermark
    /// once, and not yet measured under the low one.
    static DRAINING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// The tier's view of flash (`mds::tier_set::FlashState`).
    pub fn set_flash(percent: u64, write_through: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        FLASH_PERCENT.store(percent, Relaxed);
        WRITE_THROUGH.store(write_through, Relaxed);
    }

    /// The evictor's places being emptied (`mds::tier_set::FlashState`).
    pub fn set_draining(places: u64) {
        DRAINING.store(places, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many places the evictor is emptying down to the low watermark.
    pub fn flash_draining() -> u64 {
        DRAINING.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether writes wait for the bucket now.
    pub fn write_through() -> bool {
        WRITE_THROUGH.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Percent of flash used where it is fullest, as last measured or written.
    pub fn flash_percent() -> u64 {
        FLASH_PERCENT.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Acknowledgements (COMMIT, stable WRITE) that waited for their file's upload, and those
    /// answered NFS4ERR_DELAY because it took too long, or NFS4ERR_NOSPC: flash full.
    pub static WRITE_THROUGH_ACKS: Counter = Counter::new();
    pub static WRITE_THROUGH_DELAYS: Counter = Counter::new();
    pub static FULL_REFUSALS: Counter = Counter::new();
    /// One PUT of an object, retries included.
    pub static PUT: Histogram = Histogram::new();
    /// From a file's last change to its upload being recorded.
    pub static UPLOAD_LAG: Histogram = Histogram::new();
    /// Files and file bytes this node evicted from flash, and the passes that evicted any.
    pub static EVICTED_FILES: Counter = Counter::new();
    pub static EVICTED_BYTES: Counter = Counter::new();
    pub static EVICTION_PASSES: Counter = Counter::new();
    /// Microseconds this node spent evicting files (claims, records and dropping the flash
    /// copies): with `EVICTED_BYTES`, the rate bytes leave flash once eviction runs, apart
    /// from the evictor's period.
    pub static EVICTING_MICROS: Counter = Counter::new();
    /// Reads served from the bucket and their bytes: ranges of evicted files, and segments
    /// of reduced files with no shard on flash (counted as stored, one per GET).
    pub static BUCKET_READS: Counter = Counter::new();
    pub static BUCKET_READ_BYTES: Counter = Counter::new();
    /// One ranged GET for a read of an evicted file.
    pub static GET: Histogram = Histogram::new();
    /// Evicted files brought back to flash, and their bytes.
    pub static RESTORED_FILES: Counter = Counter::new();
    pub static RESTORED_BYTES: Counter = Counter::new();
    /// Shard checkpoints this node put in the bucket, and their bytes (`mds::tiering::ship`).
    pub static METADATA_CHECKPOINTS: Counter = Counter::new();
    pub static METADATA_BYTES: Counter = Counter::new();
    /// Unix seconds since which the oldest shard this node leads has applied changes the
    /// bucket does not hold yet; 0 when it holds them all.
    static METADATA_BEHIND_SINCE: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0);
    /// The shard of `METADATA_BEHIND_SINCE` (meaningless while that is 0).
    static METADATA_BEHIND_SHARD: std::sync::atomic::AtomicU32 =
        std::sync::atomic::AtomicU32::new(0);
    /// Whether this node ships metadata at all (a `[tier]` is configured).
    static METADATA_SHIPPING: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// The shipper's measure: `since` the oldest unshipped change (Unix seconds) and its
    /// shard, `None` when the bucket holds everything this node leads.
    pub fn set_metadata_behind(since: Option<(u64, u16)>) {
        use std::sync::atomic::Ordering::Relaxed;
        METADATA_SHIPPING.store(true, Relaxed);
        METADATA_BEHIND_SHARD.store(since.map_or(0, |(_, s)| u32::from(s)), Relaxed);
        METADATA_BEHIND_SINCE.store(since.map_or(0, |(s, _)| s.max(1)), Relaxed);
    }

    /// The shard whose changes the bucket has lacked longest, of those this node leads
    /// (`None` when it lacks none, or no metadata is shipped).
    pub fn metadata_lag_shard() -> Option<u16> {
        use std::sync::atomic::Ordering::Relaxed;
        if METADATA_BEHIND_SINCE.load(Relaxed) == 0 {
            return None;
        }
        u16::try_from(METADATA_BEHIND_SHARD.load(Relaxed)).ok()
    }

    /// Seconds the bucket's metadata is behind this node's (the acknowledged metadata a lost
    /// site would lose), `None` where no metadata is shipped.
    pub fn metadata_lag() -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        if !METADATA_SHIPPING.load(Relaxed) {
            return None;
        }
        let since = METADATA_BEHIND_SINCE.load(Relaxed);
        Some(if since == 0 {
            0
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs().saturating_sub(since))
        })
    }
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

    #[test]
    fn stripes_sum_across_threads() {
        let c = Counter::new();
        let h = Histogram::new();
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.inc();
                        h.observe(Duration::from_micros(30));
                    }
                });
            }
        });
        c.restore(5);
        assert_eq!(c.get(), 6005);
        assert_eq!(h.count(), 6000);
        let (b, sum) = h.snapshot();
        assert_eq!(b[1], 6000);
        assert_eq!(sum, 6000 * 30_000);
    }
}
