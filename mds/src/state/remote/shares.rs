//! Share reservations (OPEN deny modes, RFC 8881 §9.7) with several MDS nodes.
//!
//! Each node keeps its own clients' opens, as on one node. An open must not be granted while
//! another node's open denies its access, and an open that denies something must not be
//! granted while another node's open has that access:
//!
//! - Every open (and I/O with a special stateid) registers itself in flight (`pending`) and
//!   then reads the other nodes' deny bits on the file (`denied`), under this table's lock.
//! - Before an open that denies anything (deny ≠ NONE) goes into the state, its node tells
//!   every other node ("note"). A node with an open, or an open in flight, that conflicts
//!   refuses; otherwise it records the noting node's deny bits on the file. The note's check
//!   and the record are under the same lock an open registers under: either the note sees the
//!   open and refuses, or the open sees the note.
//! - A note is only a hint, and never withdrawn: an open that meets a conflicting note asks
//!   the noting node what it still denies on the file (`Denies`), which answers from its opens
//!   and those in flight. A deny whose open closed, failed or went with its client so costs
//!   one question, not a refusal. Answers carry the node's last note number, so a note sent
//!   after the answer is not forgotten with it.
//! - A node that cannot be asked: DELAY, and the client tries again, until that node has been
//!   unreachable past the lock grace (`isolation::lock_grace`: its clients lost their opens),
//!   or the node that took its client address over says its clients reclaimed
//!   (`remote_delegations::announce_gone`; `node_gone`): from then on, until it answers
//!   again, it has no opens to ask about. A reclaim does not wait for a node that cannot be
//!   asked (the open it brings back was checked against every node's when first made), and
//!   notes again from the taker, so the others see the deny there.
//! - A note of the opening client's own does not stand in its way: after its node died, its
//!   client id lives on at the taker (`state::adopt`) and reclaims the open the note is of.
//!   So two open-owners of one client, one on each node, are not checked against each other
//!   across nodes; only a takeover puts one client's opens on two nodes.
//! - A sweep asks each noting node which of its notes still hold, to keep the table small.
//!
//! One node (no peers): none of this runs.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{NfsError, NfsResult};
use crate::state::NfsState;
use meta::namespace::ShardId;

/// Most files with notes from other nodes, and most (node, client) notes per file; past
/// them, notes are refused as busy (deny opens elsewhere get DELAY) until the sweep or
/// answers make room.
const MAX_FILES: usize = 65_536;
const MAX_NOTES: usize = 64;
/// One question to another node; an OPEN waits for it.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds of questions one open asks before it gives up with DELAY (new notes may come in
/// while it asks).
const ASK_ROUNDS: u32 = 3;
/// How often notes are checked against what their nodes still deny.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// `PEERPROC_SHARE`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShareCall {
    /// The sender is about to give its client `holder` an open of `ino` with these share
    /// access and deny bits (its note number `number`).
    Note {
        ino: u64,
        access: u32,
        deny: u32,
        number: u64,
        holder: u64,
    },
    /// What do your opens deny on these files (at most `MAX_DELEG_FILES`)? Each with the
    /// access the asker wants: a courtesy client whose open denies it is expired first.
    Denies { files: Vec<(u64, u32)> },
}

/// `PEERPROC_SHARE`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShareAnswer {
    /// To a note: noted, the sender may open.
    Noted,
    /// To a note: an open here conflicts (`busy`: only one in flight, try again).
    Refused { busy: bool },
    /// To `Denies`: the deny bits per file, in order, as of note number `as_of`.
    Denies { deny: Vec<u32>, as_of: u64 },
}

/// One file's notes: per (node, client), the deny bits, the highest note number, and when
/// this node first heard of it.
type Notes = BTreeMap<(u64, u64), (u32, u64, Instant)>;

/// The other nodes' deny bits on files, and this node's opens in flight. Lock order: this
/// table's lock before the `StateManager`'s.
pub struct RemoteShares {
    inner: Mutex<Inner>,
}

struct Inner {
    denied: HashMap<u64, Notes>,
    /// Per file: this node's opens in flight, (id, access, deny).
    pending: HashMap<u64, Vec<(u64, u32, u32)>>,
    next_pending: u64,
    /// This node's last note number; the high bits are its boot count, so numbers grow
    /// across restarts too.
    last_note: u64,
    /// Dead nodes whose clients moved to the node that took their address over, and since
    /// when: while such a node has not answered since, it has no opens to ask about.
    gone: BTreeMap<u64, Instant>,
}

impl RemoteShares {
    pub fn new(boot: u64) -> RemoteShares {
        RemoteShares {
            inner: Mutex::new(Inner {
                denied: HashMap::new(),
                pending: HashMap::new(),
                next_pending: 0,
                last_note: (boot & 0x00ff_ffff) << 40,
                gone: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// The nodes whose notes on `ino` deny `access`, but client `clientid`'s own.
    fn denying(&self, ino: u64, access: u32, clientid: u64) -> BTreeSet<u64> {
        self.denied.get(&ino).map_or_else(BTreeSet::new, |notes| {
            notes
                .iter()
                .filter(|((_, holder), (deny, _, _))| *holder != clientid && deny & access != 0)
                .map(|((node, _), _)| *node)
                .collect()
        })
    }

    fn in_flight_conflicts(&self, ino: u64, access: u32, deny: u32) -> bool {
        self.pending
            .get(&ino)
            .is_some_and(|v| v.iter().any(|(_, a, d)| a & deny != 0 || d & access != 0))
    }

    /// What this node denies on `ino` counting opens in flight (the state's part is added by
    /// the caller).
    fn pending_deny(&self, ino: u64) -> u32 {
        self.pending
            .get(&ino)
            .map_or(0, |v| v.iter().fold(0, |acc, (_, _, d)| acc | d))
    }

    /// Node `node` denies `deny` on `ino` as of its note number `as_of`: its notes up to that
    /// number say so from now on (none left if 0).
    fn settle(&mut self, ino: u64, node: u64, deny: u32, as_of: u64) {
        if let Some(notes) = self.denied.get_mut(&ino) {
            for ((n, _), (d, number, _)) in notes.iter_mut() {
                if *n == node && *number <= as_of {
                    *d = deny;
                }
            }
            notes.retain(|_, (d, _, _)| *d != 0);
            if notes.is_empty() {
                self.denied.remove(&ino);
            }
        }
    }
}

/// This node's open of one file in flight: other nodes' deny opens of it are refused (as
/// busy) until it is in the state, where their notes see it. Dropped once it is.
pub struct Pending {
    held: Option<(Arc<NfsState>, u64, u64)>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some((nfs, ino, id)) = self.held.take() else {
            return;
        };
        let mut g = nfs.remote_shares.lock();
        if let Some(v) = g.pending.get_mut(&ino) {
            v.retain(|(i, _, _)| *i != id);
            if v.is_empty() {
                g.pending.remove(&ino);
            }
        }
    }
}

/// Before client `clientid` gets an open of `ino` with these share `access` and `deny` bits
/// (or does I/O with a special stateid: `deny` 0, `clientid` 0): Ok once no other node's
/// open denies the access and, for a deny open, every other node has taken note. Keep the
/// returned `Pending` until the open is in the state. SHARE_DENIED when another node's open
/// conflicts; DELAY while one is only in flight or its node cannot be asked. A `reclaim`
/// does not wait for a node that cannot be asked: the open it brings back was checked
/// against every node's when it was first made, and the node that died with it may be the
/// one that does not answer.
pub async fn begin_open(
    nfs: &Arc<NfsState>,
    ino: u64,
    access: u32,
    deny: u32,
    clientid: u64,
    reclaim: bool,
) -> NfsResult<Pending> {
    let Some(peers) = nfs.ns.peers() else {
        return Ok(Pending { held: None });
    };
    let pending = {
        let mut g = nfs.remote_shares.lock();
        g.next_pending += 1;
        let id = g.next_pending;
        g.pending.entry(ino).or_default().push((id, access, deny));
        Pending {
            held: Some((nfs.clone(), ino, id)),
        }
    };
    settle_notes(nfs, ino, access, clientid, reclaim).await?;
    if deny != 0 {
        let others: Vec<u64> = peers
            .nodes()
            .into_keys()
            .filter(|n| *n != peers.me())
            .collect();
        note_everywhere(nfs, &others, ino, access, deny, clientid, reclaim).await?;
    }
    Ok(pending)
}

/// Ok once no other node's note on `ino` denies `access` (but client `clientid`'s own): each
/// node whose note does is asked what it still denies.
async fn settle_notes(
    nfs: &Arc<NfsState>,
    ino: u64,
    access: u32,
    clientid: u64,
    reclaim: bool,
) -> NfsResult<()> {
    // Nodes a reclaim does not wait for.
    let mut unasked = BTreeSet::new();
    for round in 0..=ASK_ROUNDS {
        let mut nodes = nfs.remote_shares.lock().denying(ino, access, clientid);
        nodes.retain(|n| !unasked.contains(n));
        if nodes.is_empty() {
            return Ok(());
        }
        if round == ASK_ROUNDS {
            break;
        }
        let ask = ShareCall::Denies {
            files: vec![(ino, access)],
        };
        let answers = futures::future::join_all(nodes.iter().map(|n| call(nfs, *n, &ask))).await;
        let mut delay = false;
        for (node, answer) in nodes.into_iter().zip(answers) {
            match answer {
                Some(ShareAnswer::Denies { deny: d, as_of }) if d.len() == 1 => {
                    nfs.remote_shares.lock().settle(ino, node, d[0], as_of);
                    if d[0] & access != 0 {
                        return Err(NfsError::ShareDenied);
                    }
                }
                None if no_opens_at(nfs, node) => {
                    tracing::info!(
                        node,
                        ino,
                        "deny notes of an MDS node that lost its clients: dropped"
                    );
                    forget_node(nfs, node, None);
                }
                None if reclaim => {
                    unasked.insert(node);
                }
                _ => delay = true,
            }
        }
        if delay {
            return Err(NfsError::Delay);
        }
    }
    // New notes kept coming in while this open asked.
    Err(NfsError::Delay)
}

/// Ok once every node in `others` has taken note of this node's open of `ino` that denies
/// `deny`: SHARE_DENIED if one has a conflicting open, DELAY if one is busy or does not answer.
async fn note_everywhere(
    nfs: &Arc<NfsState>,
    others: &[u64],
    ino: u64,
    access: u32,
    deny: u32,
    clientid: u64,
    reclaim: bool,
) -> NfsResult<()> {
    let number = {
        let mut g = nfs.remote_shares.lock();
        g.last_note += 1;
        g.last_note
    };
    let note = ShareCall::Note {
        ino,
        access,
        deny,
        number,
        holder: clientid,
    };
    let answers = futures::future::join_all(others.iter().map(|n| call(nfs, *n, &note))).await;
    let mut delay = false;
    for (node, answer) in others.iter().zip(answers) {
        match answer {
            Some(ShareAnswer::Noted) => {}
            Some(ShareAnswer::Refused { busy: false }) => return Err(NfsError::ShareDenied),
            // A node past the grace, or dead with its clients moved, has no opens that
            // could conflict; nor any that conflicts with a reclaimed one.
            None if reclaim || no_opens_at(nfs, *node) => {}
            _ => delay = true,
        }
    }
    if delay {
        tracing::debug!(ino, "deny open: another MDS node is busy or did not answer");
        return Err(NfsError::Delay);
    }
    Ok(())
}

/// Node `node` died and its clients moved (to this node, which took its address over at `at`,
/// or to another, which said so: `remote_delegations::Gone`): its notes from before `at` go,
/// and until it answers again it is not asked about opens, which it has none of.
pub fn node_gone(nfs: &NfsState, node: u64, at: Instant) {
    forget_node(nfs, node, Some(at));
    let mut g = nfs.remote_shares.lock();
    let e = g.gone.entry(node).or_insert(at);
    *e = (*e).max(at);
}

/// Whether node `node`, which did not answer, can have no open that matters: it has been
/// unreachable past the lock grace (its clients lost their state), or its clients moved when
/// it died and it has not answered since.
fn no_opens_at(nfs: &NfsState, node: u64) -> bool {
    if crate::state::remote::nodes::given_up(nfs, node) {
        return true;
    }
    let Some(gone) = nfs.remote_shares.lock().gone.get(&node).copied() else {
        return false;
    };
    nfs.ns
        .peers()
        .is_some_and(|p| p.last_answer(node).is_none_or(|t| t <= gone))
}

/// Drops every note of `node` (recorded before `before`, if given).
fn forget_node(nfs: &NfsState, node: u64, before: Option<Instant>) {
    let mut g = nfs.remote_shares.lock();
    g.denied.retain(|_, notes| {
        notes.retain(|(n, _), (_, _, at)| *n != node || before.is_some_and(|b| *at >= b));
        !notes.is_empty()
    });
}

async fn call(nfs: &NfsState, node: u64, c: &ShareCall) -> Option<ShareAnswer> {
    let peers = nfs.ns.peers()?;
    let body = postcard::to_stdvec(c).ok()?;
    match peers
        .call(
            node,
            proto::peer::PEERPROC_SHARE,
            ShardId(0),
            body,
            CALL_TIMEOUT,
        )
        .await
    {
        Ok(b) => postcard::from_bytes(&b).ok(),
        Err(e) => {
            tracing::debug!(node, "share reservation call failed: {e}");
            None
        }
    }
}

/// Answers another node's `PEERPROC_SHARE`.
pub fn answer(nfs: &NfsState, from: u64, body: &[u8]) -> Result<Vec<u8>, u32> {
    let c: ShareCall = postcard::from_bytes(body).map_err(|_| proto::peer::PEER_ERR_INVAL)?;
    let a = match c {
        ShareCall::Note {
            ino,
            access,
            deny,
            number,
            holder,
        } => {
            let mut g = nfs.remote_shares.lock();
            let room = match g.denied.get(&ino) {
                Some(n) => n.len() < MAX_NOTES || n.contains_key(&(from, holder)),
                None => g.denied.len() < MAX_FILES,
            };
            if g.in_flight_conflicts(ino, access, deny) || !room {
                ShareAnswer::Refused { busy: true }
            } else if nfs.state.share_blocked(ino, access, deny) {
                // Under this table's lock: an open here registers in flight before it reads
                // the notes, and stays so until it is in the state, where this check sees it.
                ShareAnswer::Refused { busy: false }
            } else {
                let e = g
                    .denied
                    .entry(ino)
                    .or_default()
                    .entry((from, holder))
                    .or_insert((0, number, Instant::now()));
                e.0 |= deny;
                e.1 = e.1.max(number);
                ShareAnswer::Noted
            }
        }
        ShareCall::Denies { files } => {
            if files.len() > proto::peer::MAX_DELEG_FILES {
                return Err(proto::peer::PEER_ERR_INVAL);
            }
            let g = nfs.remote_shares.lock();
            let deny = files
                .iter()
                .map(|(ino, access)| nfs.state.deny_bits(*ino, *access) | g.pending_deny(*ino))
                .collect();
            ShareAnswer::Denies {
                deny,
                as_of: g.last_note,
            }
        }
    };
    postcard::to_stdvec(&a).map_err(|_| proto::peer::PEER_ERR_INVAL)
}

/// Every `SWEEP_EVERY`, asks each node with notes what it still denies on those files, and
/// drops what it no longer does: opens closed or gone there, and notes of opens that were
/// never made.
pub async fn sweep(nfs: std::sync::Weak<NfsState>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(nfs) = nfs.upgrade() else {
            return;
        };
        let by_node = crate::state::remote::nodes::files_by_node(&nfs.remote_shares.lock().denied);
        for (node, inos) in by_node {
            let ask = ShareCall::Denies {
                files: inos.iter().map(|i| (*i, 0)).collect(),
            };
            match call(&nfs, node, &ask).await {
                Some(ShareAnswer::Denies { deny, as_of }) if deny.len() == inos.len() => {
                    for (ino, d) in inos.into_iter().zip(deny) {
                        nfs.remote_shares.lock().settle(ino, node, d, as_of);
                    }
                }
                _ if no_opens_at(&nfs, node) => forget_node(&nfs, node, None),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survives<T: Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(v: &T) {
        let bytes = postcard::to_stdvec(v).unwrap();
        let back: T = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(format!("{v:?}"), format!("{back:?}"));
    }

    #[test]
    fn calls_and_answers_survive_the_wire() {
        survives(&ShareCall::Note {
            ino: 7,
            access: 1,
            deny: 2,
            number: 9,
            holder: 3,
        });
        survives(&ShareCall::Denies {
            files: vec![(1, 1), (2, 0)],
        });
        survives(&ShareAnswer::Noted);
        survives(&ShareAnswer::Refused { busy: true });
        survives(&ShareAnswer::Denies {
            deny: vec![0, 3],
            as_of: 5,
        });
    }

    #[test]
    fn a_note_is_settled_only_up_to_the_answers_number() {
        let t = RemoteShares::new(1);
        let now = Instant::now();
        {
            let mut g = t.lock();
            let notes = g.denied.entry(5).or_default();
            notes.insert((2, 10), (2, 100, now));
            notes.insert((2, 11), (2, 200, now));
            notes.insert((3, 12), (1, 50, now));
        }
        assert_eq!(t.lock().denying(5, 2, 0), BTreeSet::from([2]));
        assert_eq!(t.lock().denying(5, 3, 0), BTreeSet::from([2, 3]));
        // A client's own note is not in its way.
        assert!(t.lock().denying(5, 1, 12).is_empty());
        // Node 2 denies nothing as of its note 150: the later note (200) stays.
        t.lock().settle(5, 2, 0, 150);
        let g = t.lock();
        let left: Vec<_> = g.denied[&5].keys().copied().collect();
        assert_eq!(left, vec![(2, 11), (3, 12)]);
    }

    #[test]
    fn opens_in_flight_conflict_both_ways() {
        let t = RemoteShares::new(1);
        t.lock().pending.insert(5, vec![(1, 1, 0), (2, 1, 2)]);
        let g = t.lock();
        // A note denying read meets the read open in flight.
        assert!(g.in_flight_conflicts(5, 1, 1));
        // A note wanting write meets the deny-write open in flight.
        assert!(g.in_flight_conflicts(5, 2, 0));
        assert!(!g.in_flight_conflicts(5, 1, 0));
        assert!(!g.in_flight_conflicts(6, 3, 3));
        assert_eq!(g.pending_deny(5), 2);
    }
}
