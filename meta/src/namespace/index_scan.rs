//! What the data-reduction index answers (`meta_core::reduce_index`): dedup lookups, the
//! `Dying` segments the deleting pass works through, a segment's referrers for the reclaim
//! pass, and the totals for stats; and the shard a segment's commands go to.
//!
//! A chunk's segments live on their segments' shards, so a lookup asks every local shard
//! (one pass over the batch of ids per shard, under its read lock). It reads this node's
//! replicas without a read barrier: a stale answer is safe, since `AddReferrer` decides on
//! the segment's shard whether it is still `Live` (`FsError::Changed` if not). Not yet: shards
//! this node holds no replica of (more MDS nodes than voters per shard) are not asked, so
//! their chunks are stored again rather than found.

use meta_core::reduce_index::{
    ChunkId, ChunkLoc, IndexStats, Referrer, Segment, SegmentId, SegmentShards,
};

use super::{FsError, Namespace, ShardId, Snapshot};

impl Snapshot<'_> {
    /// Where the local shards' `Live` segments hold each of `ids` that any holds (the lowest
    /// shard's, then the lowest segment id's, when several do).
    pub fn locate_chunks(&self, ids: &[ChunkId]) -> Vec<(ChunkId, ChunkLoc)> {
        let mut found: std::collections::BTreeMap<ChunkId, ChunkLoc> = Default::default();
        let _ = self.each(|st| {
            let missing: Vec<ChunkId> = ids
                .iter()
                .filter(|c| !found.contains_key(c))
                .copied()
                .collect();
            if !missing.is_empty() {
                found.extend(st.locate_chunks(&missing));
            }
        });
        ids.iter()
            .filter_map(|c| found.get(c).map(|l| (*c, *l)))
            .collect()
    }

    /// Every local shard's `Dying` segments.
    pub fn dying_segments(&self) -> Vec<SegmentShards> {
        let mut out = Vec::new();
        let _ = self.each_shard(|shard, st| out.extend(st.dying_segments(shard)));
        out
    }

    /// Every local shard's `Live` segments with a shard on data server `ds`: what a drain
    /// moves off it.
    pub fn segments_on(&self, ds: u64) -> Vec<SegmentShards> {
        let mut out = Vec::new();
        let _ = self.each_shard(|shard, st| {
            out.extend(st.live_segments_where(shard, |_, s| s.placement.contains(&ds)))
        });
        out
    }

    /// Every local shard's `Live` segments whose origin epoch is `epoch`: the candidates
    /// for the shard-set name a data server reports a bad shard under (a hash of id and
    /// origin, which only the MDS can compute).
    pub fn live_segments_of_epoch(&self, epoch: u64) -> Vec<SegmentShards> {
        let mut out = Vec::new();
        let _ = self.each_shard(|shard, st| {
            out.extend(st.live_segments_where(shard, |_, s| s.origin.epoch == epoch))
        });
        out
    }

    /// Every local shard's `Live` segments whose flash drop is under way (shards to delete,
    /// `SegmentTierStep::OffFlash` recorded and `Freed` not yet): a crash between the two
    /// leaves them, and a pass finishes them.
    pub fn segments_dropping(&self) -> Vec<SegmentShards> {
        let mut out = Vec::new();
        let _ = self.each_shard(|shard, st| {
            out.extend(st.live_segments_where(shard, |_, s| !s.dropping.is_empty()))
        });
        out
    }

    /// Segment `id`'s record on `shard`.
    pub fn segment(&self, shard: ShardId, id: &SegmentId) -> Result<Option<Segment>, FsError> {
        self.with(shard, |st| st.segments.get(id).cloned())
    }

    /// Segment `id`'s sizes on `shard`, without copying its record: the raw bytes of its
    /// chunks, its stored length, and how many data servers hold its shards (usage
    /// accounting reads them for every segment a file refers to).
    pub fn segment_sizes(
        &self,
        shard: ShardId,
        id: &SegmentId,
    ) -> Result<Option<(u64, u64, usize)>, FsError> {
        self.with(shard, |st| {
            st.segments
                .get(id)
                .map(|s| (s.raw_bytes(), s.stored_len, s.placement.len()))
        })
    }

    /// Up to `max` referrers of segment `id` on `shard` after `after`, in order.
    pub fn segment_referrers(
        &self,
        shard: ShardId,
        id: &SegmentId,
        after: Option<Referrer>,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        self.with(shard, |st| st.segment_referrers(id, after, max))
    }

    /// Up to `max` (segment, referrer) rows of `shard` after `after` (from the first with
    /// `None`), in order: the reclaim pass walks them.
    pub fn referrers_after(
        &self,
        shard: ShardId,
        after: Option<(SegmentId, Referrer)>,
        max: usize,
    ) -> Result<Vec<(SegmentId, Referrer)>, FsError> {
        self.with(shard, |st| match after {
            Some(a) => st
                .referrers
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                .take(max)
                .copied()
                .collect(),
            None => st.referrers.iter().take(max).copied().collect(),
        })
    }

    /// Up to `max` of `shard`'s segments after `after` (from the first with `None`), in id
    /// order, each with whether its flash may go once only evicted files refer to it
    /// (`Live`, `Held` in the bucket, shards on flash, no drop under way): the sweep of
    /// segments to drop from flash walks them.
    pub fn segments_after(
        &self,
        shard: ShardId,
        after: Option<SegmentId>,
        max: usize,
    ) -> Result<Vec<(SegmentId, bool)>, FsError> {
        use meta_core::reduce_index::SegmentBucket;
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.with(shard, |st| {
            st.segments
                .range((from, Bound::Unbounded))
                .take(max)
                .map(|(id, s)| {
                    let droppable = s.is_live()
                        && s.bucket == SegmentBucket::Held
                        && s.on_flash()
                        && s.dropping.is_empty();
                    (*id, droppable)
                })
                .collect()
        })
    }

    /// The local shards' index totals.
    pub fn index_stats(&self) -> IndexStats {
        let mut t = IndexStats::default();
        let _ = self.each(|st| t += st.index_stats());
        t
    }
}

impl Namespace {
    /// The shard segment `id`'s record is on, for its commands (`propose` refuses any other).
    pub fn segment_shard(&self, id: &SegmentId) -> ShardId {
        ShardId::of_segment(id, self.shard_count())
    }

    /// See `Snapshot::locate_chunks`.
    pub fn locate_chunks(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, ChunkLoc)>, FsError> {
        Ok(self.snapshot()?.locate_chunks(ids))
    }

    /// See `Snapshot::dying_segments`.
    pub fn dying_segments(&self) -> Result<Vec<SegmentShards>, FsError> {
        Ok(self.snapshot()?.dying_segments())
    }

    /// See `Snapshot::segments_on`.
    pub fn segments_on(&self, ds: u64) -> Result<Vec<SegmentShards>, FsError> {
        Ok(self.snapshot()?.segments_on(ds))
    }

    /// See `Snapshot::segments_dropping`.
    pub fn segments_dropping(&self) -> Result<Vec<SegmentShards>, FsError> {
        Ok(self.snapshot()?.segments_dropping())
    }

    /// See `Snapshot::live_segments_of_epoch`.
    pub fn live_segments_of_epoch(&self, epoch: u64) -> Result<Vec<SegmentShards>, FsError> {
        Ok(self.snapshot()?.live_segments_of_epoch(epoch))
    }

    /// Segment `id`'s record, from this node's replica of its shard.
    pub fn segment(&self, id: &SegmentId) -> Result<Option<Segment>, FsError> {
        self.snapshot()?.segment(self.segment_shard(id), id)
    }

    /// See `Snapshot::segment_referrers`; on the segment's shard.
    pub fn segment_referrers(
        &self,
        id: &SegmentId,
        after: Option<Referrer>,
        max: usize,
    ) -> Result<Vec<Referrer>, FsError> {
        self.snapshot()?
            .segment_referrers(self.segment_shard(id), id, after, max)
    }

    /// See `Snapshot::referrers_after`.
    pub fn referrers_after(
        &self,
        shard: ShardId,
        after: Option<(SegmentId, Referrer)>,
        max: usize,
    ) -> Result<Vec<(SegmentId, Referrer)>, FsError> {
        self.snapshot()?.referrers_after(shard, after, max)
    }

    /// See `Snapshot::segments_after`.
    pub fn segments_after(
        &self,
        shard: ShardId,
        after: Option<SegmentId>,
        max: usize,
    ) -> Result<Vec<(SegmentId, bool)>, FsError> {
        self.snapshot()?.segments_after(shard, after, max)
    }

    /// See `Snapshot::index_stats`.
    pub fn index_stats(&self) -> Result<IndexStats, FsError> {
        Ok(self.snapshot()?.index_stats())
    }
}
