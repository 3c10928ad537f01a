//! Data images of files (`snap::image`): `SnapKeep` makes one when the file needs it,
//! `SnapKept` records that a mirrored image's links are all made, `SnapImageMirrors` moves a
//! mirrored image's copies (repair, drain), `SnapImageGone` forgets one no live cut reads,
//! `SnapAdopt` turns a removed file's bytes into the image of the cut that last saw it. All
//! the server's own, keyed by the file's inode.

use crate::error::FsError;
use crate::object::{FileKind, Outcome, Time};
use crate::shard::ShardId;
use crate::snap::{adopted, image_serves, needs_image, DataImage, ImageForm, SnapId};
use crate::state::StateStore;

/// `SnapKeep`: an image of `ino` at the shard's latest live cut if `needs_image` says so
/// (`created`), else nothing (`created: false`; the gate then looks for a `linking` image to
/// finish). The image's form follows the file's bytes now: a mirrored file gets a new object
/// id (the shard's inode counter) and its mirrors, `linking`; a file with no data, `Empty`.
/// An erasure-coded, reduced or evicted file is `Invalid`: the gate brings it back to
/// mirrors before it asks (a write would do so anyway), so an image never names shards,
/// segments or a bucket copy. Not a regular file: `Invalid`.
///
/// `local` (`SnapKeepLocal`): the server keeps file bytes in its own chunk store, so there
/// are no placement rows; a file of any size gets a mirrored image with no `mirrors` (the
/// object is in that store), one of size 0 an `Empty` one.
pub(super) fn keep<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    time: Time,
    local: bool,
) -> Result<Outcome, FsError> {
    let inode = s.inode(ino)?.ok_or(FsError::Stale(ino))?;
    if inode.kind != FileKind::Regular {
        return Err(FsError::Invalid);
    }
    let snaps = s.shard_snaps()?;
    let Some(at) = needs_image(&*s, &snaps, ino)? else {
        return Ok(Outcome {
            inode: Some(inode),
            ..Outcome::default()
        });
    };
    let form = form_now(s, ino, inode.size, local, false)?;
    let mut images = s.images(ino)?;
    images.insert(at, DataImage { made: time, form });
    s.put_images(ino, &images)?;
    Ok(Outcome {
        inode: Some(inode),
        created: true,
        ..Outcome::default()
    })
}

/// `SnapAdopt`: orphan `ino` (no links left, nobody has it open: the reaper's) is about to
/// lose its bytes; if `needs_image` says a live cut saw it linked, its bytes become that cut's
/// image instead (`created`), under the file's own object id: nothing is copied or linked, as
/// the inode goes and its number is never used again, and the reaper then forgets the orphan
/// without deleting its data. Else nothing (`created: false`: the reaper deletes the data).
/// Adopted already: `created` again, so a second reaper keeps the bytes too.
/// `Invalid` for a file that is not an orphan (its bytes may still change, which only the
/// gate may let happen), and for an erasure-coded, reduced or evicted one (plan step 7: the
/// reaper keeps such an orphan, bytes and all, while a snapshot needs it).
pub(super) fn adopt<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    time: Time,
    local: bool,
) -> Result<Outcome, FsError> {
    let inode = s.inode(ino)?.ok_or(FsError::Stale(ino))?;
    // A regular file at nlink 0 is an orphan (`drop_link`), and no link brings one back.
    if inode.kind != FileKind::Regular || inode.nlink > 0 {
        return Err(FsError::Invalid);
    }
    let mut images = s.images(ino)?;
    if adopted(&images, ino) {
        // Adopted already (two reapers: a restart's and a last close's): still kept, so
        // neither deletes the bytes.
        return Ok(Outcome {
            created: true,
            ..Outcome::default()
        });
    }
    let snaps = s.shard_snaps()?;
    let Some(at) = needs_image(&*s, &snaps, ino)? else {
        return Ok(Outcome::default());
    };
    let form = form_now(s, ino, inode.size, local, true)?;
    images.insert(at, DataImage { made: time, form });
    s.put_images(ino, &images)?;
    Ok(Outcome {
        created: true,
        ..Outcome::default()
    })
}

/// The form of an image of `ino`'s bytes as they are now: mirrored on every data server a
/// placement row names (none: the server's own store, when `local`), or `Empty` without
/// bytes. `Invalid` for an erasure-coded, reduced or evicted file (`keep`). A mirrored
/// image's object is the file's own when `adopted`, else a new id from the shard's counter,
/// `linking` until its links to the file's object are made.
fn form_now<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    size: u64,
    local: bool,
    adopted: bool,
) -> Result<ImageForm, FsError> {
    let encoded = s.stripes(ino)?.is_some_and(|c| c.is_encoded());
    let reduced = s.reduce(ino)?.is_some_and(|r| r.is_reduced());
    let evicted = s.tier(ino)?.is_some_and(|t| t.evicted);
    if encoded || reduced || evicted {
        return Err(FsError::Invalid);
    }
    // Every data server any placement row names, each once (placement is per file, kept in
    // one row, but an image must reach every copy whatever the rows say).
    let mut mirrors: Vec<u64> = Vec::new();
    for (_, m) in s.chunks(ino)? {
        for ds in m {
            if !mirrors.contains(&ds) {
                mirrors.push(ds);
            }
        }
    }
    let has_data = if local { size > 0 } else { !mirrors.is_empty() };
    Ok(if !has_data {
        ImageForm::Empty
    } else {
        ImageForm::Mirrored {
            object: if adopted {
                ino
            } else {
                s.alloc_ino(ShardId::of_ino(ino))?
            },
            mirrors,
            linking: !adopted,
        }
    })
}

/// `SnapKept`: every mirror of image `(ino, snap)` has linked. `NotFound` without that image,
/// `Invalid` if it is not a mirrored one; kept already: nothing changes.
pub(super) fn kept<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    snap: SnapId,
) -> Result<Outcome, FsError> {
    let mut images = s.images(ino)?;
    let img = images.get_mut(&snap).ok_or(FsError::NotFound)?;
    match &mut img.form {
        ImageForm::Mirrored { linking, .. } if *linking => *linking = false,
        ImageForm::Mirrored { .. } => return Ok(Outcome::default()),
        ImageForm::Empty | ImageForm::InBucket { .. } => return Err(FsError::Invalid),
    }
    s.put_images(ino, &images)?;
    Ok(Outcome::default())
}

/// `SnapImageMirrors`: the mirrored image `(ino, snap)`'s copies are on `mirrors` now, if they
/// were on `expect` (`Changed` otherwise, as `ReplaceMirrors`). `NotFound` without that
/// image; `Invalid` if it is not a mirrored one, or `mirrors` is empty (a record naming no
/// copy would lose the image without a trace).
pub(super) fn image_mirrors<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    snap: SnapId,
    expect: &[u64],
    mirrors: &[u64],
) -> Result<Outcome, FsError> {
    if mirrors.is_empty() {
        return Err(FsError::Invalid);
    }
    let mut images = s.images(ino)?;
    let img = images.get_mut(&snap).ok_or(FsError::NotFound)?;
    let ImageForm::Mirrored { mirrors: now, .. } = &mut img.form else {
        return Err(FsError::Invalid);
    };
    if now.as_slice() != expect {
        return Err(FsError::Changed);
    }
    *now = mirrors.to_vec();
    s.put_images(ino, &images)?;
    Ok(Outcome::default())
}

/// `SnapImageGone`: `ino`'s image at `snap` is read by no live cut (`image_serves`) and its
/// object is deleted: the record goes. `Invalid` while some live cut still reads it or its
/// links are being made (`linking`); gone already: nothing changes.
pub(super) fn gone<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    snap: SnapId,
) -> Result<Outcome, FsError> {
    let mut images = s.images(ino)?;
    let Some(img) = images.get(&snap) else {
        return Ok(Outcome::default());
    };
    let snaps = s.shard_snaps()?;
    if img.is_linking() || image_serves(&snaps, &images, ino, snap) {
        return Err(FsError::Invalid);
    }
    images.remove(&snap);
    s.put_images(ino, &images)?;
    Ok(Outcome::default())
}

/// `SnapImageArchived`: `ino`'s settled mirrored image at `snap` is in the bucket as `copy`.
/// `NotFound` without that image; `Invalid` for one `linking` or of another form; one in the
/// bucket already is left as it is (a copy recorded twice: the first counts).
pub(super) fn archived<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    snap: SnapId,
    copy: &crate::tiering::TierCopy,
) -> Result<Outcome, FsError> {
    let mut images = s.images(ino)?;
    let img = images.get_mut(&snap).ok_or(FsError::NotFound)?;
    img.form = match &img.form {
        ImageForm::Mirrored {
            object,
            mirrors,
            linking: false,
        } => ImageForm::InBucket {
            object: *object,
            copy: copy.clone(),
            flash: Some(mirrors.clone()),
        },
        ImageForm::InBucket { .. } => return Ok(Outcome::default()),
        _ => return Err(FsError::Invalid),
    };
    s.put_images(ino, &images)?;
    Ok(Outcome::default())
}

/// `SnapImageFlashFreed`: the flash copies of `ino`'s image at `snap`, in the bucket, are
/// deleted. `Invalid` for an image not in the bucket; `NotFound` without it.
pub(super) fn flash_freed<S: StateStore + ?Sized>(
    s: &mut S,
    ino: u64,
    snap: SnapId,
) -> Result<Outcome, FsError> {
    let mut images = s.images(ino)?;
    let img = images.get_mut(&snap).ok_or(FsError::NotFound)?;
    let ImageForm::InBucket { flash, .. } = &mut img.form else {
        return Err(FsError::Invalid);
    };
    if flash.take().is_none() {
        return Ok(Outcome::default());
    }
    s.put_images(ino, &images)?;
    Ok(Outcome::default())
}
