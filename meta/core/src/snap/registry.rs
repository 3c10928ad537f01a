//! Shard 0's registry of snapshots: one record per snapshot id, whose state is the
//! cross-shard protocol's decision (`docs/plans/snapshots.md` §2.3). `SnapBegin` makes a
//! record `Pending` and hands out the id; `SnapDecide` is the commit point (`Decided`);
//! `SnapResolve` (a recovery's question) aborts it unless decided; `SnapReady` says every
//! shard is cut; `SnapDelete` marks a ready snapshot for the merge of its pre-images;
//! `SnapForgetRecord` drops an aborted (or fully merged) record.

use serde::{Deserialize, Serialize};

use super::SnapId;
use crate::object::Time;

/// How long a snapshot's shards may stay frozen before its decision: a `SnapDecide` later
/// than this after the record was begun is refused, and the coordinator gives it up. A
/// freeze normally lasts about four Raft commits plus the drain of decided transactions
/// (milliseconds); this bounds the write stall of a slow one.
pub const FREEZE_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Most records the registry holds (every state): a `SnapBegin` beyond it answers
/// `NoSpace`. Each live snapshot costs pre-images on every shard of every node, so the
/// number of them has to be bounded anyway; aborted records go after `ABORTED_KEEP`.
pub const MAX_SNAPSHOTS: usize = 1024;

/// How long an aborted record stays listed (so `cfs admin snapshot list` can say a create
/// failed) before shard 0's leader forgets it.
pub const ABORTED_KEEP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A snapshot's phase in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapState {
    /// Begun; the shards are being frozen and drained. Not yet decided: recovery may abort it.
    Pending { since: Time },
    /// Decided (the commit point): every shard is to be cut, by the coordinator or by
    /// recovery. Whole from here on.
    Decided { at: Time },
    /// Every shard is cut: the snapshot can be read.
    Ready { at: Time },
    /// Given up before its decision: no shard was or will be cut for it.
    Aborted { at: Time },
    /// Being deleted: its pre-images merge away on every shard (`meta`'s `snap_delete`
    /// pass), then the record goes.
    Deleting { at: Time },
}

impl SnapState {
    /// Whether the snapshot was decided: every shard is (or will be) cut for it.
    pub fn decided(&self) -> bool {
        matches!(
            self,
            SnapState::Decided { .. } | SnapState::Ready { .. } | SnapState::Deleting { .. }
        )
    }
}

/// Shard 0's record of snapshot `id` (`Command::SnapBegin`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapRecord {
    /// Unique among the records that are not `Aborted`.
    pub name: Vec<u8>,
    /// The directory whose `.snapshot` shows it. The snapshot cuts the whole namespace; the
    /// root only chooses where it is seen (`docs/plans/snapshots.md` §1.2).
    pub root: u64,
    pub created: Time,
    /// How long it is kept before retention deletes it or moves it to the object store.
    pub retain_secs: u64,
    pub state: SnapState,
}

/// A registry's records by id, as `StateStore::snap_records` lists them.
pub type Registry = std::collections::BTreeMap<SnapId, SnapRecord>;

/// Whether a snapshot taken at `created` and kept `retain_secs` is past its retention at
/// `now` (seconds since the epoch): the one rule that retention (delete, or move the bytes to
/// the bucket) and `snapshot list` go by.
pub fn past_retention(created: i64, retain_secs: u64, now: i64) -> bool {
    i128::from(now) - i128::from(created) > i128::from(retain_secs)
}

/// Whether `now` is more than `age` after `at`, to the nanosecond (`txn::older_than` counts
/// whole seconds, too coarse for a freeze bounded at one or two).
pub fn later_than(at: Time, now: Time, age: std::time::Duration) -> bool {
    elapsed(at, now) > age
}

/// How long after `at` `now` is (zero if it is not after).
pub fn elapsed(at: Time, now: Time) -> std::time::Duration {
    let ns = |t: Time| i128::from(t.secs) * 1_000_000_000 + i128::from(t.nsecs);
    let d = ns(now) - ns(at);
    u64::try_from(d.max(0)).map_or(std::time::Duration::MAX, std::time::Duration::from_nanos)
}
