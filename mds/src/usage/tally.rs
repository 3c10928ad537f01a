//! The accounting of one usage pass, pure: files go in one at a time (`plain`, `reduced`),
//! then each segment's sizes (`finish`), and out come the four numbers per export and for all
//! exports together (`crate::usage` defines them).
//!
//! Dedup is counted per chunk, not per segment: a file that found one chunk of someone else's
//! 2 MiB segment adds that chunk's bytes, not the segment's. A chunk is an entry index of a
//! segment (what a recipe names), one bit in a bitmap per (segment, export) and one in the
//! segment's bitmap for all exports: a chunk two exports refer to counts once in each
//! export, and once in the total. A bitmap grows to the highest index set (at most
//! `MAX_SEGMENT_CHUNKS` bits, 8 KiB; 64 bits for a 2 MiB segment of 32 KiB chunks).
//!
//! Compression and raw bytes are a segment's stored and on-disk bytes shared out among its
//! chunks in proportion to their raw bytes: the metadata has a chunk's raw length but not its
//! compressed one (that is in the segment's header, on the data servers). Exact for an export
//! that refers to all of a segment (a file reduced on its own, or copies of it), an estimate
//! for one that refers to part of it; the shares of a segment's chunks add up to the segment.

use std::collections::HashMap;

use meta::namespace::reduce_index::SegmentId;
use serde::Serialize;

/// Usage of an export (or of several): its files, and their bytes at each step of reduction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Regular files (a file with several names in the export counts once).
    pub files: u64,
    /// The files' sizes.
    pub logical: u64,
    /// Unreduced files at their size, plus the raw bytes of the distinct chunks the reduced
    /// files refer to.
    pub after_dedup: u64,
    /// Unreduced files at their size, plus those chunks' share of their segments' stored
    /// (compressed, sealed) bytes.
    pub after_compression: u64,
    /// What the data servers hold for them: mirrored files' copies, erasure-coded files'
    /// shards with parity, the chunks' share of their segments' shards with parity.
    pub raw: u64,
}

impl Usage {
    fn add_plain(&mut self, size: u64, raw: u64) {
        self.files += 1;
        self.logical += size;
        self.after_dedup += size;
        self.after_compression += size;
        self.raw += raw;
    }
}

/// A segment's sizes, from its record in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSizes {
    /// Raw bytes of all its chunks.
    pub raw: u64,
    /// Its stored length (after compression, before parity).
    pub stored: u64,
    /// Bytes of its shards on the data servers, parity included.
    pub on_disk: u64,
}

/// Chunks of one segment that some files refer to: a bit per entry index, and the raw
/// bytes of the chunks marked.
#[derive(Default)]
struct Marks {
    bits: Vec<u64>,
    bytes: u64,
}

impl Marks {
    /// Marks entry `index` of `raw_len` bytes; whether it was not marked yet.
    fn mark(&mut self, index: u32, raw_len: u32) -> bool {
        let (word, bit) = ((index / 64) as usize, index % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        let new = self.bits[word] & (1 << bit) == 0;
        if new {
            self.bits[word] |= 1 << bit;
            self.bytes += u64::from(raw_len);
        }
        new
    }
}

/// One segment's chunks that files refer to, per export (a segment is mostly referred to
/// by one export: a short list) and for all of them.
#[derive(Default)]
struct SegmentMarks {
    by_export: Vec<(usize, Marks)>,
    all: Marks,
}

/// `part` of `whole`'s share of `of` (`of * part / whole`), without overflow.
fn share(of: u64, part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let s = u128::from(of) * u128::from(part.min(whole)) / u128::from(whole);
    u64::try_from(s).unwrap_or(of)
}

/// What a pass found, for `exports` exports.
pub struct Tally {
    exports: Vec<Usage>,
    total: Usage,
    segments: HashMap<SegmentId, SegmentMarks>,
    max_segments: usize,
    /// More segments than `max_segments` were referred to: chunks of the others counted at
    /// their raw bytes each time they were met, with no raw bytes (not deduplicated).
    pub overflowed: bool,
}

/// The result: each export's usage (in the order given to `Tally::new`), all exports'
/// together (a shared chunk counted once), and how many segments had no sizes (their chunks
/// counted at their raw bytes, with no raw bytes on disk).
#[derive(Debug, PartialEq, Eq)]
pub struct Totals {
    pub exports: Vec<Usage>,
    pub total: Usage,
    pub unsized_segments: u64,
}

impl Tally {
    /// An empty tally of `exports` exports that tracks at most `max_segments` segments.
    pub fn new(exports: usize, max_segments: usize) -> Tally {
        Tally {
            exports: vec![Usage::default(); exports],
            total: Usage::default(),
            segments: HashMap::new(),
            max_segments,
            overflowed: false,
        }
    }

    /// A file of export `e` that is not reduced (mirrored, erasure-coded, evicted): `size`
    /// bytes, `raw` of them on the data servers.
    pub fn plain(&mut self, e: usize, size: u64, raw: u64) {
        if let Some(u) = self.exports.get_mut(e) {
            u.add_plain(size, raw);
            self.total.add_plain(size, raw);
        }
    }

    /// A reduced file of export `e` of `size` bytes whose recipe names `chunks`: (segment,
    /// entry index, raw length) each.
    pub fn reduced(
        &mut self,
        e: usize,
        size: u64,
        chunks: impl IntoIterator<Item = (SegmentId, u32, u32)>,
    ) {
        let Some(u) = self.exports.get_mut(e) else {
            return;
        };
        u.files += 1;
        u.logical += size;
        self.total.files += 1;
        self.total.logical += size;
        for (seg, index, raw_len) in chunks {
            if self.segments.len() >= self.max_segments && !self.segments.contains_key(&seg) {
                self.overflowed = true;
                for u in [&mut self.exports[e], &mut self.total] {
                    u.after_dedup += u64::from(raw_len);
                    u.after_compression += u64::from(raw_len);
                }
                continue;
            }
            let marks = self.segments.entry(seg).or_default();
            let i = match marks.by_export.iter().position(|(x, _)| *x == e) {
                Some(i) => i,
                None => {
                    marks.by_export.push((e, Marks::default()));
                    marks.by_export.len() - 1
                }
            };
            if marks.by_export[i].1.mark(index, raw_len) {
                self.exports[e].after_dedup += u64::from(raw_len);
            }
            if marks.all.mark(index, raw_len) {
                self.total.after_dedup += u64::from(raw_len);
            }
        }
    }

    /// The segments the files refer to (whose sizes `finish` needs).
    pub fn segment_ids(&self) -> Vec<SegmentId> {
        self.segments.keys().copied().collect()
    }

    /// Shares each segment's stored and on-disk bytes out among the exports that refer to
    /// its chunks; `sizes` has what the index says of each segment (one without is counted
    /// at its chunks' raw bytes, with no raw bytes on disk).
    pub fn finish(self, sizes: &HashMap<SegmentId, SegmentSizes>) -> Totals {
        let Tally {
            mut exports,
            mut total,
            segments,
            ..
        } = self;
        let mut unsized_segments = 0;
        for (id, marks) in &segments {
            let s = sizes.get(id);
            if s.is_none() {
                unsized_segments += 1;
            }
            let add = |u: &mut Usage, m: &Marks| match s {
                Some(s) => {
                    u.after_compression += share(s.stored, m.bytes, s.raw);
                    u.raw += share(s.on_disk, m.bytes, s.raw);
                }
                None => u.after_compression += m.bytes,
            };
            for (e, m) in &marks.by_export {
                add(&mut exports[*e], m);
            }
            add(&mut total, &marks.all);
        }
        Totals {
            exports,
            total,
            unsized_segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(n: u8) -> SegmentId {
        SegmentId([n; 32])
    }

    /// A segment of `chunks` chunks of `len` bytes each, stored at `stored_pct` % and
    /// held at 1.5 times that (2+1).
    fn sizes(chunks: u64, len: u64, stored_pct: u64) -> SegmentSizes {
        let raw = chunks * len;
        let stored = raw * stored_pct / 100;
        SegmentSizes {
            raw,
            stored,
            on_disk: stored * 3 / 2,
        }
    }

    fn file(s: SegmentId, from: u32, to: u32, len: u32) -> Vec<(SegmentId, u32, u32)> {
        (from..to).map(|i| (s, i, len)).collect()
    }

    #[test]
    fn two_copies_in_one_export_count_once_after_dedup() {
        let mut t = Tally::new(1, 100);
        t.reduced(0, 64 * 1000, file(seg(1), 0, 64, 1000));
        t.reduced(0, 64 * 1000, file(seg(1), 0, 64, 1000));
        let sz = HashMap::from([(seg(1), sizes(64, 1000, 100))]);
        let r = t.finish(&sz);
        let u = r.exports[0];
        assert_eq!((u.files, u.logical, u.after_dedup), (2, 128_000, 64_000));
        assert_eq!((u.after_compression, u.raw), (64_000, 96_000));
        assert_eq!(r.total, u);
        assert_eq!(r.unsized_segments, 0);
    }

    #[test]
    fn a_chunk_shared_by_two_exports_counts_in_each_and_once_in_the_total() {
        let mut t = Tally::new(2, 100);
        // Export 0 stored the segment (10 chunks of 100 bytes, compressed to half); export 1
        // has a file that found 4 of its chunks, and an unreduced file mirrored twice.
        t.reduced(0, 1000, file(seg(1), 0, 10, 100));
        t.reduced(1, 400, file(seg(1), 3, 7, 100));
        t.plain(1, 50, 100);
        let r = t.finish(&HashMap::from([(seg(1), sizes(10, 100, 50))]));
        assert_eq!(
            r.exports[0],
            Usage {
                files: 1,
                logical: 1000,
                after_dedup: 1000,
                after_compression: 500,
                raw: 750
            }
        );
        assert_eq!(
            r.exports[1],
            Usage {
                files: 2,
                logical: 450,
                after_dedup: 450,
                after_compression: 250,
                raw: 400
            }
        );
        // The four shared chunks once: the segment and the mirrored file.
        assert_eq!(
            r.total,
            Usage {
                files: 3,
                logical: 1450,
                after_dedup: 1050,
                after_compression: 550,
                raw: 850
            }
        );
    }

    #[test]
    fn a_segment_part_referred_to_gets_its_share_of_stored_and_raw_bytes() {
        let mut t = Tally::new(1, 100);
        // Chunks of different sizes: the shares follow raw bytes.
        t.reduced(0, 3000, [(seg(2), 5, 3000)]);
        let s = SegmentSizes {
            raw: 12_000,
            stored: 6_000,
            on_disk: 9_000,
        };
        let r = t.finish(&HashMap::from([(seg(2), s)]));
        assert_eq!(r.exports[0].after_dedup, 3000);
        assert_eq!(r.exports[0].after_compression, 1500);
        assert_eq!(r.exports[0].raw, 2250);
    }

    #[test]
    fn a_segment_without_sizes_counts_its_chunks_raw_and_is_reported() {
        let mut t = Tally::new(1, 100);
        t.reduced(0, 200, file(seg(3), 0, 2, 100));
        let r = t.finish(&HashMap::new());
        assert_eq!(r.unsized_segments, 1);
        assert_eq!(r.exports[0].after_compression, 200);
        assert_eq!(r.exports[0].raw, 0);
    }

    #[test]
    fn past_the_bound_chunks_are_counted_each_time_and_the_tally_says_so() {
        let mut t = Tally::new(1, 1);
        t.reduced(0, 100, [(seg(1), 0, 100)]);
        t.reduced(0, 100, [(seg(2), 0, 100)]);
        t.reduced(0, 100, [(seg(2), 0, 100)]);
        assert!(t.overflowed);
        assert_eq!(t.segment_ids(), vec![seg(1)]);
        let r = t.finish(&HashMap::from([(seg(1), sizes(1, 100, 100))]));
        assert_eq!(r.exports[0].after_dedup, 300);
    }

    #[test]
    fn high_entry_indices_and_shares_of_large_numbers() {
        let mut m = Marks::default();
        assert!(m.mark(65_535, 7));
        assert!(!m.mark(65_535, 7));
        assert_eq!((m.bits.len(), m.bytes), (1024, 7));
        assert_eq!(share(u64::MAX, 1, 2), u64::MAX / 2);
        assert_eq!(share(10, 5, 0), 0);
        // A part larger than the whole (records out of step) is the whole.
        assert_eq!(share(10, 20, 5), 10);
    }
}
