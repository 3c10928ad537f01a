//! Membership changes of the metadata service: a node joins a running service, a node is
//! drained from it.
//!
//! The node set is openraft's own replicated state: every shard's membership (voters and
//! learners, each with its NFS address as `BasicNode::addr`) is a log entry of that shard, kept
//! in its snapshots, so a restarted node has it from its log before it hears from anyone.
//! Shard 0's membership is the service's node set: a join adds the node there first (as a
//! learner, which reserves its id) and promotes it there last; a drain removes it there last.
//! So a learner of shard 0 is joining, a voter of shard 0 missing from another shard is being
//! drained, and every node's address book (`Peers`) is the union of its shards' memberships
//! (`follow`).
//!
//! Every node is a voter of every shard: a 4th or 5th node buys fault tolerance (5 voters
//! survive 2 failures), not load (every node still applies every shard's commands). Replica
//! sets smaller than the node set would spread the load, but then a node would hold only some
//! shards, and reads of the others (which are served from the local replica today) would have
//! to be forwarded to a node that holds them.
//!
//! The join token is the cluster secret itself (`cfs server join`): a joined node needs the
//! secret anyway (it MACs its peer calls, checks data servers' heartbeats and derives the same
//! file-handle key as the others), and a token derived from the secret could not give it that
//! without the seed sending the secret over the peer program, which is MACed but not
//! encrypted. With the secret as the token, it never crosses the wire: the join call is MACed
//! with it like every peer call, and a wrong one is refused (`PEER_ERR_AUTH`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use proto::peer::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::network::{PeerError, Peers};
use crate::namespace::{Namespace, ShardId};

/// The shard's current membership (voters, learners, their addresses), as this replica knows it.
fn membership(raft: &super::types::Raft) -> openraft::Membership<u64, BasicNode> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .clone()
}

/// How long a leader waits for a learner to catch up (snapshot and log) before promoting it.
const CATCH_UP: Duration = Duration::from_secs(300);
/// A forwarded membership call waits for the leader's catch-up and two log entries.
const CHANGE_CALL: Duration = Duration::from_secs(310);
/// How long a join or a drain keeps trying one shard whose leader is being elected or busy
/// with another change.
const SHARD_WAIT: Duration = Duration::from_secs(60);
/// Shards changed at once by a join or a drain (each change is two log entries on its leader).
const PARALLEL: usize = 8;
const PAUSE: Duration = Duration::from_millis(300);

/// `PEERPROC_JOIN`'s argument: where the new node's NFS port is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub addr: String,
}

/// What a joining node learns: its id, the nodes as shard 0's leader knows them (itself
/// included), and the shard count its store must have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    pub id: u64,
    pub nodes: Vec<(u64, String)>,
    pub shards: u16,
}

/// `PEERPROC_MEMBERSHIP`'s argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    /// Make node `id` (at `addr`) a learner if it is not one, wait for it to catch up, then a
    /// voter.
    Promote { id: u64, addr: String },
    /// Take node `id` out of the shard (voter or learner).
    Remove { id: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChangeRequest {
    change: Change,
    /// Passed on once already: a node that does not lead the shard refuses rather than
    /// passing it on again (two nodes with stale views must not bounce it).
    forwarded: bool,
}

#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipError {
    #[error("the seed refused the join: the token is not this cluster's secret")]
    BadToken,
    #[error("{0}")]
    Peer(String),
    #[error("this node is not part of a multi-node metadata service")]
    Solo,
    #[error("node {0} is not a member of the metadata service")]
    NotMember(u64),
    #[error("node {0} is the last metadata node: the service needs one")]
    LastNode(u64),
    #[error(
        "draining node {id} would leave {up} of {left} remaining nodes up: a majority of them must be up"
    )]
    NoMajority { id: u64, up: usize, left: usize },
    #[error("shard {0} has no leader that answers (an election under way?)")]
    NoLeader(u16),
    #[error("no node id left (multi-node ids are 1..=255)")]
    NoIds,
    #[error("{0:?} is not an address other nodes can reach (give a specific HOST:PORT)")]
    BadAddress(String),
    #[error("shard {shard}: {reason}")]
    Raft { shard: u16, reason: String },
}

impl From<PeerError> for MembershipError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::Refused { code, .. } if code == PEER_ERR_AUTH => MembershipError::BadToken,
            e => MembershipError::Peer(e.to_string()),
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, MembershipError> {
    postcard::from_bytes(b).map_err(|e| MembershipError::Peer(format!("undecodable answer: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Small plain structs: postcard cannot fail on them.
    postcard::to_stdvec(v).unwrap_or_default()
}

/// The joining side of `cfs server join`: asks `seed` to make the node at `my_addr` a member.
/// The MAC under `secret` is the proof that it may.
pub async fn join(
    secret: &layout::ClusterSecret,
    seed: SocketAddr,
    my_addr: SocketAddr,
) -> Result<JoinReply, MembershipError> {
    if my_addr.ip().is_unspecified() || my_addr.port() == 0 {
        return Err(MembershipError::BadAddress(my_addr.to_string()));
    }
    let body = encode(&JoinRequest {
        addr: my_addr.to_string(),
    });
    let answer = Peers::call_at(
        secret,
        0,
        (0, seed),
        PEERPROC_JOIN,
        body,
        Duration::from_secs(60),
    )
    .await?;
    decode::<Result<JoinReply, MembershipError>>(&answer)?
}

/// `PEERPROC_JOIN` on a node: shard 0's leader gives the node an id and adds it to shard 0 as
/// a learner; another node passes the call on to that leader.
pub(crate) async fn answer_join(ns: &Namespace, body: &[u8]) -> Result<JoinReply, MembershipError> {
    let req: JoinRequest = decode(body)?;
    let addr: SocketAddr = req
        .addr
        .parse()
        .map_err(|_| MembershipError::BadAddress(req.addr.clone()))?;
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(MembershipError::BadAddress(req.addr));
    }
    let peers = ns.peers().ok_or(MembershipError::Solo)?;
    let raft = ns.raft_of(ShardId(0)).ok_or(MembershipError::Solo)?;
    let deadline = tokio::time::Instant::now() + SHARD_WAIT;
    loop {
        match raft.current_leader().await {
            Some(l) if l == ns.node_id() => return admit(ns, &raft, addr).await,
            Some(l) => {
                let r = peers
                    .call(l, PEERPROC_JOIN, ShardId(0), body.to_vec(), CHANGE_CALL)
                    .await;
                match r {
                    Ok(b) => return decode::<Result<JoinReply, MembershipError>>(&b)?,
                    Err(e) => tracing::debug!(leader = l, "join not passed on: {e}"),
                }
            }
            None => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MembershipError::NoLeader(0));
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// On shard 0's leader: the node at `addr` gets the next id (or the one it already has: a
/// join asked again after a lost answer) and becomes a learner of shard 0.
async fn admit(
    ns: &Namespace,
    raft: &super::types::Raft,
    addr: SocketAddr,
) -> Result<JoinReply, MembershipError> {
    // One join at a time: two must not pick the same id.
    static ADMITTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ADMITTING.lock().await;
    let m = membership(raft);
    let existing = m
        .nodes()
        .find(|(_, n)| n.addr == addr.to_string())
        .map(|(id, _)| *id);
    let id = match existing {
        Some(id) => id,
        None => {
            let highest = m.nodes().map(|(id, _)| *id).max().unwrap_or(0);
            let id = highest + 1;
            if id > layout::capability::MAX_METADATA_NODE {
                return Err(MembershipError::NoIds);
            }
            raft.add_learner(id, BasicNode::new(addr.to_string()), false)
                .await
                .map_err(|e| MembershipError::Raft {
                    shard: 0,
                    reason: e.to_string(),
                })?;
            tracing::info!(node = id, %addr, "MDS node joining: a learner of shard 0");
            id
        }
    };
    let mut nodes: BTreeMap<u64, String> = membership(raft)
        .nodes()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    nodes.insert(id, addr.to_string());
    Ok(JoinReply {
        id,
        nodes: nodes.into_iter().collect(),
        shards: ns.shard_count(),
    })
}

/// `PEERPROC_MEMBERSHIP` on a node: carried out if it leads the shard, else passed on once.
pub(crate) async fn answer_change(
    ns: &Namespace,
    shard: ShardId,
    body: &[u8],
) -> Result<(), MembershipError> {
    let req: ChangeRequest = decode(body)?;
    change_here(ns, shard, req.change, req.forwarded).await
}

async fn change_here(
    ns: &Namespace,
    shard: ShardId,
    change: Change,
    forwarded: bool,
) -> Result<(), MembershipError> {
    let peers = ns.peers().ok_or(MembershipError::Solo)?;
    let raft = ns.raft_of(shard).ok_or(MembershipError::Solo)?;
    match raft.current_leader().await {
        Some(l) if l == ns.node_id() => apply(&raft, shard, change).await,
        Some(l) if !forwarded => {
            let body = encode(&ChangeRequest {
                change,
                forwarded: true,
            });
            let b = peers
                .call(l, PEERPROC_MEMBERSHIP, shard, body, CHANGE_CALL)
                .await?;
            decode::<Result<(), MembershipError>>(&b)?
        }
        _ => Err(MembershipError::NoLeader(shard.0)),
    }
}

/// On the shard's leader.
async fn apply(
    raft: &super::types::Raft,
    shard: ShardId,
    change: Change,
) -> Result<(), MembershipError> {
    let err = |e: &dyn std::fmt::Display| MembershipError::Raft {
        shard: shard.0,
        reason: e.to_string(),
    };
    let m = membership(raft);
    match change {
        Change::Promote { id, addr } => {
            if m.voter_ids().any(|v| v == id) {
                return Ok(());
            }
            // Blocking: returns once the learner's log has caught up with the leader's (a
            // snapshot first if it is too far behind), so the promotion does not stall writes
            // waiting for a replica that is still copying.
            let caught_up =
                tokio::time::timeout(CATCH_UP, raft.add_learner(id, BasicNode::new(addr), true))
                    .await;
            match caught_up {
                Ok(r) => {
                    r.map_err(|e| err(&e))?;
                }
                Err(_) => return Err(err(&"the learner did not catch up in time")),
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(|e| err(&e))?;
            tracing::info!(node = id, %shard, "MDS node is a voter of the shard");
            Ok(())
        }
        Change::Remove { id } => {
            if m.get_node(&id).is_none() {
                return Ok(());
            }
            let change = if m.voter_ids().any(|v| v == id) {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            // A leader that removes itself commits the change, then steps down (openraft).
            raft.change_membership(change, false)
                .await
                .map_err(|e| err(&e))?;
            tracing::info!(node = id, %shard, "MDS node removed from the shard");
            Ok(())
        }
    }
}

/// Has `change` carried out on `shard`'s leader: through this node, or, while this node knows
/// no leader (a joining node before the shard took it in), through each other node in turn.
/// Retried while the shard elects or finishes another change, up to `SHARD_WAIT`.
async fn ask(ns: &Namespace, shard: ShardId, change: &Change) -> Result<(), MembershipError> {
    let peers = ns.peers().ok_or(MembershipError::Solo)?;
    let deadline = tokio::time::Instant::now() + SHARD_WAIT;
    let mut last = MembershipError::NoLeader(shard.0);
    loop {
        let r = change_here(ns, shard, change.clone(), false).await;
        match r {
            Ok(()) => return Ok(()),
            Err(e @ (MembershipError::NoIds | MembershipError::Solo)) => return Err(e),
            Err(MembershipError::NoLeader(_)) => {
                let body = encode(&ChangeRequest {
                    change: change.clone(),
                    forwarded: false,
                });
                for (&n, _) in peers.nodes().iter().filter(|(n, _)| **n != ns.node_id()) {
                    let r = peers
                        .call(n, PEERPROC_MEMBERSHIP, shard, body.clone(), CHANGE_CALL)
                        .await
                        .map_err(MembershipError::from)
                        .and_then(|b| decode::<Result<(), MembershipError>>(&b)?);
                    match r {
                        Ok(()) => return Ok(()),
                        Err(e) => last = e,
                    }
                }
            }
            Err(e) => last = e,
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tracing::debug!(%shard, "membership change not done yet: {last}");
        tokio::time::sleep(PAUSE).await;
    }
}

/// Runs `change` on every shard, shard 0 last, `PARALLEL` at a time.
async fn on_every_shard(ns: &Namespace, change: Change) -> Result<(), MembershipError> {
    let others: Vec<ShardId> = (1..ns.shard_count()).map(ShardId).collect();
    for chunk in others.chunks(PARALLEL) {
        let runs = chunk.iter().map(|s| ask(ns, *s, &change));
        for r in futures::future::join_all(runs).await {
            r?;
        }
    }
    ask(ns, ShardId(0), &change).await
}

/// On a joined node: has every shard take it in as a voter (a learner first, caught up, then
/// promoted), shard 0 last. Until then `cfs admin status` shows it "joining". Runs until it is
/// done; a restart picks it up where it stopped (shards where it is a voter are skipped).
pub(crate) fn promote_me(ns: &Namespace) -> tokio::task::JoinHandle<()> {
    let weak = ns.downgrade();
    tokio::spawn(async move {
        loop {
            let Some(ns) = weak.upgrade() else {
                return;
            };
            let me = ns.node_id();
            let Some(addr) = ns.peers().and_then(|p| p.nodes().get(&me).copied()) else {
                return;
            };
            let pending: Vec<ShardId> = (0..ns.shard_count())
                .map(ShardId)
                .filter(|s| !voter_here(&ns, *s, me))
                .collect();
            if pending.is_empty() {
                tracing::info!(node = me, "this MDS node is a voter of every shard");
                return;
            }
            let change = Change::Promote {
                id: me,
                addr: addr.to_string(),
            };
            match on_every_shard(&ns, change).await {
                Ok(()) => {
                    tracing::info!(node = me, "joined: a voter of every shard");
                    return;
                }
                Err(e) => tracing::warn!(node = me, "joining not done yet, trying again: {e}"),
            }
            drop(ns);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn voter_here(ns: &Namespace, shard: ShardId, id: u64) -> bool {
    ns.raft_of(shard)
        .is_some_and(|r| membership(&r).voter_ids().any(|v| v == id))
}

/// `cfs admin node drain ID` for an MDS node: removes node `id` from every shard (shard 0,
/// the node set, last), then tells it so it stops. Refused when it would leave no node, or
/// fewer remaining nodes up than a majority of them (the service would stop).
pub async fn drain(ns: &Namespace, id: u64) -> Result<(), MembershipError> {
    let peers = ns.peers().ok_or(MembershipError::Solo)?;
    let view = membership_view(ns);
    if !view
        .iter()
        .any(|s| s.voters.contains(&id) || s.learners.contains(&id))
    {
        return Err(MembershipError::NotMember(id));
    }
    let left: BTreeSet<u64> = view
        .first()
        .map(|s| s.voters.iter().copied().filter(|v| *v != id).collect())
        .unwrap_or_default();
    if left.is_empty() {
        return Err(MembershipError::LastNode(id));
    }
    let mut up = 0;
    for &n in &left {
        if n == ns.node_id()
            || peers
                .call(
                    n,
                    PEERPROC_NULL,
                    ShardId(0),
                    Vec::new(),
                    Duration::from_secs(2),
                )
                .await
                .is_ok()
        {
            up += 1;
        }
    }
    if up * 2 <= left.len() {
        return Err(MembershipError::NoMajority {
            id,
            up,
            left: left.len(),
        });
    }
    let addr = peers.nodes().get(&id).copied();
    tracing::info!(node = id, "draining MDS node");
    on_every_shard(ns, Change::Remove { id }).await?;
    tracing::info!(node = id, "MDS node drained from every shard");
    if id == ns.node_id() {
        ns.mark_drained();
    } else if let Some(addr) = addr {
        let told = Peers::call_at(
            &peers.members.secret,
            ns.node_id(),
            (id, addr),
            PEERPROC_DRAINED,
            Vec::new(),
            Duration::from_secs(5),
        )
        .await;
        if let Err(e) = told {
            // It also notices from its shards' memberships if it ever hears of them.
            tracing::info!(node = id, "the drained node was not told (down?): {e}");
        }
    }
    Ok(())
}

/// One shard's membership as this node sees it.
#[derive(Debug, Clone, Default)]
pub struct ShardMembers {
    pub shard: u16,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    pub addrs: BTreeMap<u64, String>,
}

/// Every shard's membership as this node sees it, shard 0 first.
pub fn membership_view(ns: &Namespace) -> Vec<ShardMembers> {
    (0..ns.shard_count())
        .filter_map(|s| {
            let raft = ns.raft_of(ShardId(s))?;
            let m = membership(&raft);
            Some(ShardMembers {
                shard: s,
                voters: m.voter_ids().collect(),
                learners: m.learner_ids().collect(),
                addrs: m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
            })
        })
        .collect()
}

/// Each node's state in the service, from this node's view: "member" (a voter of every
/// shard), "joining" (a learner of shard 0: being taken in, shard 0 last), "draining" (still
/// in shard 0 but gone from another shard: being removed, shard 0 last), "starting" (shard 0's
/// membership not known here yet) and this node's own "drained" once it was.
pub fn node_states(ns: &Namespace) -> BTreeMap<u64, (&'static str, String)> {
    let view = membership_view(ns);
    let mut out = BTreeMap::new();
    let Some(zero) = view.first() else {
        return out;
    };
    if zero.addrs.is_empty() {
        // Shard 0 has not reached this node yet (just started, or joining): the nodes it was
        // started with.
        for (id, addr) in ns.peers().map(|p| p.nodes()).unwrap_or_default() {
            out.insert(id, ("starting", addr.to_string()));
        }
    }
    for (id, addr) in &zero.addrs {
        let state = if zero.learners.contains(id) {
            "joining"
        } else if view.iter().all(|s| s.voters.contains(id)) {
            "member"
        } else {
            "draining"
        };
        out.insert(*id, (state, addr.clone()));
    }
    if ns.is_drained() {
        let addr = out
            .get(&ns.node_id())
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        out.insert(ns.node_id(), ("drained", addr));
    }
    out
}

/// Keeps `peers`' address book the union of this node's shards' memberships (so a joined node
/// is reachable and its calls accepted, and a drained one is neither), and notices when this
/// node was removed from shard 0: a membership newer than one that had it, without it.
pub(crate) fn follow(ns: &Namespace, peers: Arc<Peers>) -> tokio::task::JoinHandle<()> {
    let weak = ns.downgrade();
    tokio::spawn(async move {
        let mut seen_in: Option<u64> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let Some(ns) = weak.upgrade() else {
                return;
            };
            let view = membership_view(&ns);
            let mut book = BTreeMap::new();
            for s in &view {
                for (id, a) in &s.addrs {
                    if let Ok(a) = a.parse::<SocketAddr>() {
                        book.insert(*id, a);
                    }
                }
            }
            if !book.is_empty() {
                if let Some(a) = peers.members.nodes.get(&peers.me()) {
                    book.entry(peers.me()).or_insert(*a);
                }
                if peers.set_nodes(book.clone()) {
                    tracing::info!(nodes = ?book.keys().collect::<Vec<_>>(), "MDS nodes changed");
                }
            }
            let Some(raft) = ns.raft_of(ShardId(0)) else {
                return;
            };
            let (index, has_me) = {
                let m = raft.metrics();
                let m = m.borrow();
                let index = m.membership_config.log_id().map(|l| l.index);
                let has = m
                    .membership_config
                    .membership()
                    .get_node(&ns.node_id())
                    .is_some();
                (index, has)
            };
            match (index, has_me, seen_in) {
                (Some(i), true, _) => seen_in = Some(i),
                (Some(i), false, Some(was)) if i > was => {
                    tracing::warn!(
                        node = ns.node_id(),
                        "this MDS node was removed from the metadata service (drained)"
                    );
                    ns.mark_drained();
                    return;
                }
                _ => {}
            }
        }
    })
}
