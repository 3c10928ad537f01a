//! Read leases: how long after a leader's heartbeat round it may answer reads without another
//! (`fresh` explains why that is safe), and the counts of how leaders' reads were answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::Vote;

use meta_core::ShardId;

/// How long after a check began its leader answers reads without another round: a third of
/// the voters' 3 s (`election_timeout_max`, openraft's leader lease), room for clocks that run
/// at different rates and a node paused mid-read.
pub const LEASE: Duration = Duration::from_millis(1000);

/// The read leases of the shards this node led at its last check of each, and counts of how
/// leaders' reads were answered (read by the tests; not exported as metrics).
#[derive(Default)]
pub struct Leases {
    by_shard: Mutex<HashMap<u16, Lease>>,
    /// Heartbeat rounds this node's checks took as leader, and reads its leases answered.
    rounds: AtomicU64,
    leased: AtomicU64,
}

#[derive(Clone, Debug)]
pub(crate) struct Lease {
    /// The vote this node led in when the check began.
    pub(crate) vote: Vote<u64>,
    pub(crate) until: Instant,
}

impl Leases {
    /// The lease of `shard` if it has not run out.
    pub(crate) fn current(&self, shard: ShardId) -> Option<Lease> {
        let all = self.by_shard.lock().unwrap_or_else(|p| p.into_inner());
        all.get(&shard.0)
            .filter(|l| Instant::now() < l.until)
            .cloned()
    }

    /// A check that began at `began` while this node led in `vote` succeeded.
    pub(crate) fn grant(&self, shard: ShardId, vote: Vote<u64>, began: Instant) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let mut all = self.by_shard.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(
            shard.0,
            Lease {
                vote,
                until: began + LEASE,
            },
        );
    }

    /// Whether `shard`'s lease has not run out (it may still not be used: `leased`).
    pub fn live(&self, shard: ShardId) -> bool {
        self.current(shard).is_some()
    }

    /// A read answered under the lease.
    pub(crate) fn answered(&self) {
        self.leased.fetch_add(1, Ordering::Relaxed);
    }

    /// Heartbeat rounds taken as leader, and reads answered under a lease.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.rounds.load(Ordering::Relaxed),
            self.leased.load(Ordering::Relaxed),
        )
    }
}
