//! The data-reduction index's commands (`AddReferrer`, `DropReferrer`, `ForgetSegment`,
//! `SegmentMoved`), over
//! the records of `crate::reduce_index`, whose module comment says what they keep true: every
//! add and drop is idempotent, a `Live` segment always has a referrer, a `Dying` one never
//! has one and never lives again.

use crate::error::FsError;
use crate::object::Outcome;
use crate::reduce_index::{
    Referrer, Segment, SegmentBucket, SegmentId, SegmentState, SegmentTierStep, StoredSegment,
};
use crate::shard::ShardId;
use crate::state::StateStore;

/// `AddReferrer`: see `Command::AddReferrer`.
pub(super) fn add_referrer<S: StateStore + ?Sized>(
    s: &mut S,
    shard: ShardId,
    id: &SegmentId,
    stored: Option<&StoredSegment>,
    referrer: Referrer,
) -> Result<Outcome, FsError> {
    // Inode 0 is no file (`DRAIN_INO`): a referrer nobody could ever check or drop.
    if referrer.ino == 0 {
        return Err(FsError::Invalid);
    }
    let slots = match stored {
        Some(st) => Some(st.slots().ok_or(FsError::Invalid)?),
        None => None,
    };
    match s.segment(shard, id)? {
        // Freed meanwhile: what the reducer found in the index is going; it stores anew.
        Some(seg) if !seg.is_live() => Err(FsError::Changed),
        Some(seg) => {
            // One id is one content (the id is the hash of the segment's bytes), so another
            // chunk list under it is a bug upstream, not a second copy.
            if slots.is_some_and(|c| c != seg.chunks) {
                return Err(FsError::Invalid);
            }
            if !s.has_referrer(shard, id, referrer)? {
                s.put_referrer(shard, id, referrer, true)?;
            }
            Ok(Outcome::default())
        }
        None => {
            // Gone (forgotten after it died), and this is no creation: as for `Dying`.
            let (Some(st), Some(chunks)) = (stored, slots) else {
                return Err(FsError::Changed);
            };
            if st.placement.is_empty() || st.stored_len == 0 {
                return Err(FsError::Invalid);
            }
            let seg = Segment {
                chunks,
                placement: st.placement.clone(),
                stored_len: st.stored_len,
                state: SegmentState::Live,
                origin: referrer,
                bucket: SegmentBucket::No,
                dropping: Vec::new(),
            };
            s.put_segment(shard, id, Some(&seg))?;
            s.put_referrer(shard, id, referrer, true)?;
            Ok(Outcome {
                created: true,
                ..Outcome::default()
            })
        }
    }
}

/// `DropReferrer`: see `Command::DropReferrer`.
pub(super) fn drop_referrer<S: StateStore + ?Sized>(
    s: &mut S,
    shard: ShardId,
    id: &SegmentId,
    referrer: Referrer,
) -> Result<Outcome, FsError> {
    let Some(mut seg) = s.segment(shard, id)? else {
        return Ok(Outcome::default());
    };
    if !s.has_referrer(shard, id, referrer)? {
        return Ok(Outcome::default());
    }
    s.put_referrer(shard, id, referrer, false)?;
    if seg.is_live() && s.referrers(shard, id, 1)?.is_empty() {
        seg.state = SegmentState::Dying;
        s.put_segment(shard, id, Some(&seg))?;
    }
    Ok(Outcome::default())
}

/// `ForgetSegment`: see `Command::ForgetSegment`.
pub(super) fn forget_segment<S: StateStore + ?Sized>(
    s: &mut S,
    shard: ShardId,
    id: &SegmentId,
) -> Result<Outcome, FsError> {
    match s.segment(shard, id)? {
        None => Ok(Outcome::default()),
        Some(seg) if seg.is_live() => Err(FsError::Invalid),
        Some(_) => {
            if !s.referrers(shard, id, 1)?.is_empty() {
                // A referrer could only be added while `Live`, and the last drop makes it
                // `Dying`: this state was never written by these commands.
                return Err(FsError::Corrupt(format!(
                    "dying segment {id:?} has referrers"
                )));
            }
            s.put_segment(shard, id, None)?;
            Ok(Outcome::default())
        }
    }
}

/// `SegmentMoved`: see `Command::SegmentMoved`. Compare-and-set on the one placement slot,
/// so two movers (a drain pass on a new leader, a retry after a lost answer) cannot both
/// record, and a move decided from an old record goes in only over that record.
pub(super) fn segment_moved<S: StateStore + ?Sized>(
    s: &mut S,
    shard: ShardId,
    id: &SegmentId,
    index: u8,
    from: u64,
    to: u64,
) -> Result<Outcome, FsError> {
    let Some(mut seg) = s.segment(shard, id)? else {
        return Err(FsError::Changed);
    };
    // A segment whose flash is being dropped has no shard to move (`dropping` is deleted).
    if !seg.is_live()
        || !seg.dropping.is_empty()
        || seg.placement.get(usize::from(index)) != Some(&from)
    {
        return Err(FsError::Changed);
    }
    if from == to {
        return Ok(Outcome::default());
    }
    if seg.placement.contains(&to) {
        return Err(FsError::Invalid);
    }
    seg.placement[usize::from(index)] = to;
    s.put_segment(shard, id, Some(&seg))?;
    Ok(Outcome::default())
}

/// `SegmentTier`: see `Command::SegmentTier` and `SegmentTierStep`. Every step is a
/// compare-and-set on the state it leaves, and a step already taken changes nothing, so a
/// retry after a lost answer is harmless; flash is dropped only from a bucket copy `Held`.
pub(super) fn segment_tier<S: StateStore + ?Sized>(
    s: &mut S,
    shard: ShardId,
    id: &SegmentId,
    step: &SegmentTierStep,
) -> Result<Outcome, FsError> {
    let Some(mut seg) = s.segment(shard, id)? else {
        return Err(FsError::Changed);
    };
    match step {
        SegmentTierStep::Sending => {
            if !seg.is_live() {
                return Err(FsError::Changed);
            }
            if seg.bucket != SegmentBucket::No {
                return Ok(Outcome::default());
            }
            seg.bucket = SegmentBucket::Sending;
        }
        SegmentTierStep::Held => match (seg.is_live(), seg.bucket) {
            (true, SegmentBucket::Held) => return Ok(Outcome::default()),
            (true, SegmentBucket::Sending) => seg.bucket = SegmentBucket::Held,
            // Dying (its object is the deleting pass's), or no upload recorded as begun.
            _ => return Err(FsError::Changed),
        },
        SegmentTierStep::OffFlash { placement } => {
            if placement.is_empty() {
                return Err(FsError::Invalid);
            }
            if !seg.is_live()
                || seg.bucket != SegmentBucket::Held
                || !seg.dropping.is_empty()
                || seg.placement != *placement
            {
                return Err(FsError::Changed);
            }
            seg.dropping = std::mem::take(&mut seg.placement);
        }
        SegmentTierStep::Freed { placement } => {
            if seg.dropping.is_empty() {
                return Ok(Outcome::default());
            }
            if seg.dropping != *placement {
                return Err(FsError::Changed);
            }
            seg.dropping.clear();
        }
        SegmentTierStep::Warming { placement } => {
            if placement.is_empty() {
                return Err(FsError::Invalid);
            }
            if !seg.is_live()
                || seg.bucket != SegmentBucket::Held
                || seg.on_flash()
                || !seg.dropping.is_empty()
            {
                return Err(FsError::Changed);
            }
            seg.dropping = placement.clone();
        }
        SegmentTierStep::Warmed { placement } => {
            if seg.placement == *placement && seg.dropping.is_empty() {
                return Ok(Outcome::default());
            }
            // Freed meanwhile (a pass took the write for a crash's), died, or moved on.
            if !seg.is_live() || seg.on_flash() || seg.dropping != *placement {
                return Err(FsError::Changed);
            }
            seg.placement = std::mem::take(&mut seg.dropping);
        }
    }
    s.put_segment(shard, id, Some(&seg))?;
    Ok(Outcome::default())
}
