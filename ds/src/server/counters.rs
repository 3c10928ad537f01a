//! I/O counters, reported to the MDS in every heartbeat.

use std::sync::atomic::{AtomicU64, Ordering};

use proto::cluster::DsCounters;

#[derive(Default)]
pub(crate) struct Counters {
    read_ops: AtomicU64,
    read_bytes: AtomicU64,
    write_ops: AtomicU64,
    write_bytes: AtomicU64,
    commit_ops: AtomicU64,
    refused_ops: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self, bytes: u64) {
        self.read_ops.fetch_add(1, Ordering::Relaxed);
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn write(&self, bytes: u64) {
        self.write_ops.fetch_add(1, Ordering::Relaxed);
        self.write_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn commit(&self) {
        self.commit_ops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.refused_ops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DsCounters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DsCounters {
            read_ops: g(&self.read_ops),
            read_bytes: g(&self.read_bytes),
            write_ops: g(&self.write_ops),
            write_bytes: g(&self.write_bytes),
            commit_ops: g(&self.commit_ops),
            refused_ops: g(&self.refused_ops),
        }
    }
}

impl Counters {
    /// Adds totals saved at the previous clean shutdown (`cfs` carries them across restarts).
    pub(crate) fn restore(&self, base: &DsCounters) {
        let add = |a: &AtomicU64, n: u64| a.fetch_add(n, Ordering::Relaxed);
        add(&self.read_ops, base.read_ops);
        add(&self.read_bytes, base.read_bytes);
        add(&self.write_ops, base.write_ops);
        add(&self.write_bytes, base.write_bytes);
        add(&self.commit_ops, base.commit_ops);
        add(&self.refused_ops, base.refused_ops);
    }
}
