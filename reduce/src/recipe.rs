//! A file's recipe: its chunks in order, each with where it is stored.
//!
//! Format, version 1 (little-endian):
//!
//! ```text
//! header    "cfsrdrcp" (8) | version u16 = 1 | flags u16 = 0 | segments u32 | chunks u32
//!           | reserved u32 = 0 | logical_len u64
//! segments  segments × segment id (32), in order of first use
//! chunks    chunks × (chunk id (32) | raw_len u32 | segment u32 (into the table) | index u32)
//! checksum  BLAKE3 of everything above (32)
//! ```
//!
//! Segment ids go in a table because consecutive chunks mostly share a segment: 44 bytes a
//! chunk instead of 72 (≈0.13% of a 32 KiB chunk). The checksum makes any corruption of a
//! stored recipe an error at decode rather than a wrong read later (assembly would catch
//! it too, by chunk hash, but not say why).

use std::collections::HashMap;

use crate::hash::{ChunkId, ID_LEN};
use crate::segment::{SegmentId, MAX_CHUNK_LEN, MAX_ENTRIES};
use crate::wire::{split_checksum, Reader, Truncated};

pub const MAGIC: [u8; 8] = *b"cfsrdrcp";
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 32;
const REF_LEN: usize = ID_LEN + 12;
/// Most chunks one recipe may hold: 2^22 chunks is 128 GiB at the 32 KiB average and a
/// 176 MiB recipe; a larger file is described by several recipes (one per range), which
/// the wiring decides.
pub const MAX_CHUNKS: u32 = 1 << 22;

/// One chunk of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub raw_len: u32,
    pub segment: SegmentId,
    /// Entry index in the segment.
    pub index: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recipe {
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe truncated")]
    Truncated,
    #[error("not a recipe (bad magic)")]
    BadMagic,
    #[error("recipe version {0} is not supported")]
    UnsupportedVersion(u16),
    #[error("recipe has unknown flags or reserved bits set")]
    Reserved,
    #[error("recipe declares {chunks} chunks in {segments} segments (limit {MAX_CHUNKS} chunks)")]
    BadCount { chunks: u32, segments: u32 },
    #[error("recipe length {actual} does not match its header ({declared})")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("recipe checksum mismatch")]
    ChecksumMismatch,
    #[error("recipe chunk {index}: {what}")]
    BadChunk { index: u32, what: &'static str },
    #[error("recipe chunks add up to {sum} bytes, header says {declared}")]
    LogicalLen { declared: u64, sum: u64 },
    #[error("recipe has more than {MAX_CHUNKS} chunks")]
    TooLarge,
}

impl From<Truncated> for RecipeError {
    fn from(_: Truncated) -> Self {
        RecipeError::Truncated
    }
}

impl Recipe {
    /// The file's length.
    pub fn logical_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.raw_len)).sum()
    }

    pub fn encode(&self) -> Result<Vec<u8>, RecipeError> {
        let n = u32::try_from(self.chunks.len())
            .ok()
            .filter(|&n| n <= MAX_CHUNKS)
            .ok_or(RecipeError::TooLarge)?;
        let mut table: Vec<SegmentId> = Vec::new();
        let mut slot: HashMap<SegmentId, u32> = HashMap::new();
        let mut refs = Vec::with_capacity(self.chunks.len() * REF_LEN);
        for (i, c) in self.chunks.iter().enumerate() {
            check_ref(i as u32, c.raw_len, c.index)?;
            let s = *slot.entry(c.segment).or_insert_with(|| {
                table.push(c.segment);
                table.len() as u32 - 1
            });
            refs.extend_from_slice(&c.id.0);
            refs.extend_from_slice(&c.raw_len.to_le_bytes());
            refs.extend_from_slice(&s.to_le_bytes());
            refs.extend_from_slice(&c.index.to_le_bytes());
        }
        let mut out = Vec::with_capacity(HEADER_LEN + table.len() * 32 + refs.len() + 32);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(table.len() as u32).to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.logical_len().to_le_bytes());
        for s in &table {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&refs);
        let sum = *blake3::hash(&out).as_bytes();
        out.extend_from_slice(&sum);
        Ok(out)
    }

    /// Validate and decode; hostile input yields an error, never a panic, and allocation
    /// is bounded by the input's own (already checked) length.
    pub fn decode(bytes: &[u8]) -> Result<Recipe, RecipeError> {
        let mut r = Reader::new(bytes);
        if r.array::<8>()? != MAGIC {
            return Err(RecipeError::BadMagic);
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(RecipeError::UnsupportedVersion(version));
        }
        if r.u16()? != 0 {
            return Err(RecipeError::Reserved);
        }
        let segments = r.u32()?;
        let chunks = r.u32()?;
        if r.u32()? != 0 {
            return Err(RecipeError::Reserved);
        }
        let logical = r.u64()?;
        if chunks > MAX_CHUNKS || segments > chunks {
            return Err(RecipeError::BadCount { chunks, segments });
        }
        // Both counts are at most 2^22, so this is under 2^29: no overflow even in 32 bits.
        let declared = HEADER_LEN + segments as usize * 32 + chunks as usize * REF_LEN + 32;
        if declared != bytes.len() {
            return Err(RecipeError::LengthMismatch {
                declared,
                actual: bytes.len(),
            });
        }
        let (body, sum) = split_checksum(bytes).ok_or(RecipeError::Truncated)?;
        if *blake3::hash(body).as_bytes() != sum {
            return Err(RecipeError::ChecksumMismatch);
        }
        let mut table = Vec::with_capacity(segments as usize);
        for _ in 0..segments {
            table.push(SegmentId(r.array::<32>()?));
        }
        let mut out = Vec::with_capacity(chunks as usize);
        let mut total = 0u64;
        for index in 0..chunks {
            let id = ChunkId(r.array::<ID_LEN>()?);
            let raw_len = r.u32()?;
            let seg = r.u32()?;
            let entry = r.u32()?;
            check_ref(index, raw_len, entry)?;
            let segment = *table.get(seg as usize).ok_or(RecipeError::BadChunk {
                index,
                what: "segment number past the table",
            })?;
            total += u64::from(raw_len);
            out.push(ChunkRef {
                id,
                raw_len,
                segment,
                index: entry,
            });
        }
        if total != logical {
            return Err(RecipeError::LogicalLen {
                declared: logical,
                sum: total,
            });
        }
        Ok(Recipe { chunks: out })
    }
}

fn check_ref(index: u32, raw_len: u32, entry: u32) -> Result<(), RecipeError> {
    if raw_len == 0 || raw_len > MAX_CHUNK_LEN {
        return Err(RecipeError::BadChunk {
            index,
            what: "raw length out of range",
        });
    }
    if entry >= MAX_ENTRIES {
        return Err(RecipeError::BadChunk {
            index,
            what: "segment entry index out of range",
        });
    }
    Ok(())
}
