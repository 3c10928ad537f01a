//! Per-chunk zstd compression that is kept only when it pays.
//!
//! A chunk is stored compressed only if that saves at least `raw_len >> min_saving_shift`
//! bytes (1/8 by default): below that the saving does not repay the CPU of decompressing
//! on every read. Incompressible data (already-compressed files, encrypted or random data)
//! is common in research storage, so before compressing a chunk we compress a small sample
//! of it at level 1; if the sample does not save at least half the threshold the chunk is
//! stored raw, at the cost of compressing 3 × 2 KiB instead of the whole chunk. Measured
//! (examples/bench.rs, one core): random 8/32/128 KiB chunks go through at ~7 GiB/s with
//! the pretest against ~2 GiB/s without (zstd's own incompressible-block shortcut); text
//! loses nothing (tests/compression.rs: equal to zstd -3 per chunk). The sample is taken
//! from the start, middle and end so a chunk that is partly compressible is not judged by
//! one region; one whose compressible part misses all three samples is stored raw, which
//! costs ratio, never correctness.

use std::io;

/// Tuning for `Compressor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressParams {
    /// zstd level (3 is zstd's own default: ~300+ MB/s a core with most of the ratio).
    pub level: i32,
    /// Keep the compressed form only if it saves at least `raw_len >> min_saving_shift`.
    pub min_saving_shift: u8,
    /// Skip chunks whose sample does not compress (see the module doc).
    pub pretest: bool,
}

impl Default for CompressParams {
    fn default() -> Self {
        CompressParams {
            level: 3,
            min_saving_shift: 3,
            pretest: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("zstd: {0}")]
    Zstd(#[from] io::Error),
    #[error("decompressed {got} bytes where the index says {want}")]
    Length { got: usize, want: usize },
}

/// How a chunk is stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored<'a> {
    /// As is: compression did not save enough (or the pretest said it would not).
    Raw(&'a [u8]),
    /// A zstd frame.
    Compressed(Vec<u8>),
}

impl Stored<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Stored::Raw(b) => b,
            Stored::Compressed(v) => v,
        }
    }
    pub fn is_compressed(&self) -> bool {
        matches!(self, Stored::Compressed(_))
    }
}

/// Chunks shorter than this are compressed without a pretest: the sample would be most of
/// the chunk.
const PRETEST_MIN_LEN: usize = 8 << 10;
const SAMPLE_PIECE: usize = 2 << 10;

/// Reusable zstd contexts (a context costs ~100 KiB+ to set up; one per chunk would show).
pub struct Compressor {
    params: CompressParams,
    full: zstd::bulk::Compressor<'static>,
    sample: zstd::bulk::Compressor<'static>,
    sample_buf: Vec<u8>,
}

impl Compressor {
    pub fn new(params: CompressParams) -> Result<Self, CompressError> {
        Ok(Compressor {
            params,
            full: zstd::bulk::Compressor::new(params.level)?,
            sample: zstd::bulk::Compressor::new(1)?,
            sample_buf: Vec::with_capacity(3 * SAMPLE_PIECE),
        })
    }

    fn threshold(&self, len: usize) -> usize {
        len >> self.params.min_saving_shift.min(63)
    }

    /// False if a sample of `raw` does not compress by half the threshold.
    fn worth_trying(&mut self, raw: &[u8]) -> Result<bool, CompressError> {
        if !self.params.pretest || raw.len() < PRETEST_MIN_LEN {
            return Ok(true);
        }
        self.sample_buf.clear();
        let mid = raw.len() / 2 - SAMPLE_PIECE / 2;
        for start in [0, mid, raw.len() - SAMPLE_PIECE] {
            self.sample_buf
                .extend_from_slice(&raw[start..start + SAMPLE_PIECE]);
        }
        let c = self.sample.compress(&self.sample_buf)?;
        let n = self.sample_buf.len();
        Ok(n.saturating_sub(c.len()) >= self.threshold(n) / 2)
    }

    /// Compress `raw` if that saves at least the threshold.
    pub fn compress<'a>(&mut self, raw: &'a [u8]) -> Result<Stored<'a>, CompressError> {
        if raw.is_empty() || !self.worth_trying(raw)? {
            return Ok(Stored::Raw(raw));
        }
        let c = self.full.compress(raw)?;
        if raw.len().saturating_sub(c.len()) >= self.threshold(raw.len()).max(1) {
            Ok(Stored::Compressed(c))
        } else {
            Ok(Stored::Raw(raw))
        }
    }
}

/// A reusable decompression context.
pub struct Decompressor(zstd::bulk::Decompressor<'static>);

impl Decompressor {
    pub fn new() -> Result<Self, CompressError> {
        Ok(Decompressor(zstd::bulk::Decompressor::new()?))
    }

    /// Decompress a frame that must yield exactly `raw_len` bytes. `raw_len` comes from a
    /// validated segment entry (at most `MAX_CHUNK_LEN`), so the allocation is bounded
    /// whatever the frame claims; zstd stops at the capacity.
    pub fn decompress(&mut self, frame: &[u8], raw_len: usize) -> Result<Vec<u8>, CompressError> {
        let out = self.0.decompress(frame, raw_len)?;
        if out.len() != raw_len {
            return Err(CompressError::Length {
                got: out.len(),
                want: raw_len,
            });
        }
        Ok(out)
    }
}
