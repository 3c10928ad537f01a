//! The namespace's shards as Raft groups (openraft): one group per shard, all of a node's
//! groups writing one log (`log`), each applying committed commands to its shard's state
//! (`machine`), all of them checkpointed together into redb (`checkpoint`). The embedded
//! default is a one-node cluster whose groups each have one voter: the same code path as three.
//!
//! Why openraft 0.9 (stable) over 0.10 (alpha): its storage-v2 `append` returns before the
//! flush and reports durability through a callback, which is what lets one writer thread
//! fdatasync every group's appends at once; 0.9 has it, so the alpha buys nothing needed here.

pub mod balance;
#[cfg(test)]
mod encodings;
pub mod fresh;
pub mod groups;
pub mod handover;
pub mod leases;
pub mod machine;
pub mod members;
pub mod network;
pub mod node_addr;
pub mod placement;
pub mod registry;
pub mod service;
pub mod snapshots;

pub use crate::storage::entry::{Cfg, Proposal, Reply, Tagged, TaggedRef};
pub use crate::storage::log::{LogEngine, LogStats};

use std::sync::Arc;
use std::time::Duration;

/// Timing of the shards' Raft groups. A heartbeat per group every half second is cheap for a
/// few hundred groups (one small message each, batched per peer connection); failover then
/// takes 1.5 to 3 s of silence.
pub fn config(shard_count: u16) -> Result<Arc<openraft::Config>, meta_core::FsError> {
    let c = openraft::Config {
        cluster_name: "cfs".into(),
        heartbeat_interval: 500,
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        // A snapshot (a checkpoint) every so many entries; the log behind it is kept a while
        // for replicas that fell a little behind, so they need no snapshot.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(8192),
        max_in_snapshot_log_to_keep: 1024,
        purge_batch_size: 256,
        // Many small groups: keep their replication messages small.
        max_payload_entries: 256,
        ..Default::default()
    };
    let _ = shard_count;
    c.validate()
        .map(Arc::new)
        .map_err(|e| meta_core::FsError::Io(format!("raft config: {e}")))
}

/// How long a node waits at start for its shards to have leaders and to catch up with what
/// was committed before it stopped.
pub const START_WAIT: Duration = Duration::from_secs(30);
