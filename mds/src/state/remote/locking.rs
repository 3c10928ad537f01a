//! Byte-range locks across MDS nodes. Each node keeps its own clients' locks (their stateids
//! and seqids); the leader of a file's shard arbitrates between nodes (`state::arbiter` holds
//! its view). A node asks the arbiter before it grants a lock or answers LOCKT, and tells it
//! when its client unlocks. The arbiter:
//!
//! - confirms it leads the shard (a heartbeat round to a majority) after the request arrived,
//!   so a deposed leader decides nothing a new one does not see;
//! - in a new term, first gathers every other node's locks on the file
//!   (`PEERPROC_LOCKS_HELD`); a node's answer includes the requests it has in flight, which it
//!   registers before asking, so a grant in flight at an old arbiter is never missed;
//! - confirms a conflict with the node holding it before denying (its view may hold locks
//!   released since);
//! - counts a node that cannot be asked as gone after a grace period, in which only reclaims
//!   are granted on that file (that node's clients reclaim where its address moved); the
//!   period is at least what a node cut off from the majority takes to expire its clients
//!   (`crate::state::remote::isolation::lock_grace`), so they have lost their locks before the arbiter
//!   grants conflicting ones.
//!
//! One node (no peers): none of this runs; locks are the `StateManager`'s alone.
//!
//! Not covered: a node the arbiter cannot reach while it still reaches a majority itself (an
//! asymmetric cut) keeps its clients' locks; READ and WRITE through the MDS check only this
//! node's locks; share reservations (OPEN deny modes) are each node's own.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use serde::{Deserialize, Serialize};

use crate::error::NfsError;
use crate::state::arbiter::{Verdict, Views};
use crate::state::locks::{LockKind, Range};
use crate::state::NfsState;
use meta::namespace::ShardId;

/// How long a request waits for its shard to have a reachable leader before DELAY.
const ASK_WAIT: Duration = Duration::from_secs(10);
/// One call to another node about locks.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A released lock told to the arbiter: a lost message only costs a later confirmation.
const RELEASE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between attempts while the shard elects a leader.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A lock range on the wire between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRange {
    pub client: u64,
    pub owner: Vec<u8>,
    pub start: u64,
    /// Exclusive; u64::MAX: to the end of the file.
    pub end: u64,
    pub write: bool,
}

impl From<&Range> for WireRange {
    fn from(r: &Range) -> Self {
        WireRange {
            client: r.owner.0,
            owner: r.owner.1.clone(),
            start: r.start,
            end: r.end,
            write: r.kind == LockKind::Write,
        }
    }
}

impl From<WireRange> for Range {
    fn from(w: WireRange) -> Self {
        Range {
            owner: (w.client, w.owner),
            start: w.start,
            end: w.end,
            kind: if w.write {
                LockKind::Write
            } else {
                LockKind::Read
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockOp {
    Lock,
    Test,
    Unlock,
}

/// `PEERPROC_LOCK`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockCall {
    pub ino: u64,
    pub range: WireRange,
    pub op: LockOp,
    pub reclaim: bool,
}

/// `PEERPROC_LOCK`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockAnswer {
    /// Lock: take it. Test: nothing in the way. Unlock: noted.
    Granted,
    Denied(WireRange),
    /// A node that held locks here cannot be asked and its clients may still reclaim.
    Grace,
    /// This node does not lead the file's shard (the leader it knows, if any).
    NotLeader(Option<u64>),
}

/// `PEERPROC_LOCKS_HELD`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldQuery {
    pub ino: u64,
    /// The request being decided: a courtesy client in its way is expired first.
    pub probe: Option<WireRange>,
}

/// The lock requests this node has sent to an arbiter and not yet applied: part of what it
/// reports holding, so no arbiter gathering meanwhile misses a grant.
#[derive(Default)]
pub struct InFlight {
    next: AtomicU64,
    by_file: Mutex<HashMap<u64, Vec<(u64, Range)>>>,
}

/// Removes its request from `InFlight` when dropped.
pub struct InFlightGuard<'a> {
    table: &'a InFlight,
    ino: u64,
    id: u64,
}

impl InFlight {
    pub fn register(&self, ino: u64, r: Range) -> InFlightGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut m = self.by_file.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(ino).or_default().push((id, r));
        InFlightGuard {
            table: self,
            ino,
            id,
        }
    }

    fn ranges(&self, ino: u64) -> Vec<Range> {
        let m = self.by_file.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&ino)
            .map(|v| v.iter().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default()
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut m = self.table.by_file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = m.get_mut(&self.ino) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                m.remove(&self.ino);
            }
        }
    }
}

/// This node's part in locks across nodes: its requests in flight and, for the shards it
/// leads, the arbiter's views.
#[derive(Default)]
pub struct ClusterLocks {
    pub in_flight: InFlight,
    views: Mutex<Views>,
}

/// What this node's clients hold on `ino`, in-flight requests included.
pub(crate) fn held_here(nfs: &NfsState, ino: u64, probe: Option<&Range>) -> Vec<Range> {
    let mut v = nfs.state.locks_on(ino, probe);
    v.extend(nfs.locks.in_flight.ranges(ino));
    v
}

/// How long a file stays to reclaims once a node holding locks there cannot be asked.
fn unsure_for(nfs: &NfsState) -> Duration {
    crate::state::remote::isolation::lock_grace(nfs.state.lease, nfs.grace)
}

/// Whether locks need the arbiter: only with other MDS nodes.
pub fn across_nodes(nfs: &NfsState) -> bool {
    nfs.ns.peers().is_some()
}

/// Asks the arbiter of `ino`'s shard about `range` for this node's client. Errors: DELAY when
/// no leader answered in time.
pub async fn ask(
    nfs: &NfsState,
    ino: u64,
    range: &Range,
    op: LockOp,
    reclaim: bool,
) -> Result<LockAnswer, NfsError> {
    let shard = ShardId::of_ino(ino);
    let me = nfs.ns.node_id();
    let call = LockCall {
        ino,
        range: range.into(),
        op,
        reclaim,
    };
    let deadline = tokio::time::Instant::now() + ASK_WAIT;
    loop {
        let answer = match nfs.ns.leader_of(shard) {
            Some(l) if l == me => decide(nfs, me, call.clone()).await,
            Some(l) => call_arbiter(nfs, l, shard, &call).await,
            None => LockAnswer::NotLeader(None),
        };
        match answer {
            LockAnswer::NotLeader(_) => {
                if op == LockOp::Unlock || tokio::time::Instant::now() >= deadline {
                    // An unlock not told costs only a confirmation later.
                    if op == LockOp::Unlock {
                        return Ok(LockAnswer::Granted);
                    }
                    return Err(NfsError::Delay);
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            a => return Ok(a),
        }
    }
}

async fn call_arbiter(nfs: &NfsState, leader: u64, shard: ShardId, call: &LockCall) -> LockAnswer {
    let Some(peers) = nfs.ns.peers() else {
        return LockAnswer::NotLeader(None);
    };
    let Ok(body) = postcard::to_stdvec(call) else {
        return LockAnswer::NotLeader(None);
    };
    let timeout = if call.op == LockOp::Unlock {
        RELEASE_TIMEOUT
    } else {
        // The arbiter may gather from every node, each within CALL_TIMEOUT.
        CALL_TIMEOUT * 3
    };
    match peers
        .call(leader, proto::peer::PEERPROC_LOCK, shard, body, timeout)
        .await
    {
        Ok(b) => postcard::from_bytes(&b).unwrap_or(LockAnswer::NotLeader(None)),
        Err(e) => {
            tracing::debug!(%shard, leader, "lock call failed: {e}");
            LockAnswer::NotLeader(None)
        }
    }
}

/// Asks node `node` which locks its clients hold on `ino`.
async fn ask_held(nfs: &NfsState, node: u64, ino: u64, probe: &Range) -> Option<Vec<Range>> {
    let peers = nfs.ns.peers()?;
    let q = HeldQuery {
        ino,
        probe: Some(probe.into()),
    };
    let body = postcard::to_stdvec(&q).ok()?;
    let shard = ShardId::of_ino(ino);
    match peers
        .call(
            node,
            proto::peer::PEERPROC_LOCKS_HELD,
            shard,
            body,
            CALL_TIMEOUT,
        )
        .await
    {
        Ok(b) => {
            let held: Vec<WireRange> = postcard::from_bytes(&b).ok()?;
            Some(held.into_iter().map(Range::from).collect())
        }
        Err(e) => {
            tracing::debug!(node, ino, "cannot ask which locks are held there: {e}");
            None
        }
    }
}

/// The arbiter's decision on a request from node `from` (this node included).
pub(crate) async fn decide(nfs: &NfsState, from: u64, call: LockCall) -> LockAnswer {
    let shard = ShardId::of_ino(call.ino);
    let Some(raft) = nfs.ns.raft_of(shard) else {
        return LockAnswer::NotLeader(None);
    };
    let want: Range = call.range.into();
    if call.op == LockOp::Unlock {
        // A release needs no leadership: a deposed arbiter's view is dropped anyway.
        let view = nfs
            .locks
            .views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .existing(call.ino);
        if let Some(v) = view {
            v.lock().await.released(from, &want);
        }
        return LockAnswer::Granted;
    }
    // Leadership confirmed after the request arrived: a newer leader would have gathered
    // the requester's in-flight request, or this check fails.
    match tokio::time::timeout(CALL_TIMEOUT, raft.ensure_linearizable()).await {
        Ok(Ok(_)) => {}
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
            return LockAnswer::NotLeader(f.leader_id)
        }
        Ok(Err(_)) | Err(_) => return LockAnswer::NotLeader(None),
    }
    let term = raft.metrics().borrow().current_term;
    let me = nfs.ns.node_id();
    let view = nfs
        .locks
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .file(call.ino);
    let mut v = view.lock().await;
    v.for_term(term);
    let others: Vec<u64> = nfs
        .ns
        .peers()
        .map(|p| p.nodes().into_keys().filter(|n| *n != me).collect())
        .unwrap_or_default();
    if !v.gathered {
        let answers =
            futures::future::join_all(others.iter().map(|&n| ask_held(nfs, n, call.ino, &want)))
                .await;
        for (&n, a) in others.iter().zip(answers) {
            match a {
                Some(held) => v.replace(n, held),
                None => v.missed(n, Instant::now(), unsure_for(nfs)),
            }
        }
        v.gathered = true;
    } else if v.unsure(Instant::now()) {
        // A node missed may be back: its answer ends the doubt about it.
        let missing: Vec<u64> = v.missing.iter().copied().collect();
        for n in missing {
            if let Some(held) = ask_held(nfs, n, call.ino, &want).await {
                v.replace(n, held);
            }
        }
    }
    let mut confirmed = Vec::new();
    loop {
        let own = held_here(nfs, call.ino, Some(&want));
        match v.judge(&own, &want, call.reclaim, Instant::now()) {
            Verdict::Held(r) => return LockAnswer::Denied((&r).into()),
            Verdict::Confirm(n, r) => {
                if confirmed.contains(&n) {
                    return LockAnswer::Denied((&r).into());
                }
                confirmed.push(n);
                match ask_held(nfs, n, call.ino, &want).await {
                    Some(held) => v.replace(n, held),
                    None => v.missed(n, Instant::now(), unsure_for(nfs)),
                }
            }
            Verdict::Unsure => return LockAnswer::Grace,
            Verdict::Free => {
                if call.op == LockOp::Lock && from != me {
                    v.granted(from, &want);
                }
                return LockAnswer::Granted;
            }
        }
    }
}

/// Convenience for handlers: the range a LOCK/LOCKT/LOCKU names.
pub fn range(owner: (u64, Vec<u8>), kind: LockKind, offset: u64, length: u64) -> Range {
    Range {
        owner,
        start: offset,
        end: crate::state::locks::end_of(offset, length),
        kind,
    }
}
