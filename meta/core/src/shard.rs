//! Shards: which part of the replicated state an object belongs to, read off its key alone.
//!
//! The namespace is cut into a fixed number of shards, chosen when the file system is created.
//! An inode number carries its shard in its top `SHARD_BITS` bits and a per-shard counter below,
//! so the shard of every key (`Key`) is a function of the key: an inode by its number, a
//! directory's entries by the directory's number. Nothing needs a lookup table, a new leader
//! of a shard continues the shard's own counter (it lives in that shard's state) and so never
//! hands out a number twice, and each shard's keys are one contiguous range of every table,
//! so a shard's snapshot is a range scan.
//!
//! A new file lives on its parent directory's shard (create, lookup, unlink and rename within
//! a directory touch one shard); where a new directory goes is `Placement`'s choice.
//!
//! The data-reduction index (`reduce_index`) is keyed by content ids, not inode numbers: a
//! segment's record lives on the shard its id's first 8 bytes pick modulo the shard count
//! (`of_segment`), and its commands carry that shard (`Key::Segments`), since the count is the
//! file system's, not the state machine's.

use serde::{Deserialize, Serialize};

use super::reduce_index::SegmentId;

/// Bits of an inode number that name its shard; the rest count inodes within the shard.
pub const SHARD_BITS: u32 = 16;
/// Largest number of shards a file system can be created with: 2^15 - 1, so no inode number
/// has bit 63 set (a snapshot root's `.snapshot` directory shows fileid `D | 1 << 63`) and no
/// shard is 0xFFFF (NFS state inside snapshots is keyed by numbers in that shard's range,
/// `mds::nfs::ops::snap::StateKeys`). Both would collide with a real inode otherwise.
pub const MAX_SHARDS: u16 = (1 << (SHARD_BITS - 1)) - 1;
const LOCAL_BITS: u32 = 64 - SHARD_BITS;
/// Largest per-shard inode counter (2^48 - 1: far beyond what one shard holds).
pub const MAX_LOCAL: u64 = (1 << LOCAL_BITS) - 1;

/// A shard of the namespace: one replicated state machine.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The shard an inode number belongs to.
    pub const fn of_ino(ino: u64) -> ShardId {
        ShardId((ino >> LOCAL_BITS) as u16)
    }

    /// The inode number with this shard and per-shard counter `local`.
    pub const fn ino(self, local: u64) -> u64 {
        ((self.0 as u64) << LOCAL_BITS) | (local & MAX_LOCAL)
    }

    /// The per-shard counter part of `ino`.
    pub const fn local(ino: u64) -> u64 {
        ino & MAX_LOCAL
    }

    /// Every inode number of this shard: the keys of every table that belong to it.
    pub fn inos(self) -> std::ops::RangeInclusive<u64> {
        self.ino(0)..=self.ino(MAX_LOCAL)
    }

    /// The shard of a file system of `shards` shards that holds segment `id`'s record: the
    /// id's first 8 bytes (little-endian, as `reduce` writes integers) modulo the count. Ids
    /// are BLAKE3 outputs, so segments spread evenly; a file system keeps its count for life,
    /// so a segment never moves.
    pub fn of_segment(id: &SegmentId, shards: u16) -> ShardId {
        let mut first = [0u8; 8];
        first.copy_from_slice(&id.0[..8]);
        let n = u64::from(shards.max(1));
        // The remainder is below `shards`, a u16.
        ShardId((u64::from_le_bytes(first) % n) as u16)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// What one command reads or changes, named so that the shard that owns it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// An inode's attributes (and, for a regular file, its placement records).
    Inode(u64),
    /// The entries of a directory (and its cookie counter).
    Entries(u64),
    /// A new inode allocated in this shard's counter.
    NewInode(ShardId),
    /// The MDS nodes' NFS client records (`Command::ClientRecords`): shard 0's.
    Clients,
    /// The data-reduction index's records on this shard (`reduce_index`): whole, since no
    /// transaction takes part of it (its commands each touch one segment of one shard).
    Segments(ShardId),
}

impl Key {
    pub fn shard(self) -> ShardId {
        match self {
            Key::Inode(ino) | Key::Entries(ino) => ShardId::of_ino(ino),
            Key::NewInode(s) | Key::Segments(s) => s,
            Key::Clients => ShardId(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_shard_reaches_bit_63_or_shard_0xffff() {
        let last = ShardId(MAX_SHARDS - 1);
        assert!(
            last.ino(MAX_LOCAL) < 1 << 63,
            "a .snapshot fileid would collide"
        );
        assert_ne!(ShardId::of_ino(last.ino(MAX_LOCAL)).0, 0xFFFF);
    }

    #[test]
    fn shard_and_counter_round_trip() {
        for s in [0u16, 1, 255, u16::MAX] {
            for local in [0u64, 1, 2, 1 << 40, MAX_LOCAL] {
                let ino = ShardId(s).ino(local);
                assert_eq!(ShardId::of_ino(ino), ShardId(s));
                assert_eq!(ShardId::local(ino), local);
                assert!(ShardId(s).inos().contains(&ino));
            }
        }
    }

    #[test]
    fn shard_zero_numbers_are_the_plain_counter() {
        // File systems made before shards have every inode in shard 0, unchanged.
        assert_eq!(ShardId(0).ino(2), 2);
        assert_eq!(ShardId::of_ino(super::super::ROOT_INO), ShardId(0));
    }

    #[test]
    fn a_segment_goes_to_the_shard_its_first_eight_bytes_pick() {
        let mut id = SegmentId([0xff; 32]);
        id.0[..8].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(ShardId::of_segment(&id, 256), ShardId((1000 % 256) as u16));
        assert_eq!(ShardId::of_segment(&id, 7), ShardId((1000 % 7) as u16));
        // Only those 8 bytes count.
        id.0[8..].fill(0);
        assert_eq!(ShardId::of_segment(&id, 7), ShardId((1000 % 7) as u16));
        // One shard (or a count of 0, never a file system's): shard 0.
        assert_eq!(ShardId::of_segment(&id, 1), ShardId(0));
        assert_eq!(ShardId::of_segment(&id, 0), ShardId(0));
        let top = SegmentId([0xff; 32]);
        assert_eq!(
            ShardId::of_segment(&top, u16::MAX),
            ShardId((u64::MAX % 65535) as u16)
        );
        assert_eq!(Key::Segments(ShardId(5)).shard(), ShardId(5));
    }

    #[test]
    fn shard_ranges_do_not_overlap() {
        let a = ShardId(7).inos();
        let b = ShardId(8).inos();
        assert!(a.end() < b.start());
    }
}
