//! What the reduce records answer (`meta_core::reducing`): a file's record, the records a
//! background pass has work on, and the reclaim pass's question of a referrer `(ino, epoch)`
//! (plan step 4), which must see every reduce that began before the referrer was read: it
//! passes the file's shard's read barrier first, since a stale `Gone` would drop a referrer
//! a reduce under way or finished is about to need.

use meta_core::reduce_index::SegmentId;
use meta_core::reducing::{FileReduce, ReduceStatus};

use super::{FsError, Namespace, ShardId, Snapshot};

/// One part of a finished reduce, copied out of the record (`Snapshot::reduced_part`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartCopy {
    /// Where the part is in the file, and its length.
    pub offset: u64,
    pub len: u64,
    /// `reduce::recipe`'s encoding of the part.
    pub recipe: Vec<u8>,
    /// How many parts the reduce has (1: the whole file is one recipe).
    pub parts: usize,
}

impl Snapshot<'_> {
    /// The reduce record of `ino`, if any (it may outlive the file).
    pub fn file_reduce(&self, ino: u64) -> Result<Option<FileReduce>, FsError> {
        self.with(ShardId::of_ino(ino), |st| st.file_reduce(ino).cloned())
    }

    /// `(epoch, length)` of the finished reduce whose recipe `ino`'s bytes are, if they are:
    /// what every READ and write of a file asks, without copying the recipe.
    pub fn reduced_extent(&self, ino: u64) -> Result<Option<(u64, u64)>, FsError> {
        self.with(ShardId::of_ino(ino), |st| {
            st.file_reduce(ino)
                .filter(|r| r.is_reduced())
                .and_then(|r| r.reduced().map(|d| (r.epoch, d.len())))
        })
    }

    /// The part of the finished reduce `epoch` of `ino` holding byte `offset`, if the file's
    /// bytes are that reduce's and `offset` is within them: only that part's recipe is
    /// copied (a reduce in parts may have up to `reducing::MAX_REDUCE_PARTS` of them).
    pub fn reduced_part(
        &self,
        ino: u64,
        epoch: u64,
        offset: u64,
    ) -> Result<Option<PartCopy>, FsError> {
        self.with(ShardId::of_ino(ino), |st| {
            let d = st
                .file_reduce(ino)
                .filter(|r| r.epoch == epoch && r.is_reduced())?
                .reduced()?;
            let p = d.part_at(offset)?;
            Some(PartCopy {
                offset: p.offset,
                len: p.len,
                recipe: p.recipe.to_vec(),
                parts: d.part_count(),
            })
        })
    }

    /// Every segment of every part of the finished reduce `epoch` of `ino`, each once, and
    /// the most one part names, if the file's bytes are that reduce's (no recipe copied).
    pub fn reduced_segments(
        &self,
        ino: u64,
        epoch: u64,
    ) -> Result<Option<(Vec<SegmentId>, usize)>, FsError> {
        self.with(ShardId::of_ino(ino), |st| {
            let d = st
                .file_reduce(ino)
                .filter(|r| r.epoch == epoch && r.is_reduced())?
                .reduced()?;
            let most = d
                .parts()
                .iter()
                .map(|p| p.segments.len())
                .max()
                .unwrap_or(0);
            Some((d.segments(), most))
        })
    }

    /// See `MemState::reduce_status`, as this node's replica has it.
    pub fn reduce_status(&self, ino: u64, epoch: u64) -> Result<ReduceStatus, FsError> {
        self.with(ShardId::of_ino(ino), |st| st.reduce_status(ino, epoch))
    }

    /// Every local shard's reduce records with work for a background pass: a reduce under way
    /// (a crash may have left it; `FileReduce::reducing_since`), mirror copies to trim, or a
    /// retired reduce whose referrers are to be dropped.
    pub fn reduces_to_clean(&self) -> Vec<(u64, FileReduce)> {
        let mut out = Vec::new();
        let _ = self.each(|st| out.extend(st.reduces_to_clean()));
        out
    }
}

impl Namespace {
    /// See `Snapshot::file_reduce`.
    pub fn file_reduce(&self, ino: u64) -> Result<Option<FileReduce>, FsError> {
        self.snapshot()?.file_reduce(ino)
    }

    /// See `Snapshot::reduced_extent`.
    pub fn reduced_extent(&self, ino: u64) -> Result<Option<(u64, u64)>, FsError> {
        self.snapshot()?.reduced_extent(ino)
    }

    /// See `Snapshot::reduced_part`.
    pub fn reduced_part(
        &self,
        ino: u64,
        epoch: u64,
        offset: u64,
    ) -> Result<Option<PartCopy>, FsError> {
        self.snapshot()?.reduced_part(ino, epoch, offset)
    }

    /// See `Snapshot::reduced_segments`.
    pub fn reduced_segments(
        &self,
        ino: u64,
        epoch: u64,
    ) -> Result<Option<(Vec<SegmentId>, usize)>, FsError> {
        self.snapshot()?.reduced_segments(ino, epoch)
    }

    /// See `Snapshot::reduces_to_clean`.
    pub fn reduces_to_clean(&self) -> Result<Vec<(u64, FileReduce)>, FsError> {
        Ok(self.snapshot()?.reduces_to_clean())
    }

    /// What the file's shard says of referrer `(ino, epoch)`, once this node's replica holds
    /// every write acknowledged before the call (`Unavailable` if that cannot be confirmed).
    pub async fn reduce_status(&self, ino: u64, epoch: u64) -> Result<ReduceStatus, FsError> {
        self.barrier(ShardId::of_ino(ino))
            .await
            .map_err(|e| FsError::Unavailable(e.to_string()))?;
        self.snapshot()?.reduce_status(ino, epoch)
    }
}
