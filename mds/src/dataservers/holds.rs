//! Claims: one maintenance job per file (encode, copy back, re-mirror, drain move, shard
//! rebuild), and no writer behind its back, on every MDS node.
//!
//! On one node a claim is an entry in `repairing`: writes to the file wait (NFS4ERR_DELAY,
//! `mirrors_for_write`) and no other job starts on it. With several MDS nodes each node hands
//! out its own layouts, mints its own DS handles and fences only those (the node id is in every
//! generation), so a claim must reach every node: the claimer asks each other node to hold the
//! file (`PEERPROC_HOLD`). A node that holds it for another fences its own handles of the file,
//! recalls its own layouts of it, makes its writers wait and starts no job of its own on it,
//! and says whether one of its clients may write the file (an open for writing, an RW layout).
//!
//! - A node that refuses (a job of its own, or another node's hold) fails the claim; so does a
//!   node that does not answer, unless it is dead and its clients have reclaimed their state
//!   at the node that took its address over (`note_gone`): Linux drops every layout when it
//!   reclaims after a server restart (`nfs4_state_end_reclaim_reboot`), so nothing of the
//!   dead node's is used after that. A node cut off but alive keeps its clients' layouts
//!   (they stay courtesy clients, `isolation`), so without that word the job waits.
//! - A hold runs out `HOLD_TTL` after the last word from its claimer, so a claimer that dies
//!   frees the file. The claimer renews every `RENEW_EVERY`, and counts its claim as lost
//!   (`Claim::check`) once `TRUST` has passed since the start of the last round every node
//!   answered: a node counts its hold from when the call arrived, later than that start, so
//!   the claimer gives up before any node's hold can run out. A job checks before it records
//!   its result.
//! - `refence` asks every holding node to fence and recall again: after a job changed where
//!   the bytes are, a layout handed out meanwhile for reading must not outlive the old copy.
//!
//! One node (no peers): only the local entry.
//!
//! Test: `cfs/tests/it/repair_across_nodes.rs` (a re-mirror and a drain move by node 1 while a pNFS
//! client of node 2 appends; without the holds the first loses committed bytes and the second never
//! finishes).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::error::{NfsError, NfsResult};
use meta::namespace::{Namespace, ShardId};
use meta::raft::network::Peers;

/// How long a node holds a file for another without hearing from it again.
pub const HOLD_TTL: Duration = Duration::from_secs(60);
/// How often a claimer renews its holds.
const RENEW_EVERY: Duration = Duration::from_secs(15);
/// The claimer trusts its holds this long after the start of the last round every node
/// answered: well inside `HOLD_TTL`, so no node's hold runs out while the claimer trusts it.
const TRUST: Duration = Duration::from_secs(45);
/// One hold or release call.
const HOLD_CALL: Duration = Duration::from_secs(2);
/// Most files this node holds for others; past it, holds are refused (the jobs wait).
const MAX_HELD: usize = 65_536;

/// `PEERPROC_HOLD`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldCall {
    /// Hold `ino` for the sender for `ttl_ms` from now (again: renews); `fence`: fence this
    /// node's handles of the file and recall its layouts of it (the first hold, `refence`).
    Hold { ino: u64, ttl_ms: u64, fence: bool },
    /// The sender's job on `ino` is over.
    Release { ino: u64 },
}

/// `PEERPROC_HOLD`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldAnswer {
    /// Held; `in_use`: one of this node's clients may write the file without asking (an open
    /// for writing, an RW layout).
    Held {
        in_use: bool,
    },
    /// A job of this node's, or another node's hold, has the file.
    Refused,
    Released,
}

/// Files this node holds for other nodes' jobs, and the dead nodes whose clients reclaimed
/// elsewhere.
#[derive(Default)]
pub(crate) struct Holds {
    /// File → (claiming node, until when).
    held: HashMap<u64, (u64, Instant)>,
    /// Node → when its client address was taken over, for nodes whose clients have since
    /// reclaimed at the taker.
    gone: HashMap<u64, Instant>,
}

/// A file claimed for one maintenance job; released on drop, here and on every node that
/// holds it.
pub(crate) struct Claim<'a> {
    cluster: &'a Cluster,
    ino: u64,
    remote: Option<Remote>,
}

/// The other nodes' side of a claim.
struct Remote {
    peers: Arc<Peers>,
    nodes: Vec<u64>,
    in_use: bool,
    lease: Arc<Mutex<Lease>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

struct Lease {
    /// Start of the last round of calls every holding node answered with `Held`.
    last_ok: Instant,
    /// A round failed: the holds may have run out somewhere.
    lost: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.cluster.set_repairing(self.ino, false);
        if let Some(r) = self.remote.take() {
            if let Some(t) = &r.renewer {
                t.abort();
            }
            let ino = self.ino;
            // Best effort: a hold not released runs out by itself.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = round(&r.peers, &r.nodes, &HoldCall::Release { ino }).await;
                });
            }
        }
    }
}

impl Claim<'_> {
    pub(crate) fn ino(&self) -> u64 {
        self.ino
    }

    /// Whether another node said one of its clients may write the file (when it was held).
    pub(crate) fn in_use_elsewhere(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.in_use)
    }

    /// `Ok` while every other node surely still holds the file: a job calls this right before
    /// it records its result, and gives up (DELAY) otherwise.
    pub(crate) fn check(&self) -> NfsResult<()> {
        let Some(r) = &self.remote else {
            return Ok(());
        };
        let l = r.lease.lock().unwrap_or_else(|e| e.into_inner());
        if l.lost || l.last_ok.elapsed() > TRUST {
            tracing::warn!(
                ino = self.ino,
                "a maintenance claim lapsed on another MDS node"
            );
            return Err(NfsError::Delay);
        }
        Ok(())
    }

    /// Has every holding node fence its handles of the file and recall its layouts again.
    pub(crate) async fn refence(&self) -> NfsResult<()> {
        let Some(r) = &self.remote else {
            return Ok(());
        };
        renew(&r.peers, &r.nodes, self.ino, true, &r.lease).await;
        self.check()
    }
}

impl Cluster {
    /// Claims `ino` for a maintenance job on every MDS node, unless another job has it
    /// somewhere or a node can neither be asked nor be counted out.
    pub(crate) async fn claim(&self, ns: &Namespace, ino: u64) -> Option<Claim<'_>> {
        let mut claim = self.claim_here(ino)?;
        let Some(peers) = ns.peers().cloned() else {
            return Some(claim);
        };
        let others: Vec<u64> = peers
            .nodes()
            .into_keys()
            .filter(|n| *n != peers.me())
            .collect();
        let start = Instant::now();
        let answers = round(&peers, &others, &hold(ino, true)).await;
        let mut held = Vec::new();
        let mut in_use = false;
        let mut refused = false;
        for (n, a) in others.iter().zip(answers) {
            match a {
                Some(HoldAnswer::Held { in_use: u }) => {
                    held.push(*n);
                    in_use |= u;
                }
                None if self.clients_gone(&peers, *n) => {}
                _ => refused = true,
            }
        }
        let lease = Arc::new(Mutex::new(Lease {
            last_ok: start,
            lost: false,
        }));
        let renewer = (!refused).then(|| {
            let (peers, nodes, lease) = (peers.clone(), held.clone(), lease.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    renew(&peers, &nodes, ino, false, &lease).await;
                }
            })
        });
        // From here on, dropping the claim releases what was held.
        claim.remote = Some(Remote {
            peers,
            nodes: held,
            in_use,
            lease,
            renewer,
        });
        if refused {
            tracing::debug!(
                ino,
                "maintenance waits: another MDS node has the file or cannot be asked"
            );
            return None;
        }
        Some(claim)
    }

    /// The local part of `claim`: this node's entry, unless a job here or another node's hold
    /// has the file.
    fn claim_here(&self, ino: u64) -> Option<Claim<'_>> {
        // Both checks under the local claims' lock, taken before the holds' one as in
        // `hold_for`: a hold cannot come between them.
        let mut local = self.repairing.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = !self.held_for_other(ino) && local.insert(ino);
        drop(local);
        // Built only when the entry is ours (lazily: `then`, not `then_some`): dropping a
        // `Claim` releases the file, which for someone else's claim would be a lost claim.
        fresh.then(|| Claim {
            cluster: self,
            ino,
            remote: None,
        })
    }

    /// Whether writes to `ino` wait: a job here or another node's hold has it.
    pub(crate) fn is_repairing(&self, ino: u64) -> bool {
        self.repairing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ino)
            || self.held_for_other(ino)
    }

    pub(crate) fn set_repairing(&self, ino: u64, on: bool) {
        let mut g = self.repairing.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            g.insert(ino);
        } else {
            g.remove(&ino);
        }
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn held_for_other(&self, ino: u64) -> bool {
        self.holds()
            .held
            .get(&ino)
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    /// Node `from` asks this node to hold `ino` for `ttl`: true if held (with `fence`, this
    /// node's handles of the file are fenced; the caller recalls its layouts), false if a job
    /// has it.
    pub(crate) fn hold_for(&self, from: u64, ino: u64, ttl: Duration, fence: bool) -> bool {
        // Under the local claims' lock, so a job of this node cannot start between the check
        // and the hold.
        let local = self.repairing.lock().unwrap_or_else(|e| e.into_inner());
        if local.contains(&ino) {
            return false;
        }
        let now = Instant::now();
        let mut h = self.holds();
        match h.held.get(&ino) {
            Some((n, until)) if *n != from && *until > now => return false,
            Some(_) => {}
            None => {
                if h.held.len() >= MAX_HELD {
                    h.held.retain(|_, (_, until)| *until > now);
                    if h.held.len() >= MAX_HELD {
                        return false;
                    }
                }
            }
        }
        h.held.insert(ino, (from, now + ttl.min(HOLD_TTL)));
        drop(h);
        drop(local);
        if fence {
            self.fence(ino);
        }
        true
    }

    /// Node `from`'s job on `ino` is over.
    pub(crate) fn release_for(&self, from: u64, ino: u64) {
        let mut h = self.holds();
        if h.held.get(&ino).is_some_and(|(n, _)| *n == from) {
            h.held.remove(&ino);
        }
    }

    /// Node `node` died, its client address was taken over at `at`, and its clients have
    /// since reclaimed (or lost) their state at the taker: it no longer needs asking.
    pub(crate) fn note_gone(&self, node: u64, at: Instant) {
        let mut h = self.holds();
        let e = h.gone.entry(node).or_insert(at);
        *e = (*e).max(at);
    }

    /// Whether node `n`'s clients are known to have left it: it was taken over after the
    /// last time it answered this node.
    pub(crate) fn clients_gone(&self, peers: &Peers, n: u64) -> bool {
        let Some(at) = self.holds().gone.get(&n).copied() else {
            return false;
        };
        peers.last_answer(n).is_none_or(|last| last < at)
    }
}

fn hold(ino: u64, fence: bool) -> HoldCall {
    HoldCall::Hold {
        ino,
        ttl_ms: u64::try_from(HOLD_TTL.as_millis()).unwrap_or(u64::MAX),
        fence,
    }
}

/// One call to each of `nodes` at once; `None` for a node that did not answer.
async fn round(peers: &Peers, nodes: &[u64], call: &HoldCall) -> Vec<Option<HoldAnswer>> {
    ask_each(peers, nodes, proto::peer::PEERPROC_HOLD, call, HOLD_CALL).await
}

/// Peer procedure `proc_` with body `call` to each of `nodes` at once, each within
/// `timeout`; `None` for a node that did not answer (or answered what does not decode).
pub(crate) async fn ask_each<C: Serialize, A: serde::de::DeserializeOwned>(
    peers: &Peers,
    nodes: &[u64],
    proc_: u32,
    call: &C,
    timeout: Duration,
) -> Vec<Option<A>> {
    let Ok(body) = postcard::to_stdvec(call) else {
        return nodes.iter().map(|_| None).collect();
    };
    futures::future::join_all(nodes.iter().map(|n| async {
        let b = peers
            .call(*n, proc_, ShardId(0), body.clone(), timeout)
            .await
            .ok()?;
        postcard::from_bytes(&b).ok()
    }))
    .await
}

/// Sends the hold again to every node that holds it (`fence`: and has them fence and recall
/// again); the lease is renewed if every one answered `Held`, lost otherwise.
async fn renew(peers: &Peers, nodes: &[u64], ino: u64, fence: bool, lease: &Mutex<Lease>) {
    let start = Instant::now();
    let answers = round(peers, nodes, &hold(ino, fence)).await;
    let all = answers
        .iter()
        .all(|a| matches!(a, Some(HoldAnswer::Held { .. })));
    let mut l = lease.lock().unwrap_or_else(|e| e.into_inner());
    if all && !l.lost {
        l.last_ok = start;
    } else {
        l.lost = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::ClusterConfig;
    use super::*;

    fn cluster() -> Cluster {
        let secret =
            layout::ClusterSecret::from_passphrase("a test secret of some length").expect("secret");
        Cluster::new(ClusterConfig::new(secret), 0, 1).expect("cluster")
    }

    #[test]
    fn a_file_is_claimed_once_and_a_refused_claim_leaves_the_first() {
        let c = cluster();
        let first = c.claim_here(7).expect("free");
        assert!(c.claim_here(7).is_none(), "claimed twice");
        assert!(c.is_repairing(7), "a refused claim released the first");
        assert!(c.claim_here(8).is_some(), "another file is free");
        drop(first);
        assert!(!c.is_repairing(7));
        assert!(c.claim_here(7).is_some());
        assert!(c.hold_for(2, 9, HOLD_TTL, true));
        assert!(c.claim_here(9).is_none(), "held for another node");
    }

    #[test]
    fn a_hold_keeps_other_nodes_and_local_jobs_off_until_released_or_run_out() {
        let c = cluster();
        assert!(c.hold_for(2, 7, HOLD_TTL, true));
        assert!(c.is_repairing(7), "writers wait while held");
        assert!(!c.hold_for(3, 7, HOLD_TTL, true), "a second node's hold");
        assert!(c.hold_for(2, 7, HOLD_TTL, true), "the holder renews");
        c.release_for(3, 7);
        assert!(c.is_repairing(7), "only the holder releases");
        c.release_for(2, 7);
        assert!(!c.is_repairing(7));
        assert!(c.hold_for(3, 8, Duration::ZERO, true));
        assert!(!c.is_repairing(8), "a hold that ran out");
        assert!(c.hold_for(2, 8, HOLD_TTL, true), "is taken by another node");
        c.set_repairing(9, true);
        assert!(
            !c.hold_for(2, 9, HOLD_TTL, true),
            "a job of this node's has it"
        );
    }

    #[test]
    fn a_hold_fences_the_files_handles_here() {
        let c = cluster();
        let before = c.fence_log().generation(7);
        assert!(c.hold_for(2, 7, HOLD_TTL, true));
        assert!(c.fence_log().generation(7) > before);
    }
}
