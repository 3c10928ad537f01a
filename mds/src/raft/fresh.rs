//! Reads that see every write acknowledged before they began. A node answers reads from its
//! own replica of a shard; a follower's replica may lag, and a node cut off in a minority
//! keeps its old replica (and may still believe it leads): the fault test
//! (`cfs/tests/it/mds_faults.rs`) saw both answer stale values. So before an operation reads a
//! shard, a read barrier for that shard (ReadIndex, Raft thesis §6.4): the leader confirms it
//! still leads with a heartbeat round to a majority and waits until it has applied everything
//! committed when the read arrived (openraft's `ensure_linearizable`); a follower asks the
//! leader for that index (`PEERPROC_READ_INDEX`) and waits until its own replica has applied
//! it. A node that can reach no majority gets no answer, and its reads fail with DELAY.
//!
//! Concurrent reads of a shard share one check: a read waits for a check that began after the
//! read arrived, and one check answers every read that arrived before it began. Called from
//! the compound runner only (once per shard per COMPOUND), never inside `apply`.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use thiserror::Error;

use super::types::Raft;
use crate::namespace::{Namespace, ShardId};

/// How long one check may take: past it the read is refused (the client retries).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Error)]
pub enum ReadError {
    #[error("shard {0}: no leader known")]
    NoLeader(u16),
    #[error("shard {0}: leadership not confirmed: {1}")]
    NotConfirmed(u16, String),
    #[error("shard {0}: leader {1} did not answer: {2}")]
    Leader(u16, u64, String),
    #[error("shard {0}: replica did not catch up in time")]
    Behind(u16),
}

/// One shard's barrier: checks numbered as they start, the last one's result kept.
#[derive(Default)]
struct Gate {
    started: AtomicU64,
    last: tokio::sync::Mutex<Option<(u64, Result<(), ReadError>)>>,
}

/// The read barriers of this node's shards.
#[derive(Default)]
pub struct Fresh {
    gates: Mutex<HashMap<u16, Arc<Gate>>>,
}

impl Fresh {
    /// Returns once this node's replica of `shard` holds every write acknowledged before the
    /// call, or an error if that cannot be confirmed.
    pub async fn barrier(&self, ns: &Namespace, shard: ShardId) -> Result<(), ReadError> {
        // One node: its replica is the only one. A shard this node has no group for: nothing
        // to read there.
        let (Some(_), Some(raft)) = (ns.peers(), ns.raft_of(shard)) else {
            return Ok(());
        };
        let gate = {
            let mut g = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            g.entry(shard.0).or_default().clone()
        };
        let arrived = gate.started.load(Ordering::SeqCst);
        let mut last = gate.last.lock().await;
        if let Some((n, r)) = last.as_ref() {
            // A check that began after this read arrived has finished meanwhile: it covers it.
            if *n > arrived {
                return r.clone();
            }
        }
        let n = gate.started.fetch_add(1, Ordering::SeqCst) + 1;
        let r = check(ns, &raft, shard).await;
        if let Err(e) = &r {
            tracing::debug!(%shard, "read barrier: {e}");
        }
        *last = Some((n, r.clone()));
        r
    }
}

async fn check(ns: &Namespace, raft: &Raft, shard: ShardId) -> Result<(), ReadError> {
    let s = shard.0;
    let leader = match tokio::time::timeout(CHECK_TIMEOUT, raft.ensure_linearizable()).await {
        Err(_) => return Err(ReadError::NotConfirmed(s, "timed out".into())),
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            f.leader_id.ok_or(ReadError::NoLeader(s))?
        }
        Ok(Err(e)) => return Err(ReadError::NotConfirmed(s, e.to_string())),
    };
    let Some(peers) = ns.peers() else {
        return Err(ReadError::NoLeader(s));
    };
    let body = peers
        .call(
            leader,
            proto::peer::PEERPROC_READ_INDEX,
            shard,
            Vec::new(),
            CHECK_TIMEOUT,
        )
        .await
        .map_err(|e| ReadError::Leader(s, leader, e.to_string()))?;
    let index: Result<Option<u64>, String> = postcard::from_bytes(&body)
        .map_err(|e| ReadError::Leader(s, leader, format!("bad answer: {e}")))?;
    let index = index.map_err(|e| ReadError::Leader(s, leader, e))?;
    raft.wait(Some(CHECK_TIMEOUT))
        .applied_index_at_least(index, "read index")
        .await
        .map_err(|_| ReadError::Behind(s))?;
    Ok(())
}

/// On the leader, for a follower's read: the index the follower must have applied, once a
/// heartbeat round has confirmed this node still leads. An error if it does not.
pub async fn read_index(raft: &Raft) -> Result<Option<u64>, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, raft.get_read_log_id()).await {
        Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("leadership not confirmed in time".into()),
    }
}

/// Whether operation `opnum` reads namespace state that a lagging replica could hold stale
/// (`ops::table::READS_STATE`). Operations that only change the file handle, or that are
/// proposed through Raft and answered from the committed result, do not need the barrier.
pub fn reads_state(opnum: u32) -> bool {
    crate::ops::table::info(opnum).has(crate::ops::table::READS_STATE)
}
