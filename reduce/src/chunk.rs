//! Content-defined chunking (FastCDC, the 2020 variant with rolling two bytes a step).
//!
//! Cut points depend on the content around them, not on offsets, so an insert or delete
//! shifts only the chunks it touches and the rest of a file still dedups against its old
//! version. `chunks` is a pure function of (bytes, params, seed).
//!
//! Default sizes, by measurement (`cargo run -p reduce --release --example bench`, 2-core
//! x86-64, 16 MiB of random data with a few bytes inserted at 8 places):
//! 16/64/256 KiB and 8/32/128 KiB both keep > 99% of chunks shared after scattered inserts
//! (each insert costs about one average chunk); 16/64/256 halves the number of ids (index
//! entries, recipe bytes, hash lookups: 44 B of recipe and one replicated index row per
//! chunk) and gives zstd longer windows, while dedup of real-world near-copies moves by
//! well under 1%. So the default is 16/64/256 KiB. See `ChunkParams::DEFAULT`.

use std::ops::Range;

use fastcdc::v2020::{self, FastCDC, Normalization};

use crate::segment::MAX_CHUNK_LEN;

/// Minimum, average and maximum chunk size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    min: u32,
    avg: u32,
    max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("chunk sizes must satisfy min < avg < max, got min {min} avg {avg} max {max}")]
    Order { min: u32, avg: u32, max: u32 },
    #[error("chunk {what} size {value} is outside {lo}..={hi}")]
    Range {
        what: &'static str,
        value: u32,
        lo: u32,
        hi: u32,
    },
}

impl ChunkParams {
    /// 16/64/256 KiB, chosen by measurement (module doc).
    pub const DEFAULT: ChunkParams = ChunkParams {
        min: 16 << 10,
        avg: 64 << 10,
        max: 256 << 10,
    };

    /// Checked here, because FastCDC asserts (panics) on sizes outside its limits, and
    /// `max` must fit a segment entry (`MAX_CHUNK_LEN`).
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, ParamsError> {
        let check = |what, value, lo, hi| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(ParamsError::Range {
                    what,
                    value,
                    lo,
                    hi,
                })
            }
        };
        check("minimum", min, v2020::MINIMUM_MIN, v2020::MINIMUM_MAX)?;
        check("average", avg, v2020::AVERAGE_MIN, v2020::AVERAGE_MAX)?;
        let max_hi = v2020::MAXIMUM_MAX.min(MAX_CHUNK_LEN);
        check("maximum", max, v2020::MAXIMUM_MIN, max_hi)?;
        if !(min < avg && avg < max) {
            return Err(ParamsError::Order { min, avg, max });
        }
        Ok(ChunkParams { min, avg, max })
    }

    pub fn min(&self) -> u32 {
        self.min
    }
    pub fn avg(&self) -> u32 {
        self.avg
    }
    pub fn max(&self) -> u32 {
        self.max
    }
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The chunks of `data` as byte ranges, in order, covering it exactly. Every range is
/// non-empty and at most `params.max()` long; all but the last are at least `params.min()`.
pub fn chunks<'a>(
    data: &'a [u8],
    params: &ChunkParams,
    seed: u64,
) -> impl Iterator<Item = Range<usize>> + 'a {
    // Normalization level 1 is FastCDC's default: it narrows the size distribution around
    // `avg` without the dedup loss the paper measures at higher levels.
    FastCDC::with_level_and_seed(
        data,
        params.min,
        params.avg,
        params.max,
        Normalization::Level1,
        seed,
    )
    .map(|c| c.offset..c.offset + c.length)
}
