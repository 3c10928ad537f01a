//! Segments: the ~2 MiB unit that erasure coding and the S3 tier store (seed decision D1:
//! "EC unit: 2 MB packed segments, post-dedup, post-compression").
//!
//! Format, version 1, all integers little-endian:
//!
//! ```text
//! header   magic "cfsrdseg" (8) | version u16 = 1 | flags u16 = 0 | count u32 | payload_len u64
//! index    count × entry: chunk id (32) | offset u32 | stored_len u32 | raw_len u32
//!                         | flags u8 (bit 0: zstd) | reserved [u8; 3] = 0
//! payload  the stored chunks, back to back, in index order
//! checksum BLAKE3 of everything above (32); it is also the segment's id
//! ```
//!
//! The format is self-describing (a segment read from a disk or a bucket with nothing else
//! can be listed and verified) and canonical: entries are contiguous and in order, lengths
//! agree with the compressed flag, ids are unique, reserved bits are zero, so there is one
//! encoding per content and `decode` can refuse anything else. `decode` trusts nothing:
//! hostile input yields an error, never a panic or an unbounded allocation; the checksum
//! catches corruption, and `get` checks each chunk's keyed hash against its id after
//! decompressing, so a wrong chunk (corruption under a recomputed checksum, a writer bug, a
//! recipe or index pointing at another chunk) is detected rather than assumed away. Two
//! different chunks with one id would both pass that check; they are told apart when the
//! second is deduplicated (`pipeline::reduce_verified` compares the bytes).

use std::borrow::Cow;
use std::collections::HashSet;

use crate::compress::{CompressError, Decompressor};
use crate::hash::{ChunkId, DedupKey, ID_LEN};
use crate::wire::{hex_prefix, split_checksum, Reader, Truncated};

pub const MAGIC: [u8; 8] = *b"cfsrdseg";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 24;
pub const ENTRY_LEN: usize = 48;
pub const CHECKSUM_LEN: usize = 32;
/// About one EC stripe unit / S3 object (D1).
pub const DEFAULT_TARGET: usize = 2 << 20;
/// Largest chunk an entry may describe; bounds decompression buffers.
pub const MAX_CHUNK_LEN: u32 = 4 << 20;
/// Largest encoded segment `decode` accepts (a segment holds one chunk of at most
/// `MAX_CHUNK_LEN` past its target, so 64 MiB is generous).
pub const MAX_SEGMENT_LEN: usize = 64 << 20;
/// Most entries in one segment: 2 MiB of 64-byte chunks is 32768; this bounds the index.
pub const MAX_ENTRIES: u32 = 1 << 16;

const FLAG_COMPRESSED: u8 = 1;

/// A segment's name: the BLAKE3 checksum of its encoding. Content-addressed, so rewriting
/// the same chunks yields the same name (an encoder retried after a crash is idempotent),
/// and a fetched segment proves it is the one asked for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub [u8; 32]);

impl std::fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentId({}..)", hex_prefix(&self.0, 8))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment truncated")]
    Truncated,
    #[error("segment of {0} bytes exceeds the {MAX_SEGMENT_LEN}-byte limit")]
    TooLarge(usize),
    #[error("not a segment (bad magic)")]
    BadMagic,
    #[error("segment version {0} is not supported (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("segment has unknown flags {0:#x}")]
    UnknownFlags(u16),
    #[error("segment declares {0} entries (must be 1..={MAX_ENTRIES})")]
    BadCount(u32),
    #[error("segment length {actual} does not match its header ({declared})")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("segment checksum mismatch")]
    ChecksumMismatch,
    #[error("segment entry {index}: {what}")]
    BadEntry { index: u32, what: &'static str },
    #[error("segment lists chunk {0:?} twice")]
    DuplicateChunk(ChunkId),
    #[error("segment has no entry {0}")]
    NoSuchEntry(u32),
    #[error("segment has no chunk {0:?}")]
    NoSuchChunk(ChunkId),
    #[error("chunk {index} of the segment does not hash to its id (corrupt, or a collision)")]
    HashMismatch { index: u32 },
    #[error("chunk {index}: {source}")]
    Decompress {
        index: u32,
        #[source]
        source: CompressError,
    },
}

impl From<Truncated> for SegmentError {
    fn from(_: Truncated) -> Self {
        SegmentError::Truncated
    }
}

/// One index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    /// Offset of the stored bytes from the start of the payload.
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub compressed: bool,
}

impl Entry {
    /// The rules a canonical entry obeys (the writer refuses what the decoder would).
    fn check(&self) -> Result<(), &'static str> {
        if self.raw_len == 0 || self.raw_len > MAX_CHUNK_LEN {
            return Err("raw length out of range");
        }
        if self.compressed && self.stored_len >= self.raw_len {
            return Err("compressed but not smaller");
        }
        if !self.compressed && self.stored_len != self.raw_len {
            return Err("uncompressed but stored length differs from raw");
        }
        if self.stored_len == 0 {
            return Err("empty stored chunk");
        }
        Ok(())
    }
}

/// Why `SegmentWriter::push` did not take a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Adding the chunk would take the segment past its target: finish this one and start
    /// another (an empty writer always takes a valid chunk).
    #[error("segment full")]
    Full,
    #[error("invalid chunk: {0}")]
    Invalid(&'static str),
}

/// Packs stored chunks into one segment.
pub struct SegmentWriter {
    target: usize,
    entries: Vec<Entry>,
    /// The ids pushed, so a duplicate is refused in O(1) (a segment may hold 2^16 entries).
    ids: HashSet<ChunkId>,
    payload: Vec<u8>,
}

impl SegmentWriter {
    /// `target` is the encoded size to stay under (clamped to `MAX_SEGMENT_LEN`).
    pub fn new(target: usize) -> Self {
        SegmentWriter {
            target: target.min(MAX_SEGMENT_LEN),
            entries: Vec::new(),
            ids: HashSet::new(),
            payload: Vec::with_capacity(target.min(MAX_SEGMENT_LEN)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Size of the segment if finished now.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.entries.len() * ENTRY_LEN + self.payload.len() + CHECKSUM_LEN
    }

    /// Add a chunk already in its stored form; returns its index in the segment. The id is
    /// the caller's (`DedupKey::chunk_id` of the raw bytes); it is not recomputed here, and
    /// `Segment::get` is what catches a wrong one.
    pub fn push(
        &mut self,
        id: ChunkId,
        raw_len: u32,
        stored: &[u8],
        compressed: bool,
    ) -> Result<u32, PushError> {
        let stored_len = u32::try_from(stored.len()).map_err(|_| PushError::Invalid("too long"))?;
        let entry = Entry {
            id,
            offset: u32::try_from(self.payload.len()).map_err(|_| PushError::Full)?,
            stored_len,
            raw_len,
            compressed,
        };
        entry.check().map_err(PushError::Invalid)?;
        if self.ids.contains(&id) {
            return Err(PushError::Invalid("chunk already in this segment"));
        }
        let after = self.encoded_len() + ENTRY_LEN + stored.len();
        if !self.entries.is_empty() && after > self.target {
            return Err(PushError::Full);
        }
        if after > MAX_SEGMENT_LEN || self.entries.len() >= MAX_ENTRIES as usize {
            return Err(PushError::Full);
        }
        self.payload.extend_from_slice(stored);
        self.entries.push(entry);
        self.ids.insert(id);
        Ok(self.entries.len() as u32 - 1)
    }

    /// The encoded segment and its id, or `None` if nothing was pushed (an empty segment is
    /// not valid).
    pub fn finish(self) -> Option<(SegmentId, Vec<u8>)> {
        if self.entries.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.stored_len.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
            out.push(if e.compressed { FLAG_COMPRESSED } else { 0 });
            out.extend_from_slice(&[0; 3]);
        }
        out.extend_from_slice(&self.payload);
        let sum = *blake3::hash(&out).as_bytes();
        out.extend_from_slice(&sum);
        Some((SegmentId(sum), out))
    }
}

/// A decoded, validated segment (borrowing or owning its bytes).
#[derive(Clone)]
pub struct Segment<'a> {
    bytes: Cow<'a, [u8]>,
    id: SegmentId,
    entries: Vec<Entry>,
    payload_at: usize,
}

impl std::fmt::Debug for Segment<'_> {
    // Not the bytes: a segment is ~2 MiB.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id)
            .field("entries", &self.entries.len())
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl<'a> Segment<'a> {
    /// Validate `bytes` as a segment (see the module doc for every rule).
    pub fn decode(bytes: &'a [u8]) -> Result<Segment<'a>, SegmentError> {
        let (id, entries, payload_at) = parse(bytes)?;
        Ok(Segment {
            bytes: Cow::Borrowed(bytes),
            id,
            entries,
            payload_at,
        })
    }
}

impl Segment<'static> {
    pub fn decode_owned(bytes: Vec<u8>) -> Result<Segment<'static>, SegmentError> {
        let (id, entries, payload_at) = parse(&bytes)?;
        Ok(Segment {
            bytes: Cow::Owned(bytes),
            id,
            entries,
            payload_at,
        })
    }
}

fn parse(bytes: &[u8]) -> Result<(SegmentId, Vec<Entry>, usize), SegmentError> {
    if bytes.len() > MAX_SEGMENT_LEN {
        return Err(SegmentError::TooLarge(bytes.len()));
    }
    let mut r = Reader::new(bytes);
    if r.array::<8>()? != MAGIC {
        return Err(SegmentError::BadMagic);
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(SegmentError::UnsupportedVersion(version));
    }
    let flags = r.u16()?;
    if flags != 0 {
        return Err(SegmentError::UnknownFlags(flags));
    }
    let count = r.u32()?;
    if count == 0 || count > MAX_ENTRIES {
        return Err(SegmentError::BadCount(count));
    }
    let payload_len = r.u64()?;
    // payload_len is untrusted: the sum is checked, not allowed to wrap.
    let declared = (HEADER_LEN as u64 + u64::from(count) * ENTRY_LEN as u64 + CHECKSUM_LEN as u64)
        .checked_add(payload_len);
    let actual = bytes.len() as u64;
    if declared != Some(actual) {
        return Err(SegmentError::LengthMismatch {
            declared: declared.unwrap_or(u64::MAX),
            actual,
        });
    }
    let (body, sum) = split_checksum(bytes).ok_or(SegmentError::Truncated)?;
    if *blake3::hash(body).as_bytes() != sum {
        return Err(SegmentError::ChecksumMismatch);
    }
    let mut entries = Vec::with_capacity(count as usize);
    let mut next = 0u64;
    for index in 0..count {
        let id = ChunkId(r.array::<ID_LEN>()?);
        let offset = r.u32()?;
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        let eflags = r.u8()?;
        let reserved = r.array::<3>()?;
        let bad = |what| SegmentError::BadEntry { index, what };
        if eflags & !FLAG_COMPRESSED != 0 || reserved != [0; 3] {
            return Err(bad("unknown flags or reserved bits set"));
        }
        let e = Entry {
            id,
            offset,
            stored_len,
            raw_len,
            compressed: eflags & FLAG_COMPRESSED != 0,
        };
        e.check().map_err(bad)?;
        if u64::from(offset) != next {
            return Err(bad("not contiguous with the previous entry"));
        }
        next += u64::from(stored_len);
        if next > payload_len {
            return Err(bad("extends past the payload"));
        }
        entries.push(e);
    }
    if next != payload_len {
        return Err(SegmentError::BadEntry {
            index: count - 1,
            what: "payload has bytes no entry covers",
        });
    }
    let mut ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(SegmentError::DuplicateChunk(w[0]));
    }
    let payload_at = HEADER_LEN + count as usize * ENTRY_LEN;
    Ok((SegmentId(sum), entries, payload_at))
}

impl Segment<'_> {
    pub fn id(&self) -> SegmentId {
        self.id
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Index of the chunk with this id.
    pub fn position(&self, id: &ChunkId) -> Option<u32> {
        self.entries
            .iter()
            .position(|e| e.id == *id)
            .map(|i| i as u32)
    }

    /// The stored (possibly compressed) bytes of entry `i`, unverified.
    pub fn stored(&self, i: u32) -> Result<&[u8], SegmentError> {
        self.entry_and_stored(i).map(|(_, b)| b)
    }

    fn entry_and_stored(&self, i: u32) -> Result<(&Entry, &[u8]), SegmentError> {
        let e = self
            .entries
            .get(i as usize)
            .ok_or(SegmentError::NoSuchEntry(i))?;
        let start = self.payload_at + e.offset as usize;
        // In range by `parse`; `get` keeps it a typed error regardless.
        let b = self
            .bytes
            .get(start..start + e.stored_len as usize)
            .ok_or(SegmentError::Truncated)?;
        Ok((e, b))
    }

    /// The raw bytes of entry `i`, decompressed and checked against its id.
    pub fn get(&self, i: u32, key: &DedupKey) -> Result<Vec<u8>, SegmentError> {
        let mut d =
            Decompressor::new().map_err(|source| SegmentError::Decompress { index: i, source })?;
        self.get_with(i, key, &mut d)
    }

    /// `get` with a reusable decompression context.
    pub fn get_with(
        &self,
        i: u32,
        key: &DedupKey,
        d: &mut Decompressor,
    ) -> Result<Vec<u8>, SegmentError> {
        let (e, stored) = self.entry_and_stored(i)?;
        let raw = if e.compressed {
            d.decompress(stored, e.raw_len as usize)
                .map_err(|source| SegmentError::Decompress { index: i, source })?
        } else {
            stored.to_vec()
        };
        if key.chunk_id(&raw) != e.id {
            return Err(SegmentError::HashMismatch { index: i });
        }
        Ok(raw)
    }

    /// The raw bytes of the chunk with this id, verified.
    pub fn chunk(&self, id: &ChunkId, key: &DedupKey) -> Result<Vec<u8>, SegmentError> {
        let i = self.position(id).ok_or(SegmentError::NoSuchChunk(*id))?;
        self.get(i, key)
    }
}
