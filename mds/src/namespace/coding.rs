//! Erasure-coded groups of a file (issue 13, docs/EC.md): the replicated record of which
//! groups of a file are Reed-Solomon coded, with which geometry, where each shard is, and each
//! shard's blake3 per group; and the commands that move a group from mirrored to encoded
//! (`BeginEncode`, `FinishEncode`, `AbortEncode`) and keep the shards whole (`ShardBad`,
//! `ShardMoved`).
//!
//! A group (the file's bytes `[g·C, (g+1)·C)` for the chunk size C) is either mirrored (a row
//! of the `chunks` table, as before) or encoded (in its file's `FileCode`), never both once an
//! encode finished: until then the mirrors stay authoritative. All groups of a file share one
//! placement of k+m data servers and one epoch, because the data servers keep one dense shard
//! object per (file, epoch, shard index) and a striped layout names one server per shard for the
//! whole file. The epoch comes from the shard's counter inside `apply`, so a file encoded again
//! after going back to mirrors never meets shards of its earlier encoding.

use serde::{Deserialize, Serialize};

use super::error::FsError;
use super::state::{meta, StateStore};
use super::types::{FileKind, Outcome, Time};
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
    /// An encode under way; its groups are still mirrored.
    pub encoding: Option<Encoding>,
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

fn regular<S: StateStore + ?Sized>(s: &S, ino: u64) -> Result<(), FsError> {
    match s.inode(ino)? {
        Some(i) if matches!(i.kind, FileKind::Regular) => Ok(()),
        Some(_) => Err(FsError::WrongKind),
        None => Err(FsError::Stale(ino)),
    }
}

fn check_geometry(k: u8, m: u8, unit_shift: u8, placement: &[u64]) -> Result<(), FsError> {
    let n = usize::from(k) + usize::from(m);
    // Units of 4 KiB (the chunk store's block) to 64 MiB (the kernel keeps 32 bits).
    if k == 0 || m == 0 || n > MAX_SHARDS || !(12..=26).contains(&unit_shift) {
        return Err(FsError::Invalid);
    }
    let mut ds: Vec<u64> = placement.to_vec();
    ds.sort_unstable();
    ds.dedup();
    if placement.len() != n || ds.len() != n || ds.contains(&0) {
        return Err(FsError::Invalid);
    }
    Ok(())
}

/// Starts encoding groups `[first, end)` of `ino`: each must be mirrored now. A file's first
/// encode takes a new epoch; later ones must keep its geometry and placement.
#[allow(clippy::too_many_arguments)]
pub(super) fn begin<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    first: u64,
    end: u64,
    (k, m, unit_shift): (u8, u8, u8),
    placement: &[u64],
    time: Time,
) -> Result<Outcome, FsError> {
    regular(s, ino)?;
    check_geometry(k, m, unit_shift, placement)?;
    if first >= end {
        return Err(FsError::Invalid);
    }
    let mirrored: BTreeMap<u64, Vec<u64>> = s.chunks(ino)?.into_iter().collect();
    if (first..end).any(|g| !mirrored.contains_key(&g)) {
        return Err(FsError::Invalid);
    }
    let code = match s.stripes(ino)? {
        Some(c) if c.encoding.is_some() => {
            return Err(FsError::Unavailable(
                "an encode of the file is under way".into(),
            ))
        }
        Some(c) if !c.groups.is_empty() => {
            if (c.k, c.m, c.unit_shift) != (k, m, unit_shift) || c.placement != placement {
                return Err(FsError::Invalid);
            }
            c
        }
        _ => {
            let epoch = s.meta(meta::NEXT_EPOCH)?.max(1);
            s.set_meta(meta::NEXT_EPOCH, epoch + 1)?;
            FileCode {
                epoch,
                k,
                m,
                unit_shift,
                placement: placement.to_vec(),
                groups: BTreeMap::new(),
                encoding: None,
            }
        }
    };
    let code = FileCode {
        encoding: Some(Encoding {
            first,
            end,
            since: time,
        }),
        ..code
    };
    s.put_stripes(ino, Some(&code))?;
    Ok(Outcome::default())
}

/// Records the groups an encode job finished: each leaves the mirrored table for the file's
/// code. Groups of the range not listed stay mirrored.
pub(super) fn finish<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
    done: &[Encoded],
) -> Result<Outcome, FsError> {
    regular(s, ino)?;
    let mut code = s.stripes(ino)?.ok_or(FsError::Invalid)?;
    let Some(enc) = code.encoding.filter(|_| code.epoch == epoch) else {
        return Err(FsError::Invalid);
    };
    let n = code.shards();
    for e in done {
        if !(enc.first..enc.end).contains(&e.group) || e.sums.len() != n || e.len == 0 {
            return Err(FsError::Invalid);
        }
    }
    for e in done {
        s.put_chunk(ino, e.group, None)?;
        code.groups.insert(
            e.group,
            GroupCode {
                len: e.len,
                sums: e.sums.clone(),
                bad: 0,
            },
        );
    }
    code.encoding = None;
    store(s, ino, code)?;
    Ok(Outcome::default())
}

/// Gives up an encode under way: its groups stay mirrored.
pub(super) fn abort<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
) -> Result<Outcome, FsError> {
    let mut code = s.stripes(ino)?.ok_or(FsError::Invalid)?;
    if code.epoch != epoch || code.encoding.is_none() {
        return Err(FsError::Invalid);
    }
    code.encoding = None;
    store(s, ino, code)?;
    Ok(Outcome::default())
}

/// Marks shard `shard` of group `group` bad (a checksum failed, or scrub found it wrong).
pub(super) fn shard_bad<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
    group: u64,
    shard: u8,
) -> Result<Outcome, FsError> {
    let mut code = s.stripes(ino)?.ok_or(FsError::Invalid)?;
    let n = code.shards();
    let g = match code.groups.get_mut(&group) {
        Some(g) if code.epoch == epoch && usize::from(shard) < n => g,
        _ => return Err(FsError::Invalid),
    };
    g.bad |= 1 << shard;
    s.put_stripes(ino, Some(&code))?;
    Ok(Outcome::default())
}

/// Shard `shard` of every group now lives, rebuilt and checked against its sums, on `ds`.
pub(super) fn shard_moved<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
    shard: u8,
    ds: u64,
) -> Result<Outcome, FsError> {
    let mut code = s.stripes(ino)?.ok_or(FsError::Invalid)?;
    let i = usize::from(shard);
    if code.epoch != epoch || i >= code.shards() {
        return Err(FsError::Invalid);
    }
    let mut placement = code.placement.clone();
    placement[i] = ds;
    check_geometry(code.k, code.m, code.unit_shift, &placement)?;
    code.placement = placement;
    for g in code.groups.values_mut() {
        g.bad &= !(1 << shard);
    }
    s.put_stripes(ino, Some(&code))?;
    Ok(Outcome::default())
}

/// A group written again goes back to mirrors (`SetMirrors`): its coded record goes.
pub(super) fn unencode<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    group: u64,
) -> Result<(), FsError> {
    if let Some(mut code) = s.stripes(ino)? {
        if code.groups.remove(&group).is_some() {
            store(s, ino, code)?;
        }
    }
    Ok(())
}

/// Writes `code`, or forgets it when nothing is encoded nor being encoded: the next encode of
/// the file takes a new epoch.
fn store<S: StateStore + ?Sized>(s: &mut S, ino: u64, code: FileCode) -> Result<(), FsError> {
    if code.groups.is_empty() && code.encoding.is_none() {
        s.put_stripes(ino, None)
    } else {
        s.put_stripes(ino, Some(&code))
    }
}
