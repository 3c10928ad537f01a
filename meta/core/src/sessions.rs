//! Exactly-once application of proposals across leader changes (Raft thesis §6.3).
//!
//! A command reaches a shard's log through its leader; if that leader dies after replicating
//! the entry but before answering, the entry may still commit under the next leader, and the
//! proposing node, which saw no answer, sends the command again. Without more, a create would
//! then answer "exists" and a remove "not found" for what in fact succeeded once. So every
//! command carries a `Tag` (which node proposed it, in which life of that node, with which
//! sequence number), and each shard's replicated state keeps the results of the tagged
//! commands whose proposer may still be waiting: a command seen before is not applied again;
//! its first result is the answer.
//!
//! The table is part of the state machine (in snapshots and checkpoints, equal on every
//! replica, changed only by `apply`), and bounded: the proposer states in every tag the lowest
//! sequence number it still waits for (`Tag::waits_from`); results below it go, and a
//! proposer's previous life's results go at its first command from a new life.
//!
//! The same holds one level up, for the NFS clients: a client whose MDS node died after
//! committing its request but before answering sends the request again, on the same session,
//! slot and sequence id, to the node that took the address over (`mds::state::adopt`). That
//! node is another proposer, so the tags above cannot see the copy; `Answers` keeps, per
//! client slot, the answers of the last request's successful commands (`Command::Request`),
//! so the copy gets the first answer instead of "exists" or "not found".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::FsError;
use super::object::{Outcome, Time};

/// Who proposed a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The proposing MDS node.
    pub origin: u64,
    /// Its life (the node's boot count): a restarted node never resends what an earlier life
    /// proposed, so that life's results can go.
    pub life: u64,
    /// Increasing per life, across every shard of the node.
    pub seq: u64,
    /// The lowest sequence number the proposer still waits for (at most `seq`): every lower one
    /// was answered or given up, and will not be sent again.
    pub waits_from: u64,
}

/// An NFS client's request as its session numbers it: a retransmission carries the same
/// session, slot and sequence id (RFC 8881 §2.10.6), and `op` tells the operations of one
/// COMPOUND apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientRequest {
    pub session: [u8; 16],
    pub slot: u32,
    pub seqid: u32,
    pub op: u16,
}

/// The result a command gave when first applied.
pub type Result = std::result::Result<Outcome, FsError>;

/// Most results kept per proposer and shard: far above the commands one node has in flight
/// (each waits for one NFS request), so that only a runaway proposer meets it.
const MAX_KEPT: usize = 8192;

/// One proposer's results on one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Proposer {
    life: u64,
    /// Sequence numbers below this are answered or given up (or evicted by `MAX_KEPT`).
    floor: u64,
    results: BTreeMap<u64, Result>,
}

/// A shard's table of recent results, by proposing node, and of client requests' answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    by_origin: BTreeMap<u64, Proposer>,
    pub answers: Answers,
}

/// The table as builds before `Answers` encoded it (read once, then written anew).
#[derive(Deserialize)]
struct SessionsV1 {
    by_origin: BTreeMap<u64, Proposer>,
}

/// Most client slots whose answers one shard keeps. A slot's answers go when its next request
/// reaches the shard (the client has the reply of the one before: RFC 8881 §2.10.6.1), or
/// `ANSWER_KEEP` after they were recorded, so this bounds the slots that changed this shard
/// lately; past it the slot used longest ago goes. 4,096 is 64 clients with every one of 64
/// slots busy on one shard.
pub const MAX_SLOTS_KEPT: usize = 4096;

/// How long an answer is kept: far past when a client sends a request again after its node
/// died (a reconnect and a retransmission, or a hard mount's 60 s timeout), and it keeps
/// every shard's table (written whole by each checkpoint) to what its clients did lately.
pub const ANSWER_KEEP: std::time::Duration = std::time::Duration::from_secs(300);

type SlotKey = ([u8; 16], u32);

/// One client slot's answers: its last request's (sequence id), by operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SlotAnswers {
    seqid: u32,
    /// `Answers::clock` when last written: the order eviction goes by.
    used: u64,
    /// When the last answer's request was proposed (`Command::Request::at`).
    at: Time,
    ops: Vec<(u16, Outcome)>,
}

/// The answers of client requests applied on a shard (`Command::Request`), by session and
/// slot: part of the replicated state, changed only by `apply`, so equal on every replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    by_slot: BTreeMap<SlotKey, SlotAnswers>,
    by_age: BTreeMap<u64, SlotKey>,
    clock: u64,
}

impl Answers {
    /// The answer `req` got, if it was applied here and succeeded.
    pub fn answered(&self, req: &ClientRequest) -> Option<&Outcome> {
        let s = self.by_slot.get(&(req.session, req.slot))?;
        if s.seqid != req.seqid {
            return None;
        }
        s.ops.iter().find(|(op, _)| *op == req.op).map(|(_, o)| o)
    }

    /// Keeps `out` as the answer of `req`, proposed at `at`; a newer request on the slot
    /// replaces what the slot had.
    pub fn record(&mut self, req: &ClientRequest, at: Time, out: &Outcome) {
        let key = (req.session, req.slot);
        self.clock += 1;
        let clock = self.clock;
        let slot = self.by_slot.entry(key).or_insert(SlotAnswers {
            seqid: req.seqid,
            used: clock,
            at,
            ops: Vec::new(),
        });
        if slot.seqid != req.seqid {
            slot.seqid = req.seqid;
            slot.ops.clear();
        }
        self.by_age.remove(&slot.used);
        slot.used = clock;
        slot.at = at;
        self.by_age.insert(clock, key);
        slot.ops.retain(|(op, _)| *op != req.op);
        slot.ops.push((req.op, out.clone()));
        // Oldest first; the times are the log's, so every replica drops the same.
        while let Some((_, oldest)) = self.by_age.first_key_value() {
            let stale = self
                .by_slot
                .get(oldest)
                .is_none_or(|s| super::txn::older_than(s.at, at, ANSWER_KEEP));
            if !stale && self.by_slot.len() <= MAX_SLOTS_KEPT {
                break;
            }
            if let Some((_, oldest)) = self.by_age.pop_first() {
                self.by_slot.remove(&oldest);
            }
        }
    }

    /// Client slots with answers kept.
    pub fn slots(&self) -> usize {
        self.by_slot.len()
    }
}

/// What to do with a tagged command.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: apply it, then `record` its result.
    New,
    /// Applied before: this is its result; apply nothing.
    Again(Box<Result>),
    /// Its proposer no longer waits for it (it gave up, or the result was evicted): apply
    /// nothing. Whether an earlier copy was applied is what the proposer's timeout told its
    /// client (an unknown outcome).
    Stale,
    /// From an earlier life of its proposer, which is gone: apply it, keep nothing.
    Untracked,
}

impl Sessions {
    /// Classifies `tag` and drops what its proposer no longer waits for. Deterministic: every
    /// replica does the same at the same entry.
    pub fn check(&mut self, tag: &Tag) -> Seen {
        let p = self.by_origin.entry(tag.origin).or_default();
        if tag.life < p.life {
            return Seen::Untracked;
        }
        if tag.life > p.life {
            *p = Proposer {
                life: tag.life,
                ..Proposer::default()
            };
        }
        if tag.waits_from > p.floor {
            p.floor = tag.waits_from;
            p.results = p.results.split_off(&tag.waits_from);
        }
        if let Some(r) = p.results.get(&tag.seq) {
            return Seen::Again(Box::new(r.clone()));
        }
        if tag.seq < p.floor {
            return Seen::Stale;
        }
        Seen::New
    }

    /// Keeps the result of a `Seen::New` command.
    pub fn record(&mut self, tag: &Tag, result: &Result) {
        let p = self.by_origin.entry(tag.origin).or_default();
        if tag.life != p.life {
            return;
        }
        p.results.insert(tag.seq, result.clone());
        while p.results.len() > MAX_KEPT {
            let Some((lowest, _)) = p.results.pop_first() else {
                break;
            };
            p.floor = p.floor.max(lowest + 1);
        }
    }

    /// Results kept, over every proposer (for tests and status).
    pub fn kept(&self) -> usize {
        self.by_origin.values().map(|p| p.results.len()).sum()
    }

    pub fn encode(&self) -> std::result::Result<Vec<u8>, FsError> {
        postcard::to_stdvec(self).map_err(|e| FsError::Io(format!("encode sessions: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<Sessions, FsError> {
        match postcard::from_bytes(bytes) {
            Ok(s) => Ok(s),
            // Whole, or it is not the old format: a damaged table is never read as an old
            // one with its answers dropped.
            Err(e) => match postcard::take_from_bytes::<SessionsV1>(bytes) {
                Ok((v1, [])) => Ok(Sessions {
                    by_origin: v1.by_origin,
                    answers: Answers::default(),
                }),
                _ => Err(FsError::Corrupt(format!("sessions: {e}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(origin: u64, life: u64, seq: u64, waits_from: u64) -> Tag {
        Tag {
            origin,
            life,
            seq,
            waits_from,
        }
    }

    fn ok() -> Result {
        Ok(Outcome::default())
    }

    #[test]
    fn a_resent_command_gets_its_first_result_and_is_not_applied_again() {
        let mut s = Sessions::default();
        let t = tag(1, 1, 5, 5);
        assert_eq!(s.check(&t), Seen::New);
        s.record(&t, &Err(FsError::Exists));
        assert_eq!(s.check(&t), Seen::Again(Box::new(Err(FsError::Exists))));
        // Another node's command with the same number is its own.
        assert_eq!(s.check(&tag(2, 1, 5, 5)), Seen::New);
    }

    #[test]
    fn results_go_once_the_proposer_no_longer_waits_for_them() {
        let mut s = Sessions::default();
        for seq in 0..10 {
            let t = tag(1, 1, seq, 0);
            assert_eq!(s.check(&t), Seen::New);
            s.record(&t, &ok());
        }
        assert_eq!(s.kept(), 10);
        let t = tag(1, 1, 10, 7);
        assert_eq!(s.check(&t), Seen::New);
        s.record(&t, &ok());
        assert_eq!(s.kept(), 4, "7, 8, 9 and 10 may still be resent");
        // A copy of 3 that was still in a log: its proposer gave it up.
        assert_eq!(s.check(&tag(1, 1, 3, 7)), Seen::Stale);
        assert_eq!(s.check(&tag(1, 1, 8, 7)), Seen::Again(Box::new(ok())));
    }

    #[test]
    fn a_new_life_drops_the_previous_one_and_old_lives_are_not_tracked() {
        let mut s = Sessions::default();
        let t = tag(1, 1, 5, 0);
        s.check(&t);
        s.record(&t, &ok());
        let t2 = tag(1, 2, 0, 0);
        assert_eq!(s.check(&t2), Seen::New);
        s.record(&t2, &ok());
        assert_eq!(s.kept(), 1);
        let old = tag(1, 1, 6, 0);
        assert_eq!(s.check(&old), Seen::Untracked);
        s.record(&old, &ok());
        assert_eq!(s.kept(), 1);
    }

    #[test]
    fn the_table_is_bounded_per_proposer() {
        let mut s = Sessions::default();
        for seq in 0..(MAX_KEPT as u64 + 10) {
            let t = tag(1, 1, seq, 0);
            s.check(&t);
            s.record(&t, &ok());
        }
        assert_eq!(s.kept(), MAX_KEPT);
        // An evicted one is never applied twice.
        assert_eq!(s.check(&tag(1, 1, 3, 0)), Seen::Stale);
    }

    fn req(session: u8, slot: u32, seqid: u32, op: u16) -> ClientRequest {
        ClientRequest {
            session: [session; 16],
            slot,
            seqid,
            op,
        }
    }

    fn now() -> Time {
        Time::new(1_800_000_000, 0)
    }

    fn created(ino: u64) -> Outcome {
        Outcome {
            created: true,
            effects: vec![crate::Effect::Freed(ino)],
            ..Outcome::default()
        }
    }

    #[test]
    fn a_client_request_keeps_its_answer_until_the_slot_moves_on() {
        let mut a = Answers::default();
        a.record(&req(1, 0, 7, 2), now(), &created(10));
        a.record(&req(1, 0, 7, 4), now(), &created(11));
        assert_eq!(a.answered(&req(1, 0, 7, 2)), Some(&created(10)));
        assert_eq!(a.answered(&req(1, 0, 7, 4)), Some(&created(11)));
        // Another operation, slot, session or sequence id is another request.
        assert_eq!(a.answered(&req(1, 0, 7, 3)), None);
        assert_eq!(a.answered(&req(1, 1, 7, 2)), None);
        assert_eq!(a.answered(&req(2, 0, 7, 2)), None);
        assert_eq!(a.answered(&req(1, 0, 6, 2)), None);
        // The slot's next request: the client has the answers before it.
        a.record(&req(1, 0, 8, 2), now(), &created(12));
        assert_eq!(a.answered(&req(1, 0, 7, 2)), None);
        assert_eq!(a.answered(&req(1, 0, 7, 4)), None);
        assert_eq!(a.answered(&req(1, 0, 8, 2)), Some(&created(12)));
        assert_eq!(a.slots(), 1);
    }

    #[test]
    fn client_slots_kept_are_bounded_oldest_first() {
        let mut a = Answers::default();
        for slot in 0..(MAX_SLOTS_KEPT as u32 + 5) {
            a.record(&req(1, slot, 1, 0), now(), &created(u64::from(slot)));
            // Slot 0 stays in use, so it is never the oldest.
            a.record(&req(1, 0, slot + 1, 0), now(), &created(0));
        }
        assert_eq!(a.slots(), MAX_SLOTS_KEPT);
        assert_eq!(a.by_age.len(), MAX_SLOTS_KEPT);
        assert!(a.answered(&req(1, 1, 1, 0)).is_none(), "the oldest went");
        let last = MAX_SLOTS_KEPT as u32 + 4;
        assert!(a.answered(&req(1, last, 1, 0)).is_some());
        assert!(a.answered(&req(1, 0, last + 1, 0)).is_some());
    }

    #[test]
    fn answers_go_once_no_client_would_send_their_request_again() {
        let mut a = Answers::default();
        let t0 = now();
        a.record(&req(1, 0, 1, 0), t0, &created(1));
        a.record(&req(2, 0, 1, 0), t0, &created(2));
        let later = |s: u64| Time::new(t0.secs + s as i64, 0);
        a.record(&req(1, 0, 2, 0), later(ANSWER_KEEP.as_secs()), &created(3));
        // Session 2's slot is as old as the keep, not older: kept.
        assert!(a.answered(&req(2, 0, 1, 0)).is_some());
        a.record(
            &req(3, 0, 1, 0),
            later(ANSWER_KEEP.as_secs() + 2),
            &created(4),
        );
        assert!(a.answered(&req(2, 0, 1, 0)).is_none(), "past the keep");
        assert!(a.answered(&req(1, 0, 2, 0)).is_some());
        assert_eq!(a.slots(), 2);
        assert_eq!(a.by_age.len(), 2);
    }

    #[test]
    fn a_table_written_before_answers_existed_is_read() {
        #[derive(Serialize)]
        struct V1<'a> {
            by_origin: &'a BTreeMap<u64, Proposer>,
        }
        let mut s = Sessions::default();
        let t = tag(3, 9, 1, 1);
        s.check(&t);
        s.record(&t, &ok());
        let old = postcard::to_stdvec(&V1 {
            by_origin: &s.by_origin,
        })
        .unwrap();
        assert_eq!(Sessions::decode(&old).unwrap(), s);
        assert!(Sessions::decode(&[0xff, 0xff]).is_err());
        // A current table cut short in its answers is damaged, not an old one.
        s.answers.record(&req(1, 2, 3, 4), now(), &created(5));
        let whole = s.encode().unwrap();
        assert!(Sessions::decode(&whole[..whole.len() - 3]).is_err());
    }

    #[test]
    fn the_table_round_trips() {
        let mut s = Sessions::default();
        let t = tag(3, 9, 1, 1);
        s.check(&t);
        s.record(&t, &Err(FsError::NotFound));
        s.answers.record(&req(1, 2, 3, 4), now(), &created(5));
        assert_eq!(Sessions::decode(&s.encode().unwrap()).unwrap(), s);
    }
}
