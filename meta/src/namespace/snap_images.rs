//! Reads of files' data images (`meta_core::snap::image`, `docs/plans/snapshots.md` §3.3), as
//! this node's replicas hold them: what the gate before a change to a file's bytes asks
//! (whether the file needs an image, and which it has), and what the pass that finishes
//! images a dead gate left half linked walks. Each is one look at the file's shard under the
//! snapshot's read lock, so it agrees with every other read of that snapshot.
//! The gate itself and the passes are the MDS's (`mds::dataservers::snap_data`).

use meta_core::snap::{
    image_serves, image_uses, images_to_archive, needs_image, served_cuts, unserved_images,
    walk_images, ImageForm, ImageUse, Images, SnapId, ToArchive,
};

use super::{FsError, Namespace, ShardId, Snapshot};

/// What the gate before a change of a file's bytes reads first (`Namespace::gate_look`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateLook {
    /// The cut the file needs an image at (`needs_image`), on this replica.
    pub needs: Option<SnapId>,
    /// Some image of the file is still `linking`: a gate died before its links were all made.
    pub linking: bool,
    /// Shard 0's registry, as this node's replica holds it, has a decided snapshot newer than
    /// every cut this replica of the file's shard has: the cut may not have been applied here
    /// yet, so `needs` may say no where the leader says yes.
    pub lagging: bool,
}

/// An image in the object store (`ImageForm::InBucket`), as the snap-to-object pass reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketImage {
    pub ino: u64,
    pub snap: SnapId,
    pub object: u64,
    pub copy: meta_core::TierCopy,
    /// Flash copies not deleted yet.
    pub flash: Option<Vec<u64>>,
    /// Some live cut still reads it (`snap::image_serves`).
    pub serves: bool,
}

impl Snapshot<'_> {
    /// Up to `max` of `shard`'s images in the object store, in order.
    pub fn images_in_bucket(
        &self,
        shard: ShardId,
        max: usize,
    ) -> Result<Vec<BucketImage>, FsError> {
        self.with(shard, |st| {
            let mut out = Vec::new();
            walk_images(&st.images, max, &mut out, |ino, snap, img, v| {
                let ImageForm::InBucket {
                    object,
                    copy,
                    flash,
                } = &img.form
                else {
                    return None;
                };
                Some(BucketImage {
                    ino,
                    snap,
                    object: *object,
                    copy: copy.clone(),
                    flash: flash.clone(),
                    serves: image_serves(&st.snaps, v, ino, snap),
                })
            });
            out
        })
    }

    /// Up to `max` images some live cut reads, over the shards this node holds, with those
    /// cuts (`snap::image_uses`); and whether that is every such image of the namespace (not
    /// if `max` cut the walk short or a shard is not on this node).
    pub fn image_uses(&self, max: usize, shards: u16) -> Result<(Vec<ImageUse>, bool), FsError> {
        let mut out = Vec::new();
        let mut held = 0usize;
        self.each(|st| {
            held += 1;
            image_uses(&st.images, &st.snaps, max, &mut out);
        })?;
        let all = out.len() < max && held >= usize::from(shards);
        Ok((out, all))
    }

    /// The live cuts `ino`'s image at `snap` serves (`snap::served_cuts`).
    pub fn served_cuts(&self, ino: u64, snap: SnapId) -> Result<Vec<SnapId>, FsError> {
        self.with(ShardId::of_ino(ino), |st| {
            let none = Images::new();
            let images = st.images.get(&ino).unwrap_or(&none);
            served_cuts(&st.snaps, images, ino, snap)
        })
    }

    /// Up to `max` of `shard`'s images no live cut reads any more and not `linking`
    /// (`snap::unserved_images`): what the reclaim pass deletes, `(ino, snap, form)`.
    pub fn unserved_images(
        &self,
        shard: ShardId,
        max: usize,
    ) -> Result<Vec<(u64, SnapId, ImageForm)>, FsError> {
        self.with(shard, |st| unserved_images(&st.images, &st.snaps, max))
    }

    /// Up to `max` of `shard`'s settled mirrored images that serve only cuts `old` says yes
    /// to (`snap::images_to_archive`): what snap-to-object moves to the bucket,
    /// `(ino, snap, object, mirrors)`.
    pub fn images_to_archive(
        &self,
        shard: ShardId,
        max: usize,
        old: impl Fn(SnapId) -> bool,
    ) -> Result<Vec<ToArchive>, FsError> {
        self.with(shard, |st| {
            images_to_archive(&st.images, &st.snaps, max, old)
        })
    }

    /// File `ino`'s data images, by the cut each was made at (empty: none).
    pub fn images(&self, ino: u64) -> Result<Images, FsError> {
        self.with(ShardId::of_ino(ino), |st| {
            st.images.get(&ino).cloned().unwrap_or_default()
        })
    }

    /// The cut `ino`'s bytes need an image at before they change, if any (`needs_image`, over
    /// this replica's state of the file's shard). `None` is final only on the shard's leader
    /// after a barrier; elsewhere it may lag, and `SnapKeep`'s apply decides again anyway.
    pub fn needs_image(&self, ino: u64) -> Result<Option<SnapId>, FsError> {
        self.with(ShardId::of_ino(ino), |st| needs_image(st, &st.snaps, ino))?
    }

    /// Up to `max` of `shard`'s mirrored images whose links are not known to be all made,
    /// `(ino, snap)` in order (`MemState::linking_images`).
    pub fn linking_images(
        &self,
        shard: ShardId,
        max: usize,
    ) -> Result<Vec<(u64, SnapId)>, FsError> {
        self.with(shard, |st| st.linking_images(max))
    }
}

impl Namespace {
    /// `needs_image`, whether an image is `linking`, and whether this replica may lag behind
    /// a decided snapshot (the gate's fast path: one look at the file's shard, one at shard
    /// 0's registry). Two snapshots one after the other, each holding one shard's read lock:
    /// never two locks at once, in whatever order.
    pub fn gate_look(&self, ino: u64) -> Result<GateLook, FsError> {
        let (needs, linking, newest_cut) =
            self.snapshot()?.with(ShardId::of_ino(ino), |st| {
                let linking = st
                    .images
                    .get(&ino)
                    .is_some_and(|v| v.values().any(|i| i.is_linking()));
                let newest = st.snaps.cuts.keys().next_back().copied().unwrap_or(0);
                needs_image(st, &st.snaps, ino).map(|n| (n, linking, newest))
            })??;
        // A node without a replica of shard 0 cannot tell; the cut's freeze and P0's quiesce
        // (plan §3.4) are what order a write after the cut then.
        let decided = self
            .snapshot()?
            .with(ShardId(0), |st| {
                st.registry
                    .iter()
                    .rev()
                    .find(|(_, r)| {
                        matches!(
                            r.state,
                            meta_core::snap::SnapState::Decided { .. }
                                | meta_core::snap::SnapState::Ready { .. }
                        )
                    })
                    .map(|(s, _)| *s)
            })
            .ok()
            .flatten()
            .unwrap_or(0);
        Ok(GateLook {
            needs,
            linking,
            lagging: decided > newest_cut,
        })
    }

    /// See `Snapshot::images`.
    pub fn images(&self, ino: u64) -> Result<Images, FsError> {
        self.snapshot()?.images(ino)
    }
}
