//! Cutting a file into chunks, and the byte ranges of layout segments.
//!
//! A chunk's placement never depends on which client asks for it: the per-chunk segments given
//! to kernels before 6.18 and the striped segments given to newer ones are two views of the
//! same chunk → DS assignment, so files written by one kind of client read back through the
//! other without moving data.

use thiserror::Error;

/// 4 MiB: the DS chunk store's default (its `chunkbench` has the measurements).
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;
/// Smallest chunk: one page, the DS store's checksum block granularity.
pub const MIN_CHUNK_SIZE: u64 = 4096;
/// Largest chunk the DS store accepts.
pub const MAX_CHUNK_SIZE: u64 = 1 << 30;
/// Data servers per mirror. Linux accepts up to 4096; proto's `ff_mirror4` decoder (and so our
/// own client) stops at 1024, and a layout we could not read back must not be handed out.
pub const MAX_STRIPE_WIDTH: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GeometryError {
    #[error("chunk size {0} must be a multiple of 4096 between 4 KiB and 1 GiB")]
    BadChunkSize(u64),
    #[error("stripe width {0} must be between 1 and 1024")]
    BadStripeWidth(u32),
}

/// A half-open byte range `[offset, offset + length)`; `length` never runs past `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

impl ByteRange {
    /// Clamps the end at `u64::MAX`, which is also how NFS spells "to end of file".
    pub fn new(offset: u64, length: u64) -> Self {
        ByteRange {
            offset,
            length: length.min(u64::MAX - offset),
        }
    }

    /// Saturating, because the fields are public and a hand-built range may overflow.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }

    pub fn contains(&self, other: &ByteRange) -> bool {
        other.offset >= self.offset && other.end() <= self.end()
    }
}

/// The part of one chunk an I/O touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    pub chunk: u64,
    /// Where the span starts in the file.
    pub file_offset: u64,
    /// Where the span starts inside the chunk.
    pub offset_in_chunk: u64,
    pub len: u64,
}

/// How a layout segment spreads its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentStyle {
    /// One chunk per segment, one DS per mirror: the only shape kernels before 6.18 accept
    /// (they reject a mirror whose `ds_count != 1`).
    PerChunk,
    /// `width` consecutive chunks per segment, stripe unit = chunk size, `width` DSs per mirror.
    /// Segments start at multiples of `width` chunks so the client's stripe index
    /// `(offset / stripe_unit) % width` is the chunk's position inside its segment.
    Striped { width: u32 },
    /// One segment for the whole file, one DS per mirror, every chunk on the same mirrors.
    /// What stock Linux clients need in practice: their flexfiles driver reuses a cached
    /// segment for I/O outside its range (`ff_layout_pg_init_write` checks validity, not range)
    /// and merges adjacent segments regardless of their mirrors (`ff_lseg_match_mirrors`
    /// compared a segment with itself until 2025), so segments with different DSs per range
    /// send bytes to the wrong DS.
    WholeFile,
}

/// One layout segment: a contiguous run of chunks handed out together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub range: ByteRange,
    pub first_chunk: u64,
    /// Chunks in the segment; also the stripe count of every mirror.
    pub chunk_count: u32,
    /// `ffl_stripe_unit`: 0 when there is a single DS per mirror.
    pub stripe_unit: u64,
    /// Covers every chunk of the file: the handles it carries grant all of them.
    pub whole_file: bool,
}

impl Segment {
    pub fn chunks(&self) -> impl Iterator<Item = u64> {
        let first = self.first_chunk;
        (0..u64::from(self.chunk_count)).map_while(move |j| first.checked_add(j))
    }

    /// Whether this segment is an acceptable answer to a LAYOUTGET for `offset` that needs at
    /// least `minlength` bytes. The Linux client asks for at most a page, which a segment of
    /// whole 4 KiB-multiple chunks always has from any page-aligned offset; when this is false
    /// the MDS cannot satisfy the request with one segment (Linux uses only the first
    /// `layout4` of a LAYOUTGET reply).
    pub fn satisfies(&self, offset: u64, minlength: u64) -> bool {
        offset >= self.range.offset
            && offset < self.range.end()
            && minlength <= self.range.end() - offset
    }

    /// Which stripe of each mirror serves `chunk`, computed the way the client does.
    pub fn stripe_of(&self, chunk: u64) -> Option<u32> {
        let j = chunk.checked_sub(self.first_chunk)?;
        u32::try_from(j).ok().filter(|&j| j < self.chunk_count)
    }
}

/// Chunk size and the arithmetic on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkGeometry {
    chunk_size: u64,
}

impl Default for ChunkGeometry {
    fn default() -> Self {
        ChunkGeometry {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl ChunkGeometry {
    /// Same bounds as the DS chunk store, so any geometry the MDS uses the DSs can store.
    pub fn new(chunk_size: u64) -> Result<Self, GeometryError> {
        if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
            && chunk_size.is_multiple_of(MIN_CHUNK_SIZE)
        {
            Ok(ChunkGeometry { chunk_size })
        } else {
            Err(GeometryError::BadChunkSize(chunk_size))
        }
    }

    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    pub fn chunk_of(&self, offset: u64) -> u64 {
        offset / self.chunk_size
    }

    /// The bytes of the file a chunk holds (the last possible chunk is cut at `u64::MAX`).
    pub fn chunk_range(&self, chunk: u64) -> ByteRange {
        self.chunks_range(chunk, 1)
    }

    /// The bytes of `count` consecutive chunks starting at `first`.
    pub fn chunks_range(&self, first: u64, count: u64) -> ByteRange {
        let offset = first.saturating_mul(self.chunk_size);
        ByteRange::new(offset, count.saturating_mul(self.chunk_size))
    }

    /// Splits `[offset, offset + length)` at chunk boundaries. `length` may be `u64::MAX` ("to
    /// end of file"); the iterator is lazy, so that costs nothing until consumed.
    pub fn spans(&self, offset: u64, length: u64) -> Spans {
        let r = ByteRange::new(offset, length);
        Spans {
            chunk_size: self.chunk_size,
            pos: r.offset,
            end: r.end(),
        }
    }

    /// The segment containing `offset`.
    pub fn segment(&self, offset: u64, style: SegmentStyle) -> Result<Segment, GeometryError> {
        let chunk = self.chunk_of(offset);
        match style {
            SegmentStyle::PerChunk => Ok(Segment {
                range: self.chunk_range(chunk),
                first_chunk: chunk,
                chunk_count: 1,
                stripe_unit: 0,
                whole_file: false,
            }),
            SegmentStyle::WholeFile => Ok(Segment {
                range: ByteRange::new(0, u64::MAX),
                first_chunk: 0,
                chunk_count: 1,
                stripe_unit: 0,
                whole_file: true,
            }),
            SegmentStyle::Striped { width } => {
                if width == 0 || width > MAX_STRIPE_WIDTH {
                    return Err(GeometryError::BadStripeWidth(width));
                }
                let w = u64::from(width);
                let first = chunk - chunk % w;
                // Near u64::MAX the last group can be short; it still reports `width` stripes
                // (every mirror needs the same count) and the range is simply clamped.
                Ok(Segment {
                    range: self.chunks_range(first, w),
                    first_chunk: first,
                    chunk_count: width,
                    stripe_unit: if width == 1 { 0 } else { self.chunk_size },
                    whole_file: false,
                })
            }
        }
    }
}

/// Iterator returned by [`ChunkGeometry::spans`].
#[derive(Debug, Clone)]
pub struct Spans {
    chunk_size: u64,
    pos: u64,
    end: u64,
}

impl Iterator for Spans {
    type Item = ChunkSpan;

    fn next(&mut self) -> Option<ChunkSpan> {
        if self.pos >= self.end {
            return None;
        }
        let chunk = self.pos / self.chunk_size;
        let offset_in_chunk = self.pos % self.chunk_size;
        let len = (self.chunk_size - offset_in_chunk).min(self.end - self.pos);
        let span = ChunkSpan {
            chunk,
            file_offset: self.pos,
            offset_in_chunk,
            len,
        };
        self.pos += len;
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn chunk_size_bounds() {
        assert_eq!(ChunkGeometry::default().chunk_size(), 4 * MIB);
        for bad in [0, 1, 4095, 4097, 6000, (1 << 30) + 4096, u64::MAX] {
            assert_eq!(
                ChunkGeometry::new(bad),
                Err(GeometryError::BadChunkSize(bad))
            );
        }
        for good in [4096, 12288, MIB, 1 << 30] {
            assert!(ChunkGeometry::new(good).is_ok());
        }
    }

    #[test]
    fn spans_split_at_chunk_boundaries() {
        let g = ChunkGeometry::default();
        let s: Vec<_> = g.spans(3 * MIB, 6 * MIB).collect();
        assert_eq!(
            s,
            vec![
                ChunkSpan {
                    chunk: 0,
                    file_offset: 3 * MIB,
                    offset_in_chunk: 3 * MIB,
                    len: MIB
                },
                ChunkSpan {
                    chunk: 1,
                    file_offset: 4 * MIB,
                    offset_in_chunk: 0,
                    len: 4 * MIB
                },
                ChunkSpan {
                    chunk: 2,
                    file_offset: 8 * MIB,
                    offset_in_chunk: 0,
                    len: MIB
                },
            ]
        );
        assert_eq!(g.spans(5, 0).count(), 0);
        // "To end of file" from near the top of the offset space terminates.
        let tail: Vec<_> = g.spans(u64::MAX - 10, u64::MAX).collect();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].len, 10);
    }

    #[test]
    fn per_chunk_segments() {
        let g = ChunkGeometry::default();
        let s = g.segment(9 * MIB, SegmentStyle::PerChunk).unwrap();
        assert_eq!(s.range, ByteRange::new(8 * MIB, 4 * MIB));
        assert_eq!((s.first_chunk, s.chunk_count, s.stripe_unit), (2, 1, 0));
        assert_eq!(s.stripe_of(2), Some(0));
        assert_eq!(s.stripe_of(3), None);
        assert_eq!(s.stripe_of(1), None);
        assert!(s.satisfies(9 * MIB, 4096));
        assert!(s.satisfies(12 * MIB - 4096, 4096));
        assert!(!s.satisfies(12 * MIB - 4096, 4097));
        assert!(!s.satisfies(12 * MIB, 0));
        assert!(!s.satisfies(8 * MIB - 1, 1));
        let hand_built = ByteRange {
            offset: u64::MAX,
            length: u64::MAX,
        };
        assert_eq!(hand_built.end(), u64::MAX);
    }

    #[test]
    fn striped_segments_match_the_kernel_stripe_index() {
        let g = ChunkGeometry::default();
        assert_eq!(
            g.segment(0, SegmentStyle::Striped { width: 0 }),
            Err(GeometryError::BadStripeWidth(0))
        );
        assert_eq!(
            g.segment(0, SegmentStyle::Striped { width: 1025 }),
            Err(GeometryError::BadStripeWidth(1025))
        );
        let s = g
            .segment(17 * MIB, SegmentStyle::Striped { width: 3 })
            .unwrap();
        assert_eq!(s.first_chunk, 3);
        assert_eq!(s.range, ByteRange::new(12 * MIB, 12 * MIB));
        assert_eq!(s.stripe_unit, 4 * MIB);
        assert_eq!(s.chunks().collect::<Vec<_>>(), vec![3, 4, 5]);
        // nfs4_ff_layout_calc_dss_id: (offset / stripe_unit) % dss_count, on the file offset.
        for off in (s.range.offset..s.range.end()).step_by(MIB as usize) {
            let kernel = (off / s.stripe_unit) % u64::from(s.chunk_count);
            assert_eq!(Some(kernel as u32), s.stripe_of(g.chunk_of(off)));
        }
        let one = g.segment(0, SegmentStyle::Striped { width: 1 }).unwrap();
        assert_eq!(one.stripe_unit, 0);
    }

    #[test]
    fn segments_at_the_top_of_the_offset_space() {
        let g = ChunkGeometry::default();
        let s = g
            .segment(u64::MAX, SegmentStyle::Striped { width: 7 })
            .unwrap();
        assert!(s.range.contains(&ByteRange::new(u64::MAX - 1, 1)));
        assert_eq!(s.range.end(), u64::MAX);
        let c = g.segment(u64::MAX, SegmentStyle::PerChunk).unwrap();
        assert_eq!(c.range.end(), u64::MAX);
    }

    proptest! {
        #[test]
        fn spans_tile_the_range(
            cs in (1u64..=1024).prop_map(|n| n * 4096),
            offset in any::<u64>(),
            length in 0u64..(64 << 20),
        ) {
            let g = ChunkGeometry::new(cs).unwrap();
            let r = ByteRange::new(offset, length);
            let mut pos = r.offset;
            for s in g.spans(offset, length) {
                prop_assert_eq!(s.file_offset, pos);
                prop_assert!(s.len > 0 && s.offset_in_chunk + s.len <= cs);
                prop_assert_eq!(s.chunk, g.chunk_of(pos));
                prop_assert_eq!(g.chunk_range(s.chunk).offset + s.offset_in_chunk, pos);
                pos += s.len;
            }
            prop_assert_eq!(pos, r.end());
        }

        #[test]
        fn segment_contains_its_offset(
            cs in (1u64..=1024).prop_map(|n| n * 4096),
            offset in any::<u64>(),
            width in 1u32..=64,
            striped in any::<bool>(),
        ) {
            let g = ChunkGeometry::new(cs).unwrap();
            let style = if striped { SegmentStyle::Striped { width } } else { SegmentStyle::PerChunk };
            let s = g.segment(offset, style).unwrap();
            prop_assert!(offset >= s.range.offset);
            prop_assert!(offset < s.range.end() || offset == u64::MAX);
            prop_assert!(s.stripe_of(g.chunk_of(offset)).is_some());
            if let Some(unit) = offset.checked_div(s.stripe_unit) {
                let kernel = unit % u64::from(s.chunk_count);
                prop_assert_eq!(Some(kernel as u32), s.stripe_of(g.chunk_of(offset)));
            }
        }
    }
}
