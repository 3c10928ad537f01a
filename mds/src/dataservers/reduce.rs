//! Data reduction at rest (issue 46): the MDS's side. A file the encoder finds due is, with
//! `reduce` on, first cut into content-defined chunks, deduplicated against the replicated
//! index (`meta_core::reduce_index`), compressed and packed into ~2 MiB segments
//! (`reduce::reduce_verified`); new segments are stored erasure-coded on the data servers
//! (`segments`), the file's recipe is recorded (`FinishReduce`) and its mirror copies deleted.
//! Reads of a reduced file come to the MDS and are assembled from its segments, and a write
//! first brings it back to mirrors (`reduced_io`); the passes that clean up after reduces and
//! free segments are `reduce_clean`.
//!
//! Why on the MDS, where the design had the data servers reduce: the index lives here, and a
//! reduce asks it twice (the file's chunk ids, then referrers for what it found and stored),
//! so on a data server it would be two round trips and a new procedure each way, for a job
//! that runs in the background on files nobody writes. The bytes cross the network once each
//! way (the mirror copy in, the new segments out), as the copy back of `unencode` does. The
//! file's shard leader does it, so the work spreads over the MDS nodes with the namespace.
//!
//! What keeps data safe, step by step (a crash anywhere leaves records the next pass
//! finishes, `clean_reduces`):
//! 1. `BeginReduce` (a new epoch; the mirrors stay authoritative).
//! 2. Per span of the file: the mirror copy is read, its chunk ids looked up, the segments the
//!    hits land in fetched and every hit compared byte for byte (`reduce_verified`), new
//!    segments stored and sealed, and only then a referrer `(ino, epoch)` added to each
//!    segment the span uses (`AddReferrer`; a new segment's record is created by it). A
//!    segment freed meanwhile answers `Changed`, and the reduce is given up for this pass.
//! 3. `FinishReduce` with the recipe: refused if the file changed since step 1. A file whose
//!    recipe would not fit one log record (`MAX_RECIPE_LEN`), or larger than a part
//!    (`ClusterConfig::reduce_part`, 320 MiB by default), is recorded in parts instead: as
//!    spans are done, each part's recipe (a contiguous range of the file) is proposed on its
//!    own (`ReducePart`), the last one finishing the reduce; a change to the file refuses the
//!    next part. At most `MAX_REDUCE_PARTS` parts: a larger file stays merely encoded.
//! 4. Layouts recalled, handles fenced, then the mirror copies deleted
//!    (`ReduceCopiesTrimmed`).
//!
//! A reduce given up (an error, a write, `auto` finding it not worth it) drops its record
//! (`AbortReduce`) and the referrers it added; a crash between steps 2 and 3 leaves referrers
//! whose reduce is `Gone`, which the reclaim pass drops. A segment whose last referrer goes
//! is `Dying`: `drop_dying` deletes its shards, then its record.
//!
//! The policy is the file's `user.cfs.reduce` (taken from its directory when made), else
//! the cluster's `reduce` (`reduce_policy`). With `[encryption]`, segments are sealed under
//! the cluster's data key (`data_key`) and every due file is reduced.
//!
//! Repair and drain of segment shards: `segment_repair`; segments in the S3 tier:
//! `segment_tier`.
use std::collections::{HashMap, HashSet};

use layout::DsId;
use meta::namespace::reduce_index::{self as index, Referrer, StoredSegment};
use meta::namespace::reducing::{
    RecipePart, MAX_RECIPE_LEN, MAX_REDUCE_PARTS, MAX_REDUCE_SEGMENTS,
};
use meta::namespace::{Command, FsError, Namespace, Time};
use reduce::{ChunkId, ChunkLoc, ChunkRef, Recipe};

use super::holds::Claim;
use super::placement::FILE_RECORD;
use super::reduced_io::{from_index_segment, to_index_chunk, to_index_segment, Fetched};
use super::segments::SegmentPlace;
use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// Whether files are reduced before they are encoded (`[mds] reduce`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReducePolicy {
    /// Files are encoded as they are.
    #[default]
    Off,
    /// Every due file is reduced.
    On,
    /// A due file is reduced if that stores it in at most `AUTO_KEEP` of its bytes, else it
    /// is encoded as it is (which stock clients read straight from the stripes).
    Auto,
}

impl std::str::FromStr for ReducePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(ReducePolicy::Off),
            "on" => Ok(ReducePolicy::On),
            "auto" => Ok(ReducePolicy::Auto),
            _ => Err(format!(
                "reduce = {s:?}: expected \"off\", \"on\" or \"auto\""
            )),
        }
    }
}

/// What became of a file the encoder asked to reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReduceOutcome {
    Reduced,
    /// Not due after all (written, opened, claimed, a mirror down): asked again later.
    NotNow,
    /// Too large (more than `MAX_REDUCE_PARTS` parts), or `auto` found reducing it not worth
    /// it: encoded as it is
    /// (or left mirrored, too small for parity to pay).
    Declined,
}

/// The smallest file reduced: below a block, a recipe and a segment cost more than the bytes.
pub const MIN_REDUCED_SIZE: u64 = 4096;

/// `auto` keeps a reduce whose new segments take at most this share of the file's bytes.
const AUTO_KEEP: f64 = 0.9;

/// The most file bytes one part of a reduce covers by default (`ClusterConfig::reduce_part`):
/// a part's recipe must fit one log record (`MAX_RECIPE_LEN`, 512 KiB, ~11.9k chunks at 44
/// bytes each), and 320 MiB is ~10k chunks at the 32 KiB average. A part is cut earlier where
/// its recipe would not fit (`part_cut`). With `MAX_REDUCE_PARTS` this reduces files up to
/// 20 GiB.
pub const DEFAULT_REDUCE_PART: u64 = 320 << 20;

/// Bytes `reduce::recipe` takes beyond its chunks and segments (header and checksum).
const RECIPE_FIXED: usize = 64;
/// Bytes a recipe takes per chunk and per segment of its table.
const RECIPE_CHUNK: usize = 44;
const RECIPE_SEGMENT: usize = 32;

/// How many of `pending` (chunks of the file in order, from the end of the last part) the next
/// part takes, if they do not all fit one: as many as keep the part within `max_bytes` of file,
/// its recipe within `MAX_RECIPE_LEN` and its segments within `MAX_REDUCE_SEGMENTS`. `None`
/// when they all fit (more chunks may still join them). At least one chunk when `Some`.
pub(crate) fn part_cut(pending: &[ChunkRef], max_bytes: u64) -> Option<usize> {
    let mut bytes = 0u64;
    let mut segments: HashSet<reduce::SegmentId> = HashSet::new();
    for (i, c) in pending.iter().enumerate() {
        let new_segment = !segments.contains(&c.segment);
        let segs = segments.len() + usize::from(new_segment);
        let recipe = RECIPE_FIXED + segs * RECIPE_SEGMENT + (i + 1) * RECIPE_CHUNK;
        let len = bytes + u64::from(c.raw_len);
        if i > 0 && (len > max_bytes || recipe > MAX_RECIPE_LEN || segs > MAX_REDUCE_SEGMENTS) {
            return Some(i);
        }
        bytes = len;
        segments.insert(c.segment);
    }
    None
}

/// The segments `chunks` name, each once, in order (a part's `segments`).
fn part_segments(chunks: &[ChunkRef]) -> Vec<index::SegmentId> {
    let mut out: Vec<index::SegmentId> = chunks
        .iter()
        .map(|c| to_index_segment(&c.segment))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// File bytes read, chunked, looked up and reduced at a time: bounds the memory a reduce
/// takes (the span, the segments its hits land in, its new segments).
const SPAN: u64 = 16 << 20;

/// Segments a span of a reduce fetches to compare its hits with: a chunk found in a segment
/// past this is stored again instead (a little less dedup, never a wrong byte).
const SPAN_SEGMENTS: usize = 32;

/// What one reduce stored and found.
struct Outcome {
    /// The whole file's recipe, or (`parts` > 0) its last part's.
    recipe: Recipe,
    stats: reduce::Stats,
    /// Every segment the recipe names, each once (with no parts: the referrers this reduce
    /// added).
    segments: Vec<index::SegmentId>,
    /// Parts recorded before this last one (`ReducePart`); 0: the file is one recipe.
    parts: usize,
}

impl Cluster {
    /// The policy `ino` is reduced by: its own `user.cfs.reduce` (set on it, or taken from its
    /// directory when it was made), else the cluster's `reduce`. Sealing reduces every file:
    /// sealed segments are the only form without plaintext.
    pub(crate) fn reduce_policy(&self, ns: &Namespace, ino: u64) -> ReducePolicy {
        let own = ns
            .xattrs(ino)
            .ok()
            .and_then(|x| x.get(meta_core::REDUCE_XATTR).cloned())
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok());
        match own.unwrap_or(self.cfg.reduce) {
            ReducePolicy::Off if self.sealing() => ReducePolicy::On,
            p => p,
        }
    }

    /// Reduces `ino` if it is still due.
    pub(crate) async fn reduce_file(
        &self,
        ns: &Namespace,
        ino: u64,
        policy: ReducePolicy,
        before: Time,
        in_use: &(dyn Fn(u64) -> bool + Sync),
        recall: &(dyn Fn(u64) + Sync),
    ) -> NfsResult<ReduceOutcome> {
        use ReduceOutcome::{Declined, NotNow, Reduced as Done};
        let largest = self.cfg.reduce_part.saturating_mul(MAX_REDUCE_PARTS as u64);
        let i = ns.getattr(ino)?;
        if i.size > largest {
            return Ok(Declined);
        }
        let Some(claim) = self.claim(ns, ino).await else {
            return Ok(NotNow);
        };
        let Some(rec) = ns.chunk(ino, FILE_RECORD)? else {
            return Ok(NotNow);
        };
        if rec.is_empty() || rec.iter().any(|d| !self.registry.is_up(DsId(*d))) {
            return Ok(NotNow);
        }
        let Some(i) = self
            .fenced_and_quiet(ns, ino, &claim, before, in_use)
            .await?
        else {
            return Ok(NotNow);
        };
        if i.size == 0 || i.size > largest {
            return Ok(NotNow);
        }
        let size = i.size;
        ns.execute(Command::BeginReduce {
            ino,
            time: Time::now(),
        })
        .await?;
        let epoch = ns
            .file_reduce(ino)?
            .filter(|r| r.reducing_since().is_some())
            .map(|r| r.epoch)
            .ok_or(NfsError::ServerFault)?;
        let me = Referrer { ino, epoch };
        tracing::info!(ino, bytes = size, epoch, "reducing file");
        let mut added = Vec::new();
        let out = match self.run_reduce(ns, me, size, &claim, &mut added).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                tracing::info!(
                    ino,
                    bytes = size,
                    "too many recipe parts: the file is encoded as it is"
                );
                self.give_up_reduce(ns, me, &added).await;
                return Ok(Declined);
            }
            Err(e) => {
                self.give_up_reduce(ns, me, &added).await;
                return Err(e);
            }
        };
        let st = out.stats;
        let new_bytes = st.stored as f64;
        // Sealed segments are the only form without plaintext: kept whatever they save.
        if policy == ReducePolicy::Auto && !self.sealing() && new_bytes > AUTO_KEEP * size as f64 {
            tracing::info!(
                ino,
                bytes = size,
                stored = st.stored,
                "reduce not worth it: the file is encoded as it is"
            );
            self.give_up_reduce(ns, me, &added).await;
            return Ok(Declined);
        }
        let recipe = out.recipe.encode().map_err(|_| NfsError::ServerFault)?;
        if recipe.len() > MAX_RECIPE_LEN {
            self.give_up_reduce(ns, me, &added).await;
            return Ok(Declined);
        }
        let finish = if out.parts == 0 {
            Command::FinishReduce {
                ino,
                epoch,
                len: size,
                recipe,
                segments: out.segments,
            }
        } else {
            Command::ReducePart {
                ino,
                epoch,
                part: RecipePart {
                    offset: size - out.recipe.logical_len(),
                    len: out.recipe.logical_len(),
                    recipe,
                    segments: out.segments,
                },
                last: true,
            }
        };
        let finish = match claim.check() {
            Ok(()) => ns.execute(finish).await.map_err(NfsError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = finish {
            // Written meanwhile (the record refuses), or another node's writer: the mirrors
            // stay, and what this reduce referred to is let go.
            self.give_up_reduce(ns, me, &added).await;
            return Err(e);
        }
        tracing::info!(
            ino,
            bytes = size,
            epoch,
            chunks = st.chunks,
            new_chunks = st.new_chunks,
            after_dedup = st.after_dedup,
            after_compression = st.after_compression,
            stored = st.stored,
            segments = st.segments,
            parts = out.parts + 1,
            "file data-reduced"
        );
        if !self.mirrors_retired(ino, &claim, recall).await {
            return Ok(Done);
        }
        if let Some(r) = ns.file_reduce(ino)? {
            if let Err(e) = self.clean_reduce_claimed(ns, ino, &r).await {
                tracing::debug!(ino, "mirror copies left for the next pass: {e:?}");
            }
        }
        Ok(Done)
    }

    /// Steps 2 of the module comment, span after span, recording each part but the last as it
    /// is done (step 3 for a file in parts). `added`: the segments a referrer `me` was added
    /// to, so far (for the caller to drop if the reduce is given up). `None`: the file needs
    /// more than `MAX_REDUCE_PARTS` parts.
    async fn run_reduce(
        &self,
        ns: &Namespace,
        me: Referrer,
        size: u64,
        claim: &Claim<'_>,
        added: &mut Vec<index::SegmentId>,
    ) -> NfsResult<Option<Outcome>> {
        let params = self.reduce_params();
        // Chunks found in the index or stored by this reduce: where each is.
        let mut known: HashMap<ChunkId, ChunkLoc> = HashMap::new();
        let mut referred: HashSet<index::SegmentId> = HashSet::new();
        // The copy each referred segment's bytes were compared with (or stored as).
        let mut verified: HashMap<index::SegmentId, Referrer> = HashMap::new();
        let mut chunks = Vec::new();
        let mut stats = reduce::Stats::default();
        let mut offset = 0;
        // Parts recorded so far, and where the next one begins.
        let (mut parts, mut part_at) = (0usize, 0u64);
        while offset < size {
            let len = (size - offset).min(SPAN);
            let (data, _) = self.read(ns, me.ino, offset, len, size).await?;
            if data.len() as u64 != len {
                return Err(NfsError::Io);
            }
            // The span's chunk ids, to look up what is stored already.
            let (data, ids) = {
                let p = params.clone();
                tokio::task::spawn_blocking(move || {
                    let seed = p.dedup_key.chunker_seed();
                    let ids: Vec<ChunkId> = reduce::chunk::chunks(&data, &p.chunk, seed)
                        .map(|r| p.dedup_key.chunk_id(&data[r]))
                        .collect();
                    (data, ids)
                })
                .await
                .map_err(|_| NfsError::ServerFault)?
            };
            let ask: Vec<index::ChunkId> = ids
                .iter()
                .filter(|c| !known.contains_key(c))
                .map(to_index_chunk)
                .collect();
            for (c, loc) in ns.locate_chunks(&ask)? {
                known.insert(
                    ChunkId(c.0),
                    ChunkLoc {
                        segment: from_index_segment(&loc.segment),
                        index: loc.index,
                        raw_len: loc.raw_len,
                    },
                );
            }
            // Every segment a hit lands in, to compare the hit with (a collision is checked,
            // not assumed away).
            let mut source = Fetched::default();
            let mut index: HashMap<ChunkId, ChunkLoc> = HashMap::new();
            for (c, loc) in ids.iter().filter_map(|c| known.get(c).map(|l| (c, l))) {
                if !source.0.contains_key(&loc.segment) && source.0.len() >= SPAN_SEGMENTS {
                    continue;
                }
                self.fetch_into(ns, &mut source, Some(&mut verified), loc.segment)
                    .await?;
                index.insert(*c, *loc);
            }
            let p = params.clone();
            let red = tokio::task::spawn_blocking(move || {
                reduce::reduce_verified(&data, &p, &index, &source)
            })
            .await
            .map_err(|_| NfsError::ServerFault)?
            .map_err(|e| {
                tracing::warn!(ino = me.ino, "reduce failed, the file stays mirrored: {e}");
                NfsError::Io
            })?;
            // New segments: the record first (so a crash from here on leaves a referrer the
            // reclaim pass drops, and the segment then dies and its shards go), then the
            // shards, stored and sealed before the finish names them.
            for seg in &red.new_segments {
                let id = to_index_segment(&seg.id);
                let len = seg.bytes.len() as u64;
                let file = super::segments::segment_file(&id, me);
                let placement = self.place_segment(file, len).ok_or(NfsError::NoSpc)?;
                let at = SegmentPlace::new(&id, me, placement.clone(), len);
                let stored = StoredSegment {
                    chunks: red
                        .new_chunks
                        .iter()
                        .filter(|(_, l)| l.segment == seg.id)
                        .map(|(c, l)| (to_index_chunk(c), l.raw_len))
                        .collect(),
                    placement,
                    stored_len: len,
                };
                let shard = ns.segment_shard(&id);
                let o = ns
                    .execute(Command::AddReferrer {
                        shard,
                        segment: id,
                        stored: Some(stored),
                        referrer: me,
                    })
                    .await?;
                added.push(id);
                referred.insert(id);
                if o.created {
                    self.store_segment(&at, &seg.bytes).await?;
                    verified.insert(id, me);
                } else {
                    // Another reduce recorded it first, and may still be storing it: relied
                    // on only once its copy reads back as these bytes.
                    ns.barrier(shard).await.map_err(|_| NfsError::Delay)?;
                    let (theirs, origin) = self.segment_bytes(ns, &seg.id).await?;
                    if theirs.as_slice() != seg.bytes.as_slice() {
                        return Err(NfsError::Io);
                    }
                    verified.insert(id, origin);
                }
            }
            for (c, l) in &red.new_chunks {
                known.insert(*c, *l);
            }
            // Then a referrer on every other segment the span uses.
            for c in &red.recipe.chunks {
                let id = to_index_segment(&c.segment);
                if referred.contains(&id) {
                    continue;
                }
                ns.execute(Command::AddReferrer {
                    shard: ns.segment_shard(&id),
                    segment: id,
                    stored: None,
                    referrer: me,
                })
                .await?;
                added.push(id);
                referred.insert(id);
            }
            tracing::info!(
                ino = me.ino,
                offset,
                bytes = len,
                new_segments = red.new_segments.len(),
                "span reduced"
            );
            chunks.extend(red.recipe.chunks);
            stats += red.stats;
            offset += len;
            // Parts that are whole: recorded now, so no recipe past one log record is held.
            while let Some(n) = part_cut(&chunks, self.cfg.reduce_part) {
                if parts + 1 >= MAX_REDUCE_PARTS {
                    return Ok(None);
                }
                let rest = chunks.split_off(n);
                let part = Recipe { chunks };
                chunks = rest;
                let len = part.logical_len();
                let recipe = part.encode().map_err(|_| NfsError::ServerFault)?;
                claim.check()?;
                ns.execute(Command::ReducePart {
                    ino: me.ino,
                    epoch: me.epoch,
                    part: RecipePart {
                        offset: part_at,
                        len,
                        recipe,
                        segments: part_segments(&part.chunks),
                    },
                    last: false,
                })
                .await?;
                tracing::info!(
                    ino = me.ino,
                    offset = part_at,
                    bytes = len,
                    "reduce part recorded"
                );
                part_at += len;
                parts += 1;
            }
        }
        self.confirm_copies(ns, &referred, &verified).await?;
        let segments = if parts == 0 {
            let mut s: Vec<index::SegmentId> = referred.into_iter().collect();
            s.sort_unstable();
            s
        } else {
            part_segments(&chunks)
        };
        Ok(Some(Outcome {
            recipe: Recipe { chunks },
            stats,
            segments,
            parts,
        }))
    }

    /// Checks that every segment a reduce refers to is still the copy it compared its chunks
    /// with (or stored): a segment found in the index may have died, been forgotten and been
    /// stored again by another reduce (still storing it) between the fetch and the referrer.
    /// With this reduce's referrer in its set, a segment stays as it is now.
    async fn confirm_copies(
        &self,
        ns: &Namespace,
        referred: &HashSet<index::SegmentId>,
        verified: &HashMap<index::SegmentId, Referrer>,
    ) -> NfsResult<()> {
        let mut fresh = HashSet::new();
        for id in referred {
            let shard = ns.segment_shard(id);
            if fresh.insert(shard) {
                ns.barrier(shard).await.map_err(|_| NfsError::Delay)?;
            }
            let seg = ns.segment(id)?.ok_or(NfsError::Io)?;
            if !seg.is_live() || verified.get(id) != Some(&seg.origin) {
                tracing::info!(segment = ?id, "a segment changed copies under a reduce");
                return Err(NfsError::Delay);
            }
        }
        Ok(())
    }

    /// Gives up the reduce `me`: its record goes (unless it finished), then the referrers it
    /// added. What fails here is the reclaim pass's.
    async fn give_up_reduce(&self, ns: &Namespace, me: Referrer, added: &[index::SegmentId]) {
        match ns
            .execute(Command::AbortReduce {
                ino: me.ino,
                epoch: me.epoch,
            })
            .await
        {
            Ok(_) => {}
            // It finished after all: its referrers are live.
            Err(FsError::Changed) => return,
            Err(e) => {
                tracing::debug!(ino = me.ino, "reduce left to the clean-up pass: {e:?}");
                return;
            }
        }
        for id in added {
            let _ = ns
                .execute(Command::DropReferrer {
                    shard: ns.segment_shard(id),
                    segment: *id,
                    referrer: me,
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seg: u8, raw_len: u32) -> ChunkRef {
        ChunkRef {
            id: ChunkId([seg; 32]),
            raw_len,
            segment: reduce::SegmentId([seg; 32]),
            index: 0,
        }
    }

    #[test]
    fn a_part_is_cut_at_its_bytes_or_where_its_recipe_would_not_fit_one_record() {
        // By bytes: 3 chunks of 10 fit 30, the 4th does not.
        let c: Vec<ChunkRef> = (0..5).map(|_| chunk(1, 10)).collect();
        assert_eq!(part_cut(&c, 30), Some(3));
        assert_eq!(part_cut(&c, 50), None, "all fit: more may join");
        // One chunk larger than a part is still a part.
        assert_eq!(part_cut(&[chunk(1, 100), chunk(1, 1)], 30), Some(1));
        // By recipe length: one segment, chunks of 1 byte; the cut part encodes within
        // MAX_RECIPE_LEN and one more chunk would not.
        let many: Vec<ChunkRef> = (0..MAX_RECIPE_LEN / RECIPE_CHUNK + 10)
            .map(|_| chunk(2, 1))
            .collect();
        let n = part_cut(&many, u64::MAX).expect("cut by recipe length");
        let enc = |n: usize| {
            Recipe {
                chunks: many[..n].to_vec(),
            }
            .encode()
            .unwrap()
            .len()
        };
        assert!(
            enc(n) <= MAX_RECIPE_LEN && enc(n + 1) > MAX_RECIPE_LEN,
            "{n}"
        );
        // By segments: each chunk in a segment of its own.
        let spread: Vec<ChunkRef> = (0..MAX_REDUCE_SEGMENTS + 5)
            .map(|i| ChunkRef {
                segment: reduce::SegmentId([
                    (i % 251) as u8,
                    (i / 251) as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                ]),
                ..chunk(3, 1)
            })
            .collect();
        let n = part_cut(&spread, u64::MAX).expect("cut by segments");
        assert!(part_segments(&spread[..n]).len() <= MAX_REDUCE_SEGMENTS);
        assert!(enc_len(&spread[..n]) <= MAX_RECIPE_LEN);
    }

    fn enc_len(c: &[ChunkRef]) -> usize {
        Recipe { chunks: c.to_vec() }.encode().unwrap().len()
    }

    #[test]
    fn the_policy_is_one_of_three_words() {
        assert_eq!("off".parse(), Ok(ReducePolicy::Off));
        assert_eq!("on".parse(), Ok(ReducePolicy::On));
        assert_eq!("auto".parse(), Ok(ReducePolicy::Auto));
        let e = "yes".parse::<ReducePolicy>().unwrap_err();
        assert!(e.contains("\"off\", \"on\" or \"auto\""), "{e}");
        assert_eq!(ReducePolicy::default(), ReducePolicy::Off);
    }
}
