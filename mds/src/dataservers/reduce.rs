//! Data reduction at rest (issue 46): the MDS's side. A file the encoder finds due is, with
//! `reduce` on, first cut into content-defined chunks, deduplicated against the replicated
//! index (`meta_core::reduce_index`), compressed and packed into ~2 MiB segments
//! (`reduce::reduce_verified`); new segments are stored erasure-coded on the data servers
//! (`segments`), the file's recipe is recorded (`FinishReduce`) and its mirror copies deleted.
//! Reads of a reduced file come to the MDS (no layout is handed out for it: LAYOUTUNAVAILABLE
//! sends a Linux client's I/O here) and are assembled from its segments, every chunk checked
//! against its id. A write or truncation first brings it back to mirrors (`unreduce`), as for
//! an encoded file.
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
//! 3. `FinishReduce` with the recipe: refused if the file changed since step 1.
//! 4. Layouts recalled, handles fenced, then the mirror copies deleted
//!    (`ReduceCopiesTrimmed`).
//!
//! A reduce given up (an error, a write, `auto` finding it not worth it) drops its record
//! (`AbortReduce`) and the referrers it added; a crash between steps 2 and 3 leaves referrers
//! whose reduce is `Gone`, which the reclaim pass drops. A segment whose last referrer goes
//! is `Dying`: `drop_dying` deletes its shards, then its record.
//!
//! Not yet: encryption of segments (`[encryption] key_file`, the pipeline's `data_key`), a
//! policy per export or directory (the setting is the cluster's), files larger than one
//! recipe holds (`MAX_REDUCED_FILE`), repair and drain of segment shards (a lost data server
//! leaves segments readable through parity, not re-protected), and the S3 tier for segments.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use layout::DsId;
use meta::namespace::reduce_index::{self as index, Referrer, StoredSegment};
use meta::namespace::reducing::{FileReduce, ReduceStatus, Reduced, MAX_RECIPE_LEN};
use meta::namespace::{Command, FsError, Namespace, ShardId, Time};
use reduce::{ChunkId, ChunkLoc, DedupKey, Params, Recipe, SegmentId};

use super::placement::FILE_RECORD;
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
    /// Too large for one recipe, or `auto` found reducing it not worth it: encoded as it is
    /// (or left mirrored, too small for parity to pay).
    Declined,
}

/// The smallest file reduced: below a block, a recipe and a segment cost more than the bytes.
pub const MIN_REDUCED_SIZE: u64 = 4096;

/// `auto` keeps a reduce whose new segments take at most this share of the file's bytes.
const AUTO_KEEP: f64 = 0.9;

/// The largest file reduced: its recipe must fit one log record (`MAX_RECIPE_LEN`, 512 KiB,
/// ~11.9k chunks at 44 bytes each); 320 MiB is ~10k chunks at the 32 KiB average.
pub const MAX_REDUCED_FILE: u64 = 320 << 20;

/// File bytes read, chunked, looked up and reduced at a time: bounds the memory a reduce
/// takes (the span, the segments its hits land in, its new segments).
const SPAN: u64 = 16 << 20;

/// Referrer rows the reclaim pass checks per shard per pass.
const RECLAIM_BATCH: usize = 256;

/// Segments kept for reads of reduced files (as stored, ~2 MiB each).
const READ_CACHE: usize = 16;
/// Reads of reduced files assembled at once, and segments each holds at a time: 4 × 8 × ~2
/// MiB bounds what reads of reduced files hold beyond the caches.
pub(crate) const ASSEMBLIES: usize = 4;
const GROUP_SEGMENTS: usize = 8;
/// Segments a span of a reduce fetches to compare its hits with: a chunk found in a segment
/// past this is stored again instead (a little less dedup, never a wrong byte).
const SPAN_SEGMENTS: usize = 32;
/// Locks that keep two fetches of one segment apart (by the id's first byte).
pub(crate) const FETCH_LOCKS: usize = 16;
/// Decoded recipes kept for reads.
const RECIPE_CACHE: usize = 16;

/// Reduced files' recipes and recently read segments, for reads (bounded).
#[derive(Default)]
pub(crate) struct ReadCache {
    recipes: Vec<((u64, u64), Arc<Plan>)>,
    /// By segment and the copy's origin: a segment stored again after its first copy died
    /// is another copy, and a reduce checks which one it compared its chunks with.
    segments: Vec<(CopyOf, Arc<Vec<u8>>)>,
}

/// One copy of a segment: its id and the referrer that stored it.
type CopyOf = (SegmentId, Referrer);

/// A decoded recipe with each chunk's file offset.
struct Plan {
    recipe: Recipe,
    starts: Vec<u64>,
}

/// Segments fetched for one read or one span of a reduce, as the pipeline reads them.
#[derive(Default)]
struct Fetched(HashMap<SegmentId, Arc<Vec<u8>>>);

impl reduce::SegmentSource for Fetched {
    fn segment(&self, id: &SegmentId) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.0
            .get(id)
            .map(|b| std::borrow::Cow::Borrowed(b.as_slice()))
    }
}

fn to_index_chunk(c: &ChunkId) -> index::ChunkId {
    index::ChunkId(c.0)
}

fn to_index_segment(s: &SegmentId) -> index::SegmentId {
    index::SegmentId(s.0)
}

fn from_index_segment(s: &index::SegmentId) -> SegmentId {
    SegmentId(s.0)
}

/// What one reduce stored and found.
struct Outcome {
    recipe: Recipe,
    stats: reduce::Stats,
    /// Every segment the recipe names, each once (the referrers this reduce added).
    segments: Vec<index::SegmentId>,
}

impl Cluster {
    /// The pipeline's settings: the cluster's dedup key, no encryption (not yet).
    pub(crate) fn reduce_params(&self) -> Params {
        Params::new(DedupKey::from_bytes(self.cfg.secret.dedup_key()))
    }

    fn read_cache(&self) -> std::sync::MutexGuard<'_, ReadCache> {
        self.reduced_reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The finished reduce whose recipe `ino`'s bytes are, if they are.
    pub(crate) fn reduced(&self, ns: &Namespace, ino: u64) -> NfsResult<Option<(u64, Reduced)>> {
        Ok(ns
            .file_reduce(ino)?
            .filter(FileReduce::is_reduced)
            .and_then(|r| r.reduced().cloned().map(|d| (r.epoch, d))))
    }

    /// Segment `id`'s stored bytes and the origin of the copy they are, from the read cache
    /// or the data servers (the copy the index names on this node's replica).
    async fn segment_bytes(
        &self,
        ns: &Namespace,
        id: &SegmentId,
    ) -> NfsResult<(Arc<Vec<u8>>, Referrer)> {
        let iid = to_index_segment(id);
        let seg = ns.segment(&iid)?.ok_or(NfsError::Io)?;
        let key = (*id, seg.origin);
        let cached = || {
            self.read_cache()
                .segments
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, b)| b.clone())
        };
        if let Some(b) = cached() {
            return Ok((b, seg.origin));
        }
        // One fetch of a segment at a time: concurrent READs of a file need the same segment
        // at once (two 1 MiB READs per 2 MiB segment), and would each fetch it (measured:
        // 1.84 bytes fetched per byte read with 4 READs in flight, `conformance reducebench`).
        let stripe = usize::from(id.0[0]) % FETCH_LOCKS;
        let _one = self.segment_fetches[stripe].lock().await;
        if let Some(b) = cached() {
            return Ok((b, seg.origin));
        }
        let at = SegmentPlace::new(&iid, seg.origin, seg.placement.clone(), seg.stored_len);
        let b = Arc::new(self.fetch_segment(&at).await?);
        let mut c = self.read_cache();
        if c.segments.len() >= READ_CACHE {
            c.segments.remove(0);
        }
        c.segments.push((key, b.clone()));
        Ok((b, seg.origin))
    }

    /// Adds segment `id` to `source` unless it is there; notes the copy's origin in
    /// `verified`, if given.
    async fn fetch_into(
        &self,
        ns: &Namespace,
        source: &mut Fetched,
        verified: Option<&mut HashMap<index::SegmentId, Referrer>>,
        id: SegmentId,
    ) -> NfsResult<()> {
        if let std::collections::hash_map::Entry::Vacant(e) = source.0.entry(id) {
            let (b, origin) = self.segment_bytes(ns, &id).await?;
            e.insert(b);
            if let Some(v) = verified {
                v.insert(to_index_segment(&id), origin);
            }
        }
        Ok(())
    }

    fn plan(&self, ino: u64, epoch: u64, red: &Reduced) -> NfsResult<Arc<Plan>> {
        if let Some((_, p)) = self
            .read_cache()
            .recipes
            .iter()
            .find(|(k, _)| *k == (ino, epoch))
        {
            return Ok(p.clone());
        }
        let recipe = Recipe::decode(&red.recipe).map_err(|e| {
            tracing::error!(ino, epoch, "recipe of a reduced file undecodable: {e}");
            NfsError::Io
        })?;
        let mut starts = Vec::with_capacity(recipe.chunks.len());
        let mut at = 0u64;
        for c in &recipe.chunks {
            starts.push(at);
            at += u64::from(c.raw_len);
        }
        if at != red.len {
            tracing::error!(
                ino,
                epoch,
                "recipe of a reduced file describes {at} bytes, not {}",
                red.len
            );
            return Err(NfsError::Io);
        }
        let p = Arc::new(Plan { recipe, starts });
        let mut c = self.read_cache();
        if c.recipes.len() >= RECIPE_CACHE {
            c.recipes.remove(0);
        }
        c.recipes.push(((ino, epoch), p.clone()));
        Ok(p)
    }

    /// Bytes `[offset, offset + len)` of reduced file `ino` (within its length), assembled
    /// from its segments, every chunk checked against its id.
    pub(crate) async fn read_reduced(
        &self,
        ns: &Namespace,
        ino: u64,
        (epoch, red): &(u64, Reduced),
        offset: u64,
        len: u64,
    ) -> NfsResult<Vec<u8>> {
        let end = offset.saturating_add(len).min(red.len);
        if offset >= end {
            return Ok(Vec::new());
        }
        let plan = self.plan(ino, *epoch, red)?;
        let first = plan
            .starts
            .partition_point(|s| *s <= offset)
            .saturating_sub(1);
        let last = plan.starts.partition_point(|s| *s < end);
        // Bounded memory: at most `ASSEMBLIES` reads assemble at once, each from at most
        // `GROUP_SEGMENTS` segments at a time (a file deduplicated against many others may
        // switch segments at every chunk).
        let _turn = self
            .reduced_turns
            .acquire()
            .await
            .map_err(|_| NfsError::ServerFault)?;
        let mut out = Vec::with_capacity((end - plan.starts[first]) as usize);
        let mut at = first;
        while at < last {
            let mut source = Fetched::default();
            let mut to = at;
            while to < last {
                let seg = plan.recipe.chunks[to].segment;
                if !source.0.contains_key(&seg) && source.0.len() >= GROUP_SEGMENTS {
                    break;
                }
                self.fetch_into(ns, &mut source, None, seg).await?;
                to += 1;
            }
            let part = Recipe {
                chunks: plan.recipe.chunks[at..to].to_vec(),
            };
            let params = self.reduce_params();
            let bytes =
                tokio::task::spawn_blocking(move || reduce::assemble(&part, &params, &source))
                    .await
                    .map_err(|_| NfsError::ServerFault)?
                    .map_err(|e| {
                        tracing::error!(ino, epoch, "reduced file unreadable: {e}");
                        NfsError::Io
                    })?;
            out.extend_from_slice(&bytes);
            at = to;
        }
        let from = (offset - plan.starts[first]) as usize;
        let to = from + (end - offset) as usize;
        out.get(from..to).map(<[u8]>::to_vec).ok_or(NfsError::Io)
    }

    /// Reduces `ino` if it is still due.
    pub(crate) async fn reduce_file(
        &self,
        ns: &Namespace,
        ino: u64,
        before: Time,
        in_use: &(dyn Fn(u64) -> bool + Sync),
        recall: &(dyn Fn(u64) + Sync),
    ) -> NfsResult<ReduceOutcome> {
        use ReduceOutcome::{Declined, NotNow, Reduced as Done};
        let policy = self.cfg.reduce;
        let i = ns.getattr(ino)?;
        if i.size > MAX_REDUCED_FILE {
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
        if i.size == 0 || i.size > MAX_REDUCED_FILE {
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
        let out = match self.run_reduce(ns, me, size, &mut added).await {
            Ok(o) => o,
            Err(e) => {
                self.give_up_reduce(ns, me, &added).await;
                return Err(e);
            }
        };
        let st = out.stats;
        let new_bytes = st.stored as f64;
        if policy == ReducePolicy::Auto && new_bytes > AUTO_KEEP * size as f64 {
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
        let finish = match claim.check() {
            Ok(()) => ns
                .execute(Command::FinishReduce {
                    ino,
                    epoch,
                    len: size,
                    recipe,
                    segments: out.segments,
                })
                .await
                .map_err(NfsError::from),
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

    /// Steps 2 of the module comment, span after span. `added`: the segments a referrer
    /// `me` was added to, so far (for the caller to drop if the reduce is given up).
    async fn run_reduce(
        &self,
        ns: &Namespace,
        me: Referrer,
        size: u64,
        added: &mut Vec<index::SegmentId>,
    ) -> NfsResult<Outcome> {
        let params = self.reduce_params();
        // Chunks found in the index or stored by this reduce: where each is.
        let mut known: HashMap<ChunkId, ChunkLoc> = HashMap::new();
        let mut referred: HashSet<index::SegmentId> = HashSet::new();
        // The copy each referred segment's bytes were compared with (or stored as).
        let mut verified: HashMap<index::SegmentId, Referrer> = HashMap::new();
        let mut chunks = Vec::new();
        let mut stats = reduce::Stats::default();
        let mut offset = 0;
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
        }
        self.confirm_copies(ns, &referred, &verified).await?;
        let mut segments: Vec<index::SegmentId> = referred.into_iter().collect();
        segments.sort_unstable();
        Ok(Outcome {
            recipe: Recipe { chunks },
            stats,
            segments,
        })
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

    /// Finishes what the reduce records and the index ask for (a crash, a reduce retired by
    /// a write or a removal), for the files and segments of the shards this node leads.
    pub(crate) async fn clean_reduces(&self, ns: &Namespace) {
        for (ino, r) in ns
            .reduces_to_clean()
            .unwrap_or_default()
            .into_iter()
            .filter(|(i, _)| ns.leads_file(*i))
        {
            let Some(_claim) = self.claim(ns, ino).await else {
                continue;
            };
            if let Err(e) = self.clean_reduce_claimed(ns, ino, &r).await {
                tracing::debug!(ino, "reduce clean-up will be retried: {e:?}");
            }
        }
        self.reclaim_referrers(ns).await;
        self.drop_dying(ns).await;
    }

    /// `clean_reduces` for one file the caller has claimed.
    async fn clean_reduce_claimed(
        &self,
        ns: &Namespace,
        ino: u64,
        r: &FileReduce,
    ) -> NfsResult<()> {
        let epoch = r.epoch;
        if r.reducing_since().is_some() {
            // Passes run one at a time and a claimed file has no other job: one left by a
            // crash. Its referrers are `Gone` now, for the reclaim pass.
            ns.execute(Command::AbortReduce { ino, epoch }).await?;
            tracing::info!(ino, epoch, "reduce left under way by a restart given up");
            return Ok(());
        }
        if !r.stale_copies.is_empty() {
            self.delete_copies(ino, &r.stale_copies).await?;
            ns.execute(Command::ReduceCopiesTrimmed { ino, epoch })
                .await?;
            tracing::info!(ino, copies = ?r.stale_copies, "mirror copies of a reduced file deleted");
        }
        if r.retired {
            let me = Referrer { ino, epoch };
            for id in r.reduced().map(|d| d.segments.as_slice()).unwrap_or(&[]) {
                ns.execute(Command::DropReferrer {
                    shard: ns.segment_shard(id),
                    segment: *id,
                    referrer: me,
                })
                .await?;
            }
            ns.execute(Command::ReferrersDropped { ino, epoch }).await?;
            tracing::info!(ino, epoch, "referrers of a retired reduce dropped");
        }
        Ok(())
    }

    /// Deletes the shards of `Dying` segments (no referrer left), then their records.
    async fn drop_dying(&self, ns: &Namespace) {
        for d in ns.dying_segments().unwrap_or_default() {
            // A data server that is down (and not written off) first comes back: asking it
            // now only fails.
            let waiting = d
                .placement
                .iter()
                .any(|s| !self.registry.is_up(DsId(*s)) && !self.written_off(DsId(*s)));
            if ns.leader_of(d.shard) != Some(ns.node_id()) || waiting {
                continue;
            }
            let at = SegmentPlace::new(&d.id, d.origin, d.placement.clone(), d.stored_len);
            if let Err(e) = self.drop_segment(&at).await {
                tracing::debug!(segment = ?d.id, "segment shards left for the next pass: {e:?}");
                continue;
            }
            match ns
                .execute(Command::ForgetSegment {
                    shard: d.shard,
                    segment: d.id,
                })
                .await
            {
                Ok(_) => tracing::info!(segment = ?d.id, bytes = d.stored_len, "segment freed"),
                Err(e) => tracing::debug!(segment = ?d.id, "segment record left: {e:?}"),
            }
        }
    }

    /// Drops referrers whose reduce is `Gone` (given up by a crash before its finish, or
    /// before its own clean-up ran): the next `RECLAIM_BATCH` rows of each shard this node
    /// leads, from where the last pass stopped, round and round.
    async fn reclaim_referrers(&self, ns: &Namespace) {
        for s in 0..ns.shard_count() {
            let shard = ShardId(s);
            if ns.leader_of(shard) != Some(ns.node_id()) {
                continue;
            }
            let after = self.reclaim_cursor().get(&s).copied();
            let rows = ns
                .referrers_after(shard, after, RECLAIM_BATCH)
                .unwrap_or_default();
            let next = (rows.len() == RECLAIM_BATCH)
                .then(|| rows.last().copied())
                .flatten();
            for (id, r) in rows {
                // The file's shard decides, after its read barrier (`reduce_status`): a
                // referrer is added only once its `BeginReduce` is applied, so `Gone` then is
                // for good.
                match ns.reduce_status(r.ino, r.epoch).await {
                    Ok(ReduceStatus::Gone) => {}
                    Ok(_) => continue,
                    // Not confirmed: this batch is walked again next pass.
                    Err(_) => return,
                }
                match ns
                    .execute(Command::DropReferrer {
                        shard,
                        segment: id,
                        referrer: r,
                    })
                    .await
                {
                    Ok(_) => {
                        tracing::info!(segment = ?id, ino = r.ino, epoch = r.epoch, "leaked referrer dropped")
                    }
                    Err(e) => {
                        tracing::debug!(segment = ?id, "leaked referrer left: {e:?}");
                        return;
                    }
                }
            }
            let mut c = self.reclaim_cursor();
            match next {
                Some(n) => c.insert(s, n),
                None => c.remove(&s),
            };
        }
    }

    fn reclaim_cursor(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u16, (index::SegmentId, Referrer)>> {
        self.reclaim_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings reduced file `ino` back to mirrors before it is written or cut: its bytes,
    /// assembled here, are written to two new mirrors, which are recorded (that retires the
    /// reduce: its referrers are dropped by the clean-up pass). Returns the new mirrors.
    pub(crate) async fn unreduce(
        &self,
        ns: &Namespace,
        ino: u64,
        red: &(u64, Reduced),
    ) -> NfsResult<Vec<DsId>> {
        let Some(claim) = self.claim(ns, ino).await else {
            return Err(NfsError::Delay);
        };
        let size = red.1.len;
        let map = self.registry.placement_map();
        let targets = match layout::place(
            &map,
            layout::FileId(ino),
            FILE_RECORD,
            super::placement::MIRRORS,
        ) {
            Ok(p) if !p.targets.is_empty() => p.targets,
            _ => return Err(NfsError::NoSpc),
        };
        let mut to = Vec::new();
        for t in &targets {
            let c = self.conn(*t).await?;
            let h = self.handle(ino, *t, layout::Rights::ReadWrite);
            c.set_size(&h, 0).await.map_err(|e| remote_io(ino, e))?;
            to.push((c, h));
        }
        let mut off = 0;
        while off < size {
            let n = (size - off).min(u64::from(COPY_IO));
            let d = self.read_reduced(ns, ino, red, off, n).await?;
            if d.len() as u64 != n {
                return Err(NfsError::Io);
            }
            for (c, h) in &to {
                c.write(h, off, &d, proto::nfs3::StableHow::Unstable)
                    .await
                    .map_err(|e| remote_io(ino, e))?;
            }
            off += n;
        }
        for (c, h) in &to {
            c.set_size(h, size).await.map_err(|e| remote_io(ino, e))?;
            c.commit(h, 0, 0).await.map_err(|e| remote_io(ino, e))?;
        }
        let _g = self.placing.lock().await;
        claim.check()?;
        let mirrors = targets.iter().map(|d| d.0).collect();
        // A reduced file has no mirror record (`FinishReduce` removes it).
        self.replace_mirrors(ns, ino, None, mirrors).await?;
        tracing::info!(ino, bytes = size, mirrors = ?targets, "reduced file copied back to mirrors for a write");
        let _ = claim.refence().await;
        Ok(targets)
    }
}

/// Bytes the MDS moves per call when it copies a reduced file back to mirrors.
const COPY_IO: u32 = 1 << 20;

fn remote_io(ino: u64, e: proto::nfs3_client::Nfs3ClientError) -> NfsError {
    tracing::warn!(ino, "copy of a reduced file back to mirrors: {e}");
    NfsError::Io
}

#[cfg(test)]
mod tests {
    use super::*;

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
