//! Chunk and block sizes, and where things live inside a chunk file.
//!
//! A chunk file is `[preamble 64 B][cur sums: n × 32 B][pending sums: n × 32 B][pad to 4 KiB]
//! [data: chunk_size B, sparse]`, n = chunk_size / block_size. Keeping the sums at the front lets
//! `ftruncate` shorten the data without touching them, and one fdatasync of one file covers
//! both data and sums.

use crate::error::DsError;

pub(crate) const SUM_LEN: usize = 32;
pub(crate) const PREAMBLE_LEN: u64 = 64;
pub(crate) const MAGIC: &[u8; 8] = b"CFSCHNK1";
/// Data starts page aligned so each 4 KiB block is exactly one page of the page cache: a page is
/// the unit a write interrupted by SIGKILL is torn at, which the two checksum slots rely on.
pub(crate) const PAGE: u64 = 4096;

/// Sizes of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes of file data per chunk file.
    pub chunk_size: u64,
    /// Bytes covered by one checksum; also the granularity of holes (SEEK, READ_PLUS).
    pub block_size: u64,
}

impl Default for Config {
    /// 4 MiB chunks of 4 KiB blocks; chunkbench has the numbers behind both.
    fn default() -> Self {
        Config {
            chunk_size: 4 << 20,
            block_size: 4096,
        }
    }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), DsError> {
        let ok = self.block_size >= PAGE
            && self.block_size.is_power_of_two()
            && self.chunk_size >= self.block_size
            && self.chunk_size.is_multiple_of(self.block_size)
            && self.chunk_size <= 1 << 30;
        if ok {
            Ok(())
        } else {
            Err(DsError::Invalid(format!(
                "bad chunk store geometry {self:?}"
            )))
        }
    }
}

/// Derived offsets of the chunk file format.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub chunk_size: u64,
    pub block_size: u64,
    pub blocks: u64,
    pub data_start: u64,
}

impl Geometry {
    pub(crate) fn new(c: Config) -> Self {
        let blocks = c.chunk_size / c.block_size;
        let hdr = PREAMBLE_LEN + 2 * blocks * SUM_LEN as u64;
        Geometry {
            chunk_size: c.chunk_size,
            block_size: c.block_size,
            blocks,
            data_start: hdr.div_ceil(PAGE) * PAGE,
        }
    }

    pub(crate) fn cur_off(&self, block: u64) -> u64 {
        PREAMBLE_LEN + block * SUM_LEN as u64
    }

    pub(crate) fn pend_off(&self, block: u64) -> u64 {
        PREAMBLE_LEN + (self.blocks + block) * SUM_LEN as u64
    }

    /// Most bytes of disk a write of `len` bytes at `offset` adds to an object, were none of
    /// what it touches allocated before: in each chunk it touches, the data blocks, the
    /// preamble's page and the pages of both sum ranges (current and pending) for those blocks.
    pub(crate) fn most_added(&self, offset: u64, len: u64) -> u64 {
        let end = offset.saturating_add(len);
        let pages = |a: u64, b: u64| b.div_ceil(PAGE) - a / PAGE;
        let mut total = 0u64;
        let mut at = offset;
        while at < end {
            let start = at - at % self.chunk_size;
            let stop = end.min(start.saturating_add(self.chunk_size));
            let (b0, b1) = (
                (at - start) / self.block_size,
                (stop - start).div_ceil(self.block_size),
            );
            let sums = pages(self.cur_off(b0), self.cur_off(b1))
                + pages(self.pend_off(b0), self.pend_off(b1));
            total = total
                .saturating_add((b1 - b0) * self.block_size)
                .saturating_add((1 + sums) * PAGE);
            at = stop;
        }
        total
    }

    pub(crate) fn preamble(&self) -> [u8; PREAMBLE_LEN as usize] {
        let mut p = [0u8; PREAMBLE_LEN as usize];
        p[..8].copy_from_slice(MAGIC);
        p[8..16].copy_from_slice(&self.chunk_size.to_le_bytes());
        p[16..24].copy_from_slice(&self.block_size.to_le_bytes());
        p
    }
}
