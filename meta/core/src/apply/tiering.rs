//! The uploader's and deleter's commands (`TierBegin`, `TierDone`, `TierAbort`, `TierDoom`,
//! `TierDeleted`) and the evictor's (`TierEvict`, `TierWant`, `TierRestored`) over the records
//! of `crate::tiering`, whose module comment says what they keep true.

use crate::error::FsError;
use crate::object::{FileKind, Outcome, Time};
use crate::state::{meta, StateStore};
use crate::tiering::{FileTier, TierCopy, TierPiece, TierUpload};

/// Most pieces one upload may name (at 64 MiB a piece: 64 TiB), so a record stays small.
pub const MAX_PIECES: u64 = 1 << 20;

/// Starts uploading `ino` as it is at change `change` in `pieces` pieces: the file must be a
/// regular file at that change, with no upload under way. Takes a new generation.
pub(super) fn begin<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    (change, pieces): (u64, u64),
    time: Time,
    by: u64,
) -> Result<Outcome, FsError> {
    match s.inode(ino)? {
        Some(i) if !matches!(i.kind, FileKind::Regular) => return Err(FsError::WrongKind),
        Some(i) if i.nlink == 0 => return Err(FsError::Stale(ino)),
        Some(i) if i.change != change => return Err(FsError::Changed),
        Some(_) => {}
        None => return Err(FsError::Stale(ino)),
    }
    if pieces > MAX_PIECES {
        return Err(FsError::Invalid);
    }
    let mut t = s.tier(ino)?.unwrap_or_default();
    if t.evicted {
        // Its bytes are the copy's, in the bucket already (a change brings them back first).
        return Err(FsError::Changed);
    }
    if t.upload.is_some() {
        return Err(FsError::Unavailable(
            "an upload of the file is under way".into(),
        ));
    }
    // One counter per shard names both encodings and uploads: any unused number will do.
    let gen = s.meta(meta::NEXT_EPOCH)?.max(1);
    s.set_meta(meta::NEXT_EPOCH, gen + 1)?;
    t.upload = Some(TierUpload {
        gen,
        change,
        pieces,
        since: time,
        by,
    });
    s.put_tier(ino, Some(&t))?;
    Ok(Outcome::default())
}

/// The upload of generation `gen` is in the bucket with these pieces. It counts only if the
/// file is still as it was read (same change attribute); otherwise (changed, or gone) its
/// objects are doomed. Either way the command succeeds, since the record must change (a
/// failed command leaves nothing): the uploader reads the record to learn which it was. The
/// copy a counted upload replaces is doomed.
pub(super) fn done<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    gen: u64,
    pieces: &[TierPiece],
    time: Time,
) -> Result<Outcome, FsError> {
    let mut t = upload_of(s, ino, gen)?;
    let Some(u) = t.upload.take() else {
        return Err(FsError::Invalid);
    };
    if pieces.len() as u64 != u.pieces {
        return Err(FsError::Invalid);
    }
    let unchanged = s
        .inode(ino)?
        .is_some_and(|i| i.nlink > 0 && i.change == u.change);
    if unchanged {
        if let Some(old) = t.copy.take() {
            t.doom(old.gen, old.pieces.len() as u64, time);
        }
        t.copy = Some(TierCopy {
            gen,
            change: u.change,
            pieces: pieces.to_vec(),
            at: time,
        });
    } else {
        t.doom(u.gen, u.pieces, time);
    }
    put(s, ino, t)?;
    Ok(Outcome::default())
}

/// The upload of generation `gen` is given up: its objects are doomed.
pub(super) fn abort<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    gen: u64,
    time: Time,
) -> Result<Outcome, FsError> {
    let mut t = upload_of(s, ino, gen)?;
    if let Some(u) = t.upload.take() {
        t.doom(u.gen, u.pieces, time);
    }
    put(s, ino, t)?;
    Ok(Outcome::default())
}

/// `ino` is gone (forgotten, not just unlinked): everything of it in the bucket is doomed.
pub(super) fn doom<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    time: Time,
) -> Result<Outcome, FsError> {
    // Only once the inode is gone: an orphan may still be open, and read.
    if s.inode(ino)?.is_some() {
        return Err(FsError::Invalid);
    }
    let Some(mut t) = s.tier(ino)? else {
        return Ok(Outcome::default());
    };
    t.doom_all(time);
    put(s, ino, t)?;
    Ok(Outcome::default())
}

/// The objects of doomed generation `gen` are deleted from the bucket.
pub(super) fn deleted<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    gen: u64,
) -> Result<Outcome, FsError> {
    let Some(mut t) = s.tier(ino)? else {
        return Ok(Outcome::default());
    };
    t.doomed.retain(|d| d.gen != gen);
    put(s, ino, t)?;
    Ok(Outcome::default())
}

/// `ino`'s bytes leave flash: allowed only while its copy `gen` holds the file exactly as it
/// is (change `change`, no upload under way), so the bucket has every byte flash had.
pub(super) fn evict<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    gen: u64,
    change: u64,
) -> Result<Outcome, FsError> {
    match s.inode(ino)? {
        Some(i) if !matches!(i.kind, FileKind::Regular) => return Err(FsError::WrongKind),
        Some(i) if i.nlink > 0 && i.change == change => {}
        _ => return Err(FsError::Changed),
    }
    let mut t = s.tier(ino)?.unwrap_or_default();
    let copy_ok = t
        .copy
        .as_ref()
        .is_some_and(|c| c.gen == gen && c.change == change);
    if !copy_ok || t.upload.is_some() || t.evicted {
        return Err(FsError::Changed);
    }
    // On data servers the bytes are dropped next: not under an encode that is reading them,
    // nor while mirror copies an encode made redundant are still to trim (nothing else would
    // name them once the encoding is retired). Both pass; the evictor tries again.
    if s.stripes(ino)?
        .is_some_and(|c| c.encoding.is_some() || !c.stale_copies.is_empty())
    {
        return Err(FsError::Changed);
    }
    // Nor under a reduce that is reading them or whose stale copies are to trim. A reduced
    // file's bytes are segments other files may share: its copy is those segments (a copy of
    // no pieces, recorded once each is `Held` in the bucket), and evicting it frees no byte
    // here; its segments leave flash once no file on flash refers to them
    // (`SegmentTierStep::OffFlash`). A copy of pieces of a reduced file (uploaded before the
    // reduce) is sent again as segments first.
    let pieces = t.copy.as_ref().map_or(0, |c| c.pieces.len());
    match s.reduce(ino)? {
        Some(r) if r.is_reduced() && r.stale_copies.is_empty() && pieces == 0 => {}
        Some(r) if !r.retired => return Err(FsError::Changed),
        // A copy of no pieces holds no byte of a file that is not reduced.
        _ if pieces == 0 => return Err(FsError::Changed),
        _ => {}
    }
    t.evicted = true;
    t.wanted = false;
    s.put_tier(ino, Some(&t))?;
    Ok(Outcome::default())
}

/// Someone needs the evicted `ino` back on flash; nothing to do for a file that is not evicted.
pub(super) fn want<S: StateStore + ?Sized>(s: &mut S, ino: u64) -> Result<Outcome, FsError> {
    if let Some(mut t) = s.tier(ino)? {
        if t.evicted && !t.wanted {
            t.wanted = true;
            s.put_tier(ino, Some(&t))?;
        }
    }
    Ok(Outcome::default())
}

/// The evicted `ino`'s copy `gen` is on flash again: the copy is current as the file is now
/// (only its attributes can have changed while it was evicted).
pub(super) fn restored<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    gen: u64,
) -> Result<Outcome, FsError> {
    let mut t = s.tier(ino)?.unwrap_or_default();
    if !t.evicted || t.copy.as_ref().map(|c| c.gen) != Some(gen) {
        return Err(FsError::Changed);
    }
    t.evicted = false;
    t.wanted = false;
    if let (Some(i), Some(c)) = (s.inode(ino)?, t.copy.as_mut()) {
        c.change = i.change;
    }
    put(s, ino, t)?;
    Ok(Outcome::default())
}

fn upload_of<S: StateStore + ?Sized>(s: &S, ino: u64, gen: u64) -> Result<FileTier, FsError> {
    let t = s.tier(ino)?.unwrap_or_default();
    if t.upload.map(|u| u.gen) != Some(gen) {
        // Another upload took its place (this one was given up): nothing of it to record.
        return Err(FsError::Unavailable("no such upload under way".into()));
    }
    Ok(t)
}

/// Writes the record, or removes it once nothing in the bucket is left to account for.
fn put<S: StateStore + ?Sized>(s: &mut S, ino: u64, t: FileTier) -> Result<(), FsError> {
    if t.is_empty() {
        s.put_tier(ino, None)
    } else {
        s.put_tier(ino, Some(&t))
    }
}
