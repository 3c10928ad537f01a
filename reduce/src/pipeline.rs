//! The reduction pipeline: bytes → chunks → ids → (dedup against the caller's index) →
//! compressed → packed into segments → (optionally) sealed; and back: recipe → verified
//! bytes.
//!
//! Pure: the chunk index is the caller's (a replicated, reference-counted table in the
//! cluster), seen here only through `ChunkIndex`; new segments are returned, not written;
//! reads go through `SegmentSource`. Nothing here allocates ids, counts references or
//! touches a disk.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use crate::chunk::{chunks, ChunkParams};
use crate::compress::{CompressError, CompressParams, Compressor, Decompressor};
use crate::crypt::{CryptError, DataKey, SEALED_MAGIC};
use crate::hash::{ChunkId, DedupKey};
use crate::recipe::{ChunkRef, Recipe, RecipeError, MAX_CHUNKS};
use crate::segment::{PushError, Segment, SegmentError, SegmentId, SegmentWriter, DEFAULT_TARGET};

/// Where a stored chunk is, and its raw length (kept in the index so that a dedup hit is
/// checked for free against the chunk it claims to be: see `reduce`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLoc {
    pub segment: SegmentId,
    pub index: u32,
    pub raw_len: u32,
}

/// The caller's chunk index, read-only here. `locate` rather than only `contains`, because
/// a recipe must say where a deduplicated chunk lives, not just that it does.
pub trait ChunkIndex {
    fn locate(&self, id: &ChunkId) -> Option<ChunkLoc>;

    fn contains(&self, id: &ChunkId) -> bool {
        self.locate(id).is_some()
    }
}

/// An in-memory index (tests, the benchmark, a single node's scratch).
impl<S: std::hash::BuildHasher> ChunkIndex for HashMap<ChunkId, ChunkLoc, S> {
    fn locate(&self, id: &ChunkId) -> Option<ChunkLoc> {
        self.get(id).copied()
    }
}

/// Where assembly finds segments (as stored: sealed if encryption is on).
pub trait SegmentSource {
    fn segment(&self, id: &SegmentId) -> Option<Cow<'_, [u8]>>;
}

impl<S: std::hash::BuildHasher> SegmentSource for HashMap<SegmentId, Vec<u8>, S> {
    fn segment(&self, id: &SegmentId) -> Option<Cow<'_, [u8]>> {
        self.get(id).map(|v| Cow::Borrowed(v.as_slice()))
    }
}

/// Everything the pipeline needs; one set per dedup domain (cluster or tenant).
#[derive(Clone, Debug)]
pub struct Params {
    pub chunk: ChunkParams,
    pub compress: CompressParams,
    /// Encoded segment size to stay under (before sealing).
    pub segment_target: usize,
    pub dedup_key: DedupKey,
    /// Seal new segments (and require sealed ones on read) when set.
    pub data_key: Option<DataKey>,
}

impl Params {
    pub fn new(dedup_key: DedupKey) -> Self {
        Params {
            chunk: ChunkParams::DEFAULT,
            compress: CompressParams::default(),
            segment_target: DEFAULT_TARGET,
            dedup_key,
            data_key: None,
        }
    }
}

/// Byte counts of one `reduce` call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Input bytes.
    pub logical: u64,
    /// Raw bytes of the chunks not already stored (nor repeated earlier in this input).
    pub after_dedup: u64,
    /// Those chunks as stored (compressed where it paid).
    pub after_compression: u64,
    /// Bytes of the new segments: the above plus headers, indexes, checksums and envelopes.
    pub stored: u64,
    pub chunks: u64,
    pub new_chunks: u64,
    pub compressed_chunks: u64,
    pub segments: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.logical += o.logical;
        self.after_dedup += o.after_dedup;
        self.after_compression += o.after_compression;
        self.stored += o.stored;
        self.chunks += o.chunks;
        self.new_chunks += o.new_chunks;
        self.compressed_chunks += o.compressed_chunks;
        self.segments += o.segments;
    }
}

/// A new segment to store under `id` (sealed if `Params::data_key` was set).
#[derive(Clone, Debug)]
pub struct NewSegment {
    pub id: SegmentId,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
pub struct Reduced {
    pub recipe: Recipe,
    pub new_segments: Vec<NewSegment>,
    /// The chunks the new segments hold, for the caller to add to its index once the
    /// segments are durable (never before: an index entry must not point at nothing).
    pub new_chunks: Vec<(ChunkId, ChunkLoc)>,
    pub stats: Stats,
}

#[derive(Debug, thiserror::Error)]
pub enum ReduceError {
    #[error("compression: {0}")]
    Compress(#[from] CompressError),
    #[error("encryption: {0}")]
    Crypt(#[from] CryptError),
    #[error("segment: {0}")]
    Push(#[from] PushError),
    #[error("input has more chunks than one recipe holds ({MAX_CHUNKS}); reduce it in ranges")]
    TooManyChunks,
    /// Two different chunks with one id: a keyed-BLAKE3 collision, or an index entry that
    /// points at the wrong chunk. Never deduplicated; the caller keeps the file unreduced.
    #[error("chunk {0:?} matches a stored chunk's id but not its bytes (collision or bad index)")]
    Collision(ChunkId),
    #[error("reading a stored chunk to compare: {0}")]
    Verify(#[source] Box<AssembleError>),
}

/// Where a chunk of this call lives before its segment has a name.
#[derive(Clone, Copy)]
enum Place {
    Stored(ChunkLoc),
    New { segment: usize, index: u32 },
}

/// Reduce `data`: chunk, dedup against `index` (and within `data`), compress and pack what
/// is new. The result's recipe reassembles `data` exactly (`assemble`).
///
/// How much a dedup hit is trusted: a repeat inside `data` is compared byte for byte (it is
/// in memory); a hit in `index` is checked against the stored chunk's raw length. A chunk
/// with the same keyed-BLAKE3 id and length but other bytes (a 2^-128 event, or a bad
/// index entry) is only caught by `reduce_verified`, which reads the stored chunk.
pub fn reduce(
    data: &[u8],
    params: &Params,
    index: &dyn ChunkIndex,
) -> Result<Reduced, ReduceError> {
    reduce_inner(data, params, index, None)
}

/// `reduce`, comparing every chunk found in `index` with the stored chunk's bytes (fetched
/// from `stored`, a few segments cached), so a collision is checked, not assumed away.
/// Costs a read of every segment a dedup hit lands in.
pub fn reduce_verified(
    data: &[u8],
    params: &Params,
    index: &dyn ChunkIndex,
    stored: &dyn SegmentSource,
) -> Result<Reduced, ReduceError> {
    reduce_inner(data, params, index, Some(stored))
}

fn reduce_inner(
    data: &[u8],
    params: &Params,
    index: &dyn ChunkIndex,
    stored: Option<&dyn SegmentSource>,
) -> Result<Reduced, ReduceError> {
    let mut verify = match stored {
        Some(s) => Some((SegmentCache::new(s, params), Decompressor::new()?)),
        None => None,
    };
    let mut stats = Stats {
        logical: data.len() as u64,
        ..Stats::default()
    };
    let mut compressor = Compressor::new(params.compress)?;
    let mut places: Vec<(ChunkId, u32, Place)> = Vec::new();
    // Chunks new in this call, so a repeat inside `data` (zeros, copies) is stored once;
    // with where their bytes are in `data`, to compare a repeat.
    let mut fresh: HashMap<ChunkId, (Place, Range<usize>)> = HashMap::new();
    let mut sealed_ids: Vec<SegmentId> = Vec::new();
    let mut new_segments = Vec::new();
    let mut writer = SegmentWriter::new(params.segment_target);

    let mut close = |w: SegmentWriter, stats: &mut Stats| -> Result<(), ReduceError> {
        if let Some((id, bytes)) = w.finish() {
            let bytes = match &params.data_key {
                Some(k) => k.seal(&id, &bytes)?,
                None => bytes,
            };
            stats.stored += bytes.len() as u64;
            stats.segments += 1;
            sealed_ids.push(id);
            new_segments.push(NewSegment { id, bytes });
        }
        Ok(())
    };

    for range in chunks(data, &params.chunk, params.dedup_key.chunker_seed()) {
        let raw = &data[range.clone()];
        // FastCDC keeps every chunk within `max` <= MAX_CHUNK_LEN, so this always fits.
        let raw_len = u32::try_from(raw.len()).map_err(|_| PushError::Invalid("chunk too long"))?;
        let id = params.dedup_key.chunk_id(raw);
        stats.chunks += 1;
        if stats.chunks > u64::from(MAX_CHUNKS) {
            return Err(ReduceError::TooManyChunks);
        }
        let place = if let Some(loc) = index.locate(&id) {
            if loc.raw_len != raw_len {
                return Err(ReduceError::Collision(id));
            }
            if let Some((cache, d)) = verify.as_mut() {
                let seg = cache
                    .get(&loc.segment)
                    .map_err(|e| ReduceError::Verify(Box::new(e)))?;
                let theirs = seg
                    .get_with(loc.index, &params.dedup_key, d)
                    .map_err(|source| {
                        ReduceError::Verify(Box::new(AssembleError::Segment {
                            segment: loc.segment,
                            source,
                        }))
                    })?;
                if theirs != raw {
                    return Err(ReduceError::Collision(id));
                }
            }
            Place::Stored(loc)
        } else if let Some((p, first)) = fresh.get(&id) {
            if data[first.clone()] != *raw {
                return Err(ReduceError::Collision(id));
            }
            *p
        } else {
            let stored = compressor.compress(raw)?;
            let pushed = match writer.push(id, raw_len, stored.bytes(), stored.is_compressed()) {
                Err(PushError::Full) => {
                    let full =
                        std::mem::replace(&mut writer, SegmentWriter::new(params.segment_target));
                    close(full, &mut stats)?;
                    writer.push(id, raw_len, stored.bytes(), stored.is_compressed())?
                }
                other => other?,
            };
            stats.new_chunks += 1;
            stats.after_dedup += raw.len() as u64;
            stats.after_compression += stored.bytes().len() as u64;
            stats.compressed_chunks += u64::from(stored.is_compressed());
            // The open segment's ordinal: `close` counts the finished ones in `stats`.
            let p = Place::New {
                segment: stats.segments as usize,
                index: pushed,
            };
            fresh.insert(id, (p, range));
            p
        };
        places.push((id, raw_len, place));
    }
    close(writer, &mut stats)?;

    let loc = |p: Place, raw_len: u32| match p {
        Place::Stored(l) => l,
        Place::New { segment, index } => ChunkLoc {
            segment: sealed_ids[segment],
            index,
            raw_len,
        },
    };
    let recipe = Recipe {
        chunks: places
            .iter()
            .map(|&(id, raw_len, p)| {
                let l = loc(p, raw_len);
                ChunkRef {
                    id,
                    raw_len,
                    segment: l.segment,
                    index: l.index,
                }
            })
            .collect(),
    };
    let mut new_chunks: Vec<(ChunkId, ChunkLoc)> = fresh
        .into_iter()
        .map(|(id, (p, range))| (id, loc(p, range.len() as u32)))
        .collect();
    new_chunks.sort_by_key(|(_, l)| (l.segment, l.index));
    Ok(Reduced {
        recipe,
        new_segments,
        new_chunks,
        stats,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("segment {0:?} not found")]
    MissingSegment(SegmentId),
    #[error("segment {0:?} is encrypted and no data key was given")]
    Encrypted(SegmentId),
    #[error("segment {segment:?}: {source}")]
    Crypt {
        segment: SegmentId,
        #[source]
        source: CryptError,
    },
    #[error("segment {segment:?}: {source}")]
    Segment {
        segment: SegmentId,
        #[source]
        source: SegmentError,
    },
    #[error("segment {segment:?} decodes with id {found:?}")]
    WrongSegment {
        segment: SegmentId,
        found: SegmentId,
    },
    #[error("recipe chunk {chunk}: segment entry {index} holds another chunk or length")]
    EntryMismatch { chunk: usize, index: u32 },
    #[error("recipe: {0}")]
    Recipe(#[from] RecipeError),
    #[error("decompression context: {0}")]
    Compress(#[from] CompressError),
}

/// Decoded segments `assemble` keeps. A file deduplicated against another reads the
/// other's segments interleaved with its own, so keeping only the last segment re-decodes
/// (and with encryption, re-decrypts) 2 MiB for every chunk that switches: measured on the
/// benchmark's VM images (16/64/256 KiB chunks), 4 entries took assembly from 484 to 742
/// MiB/s plain and from 130 to 389 MiB/s sealed. Four 2 MiB segments is 8 MiB of memory
/// per assembly in flight.
const SEGMENT_CACHE: usize = 4;

/// The last few segments fetched, opened and decoded, most recently used last.
struct SegmentCache<'s> {
    source: &'s dyn SegmentSource,
    params: &'s Params,
    segments: Vec<Segment<'s>>,
}

impl<'s> SegmentCache<'s> {
    fn new(source: &'s dyn SegmentSource, params: &'s Params) -> Self {
        SegmentCache {
            source,
            params,
            segments: Vec::with_capacity(SEGMENT_CACHE),
        }
    }

    fn get(&mut self, id: &SegmentId) -> Result<&Segment<'s>, AssembleError> {
        match self.segments.iter().position(|s| s.id() == *id) {
            Some(i) => {
                let s = self.segments.remove(i);
                self.segments.push(s);
            }
            None => {
                if self.segments.len() == SEGMENT_CACHE {
                    self.segments.remove(0);
                }
                self.segments.push(open(id, self.params, self.source)?);
            }
        }
        self.segments
            .last()
            .ok_or(AssembleError::MissingSegment(*id))
    }
}

/// The bytes a recipe describes, every chunk verified against its id; segments are fetched
/// from `source` and decoded once while they stay among the last few used.
pub fn assemble(
    recipe: &Recipe,
    params: &Params,
    source: &dyn SegmentSource,
) -> Result<Vec<u8>, AssembleError> {
    // A decoded recipe may claim up to 2^22 chunks of 4 MiB: reserve what it claims only
    // up to 64 MiB and let verified chunks grow the rest.
    let claimed = usize::try_from(recipe.logical_len()).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(claimed.min(64 << 20));
    let mut cache = SegmentCache::new(source, params);
    let mut d = Decompressor::new()?;
    for (n, c) in recipe.chunks.iter().enumerate() {
        let seg = cache.get(&c.segment)?;
        let e = seg.entries().get(c.index as usize);
        if e.map(|e| (e.id, e.raw_len)) != Some((c.id, c.raw_len)) {
            return Err(AssembleError::EntryMismatch {
                chunk: n,
                index: c.index,
            });
        }
        let raw = seg
            .get_with(c.index, &params.dedup_key, &mut d)
            .map_err(|source| AssembleError::Segment {
                segment: c.segment,
                source,
            })?;
        out.extend_from_slice(&raw);
    }
    Ok(out)
}

/// Whether `stored` (a segment as the data servers hold it: sealed, or plaintext from before
/// encryption) is segment `id`: it opens under `params`' data key and decodes to that id.
/// What shard repair checks before it re-encodes a segment, so a rebuilt shard is never
/// computed from damaged bytes.
pub fn check_stored(id: &SegmentId, params: &Params, stored: &[u8]) -> Result<(), AssembleError> {
    struct One<'a>(&'a [u8]);
    impl SegmentSource for One<'_> {
        fn segment(&self, _: &SegmentId) -> Option<Cow<'_, [u8]>> {
            Some(Cow::Borrowed(self.0))
        }
    }
    open(id, params, &One(stored)).map(|_| ())
}

/// Fetch, open (if sealed) and decode one segment, checking it is the one named.
fn open<'s>(
    id: &SegmentId,
    params: &Params,
    source: &'s dyn SegmentSource,
) -> Result<Segment<'s>, AssembleError> {
    let bytes = source
        .segment(id)
        .ok_or(AssembleError::MissingSegment(*id))?;
    let seg_err = |source| AssembleError::Segment {
        segment: *id,
        source,
    };
    let seg = match (&params.data_key, bytes) {
        // A segment stored before encryption was turned on stays readable: it is plaintext
        // either way, and its chunks are still checked against their keyed ids.
        (Some(k), b) if b.starts_with(&SEALED_MAGIC) => {
            let plain = k.open(id, &b).map_err(|source| AssembleError::Crypt {
                segment: *id,
                source,
            })?;
            Segment::decode_owned(plain).map_err(seg_err)?
        }
        (None, b) if b.starts_with(&SEALED_MAGIC) => {
            return Err(AssembleError::Encrypted(*id));
        }
        (_, Cow::Borrowed(b)) => Segment::decode(b).map_err(seg_err)?,
        (_, Cow::Owned(v)) => Segment::decode_owned(v).map_err(seg_err)?,
    };
    if seg.id() != *id {
        return Err(AssembleError::WrongSegment {
            segment: *id,
            found: seg.id(),
        });
    }
    Ok(seg)
}
