//! A node cut off from the majority of MDS nodes stops vouching for its clients' state.
//!
//! With several nodes, each keeps its own clients' byte-range locks, and the arbiter (the
//! leader of a file's shard, `crate::state::remote::locking`) counts a node it cannot ask as gone after a
//! period in which only reclaims are granted (`lock_grace`). A node cut off from the others
//! (a partition; the node alive, its clients still reaching it) would otherwise go on renewing
//! its clients' leases, SEQUENCE being answered locally, and they would go on believing they
//! hold locks the majority has since given to someone else.
//!
//! So every node with peers passes the read barrier of shard 0 (`raft::fresh`: the leader
//! confirms its leadership with a heartbeat round to a majority, a follower gets the read
//! index from the leader) every `CHECK_EVERY`. A node that has passed none that *began* in the
//! last `ISOLATED_AFTER` stops vouching: SEQUENCE (and CREATE_SESSION) renews no lease,
//! SEQUENCE answers NFS4ERR_DELAY, and every client holding locks whose lease ran out is
//! expired at once, whole (no courtesy: no conflicting request could reach this node to end
//! one). The client then finds BADSESSION, starts over and gets NO_GRACE for its reclaims, as
//! Linux does after a lease loss. A client holding only opens or layouts (each node's own)
//! stays a courtesy client and goes on once the cut heals.
//!
//! Why the bound is safe (a symmetric cut starting at T0). A barrier that passed rests on a
//! heartbeat round to a majority that began at most `fresh::LEASE` before the barrier did (a
//! leader's round, or its read lease, which a round bought; a follower's barrier asks its
//! leader, whose answer rests on the same), so the last one that passed began at
//! S < T0 + LEASE. This node renews no lease after S + ISOLATED_AFTER, so every lease it
//! granted has run out by S + ISOLATED_AFTER + lease, and the watch expires the client within
//! `SWEEP_LAG` of that. The arbiter's first miss of this node is at T1 >= T0 (a call failed,
//! so the cut had begun), and it grants a conflicting lock no earlier than T1 + `lock_grace`,
//! which is at least ISOLATED_AFTER + LEASE + lease + SWEEP_LAG + MARGIN: after this node's
//! clients lost theirs. One node (no peers): nothing is watched and this changes nothing.
//!
//! Not covered: an asymmetric cut in which this node still reaches a majority but the arbiter
//! cannot reach it (the arbiter's miss then says nothing about this node's barrier); nor a
//! node the arbiter missed once (a slow answer) while it stayed in the majority: when the
//! arbiter's wait on that file ends with no decision in it, `FileView::unsure` forgets the
//! missing node and its locks there are not gathered again until a new term.
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::NfsState;
use meta::namespace::ShardId;

/// How often the watch passes shard 0's read barrier.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// One barrier attempt gives up after this.
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than this without a barrier that passed (having begun within it), a node stops
/// vouching for its clients. Long enough that an election of shard 0's leader after its
/// node died (election timeout 1.5-3 s after the last heartbeat, `raft::config`, then the
/// vote and a barrier) does not trip it: at 5 s, a client connecting to a live node right
/// after shard 0's leader was killed got DELAY (`metadata_cluster.rs`
/// `a_dead_nodes_client_address_moves_and_its_clients_reclaim_there`). Were it tripped, that
/// costs DELAYs only, since clients are expired a whole lease later.
pub const ISOLATED_AFTER: Duration = Duration::from_secs(10);
/// After a round that failed: sooner than `CHECK_EVERY`, so a node vouches again soon after
/// shard 0 has a leader again.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// The longest from a lease running out, unvouched, to its client being expired: the watch
/// sweeps after each round, and a round takes at most `ROUND_TIMEOUT` plus the pause.
pub const SWEEP_LAG: Duration = Duration::from_secs(3);
/// Slack for scheduling delays between the two nodes' clocks' readings.
const MARGIN: Duration = Duration::from_secs(1);

/// Whether a node whose last passed barrier began `silent` ago still vouches for its clients.
pub fn vouches(silent: Duration) -> bool {
    silent <= ISOLATED_AFTER
}

/// How long the arbiter leaves a file to reclaims once a node cannot be asked: the configured
/// grace, but never less than a cut-off node takes to expire its clients (see the module
/// comment), so `nfs.grace` shorter than lease + 15 s is lengthened here rather than refused.
pub fn lock_grace(lease: Duration, grace: Duration) -> Duration {
    grace.max(lease + ISOLATED_AFTER + meta::raft::leases::LEASE + SWEEP_LAG + MARGIN)
}

/// This node's last confirmed contact with a majority, read by SEQUENCE and the sweep.
pub struct Quorum {
    base: Instant,
    /// Off with no peers: one node always vouches.
    watched: AtomicBool,
    /// When the last passed barrier began, in ms since `base`.
    last_ok_ms: AtomicU64,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum {
            base: Instant::now(),
            watched: AtomicBool::new(false),
            last_ok_ms: AtomicU64::new(0),
        }
    }
}

impl Quorum {
    /// Starts watching, counting the start as a contact (a node starting in a minority has no
    /// client state yet: its clients cannot create a session without shard 0).
    pub fn watch(&self) {
        self.confirmed(Instant::now());
        self.watched.store(true, Ordering::SeqCst);
    }

    /// A barrier that began at `began` passed.
    pub fn confirmed(&self, began: Instant) {
        // Rounded down: never later than the barrier began.
        let ms = u64::try_from(began.saturating_duration_since(self.base).as_millis())
            .unwrap_or(u64::MAX);
        self.last_ok_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// A watched node whose last contact is long past the bound (tests of what depends on it).
    #[cfg(test)]
    pub fn cut_off() -> Quorum {
        let base = Instant::now()
            .checked_sub(ISOLATED_AFTER * 3)
            .unwrap_or_else(Instant::now);
        Quorum {
            base,
            watched: AtomicBool::new(true),
            last_ok_ms: AtomicU64::new(0),
        }
    }

    /// Whether this node vouches for its clients now.
    pub fn vouching(&self) -> bool {
        if !self.watched.load(Ordering::SeqCst) {
            return true;
        }
        let last = self.base + Duration::from_millis(self.last_ok_ms.load(Ordering::SeqCst));
        vouches(Instant::now().saturating_duration_since(last))
    }
}

/// The watch (spawned with several nodes only): passes shard 0's barrier every
/// `CHECK_EVERY`; while this node does not vouch, expires its lapsed clients after each
/// round (here, not in the laundromat, which may be waiting on a namespace command that a
/// minority never commits) and wakes the laundromat for what they leave.
pub async fn watch(nfs: Arc<NfsState>) {
    nfs.state.quorum.watch();
    let mut was = true;
    loop {
        let began = Instant::now();
        let passed = matches!(
            tokio::time::timeout(ROUND_TIMEOUT, nfs.ns.barrier(ShardId(0))).await,
            Ok(Ok(()))
        );
        if passed {
            nfs.state.quorum.confirmed(began);
        }
        let now = nfs.state.quorum.vouching();
        if now != was {
            if now {
                tracing::info!("in touch with a majority of MDS nodes again: renewing leases");
            } else {
                tracing::warn!(
                    after = ?ISOLATED_AFTER,
                    "no majority of MDS nodes confirmed: renewing no lease, clients whose lease \
                     runs out lose their locks"
                );
            }
            was = now;
        }
        if !now && nfs.state.sweep(&HashSet::new()) > 0 {
            nfs.state.laundromat.notify_one();
        }
        tokio::time::sleep(if passed { CHECK_EVERY } else { RETRY_AFTER }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_vouches_until_it_has_been_silent_longer_than_the_bound() {
        assert!(vouches(Duration::ZERO));
        assert!(vouches(ISOLATED_AFTER));
        assert!(!vouches(ISOLATED_AFTER + Duration::from_millis(1)));
    }

    #[test]
    fn the_arbiter_waits_longer_than_a_cut_off_node_takes_to_expire_its_clients() {
        for lease in [5, 30, 90] {
            let lease = Duration::from_secs(lease);
            for grace in [Duration::ZERO, lease, lease * 2] {
                let g = lock_grace(lease, grace);
                assert!(g >= grace);
                // The last barrier passed up to a read lease after the cut began, renewals
                // stop ISOLATED_AFTER later, leases run out a lease later, the sweep follows
                // within SWEEP_LAG: all strictly before the arbiter grants.
                let expired = meta::raft::leases::LEASE + ISOLATED_AFTER + lease + SWEEP_LAG;
                assert!(expired < g, "lease {lease:?}");
            }
        }
    }

    #[test]
    fn one_node_always_vouches() {
        let q = Quorum::default();
        assert!(q.vouching());
    }

    #[test]
    fn a_watched_node_vouches_after_a_barrier_and_not_after_silence() {
        let q = Quorum::default();
        q.watch();
        assert!(q.vouching());
        // A contact longer ago than the bound.
        let q = Quorum::cut_off();
        assert!(!q.vouching());
        q.confirmed(Instant::now());
        assert!(q.vouching());
        // An older barrier finishing late does not move the contact back.
        q.confirmed(q.base);
        assert!(q.vouching());
    }
}
