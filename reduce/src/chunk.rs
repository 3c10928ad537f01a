//! Content-defined chunking (FastCDC, the 2020 variant with rolling two bytes a step).
//!
//! Cut points depend on the content around them, not on offsets, so an insert or delete
//! shifts only the chunks it touches and the rest of a file still dedups against its old
//! version. `chunks` is a pure function of (bytes, params, seed).
//!
//! Default sizes, by measurement (`cargo run -p reduce --release --example bench`, one
//! core of a shared 2-core x86-64; shared = fraction of the edited copy's bytes in chunks
//! the original also has; ratios = logical / stored after dedup + zstd 3 + segments):
//!
//! ```text
//! min/avg/max KiB  random, 32 small edits  VM copy  src v1/v0  VM set  src tars  reduce  read MiB/s
//!   4/16/64             99.0% shared        84.0%     64.0%    10.0x     8.1x      776    389
//!   8/32/128            97.6%               74.1%     43.2%     8.2x     6.0x      725    513
//!  16/64/256            96.5%               61.4%     12.3%     5.9x     4.6x      636    626
//!  32/128/512           92.7%               42.3%      2.5%     4.2x     4.1x      531    722
//! ```
//!
//! Chunking itself runs at ~1.6 GiB/s for all of them, so its speed does not decide. Scattered
//! 4 KiB writes (VM images) and small edits inside archives lose about one chunk each, so
//! halving the chunk size keeps much more shared: 8/32/128 stores 1.4x less than 16/64/256
//! on the VM set and 1.3x less on the source archives, and reduces faster (less to
//! compress). The cost is twice the chunks: one index row and 92 B of segment entry plus
//! recipe per ~40 KiB of unique data (the measured mean; 0.25% of the data) instead of per
//! ~80 KiB, and reads ~20% slower (more, smaller zstd frames) but still ~500 MiB/s a core.
//! The ratio is worth more than either, so the default is 8/32/128 KiB. 4/16/64 gains
//! another 1.2x on the VM set but doubles the index again (a row per ~20 KiB: ~100 bytes
//! of replicated metadata per 20 KiB of unique data is 0.5%, before replication) and reads
//! at 389 MiB/s; that is where the returns stop paying for metadata.
//!
//! (The VM and source data sets are built from the checkout's own *.rs files, so those
//! columns move by a few points from commit to commit; the ordering does not.)

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
    /// 8/32/128 KiB, chosen by measurement (module doc).
    pub const DEFAULT: ChunkParams = ChunkParams {
        min: 8 << 10,
        avg: 32 << 10,
        max: 128 << 10,
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
