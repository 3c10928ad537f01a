//! Reading a range of a reduced file: which chunks of its recipe cover the range, in groups of
//! few segments (so a reader holds a bounded number of segments at once), each group's chunks
//! cut from their segments, decompressed and checked against their ids, and the range cut out
//! of the result. Shared by the two readers of reduced files: the MDS (`reduced_io`, for
//! clients without a layout) and the assembling data server (`ds` `reduced`), so both read a
//! recipe the same way. Pure: the caller fetches the segments a group names.

use std::ops::Range;

use crate::pipeline::{assemble, AssembleError, Params, SegmentSource};
use crate::recipe::Recipe;
use crate::segment::SegmentId;

/// A decoded recipe with each chunk's file offset.
#[derive(Debug)]
pub struct Plan {
    recipe: Recipe,
    starts: Vec<u64>,
    len: u64,
}

/// The chunks `[chunks)` that cover a range, and where the range is in their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub chunks: Range<usize>,
    /// Bytes of the first chunk before the range.
    pub skip: u64,
    /// The range's length, cut at the file's end.
    pub len: u64,
}

/// Consecutive chunks of a span and the distinct segments they are in (at most the group
/// limit): what one step of a read fetches and assembles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub chunks: Range<usize>,
    pub segments: Vec<SegmentId>,
}

impl Plan {
    pub fn new(recipe: Recipe) -> Plan {
        let mut starts = Vec::with_capacity(recipe.chunks.len());
        let mut at = 0u64;
        for c in &recipe.chunks {
            starts.push(at);
            at += u64::from(c.raw_len);
        }
        Plan {
            recipe,
            starts,
            len: at,
        }
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// The distinct segments the recipe names, in order of first use.
    pub fn segments(&self) -> Vec<SegmentId> {
        let mut seen = std::collections::HashSet::new();
        self.recipe
            .chunks
            .iter()
            .map(|c| c.segment)
            .filter(|s| seen.insert(*s))
            .collect()
    }

    /// The chunks covering `[offset, offset + len)`, cut at the file's end; `None` when
    /// nothing of it is in the file.
    pub fn span(&self, offset: u64, len: u64) -> Option<Span> {
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return None;
        }
        let first = self
            .starts
            .partition_point(|s| *s <= offset)
            .saturating_sub(1);
        let last = self.starts.partition_point(|s| *s < end);
        Some(Span {
            chunks: first..last,
            skip: offset - self.starts[first],
            len: end - offset,
        })
    }

    /// `span`'s chunks in groups of at most `max_segments` distinct segments each (a file
    /// deduplicated against many others may switch segments at every chunk).
    pub fn groups(&self, span: &Span, max_segments: usize) -> Vec<Group> {
        let max = max_segments.max(1);
        let mut out = Vec::new();
        let mut at = span.chunks.start;
        while at < span.chunks.end {
            let mut segments: Vec<SegmentId> = Vec::new();
            let mut to = at;
            while to < span.chunks.end {
                let seg = self.recipe.chunks[to].segment;
                if !segments.contains(&seg) {
                    if segments.len() >= max {
                        break;
                    }
                    segments.push(seg);
                }
                to += 1;
            }
            out.push(Group {
                chunks: at..to,
                segments,
            });
            at = to;
        }
        out
    }

    /// The bytes of chunks `chunks`, each checked against its id, from `source` (which holds
    /// at least the segments they name).
    pub fn assemble(
        &self,
        chunks: Range<usize>,
        params: &Params,
        source: &dyn SegmentSource,
    ) -> Result<Vec<u8>, AssembleError> {
        let part = Recipe {
            chunks: self.recipe.chunks.get(chunks).unwrap_or_default().to_vec(),
        };
        assemble(&part, params, source)
    }

    /// The range `span` names out of its chunks' bytes (`assembled`, in order); `None` if they
    /// are too short for it (a recipe that lies about its lengths).
    pub fn cut(span: &Span, assembled: &[u8]) -> Option<Vec<u8>> {
        let from = usize::try_from(span.skip).ok()?;
        let to = from.checked_add(usize::try_from(span.len).ok()?)?;
        assembled.get(from..to).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::DedupKey;
    use crate::pipeline::reduce;
    use std::collections::HashMap;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // half compressible: every other 64 KiB is a repeated pattern
                if (i >> 16) % 2 == 0 {
                    (x >> 24) as u8
                } else {
                    (i % 251) as u8
                }
            })
            .collect()
    }

    fn reduced(bytes: &[u8]) -> (Plan, Params, HashMap<SegmentId, Vec<u8>>) {
        let mut params = Params::new(DedupKey::from_bytes([7; 32]));
        params.segment_target = 256 << 10;
        let idx: HashMap<crate::ChunkId, crate::ChunkLoc> = HashMap::new();
        let r = reduce(bytes, &params, &idx).expect("reduce");
        let segs = r
            .new_segments
            .into_iter()
            .map(|s| (s.id, s.bytes))
            .collect();
        (Plan::new(r.recipe), params, segs)
    }

    fn read(
        plan: &Plan,
        params: &Params,
        segs: &HashMap<SegmentId, Vec<u8>>,
        o: u64,
        n: u64,
    ) -> Vec<u8> {
        let Some(span) = plan.span(o, n) else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for g in plan.groups(&span, 2) {
            assert!(g.segments.len() <= 2);
            let one: HashMap<SegmentId, Vec<u8>> =
                g.segments.iter().map(|s| (*s, segs[s].clone())).collect();
            all.extend(plan.assemble(g.chunks, params, &one).expect("assemble"));
        }
        Plan::cut(&span, &all).expect("cut")
    }

    #[test]
    fn any_range_reads_the_bytes_reduced_in_groups_of_few_segments() {
        let bytes = data(3 << 20, 11);
        let (plan, params, segs) = reduced(&bytes);
        assert!(plan.segments().len() > 4, "the test needs several segments");
        assert_eq!(plan.len(), bytes.len() as u64);
        for (o, n) in [
            (0u64, 1u64),
            (1, 4095),
            (12_345, 1 << 20),
            ((1 << 20) - 7, 777_777),
            (bytes.len() as u64 - 3, 100),
            (0, bytes.len() as u64),
        ] {
            let end = (o + n).min(bytes.len() as u64) as usize;
            assert_eq!(
                read(&plan, &params, &segs, o, n),
                bytes[o as usize..end],
                "{o} {n}"
            );
        }
        assert!(plan.span(bytes.len() as u64, 10).is_none());
    }

    #[test]
    fn a_corrupt_segment_is_an_error_not_bytes() {
        let bytes = data(1 << 20, 5);
        let (plan, params, mut segs) = reduced(&bytes);
        for s in segs.values_mut() {
            let mid = s.len() / 2;
            s[mid] ^= 1;
        }
        let span = plan.span(0, 1 << 20).expect("span");
        let g = &plan.groups(&span, 64)[0];
        assert!(plan.assemble(g.chunks.clone(), &params, &segs).is_err());
    }
}
