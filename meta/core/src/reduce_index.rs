//! The data-reduction index (issue 46, step 1 of `notes/reduce-plan.md`): which segments
//! exist, which chunks each holds, where it is stored, and who refers to it.
//!
//! One record per *segment* (the ~2 MiB unit the reducer packs chunks into and stores
//! erasure-coded), on the shard its id routes to (`ShardId::of_segment`: the id's first 8
//! bytes, little-endian, modulo the shard count). A record names the segment's chunks (id →
//! index in the segment and raw length, what a dedup hit needs), its placement and stored
//! length, its state (`Live` or `Dying`), and the *set* of its referrers `(file ino, reduce
//! epoch)`. A set, not a counter: adding a referrer that is there, or dropping one that is
//! not, changes nothing, so a step retried or replayed after a crash or a lost answer can
//! neither over- nor under-count, where a counter cannot tell a retry from a second
//! reference. The reference count shown in stats is the set's size.
//!
//! The referrers are kept as rows keyed by (segment, referrer) beside the record, not inside
//! it: a popular segment (zeros, a common library) gains referrers one file at a time, and a
//! set inside the record would be rewritten whole (in memory, in the checkpoint) by each add,
//! O(n²) bytes for n referrers. As rows each add or drop is one key.
//!
//! The lifecycle, and why it needs no lock between the reducer and the freeing passes:
//! - `AddReferrer` creates a record on the segment's first referrer (it then carries the
//!   segment's chunks and placement, `StoredSegment`); on a `Live` segment it adds to the set.
//!   On a `Dying` segment, or one whose record is gone, it fails with `FsError::Changed`, its
//!   one failure of that kind: the chunks the reducer found in the index were freed
//!   meanwhile, and it stores them anew. Whatever the interleaving with `DropReferrer`, a
//!   referrer is only ever added to a segment that is `Live` in the same apply.
//! - `DropReferrer` removes a referrer; the drop that empties the set turns the segment
//!   `Dying` in the same apply, so no `Live` segment has an empty set and no `Dying` one a
//!   referrer (`tests::reduce_index` checks both after random sequences).
//! - A `Dying` segment is never `Live` again. The deleting pass lists them (`dying`), deletes
//!   their shards on the data servers, then `ForgetSegment` removes the record (refused while
//!   `Live`).
//!
//! Where the chunk → segment map lives: in the segment's shard, derived from its `Live`
//! records (`MemState::chunk_index`, kept by `put_segment` and rebuilt after a load, never
//! stored). The plan had it sharded by chunk id, but then creating or freeing one segment
//! writes to the shards of all its chunks (~64 for a 2 MiB segment of 32 KiB chunks): a
//! cross-shard transaction per segment, or a map that lags the records and must be checked
//! against them anyway. In the segment's shard, every command here touches one shard and the
//! map is exact in every apply (a chunk of a `Dying` segment is never found). The price is on
//! the read side: a dedup lookup asks every shard (`meta`'s `Namespace::locate_chunks`) with
//! the whole file's chunk ids at once, from local replicas (a stale answer is safe:
//! `AddReferrer` decides). A chunk may be in several segments (two reducers stored it at
//! once, or it was stored anew while its first segment was dying): any `Live` one serves.
//!
//! The types are this crate's own, not `reduce`'s: the state machine depends on no workspace
//! crate (`cfs/tests/it/crate_arrows.rs`), and `reduce` brings BLAKE3, zstd and an AEAD that
//! `apply` has no use for. The ids are the same 32 bytes (`reduce::SegmentId`,
//! `reduce::ChunkId`); the wiring converts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::shard::ShardId;
use super::state::MemState;

/// Most chunks one segment may list: `reduce::segment::MAX_ENTRIES`. Bounds the record a
/// command can create.
pub const MAX_SEGMENT_CHUNKS: usize = 1 << 16;

fn hex8(b: &[u8; 32]) -> String {
    b[..8].iter().map(|x| format!("{x:02x}")).collect()
}

/// A segment's name: the BLAKE3 of its encoding (`reduce::SegmentId`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentId(pub [u8; 32]);

impl std::fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentId({}..)", hex8(&self.0))
    }
}

/// A chunk's name: the keyed BLAKE3 of its raw bytes (`reduce::ChunkId`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({}..)", hex8(&self.0))
    }
}

/// Who refers to a segment: the reduce of file `ino` at epoch `epoch` (the file's shard hands
/// out epochs from its counter, so a file reduced again never meets its earlier references).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Referrer {
    pub ino: u64,
    pub epoch: u64,
}

/// Where a chunk sits in its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSlot {
    /// Entry index in the segment.
    pub index: u32,
    pub raw_len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegmentState {
    /// Referred to; its chunks are found by dedup lookups.
    Live,
    /// Its last referrer went: its shards are to be deleted, then its record. Never `Live`
    /// again (a chunk of it is stored anew).
    Dying,
}

/// One segment's record (its referrers are rows beside it: `MemState::referrers`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub chunks: BTreeMap<ChunkId, ChunkSlot>,
    /// Where its shards are (the data servers, in shard order); opaque here, the encoder's.
    pub placement: Vec<u64>,
    /// Bytes of the segment as stored (encoded, before erasure coding).
    pub stored_len: u64,
    pub state: SegmentState,
    /// The referrer whose `AddReferrer` created the record. With the id it names the
    /// segment's objects on the data servers: ids are content hashes, so the same segment
    /// can be stored again (by a reduce that did not find its chunks, the record being
    /// `Dying`) while the deleting pass removes the dying copy, and two copies under one
    /// name would let that pass delete the new one's bytes.
    pub origin: Referrer,
    /// Its copy in the object store's bucket (`SegmentTier`; `mds::dataservers::segment_tier`).
    pub bucket: SegmentBucket,
    /// Data servers whose shards of it are to be deleted: its placement when its flash was
    /// dropped (`SegmentTierStep::OffFlash`), until the deletes are done (`Freed`). Empty
    /// otherwise. An empty `placement` with a bucket copy `Held` is a segment only in the
    /// bucket: repair and drain, which look for its shards by placement, pass it by.
    pub dropping: Vec<u64>,
}

/// A segment record as builds before its tier state wrote it (redb rows, and the segments
/// part of a shard's dump). Dumps still carry segments in this form, their tier state in a
/// trailing part of its own, so a dump of a shard with no segment in the tier is byte for byte
/// what those builds wrote and read; a redb row of either form loads (`Segment::decode`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentV1 {
    pub chunks: BTreeMap<ChunkId, ChunkSlot>,
    pub placement: Vec<u64>,
    pub stored_len: u64,
    pub state: SegmentState,
    pub origin: Referrer,
}

/// A segment's tier state as a dump's trailing part carries it: (id, bucket, dropping),
/// for segments whose state is not the default.
pub type SegmentTierRow = (SegmentId, SegmentBucket, Vec<u64>);

/// `SegmentV1`'s encoding, borrowed from a `Segment`: what a dump writes, without copying
/// each segment's chunk map (postcard encodes a reference as the value).
#[derive(Serialize)]
pub struct SegmentV1Ref<'a> {
    pub chunks: &'a BTreeMap<ChunkId, ChunkSlot>,
    pub placement: &'a [u64],
    pub stored_len: u64,
    pub state: SegmentState,
    pub origin: Referrer,
}

impl Segment {
    /// The record in its earlier form, borrowed, and its tier state when not the default.
    pub fn split_ref(&self, id: SegmentId) -> (SegmentV1Ref<'_>, Option<SegmentTierRow>) {
        let v1 = SegmentV1Ref {
            chunks: &self.chunks,
            placement: &self.placement,
            stored_len: self.stored_len,
            state: self.state,
            origin: self.origin,
        };
        let tier = (self.bucket != SegmentBucket::No || !self.dropping.is_empty())
            .then(|| (id, self.bucket, self.dropping.clone()));
        (v1, tier)
    }

    /// The record without its tier state, and that state when it is not the default.
    pub fn split(&self, id: SegmentId) -> (SegmentV1, Option<SegmentTierRow>) {
        let (r, tier) = self.split_ref(id);
        let v1 = SegmentV1 {
            chunks: r.chunks.clone(),
            placement: r.placement.to_vec(),
            stored_len: r.stored_len,
            state: r.state,
            origin: r.origin,
        };
        (v1, tier)
    }

    /// A record of the earlier form, with no tier state.
    pub fn from_v1(v: SegmentV1) -> Segment {
        Segment {
            chunks: v.chunks,
            placement: v.placement,
            stored_len: v.stored_len,
            state: v.state,
            origin: v.origin,
            bucket: SegmentBucket::No,
            dropping: Vec::new(),
        }
    }

    /// A stored record of either form. The current form is tried first: a record of the
    /// earlier form ends where the current one's tier state begins, so it fails to read as
    /// the current form. The earlier form is taken only when it spans every byte: a current
    /// record damaged in its tier state is an error, not a record that lost its tier state.
    pub fn decode(bytes: &[u8]) -> Result<Segment, postcard::Error> {
        postcard::from_bytes::<Segment>(bytes).or_else(|e| {
            match postcard::take_from_bytes::<SegmentV1>(bytes) {
                Ok((v1, [])) => Ok(Segment::from_v1(v1)),
                _ => Err(e),
            }
        })
    }
}

/// Where a segment stands in the object-store tier. Segments are immutable and named by
/// their content, so each is uploaded once, whatever number of files refer to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegmentBucket {
    /// Never sent.
    #[default]
    No,
    /// A PUT may have been sent (recorded before the first one): a `Dying` segment's object
    /// is deleted from this state on, so a crash after a PUT leaks nothing.
    Sending,
    /// The object was read back and verified against the segment's id: its flash may go.
    Held,
}

/// A step of a segment's tiering (`Command::SegmentTier`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegmentTierStep {
    /// An upload of the `Live` segment begins (`No` → `Sending`; nothing otherwise).
    Sending,
    /// Its object is verified in the bucket (`Sending` → `Held`).
    Held,
    /// Its shards leave flash: compare-and-set on `placement`, which must be the record's
    /// (non-empty) on a `Live` segment `Held` in the bucket, with no drop under way. The
    /// placement moves to `dropping`; reads go to the bucket from here on.
    OffFlash { placement: Vec<u64> },
    /// The shards on `placement` (the record's `dropping`) are deleted.
    Freed { placement: Vec<u64> },
    /// Its shards come back to flash (a read of an evicted file that uses it): on a `Live`
    /// segment `Held` in the bucket, with no shard on flash and no drop under way, the new
    /// `placement` becomes `dropping` before a shard is written. Until `Warmed` adopts them,
    /// the shards there are ones to delete: a crash while they are written leaves what the
    /// pass that finishes drops (`Freed`) deletes, never shards no record names.
    Warming { placement: Vec<u64> },
    /// The shards on `placement` (the record's `dropping`, from `Warming`) are written and
    /// sealed: they are its placement again, and reads go to flash.
    Warmed { placement: Vec<u64> },
}

impl Segment {
    pub fn is_live(&self) -> bool {
        self.state == SegmentState::Live
    }

    /// Whether its shards are (still meant to be) on the data servers.
    pub fn on_flash(&self) -> bool {
        !self.placement.is_empty()
    }

    /// Raw (file) bytes of its chunks.
    pub fn raw_bytes(&self) -> u64 {
        self.chunks.values().map(|c| u64::from(c.raw_len)).sum()
    }
}

/// What the first `AddReferrer` of a segment carries: the segment the reducer stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSegment {
    /// Its chunks in entry order (entry i is `chunks[i]`): id and raw length.
    pub chunks: Vec<(ChunkId, u32)>,
    pub placement: Vec<u64>,
    pub stored_len: u64,
}

impl StoredSegment {
    /// The chunks by id, or `None` if this is no segment the reducer could have written: no
    /// chunk, more than `MAX_SEGMENT_CHUNKS`, an empty chunk, or a chunk twice.
    pub fn slots(&self) -> Option<BTreeMap<ChunkId, ChunkSlot>> {
        if self.chunks.is_empty() || self.chunks.len() > MAX_SEGMENT_CHUNKS {
            return None;
        }
        let mut slots = BTreeMap::new();
        for (i, (id, raw_len)) in self.chunks.iter().enumerate() {
            let index = u32::try_from(i).ok()?;
            let slot = ChunkSlot {
                index,
                raw_len: *raw_len,
            };
            if *raw_len == 0 || slots.insert(*id, slot).is_some() {
                return None;
            }
        }
        Some(slots)
    }
}

/// Where a dedup lookup found a chunk (`reduce::ChunkLoc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLoc {
    pub segment: SegmentId,
    pub index: u32,
    pub raw_len: u32,
}

/// Where a segment's shards are and what names them on the data servers (the id and the
/// origin, `mds::dataservers::segments`): what the deleting pass needs of a `Dying` one
/// (then `ForgetSegment { shard, segment: id }`), and the repair passes of a `Live` one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentShards {
    pub shard: ShardId,
    pub id: SegmentId,
    pub origin: Referrer,
    pub placement: Vec<u64>,
    pub stored_len: u64,
    pub bucket: SegmentBucket,
    pub dropping: Vec<u64>,
}

/// The index's totals, for `cfs admin status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IndexStats {
    pub live_segments: u64,
    pub dying_segments: u64,
    /// Chunks of `Live` segments (a chunk stored in two segments counts twice).
    pub chunks: u64,
    /// (segment, referrer) pairs: the sum of the reference counts.
    pub referrers: u64,
    /// Raw bytes of the chunks of `Live` segments: unique file bytes after dedup.
    pub raw_bytes: u64,
    /// Stored bytes of `Live` segments (after compression, before erasure coding).
    pub stored_bytes: u64,
    /// Stored bytes of `Dying` segments, still on the data servers until deleted.
    pub dying_bytes: u64,
}

impl std::ops::AddAssign for IndexStats {
    fn add_assign(&mut self, o: IndexStats) {
        self.live_segments += o.live_segments;
        self.dying_segments += o.dying_segments;
        self.chunks += o.chunks;
        self.referrers += o.referrers;
        self.raw_bytes += o.raw_bytes;
        self.stored_bytes += o.stored_bytes;
        self.dying_bytes += o.dying_bytes;
    }
}

/// The index's reads over one shard's state (a shard holds the segments routed to it).
impl MemState {
    /// Where this shard's `Live` segments hold each of `ids`, for those it holds (the first
    /// segment by id when several do).
    pub fn locate_chunks(&self, ids: &[ChunkId]) -> Vec<(ChunkId, ChunkLoc)> {
        let mut out = Vec::new();
        for id in ids {
            let holders = self
                .chunk_index
                .range((*id, SegmentId([0; 32]))..)
                .take_while(|(c, _)| c == id);
            for (_, seg) in holders {
                let slot = self
                    .segments
                    .get(seg)
                    .filter(|s| s.is_live())
                    .and_then(|s| s.chunks.get(id));
                if let Some(slot) = slot {
                    out.push((
                        *id,
                        ChunkLoc {
                            segment: *seg,
                            index: slot.index,
                            raw_len: slot.raw_len,
                        },
                    ));
                    break;
                }
            }
        }
        out
    }

    /// The `Dying` segments of this state (shard `shard`'s): the deleting pass's work.
    pub fn dying_segments(&self, shard: ShardId) -> Vec<SegmentShards> {
        self.segments_where(shard, |_, s| !s.is_live())
    }

    /// This state's `Live` segments that `keep` selects (by id and record).
    pub fn live_segments_where(
        &self,
        shard: ShardId,
        keep: impl Fn(&SegmentId, &Segment) -> bool,
    ) -> Vec<SegmentShards> {
        self.segments_where(shard, |id, s| s.is_live() && keep(id, s))
    }

    fn segments_where(
        &self,
        shard: ShardId,
        keep: impl Fn(&SegmentId, &Segment) -> bool,
    ) -> Vec<SegmentShards> {
        self.segments
            .iter()
            .filter(|(id, s)| keep(id, s))
            .map(|(id, s)| SegmentShards {
                shard,
                id: *id,
                origin: s.origin,
                placement: s.placement.clone(),
                stored_len: s.stored_len,
                bucket: s.bucket,
                dropping: s.dropping.clone(),
            })
            .collect()
    }

    /// Up to `max` referrers of `segment` after `after` (all from the first with `None`), in
    /// order: the reclaim pass pages through them.
    pub fn segment_referrers(
        &self,
        segment: &SegmentId,
        after: Option<Referrer>,
        max: usize,
    ) -> Vec<Referrer> {
        let from = match after {
            Some(r) => std::ops::Bound::Excluded((*segment, r)),
            None => std::ops::Bound::Included((*segment, Referrer { ino: 0, epoch: 0 })),
        };
        self.referrers
            .range((from, std::ops::Bound::Unbounded))
            .take_while(|(s, _)| s == segment)
            .take(max)
            .map(|(_, r)| *r)
            .collect()
    }

    pub fn index_stats(&self) -> IndexStats {
        let mut st = IndexStats {
            referrers: self.referrers.len() as u64,
            ..IndexStats::default()
        };
        for s in self.segments.values() {
            if s.is_live() {
                st.live_segments += 1;
                st.chunks += s.chunks.len() as u64;
                st.raw_bytes += s.raw_bytes();
                st.stored_bytes += s.stored_len;
            } else {
                st.dying_segments += 1;
                st.dying_bytes += s.stored_len;
            }
        }
        st
    }

    /// Rebuilds the chunk → segment map from the records (after loading them).
    pub fn index_chunks(&mut self) {
        self.chunk_index = self
            .segments
            .iter()
            .filter(|(_, s)| s.is_live())
            .flat_map(|(id, s)| s.chunks.keys().map(move |c| (*c, *id)))
            .collect();
    }
}
