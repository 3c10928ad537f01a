//! Cross-shard operations: two-phase commit with the intents in the shards' Raft logs.
//!
//! A command whose objects live on several shards (`Command::shards`), or whose `apply` reached
//! an object of another shard (`FsError::Elsewhere`: a directory rename's loop check walking up
//! through other shards), runs as a transaction. The node that proposed it coordinates:
//!
//! 1. **Lock.** `TxnLock` on every shard involved records the transaction there (`Prepared`)
//!    with the keys it locks (and, for a new object, an inode number reserved in that shard's
//!    counter). A key locked by another transaction refuses (`FsError::Busy`): the coordinator
//!    releases what it took and tries again later, so two transactions never wait for each
//!    other. Every other command that reads or changes a locked key fails `Busy` on every
//!    replica alike (`Guarded`), and its proposer tries again shortly.
//! 2. **Compute.** With its keys locked, the coordinator runs the ordinary `apply` over
//!    `TxnStore`, which reads the locked objects from this node's replicas (they cannot change
//!    while locked) and collects the writes per shard. A read of a key not locked yet answers
//!    `NeedLock`: the coordinator locks it too and runs `apply` again. So every POSIX rule lives
//!    in `apply` once, for one shard and for several.
//! 3. **Decide.** `TxnDecide` on the coordinating shard (the shard of the command's
//!    `Command::home` directory, else the lowest shard involved) records the decision with
//!    every shard's writes: the commit point, and for a client request its answer
//!    (`Command::Request`). It is refused once a recovery has recorded an abort there.
//! 4. **Commit.** `TxnCommit` on each shard installs that shard's writes and releases its locks
//!    (a no-op where already done), then `TxnForget` drops the decision.
//!
//! Recovery (`Namespace::recover_txns`, on each shard's leader): a prepared record older than
//! `STALE` asks the coordinating shard to decide (`TxnResolve`: abort unless decided) and
//! then commits or releases its part; a commit decision older than `STALE` is driven to the
//! end. An abort decision stays for `ABORT_KEEP` so that a coordinator that was only slow can
//! never commit after a participant released its locks. So a kill -9 of the coordinator or of
//! any participant at any step ends with the operation done everywhere or nowhere.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::coding::FileCode;
use super::object::{Inode, Time};
use super::shard::{Key, ShardId};

/// A transaction's id: the proposing node in the top 16 bits, its boot count in the next 48,
/// its sequence number below, so ids of two nodes or two lives never meet.
pub type TxnId = u128;

/// A prepared transaction older than this is asked about by its participants' leaders
/// (`Options::txn_stale` sets it): a coordinator takes milliseconds, or seconds when it waits
/// out an election; asking aborts one that is only slow, which then tries again.
pub const STALE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an abort decision is kept: longer than any coordinator keeps trying.
pub const ABORT_KEEP: std::time::Duration = std::time::Duration::from_secs(600);
/// A coordinator may record its commit only this long after its first lock: a recovery may
/// have started after `STALE`, but it records an abort before it releases anything.
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// One shard's record of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEntry {
    /// This shard's part is locked for the transaction.
    pub prepared: Option<Prepared>,
    /// On the coordinating shard: what was decided.
    pub decision: Option<Decision>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub coord: ShardId,
    /// The keys locked here.
    pub keys: Vec<Key>,
    /// The inode number reserved in this shard's counter for a new object.
    pub reserved: Option<u64>,
    /// When the first lock was taken (the proposer's clock).
    pub since: Time,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Commit { parts: Vec<TxnPart>, at: Time },
    Abort { at: Time },
}

/// A directory entry a transaction writes: (dir, name, (inode, cookie) or deleted).
pub type EntryWrite = (u64, Vec<u8>, Option<(u64, u64)>);

/// What a transaction writes on one shard: whole values or deletions, counters as deltas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnPart {
    pub shard: ShardId,
    pub inodes: Vec<(u64, Option<Inode>)>,
    pub dirents: Vec<EntryWrite>,
    pub cookies: Vec<(u64, Option<u64>)>,
    pub meta: Vec<(String, i64)>,
    pub orphans: Vec<(u64, bool)>,
    pub chunks: Vec<(u64, u64, Option<Vec<u64>>)>,
    pub stripes: Vec<(u64, Option<FileCode>)>,
}

impl TxnPart {
    /// Whether this part makes an object that did not exist (committed first, so no name ever
    /// points at a missing object), adds a name (second), or only removes and changes.
    pub fn rank(&self, existed: &BTreeSet<u64>) -> u8 {
        if self
            .inodes
            .iter()
            .any(|(ino, v)| v.is_some() && !existed.contains(ino))
        {
            0
        } else if self.dirents.iter().any(|(_, _, v)| v.is_some()) {
            1
        } else if self.inodes.iter().any(|(_, v)| v.is_none()) {
            3
        } else {
            2
        }
    }

    /// The keys this part writes: each must be locked by the transaction.
    pub fn keys(&self) -> BTreeSet<Key> {
        let mut k = BTreeSet::new();
        for (ino, _) in &self.inodes {
            k.insert(Key::Inode(*ino));
        }
        for (dir, _, _) in &self.dirents {
            k.insert(Key::Entries(*dir));
        }
        for (dir, _) in &self.cookies {
            k.insert(Key::Entries(*dir));
        }
        for (ino, _) in &self.orphans {
            k.insert(Key::Inode(*ino));
        }
        for (ino, _, _) in &self.chunks {
            k.insert(Key::Inode(*ino));
        }
        for (ino, _) in &self.stripes {
            k.insert(Key::Inode(*ino));
        }
        k
    }
}

fn time_diff_ok(from: Time, to: Time, limit: std::time::Duration) -> bool {
    let secs = to.secs.saturating_sub(from.secs);
    secs <= i64::try_from(limit.as_secs()).unwrap_or(i64::MAX)
}

/// Whether `at` lies more than `age` before `now`.
pub fn older_than(at: Time, now: Time, age: std::time::Duration) -> bool {
    !time_diff_ok(at, now, age)
}
