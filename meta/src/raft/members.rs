//! Membership changes of the metadata service: a node joins a running service, a node is
//! drained from it.
//!
//! The node set is openraft's own replicated state: every shard's membership (voters and
//! learners, each with its NFS address as `BasicNode::addr`) is a log entry of that shard, kept
//! in its snapshots, so a restarted node has it from its log before it hears from anyone.
//! Shard 0's membership (voters and learners) is the service's node set, and every member
//! holds every shard, as one of its `placement::REPLICAS` voters or as a learner (see
//! `placement` for why learners, and what they do not buy). A join adds the node to shard 0
//! first (a learner, which reserves its id); shard 0's leader then makes it a learner of every
//! other shard and moves voter roles onto it (`drive_placement`). A drain removes the node from
//! shard 0 first (a voter there hands its place to a learner) and then from every other shard.
//! So a node in shard 0 missing from another shard is joining, one missing from shard 0 but
//! still in another is being drained, and every node's address book (`Peers`) is the union of
//! its shards' memberships (`follow`).
//!
//! The join token is the cluster secret itself (`cfs server join`): a joined node needs the
//! secret anyway (it MACs its peer calls, checks data servers' heartbeats and derives the same
//! file-handle key as the others), and a token derived from the secret could not give it that
//! without the seed sending the secret over the peer program, which is MACed but not
//! encrypted. With the secret as the token, it never crosses the wire: the join call is MACed
//! with it like every peer call, and a wrong one is refused (`PEER_ERR_AUTH`).
//!
//! Join (`cfs server join --token --seed`): the seed passes the call to shard 0's leader, which
//! gives the next id (one join at a time) and adds the node to shard 0 as a learner; the node keeps
//! its id, the nodes and the shard count in `mds-member.json` in its data directory
//! (`cfs/src/mds_join.rs`; a restart reuses them) and starts without initializing any shard
//! (`Members::joined`). Placement is carried out on shard 0's leader every `PLACE_EVERY` (2 s),
//! `PARALLEL` (8) shards at a time; `follow` rebuilds the address book every 500 ms.
//!
//! Drain (`cfs admin node drain ID`, `POST /api/v1/mds-nodes/{id}/drain`): refused for the last
//! node and when fewer than a majority of the remaining nodes answer; it removes the node from
//! shard 0 first (so placement gives it no new role), then from every other shard (a voter hands
//! its place to the learner voting least, `stand_in`; a leader removing itself steps down), then
//! sends it `PEERPROC_DRAINED`. A drained node also stops by itself `DRAIN_LINGER` (10 minutes)
//! after it saw a shard-0 membership without it, should that word never come; `cfs server` then
//! writes `mds-drained`, exits with an error saying so, and refuses to start from that directory
//! again. `node_states` gives each node's state and the shards it votes in (`cfs admin status`).
//! Not yet: a joined node's client address cannot change after the join; a drained node's id can be
//! given to a later join (the drained directory refuses to start, so the id is never used twice at
//! once).
//!
//! Tests: `placement::tests`, `cfs/tests/it/mds_membership.rs`; data servers follow the node set
//! through heartbeat replies (`cfs/tests/it/ds_learns_mds.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use proto::peer::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::groups::Groups;
use super::network::{PeerError, Peers};
use super::node_addr::NodeAddr;
use meta_core::ShardId;

/// The shard's current membership (voters, learners, their addresses), as this replica knows it.
fn membership(raft: &crate::storage::entry::Raft) -> openraft::Membership<u64, BasicNode> {
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
    /// Take node `id` out of the shard (voter or learner). A voter first hands its place to
    /// a learner of the node set, the one voting least, so the shard keeps its voter count.
    Remove { id: u64 },
    /// Shard 0's leader's plan for the shard: every node of the node set (`nodes`, with their
    /// addresses) a member, exactly `voters` voting (the others learners), and no one else.
    Place {
        voters: BTreeSet<u64>,
        nodes: Vec<(u64, String)>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChangeRequest {
    pub(crate) change: Change,
    /// Passed on once already: a node that does not lead the shard refuses rather than
    /// passing it on again (two nodes with stale views must not bounce it).
    pub(crate) forwarded: bool,
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
    /// The plan would take the shard's leader off its voters: it was made from a view of the
    /// leaderships that is out of date. Asking again cannot help; the next round plans anew.
    #[error("shard {0}: a placement that would take this shard's leader off its voters")]
    StalePlan(u16),
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

/// The joining side of `cfs server join`: asks `seed` to make the node at `me.peer` a member,
/// with its client address and failure domain if it has them (the membership carries them,
/// so the other nodes take the address over when this node dies, and the placement keeps a
/// shard's voters in distinct domains). The MAC under `secret` is the proof that it may.
pub async fn join(
    secret: &layout::ClusterSecret,
    seed: SocketAddr,
    me: NodeAddr,
) -> Result<JoinReply, MembershipError> {
    if me.peer.ip().is_unspecified() || me.peer.port() == 0 {
        return Err(MembershipError::BadAddress(me.peer.to_string()));
    }
    let body = encode(&JoinRequest {
        addr: me.to_string(),
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
pub(crate) async fn answer_join(
    groups: &Groups,
    body: &[u8],
) -> Result<JoinReply, MembershipError> {
    let req: JoinRequest = decode(body)?;
    let addr =
        NodeAddr::parse(&req.addr).ok_or_else(|| MembershipError::BadAddress(req.addr.clone()))?;
    let unusable = |a: SocketAddr| a.ip().is_unspecified() || a.port() == 0;
    if unusable(addr.peer) || addr.client.is_some_and(unusable) || addr.client == Some(addr.peer) {
        return Err(MembershipError::BadAddress(req.addr));
    }
    let peers = groups.peers().ok_or(MembershipError::Solo)?;
    let raft = groups.raft_of(ShardId(0)).ok_or(MembershipError::Solo)?;
    let deadline = tokio::time::Instant::now() + SHARD_WAIT;
    loop {
        match raft.current_leader().await {
            Some(l) if l == groups.node_id() => return admit(groups, &raft, addr).await,
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
    groups: &Groups,
    raft: &crate::storage::entry::Raft,
    addr: NodeAddr,
) -> Result<JoinReply, MembershipError> {
    // One join at a time: two must not pick the same id.
    static ADMITTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ADMITTING.lock().await;
    let m = membership(raft);
    let taken = m.nodes().find_map(|(id, n)| {
        let n = NodeAddr::parse(&n.addr)?;
        let clash = addr.client.is_some()
            && [Some(n.peer), n.client].contains(&addr.client)
            && n.peer != addr.peer;
        clash.then_some(*id)
    });
    if taken.is_some() {
        // Two nodes binding one client address would fight over it (`addresses`).
        return Err(MembershipError::BadAddress(addr.to_string()));
    }
    let existing = m
        .nodes()
        .find(|(_, n)| NodeAddr::parse(&n.addr).is_some_and(|n| n.peer == addr.peer))
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
        shards: groups.shard_count(),
    })
}

/// `PEERPROC_MEMBERSHIP` on a node: carried out if it leads the shard, else passed on once.
pub(crate) async fn answer_change(
    groups: &Groups,
    shard: ShardId,
    body: &[u8],
) -> Result<(), MembershipError> {
    let req: ChangeRequest = decode(body)?;
    change_here(groups, shard, req.change, req.forwarded).await
}

async fn change_here(
    groups: &Groups,
    shard: ShardId,
    change: Change,
    forwarded: bool,
) -> Result<(), MembershipError> {
    let peers = groups.peers().ok_or(MembershipError::Solo)?;
    let raft = groups.raft_of(shard).ok_or(MembershipError::Solo)?;
    match raft.current_leader().await {
        Some(l) if l == groups.node_id() => apply(groups, &raft, shard, change).await,
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
    groups: &Groups,
    raft: &crate::storage::entry::Raft,
    shard: ShardId,
    change: Change,
) -> Result<(), MembershipError> {
    let err = |e: &dyn std::fmt::Display| MembershipError::Raft {
        shard: shard.0,
        reason: e.to_string(),
    };
    // Not while the shard's leadership moves (`handover`): a membership entry appended then
    // would make this node refuse the candidate's vote.
    let gate = groups.gate(shard).ok_or(MembershipError::Solo)?;
    let _changing = gate.changes().await;
    let m = membership(raft);
    match change {
        Change::Remove { id } => {
            if m.get_node(&id).is_none() {
                return Ok(());
            }
            let voters: BTreeSet<u64> = m.voter_ids().collect();
            let change = if voters.contains(&id) {
                match stand_in(groups, &m, id) {
                    Some(next) => {
                        let mut v = voters.clone();
                        v.remove(&id);
                        v.insert(next);
                        tracing::info!(node = id, %shard, by = next, "voter replaced");
                        ChangeMembers::ReplaceAllVoters(v)
                    }
                    None => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
                }
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            // A leader that removes itself commits the change, then steps down (openraft).
            // `retain: false`: a removed voter leaves the shard altogether.
            raft.change_membership(change, false)
                .await
                .map_err(|e| err(&e))?;
            tracing::info!(node = id, %shard, "MDS node removed from the shard");
            Ok(())
        }
        Change::Place { voters, nodes } => {
            let known: BTreeMap<u64, String> = nodes.into_iter().collect();
            if voters.is_empty() || !voters.iter().all(|v| known.contains_key(v)) {
                return Err(err(&"a placement whose voters are not all in its node set"));
            }
            // The plan keeps each shard's leader among its voters, but it was made from shard
            // 0's leader's view, which may be a leadership late. A leader made a learner goes
            // on leading in openraft 0.9 (it does not step down), a shard led by a non-voter:
            // refused here, and the next round plans with the leader as it is.
            if !voters.contains(&groups.node_id()) {
                return Err(MembershipError::StalePlan(shard.0));
            }
            for (id, addr) in &known {
                if m.get_node(id).is_some() {
                    continue;
                }
                if voters.contains(id) {
                    learn(raft, shard, *id, addr.clone()).await?;
                } else {
                    // Not voting yet: no need to wait for it (a node that is down would hold
                    // the whole round up for `CATCH_UP`); it catches up in the background.
                    raft.add_learner(*id, BasicNode::new(addr.clone()), false)
                        .await
                        .map_err(|e| err(&e))?;
                }
            }
            let now: BTreeSet<u64> = membership(raft).voter_ids().collect();
            if now != voters {
                // `retain: true`: a voter that gives its place stays a learner, with its
                // replica, ready to vote again.
                raft.change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), true)
                    .await
                    .map_err(|e| err(&e))?;
                tracing::info!(%shard, from = ?now, to = ?voters, "shard voters moved");
            }
            let strangers: BTreeSet<u64> = membership(raft)
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| !known.contains_key(id))
                .collect();
            if !strangers.is_empty() {
                raft.change_membership(ChangeMembers::RemoveNodes(strangers.clone()), false)
                    .await
                    .map_err(|e| err(&e))?;
                tracing::info!(%shard, nodes = ?strangers, "left nodes removed from the shard");
            }
            Ok(())
        }
    }
}

/// Makes `id` a learner of the shard and waits until its log has caught up with the leader's
/// (a snapshot first if it is too far behind), so it can be promoted without stalling writes.
async fn learn(
    raft: &crate::storage::entry::Raft,
    shard: ShardId,
    id: u64,
    addr: String,
) -> Result<(), MembershipError> {
    let err = |e: &dyn std::fmt::Display| MembershipError::Raft {
        shard: shard.0,
        reason: e.to_string(),
    };
    match tokio::time::timeout(CATCH_UP, raft.add_learner(id, BasicNode::new(addr), true)).await {
        Ok(r) => r.map(|_| ()).map_err(|e| err(&e)),
        Err(_) => Err(err(&"the learner did not catch up in time")),
    }
}

/// The learner of the shard that takes voter `id`'s place: a member of the node set (shard
/// 0's members, as this node sees them), one that answers this node's calls if any does, voting
/// in the fewest shards.
fn stand_in(groups: &Groups, m: &openraft::Membership<u64, BasicNode>, id: u64) -> Option<u64> {
    let view = membership_view(groups);
    let nodes = view.first().map(ShardMembers::nodes).unwrap_or_default();
    let mut load: BTreeMap<u64, usize> = BTreeMap::new();
    for s in &view {
        for v in &s.voters {
            *load.entry(*v).or_default() += 1;
        }
    }
    m.learner_ids()
        .filter(|n| *n != id && nodes.contains(n))
        .min_by_key(|n| {
            let down = groups.peers().is_some_and(|p| p.down_since(*n).is_some());
            (down, load.get(n).copied().unwrap_or(0), *n)
        })
}

/// Has `change` carried out on `shard`'s leader: through this node, or, while this node knows
/// no leader (a joining node before the shard took it in), through each other node in turn.
/// Retried while the shard elects or finishes another change, up to `SHARD_WAIT`.
async fn ask(groups: &Groups, shard: ShardId, change: &Change) -> Result<(), MembershipError> {
    let peers = groups.peers().ok_or(MembershipError::Solo)?;
    let deadline = tokio::time::Instant::now() + SHARD_WAIT;
    let mut last = MembershipError::NoLeader(shard.0);
    loop {
        let r = change_here(groups, shard, change.clone(), false).await;
        match r {
            Ok(()) => return Ok(()),
            // Asking again gets the same answer: a stale plan held a placement round up for
            // all of `SHARD_WAIT` (a joined node a member of every shard after 63 s instead of
            // 1 s, 2026-11-26).
            Err(
                e
                @ (MembershipError::NoIds | MembershipError::Solo | MembershipError::StalePlan(_)),
            ) => return Err(e),
            Err(MembershipError::NoLeader(_)) => {
                let body = encode(&ChangeRequest {
                    change: change.clone(),
                    forwarded: false,
                });
                for (&n, _) in peers
                    .nodes()
                    .iter()
                    .filter(|(n, _)| **n != groups.node_id())
                {
                    let r = peers
                        .call(n, PEERPROC_MEMBERSHIP, shard, body.clone(), CHANGE_CALL)
                        .await
                        .map_err(MembershipError::from)
                        .and_then(|b| decode::<Result<(), MembershipError>>(&b)?);
                    match r {
                        Ok(()) => return Ok(()),
                        Err(e @ MembershipError::StalePlan(_)) => return Err(e),
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

/// Runs `change` on every shard but shard 0, `PARALLEL` at a time.
async fn on_other_shards(groups: &Groups, change: Change) -> Result<(), MembershipError> {
    let others: Vec<ShardId> = (1..groups.shard_count()).map(ShardId).collect();
    for chunk in others.chunks(PARALLEL) {
        let runs = chunk.iter().map(|s| ask(groups, *s, &change));
        for r in futures::future::join_all(runs).await {
            r?;
        }
    }
    Ok(())
}

/// How long a node that left shard 0 keeps serving its other shards when the drain never
/// tells it that it is done.
const DRAIN_LINGER: Duration = Duration::from_secs(600);
/// How often shard 0's leader looks at the shards' memberships.
const PLACE_EVERY: Duration = Duration::from_secs(2);
/// A node that does not answer a ping within this is taken as down for the plan.
const PING: Duration = Duration::from_secs(1);

/// On every node of a multi-node service; acts while this node leads shard 0: makes the
/// shards' memberships what `placement::plan` says (every node of the node set a member, the
/// voters spread evenly, left nodes out), `PARALLEL` shards at a time, looking again after
/// each round. A joined node becomes a learner of every shard and takes its share of voter
/// roles this way; a cluster made with more than `REPLICAS` nodes comes down to that many
/// voters per shard; a node down longer than `Members::replace_after` (as seen by this leader
/// of shard 0: a new leader starts counting afresh) hands its roles to live learners.
pub(crate) fn drive_placement(groups: &Arc<Groups>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(groups);
    tokio::spawn(async move {
        let mut down_since: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
        let mut balancer = super::handover::Balancer::default();
        loop {
            tokio::time::sleep(PLACE_EVERY).await;
            let Some(groups) = weak.upgrade() else {
                return;
            };
            if groups.is_drained() {
                return;
            }
            if groups.leader_of(ShardId(0)) != Some(groups.node_id()) {
                down_since.clear();
                balancer.forget();
                continue;
            }
            match place_once(&groups, &mut down_since).await {
                Ok((changed, live)) => {
                    if !changed.is_empty() {
                        tracing::info!(
                            shards = changed.len(),
                            "shard placement: memberships changed"
                        );
                    }
                    // Then leaderships, of the shards whose memberships this round left alone
                    // (their changes are done by now: `place_once` waits for them).
                    let n = if groups.balances_leaders() {
                        balancer.round(&groups, &live, &changed).await
                    } else {
                        0
                    };
                    if n > 0 {
                        tracing::info!(shards = n, "leaderships moved to even them out");
                    }
                }
                Err(e) => tracing::info!("shard placement not done yet: {e}"),
            }
        }
    })
}

/// One round of `drive_placement`: the shards it asked to change, and the nodes that
/// answered. `down_since`: when each node that does not answer stopped answering, kept from
/// round to round.
async fn place_once(
    groups: &Groups,
    down_since: &mut BTreeMap<u64, tokio::time::Instant>,
) -> Result<(BTreeSet<u16>, BTreeSet<u64>), MembershipError> {
    let peers = groups.peers().ok_or(MembershipError::Solo)?;
    let view = membership_view(groups);
    let Some(zero) = view.first() else {
        return Ok((BTreeSet::new(), BTreeSet::new()));
    };
    let nodes = zero.nodes();
    let pings = nodes.iter().map(|&n| async move {
        let up = n == groups.node_id()
            || peers
                .call(n, PEERPROC_NULL, ShardId(0), Vec::new(), PING)
                .await
                .is_ok();
        (n, up)
    });
    let live: BTreeSet<u64> = futures::future::join_all(pings)
        .await
        .into_iter()
        .filter_map(|(n, up)| up.then_some(n))
        .collect();
    let now = tokio::time::Instant::now();
    down_since.retain(|n, _| nodes.contains(n) && !live.contains(n));
    for n in nodes.difference(&live) {
        down_since.entry(*n).or_insert(now);
    }
    let gone: BTreeSet<u64> = match peers.members.replace_after {
        Some(after) => down_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= after)
            .map(|(n, _)| *n)
            .collect(),
        None => BTreeSet::new(),
    };
    let leaders = groups.leaders();
    let shards: Vec<super::placement::ShardView> = view
        .iter()
        .map(|s| super::placement::ShardView {
            shard: s.shard,
            voters: s.voters.clone(),
            leader: leaders.get(&s.shard).copied().flatten(),
        })
        .collect();
    let domains = domains_of(peers, &zero.addrs);
    let plan = super::placement::plan(
        &shards,
        &nodes,
        &live,
        &gone,
        &domains,
        super::placement::REPLICAS,
    );
    let addrs: Vec<(u64, String)> = nodes
        .iter()
        .filter_map(|n| zero.addrs.get(n).map(|a| (*n, a.clone())))
        .collect();
    // Shards whose voters move, and shards that miss a node or hold a left one.
    let mut todo: Vec<(ShardId, BTreeSet<u64>)> = Vec::new();
    for s in &view {
        let members: BTreeSet<u64> = s.addrs.keys().copied().collect();
        match plan.get(&s.shard) {
            Some(v) => todo.push((ShardId(s.shard), v.clone())),
            None if members != nodes => todo.push((
                ShardId(s.shard),
                s.voters.intersection(&nodes).copied().collect(),
            )),
            None => {}
        }
    }
    // A shard whose membership this node does not know yet is left for a later round.
    todo.retain(|(_, v)| !v.is_empty());
    let changed: BTreeSet<u16> = todo.iter().map(|(s, _)| s.0).collect();
    for chunk in todo.chunks(PARALLEL) {
        let runs = chunk.iter().map(|(shard, voters)| {
            let change = Change::Place {
                voters: voters.clone(),
                nodes: addrs.clone(),
            };
            async move { (shard, ask(groups, *shard, &change).await) }
        });
        for (shard, r) in futures::future::join_all(runs).await {
            if let Err(e) = r {
                tracing::info!(%shard, "placement not carried out: {e}");
            }
        }
        // The plan was made from the memberships before this round: stop if another node
        // leads shard 0 now (it plans from its own view).
        if groups.leader_of(ShardId(0)) != Some(groups.node_id()) {
            break;
        }
    }
    Ok((changed, live))
}

/// Each node's failure domain: what its membership entry (`addrs`, shard 0's) names, else
/// what this node's config lists for it (a service made before the list was set).
fn domains_of(peers: &Peers, addrs: &BTreeMap<u64, String>) -> super::placement::Domains {
    let mut d = peers.members.domains.clone();
    for (id, a) in addrs {
        if let Some(domain) = NodeAddr::parse(a).and_then(|a| a.domain) {
            d.insert(*id, domain);
        }
    }
    super::placement::Domains(d)
}

/// `cfs admin node drain ID` for an MDS node: removes node `id` from every shard (shard 0,
/// the node set, first; a voter hands its place to a learner), then tells it so it stops. Refused when it would leave no node, or
/// fewer remaining nodes up than a majority of them (the service would stop).
pub async fn drain(groups: &Groups, id: u64) -> Result<(), MembershipError> {
    let peers = groups.peers().ok_or(MembershipError::Solo)?;
    let view = membership_view(groups);
    if !view
        .iter()
        .any(|s| s.voters.contains(&id) || s.learners.contains(&id))
    {
        return Err(MembershipError::NotMember(id));
    }
    let left: BTreeSet<u64> = view
        .first()
        .map(|s| s.nodes().into_iter().filter(|v| *v != id).collect())
        .unwrap_or_default();
    if left.is_empty() {
        return Err(MembershipError::LastNode(id));
    }
    let mut up = 0;
    for &n in &left {
        if n == groups.node_id()
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
    // Shard 0 first: the node leaves the node set, so the placement planner gives it no new
    // role while the other shards let it go.
    ask(groups, ShardId(0), &Change::Remove { id }).await?;
    on_other_shards(groups, Change::Remove { id }).await?;
    tracing::info!(node = id, "MDS node drained from every shard");
    if id == groups.node_id() {
        groups.mark_drained();
    } else if let Some(addr) = addr {
        let told = Peers::call_at(
            &peers.members.secret,
            groups.node_id(),
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

impl ShardMembers {
    /// Its voters and learners.
    pub fn nodes(&self) -> BTreeSet<u64> {
        self.voters.union(&self.learners).copied().collect()
    }
}

/// Every shard's membership as this node sees it, shard 0 first.
pub fn membership_view(groups: &Groups) -> Vec<ShardMembers> {
    (0..groups.shard_count())
        .filter_map(|s| {
            let raft = groups.raft_of(ShardId(s))?;
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

/// Each node's state in the service, from this node's view: "member" (in every shard, as a
/// voter or a learner), "joining" (in shard 0, the node set, but not yet in every shard),
/// "draining" (gone from shard 0 but still in another shard), "starting" (shard 0's
/// membership not known here yet) and this node's own "drained" once it was. With each, the
/// shards it votes in.
pub fn node_states(groups: &Groups) -> BTreeMap<u64, NodeState> {
    let view = membership_view(groups);
    let mut out = BTreeMap::new();
    let Some(zero) = view.first() else {
        return out;
    };
    let votes = |id: u64| view.iter().filter(|s| s.voters.contains(&id)).count();
    if zero.addrs.is_empty() {
        // Shard 0 has not reached this node yet (just started, or joining): the nodes it was
        // started with.
        for (id, addr) in groups.peers().map(|p| p.nodes()).unwrap_or_default() {
            out.insert(
                id,
                NodeState {
                    state: "starting",
                    addr: addr.to_string(),
                    votes: votes(id),
                },
            );
        }
    }
    // Every node any shard holds, with an address it is known by (once each: 256 shards).
    let mut known: BTreeMap<u64, &String> = BTreeMap::new();
    for s in &view {
        for (id, addr) in &s.addrs {
            known.entry(*id).or_insert(addr);
        }
    }
    for (id, addr) in known {
        let state = if !zero.addrs.contains_key(&id) {
            "draining"
        } else if view.iter().all(|s| s.addrs.contains_key(&id)) {
            "member"
        } else {
            "joining"
        };
        out.entry(id).or_insert(NodeState {
            state,
            addr: addr.clone(),
            votes: votes(id),
        });
    }
    if groups.is_drained() {
        let me = out.entry(groups.node_id()).or_insert(NodeState {
            state: "drained",
            addr: String::new(),
            votes: 0,
        });
        me.state = "drained";
    }
    out
}

/// A node as `node_states` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub state: &'static str,
    pub addr: String,
    /// Shards it is a voter of.
    pub votes: usize,
}

/// Keeps `peers`' address book the union of this node's shards' memberships (so a joined node
/// is reachable and its calls accepted, and a drained one is neither), and notices when this
/// node was removed from shard 0: a membership newer than one that had it, without it.
pub(crate) fn follow(groups: &Arc<Groups>, peers: Arc<Peers>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(groups);
    tokio::spawn(async move {
        let mut seen_in: Option<u64> = None;
        let mut left_at: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let Some(groups) = weak.upgrade() else {
                return;
            };
            let view = membership_view(&groups);
            let mut book = BTreeMap::new();
            let mut clients = BTreeMap::new();
            for s in &view {
                for (id, a) in &s.addrs {
                    if let Some(a) = NodeAddr::parse(a) {
                        book.insert(*id, a.peer);
                        if let Some(c) = a.client {
                            clients.insert(*id, c);
                        }
                    }
                }
            }
            if !book.is_empty() {
                peers.set_client_addresses(clients);
                if let Some(a) = peers.members.nodes.get(&peers.me()) {
                    book.entry(peers.me()).or_insert(*a);
                }
                if peers.set_nodes(book.clone()) {
                    tracing::info!(nodes = ?book.keys().collect::<Vec<_>>(), "MDS nodes changed");
                }
            }
            let Some(raft) = groups.raft_of(ShardId(0)) else {
                return;
            };
            let (index, has_me) = {
                let m = raft.metrics();
                let m = m.borrow();
                let index = m.membership_config.log_id().map(|l| l.index);
                let has = m
                    .membership_config
                    .membership()
                    .get_node(&groups.node_id())
                    .is_some();
                (index, has)
            };
            match (index, has_me, seen_in) {
                (Some(i), true, _) => {
                    seen_in = Some(i);
                    left_at = None;
                }
                (Some(i), false, Some(was)) if i > was => {
                    // Shard 0 goes first in a drain; the other shards still count on this
                    // node until the drain tells it (`PEERPROC_DRAINED`). Should that word
                    // never come (the draining node died), it stops by itself.
                    let since = *left_at.get_or_insert_with(|| {
                        tracing::warn!(
                            node = groups.node_id(),
                            "this MDS node left the node set: being drained"
                        );
                        tokio::time::Instant::now()
                    });
                    if since.elapsed() >= DRAIN_LINGER {
                        tracing::warn!(
                            node = groups.node_id(),
                            "this MDS node was removed from the metadata service (drained)"
                        );
                        groups.mark_drained();
                        return;
                    }
                }
                _ => {}
            }
        }
    })
}
