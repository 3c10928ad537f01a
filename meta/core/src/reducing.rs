//! Data-reduced files (issue 46, step 2 of `notes/reduce-plan.md`): the replicated record that
//! says a file's bytes are a recipe over shared segments of the reduction index
//! (`reduce_index`) instead of its mirrors, and the commands that move a file into that form
//! (`BeginReduce`, `FinishReduce`, `AbortReduce`) and clean up after it (`ReduceCopiesTrimmed`,
//! `ReferrersDropped`). The reduce analogue of `coding`.
//!
//! What it keeps true:
//! - A file is mirrored (its rows of the `chunks` table), encoded (`FileCode`) or reduced (a
//!   finished `FileReduce`), never two of them once a reduce finished: until then the mirrors
//!   stay authoritative. A reduce begins only on a mirrored file with no encoding record and no
//!   reduce record (`BeginEncode` refuses a file with a reduce record that counts, so the two
//!   never read the same mirrors to replace them), and not on an evicted one.
//! - Epochs come from the shard's counter (`meta::NEXT_EPOCH`, shared with encodes and
//!   uploads), so `(ino, epoch)` names one reduce for ever: the index's referrers of a reduce
//!   given up or retired are never mistaken for those of a later reduce of the same file.
//! - A reduce finishes only at the epoch it began, on a file not written since: every
//!   `SetMirrors` (a write placed anew, a repair, a truncation's mirrors) drops a reduce under
//!   way, as `coding::unencode` retires an encode under way, and the length must be the size.
//!   The record also keeps the change attribute seen at `BeginReduce`, so a write recorded
//!   meanwhile onto the same mirrors (a `Write` without any `SetMirrors`) refuses the finish in
//!   the state machine itself, where an encode relies on the MDS's claim on the file alone.
//! - Nothing the reduce made redundant is forgotten before it is deleted: the mirror copies
//!   stay listed (`stale_copies`) until `ReduceCopiesTrimmed`; a finished reduce that no longer
//!   counts (the file written again, or forgotten after its removal) stays as a `retired`
//!   record with its epoch and segments until a pass has dropped each referrer
//!   `(segment, (ino, epoch))` from the index (`ReferrersDropped`). A removed file keeps its
//!   record while it is an orphan (it may still be open and read); `Forget` retires it and the
//!   record outlives the inode, as the tier's does.
//! - A reduce under way names no segments here until a part of it is recorded (they are
//!   known at its finish, or at each `ReducePart`): one given up (`AbortReduce`, a write, the
//!   file forgotten) leaves no record, parts and all, and the referrers it added are leaks the
//!   reclaim pass finds by `MemState::reduce_status` (`Gone`), never misses: a referrer is
//!   added only after `BeginReduce` applied, and an epoch once gone is gone for good.
//! - A file too large for one recipe (`MAX_RECIPE_LEN`, one log record) is reduced in parts
//!   (`ReducePart`): each part is the recipe of a contiguous range of the file, recorded one
//!   log entry at a time, in order from offset 0 with no gap or overlap, the last one
//!   finishing the reduce (`ReduceState::ReducingParts`, then `ReducedParts`). A file reduced
//!   in one recipe keeps the first form (`Reduced`), so records written before parts existed
//!   read as they are; readers see both through `FileReduce::reduced` (`ReducedRef::parts`).
//!   A retired reduce in parts keeps only its segments, in the one-recipe form.
//!
//! The recipe is opaque bytes here (`reduce::recipe`'s format): this crate depends on no
//! workspace crate (see `reduce_index`), and `apply` has nothing to check in it that the
//! reader, which verifies every chunk it assembles, would not check better.

use serde::{Deserialize, Serialize};

/// The extended attribute that sets a file's or directory's reduce policy (`user.cfs.reduce`
/// as `setfattr` names it): `off`, `on` or `auto`, over the cluster's `reduce` setting. New
/// files and directories take their parent's, as the tier pin (`PIN_XATTR`).
pub const REDUCE_XATTR: &[u8] = b"cfs.reduce";

/// Whether `value` is a reduce policy `REDUCE_XATTR` may hold.
pub fn is_reduce_policy(value: &[u8]) -> bool {
    matches!(value, b"off" | b"on" | b"auto")
}

use super::object::Time;
use super::reduce_index::SegmentId;
use super::state::MemState;

/// Most bytes of a recipe. A `FinishReduce` is one Raft log entry, and the log takes records
/// of at most 1 MiB (`meta::storage::wal::MAX_RECORD`): 512 KiB of recipe is ~11.9k chunks at
/// the 44 bytes a chunk `reduce::recipe` takes (plus 32 per segment), ~370 MiB of file at the
/// 32 KiB average chunk. A larger file is to be reduced in ranges, several recipes (what
/// `reduce::recipe::MAX_CHUNKS` foresees), which this record does not hold yet.
pub const MAX_RECIPE_LEN: usize = 512 << 10;

/// Most parts one reduce may have. Every part's recipe is in every MDS node's memory (the
/// shard's state is) and rewritten with the record at each part: 64 parts of at most
/// `MAX_RECIPE_LEN` is at most 32 MiB of recipe, and at the MDS's default part (~320 MiB,
/// `mds` `reduce`) ~20 GiB of file. A larger file stays merely encoded.
pub const MAX_REDUCE_PARTS: usize = 64;

/// Most segments one reduce (or one part of it) may name. Each costs a recipe at least 76 bytes (its id in the
/// table and one chunk's entry), so a recipe within `MAX_RECIPE_LEN` names at most ~6.9k;
/// 8192 ids are 256 KiB, which with the recipe stays within the log's record.
pub const MAX_REDUCE_SEGMENTS: usize = 8192;

/// A file's reduce record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReduce {
    /// Names this reduce in the index's referrers `(ino, epoch)`.
    pub epoch: u64,
    pub state: ReduceState,
    /// Data servers holding a mirror copy the reduce made redundant, to delete.
    pub stale_copies: Vec<u64>,
    /// The reduce no longer counts (the file was written again, or forgotten): the referrers
    /// of its segments are to be dropped, then the record goes. Only a finished reduce is ever
    /// retired (one under way leaves no record when given up).
    pub retired: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceState {
    /// A reduce under way since `since`; the file is still mirrored. `change`: the file's
    /// change attribute at `BeginReduce`, which must be the same at the finish.
    Reducing { since: Time, change: u64 },
    /// The file's bytes are the recipe's.
    Reduced(Reduced),
    /// A reduce in parts under way since `since` (as `Reducing`): the parts recorded so far,
    /// in order, contiguous from offset 0, short of the file's end. The file is still
    /// mirrored.
    ReducingParts {
        since: Time,
        change: u64,
        parts: Vec<RecipePart>,
    },
    /// A reduce in parts finished: the file's `len` bytes are its parts', which are in order,
    /// contiguous from 0 and end at `len`. A retired one keeps its segments as a `Reduced`
    /// with no recipe (`FileReduce::retire`).
    ReducedParts { len: u64, parts: Vec<RecipePart> },
}

/// One part of a reduce in parts: the recipe of the file's bytes `[offset, offset + len)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipePart {
    pub offset: u64,
    pub len: u64,
    /// `reduce::recipe`'s encoding of the range, at most `MAX_RECIPE_LEN` bytes.
    pub recipe: Vec<u8>,
    /// Every segment the part's recipe names, each once, in order (at most
    /// `MAX_REDUCE_SEGMENTS`); a segment may be named by several parts.
    pub segments: Vec<SegmentId>,
}

impl RecipePart {
    /// The offset past the part.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// A finished reduce as readers see it, in either form.
#[derive(Clone, Copy, Debug)]
pub enum ReducedRef<'a> {
    One(&'a Reduced),
    Parts { len: u64, parts: &'a [RecipePart] },
}

/// One part of a finished reduce (the whole file for a reduce in one recipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartRef<'a> {
    pub offset: u64,
    pub len: u64,
    pub recipe: &'a [u8],
    pub segments: &'a [SegmentId],
}

impl<'a> ReducedRef<'a> {
    /// File bytes the reduce describes.
    pub fn len(&self) -> u64 {
        match self {
            ReducedRef::One(r) => r.len,
            ReducedRef::Parts { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its parts, in order of offset: one, covering the whole file, for a one-recipe reduce.
    pub fn parts(&self) -> Vec<PartRef<'a>> {
        match *self {
            ReducedRef::One(r) => vec![PartRef {
                offset: 0,
                len: r.len,
                recipe: &r.recipe,
                segments: &r.segments,
            }],
            ReducedRef::Parts { parts, .. } => parts
                .iter()
                .map(|p| PartRef {
                    offset: p.offset,
                    len: p.len,
                    recipe: &p.recipe,
                    segments: &p.segments,
                })
                .collect(),
        }
    }

    /// How many parts it has.
    pub fn part_count(&self) -> usize {
        match self {
            ReducedRef::One(_) => 1,
            ReducedRef::Parts { parts, .. } => parts.len(),
        }
    }

    /// The part holding byte `offset` of the file, if it is within it.
    pub fn part_at(&self, offset: u64) -> Option<PartRef<'a>> {
        if offset >= self.len() {
            return None;
        }
        match *self {
            ReducedRef::One(_) => self.parts().into_iter().next(),
            ReducedRef::Parts { parts, .. } => {
                let i = parts.partition_point(|p| p.end() <= offset);
                parts.get(i).map(|p| PartRef {
                    offset: p.offset,
                    len: p.len,
                    recipe: &p.recipe,
                    segments: &p.segments,
                })
            }
        }
    }

    /// Whether any part names a segment (a retired reduce's are emptied once dropped).
    pub fn names_segments(&self) -> bool {
        self.parts().iter().any(|p| !p.segments.is_empty())
    }

    /// Every segment of every part, each once, in order: the referrers `(ino, epoch)` the
    /// reduce holds.
    pub fn segments(&self) -> Vec<SegmentId> {
        match self {
            ReducedRef::One(r) => r.segments.clone(),
            ReducedRef::Parts { parts, .. } => {
                let mut all: Vec<SegmentId> = parts
                    .iter()
                    .flat_map(|p| p.segments.iter().copied())
                    .collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        }
    }
}

/// A finished reduce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reduced {
    /// File bytes the recipe describes (the file's size when it finished).
    pub len: u64,
    /// `reduce::recipe`'s encoding, opaque here; emptied once the reduce is retired.
    pub recipe: Vec<u8>,
    /// Every segment the recipe names, each once, in order: the referrers `(ino, epoch)` to
    /// drop from them when the reduce is retired.
    pub segments: Vec<SegmentId>,
}

/// What the reclaim pass learns of a referrer `(ino, epoch)` from the file's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceStatus {
    /// The file's bytes are that reduce's: the referrer is live.
    Finished,
    /// That reduce may still finish: the referrer may become live.
    UnderWay,
    /// That reduce never finished or no longer counts: the referrer is a leak (or is being
    /// dropped by the cleanup pass), and stays one, since no epoch begins twice.
    Gone,
}

impl FileReduce {
    /// Whether reads go to the recipe: a reduce finished and the file was not written since.
    pub fn is_reduced(&self) -> bool {
        !self.retired && self.reduced().is_some()
    }

    /// The finished reduce's record, in either form, retired or not.
    pub fn reduced(&self) -> Option<ReducedRef<'_>> {
        match &self.state {
            ReduceState::Reduced(r) => Some(ReducedRef::One(r)),
            ReduceState::ReducedParts { len, parts } => {
                Some(ReducedRef::Parts { len: *len, parts })
            }
            ReduceState::Reducing { .. } | ReduceState::ReducingParts { .. } => None,
        }
    }

    /// A copy of the record whose parts (of a reduce in parts) have no recipe, only their
    /// ranges and segments; a one-recipe record is copied whole.
    pub fn without_part_recipes(&self) -> FileReduce {
        let strip = |parts: &[RecipePart]| -> Vec<RecipePart> {
            parts
                .iter()
                .map(|p| RecipePart {
                    offset: p.offset,
                    len: p.len,
                    recipe: Vec::new(),
                    segments: p.segments.clone(),
                })
                .collect()
        };
        let state = match &self.state {
            ReduceState::ReducingParts {
                since,
                change,
                parts,
            } => ReduceState::ReducingParts {
                since: *since,
                change: *change,
                parts: strip(parts),
            },
            ReduceState::ReducedParts { len, parts } => ReduceState::ReducedParts {
                len: *len,
                parts: strip(parts),
            },
            other => other.clone(),
        };
        FileReduce {
            epoch: self.epoch,
            state,
            stale_copies: self.stale_copies.clone(),
            retired: self.retired,
        }
    }

    /// Marks a finished reduce as no longer counting: its recipe goes (nothing reads it any
    /// more) and every segment of every part stays, each once, in the one-recipe form, for
    /// the cleanup pass to drop their referrers.
    pub fn retire(&mut self) {
        self.retired = true;
        if let Some(d) = self.reduced() {
            let (len, segments) = (d.len(), d.segments());
            self.state = ReduceState::Reduced(Reduced {
                len,
                recipe: Vec::new(),
                segments,
            });
        }
    }

    /// When the reduce under way began, if one is.
    pub fn reducing_since(&self) -> Option<Time> {
        match self.state {
            ReduceState::Reducing { since, .. } | ReduceState::ReducingParts { since, .. } => {
                Some(since)
            }
            ReduceState::Reduced(_) | ReduceState::ReducedParts { .. } => None,
        }
    }

    /// The parts a reduce in parts under way has recorded (none for any other state).
    pub fn parts_so_far(&self) -> &[RecipePart] {
        match &self.state {
            ReduceState::ReducingParts { parts, .. } => parts,
            _ => &[],
        }
    }

    /// Whether a background pass has work here: a reduce under way (a crash may have left it),
    /// mirror copies to trim, or a retired reduce whose referrers are to be dropped.
    pub fn to_clean(&self) -> bool {
        self.retired || self.reducing_since().is_some() || !self.stale_copies.is_empty()
    }

    /// What the record says of referrer `(ino, epoch)` of its file.
    pub fn status(&self, epoch: u64) -> ReduceStatus {
        match &self.state {
            _ if self.epoch != epoch || self.retired => ReduceStatus::Gone,
            ReduceState::Reducing { .. } | ReduceState::ReducingParts { .. } => {
                ReduceStatus::UnderWay
            }
            ReduceState::Reduced(_) | ReduceState::ReducedParts { .. } => ReduceStatus::Finished,
        }
    }
}

/// The reduce records' reads over one shard's state.
impl MemState {
    /// The reduce record of `ino`, if any.
    pub fn file_reduce(&self, ino: u64) -> Option<&FileReduce> {
        self.reduces.get(&ino)
    }

    /// What this shard says of referrer `(ino, epoch)` (`ino` must be one of its inodes):
    /// the reclaim pass's question, asked after the shard's read barrier.
    pub fn reduce_status(&self, ino: u64, epoch: u64) -> ReduceStatus {
        self.reduces
            .get(&ino)
            .map_or(ReduceStatus::Gone, |r| r.status(epoch))
    }

    /// Reduce records with work for a background pass (`FileReduce::to_clean`), by inode. A
    /// reduce in parts comes without its parts' recipes: the passes read none, and a record
    /// may hold 32 MiB of them (`MAX_REDUCE_PARTS`).
    pub fn reduces_to_clean(&self) -> Vec<(u64, FileReduce)> {
        self.reduces
            .iter()
            .filter(|(_, r)| r.to_clean())
            .map(|(i, r)| (*i, r.without_part_recipes()))
            .collect()
    }
}
