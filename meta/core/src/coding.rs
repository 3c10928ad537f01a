//! Erasure-coded files (issue 13, docs/EC.md): the replicated record of which files are
//! Reed-Solomon coded, with which geometry, where each shard is, and each shard's blake3 per
//! group; and the commands that move a file from mirrored to encoded (`BeginEncode`,
//! `FinishEncode`, `AbortEncode`), keep the shards whole (`ShardBad`, `ShardMoved`) and clean
//! up after them (`CopiesTrimmed`, `ShardsDropped`).
//!
//! Placement is per file (`mds::dataservers::placement`: Linux clients get whole-file layouts), so
//! encoding is too: a file is mirrored (its row of the `chunks` table) or encoded (its
//! `FileCode`), never both once an encode finished; until then the mirrors stay authoritative.
//! A group is one encode job's range (`[g·S, (g+1)·S)` for the encoder's span S), recorded with
//! its shards' sums. All groups share one placement of k+m data servers and one epoch, because
//! the data servers keep one dense shard object per (file, epoch, shard index) and a striped
//! layout names one server per shard for the whole file. The epoch comes from the shard's
//! counter inside `apply`, so a file encoded again after going back to mirrors never meets
//! shards of its earlier encoding.
//!
//! Nothing on a data server is forgotten by the record before it is deleted there: the mirror
//! copies an encode made redundant stay listed (`stale_copies`) until `CopiesTrimmed`, and an
//! encoding given up (a write brought the file back to mirrors, or the encode failed) stays as
//! a `retired` record until its shards are dropped (`ShardsDropped`). A removed file's shards
//! go with its orphan record, as its mirrors do.

use serde::{Deserialize, Serialize};

use super::object::Time;
use std::collections::BTreeMap;

/// Most shards of a stripe (k+m): the bad-shard mask is 32 bits.
pub const MAX_SHARDS: usize = 32;

/// A file's encoded groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCode {
    /// Names the data servers' shard objects of this encoding.
    pub epoch: u64,
    pub k: u8,
    pub m: u8,
    /// log2 of the shard unit (bytes of one shard per stripe).
    pub unit_shift: u8,
    /// The data server of shard i (data shards first, then parity).
    pub placement: Vec<u64>,
    /// The encoded groups, by group index.
    pub groups: BTreeMap<u64, GroupCode>,
    /// An encode under way; the file is still mirrored.
    pub encoding: Option<Encoding>,
    /// Data servers holding a mirror copy the encode made redundant, to delete.
    pub stale_copies: Vec<u64>,
    /// The encoding no longer counts (the file is mirrored again, or the encode was given up):
    /// its shards are to be dropped, then the record goes.
    pub retired: bool,
}

/// One encoded group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCode {
    /// File bytes in the group.
    pub len: u64,
    /// blake3 of each shard's dense bytes of this group, in shard order.
    pub sums: Vec<[u8; 32]>,
    /// Shards found bad (bit i: shard i), waiting for repair.
    pub bad: u32,
}

/// Groups `[first, end)` being encoded since `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoding {
    pub first: u64,
    pub end: u64,
    pub since: Time,
}

/// One group's result of an encode job: its length and its shards' sums.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    pub group: u64,
    pub len: u64,
    pub sums: Vec<[u8; 32]>,
}

impl FileCode {
    /// Whether reads go to the shards: an encode finished and the file was not written since.
    pub fn is_encoded(&self) -> bool {
        !self.retired && !self.groups.is_empty()
    }

    /// File bytes the shards hold.
    pub fn file_len(&self) -> u64 {
        self.groups.values().map(|g| g.len).sum()
    }

    pub fn shards(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    /// Groups with a shard marked bad: the durable side of the repair queue.
    pub fn damaged(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.groups
            .iter()
            .filter(|(_, g)| g.bad != 0)
            .map(|(i, g)| (*i, g.bad))
    }

    /// Raw bytes stored per shard set, for `cfs admin status`: data plus parity.
    pub fn stored_bytes(&self) -> u64 {
        let unit = 1u64 << self.unit_shift;
        let k = u64::from(self.k);
        self.groups
            .values()
            .map(|g| {
                // Parity is as long as the longest data shard: whole units but the last.
                let stripe = k * unit;
                let longest = (g.len / stripe) * unit + (g.len % stripe).min(unit);
                g.len + u64::from(self.m) * longest
            })
            .sum()
    }
}

/// How a file system's data is stored, for `cfs admin status`: file bytes (logical) and the
/// bytes the data servers hold for them (raw), mirrored and encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Redundancy {
    pub mirrored_files: u64,
    pub mirrored_bytes: u64,
    pub mirrored_raw: u64,
    pub encoded_files: u64,
    pub encoded_bytes: u64,
    pub encoded_raw: u64,
    /// Encoded bytes of files with a shard marked bad or on a data server that is down: read
    /// by rebuilding.
    pub degraded_bytes: u64,
    /// Data-reduced files and their bytes (logical).
    pub reduced_files: u64,
    pub reduced_bytes: u64,
    /// The reduction index's live segments: the raw bytes of their chunks (every file's bytes
    /// after dedup), their stored bytes (after compression), and the bytes the data servers
    /// hold for them (with parity).
    pub segment_unique_bytes: u64,
    pub segment_stored_bytes: u64,
    pub segment_raw: u64,
}

impl Redundancy {
    /// Raw bytes per file byte (0 with no data).
    pub fn raw_per_byte(&self) -> f64 {
        let logical = self.mirrored_bytes + self.encoded_bytes + self.reduced_bytes;
        if logical == 0 {
            0.0
        } else {
            (self.mirrored_raw + self.encoded_raw + self.segment_raw) as f64 / logical as f64
        }
    }
}
