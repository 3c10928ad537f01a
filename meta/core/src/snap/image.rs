//! Data images (`docs/plans/snapshots.md` §3.3): the bytes a snapshot reads for a file whose
//! bytes changed after its cut. Pre-images keep a file's attributes; its bytes live on the
//! data servers, so before anything changes them the MDS's gate makes an image of the file at
//! the shard's latest live cut L (`Command::SnapKeep`), which then serves every snapshot from
//! the file's previous image (exclusive) up to L: none of them saw a change in between, or
//! there would be an image between.
//!
//! For a mirrored file the image is a copy of its object by hard links (`SHARDPROC_LINK` on
//! each mirror) under a new object id X taken from the shard's inode counter: never an inode,
//! never reused, and on the file's own shard. It is recorded `linking` before the links are
//! made, and `SnapKept` clears that once every mirror has linked, so a gate that dies half way
//! leaves a record that says so, and whoever finds it links again (LINK is idempotent while
//! the file does not change, and the gate holds the file). A file with no data at all gets
//! an `Empty` image. `SnapKeep` refuses the other forms (erasure-coded, reduced, evicted): the
//! MDS's gate brings such a file back to mirrors first, as the change it guards would do
//! anyway, so every image is born mirrored (and may move to the bucket later, `InBucket`).
//!
//! An image at cut K serves every live cut in (m, K], m the file's previous image (or 0):
//! reads at a cut S take the image with the smallest key at or above S. So an image stays
//! right when K itself is deleted, as long as some live cut in (m, K] saw the file; once none
//! does (`image_serves`), nothing can ever read it again (new cuts are numbered above every
//! image), and the MDS's reclaim pass deletes its object and records `SnapImageGone`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FsError;
use crate::object::Time;
use crate::state::StateStore;

use super::{ShardSnaps, SnapId};

/// One image of a file's bytes, by the cut it was made at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataImage {
    /// When the gate made it (the `SnapKeep`'s time).
    pub made: Time,
    pub form: ImageForm,
}

/// Where an image's bytes are. New forms go at the end (postcard numbers variants by order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageForm {
    /// The file had no data anywhere (no placement record, nothing encoded, reduced or in the
    /// bucket): it reads as zeros up to its size at the snapshot.
    Empty,
    /// Object `object` on each of `mirrors` (the file's placement when the image was made)
    /// shares the file's chunks by hard links. `linking`: some mirror may not have linked
    /// yet, so the file must not change before they all did.
    ///
    /// No `mirrors` at all: the object is in the single server's own chunk store (a server
    /// without data servers, `Command::SnapKeepLocal`).
    Mirrored {
        object: u64,
        mirrors: Vec<u64>,
        linking: bool,
    },
    /// A mirrored image moved to the object store past its snapshots' retention
    /// (snap-to-object): pieces `copy` under the bucket keys of `object` (as a file's pieces
    /// are under its inode number; an image object is never an inode, so the keys are its
    /// own). `flash`: the copies it had (`Mirrored`'s `mirrors`, empty for the single
    /// server's own store) until they are deleted, then `None`.
    InBucket {
        object: u64,
        copy: crate::tiering::TierCopy,
        flash: Option<Vec<u64>>,
    },
}

impl DataImage {
    /// The links of a mirrored image are not all known to be made.
    pub fn is_linking(&self) -> bool {
        matches!(self.form, ImageForm::Mirrored { linking: true, .. })
    }
}

/// A file's images by the cut each was made at (empty: none). Kept whole per file, as a key's
/// pre-images are: at most one per live cut the file's bytes changed after.
pub type Images = BTreeMap<SnapId, DataImage>;

/// The cut `ino`'s bytes need an image at before they change, if any: the shard's latest live
/// cut L, when
/// - the file is older than L (a file born after it is in no snapshot);
/// - its newest image is older than L (else that image, or a newer one, serves L already);
/// - and some live cut S between that image (exclusive) and L (inclusive) saw the file
///   linked (`nlink > 0`): a file that was an orphan at every such cut is in none of them.
///
/// Reads only the shard's own state, so every replica answers the same: `apply` of
/// `SnapKeep` decides with it, and the gate asks it of its replica first to skip the
/// proposal in the common case (no snapshot since the file's last image).
pub fn needs_image<S: StateStore + ?Sized>(
    s: &S,
    snaps: &ShardSnaps,
    ino: u64,
) -> Result<Option<SnapId>, FsError> {
    let Some((latest, cut)) = snaps.latest() else {
        return Ok(None);
    };
    if !cut.born_before(ino) {
        return Ok(None);
    }
    let newest = s.images(ino)?.keys().next_back().copied().unwrap_or(0);
    if newest >= latest {
        return Ok(None);
    }
    let pre = s.pre_inode(ino)?;
    let live = s.inode(ino)?;
    for (snap, c) in snaps.cuts.range(newest + 1..=latest) {
        if c.retired || !c.born_before(ino) {
            continue;
        }
        // The value at `snap`: the version with the smallest id at or above it, else the
        // live one (`snap::view`).
        let at = match pre.range(snap..).next() {
            Some((_, p)) => p.value(),
            None => live.as_ref(),
        };
        if at.is_some_and(|i| i.nlink > 0) {
            return Ok(Some(latest));
        }
    }
    Ok(None)
}

/// Whether one of `ino`'s images is its own object (`Command::SnapAdopt`): the removed file's
/// bytes are a snapshot's now, and no reaper may delete them.
pub fn adopted(images: &Images, ino: u64) -> bool {
    images.values().any(|i| {
        matches!(i.form, ImageForm::Mirrored { object, .. } | ImageForm::InBucket { object, .. }
            if object == ino)
    })
}

/// The live cuts `ino`'s image at `at` serves (`image_serves`, listed).
pub fn served_cuts(snaps: &ShardSnaps, images: &Images, ino: u64, at: SnapId) -> Vec<SnapId> {
    let below = images.range(..at).next_back().map_or(0, |(k, _)| *k);
    snaps
        .cuts
        .range(below.saturating_add(1)..=at)
        .filter(|(_, c)| !c.retired && c.born_before(ino))
        .map(|(s, _)| *s)
        .collect()
}

/// An image and the live cuts that read it, for the space a snapshot holds (`image_uses`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    pub ino: u64,
    pub snap: SnapId,
    pub form: ImageForm,
    /// The live cuts it serves (`served_cuts`): one, its bytes are that snapshot's alone
    /// (save chunks it shares with the file); more, the snapshots share them.
    pub served: Vec<SnapId>,
}

/// Up to `max` of a shard's images that some live cut reads, with those cuts, in order.
pub fn image_uses(
    images: &BTreeMap<u64, Images>,
    snaps: &ShardSnaps,
    max: usize,
    out: &mut Vec<ImageUse>,
) {
    walk_images(images, max, out, |ino, snap, img, v| {
        let served = served_cuts(snaps, v, ino, snap);
        (!served.is_empty()).then(|| ImageUse {
            ino,
            snap,
            form: img.form.clone(),
            served,
        })
    });
}

/// What `pick` makes of a shard's images, `(ino, snap, image, the file's images)` in order,
/// appended to `out` until it holds `max`.
pub fn walk_images<T>(
    images: &BTreeMap<u64, Images>,
    max: usize,
    out: &mut Vec<T>,
    mut pick: impl FnMut(u64, SnapId, &DataImage, &Images) -> Option<T>,
) {
    for (ino, v) in images {
        for (snap, img) in v {
            if out.len() >= max {
                return;
            }
            out.extend(pick(*ino, *snap, img, v));
        }
    }
}

/// A mirrored image to move to the bucket: `(ino, snap, object, mirrors)`.
pub type ToArchive = (u64, SnapId, u64, Vec<u64>);

/// Up to `max` of a shard's mirrored images, settled (not `linking`), that serve some live cut
/// and only cuts `old` says yes to (past their retention): what snap-to-object moves to the
/// bucket. `(ino, snap, object, mirrors)` in order.
pub fn images_to_archive(
    images: &BTreeMap<u64, Images>,
    snaps: &ShardSnaps,
    max: usize,
    old: impl Fn(SnapId) -> bool,
) -> Vec<ToArchive> {
    let mut out = Vec::new();
    walk_images(images, max, &mut out, |ino, snap, img, v| {
        let ImageForm::Mirrored {
            object,
            mirrors,
            linking: false,
        } = &img.form
        else {
            return None;
        };
        let served = served_cuts(snaps, v, ino, snap);
        (!served.is_empty() && served.iter().all(|s| old(*s)))
            .then(|| (ino, snap, *object, mirrors.clone()))
    });
    out
}

/// Whether `ino`'s image at `at` is still read by some live cut: one in (m, `at`], m the key
/// of the file's previous image (0 without one), that the file existed at. Once false it stays
/// false: cuts are only retired, new ones are numbered above every image, and a lower image
/// goes only when it serves no cut either (so m only falls over cuts that are all dead).
pub fn image_serves(snaps: &ShardSnaps, images: &Images, ino: u64, at: SnapId) -> bool {
    let below = images.range(..at).next_back().map_or(0, |(k, _)| *k);
    snaps
        .cuts
        .range(below.saturating_add(1)..=at)
        .any(|(_, c)| !c.retired && c.born_before(ino))
}

/// Up to `max` of a shard's images that no live cut reads any more (`image_serves`), and not
/// `linking` (a gate, or the pass that finishes them, may still be making their links): what
/// the reclaim pass deletes. `(ino, snap, form)` in order. Walks the files with images.
pub fn unserved_images(
    images: &BTreeMap<u64, Images>,
    snaps: &ShardSnaps,
    max: usize,
) -> Vec<(u64, SnapId, ImageForm)> {
    let mut out = Vec::new();
    walk_images(images, max, &mut out, |ino, snap, img, v| {
        (!img.is_linking() && !image_serves(snaps, v, ino, snap))
            .then(|| (ino, snap, img.form.clone()))
    });
    out
}
