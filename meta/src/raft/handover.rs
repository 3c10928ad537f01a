//! Moving a shard's leadership to another of its voters, and the rounds of shard 0's leader
//! that do so until the leaderships are even again (`balance` plans which).
//!
//! openraft 0.9 has no `transfer_leader` (0.10 has). What it has, read in 0.9.25's engine:
//! a node refuses a vote while its leader lease runs (`Engine::handle_vote_req`: its vote is
//! committed and was last touched less than `election_timeout_max` ago). A follower's vote is
//! touched by every append and heartbeat from its leader, so the followers refuse; but the
//! leader's own vote is touched only when it becomes leader (`establish_leader`), never by its
//! own heartbeats. So a leader that has led for longer than the lease grants its vote to a
//! candidate of a higher term whose log is at least as long as its own, and steps down
//! (`update_vote` -> `become_following`): in a shard of three voters, the candidate's vote and
//! the old leader's are a majority, and the third's refusal does not matter. A follower can
//! campaign at once with `Raft::trigger().elect()`. The hand-over is therefore:
//!
//! 1. Shard 0's leader asks the shard's leader L (`PEERPROC_LEAD`, `Lead::HandOver`) to hand
//!    the shard to voter T.
//! 2. L checks it leads in the term the plan saw, has led longer than the lease (its vote's
//!    time, `RaftState::vote_last_modified`), that it and T vote there (a leader demoted to
//!    learner goes on leading in openraft 0.9, but its vote does not count), the shard has at
//!    most three voters and no membership change under way; then it holds the shard's
//!    proposer (`Gate`): no new entry is appended, the batch being replicated finishes.
//! 3. L waits until T's log matches its own last entry (replication metrics), then asks T to
//!    campaign (`Lead::Campaign`, with that entry's id).
//! 4. T checks its log has that entry and that it follows L in that term, triggers an election
//!    and answers once it leads. L, having granted its vote, is a follower: the held commands
//!    find no leader here and go to T (`Namespace::propose_on` retries), and the writes go on.
//!
//! The writes of that one shard pause from step 2 to 4: a round trip, T's election (a vote
//! fdatasynced on L) and L's release, milliseconds; every step has a bound, after which L
//! releases the writes and answers an error (the shard is tried again later). Why the writes
//! are held rather than a busy shard skipped: an entry L appends after T's check makes L
//! refuse the vote, and the failed candidate's higher term then unseats L anyway (its appends
//! are refused), leaving the shard without a leader for an election timeout. Held, L's log
//! cannot grow between T's check and T's vote request.
//!
//! What a failure costs. T dies before it campaigns: L answers an error after its bound and
//! goes on leading. T dies after it campaigned: if L granted its vote, the shard has no leader
//! until the next election (1.5 to 3 s), as when a leader dies; Raft's safety does not depend
//! on any of this (a vote is still a vote). L dies: its followers elect as usual; T's campaign,
//! if it came, is one more election. Shard 0's leader dies: L's and T's steps are bounded on
//! their own, and the next leader of shard 0 plans afresh.
//!
//! Why at all: a node back from a restart is a follower everywhere (the others won every election
//! while it was away; seen: 65/51/0/89/51 leaders over five nodes), and openraft 0.9 never moves a
//! leadership by itself. Shard 0's leader (`Balancer`) runs a round after each placement round: at
//! most `PER_ROUND` (16) moves, `IN_FLIGHT` (4) at once, only shards whose leader it has seen
//! unchanged for `SETTLED` (5 s), whose membership is settled and was not changed this round, and
//! whose last hand-over did not fail in the last `RETRY_AFTER` (20 s). The bounds of steps 2 to 4
//! (the batch in flight `GATE_WAIT`, T's log `MATCH_WAIT`, T's campaign `CAMPAIGN_CALL`: 2 + 0.5 +
//! 3 s) cap how long the writes are held. Measured (five nodes, 256 shards, docs/METADATA-BENCH.md
//! run 7): a restarted node led 16 shards 0.5 s after its start and its even share (51) after 6.7
//! s; writes held 4 ms median, 316 ms at most.
//!
//! Why not openraft's heartbeat and election switches (`runtime_config`): stopping L's heartbeats
//! until the followers' leases ran out would cost 3 s per shard, and on a busy shard its appends
//! refresh those leases anyway, while the candidate needs no follower's vote, only L's.
//!
//! Tests: `balance::tests`; `namespace::tests::replicated`
//! `a_busy_shards_leadership_is_handed_over_and_a_dead_target_leaves_it_in_place` (every node
//! writing into the shard; a leader too new, a former leader and a dead target refused or failed
//! within bounds); `cfs/tests/it/mds_membership.rs`
//! `a_restarted_node_leads_its_share_of_the_shards_again` (kill -9, restart, even within a bound,
//! writes going on).
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{LogId, ServerState};
use proto::peer::PEERPROC_LEAD;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::time::Instant;

use super::balance::{self, ShardLead};
use super::groups::Groups;
use crate::storage::entry::Raft;
use meta_core::ShardId;

/// `PEERPROC_LEAD`'s argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Lead {
    /// To the shard's leader: hand the shard to voter `to`; `term` is the term in which the
    /// planner saw this node lead (a leader since then is not the one it judged settled).
    HandOver { to: u64, term: u64 },
    /// From the shard's leader `from` (in `term`) to a voter: campaign now; `last` is the
    /// leader's last entry, which the candidate's log must hold.
    Campaign {
        from: u64,
        term: u64,
        last: Option<LogId<u64>>,
    },
}

/// `PEERPROC_LEAD`'s answer: how long it took in milliseconds (for `HandOver` the writes held,
/// for `Campaign` from the election's start until this node led).
pub type LeadReply = Result<u64, HandOverError>;

#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandOverError {
    #[error("this node is not part of a multi-node metadata service")]
    Solo,
    #[error("shard {shard}: node {node} does not lead it in term {term}")]
    NotLeader { shard: u16, node: u64, term: u64 },
    #[error("shard {shard}: its leader has led for less than the leader lease")]
    TooNew { shard: u16 },
    #[error("shard {shard}: node {node} does not vote in it")]
    NotVoter { shard: u16, node: u64 },
    #[error("shard {shard}: its leader is not one of its voters (a learner now): its vote would not count")]
    LeaderNotVoter { shard: u16 },
    #[error("shard {shard}: {voters} voters, a hand-over needs at most {max}")]
    TooManyVoters {
        shard: u16,
        voters: usize,
        max: usize,
    },
    #[error("shard {shard}: a membership change or another hand-over is under way")]
    Changing { shard: u16 },
    #[error("shard {shard}: its writes did not pause in time")]
    Busy { shard: u16 },
    #[error("shard {shard}: node {node}'s log is at {at:?}, the leader's at {last:?}")]
    Behind {
        shard: u16,
        node: u64,
        at: Option<u64>,
        last: Option<u64>,
    },
    #[error("shard {shard}: node {node} did not win its election in time (leader now {leader:?})")]
    NotElected {
        shard: u16,
        node: u64,
        leader: Option<u64>,
    },
    #[error("shard {shard}: {reason}")]
    Raft { shard: u16, reason: String },
    #[error("{0}")]
    Peer(String),
}

/// A candidate this far behind the leader is not waited for with the writes held.
const CLOSE: u64 = 64;
/// Longest wait for the batch being appended when the hand-over holds the writes.
const GATE_WAIT: Duration = Duration::from_secs(2);
/// Longest wait, writes held, for the candidate's log to match the leader's.
const MATCH_WAIT: Duration = Duration::from_millis(500);
/// Longest wait for the candidate to lead once it campaigns.
const ELECTED_WAIT: Duration = Duration::from_secs(2);
/// The leader's call to the candidate: its checks, its wait for the log, its election.
const CAMPAIGN_CALL: Duration = Duration::from_secs(3);
/// Shard 0's leader's call to a shard's leader: the whole hand-over.
const HAND_OVER_CALL: Duration = Duration::from_secs(10);
/// Past the leader lease (`election_timeout_max`), a margin for the clocks of two calls.
const LEASE_MARGIN: Duration = Duration::from_millis(500);

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Small plain enums: postcard cannot fail on them.
    postcard::to_stdvec(v).unwrap_or_default()
}

/// `PEERPROC_LEAD` on a node.
pub(crate) async fn answer(groups: &Groups, shard: ShardId, body: &[u8]) -> LeadReply {
    let lead: Lead = postcard::from_bytes(body)
        .map_err(|e| HandOverError::Peer(format!("undecodable hand-over call: {e}")))?;
    match lead {
        Lead::HandOver { to, term } => hand_over(groups, shard, to, term).await,
        Lead::Campaign { from, term, last } => campaign(groups, shard, from, term, last).await,
    }
}

/// Steps 2 and 3 (the module's comment), on the shard's leader: hands the shard to voter `to`.
pub async fn hand_over(groups: &Groups, shard: ShardId, to: u64, term: u64) -> LeadReply {
    let peers = groups.peers().ok_or(HandOverError::Solo)?;
    let raft = groups.raft_of(shard).ok_or(HandOverError::Solo)?;
    let gate = groups.gate(shard).ok_or(HandOverError::Solo)?;
    let _changes = gate
        .changes
        .try_lock()
        .map_err(|_| HandOverError::Changing { shard: shard.0 })?;
    let me = groups.node_id();
    settled_leader(&raft, shard, me, term, to).await?;
    // Far behind (a node back from a restart still catching up): not worth pausing the writes.
    let (matched, last) = progress(&raft, to);
    if last.unwrap_or(0) > matched.unwrap_or(0) + CLOSE {
        return Err(HandOverError::Behind {
            shard: shard.0,
            node: to,
            at: matched,
            last,
        });
    }
    let held_at = Instant::now();
    let _writes = tokio::time::timeout(GATE_WAIT, gate.writes.lock())
        .await
        .map_err(|_| HandOverError::Busy { shard: shard.0 })?;
    // It may have lost the lead while the last batch went out.
    settled_leader(&raft, shard, me, term, to).await?;
    let last = matching(&raft, shard, to).await?;
    let body = encode(&Lead::Campaign {
        from: me,
        term,
        last,
    });
    let r = peers
        .call(to, PEERPROC_LEAD, shard, body, CAMPAIGN_CALL)
        .await
        .map_err(|e| HandOverError::Peer(format!("node {to}: {e}")))
        .and_then(|b| {
            postcard::from_bytes::<LeadReply>(&b)
                .map_err(|e| HandOverError::Peer(format!("node {to}: bad answer: {e}")))?
        });
    // Whatever the answer, the writes go on (to this node if it still leads, else to the new
    // leader) when `_writes` drops.
    let paused = held_at.elapsed();
    match &r {
        Ok(ms) => tracing::info!(
            %shard,
            to,
            paused_ms = paused.as_millis() as u64,
            elected_ms = ms,
            "shard leadership handed over"
        ),
        Err(e) => {
            tracing::info!(%shard, to, paused_ms = paused.as_millis() as u64, "hand-over failed: {e}")
        }
    }
    r.map(|_| paused.as_millis() as u64)
}

/// This node leads the shard in `term`, has for longer than the leader lease, it and `to` vote
/// in it, and its membership is settled (not joint, committed) with at most `MAX_VOTERS`
/// voters.
async fn settled_leader(
    raft: &Raft,
    shard: ShardId,
    me: u64,
    term: u64,
    to: u64,
) -> Result<(), HandOverError> {
    let lease = Duration::from_millis(raft.config().election_timeout_max) + LEASE_MARGIN;
    let state = raft
        .with_raft_state(move |st| {
            let vote = st.vote_ref();
            let leads = st.server_state == ServerState::Leader
                && vote.is_committed()
                && vote.leader_id().voted_for() == Some(me)
                && vote.leader_id().get_term() == term;
            // The vote's time is when it became leader: nothing touches it since.
            let old = st.vote_last_modified().is_some_and(|t| t.elapsed() > lease);
            let m = &st.membership_state;
            let settled = m.effective().log_id() == m.committed().log_id()
                && m.effective().membership().get_joint_config().len() == 1;
            let voters: BTreeSet<u64> = m.effective().voter_ids().collect();
            (leads, old, settled, voters)
        })
        .await
        .map_err(|e| HandOverError::Raft {
            shard: shard.0,
            reason: e.to_string(),
        })?;
    let (leads, old, settled, voters) = state;
    if !leads {
        return Err(HandOverError::NotLeader {
            shard: shard.0,
            node: me,
            term,
        });
    }
    if !old {
        return Err(HandOverError::TooNew { shard: shard.0 });
    }
    if !settled {
        return Err(HandOverError::Changing { shard: shard.0 });
    }
    if !voters.contains(&me) {
        // openraft 0.9 lets a leader that a membership change made a learner go on leading;
        // the candidate would need another voter's vote, which that leader's heartbeats keep
        // refused, and its failed campaign would leave the shard without a leader.
        return Err(HandOverError::LeaderNotVoter { shard: shard.0 });
    }
    if !voters.contains(&to) || to == me {
        return Err(HandOverError::NotVoter {
            shard: shard.0,
            node: to,
        });
    }
    if voters.len() > balance::MAX_VOTERS {
        return Err(HandOverError::TooManyVoters {
            shard: shard.0,
            voters: voters.len(),
            max: balance::MAX_VOTERS,
        });
    }
    Ok(())
}

/// On the leader: how far `to`'s log matches its own (index), and its own last index.
fn progress(raft: &Raft, to: u64) -> (Option<u64>, Option<u64>) {
    let m = raft.metrics();
    let m = m.borrow();
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&to).copied().flatten())
        .map(|l| l.index);
    (matched, m.last_log_index)
}

/// On the leader, its writes held: waits (`MATCH_WAIT`) until `to`'s log matches its last
/// entry, which it answers.
async fn matching(
    raft: &Raft,
    shard: ShardId,
    to: u64,
) -> Result<Option<LogId<u64>>, HandOverError> {
    let deadline = Instant::now() + MATCH_WAIT;
    let mut rx = raft.metrics();
    loop {
        let (matched, last) = {
            let m = rx.borrow_and_update();
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&to).copied().flatten());
            (matched, raft.data_metrics().borrow().last_log)
        };
        if matched.is_some() && matched >= last {
            return Ok(last);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let changed = tokio::time::timeout(left, rx.changed()).await;
        if !matches!(changed, Ok(Ok(()))) {
            return Err(HandOverError::Behind {
                shard: shard.0,
                node: to,
                at: matched.map(|l| l.index),
                last: last.map(|l| l.index),
            });
        }
    }
}

/// Step 4, on the candidate: campaigns if it follows `from` in `term` and its log holds
/// `last`; answers once it leads.
async fn campaign(
    groups: &Groups,
    shard: ShardId,
    from: u64,
    term: u64,
    last: Option<LogId<u64>>,
) -> LeadReply {
    let raft = groups.raft_of(shard).ok_or(HandOverError::Solo)?;
    let me = groups.node_id();
    {
        let m = raft.metrics();
        let m = m.borrow();
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == me)
        {
            return Err(HandOverError::NotVoter {
                shard: shard.0,
                node: me,
            });
        }
        if m.current_leader != Some(from) || m.current_term != term {
            return Err(HandOverError::NotLeader {
                shard: shard.0,
                node: from,
                term,
            });
        }
    }
    // Without the leader's last entry the leader refuses the vote, and this node's higher
    // term would unseat it for nothing.
    let deadline = Instant::now() + MATCH_WAIT;
    let mut rx = raft.data_metrics();
    loop {
        let have = rx.borrow_and_update().last_log;
        if have >= last {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !matches!(tokio::time::timeout(left, rx.changed()).await, Ok(Ok(()))) {
            return Err(HandOverError::Behind {
                shard: shard.0,
                node: me,
                at: have.map(|l| l.index),
                last: last.map(|l| l.index),
            });
        }
    }
    let started = Instant::now();
    raft.trigger()
        .elect()
        .await
        .map_err(|e| HandOverError::Raft {
            shard: shard.0,
            reason: e.to_string(),
        })?;
    let deadline = started + ELECTED_WAIT;
    let mut rx = raft.metrics();
    loop {
        let leader = {
            let m = rx.borrow_and_update();
            (m.state == ServerState::Leader)
                .then_some(me)
                .or(m.current_leader)
        };
        if leader == Some(me) {
            return Ok(started.elapsed().as_millis() as u64);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !matches!(tokio::time::timeout(left, rx.changed()).await, Ok(Ok(()))) {
            return Err(HandOverError::NotElected {
                shard: shard.0,
                node: me,
                leader,
            });
        }
    }
}

/// A shard's leadership has to be this old (as seen by shard 0's leader) before it moves: past
/// the old leader's lease, with a margin (the old leader checks the lease itself too).
const SETTLED: Duration = Duration::from_secs(5);
/// A shard whose hand-over failed is left alone this long.
const RETRY_AFTER: Duration = Duration::from_secs(20);
/// Most hand-overs planned in one round.
const PER_ROUND: usize = 16;
/// Most hand-overs in flight at once.
const IN_FLIGHT: usize = 4;

/// The bookkeeping of shard 0's leader between its rounds.
#[derive(Debug, Default)]
pub(crate) struct Balancer {
    /// Each shard's leader and term, and since when this node sees them.
    seen: BTreeMap<u16, (Option<u64>, u64, Instant)>,
    /// Shards whose hand-over failed, and when.
    failed: BTreeMap<u16, Instant>,
}

impl Balancer {
    /// This node no longer leads shard 0: the next time it does, it starts afresh.
    pub(crate) fn forget(&mut self) {
        self.seen.clear();
        self.failed.clear();
    }

    /// One round, on shard 0's leader, after placement's: plans with `balance::moves` among
    /// the `live` nodes, leaving out the shards whose memberships placement just `changed`,
    /// and hands over, `IN_FLIGHT` at a time. Answers how many shards changed leader.
    pub(crate) async fn round(
        &mut self,
        groups: &Groups,
        live: &BTreeSet<u64>,
        changed: &BTreeSet<u16>,
    ) -> usize {
        let now = Instant::now();
        self.failed
            .retain(|_, at| now.duration_since(*at) < RETRY_AFTER);
        let mut shards = Vec::new();
        for s in 0..groups.shard_count() {
            let Some(raft) = groups.raft_of(ShardId(s)) else {
                continue;
            };
            let (leader, term, voters, settled) = {
                let m = raft.metrics();
                let m = m.borrow();
                let mc = &m.membership_config;
                let settled = mc.membership().get_joint_config().len() == 1
                    && mc.log_id().map(|l| l.index) <= m.last_applied.map(|l| l.index);
                let voters: BTreeSet<u64> = mc.membership().voter_ids().collect();
                (m.current_leader, m.current_term, voters, settled)
            };
            let since = match self.seen.get(&s) {
                Some((l, t, since)) if *l == leader && *t == term => *since,
                _ => {
                    self.seen.insert(s, (leader, term, now));
                    now
                }
            };
            shards.push((
                ShardLead {
                    shard: s,
                    voters,
                    leader,
                    movable: settled
                        && !changed.contains(&s)
                        && now.duration_since(since) >= SETTLED
                        && !self.failed.contains_key(&s),
                },
                term,
            ));
        }
        let leads: Vec<ShardLead> = shards.iter().map(|(s, _)| s.clone()).collect();
        let terms: BTreeMap<u16, u64> = shards.iter().map(|(s, t)| (s.shard, *t)).collect();
        let moves = balance::moves(&leads, live, PER_ROUND);
        let mut done = 0;
        for chunk in moves.chunks(IN_FLIGHT) {
            let runs = chunk.iter().map(|m| {
                let term = terms.get(&m.shard).copied().unwrap_or(0);
                async move { (m, ask(groups, m, term).await) }
            });
            for (m, r) in futures::future::join_all(runs).await {
                match r {
                    Ok(paused_ms) => {
                        done += 1;
                        tracing::info!(
                            shard = m.shard,
                            from = m.from,
                            to = m.to,
                            paused_ms,
                            "leadership moved to even the leaders out"
                        );
                    }
                    Err(e) => {
                        self.failed.insert(m.shard, Instant::now());
                        tracing::info!(
                            shard = m.shard,
                            from = m.from,
                            to = m.to,
                            "leadership not moved: {e}"
                        );
                    }
                }
            }
            if groups.leader_of(ShardId(0)) != Some(groups.node_id()) {
                break;
            }
        }
        done
    }
}

/// Has the shard's leader (`m.from`: this node, or another) hand it to `m.to`.
async fn ask(groups: &Groups, m: &balance::Move, term: u64) -> LeadReply {
    let shard = ShardId(m.shard);
    if m.from == groups.node_id() {
        return hand_over(groups, shard, m.to, term).await;
    }
    let peers = groups.peers().ok_or(HandOverError::Solo)?;
    let body = encode(&Lead::HandOver { to: m.to, term });
    let b = peers
        .call(m.from, PEERPROC_LEAD, shard, body, HAND_OVER_CALL)
        .await
        .map_err(|e| HandOverError::Peer(format!("node {}: {e}", m.from)))?;
    postcard::from_bytes::<LeadReply>(&b)
        .map_err(|e| HandOverError::Peer(format!("node {}: bad answer: {e}", m.from)))?
}
