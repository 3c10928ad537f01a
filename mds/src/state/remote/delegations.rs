//! Delegations (read and write, of files and directories) with several MDS nodes.
//!
//! Each node keeps its own clients' delegations, as it keeps their opens. What a node must
//! know of the others is only where a delegation may be out, so that a change through it
//! (a write open, SETATTR, WRITE, or a change of a directory's entries) recalls it first:
//!
//! - Before a node hands out a delegation on a file, it tells every other node ("note"). A
//!   node that has the file open for writing, or a conflicting operation on it in flight,
//!   refuses, and no delegation is handed out; otherwise it records the file as delegated
//!   at that node to that client (`elsewhere`). A node that does not answer also means no
//!   delegation. A client's own change does not recall its own delegation, as on one node.
//! - Write delegations the same, with a note of their own (`NoteWrite`): a node refuses it
//!   while any other client holds any state on the file there, or anyone a delegation, or
//!   an operation that reads the file is in flight there; and readers (an open for reading,
//!   READ outside any open, another client's GETATTR of size or change) conflict with them
//!   as changes conflict with every delegation: registered as `Busy` for reading, they
//!   recall only the write delegations (`RecallWriters`), and the entry then stays as a
//!   read delegation's until the sweep finds out what is left.
//! - A conflicting operation registers itself first (`Busy`), then reads `elsewhere`, under
//!   the same lock the note takes: either the note sees the operation and refuses, or the
//!   operation sees the note and recalls. It asks each node in `elsewhere` to recall its
//!   delegations on the file; that node sends CB_RECALL, waits as a local conflict does
//!   (`recall::RETURN_WAIT`), and answers whether any is still out. Still out: DELAY, and
//!   the client tries again, as with a local recall.
//! - A question from another node (a recall, or the sweep's "which do you still
//!   delegate") also aborts the delegations this node is still about to hand out (`aborts`):
//!   so an answer "none here" stays true for every delegation numbered up to it, and the
//!   asker can forget the file for that node.
//! - Entries go when the node answers a recall with none out, when the periodic sweep finds
//!   the node no longer delegates the file, when the node has been unreachable for longer
//!   than a cut-off node takes to lose its clients (`isolation::lock_grace`, as locks), or
//!   when the node that took a dead node's client address over says the dead node's
//!   clients have all reclaimed or lost their state (`Gone`): a reclaim gets no delegation,
//!   so their delegations ended with the node.
//!
//! One node (no peers): none of this runs.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{NfsError, NfsResult};
use crate::state::remote::nodes::{files_by_node, given_up};
use crate::state::StateId;
use crate::state::{Access, NfsState};
use meta::namespace::ShardId;

/// Most files this node records as delegated elsewhere, and most holders per file; past them,
/// notes are refused (no new delegations elsewhere) until the sweep or recalls make room.
const MAX_ELSEWHERE: usize = 65_536;
const MAX_HOLDERS: usize = 64;
/// One question to another node.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A note: shorter, since the OPEN that wants the delegation waits for it (and gets none
/// if a node does not answer in time).
const NOTE_TIMEOUT: Duration = Duration::from_secs(1);
/// Rounds of `Gone` for the nodes that did not answer, and the pause between two.
const GONE_ROUNDS: u32 = 5;
const GONE_RETRY: Duration = Duration::from_secs(2);
/// How often the entries are checked against what their nodes still delegate.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// `PEERPROC_DELEG`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DelegCall {
    /// The sender is about to delegate `ino` to its client `holder` (its delegation number
    /// `grant`).
    Note { ino: u64, grant: u64, holder: u64 },
    /// Recall your delegations on `ino`, except client `except`'s (whose own change it is).
    Recall { ino: u64, except: Option<u64> },
    /// Which of these files do you still delegate (at most `MAX_DELEG_FILES`)?
    Held { inos: Vec<u64> },
    /// Node `node` died and its clients have reclaimed or lost their state: its
    /// delegations recorded before `ago_ms` ago are gone.
    Gone { node: u64, ago_ms: u64 },
    /// `Note` of a write delegation. (New variants go at the end: the wire form is the
    /// variant's index.)
    NoteWrite { ino: u64, grant: u64, holder: u64 },
    /// Recall your write delegations on `ino`, except client `except`'s (who reads it).
    RecallWriters { ino: u64, except: Option<u64> },
}

/// `PEERPROC_DELEG`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DelegAnswer {
    /// To a note: may the sender delegate?
    Noted(bool),
    /// To a recall: whether a delegation on the file is still out here, and the last
    /// delegation number handed out or aborted when the question came.
    Recalled {
        outstanding: bool,
        as_of: u64,
    },
    /// To `Held`: the files still delegated here, as of delegation number `as_of`.
    Held {
        held: Vec<u64>,
        as_of: u64,
    },
    Done,
}

/// One file's (node, client) pairs that may hold delegations on it elsewhere.
type Holders = BTreeMap<(u64, u64), Noted>;

/// What a node noted of one client's delegations on one file.
#[derive(Debug, Clone, Copy)]
struct Noted {
    /// The highest delegation number noted.
    grant: u64,
    /// When this node first heard of it.
    at: Instant,
    /// One may be a write delegation.
    write: bool,
}

/// Where other nodes may have delegated files, and this node's conflicting operations in
/// flight. Lock order: this table's lock before the `StateManager`'s.
pub struct RemoteDelegations {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Per file: the (node, client) pairs that may hold delegations on it, with the highest
    /// delegation number the node noted and when this node first heard of it. The client
    /// is kept so that its own changes do not wait for its own delegation: after its node
    /// died, its client id lives on at the taker (`state::adopt`).
    elsewhere: HashMap<u64, Holders>,
    /// Per file: this node's operations in flight that a new delegation would conflict with.
    busy: HashMap<u64, u32>,
    /// Per file: this node's reading operations in flight, which only a new write delegation
    /// would conflict with.
    busy_reading: HashMap<u64, u32>,
    /// This node's last delegation number; the high bits are its boot count, so numbers
    /// grow across restarts too.
    last_grant: u64,
    /// Bumped by each question from another node: a grant begun before it is not made.
    aborts: u64,
}

impl RemoteDelegations {
    pub fn new(boot: u64) -> RemoteDelegations {
        RemoteDelegations {
            inner: Mutex::new(Inner {
                elsewhere: HashMap::new(),
                busy: HashMap::new(),
                busy_reading: HashMap::new(),
                last_grant: (boot & 0x00ff_ffff) << 40,
                aborts: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files recorded as delegated elsewhere (for `cfs admin status`).
    pub fn files_elsewhere(&self) -> usize {
        self.lock().elsewhere.len()
    }
}

/// This node's operation on `inos` in flight: no other node delegates them meanwhile.
pub struct Busy {
    held: Option<(Arc<NfsState>, Vec<u64>, Access)>,
}

impl Busy {
    pub(crate) fn none() -> Busy {
        Busy { held: None }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let Some((nfs, inos, access)) = self.held.take() else {
            return;
        };
        let mut g = nfs.remote_delegs.lock();
        let busy = g.busy_for(access);
        for ino in inos {
            if let Some(n) = busy.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    busy.remove(&ino);
                }
            }
        }
    }
}

impl Inner {
    fn busy_for(&mut self, access: Access) -> &mut HashMap<u64, u32> {
        match access {
            Access::Change => &mut self.busy,
            Access::Read => &mut self.busy_reading,
        }
    }
}

/// What to recall on one file at one node: (file, node, highest delegation number noted).
pub type Entry = (u64, u64, u64);

/// Registers a conflicting operation of client `clientid` on `inos` and returns it with the
/// entries to recall (other clients' delegations only; for a reader, only those that may be
/// write delegations). No peers: nothing to register.
pub fn begin_conflict(
    nfs: &Arc<NfsState>,
    inos: &[u64],
    clientid: Option<u64>,
    access: Access,
) -> (Busy, Vec<Entry>) {
    if nfs.ns.peers().is_none() {
        return (Busy::none(), Vec::new());
    }
    let mut g = nfs.remote_delegs.lock();
    let mut recall: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for &ino in inos {
        *g.busy_for(access).entry(ino).or_default() += 1;
        let Some(holders) = g.elsewhere.get(&ino) else {
            continue;
        };
        for ((node, holder), n) in holders {
            if Some(*holder) != clientid && (access == Access::Change || n.write) {
                let e = recall.entry((ino, *node)).or_default();
                *e = (*e).max(n.grant);
            }
        }
    }
    let recall = recall
        .into_iter()
        .map(|((ino, node), grant)| (ino, node, grant))
        .collect();
    (
        Busy {
            held: Some((nfs.clone(), inos.to_vec(), access)),
        },
        recall,
    )
}

/// Asks the nodes in `entries` to recall their delegations (but `except`'s, the client
/// making the change; for a reader, only write delegations). Ok once none is out; DELAY
/// while one is (or its node cannot be asked and may still have clients that use it).
pub async fn recall_elsewhere(
    nfs: &Arc<NfsState>,
    entries: Vec<Entry>,
    except: Option<u64>,
    access: Access,
) -> NfsResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let asks = entries.into_iter().map(|(ino, node, grant)| async move {
        let c = match access {
            Access::Change => DelegCall::Recall { ino, except },
            Access::Read => DelegCall::RecallWriters { ino, except },
        };
        let answer = call(nfs, node, &c).await;
        (ino, node, grant, answer)
    });
    let mut out = false;
    for (ino, node, grant, answer) in futures::future::join_all(asks).await {
        match answer {
            Some(DelegAnswer::Recalled {
                outstanding: false,
                as_of,
            }) => {
                if grant <= as_of {
                    match access {
                        Access::Change => forget(nfs, ino, node, except, as_of),
                        // Its read delegations may still be out: kept, for changes to recall.
                        Access::Read => no_writers(nfs, ino, node, except, as_of),
                    }
                }
            }
            Some(_) => out = true,
            None if given_up(nfs, node) => {
                tracing::info!(
                    node,
                    ino,
                    "delegations of an MDS node unreachable past the grace: dropped"
                );
                forget_node(nfs, node, None);
            }
            None => out = true,
        }
    }
    if out {
        Err(NfsError::Delay)
    } else {
        Ok(())
    }
}

/// Drops the file's entries of `node` (but client `except`'s) that the node noted up to
/// delegation number `as_of`.
fn forget(nfs: &NfsState, ino: u64, node: u64, except: Option<u64>, as_of: u64) {
    let mut g = nfs.remote_delegs.lock();
    if let Some(holders) = g.elsewhere.get_mut(&ino) {
        holders.retain(|(n, h), e| *n != node || Some(*h) == except || e.grant > as_of);
        if holders.is_empty() {
            g.elsewhere.remove(&ino);
        }
    }
}

/// The file's entries of `node` (but client `except`'s) that the node noted up to delegation
/// number `as_of` are no write delegations any more.
fn no_writers(nfs: &NfsState, ino: u64, node: u64, except: Option<u64>, as_of: u64) {
    let mut g = nfs.remote_delegs.lock();
    if let Some(holders) = g.elsewhere.get_mut(&ino) {
        for ((n, h), e) in holders.iter_mut() {
            if *n == node && Some(*h) != except && e.grant <= as_of {
                e.write = false;
            }
        }
    }
}

/// The files `node` may have write-delegated (noted before `before`, if given).
fn write_delegated_at(nfs: &NfsState, node: u64, before: Option<Instant>) -> Vec<u64> {
    let g = nfs.remote_delegs.lock();
    g.elsewhere
        .iter()
        .filter(|(_, holders)| {
            holders
                .iter()
                .any(|((n, _), e)| *n == node && e.write && before.is_none_or(|b| e.at < b))
        })
        .map(|(ino, _)| *ino)
        .collect()
}

/// `node`'s delegations are over without their holders returning them (it died, or has been
/// cut off for good): a write delegation's holder may have written the data servers through
/// its layout and sent no LAYOUTCOMMIT (Linux sends none under one, nor when it reclaims),
/// so the sizes the data servers hold are recorded before the entries go and readers are let
/// in. Then the entries go. A few files at a time: each may wait for a data server. With the
/// server's times: a holder that returned nothing reported none for its last writes.
async fn settle_and_forget_node(nfs: &Arc<NfsState>, node: u64, before: Option<Instant>) {
    use futures::StreamExt;
    futures::stream::iter(write_delegated_at(nfs, node, before))
        .for_each_concurrent(RECORD_AT_ONCE, |ino| {
            use crate::state::stored_size::{record, Times};
            record(nfs, ino, Times::Server)
        })
        .await;
    forget_node(nfs, node, before);
}

/// Files whose sizes `settle_and_forget_node` records at once.
const RECORD_AT_ONCE: usize = 8;

/// Drops every entry of `node` (noted before `before`, if given).
pub(crate) fn forget_node(nfs: &NfsState, node: u64, before: Option<Instant>) {
    let mut g = nfs.remote_delegs.lock();
    g.elsewhere.retain(|_, holders| {
        holders.retain(|(n, _), e| *n != node || before.is_some_and(|b| e.at >= b));
        !holders.is_empty()
    });
}

/// Hands out a delegation (a write delegation if `write`) on `ino` to `holder` with `make`
/// (the `StateManager`'s, which checks this node's own conflicts) once every other node has
/// taken note; None if one refuses or does not answer, or a conflict began meanwhile.
pub async fn grant(
    nfs: &Arc<NfsState>,
    ino: u64,
    holder: u64,
    write: bool,
    make: impl FnOnce() -> Option<StateId>,
) -> Option<StateId> {
    let Some(peers) = nfs.ns.peers() else {
        return make();
    };
    let (number, aborts) = {
        let mut g = nfs.remote_delegs.lock();
        if g.in_the_way(ino, holder, write) {
            return None;
        }
        g.last_grant += 1;
        (g.last_grant, g.aborts)
    };
    let others: Vec<u64> = peers
        .nodes()
        .into_keys()
        .filter(|n| *n != peers.me())
        .collect();
    // A node known down would only make the OPEN wait for its timeout.
    if others.iter().any(|n| peers.down_since(*n).is_some()) {
        return None;
    }
    let note = if write {
        DelegCall::NoteWrite {
            ino,
            grant: number,
            holder,
        }
    } else {
        DelegCall::Note {
            ino,
            grant: number,
            holder,
        }
    };
    let answers = futures::future::join_all(others.iter().map(|n| call(nfs, *n, &note))).await;
    if !answers
        .iter()
        .all(|a| matches!(a, Some(DelegAnswer::Noted(true))))
    {
        tracing::debug!(
            ino,
            "no delegation: another MDS node refused or did not answer"
        );
        return None;
    }
    let g = nfs.remote_delegs.lock();
    if g.aborts != aborts || g.in_the_way(ino, holder, write) {
        return None;
    }
    // Under this table's lock, so no question from another node comes between the check
    // and the grant.
    make()
}

async fn call(nfs: &NfsState, node: u64, c: &DelegCall) -> Option<DelegAnswer> {
    let peers = nfs.ns.peers()?;
    let body = postcard::to_stdvec(c).ok()?;
    let timeout = match c {
        DelegCall::Note { .. } | DelegCall::NoteWrite { .. } => NOTE_TIMEOUT,
        _ => CALL_TIMEOUT,
    };
    match peers
        .call(node, proto::peer::PEERPROC_DELEG, ShardId(0), body, timeout)
        .await
    {
        Ok(b) => postcard::from_bytes(&b).ok(),
        Err(e) => {
            tracing::debug!(node, "delegation call failed: {e}");
            None
        }
    }
}

impl Inner {
    /// Whether something here keeps `ino` from being delegated to `holder` (for writing if
    /// `write`): a conflicting operation in flight, or a delegation another node noted that
    /// the new one may not stand beside (any, for a write delegation; a write one for a read
    /// delegation).
    fn in_the_way(&self, ino: u64, holder: u64, write: bool) -> bool {
        if self.busy.contains_key(&ino) || (write && self.busy_reading.contains_key(&ino)) {
            return true;
        }
        self.elsewhere.get(&ino).is_some_and(|h| {
            h.iter()
                .any(|((_, c), e)| *c != holder && (write || e.write))
        })
    }
}

/// Whether another node may have delegated `ino` for writing to a client other than `except`.
pub fn written_elsewhere(nfs: &NfsState, ino: u64, except: u64) -> bool {
    nfs.ns.peers().is_some()
        && nfs
            .remote_delegs
            .lock()
            .elsewhere
            .get(&ino)
            .is_some_and(|h| h.iter().any(|((_, c), e)| *c != except && e.write))
}

/// Another node (`from`) noted that its client `holder` got a delegation of `ino` (a write
/// delegation if `write`): kept, unless the table is full or something here stands in the way
/// (then the grant is refused): for a read delegation, a write open or a write delegation
/// here; for a write delegation, any other client's state or anybody's delegation here.
pub(crate) fn noted_elsewhere(
    nfs: &NfsState,
    from: u64,
    ino: u64,
    grant: u64,
    holder: u64,
    write: bool,
) -> DelegAnswer {
    let mut g = nfs.remote_delegs.lock();
    let room = match g.elsewhere.get(&ino) {
        Some(h) => h.len() < MAX_HOLDERS || h.contains_key(&(from, holder)),
        None => g.elsewhere.len() < MAX_ELSEWHERE,
    };
    // Under this table's lock: a conflicting open registers itself as busy before it looks
    // here, and stays busy until it is in the state.
    let here = if write {
        nfs.state.held_apart_from(ino, holder)
    } else {
        nfs.state.write_opened(ino) || nfs.state.write_delegated(ino)
    };
    let ok = room && !here && !g.in_the_way(ino, holder, write);
    if ok {
        let e = g
            .elsewhere
            .entry(ino)
            .or_default()
            .entry((from, holder))
            .or_insert(Noted {
                grant,
                at: Instant::now(),
                write,
            });
        e.grant = e.grant.max(grant);
        e.write |= write;
    }
    DelegAnswer::Noted(ok)
}

/// Another node asks this one to recall: a grant this node began before the question is not
/// made (`aborts`). This node's last delegation number, which the answer is as of.
pub(crate) fn asked(nfs: &NfsState) -> u64 {
    let mut g = nfs.remote_delegs.lock();
    g.aborts += 1;
    g.last_grant
}

/// Which of `inos` this node's clients hold delegations of, as of this node's last delegation
/// number; a grant begun before the question is not made (`aborts`).
pub(crate) fn held_here(nfs: &NfsState, inos: &[u64]) -> DelegAnswer {
    let mut g = nfs.remote_delegs.lock();
    g.aborts += 1;
    let as_of = g.last_grant;
    let held = nfs.state.delegated(inos);
    drop(g);
    DelegAnswer::Held { held, as_of }
}

/// This node took over dead node `node`'s client address at `since`: once its clients have
/// reclaimed (or the grace period ended), tells every node, itself included, that the dead
/// node's delegations (and layouts, `cluster::holds`) are gone. Best effort, in up to
/// `GONE_ROUNDS` rounds: a node that misses it drops the delegations later anyway, and waits
/// for the dead node before its maintenance jobs.
pub async fn announce_gone(nfs: Arc<NfsState>, node: u64, since: Instant) {
    while nfs.state.reclaims_open() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(peers) = nfs.ns.peers() else {
        return;
    };
    settle_and_forget_node(&nfs, node, Some(since)).await;
    let ago_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
    crate::state::remote::shares::node_gone(&nfs, node, since);
    if let Some(c) = nfs.cluster() {
        c.note_gone(node, since);
    }
    let mut left: Vec<u64> = peers
        .nodes()
        .into_keys()
        .filter(|n| *n != peers.me() && *n != node)
        .collect();
    let mut ago_ms = ago_ms;
    // A few rounds for the nodes that did not answer: a node that misses it waits for the
    // dead node before it starts a maintenance job (`cluster::holds`).
    for round in 1..=GONE_ROUNDS {
        let c = DelegCall::Gone { node, ago_ms };
        let answers = futures::future::join_all(left.iter().map(|n| call(&nfs, *n, &c))).await;
        left = left
            .into_iter()
            .zip(answers)
            .filter(|(_, a)| a.is_none())
            .map(|(n, _)| n)
            .collect();
        if left.is_empty() || round == GONE_ROUNDS {
            break;
        }
        tokio::time::sleep(GONE_RETRY).await;
        ago_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
    }
    if !left.is_empty() {
        tracing::warn!(node, nodes = ?left, "nodes not told that the dead node's clients are done reclaiming");
    }
    tracing::info!(
        node,
        "the dead MDS node's clients are done reclaiming: its delegations are forgotten"
    );
}

/// Every `SWEEP_EVERY`, asks each node with entries which of those files it still delegates,
/// and drops the rest: delegations returned or revoked there, and grants that never happened.
pub async fn sweep(nfs: std::sync::Weak<NfsState>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(nfs) = nfs.upgrade() else {
            return;
        };
        let by_node = files_by_node(&nfs.remote_delegs.lock().elsewhere);
        for (node, inos) in by_node {
            match call(&nfs, node, &DelegCall::Held { inos: inos.clone() }).await {
                Some(DelegAnswer::Held { held, as_of }) => {
                    for ino in inos.into_iter().filter(|i| !held.contains(i)) {
                        forget(&nfs, ino, node, None, as_of);
                    }
                }
                _ if given_up(&nfs, node) => settle_and_forget_node(&nfs, node, None).await,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_survive_the_wire() {
        for c in [
            DelegCall::Note {
                ino: 7,
                grant: 9,
                holder: 3,
            },
            DelegCall::Recall {
                ino: 7,
                except: Some(3),
            },
            DelegCall::Held { inos: vec![1, 2] },
            DelegCall::Gone {
                node: 3,
                ago_ms: 10,
            },
        ] {
            let b = postcard::to_stdvec(&c).unwrap();
            let back: DelegCall = postcard::from_bytes(&b).unwrap();
            assert_eq!(format!("{c:?}"), format!("{back:?}"));
        }
        let a = DelegAnswer::Recalled {
            outstanding: true,
            as_of: 5,
        };
        let b = postcard::to_stdvec(&a).unwrap();
        assert_eq!(postcard::from_bytes::<DelegAnswer>(&b).unwrap(), a);
    }

    #[test]
    fn delegation_numbers_grow_across_restarts() {
        let first = RemoteDelegations::new(4);
        let later = RemoteDelegations::new(5);
        first.lock().last_grant += 1_000_000;
        assert!(later.lock().last_grant > first.lock().last_grant);
    }
}
