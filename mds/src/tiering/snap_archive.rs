//! Snap-to-object (issue 48, `docs/plans/snapshots.md` step 12): a snapshot past its retention
//! keeps its unique bytes in the bucket instead of on flash.
//!
//! A snapshot's unique bytes are its data images (a mirrored file's bytes from before a change
//! after the cut, or a removed file's); everything else it reads is the live files' bytes,
//! which the tier uploads anyway. So, on each shard's leader, every `PASS_EVERY`:
//!
//! 1. **Move.** A settled mirrored image whose every live snapshot is past its retention
//!    (`images_to_archive`) is read from its object on flash and sent in pieces under the
//!    image object's own number (never an inode, so the keys are its alone), generation
//!    `IMAGE_GEN`; `SnapImageArchived` records the copy (`ImageForm::InBucket`, flash copies
//!    still listed); then its object is deleted from flash and `SnapImageFlashFreed` says so.
//!    Reads of it (`.snapshot`, restore) go to the bucket from the record on, checked against
//!    the record's sums (`crate::evicted::read`). An image that also serves a younger
//!    snapshot stays on flash until that one is old too.
//! 2. **Finish.** An image recorded in the bucket whose flash copies a crash left is freed.
//! 3. **Reclaim.** An image in the bucket that no live cut reads any more (its snapshots were
//!    deleted) has its pieces deleted, then `SnapImageGone`.
//!
//! Crashes repeat work: the image object never changes, so its pieces are the same bytes
//! each time and a PUT again overwrites them with themselves; every record step is
//! idempotent. A node killed (or a PUT failed) after some PUTs and before
//! `SnapImageArchived` leaves pieces no record names; if the snapshot is then deleted before
//! a leader moves the image again, the flash reclaim of the image deletes them too
//! (`delete_strays`: pieces are sent in order, so they are a run from piece 0, and one
//! ranged GET that finds none is all an image never sent costs).
//!
//! Not done: the plan's "only blocks not already there" (an image whose bytes the bucket holds
//! already as the live file's copy from before the change could take that copy over instead
//! of being uploaded again; that needs the file's superseded copy kept from the deleter).
use std::collections::HashSet;
use std::sync::Arc;

use meta::namespace::{Command, FsError, ShardId};
use meta_core::snap::{SnapId, SnapState};
use meta_core::{TierCopy, Time};

use super::upload::{put_piece, UploadError};
use crate::dataservers::snap_data::{led_shards, Store};
use crate::error::{NfsError, NfsResult};
use crate::node::Mds;
use crate::tier_set::Tier;

/// The generation of an image object's pieces: an image object is sent whole once, its bytes
/// never change, so one generation is all it ever has. Files' generations come from their
/// shard's epoch counter, up from 1, and a removed file's image (`SnapAdopt`) is the file's own
/// object number: this one is out of the counter's reach, so the deleter of the file's own
/// doomed copies never names an image's piece.
pub(crate) const IMAGE_GEN: u64 = u64::MAX;
/// Images one pass moves or reclaims per shard (the next pass takes the rest).
const PASS_MAX: usize = 32;
/// The most pieces `delete_strays` looks for: as many as any object may have (`TierBegin`
/// refuses more).
const MAX_STRAYS: u64 = 1 << 20;
/// Bytes read from flash at a time.
const READ_STEP: u64 = 1 << 20;

/// One pass on the shards this node leads (module comment).
pub(super) async fn pass(mds: &Mds, tier: &Tier) {
    let old = match past_retention(mds) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!("snap-to-object waits for the snapshot registry: {e}");
            return;
        }
    };
    for shard in led_shards(&mds.ns) {
        if !old.is_empty() {
            let todo = mds
                .ns
                .snapshot()
                .and_then(|s| s.images_to_archive(shard, PASS_MAX, |c| old.contains(&c)));
            for (ino, snap, object, mirrors) in todo.unwrap_or_default() {
                match archive(mds, tier, ino, snap, object, &mirrors).await {
                    Ok(bytes) => tracing::info!(
                        ino,
                        snap,
                        object,
                        bytes,
                        "snapshot image moved to the object store"
                    ),
                    Err(e) => tracing::warn!(
                        ino,
                        snap,
                        "snapshot image left on flash for the next pass: {e}"
                    ),
                }
            }
        }
        finish(mds, tier, shard).await;
    }
}

/// The snapshots past their retention (`Ready` ones only), as this node's replica of shard
/// 0's registry says: no read barrier every pass, since a replica a moment behind only moves
/// an image a pass later, and retention is counted in days.
fn past_retention(mds: &Mds) -> Result<HashSet<SnapId>, FsError> {
    let now = Time::now().secs;
    Ok(mds
        .ns
        .snapshots()?
        .into_iter()
        .filter(|(_, r)| {
            matches!(r.state, SnapState::Ready { .. })
                && meta_core::snap::past_retention(r.created.secs, r.retain_secs, now)
        })
        .map(|(s, _)| s)
        .collect())
}

/// The size of `ino`'s image at `snap`: the file's largest size at the cuts it serves (reads
/// never go past a cut's size).
fn image_size(mds: &Mds, ino: u64, snap: SnapId) -> Result<u64, FsError> {
    let s = mds.ns.snapshot()?;
    let mut size = 0;
    for c in s.served_cuts(ino, snap)? {
        size = size.max(s.inode_at(c, ino)?.size);
    }
    Ok(size)
}

/// Moves one image to the bucket; returns its bytes.
async fn archive(
    mds: &Mds,
    tier: &Tier,
    ino: u64,
    snap: SnapId,
    object: u64,
    mirrors: &[u64],
) -> Result<u64, UploadError> {
    let size = image_size(mds, ino, snap)?;
    let piece_size = tier.settings.object_size.max(1);
    let mut pieces = Vec::new();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(piece_size);
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while (bytes.len() as u64) < len {
            let at = offset + bytes.len() as u64;
            let want = (len - bytes.len() as u64).min(READ_STEP);
            let (data, _) = mds
                .data
                .read_image(object, mirrors, at, want, size)
                .await
                .map_err(UploadError::Read)?;
            // The image is never shorter than its cuts' sizes (holes read as zeros): a read
            // that brings nothing is an error, not the end.
            if data.is_empty() {
                return Err(UploadError::Read(crate::error::NfsError::Io));
            }
            bytes.extend_from_slice(&data);
        }
        pieces.push(put_piece(tier, object, pieces.len() as u64, IMAGE_GEN, offset, bytes).await?);
        offset += len;
    }
    meta::failpoint::hit("snap-archive-sent");
    let copy = TierCopy {
        gen: IMAGE_GEN,
        change: 0,
        pieces,
        at: Time::now(),
    };
    mds.ns
        .execute(Command::SnapImageArchived { ino, snap, copy })
        .await?;
    free_flash(mds, ino, snap, object, mirrors).await?;
    Ok(size)
}

/// Deletes an image's flash copies (its record says it is in the bucket) and records it.
async fn free_flash(
    mds: &Mds,
    ino: u64,
    snap: SnapId,
    object: u64,
    mirrors: &[u64],
) -> Result<(), UploadError> {
    store(mds)
        .remove(object, mirrors)
        .await
        .map_err(UploadError::Read)?;
    mds.ns
        .execute(Command::SnapImageFlashFreed { ino, snap })
        .await?;
    Ok(())
}

fn store(mds: &Mds) -> Store<'_> {
    match &mds.data.path {
        crate::data::DataPath::Local(s) => Store::Local(s),
        crate::data::DataPath::Cluster(c) => Store::Cluster(c),
    }
}

/// Steps 2 and 3 (module comment) for `shard`'s images in the bucket.
async fn finish(mds: &Mds, tier: &Tier, shard: ShardId) {
    let Ok(todo) = mds
        .ns
        .snapshot()
        .and_then(|s| s.images_in_bucket(shard, PASS_MAX))
    else {
        return;
    };
    for b in todo.into_iter().filter(|b| b.flash.is_some() || !b.serves) {
        let r = async {
            if let Some(m) = &b.flash {
                free_flash(mds, b.ino, b.snap, b.object, m).await?;
            }
            if !b.serves {
                delete_pieces(tier, b.object, &b.copy).await?;
                let gone = Command::SnapImageGone {
                    ino: b.ino,
                    snap: b.snap,
                };
                mds.ns.execute(gone).await?;
                tracing::info!(
                    ino = b.ino,
                    snap = b.snap,
                    "snapshot image in the object store no snapshot reads: deleted"
                );
            }
            Ok::<(), UploadError>(())
        };
        if let Err(e) = r.await {
            tracing::debug!(
                ino = b.ino,
                snap = b.snap,
                "snapshot image in the bucket left for the next pass: {e}"
            );
        }
    }
}

/// The flash reclaim's sweep (`Data::snapshot_passes`): with a tier, `delete_strays` of a
/// mirrored image whose object it removed; `Delay` (the next pass asks again) if the bucket
/// did not answer, so the image is not forgotten before its strays are gone.
pub(crate) async fn sweep_strays(tier: Option<Arc<Tier>>, object: u64) -> NfsResult<()> {
    let Some(t) = tier else { return Ok(()) };
    delete_strays(&t, object).await.map(|_| ()).map_err(|e| {
        tracing::debug!(object, "stray image pieces left for the next pass: {e}");
        NfsError::Delay
    })
}

/// Deletes the pieces of image object `object` that an archive cut short left with no record
/// naming them (module comment): from piece 0 while one is there. Bounded by the most pieces
/// an object may have.
async fn delete_strays(tier: &Tier, object: u64) -> Result<u64, tier::TierError> {
    let mut deleted = 0;
    for piece in 0..MAX_STRAYS {
        let key = tier.key(object, piece, IMAGE_GEN);
        match tier.store().get_range(&key, 0..1).await {
            Ok(_) => tier.store().delete(&key).await?,
            Err(tier::TierError::NotFound { .. }) => break,
            Err(e) => return Err(e),
        }
        deleted += 1;
    }
    if deleted > 0 {
        tracing::info!(
            object,
            pieces = deleted,
            "pieces of a snapshot image an archive left unrecorded: deleted"
        );
    }
    Ok(deleted)
}

async fn delete_pieces(tier: &Tier, object: u64, copy: &TierCopy) -> Result<(), UploadError> {
    for piece in 0..copy.pieces.len() as u64 {
        tier.store()
            .delete(&tier.key(object, piece, copy.gen))
            .await?;
    }
    Ok(())
}
