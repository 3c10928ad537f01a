//! The data quiesce around a snapshot's cut (`docs/plans/snapshots.md` §3.4, P0): while a
//! snapshot is made, no file's bytes change on this node's say-so, and none through a layout
//! this node granted before the cut.
//!
//! Every content-changing operation (`table::CHANGES_DATA`: WRITE, SETATTR, ALLOCATE,
//! DEALLOCATE, COPY, CLONE), every RW LAYOUTGET and every OPEN that sets an existing file's
//! size runs inside the gate (`Quiescer::enter`,
//! a read side of one lock), and answers NFS4ERR_DELAY while a quiesce holds it. A quiesce
//! (`Quiescer::hold`) takes the write side, which waits for the operations in flight, so
//! every byte an operation of this node wrote before it is in the files and every size is
//! recorded; then it records the noted UNSTABLE sizes, recalls every RW layout this node
//! granted, and fences the files whose layouts did not come back within `RETURN_WAIT` (their
//! holders' later writes are refused by the data servers once `fence_settle` has passed).
//! After the cut, a new RW layout or a write goes through the snapshot gate
//! (`dataservers::snap_data::before_change`), which keeps the bytes the snapshot needs first.
//! LAYOUTCOMMIT, COMMIT and LAYOUTRETURN stay open: a recalled client commits what it wrote
//! before the cut and returns its layout while the gate is shut.
//!
//! With several MDS nodes the coordinator (`quiesce_all`) holds the gate on every node
//! (`PEERPROC_SNAP_QUIESCE`), as a maintenance claim holds a file (`dataservers::holds`): a
//! hold runs out `QUIESCE_TTL` after the last word from its coordinator, which renews every
//! `RENEW_EVERY` and trusts its holds for `TRUST` from the start of the last round every node
//! answered; the cut is decided only while it trusts them (`Quiesce::trusted`). A node that
//! does not answer fails the create, unless it died and its clients reclaimed at the node
//! that took its address over (`Cluster::clients_gone`): their layouts went with it.
//!
//! Tests: `cfs/tests/it/snapshots.rs`
//! `a_writer_holding_an_rw_layout_across_create_is_recalled_and_its_later_bytes_are_not_in_the_snapshot`;
//! `tests` below (the gate's rules).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::NfsState;
use crate::error::{NfsError, NfsResult};

/// How long a node keeps the gate shut for a coordinator it does not hear from again.
pub const QUIESCE_TTL: Duration = Duration::from_secs(10);
/// How often the coordinator renews the holds.
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How long the coordinator trusts its holds after the start of the last round every node
/// answered: inside `QUIESCE_TTL`, which each node counts from later (when the call arrived).
const TRUST: Duration = Duration::from_secs(7);
/// How long a quiesce waits for the operations in flight to finish.
const GATE_WAIT: Duration = Duration::from_secs(5);
/// How long recalled RW layouts get to come back before their files are fenced. Linux
/// returns a recalled layout once its I/O through it is done and committed.
const RETURN_WAIT: Duration = Duration::from_secs(1);
/// One hold call: the gate, the recalls and a fence's settling, with room.
const QUIESCE_CALL: Duration = Duration::from_secs(9);

/// An operation inside the gate: the gate cannot shut until it is dropped.
pub type Entered = OwnedRwLockReadGuard<()>;

/// This node's gate for data changes (module comment).
#[derive(Default)]
pub struct Quiescer {
    gate: Arc<RwLock<()>>,
    held: Mutex<Option<Held>>,
}

/// Who holds a gate: the coordinating node and its create's tag (two creates of one node
/// are two coordinators).
pub type By = (u64, u64);

/// The gate shut for a coordinator.
struct Held {
    by: By,
    until: Instant,
    _shut: OwnedRwLockWriteGuard<()>,
}

/// Why a node would not hold the gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuiesceError {
    #[error("another snapshot's quiesce holds node {0}")]
    Busy(u64),
    #[error("writes in flight on node {0} did not finish within 5 s")]
    InFlight(u64),
    #[error("MDS node {0} did not answer")]
    NoAnswer(u64),
}

/// `PEERPROC_SNAP_QUIESCE`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuiesceCall {
    /// Shut the gate for the sender's create `tag` for `ttl_ms` from now (again: renews).
    Hold { tag: u64, ttl_ms: u64 },
    /// The sender's create `tag` is over (the snapshot made or given up).
    Release { tag: u64 },
}

/// `PEERPROC_SNAP_QUIESCE`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuiesceAnswer {
    Held,
    /// Another coordinator's quiesce holds this node.
    Busy,
    /// Operations in flight did not finish within `GATE_WAIT`.
    InFlight,
    Released,
}

impl Quiescer {
    /// Enters the gate for one content-changing operation; `Delay` while a quiesce holds it
    /// (or is waiting to: the lock lets no new reader in past a waiting writer).
    pub fn enter(&self) -> NfsResult<Entered> {
        if let Ok(g) = self.gate.clone().try_read_owned() {
            return Ok(g);
        }
        self.expire();
        self.gate
            .clone()
            .try_read_owned()
            .map_err(|_| NfsError::Delay)
    }

    /// Drops a hold whose coordinator went silent.
    fn expire(&self) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if h.as_ref().is_some_and(|x| x.until <= Instant::now()) {
            tracing::warn!(
                by = ?h.as_ref().map(|x| x.by),
                "a snapshot's data quiesce ran out: its coordinator went silent"
            );
            *h = None;
        }
    }

    /// Renews `by`'s hold if it has one: `Some(true)`; another's live hold: `Some(false)`;
    /// none: `None`.
    fn renew(&self, by: By, ttl: Duration) -> Option<bool> {
        self.expire();
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let x = h.as_mut()?;
        if x.by != by {
            return Some(false);
        }
        x.until = Instant::now() + ttl.min(QUIESCE_TTL);
        Some(true)
    }

    /// Ends `by`'s hold, if it has one.
    pub fn release(&self, by: By) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if h.as_ref().is_some_and(|x| x.by == by) {
            *h = None;
        }
    }
}

/// Shuts this node's gate for coordinator `by` for `ttl` (module comment), or renews its
/// hold. Returns once no RW layout this node granted can write any more.
pub async fn hold(nfs: &Arc<NfsState>, by: By, ttl: Duration) -> Result<(), QuiesceError> {
    let me = u64::from(nfs.node);
    match nfs.quiesce.renew(by, ttl) {
        Some(true) => return Ok(()),
        Some(false) => return Err(QuiesceError::Busy(me)),
        None => {}
    }
    let shut = tokio::time::timeout(GATE_WAIT, nfs.quiesce.gate.clone().write_owned())
        .await
        .map_err(|_| QuiesceError::InFlight(me))?;
    {
        // A `Held` keeps the write side, so having it means no other hold is left.
        let mut h = nfs.quiesce.held.lock().unwrap_or_else(|e| e.into_inner());
        // Counted from now: the recalls below come out of the coordinator's trust.
        *h = Some(Held {
            by,
            until: Instant::now() + ttl.min(QUIESCE_TTL),
            _shut: shut,
        });
    }
    // What GETATTR shows is what the snapshot shows: the UNSTABLE sizes into the log.
    if let Err(e) = nfs.ns.record_all_and_sync().await {
        tracing::warn!("noted writes not recorded before a snapshot: {e}");
    }
    still_layouts(nfs).await;
    Ok(())
}

/// Recalls every RW layout this node granted and fences the files whose layouts are not
/// back within `RETURN_WAIT`. A layout counts as back once its LAYOUTRETURN removed it here:
/// a holder that answers the recall NFS4ERR_NOMATCHING_LAYOUT while it still writes through
/// a cached copy, or keeps the layout past the wait, is fenced like one that does not answer.
async fn still_layouts(nfs: &Arc<NfsState>) {
    let rw = nfs.state.rw_layout_files();
    if rw.is_empty() {
        return;
    }
    let start = Instant::now();
    for (ino, clientid) in &rw {
        let (nfs, ino, clientid) = (nfs.clone(), *ino, *clientid);
        tokio::spawn(async move {
            super::recall::layout_recall(&nfs, clientid, ino).await;
        });
    }
    let out = |nfs: &NfsState| -> Vec<u64> {
        rw.iter()
            .filter(|(ino, c)| nfs.state.has_rw_layout(*c, *ino))
            .map(|(ino, _)| *ino)
            .collect()
    };
    let mut fence = out(nfs);
    while !fence.is_empty() && start.elapsed() < RETURN_WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
        fence = out(nfs);
    }
    fence.sort_unstable();
    fence.dedup();
    if let (Some(c), false) = (nfs.cluster(), fence.is_empty()) {
        for ino in &fence {
            c.fence(*ino);
        }
        tokio::time::sleep(c.fence_settle()).await;
    }
    tracing::info!(
        layouts = rw.len(),
        fenced = fence.len(),
        ms = start.elapsed().as_millis() as u64,
        "RW layouts recalled before a snapshot"
    );
}

/// Answers node `from`'s `PEERPROC_SNAP_QUIESCE`.
pub async fn answer(nfs: &Arc<NfsState>, from: u64, body: &[u8]) -> Result<Vec<u8>, u32> {
    let c: QuiesceCall = postcard::from_bytes(body).map_err(|_| proto::peer::PEER_ERR_INVAL)?;
    let a = match c {
        QuiesceCall::Hold { tag, ttl_ms } => {
            match hold(nfs, (from, tag), Duration::from_millis(ttl_ms)).await {
                Ok(()) => QuiesceAnswer::Held,
                Err(QuiesceError::InFlight(_)) => QuiesceAnswer::InFlight,
                Err(_) => QuiesceAnswer::Busy,
            }
        }
        QuiesceCall::Release { tag } => {
            nfs.quiesce.release((from, tag));
            QuiesceAnswer::Released
        }
    };
    postcard::to_stdvec(&a).map_err(|_| proto::peer::PEER_ERR_INVAL)
}

/// Every MDS node's gate shut for one snapshot create; opened again on drop.
pub struct Quiesce {
    nfs: Arc<NfsState>,
    by: By,
    remote: Option<Remote>,
}

struct Remote {
    peers: Arc<meta::raft::network::Peers>,
    nodes: Vec<u64>,
    lease: Arc<Mutex<Lease>>,
    renewer: tokio::task::JoinHandle<()>,
}

struct Lease {
    /// Start of the last round every holding node answered `Held`.
    last_ok: Instant,
    lost: bool,
}

impl Quiesce {
    /// Whether every node surely still holds its gate shut: the cut is decided only then.
    pub fn trusted(&self) -> bool {
        let Some(r) = &self.remote else {
            return true;
        };
        let l = r.lease.lock().unwrap_or_else(|e| e.into_inner());
        !l.lost && l.last_ok.elapsed() < TRUST
    }
}

impl Drop for Quiesce {
    fn drop(&mut self) {
        self.nfs.quiesce.release(self.by);
        if let Some(r) = self.remote.take() {
            r.renewer.abort();
            let release = QuiesceCall::Release { tag: self.by.1 };
            // Best effort: a hold not released runs out by itself.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = round(&r.peers, &r.nodes, &release).await;
                });
            }
        }
    }
}

/// Shuts the gate on every MDS node for a snapshot create by this one (module comment).
pub async fn quiesce_all(nfs: &Arc<NfsState>) -> Result<Quiesce, QuiesceError> {
    static TAGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Unique across this node's restarts too: a hold of an earlier life's may still be
    // running out on another node.
    let boot = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let tag = boot.wrapping_add(TAGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let by = (u64::from(nfs.node), tag);
    let start = Instant::now();
    let peers = nfs.ns.peers().cloned();
    let others: Vec<u64> = peers
        .as_ref()
        .map(|p| p.nodes().into_keys().filter(|n| *n != p.me()).collect())
        .unwrap_or_default();
    let call = QuiesceCall::Hold {
        tag,
        ttl_ms: QUIESCE_TTL.as_millis() as u64,
    };
    // Here and on the others at once: each waits for its own operations in flight.
    let (here, answers) = tokio::join!(hold(nfs, by, QUIESCE_TTL), async {
        match &peers {
            Some(p) => round(p, &others, &call).await,
            None => Vec::new(),
        }
    });
    // From here on, dropping `q` releases whatever was held.
    let mut q = Quiesce {
        nfs: nfs.clone(),
        by,
        remote: None,
    };
    let Some(peers) = peers else {
        return here.map(|()| q);
    };
    let mut held = Vec::new();
    let mut failed = here.err();
    for (n, a) in others.iter().zip(answers) {
        match a {
            Some(QuiesceAnswer::Held) => held.push(*n),
            Some(QuiesceAnswer::InFlight) => failed = failed.or(Some(QuiesceError::InFlight(*n))),
            Some(_) => failed = failed.or(Some(QuiesceError::Busy(*n))),
            None if nfs.cluster().is_some_and(|c| c.clients_gone(&peers, *n)) => {}
            None => failed = failed.or(Some(QuiesceError::NoAnswer(*n))),
        }
    }
    let lease = Arc::new(Mutex::new(Lease {
        last_ok: start,
        lost: false,
    }));
    let renewer = {
        let (peers, nodes, lease) = (peers.clone(), held.clone(), lease.clone());
        let nfs = nfs.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let start = Instant::now();
                let here = hold(&nfs, by, QUIESCE_TTL).await.is_ok();
                let all = round(&peers, &nodes, &call)
                    .await
                    .iter()
                    .all(|a| matches!(a, Some(QuiesceAnswer::Held)));
                let mut l = lease.lock().unwrap_or_else(|e| e.into_inner());
                if here && all && !l.lost {
                    l.last_ok = start;
                } else {
                    l.lost = true;
                }
            }
        })
    };
    q.remote = Some(Remote {
        peers,
        nodes: held,
        lease,
        renewer,
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(q),
    }
}

/// One call to each of `nodes` at once; `None` for a node that did not answer.
async fn round(
    peers: &meta::raft::network::Peers,
    nodes: &[u64],
    call: &QuiesceCall,
) -> Vec<Option<QuiesceAnswer>> {
    let proc_ = proto::peer::PEERPROC_SNAP_QUIESCE;
    crate::dataservers::holds::ask_each(peers, nodes, proc_, call, QUIESCE_CALL).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_lets_operations_in_until_a_quiesce_holds_it_and_a_silent_ones_runs_out() {
        let q = Quiescer::default();
        let inside = q.enter().expect("open");
        let shut = q.gate.clone().write_owned();
        tokio::pin!(shut);
        // The quiesce waits for the operation in flight, and lets no new one in meanwhile.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut shut)
                .await
                .is_err(),
            "shut while an operation was inside"
        );
        assert_eq!(q.enter().err(), Some(NfsError::Delay));
        drop(inside);
        let shut = shut.await;
        *q.held.lock().unwrap() = Some(Held {
            by: (2, 1),
            until: Instant::now() + Duration::from_millis(100),
            _shut: shut,
        });
        assert_eq!(q.enter().err(), Some(NfsError::Delay));
        assert_eq!(
            q.renew((3, 1), QUIESCE_TTL),
            Some(false),
            "another coordinator's"
        );
        assert_eq!(q.renew((2, 1), Duration::from_millis(100)), Some(true));
        q.release((2, 2));
        assert_eq!(
            q.enter().err(),
            Some(NfsError::Delay),
            "only its coordinator's create releases it"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(q.enter().is_ok(), "ran out");
        assert_eq!(q.renew((2, 1), QUIESCE_TTL), None, "nothing left to renew");
    }
}
