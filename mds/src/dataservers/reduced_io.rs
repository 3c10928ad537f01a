//! I/O of data-reduced files (issue 46; `reduce` makes them) through the MDS: reads of
//! clients without a layout (a reduced file's layout names an assembling data server,
//! `reduced_reads`, where one can serve it; LAYOUTUNAVAILABLE sends a Linux client's I/O here
//! otherwise, as for an evicted file): the MDS fetches the file's segments from the data
//! servers and assembles the range asked for, every chunk checked against its id
//! (`reduce::Plan`, which the data servers' reads share); a write or truncation
//! first copies the file back to mirrors (`unreduce`), as for an encoded file. Memory is
//! bounded: a few assemblies at once, a few segments each, small caches of segments and
//! decoded recipes, one fetch of a segment at a time.
use std::collections::HashMap;
use std::sync::Arc;

use layout::DsId;
use meta::namespace::reduce_index::{self as index, Referrer, SegmentBucket};
use meta::namespace::Namespace;
use reduce::{ChunkId, DedupKey, Params, Plan, Recipe, SegmentId};

use super::placement::FILE_RECORD;
use super::segments::SegmentPlace;
use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// Segments kept for reads of reduced files (as stored, ~2 MiB each).
const READ_CACHE: usize = 16;
/// Reads of reduced files assembled at once, and segments each holds at a time: 4 × 8 × ~2
/// MiB bounds what reads of reduced files hold beyond the caches.
pub(crate) const ASSEMBLIES: usize = 4;
const GROUP_SEGMENTS: usize = 8;
/// Locks that keep two fetches of one segment apart (by the id's first byte).
pub(crate) const FETCH_LOCKS: usize = 16;
/// Decoded recipes (a part's each, at most `MAX_RECIPE_LEN` encoded) kept for reads.
const RECIPE_CACHE: usize = 16;

/// Reduced files' recipes and recently read segments, for reads (bounded).
#[derive(Default)]
pub(crate) struct ReadCache {
    /// By `(ino, epoch, offset of the part)`: a file reduced in parts has a plan per part.
    recipes: Vec<((u64, u64, u64), Arc<Plan>)>,
    /// By segment and the copy's origin: a segment stored again after its first copy died
    /// is another copy, and a reduce checks which one it compared its chunks with.
    segments: Vec<(CopyOf, Arc<Vec<u8>>)>,
}

/// One copy of a segment: its id and the referrer that stored it.
type CopyOf = (SegmentId, Referrer);

/// A file whose bytes are a finished reduce's: its epoch and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReducedFile {
    pub epoch: u64,
    pub len: u64,
}

/// Segments fetched for one read or one span of a reduce, as the pipeline reads them.
#[derive(Default)]
pub(super) struct Fetched(pub(super) HashMap<SegmentId, Arc<Vec<u8>>>);

impl reduce::SegmentSource for Fetched {
    fn segment(&self, id: &SegmentId) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.0
            .get(id)
            .map(|b| std::borrow::Cow::Borrowed(b.as_slice()))
    }
}

pub(super) fn to_index_chunk(c: &ChunkId) -> index::ChunkId {
    index::ChunkId(c.0)
}

pub(super) fn to_index_segment(s: &SegmentId) -> index::SegmentId {
    index::SegmentId(s.0)
}

pub(super) fn from_index_segment(s: &index::SegmentId) -> SegmentId {
    SegmentId(s.0)
}

impl Cluster {
    /// The pipeline's settings: the cluster's dedup key, no encryption (not yet).
    pub(crate) fn reduce_params(&self) -> Params {
        let mut p = Params::new(DedupKey::from_bytes(self.cfg.secret.dedup_key()));
        p.data_key = self.data_key().cloned();
        p
    }

    fn read_cache(&self) -> std::sync::MutexGuard<'_, ReadCache> {
        self.reduced_reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The finished reduce whose recipe `ino`'s bytes are, if they are.
    pub(crate) fn reduced(&self, ns: &Namespace, ino: u64) -> NfsResult<Option<ReducedFile>> {
        Ok(ns
            .reduced_extent(ino)?
            .map(|(epoch, len)| ReducedFile { epoch, len }))
    }

    /// Segment `id`'s stored bytes and the origin of the copy they are, from the read cache
    /// or the data servers (the copy the index names on this node's replica).
    pub(super) async fn segment_bytes(
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
        // Boxed: the S3 client's futures are deep, and inlined into every NFS request's
        // future they took the compiler's layout query past its depth limit.
        let from_bucket =
            || -> std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> {
                Box::pin(async {
                    let b: Vec<u8> = self
                        .get_segment_object(&iid, seg.origin, seg.stored_len)
                        .await?;
                    // Counted with evicted files' reads: bytes this node got from the bucket
                    // to serve reads (a segment as stored, not the file bytes it gives).
                    metrics::tier::BUCKET_READS.inc();
                    metrics::tier::BUCKET_READ_BYTES.add(b.len() as u64);
                    NfsResult::Ok(b)
                })
            };
        let b = if !seg.on_flash() {
            // Its shards left flash (`segment_tier`): the bucket's copy, checked against the id.
            from_bucket().await?
        } else {
            match self.fetch_segment(&at).await {
                Ok(b) => b,
                // No holder that is up would assemble it (a server down that this node has no
                // address for, a holder's placement not yet the record's after a move): the
                // shards one by one, decoded here; then the bucket, if it holds the segment
                // (its shards may also have just been dropped, the record read before that).
                Err(e) => match self.fetch_segment_direct(&at).await {
                    Ok(b) => b,
                    Err(_) if seg.bucket == SegmentBucket::Held => {
                        from_bucket().await.map_err(|_| e)?
                    }
                    Err(_) => return Err(e),
                },
            }
        };
        let b = Arc::new(b);
        let mut c = self.read_cache();
        if c.segments.len() >= READ_CACHE {
            c.segments.remove(0);
        }
        c.segments.push((key, b.clone()));
        Ok((b, seg.origin))
    }

    /// Adds segment `id` to `source` unless it is there; notes the copy's origin in
    /// `verified`, if given.
    pub(super) async fn fetch_into(
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

    /// The decoded recipe of the part of reduce `red` of `ino` holding byte `offset` (the
    /// whole file for a reduce in one recipe), and the part's offset in the file: from the
    /// cache, or the record (only that part's recipe copied out of it).
    pub(crate) fn plan(
        &self,
        ns: &Namespace,
        ino: u64,
        red: ReducedFile,
        offset: u64,
    ) -> NfsResult<(u64, Arc<Plan>)> {
        let epoch = red.epoch;
        if let Some((k, p)) = self.read_cache().recipes.iter().find(|((i, e, at), p)| {
            (*i, *e) == (ino, epoch) && *at <= offset && offset - *at < p.len()
        }) {
            return Ok((k.2, p.clone()));
        }
        // Retired since the caller looked: its I/O answers as for any file changed under it.
        let part = ns
            .reduced_part(ino, epoch, offset)?
            .ok_or(NfsError::Delay)?;
        let recipe = Recipe::decode(&part.recipe).map_err(|e| {
            tracing::error!(
                ino,
                epoch,
                part = part.offset,
                "recipe of a reduced file undecodable: {e}"
            );
            NfsError::Io
        })?;
        let p = Arc::new(Plan::new(recipe));
        if p.len() != part.len || part.offset.saturating_add(part.len) > red.len {
            tracing::error!(
                ino,
                epoch,
                part = part.offset,
                "recipe of a reduced file describes {} bytes, not {}",
                p.len(),
                part.len
            );
            return Err(NfsError::Io);
        }
        let mut c = self.read_cache();
        if c.recipes.len() >= RECIPE_CACHE {
            c.recipes.remove(0);
        }
        c.recipes.push(((ino, epoch, part.offset), p.clone()));
        Ok((part.offset, p))
    }

    /// Bytes `[offset, offset + len)` of reduced file `ino` (within its length), assembled
    /// from its segments, part after part, every chunk checked against its id.
    pub(crate) async fn read_reduced(
        &self,
        ns: &Namespace,
        ino: u64,
        red: ReducedFile,
        offset: u64,
        len: u64,
    ) -> NfsResult<Vec<u8>> {
        let epoch = red.epoch;
        if offset >= red.len || len == 0 {
            return Ok(Vec::new());
        }
        if !self.key_ready() {
            // Just started, the data key not unwrapped yet: seconds, not an error.
            return Err(NfsError::Delay);
        }
        let end = offset.saturating_add(len).min(red.len);
        // Bounded memory: at most `ASSEMBLIES` reads assemble at once, each from at most
        // `GROUP_SEGMENTS` segments at a time.
        let _turn = self
            .reduced_turns
            .acquire()
            .await
            .map_err(|_| NfsError::ServerFault)?;
        let mut out = Vec::new();
        let mut at = offset;
        while at < end {
            let (start, plan) = self.plan(ns, ino, red, at)?;
            // `plan` covers `at`: a span that is empty is a record that lies.
            let span = plan.span(at - start, end - at).ok_or(NfsError::Io)?;
            let mut part = Vec::new();
            for group in plan.groups(&span, GROUP_SEGMENTS) {
                let mut source = Fetched::default();
                for seg in group.segments {
                    // Right after a start the data servers are not all registered again: a
                    // READ waits (DELAY), it never answers LAYOUTUNAVAILABLE.
                    self.fetch_into(ns, &mut source, None, seg)
                        .await
                        .map_err(|e| match e {
                            NfsError::LayoutUnavailable | NfsError::Io => self.unavailable(&[]),
                            e => e,
                        })?;
                }
                let (plan, params) = (plan.clone(), self.reduce_params());
                let bytes = tokio::task::spawn_blocking(move || {
                    plan.assemble(group.chunks, &params, &source)
                })
                .await
                .map_err(|_| NfsError::ServerFault)?
                .map_err(|e| {
                    tracing::error!(ino, epoch, "reduced file unreadable: {e}");
                    NfsError::Io
                })?;
                part.extend_from_slice(&bytes);
            }
            out.extend(Plan::cut(&span, &part).ok_or(NfsError::Io)?);
            at += span.len;
        }
        Ok(out)
    }

    /// Brings reduced file `ino` back to mirrors before it is written or cut: its bytes,
    /// assembled here, are written to two new mirrors, which are recorded (that retires the
    /// reduce: its referrers are dropped by the clean-up pass). Returns the new mirrors.
    pub(crate) async fn unreduce(
        &self,
        ns: &Namespace,
        ino: u64,
        red: ReducedFile,
    ) -> NfsResult<Vec<DsId>> {
        let Some(claim) = self.claim(ns, ino).await else {
            return Err(NfsError::Delay);
        };
        let size = red.len;
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
        // Readers' reduced-read handles (`reduced_reads`) go stale before the write this copy
        // is for can be answered: a data server holding the recipe would serve the old bytes.
        self.fence(ino);
        tokio::time::sleep(self.fence_settle()).await;
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
