//! The commands that move a file between mirrored and erasure-coded and keep its shards whole
//! (`BeginEncode`, `FinishEncode`, `AbortEncode`, `ShardBad`, `ShardMoved`, `CopiesTrimmed`,
//! `ShardsDropped`), over the records of `crate::coding`, whose module comment says
//! what they keep true.

use std::collections::BTreeMap;

use crate::coding::{Encoded, Encoding, FileCode, GroupCode, MAX_SHARDS};
use crate::error::FsError;
use crate::object::{FileKind, Outcome, Time};
use crate::state::{meta, StateStore};

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
    // A reduce under way reads the mirrors an encode would replace (and a finished one left
    // none). A retired one only waits for its referrers to be dropped: it names no bytes of
    // the file, and the encode's epoch is another.
    if s.reduce(ino)?.is_some_and(|r| !r.retired) {
        return Err(FsError::Unavailable(
            "the file has a reduce under way or is reduced".into(),
        ));
    }
    // An evicted file's mirrors are emptied: an encode would code holes (`TierEvict` refuses
    // the other order, an encode under way).
    if s.tier(ino)?.is_some_and(|t| t.evicted) {
        return Err(FsError::Changed);
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
    let stale = super::drop_mirrors(s, ino)?;
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
