//! Data images of files (`snap::image`): `SnapKeep` makes one when the file needs it,
//! `SnapKept` records that a mirrored image's links are all made, `SnapImageMirrors` moves a
//! mirrored image's copies (repair, drain), `SnapImageGone` forgets one no live cut reads.
//! All the server's own, keyed by the file's inode.

use crate::error::FsError;
use crate::object::{FileKind, Outcome, Time};
use crate::shard::ShardId;
use crate::snap::{image_serves, needs_image, DataImage, ImageForm, SnapId};
use crate::state::StateStore;

/// `SnapKeep`: an image of `ino` at the shard's latest live cut if `needs_image` says so
/// (`created`), else nothing (`created: false`; the gate then looks for a `linking` image to
/// finish). The image's form follows the file's bytes now: a mirrored file gets a new object
/// id (the shard's inode counter) and its mirrors, `linking`; a file with no data, `Empty`.
/// An erasure-coded, reduced or evicted file is `Invalid` until those forms exist (plan step
/// 7); nothing proposes this before they do. Not a regular file: `Invalid`.
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
    let has_data = if local {
        inode.size > 0
    } else {
        !mirrors.is_empty()
    };
    let form = if !has_data {
        ImageForm::Empty
    } else {
        ImageForm::Mirrored {
            object: s.alloc_ino(ShardId::of_ino(ino))?,
            mirrors,
            linking: true,
        }
    };
    let mut images = s.images(ino)?;
    images.insert(at, DataImage { made: time, form });
    s.put_images(ino, &images)?;
    Ok(Outcome {
        inode: Some(inode),
        created: true,
        ..Outcome::default()
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
        ImageForm::Empty => return Err(FsError::Invalid),
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
