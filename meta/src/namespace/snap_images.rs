//! Reads of files' data images (`meta_core::snap::image`, `docs/plans/snapshots.md` §3.3), as
//! this node's replicas hold them: what the gate before a change to a file's bytes asks
//! (whether the file needs an image, and which it has), and what the pass that finishes
//! images a dead gate left half linked walks. Each is one look at the file's shard under the
//! snapshot's read lock, so it agrees with every other read of that snapshot.
//!
//! Not here yet (plan step 6): the gate itself, which proposes `SnapKeep` and links the
//! image's object on each mirror, and that pass.

use meta_core::snap::{needs_image, Images, SnapId};

use super::{FsError, Namespace, ShardId, Snapshot};

impl Snapshot<'_> {
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
    /// See `Snapshot::images`.
    pub fn images(&self, ino: u64) -> Result<Images, FsError> {
        self.snapshot()?.images(ino)
    }
}
