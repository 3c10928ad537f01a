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
//!
//! A leader's check also buys it a lease (`Leases`, Raft thesis §6.4.1): for `LEASE` after a
//! check began, the leader answers its own reads, and followers' read-index questions, with
//! no heartbeat round, as long as its Raft core says it still leads in the same vote. Why no
//! other node can lead meanwhile: the check's round was taken by a majority of voters after it
//! began, and openraft has each of them refuse every vote for `election_timeout_max` (3 s)
//! after it last took an append of its leader (`Engine::handle_vote_req`). The leader's own
//! vote is the one way around that (a hand-over, `raft::handover`, or a candidate whose log is
//! as long as its own): it is granted inside the leader's Raft core, which stops leading
//! before it answers, and the lease is asked of that same core (`with_raft_state`), so a read
//! that follows the grant sees a follower and takes the round. Every write acknowledged so far
//! is in the leader's replica (a write is answered once applied there), and a check applies
//! what earlier terms committed before it buys the lease, so a read under the lease sees all.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{ServerState, Vote};
use thiserror::Error;

use super::groups::Groups;
use crate::storage::entry::Raft;
use meta_core::ShardId;

/// How long one check may take: past it the read is refused (the client retries).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this node's lease of `shard` answers a read now: it has not run out, and the Raft
/// core says this node still leads in the vote the lease was bought in.
async fn leased(groups: &Groups, raft: &Raft, shard: ShardId) -> bool {
    let Some(lease) = groups.leases().current(shard) else {
        return false;
    };
    raft.with_raft_state(move |st| {
        st.server_state == ServerState::Leader && *st.vote_ref() == lease.vote
    })
    .await
    .unwrap_or(false)
}

/// The vote this node leads `shard` in now, if it leads it.
async fn leading_vote(raft: &Raft) -> Option<Vote<u64>> {
    raft.with_raft_state(|st| (st.server_state == ServerState::Leader).then(|| *st.vote_ref()))
        .await
        .ok()
        .flatten()
}

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
    pub async fn barrier(&self, groups: &Groups, shard: ShardId) -> Result<(), ReadError> {
        // One node: its replica is the only one. A shard this node has no group for: nothing
        // to read there.
        let (Some(_), Some(raft)) = (groups.peers(), groups.raft_of(shard)) else {
            return Ok(());
        };
        if leased(groups, &raft, shard).await {
            groups.leases().answered();
            return Ok(());
        }
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
        let r = check(groups, &raft, shard).await;
        if let Err(e) = &r {
            tracing::debug!(%shard, "read barrier: {e}");
        }
        *last = Some((n, r.clone()));
        r
    }
}

async fn check(groups: &Groups, raft: &Raft, shard: ShardId) -> Result<(), ReadError> {
    let s = shard.0;
    let began = Instant::now();
    let vote = leading_vote(raft).await;
    let leader = match tokio::time::timeout(CHECK_TIMEOUT, raft.ensure_linearizable()).await {
        Err(_) => return Err(ReadError::NotConfirmed(s, "timed out".into())),
        Ok(Ok(_)) => {
            // Confirmed, and what it must read applied: a lease, if it led when it began.
            if let Some(vote) = vote {
                groups.leases().grant(shard, vote, began);
            }
            return Ok(());
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            f.leader_id.ok_or(ReadError::NoLeader(s))?
        }
        Ok(Err(e)) => return Err(ReadError::NotConfirmed(s, e.to_string())),
    };
    let Some(peers) = groups.peers() else {
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
/// heartbeat round (or this node's lease) has confirmed this node still leads. An error if it
/// does not.
pub async fn read_index(
    groups: &Groups,
    raft: &Raft,
    shard: ShardId,
) -> Result<Option<u64>, String> {
    if leased(groups, raft, shard).await {
        // Every write acknowledged so far is committed, so at or below this.
        if let Some(committed) = groups.committed(shard) {
            groups.leases().answered();
            return Ok(Some(committed));
        }
    }
    let began = Instant::now();
    let vote = leading_vote(raft).await;
    match tokio::time::timeout(CHECK_TIMEOUT, raft.get_read_log_id()).await {
        Ok(Ok((read, applied))) => {
            // A lease only once this replica holds what it must read (the leader's first entry
            // of its term, and all before it).
            if let (Some(vote), true) = (vote, applied >= read) {
                groups.leases().grant(shard, vote, began);
            }
            Ok(read.map(|l| l.index))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("leadership not confirmed in time".into()),
    }
}
