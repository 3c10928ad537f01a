//! The commands that move a file between mirrored and data-reduced and clean up after it
//! (`BeginReduce`, `FinishReduce` or `ReducePart`s, `AbortReduce`, `ReduceCopiesTrimmed`,
//! `ReferrersDropped`),
//! and what a write or a `Forget` does to the record, over the records of `crate::reducing`,
//! whose module comment says what they keep true.

use crate::error::FsError;
use crate::object::{FileKind, Inode, Outcome, Time};
use crate::reduce_index::SegmentId;
use crate::reducing::{
    FileReduce, RecipePart, ReduceState, Reduced, MAX_RECIPE_LEN, MAX_REDUCE_PARTS,
    MAX_REDUCE_SEGMENTS,
};
use crate::state::{meta, StateStore};

fn regular<S: StateStore + ?Sized>(s: &S, ino: u64) -> Result<Inode, FsError> {
    match s.inode(ino)? {
        Some(i) if matches!(i.kind, FileKind::Regular) => Ok(i),
        Some(_) => Err(FsError::WrongKind),
        None => Err(FsError::Stale(ino)),
    }
}

/// Starts reducing the whole of `ino`: the file must be mirrored, with no encoding record and
/// no reduce record (under way, finished or left to clean up), and on flash. Takes a new epoch.
pub(super) fn begin<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    time: Time,
) -> Result<Outcome, FsError> {
    let i = regular(s, ino)?;
    // An orphan is reaped, not reduced.
    if i.nlink == 0 {
        return Err(FsError::Stale(ino));
    }
    // Not mirrored: empty, or encoded or reduced already (neither has mirror rows).
    if s.chunks(ino)?.is_empty() {
        return Err(FsError::Invalid);
    }
    if s.stripes(ino)?.is_some() {
        return Err(FsError::Unavailable(
            "the file has an encoding under way or to clean up".into(),
        ));
    }
    if s.reduce(ino)?.is_some() {
        return Err(FsError::Unavailable(
            "the file has a reduce under way or to clean up".into(),
        ));
    }
    // An evicted file's mirrors are emptied: a reduce would read holes (`TierEvict` refuses
    // the other order, a reduce under way), as for `BeginEncode`.
    if s.tier(ino)?.is_some_and(|t| t.evicted) {
        return Err(FsError::Changed);
    }
    let epoch = s.meta(meta::NEXT_EPOCH)?.max(1);
    s.set_meta(meta::NEXT_EPOCH, epoch + 1)?;
    let r = FileReduce {
        epoch,
        state: ReduceState::Reducing {
            since: time,
            change: i.change,
        },
        stale_copies: Vec::new(),
        retired: false,
    };
    s.put_reduce(ino, Some(&r))?;
    Ok(Outcome::default())
}

/// The segments a finish names, each once, in order; `Invalid` beyond the bounds or for a
/// reduce that describes nothing.
fn check_finish(
    len: u64,
    recipe: &[u8],
    segments: &[SegmentId],
) -> Result<Vec<SegmentId>, FsError> {
    if len == 0
        || recipe.is_empty()
        || recipe.len() > MAX_RECIPE_LEN
        || segments.is_empty()
        || segments.len() > MAX_REDUCE_SEGMENTS
    {
        return Err(FsError::Invalid);
    }
    let mut segs = segments.to_vec();
    segs.sort_unstable();
    segs.dedup();
    Ok(segs)
}

/// Records a finished reduce: only the one under way at `epoch`, of `len` bytes, on a file
/// not written since `BeginReduce` (same size, same change attribute: anything else is
/// `Changed`). The mirrors stop counting: the file's placement rows go, and their data servers
/// are listed to have their copies deleted.
pub(super) fn finish<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
    len: u64,
    recipe: &[u8],
    segments: &[SegmentId],
) -> Result<Outcome, FsError> {
    let segments = check_finish(len, recipe, segments)?;
    let mut r = s.reduce(ino)?.ok_or(FsError::Changed)?;
    let ReduceState::Reducing { change, .. } = r.state else {
        return Err(FsError::Changed);
    };
    if r.epoch != epoch || r.retired {
        return Err(FsError::Changed);
    }
    let i = regular(s, ino)?;
    if i.change != change || i.size != len {
        return Err(FsError::Changed);
    }
    let stale = super::drop_mirrors(s, ino)?;
    r.state = ReduceState::Reduced(Reduced {
        len,
        recipe: recipe.to_vec(),
        segments,
    });
    r.stale_copies = stale;
    s.put_reduce(ino, Some(&r))?;
    Ok(Outcome::default())
}

/// Records a part of the reduce in parts under way at `epoch` (`Command::ReducePart`): the
/// part must follow the previous one with no gap or overlap, on a file not written since
/// `BeginReduce`; the last one must end at the file's size and finishes the reduce as
/// `finish` does, any other must end before it.
pub(super) fn part<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
    part: &RecipePart,
    last: bool,
) -> Result<Outcome, FsError> {
    let segments = check_finish(part.len, &part.recipe, &part.segments)?;
    let end = part.offset.checked_add(part.len).ok_or(FsError::Invalid)?;
    let mut r = s.reduce(ino)?.ok_or(FsError::Changed)?;
    if r.epoch != epoch || r.retired {
        return Err(FsError::Changed);
    }
    let (since, change, mut parts) = match r.state {
        ReduceState::Reducing { since, change } => (since, change, Vec::new()),
        ReduceState::ReducingParts {
            since,
            change,
            parts,
        } => (since, change, parts),
        ReduceState::Reduced(_) | ReduceState::ReducedParts { .. } => return Err(FsError::Changed),
    };
    let i = regular(s, ino)?;
    if i.change != change {
        return Err(FsError::Changed);
    }
    let follows = parts.last().map_or(0, RecipePart::end);
    let ends_right = if last { end == i.size } else { end < i.size };
    if part.offset != follows || !ends_right || parts.len() >= MAX_REDUCE_PARTS {
        return Err(FsError::Invalid);
    }
    parts.push(RecipePart {
        offset: part.offset,
        len: part.len,
        recipe: part.recipe.clone(),
        segments,
    });
    if last {
        r.stale_copies = super::drop_mirrors(s, ino)?;
        r.state = ReduceState::ReducedParts { len: end, parts };
    } else {
        r.state = ReduceState::ReducingParts {
            since,
            change,
            parts,
        };
    }
    s.put_reduce(ino, Some(&r))?;
    Ok(Outcome::default())
}

/// Gives up the reduce under way at `epoch`: the file stays mirrored and the record goes (its
/// referrers are the reclaim pass's). Nothing under way at `epoch` (given up already, or
/// dropped by a write): nothing to do. `Changed` if that reduce finished: it is not given up,
/// and whoever asked must not drop its referrers.
pub(super) fn abort<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
) -> Result<Outcome, FsError> {
    match s.reduce(ino)? {
        Some(r) if r.epoch == epoch && !r.retired => match r.state {
            ReduceState::Reducing { .. } | ReduceState::ReducingParts { .. } => {
                s.put_reduce(ino, None)?
            }
            ReduceState::Reduced(_) | ReduceState::ReducedParts { .. } => {
                return Err(FsError::Changed)
            }
        },
        _ => {}
    }
    Ok(Outcome::default())
}

/// The mirror copies the reduce of `epoch` made redundant are deleted. Nothing of `epoch`
/// left: done already.
pub(super) fn copies_trimmed<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
) -> Result<Outcome, FsError> {
    if let Some(mut r) = s.reduce(ino)?.filter(|r| r.epoch == epoch) {
        r.stale_copies.clear();
        put_or_forget(s, ino, r)?;
    }
    Ok(Outcome::default())
}

/// Every referrer `(segment, (ino, epoch))` of the retired reduce of `epoch` is dropped from
/// the index: its segments and recipe go, and the record with them once no mirror copy is
/// left to trim. `Invalid` while the reduce counts (its referrers are live); nothing of
/// `epoch` left: done already.
pub(super) fn referrers_dropped<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    epoch: u64,
) -> Result<Outcome, FsError> {
    let Some(mut r) = s.reduce(ino)?.filter(|r| r.epoch == epoch) else {
        return Ok(Outcome::default());
    };
    if !r.retired {
        return Err(FsError::Invalid);
    }
    r.state = ReduceState::Reduced(Reduced {
        len: r.reduced().map_or(0, |d| d.len()),
        recipe: Vec::new(),
        segments: Vec::new(),
    });
    put_or_forget(s, ino, r)?;
    Ok(Outcome::default())
}

/// Writes the record, or removes it once nothing on the data servers or in the index is left
/// to account for.
fn put_or_forget<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    r: FileReduce,
) -> Result<(), FsError> {
    let segments_left = r.reduced().is_some_and(|d| d.names_segments());
    if r.retired && !segments_left && r.stale_copies.is_empty() {
        s.put_reduce(ino, None)
    } else {
        s.put_reduce(ino, Some(&r))
    }
}

/// The file's mirrors were set (`SetMirrors`: it is written again, its mirrors replaced, or
/// its bytes gone), as `coding::unencode` for an encoding: a reduce under way is dropped (its
/// finish would record bytes that are no longer the file's), a finished one retired. Mirror
/// copies still listed as stale are the new mirrors' business now, as `unencode` says.
pub(super) fn unreduce<S: StateStore + ?Sized>(s: &mut S, ino: u64) -> Result<(), FsError> {
    let was_reduced = s.reduce(ino)?.is_some_and(|r| r.is_reduced());
    retire(s, ino, false)?;
    // Its bucket copy was its segments (a copy of no pieces), whose references this retires:
    // it no longer holds the file, which is uploaded again as pieces. (Nothing to doom: the
    // segments' objects go with the segments.)
    if let Some(mut t) = s.tier(ino)?.filter(|_| was_reduced) {
        if t.copy.as_ref().is_some_and(|c| c.pieces.is_empty()) && !t.evicted {
            t.copy = None;
            let keep = !t.is_empty();
            s.put_tier(ino, keep.then_some(&t))?;
        }
    }
    Ok(())
}

/// The file is forgotten (`Forget` of an orphan): as `unreduce`, but the mirror copies still to
/// trim stay listed (no placement row names them once the inode is gone). The record outlives
/// the inode.
pub(super) fn forgotten<S: StateStore + ?Sized>(s: &mut S, ino: u64) -> Result<(), FsError> {
    retire(s, ino, true)
}

/// Drops a reduce under way; retires a finished one, keeping its epoch and segments for the
/// cleanup pass (its recipe goes: nothing reads the recipe of a reduce that no longer counts;
/// a reduce in parts keeps every part's segments, each once, in the one-recipe form).
fn retire<S: StateStore + ?Sized>(s: &mut S, ino: u64, keep_copies: bool) -> Result<(), FsError> {
    match s.reduce(ino)? {
        None => Ok(()),
        Some(r) if r.retired => Ok(()),
        Some(r) if r.reducing_since().is_some() => s.put_reduce(ino, None),
        Some(mut r) => {
            r.retire();
            if !keep_copies {
                r.stale_copies.clear();
            }
            put_or_forget(s, ino, r)
        }
    }
}
