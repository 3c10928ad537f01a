//! Bounds a server puts on the connections it accepts, so that one peer cannot take the
//! descriptors, the memory or the reader time the others need.
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Bounds on a listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections held at once. A new connection past this closes the oldest idle one of the
    /// address holding the most connections (knfsd's `svc_check_conn_limits` closes the oldest
    /// temporary socket; refusing the newcomer instead would let a flooder lock everyone out).
    pub max_connections: usize,
    /// Connections held at once from one source address; a new one past this closes that
    /// address's oldest idle connection, so a flooder only ever displaces itself.
    pub max_per_address: usize,
    /// A connection with nothing read, written or in flight for this long, and not kept by the
    /// server for anything else (a session's back channel), is closed (knfsd: 6 minutes).
    pub idle_timeout: Duration,
    /// A record must arrive whole within this from its first byte; a peer that trickles one
    /// (or waits that long for record memory) is disconnected.
    pub record_timeout: Duration,
    /// Bytes of incomplete records larger than `SMALL_RECORD` held at once, over all
    /// connections; a record that cannot get memory waits for it (within `record_timeout`).
    pub record_memory: usize,
}

/// Records up to this size need no share of `record_memory`: every call but a WRITE fits, so a
/// flood of partial WRITEs never delays a GETATTR. Their memory is bounded by the connection
/// cap instead (4096 × 16 KiB = 64 MiB at the defaults).
pub const SMALL_RECORD: usize = 16 << 10;

/// Descriptors kept for everything that is not a client connection: files, the WAL, data
/// server connections, the listeners.
pub const RESERVED_FDS: u64 = 256;

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            // ~25 KiB of memory each when idle (read buffer, tasks, socket): 100 MiB at the cap.
            max_connections: 4096,
            // A Linux client opens 1 per server, up to 16 with nconnect; 64 leaves room for
            // several clients behind one NAT address (every qemu user-mode guest is 127.0.0.1).
            max_per_address: 64,
            idle_timeout: Duration::from_secs(360),
            // A 1 MiB WRITE takes 8 s at 1 Mbit/s; 30 s is generous and still drops a trickler.
            record_timeout: Duration::from_secs(30),
            // 128 WRITEs arriving at once; each arrives in ~1 ms on a LAN, so an honest load
            // rarely holds more than a few.
            record_memory: 128 << 20,
        }
    }
}

impl ServeLimits {
    /// Lowers `max_connections` so that `listeners` listeners at their caps still leave
    /// `RESERVED_FDS` descriptors under the open-file limit `nofile`: past it, accept() fails
    /// and nobody, newcomer or not, gets in.
    pub fn fit_to_fd_limit(mut self, nofile: u64, listeners: usize) -> Self {
        let room = nofile.saturating_sub(RESERVED_FDS) / listeners.max(1) as u64;
        let room = usize::try_from(room).unwrap_or(usize::MAX).max(16);
        self.max_connections = self.max_connections.min(room);
        self.max_per_address = self.max_per_address.min(self.max_connections);
        self
    }
}

/// The byte budget for incomplete records, shared by a listener's connections.
#[derive(Debug)]
pub struct RecordBudget {
    total: usize,
    sem: Semaphore,
}

impl RecordBudget {
    pub fn new(total: usize) -> Arc<Self> {
        let total = total.clamp(SMALL_RECORD, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            total,
            sem: Semaphore::new(total),
        })
    }

    /// Waits for `bytes` of budget (at most the whole budget, so a large record can always
    /// proceed once the others are gone).
    pub(crate) async fn take(&self, bytes: usize) -> Option<SemaphorePermit<'_>> {
        let n = u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX);
        self.sem.acquire_many(n).await.ok()
    }

    /// Bytes currently held by incomplete records.
    pub fn in_use(&self) -> usize {
        self.total - self.sem.available_permits()
    }
}
