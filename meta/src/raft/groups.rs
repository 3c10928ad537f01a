//! This node's Raft groups, one per shard, and what replication keeps beside them: the other
//! nodes (`Peers`), read leases, snapshots being received, the drained flag and the handlers
//! of other procedures (`registry`). Everything that answers peers or changes memberships
//! (`service`, `fresh`, `members`, `handover`) works on this, never on the namespace facade
//! above it, so replication does not depend on how commands are proposed or read.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::leases::Leases;
use super::network::Peers;
use super::registry::PeerProcs;
use super::snapshots::IncomingSnapshots;
use crate::storage::entry::Raft;
use crate::storage::log::LogEngine;
use meta_core::ShardId;

/// One shard's Raft group on this node.
pub(crate) struct Group {
    pub raft: Raft,
    /// Pauses the shard's proposer while its leadership moves (`handover`).
    pub gate: Arc<Gate>,
}

/// One shard's gate on its leader (every node has one per shard; only the leader's is used):
/// its writes and membership changes, one at a time where they must not meet.
#[derive(Debug, Default)]
pub struct Gate {
    /// Held by the shard's proposer while it appends a batch, and by a hand-over while it must
    /// append nothing.
    pub(crate) writes: tokio::sync::Mutex<()>,
    /// Held by a membership change carried out here, and by a hand-over: one at a time (a
    /// membership entry would make the leader refuse the candidate's vote).
    pub(crate) changes: tokio::sync::Mutex<()>,
}

impl Gate {
    /// For the shard's proposer, around one append.
    pub async fn writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// For a membership change of the shard, around the whole change.
    pub async fn changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }
}

/// One shard's Raft group as this node sees it (`cfs admin status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    pub shard: u16,
    pub leader: Option<u64>,
    pub term: u64,
    /// Index of the last entry in this node's log.
    pub last_log: u64,
    /// Index of the last entry applied to this node's tables.
    pub applied: u64,
    /// On the leader: entries each follower's log is behind (empty elsewhere).
    pub lag: BTreeMap<u64, u64>,
}

/// This node's groups and the replication state beside them.
pub struct Groups {
    node: u64,
    shard_count: u16,
    groups: BTreeMap<u16, Group>,
    log: LogEngine,
    /// The other MDS nodes, in a multi-node cluster.
    peers: Option<Arc<Peers>>,
    incoming: IncomingSnapshots,
    leases: Leases,
    /// Set once this node was drained from the metadata service (`members`).
    drained: tokio::sync::watch::Sender<bool>,
    /// Whether this node, while it leads shard 0, evens out the leaderships (`handover`).
    balance: bool,
    procs: PeerProcs,
}

impl Groups {
    pub(crate) fn new(
        node: u64,
        shard_count: u16,
        groups: BTreeMap<u16, Group>,
        log: LogEngine,
        peers: Option<Arc<Peers>>,
        balance: bool,
    ) -> Groups {
        Groups {
            node,
            shard_count,
            groups,
            log,
            peers,
            incoming: IncomingSnapshots::default(),
            leases: Leases::default(),
            drained: tokio::sync::watch::Sender::new(false),
            balance,
            procs: PeerProcs::default(),
        }
    }

    /// This node's id (1 in a one-node cluster).
    pub fn node_id(&self) -> u64 {
        self.node
    }

    /// Shards of the file system (this node holds a replica of each).
    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }

    /// The other MDS nodes; `None` in a one-node cluster.
    pub fn peers(&self) -> Option<&Arc<Peers>> {
        self.peers.as_ref()
    }

    /// The shard's Raft group on this node (peer messages go to it).
    pub fn raft_of(&self, shard: ShardId) -> Option<Raft> {
        self.groups.get(&shard.0).map(|g| g.raft.clone())
    }

    /// The shard's gate for hand-overs of its leadership (`handover`).
    pub(crate) fn gate(&self, shard: ShardId) -> Option<Arc<Gate>> {
        self.groups.get(&shard.0).map(|g| g.gate.clone())
    }

    /// The node this node knows to lead `shard` (itself in a one-node cluster).
    pub fn leader_of(&self, shard: ShardId) -> Option<u64> {
        let g = self.groups.get(&shard.0)?;
        let leader = g.raft.metrics().borrow().current_leader;
        leader
    }

    /// Which node leads each shard, as this node knows it.
    pub fn leaders(&self) -> BTreeMap<u16, Option<u64>> {
        self.groups
            .iter()
            .map(|(id, g)| (*id, g.raft.metrics().borrow().current_leader))
            .collect()
    }

    /// Each shard's Raft group as this node sees it, for `cfs admin status`.
    pub fn shard_status(&self) -> Vec<ShardStatus> {
        self.groups
            .iter()
            .map(|(id, g)| {
                let m = g.raft.metrics().borrow().clone();
                let last_log = m.last_log_index.unwrap_or(0);
                // On the leader: how far each follower's log trails its own.
                let lag = m
                    .replication
                    .as_ref()
                    .map(|r| {
                        r.iter()
                            .filter(|(n, _)| **n != self.node)
                            .map(|(n, at)| (*n, last_log.saturating_sub(at.map_or(0, |l| l.index))))
                            .collect()
                    })
                    .unwrap_or_default();
                ShardStatus {
                    shard: *id,
                    leader: m.current_leader,
                    term: m.current_term,
                    last_log,
                    applied: m.last_applied.map_or(0, |l| l.index),
                    lag,
                }
            })
            .collect()
    }

    /// The index of the last entry of `shard` this node knows committed (`None`: none, or no
    /// replica of the shard here).
    pub(crate) fn committed(&self, shard: ShardId) -> Option<u64> {
        let log = self.log.shard(shard).ok()?;
        let mem = log.mem().ok()?;
        mem.committed.map(|c| c.index)
    }

    /// The read leases of the shards this node leads (`fresh`).
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    pub(crate) fn incoming_snapshots(&self) -> &IncomingSnapshots {
        &self.incoming
    }

    /// This node was drained from the metadata service: it must stop serving.
    pub(crate) fn mark_drained(&self) {
        self.drained.send_replace(true);
    }

    pub fn is_drained(&self) -> bool {
        *self.drained.borrow()
    }

    /// Changes to `true` once this node is drained (`cfs server` then stops).
    pub fn drained(&self) -> tokio::sync::watch::Receiver<bool> {
        self.drained.subscribe()
    }

    /// `Options::balance_leaders`.
    pub(crate) fn balances_leaders(&self) -> bool {
        self.balance
    }

    /// The handlers of the peer procedures replication does not answer itself.
    pub fn peer_procs(&self) -> &PeerProcs {
        &self.procs
    }

    /// Every group, for shutting them down.
    pub(crate) fn rafts(&self) -> impl Iterator<Item = &Raft> {
        self.groups.values().map(|g| &g.raft)
    }
}
