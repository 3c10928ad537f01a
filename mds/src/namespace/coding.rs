//! Erasure-coded files (issue 13, docs/EC.md): the replicated record of which files are
//! Reed-Solomon coded, with which geometry, where each shard is, and each shard's blake3 per
//! group; and the commands that move a file from mirrored to encoded (`BeginEncode`,
//! `FinishEncode`, `AbortEncode`), keep the shards whole (`ShardBad`, `ShardMoved`) and clean
//! up after them (`CopiesTrimmed`, `ShardsDropped`).
//!
//! Placement is per file (`mds::cluster::placement`: Linux clients get whole-file layouts), so
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
}

impl Redundancy {
    /// Raw bytes per file byte (0 with no data).
    pub fn raw_per_byte(&self) -> f64 {
        let logical = self.mirrored_bytes + self.encoded_bytes;
        if logical == 0 {
            0.0
        } else {
            (self.mirrored_raw + self.encoded_raw) as f64 / logical as f64
        }
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

/// Starts encoding the whole of `ino` as groups `[0, end)` (`first` must be 0): the file must
/// be mirrored, with no earlier encoding left to clean up. Takes a new epoch.
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
    if first != 0 || end == 0 {
        return Err(FsError::Invalid);
    }
    if s.chunks(ino)?.is_empty() {
        return Err(FsError::Invalid);
    }
    if s.stripes(ino)?.is_some() {
        return Err(FsError::Unavailable(
            "the file has an encoding under way or to clean up".into(),
        ));
    }
    let epoch = s.meta(meta::NEXT_EPOCH)?.max(1);
    s.set_meta(meta::NEXT_EPOCH, epoch + 1)?;
    let code = FileCode {
        epoch,
        k,
        m,
        unit_shift,
        placement: placement.to_vec(),
        groups: BTreeMap::new(),
        encoding: Some(Encoding {
            first,
            end,
            since: time,
        }),
        stale_copies: Vec::new(),
        retired: false,
    };
    s.put_stripes(ino, Some(&code))?;
    Ok(Outcome::default())
}

/// Records a finished encode: every group of the range, once, covering exactly the file's
/// size (a file changed since `BeginEncode` would not match). The mirrors stop counting: the
/// file's placement rows go, and their data servers are listed to have their copies deleted.
pub(super) fn finish<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
    done: &[Encoded],
) -> Result<Outcome, FsError> {
    regular(s, ino)?;
    let size = s.inode(ino)?.map(|i| i.size).unwrap_or_default();
    let mut code = s.stripes(ino)?.ok_or(FsError::Invalid)?;
    let Some(enc) = code
        .encoding
        .filter(|_| code.epoch == epoch && !code.retired)
    else {
        return Err(FsError::Invalid);
    };
    let n = code.shards();
    let groups: Vec<u64> = done.iter().map(|e| e.group).collect();
    let total = done.iter().try_fold(0u64, |t, e| t.checked_add(e.len));
    if groups != (enc.first..enc.end).collect::<Vec<u64>>()
        || done.iter().any(|e| e.sums.len() != n || e.len == 0)
        || total != Some(size)
    {
        return Err(FsError::Invalid);
    }
    let mut stale = Vec::new();
    for (chunk, mirrors) in s.chunks(ino)? {
        stale.extend(mirrors);
        s.put_chunk(ino, chunk, None)?;
    }
    stale.sort_unstable();
    stale.dedup();
    for e in done {
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
    code.stale_copies = stale;
    s.put_stripes(ino, Some(&code))?;
    Ok(Outcome::default())
}

/// Gives up an encode under way: the file stays mirrored, and whatever shards the encode
/// wrote are to be dropped.
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
    code.retired = true;
    s.put_stripes(ino, Some(&code))?;
    Ok(Outcome::default())
}

/// The mirror copies the encode of `epoch` made redundant are deleted.
pub(super) fn copies_trimmed<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
) -> Result<Outcome, FsError> {
    let mut code = s.stripes(ino)?.ok_or(FsError::Invalid)?;
    if code.epoch != epoch {
        return Err(FsError::Invalid);
    }
    code.stale_copies.clear();
    s.put_stripes(ino, Some(&code))?;
    Ok(Outcome::default())
}

/// The shards of retired epoch `epoch` are gone from every data server: the record goes.
pub(super) fn shards_dropped<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
) -> Result<Outcome, FsError> {
    match s.stripes(ino)? {
        Some(c) if c.epoch == epoch && c.retired => s.put_stripes(ino, None)?,
        _ => return Err(FsError::Invalid),
    }
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

/// The file's mirrors were set (`SetMirrors`: it is written again, its mirrors replaced, or
/// its bytes gone): any encoding of it, finished or under way, no longer counts. Mirror copies
/// still listed as stale are the new mirrors' business now (a copy onto a data server starts
/// by cutting what is there), so they are no longer to be deleted.
pub(super) fn unencode<S: StateStore + ?Sized>(s: &mut S, ino: u64) -> Result<(), FsError> {
    if let Some(mut code) = s.stripes(ino)? {
        if !code.retired {
            code.groups.clear();
            code.encoding = None;
            code.stale_copies.clear();
            code.retired = true;
            s.put_stripes(ino, Some(&code))?;
        }
    }
    Ok(())
}
