//! Data reduction's segments in the object-store tier (issue 46 with issue 45): the bucket
//! holds a reduced file as the segments its recipe names, not as its logical bytes, and a
//! segment's shards leave flash once the bucket holds it and no file on flash refers to it.
//!
//! **The unit is the segment.** Segments are immutable and named by their content, so each is
//! uploaded once, whatever number of files share it, and never rewritten. The object is the
//! segment exactly as the data servers hold it (sealed under the data key when `[encryption]`
//! is on, so the bucket sees only ciphertext), in `tier::object`'s envelope (length and
//! blake3 checked on every GET), keyed by the segment's shard-set name (`segment_file`: a
//! hash of id and origin, top bit set, so never an inode's key) and the origin's epoch: a
//! segment stored again after its first copy died is another object, as it is another shard
//! set, so deleting the dying copy never deletes the new one. Every read from the bucket is
//! checked against the segment's id (`reduce::check_stored`), as repair checks a segment
//! read from its shards.
//!
//! **The record moves first, then the bytes** (`meta_core::reduce_index::SegmentTierStep`):
//! `Sending` before the first PUT (a `Dying` segment's object is deleted from then on, so a
//! crash after a PUT leaks nothing the deleting pass does not find), `Held` once the object
//! was read back and verified, `OffFlash` (a compare-and-set on the placement, refused unless
//! `Held`) before the shards are deleted, `Freed` after. A crash between `OffFlash` and
//! `Freed` leaves shards that `free_dropped` deletes; reads go to the bucket from `OffFlash`.
//!
//! **When a segment leaves flash.** The evictor evicts a reduced file as any other once its
//! copy is current (for a reduced file: every segment `Held`, recorded as a copy of no
//! pieces, `tiering::upload`); then each of its segments whose every referrer is an evicted
//! file (or a reduce that no longer counts) leaves flash. A referrer added later (dedup by a
//! new file) reads the segment from the bucket; nothing is wrong, only slower. Reads of a
//! segment with no shard on flash GET it from the bucket (`segment_bytes`). A read of an
//! evicted reduced file that is not pinned to the bucket asks for it back, as for any evicted
//! file: the restorer writes its segments back to flash (`warm_segments`: `Warming` records
//! the new placement as shards to delete before one is written, `Warmed` adopts them). A drop an error left undone (or a
//! segment whose last referrer on flash went by a delete, not an eviction) is found by a
//! sweep over the segment records, a batch per shard per pass (`sweep_cold_segments`).
use std::collections::HashMap;

use layout::DsId;
use meta::namespace::reduce_index::{
    Referrer, Segment, SegmentBucket, SegmentId, SegmentShards, SegmentTierStep,
};
use meta::namespace::reducing::ReduceStatus;
use meta::namespace::{Command, FsError, Namespace};

use super::reduced_io::from_index_segment;
use super::segments::{segment_file, SegmentPlace};
use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// Referrers of one segment looked at before its flash is dropped; a segment shared by more
/// files stays on flash (it is read by many, and the look is bounded).
const MAX_REFERRERS_LOOKED_AT: usize = 1024;

/// Segment records the sweep for segments to drop from flash reads per shard per pass, and
/// the segments whose referrers it looks at per pass in all.
const COLD_SWEEP_BATCH: usize = 256;
const COLD_SWEEP_CHECKS: usize = 64;

/// The bucket segments go to: the tier's store and key space (`set_segment_bucket`).
pub(crate) struct BucketAccess {
    store: tier::Store,
    keys: tier::KeySpace,
}

/// The object name of segment `id` stored by `origin`.
fn object_id(id: &SegmentId, origin: Referrer) -> tier::ObjectId {
    tier::ObjectId {
        kind: tier::Kind::Data,
        ino: segment_file(id, origin),
        segment: 0,
        generation: origin.epoch,
    }
}

fn store_error(what: &str, id: &SegmentId, e: impl std::fmt::Display) -> NfsError {
    tracing::warn!(segment = ?id, "segment {what} in the object store: {e}");
    NfsError::Io
}

impl Cluster {
    /// Segments go to (and are read from) this bucket: set once, when `[tier]` is configured.
    pub(crate) fn set_segment_bucket(&self, store: tier::Store, keys: tier::KeySpace) {
        let _ = self.segment_bucket.set(BucketAccess { store, keys });
    }

    fn bucket(&self) -> NfsResult<&BucketAccess> {
        self.segment_bucket.get().ok_or(NfsError::Io)
    }

    /// Checks `bytes` against segment `id` (opened with the data key, decoded, hashed).
    async fn check_segment(&self, id: &SegmentId, bytes: std::sync::Arc<Vec<u8>>) -> NfsResult<()> {
        let params = self.reduce_params();
        let rid = from_index_segment(id);
        tokio::task::spawn_blocking(move || ::reduce::check_stored(&rid, &params, &bytes))
            .await
            .map_err(|_| NfsError::ServerFault)?
            .map_err(|e| {
                tracing::error!(segment = ?id, "segment does not check against its id: {e}");
                NfsError::Io
            })
    }

    /// Segment `id` (copy of `origin`) from the bucket, checked against its id.
    pub(super) async fn get_segment_object(
        &self,
        id: &SegmentId,
        origin: Referrer,
        stored_len: u64,
    ) -> NfsResult<Vec<u8>> {
        let b = self.bucket()?;
        let oid = object_id(id, origin);
        let started = std::time::Instant::now();
        let got = b.store.get(&b.keys.key(&oid)).await;
        metrics::tier::GET.observe(started.elapsed());
        let body = got.map_err(|e| store_error("GET", id, e))?;
        metrics::tier::request_ok();
        let obj = tier::object::decode(body, None)
            .and_then(|o| o.verify_id(&oid))
            .map_err(|e| store_error("object", id, e))?;
        if obj.payload.len() as u64 != stored_len {
            return Err(store_error("object", id, "not the recorded length"));
        }
        let bytes = std::sync::Arc::new(obj.payload.to_vec());
        self.check_segment(id, bytes.clone()).await?;
        Ok(std::sync::Arc::try_unwrap(bytes).unwrap_or_else(|b| (*b).clone()))
    }

    /// Uploads segment `id` unless the bucket holds it: `Sending`, its bytes from flash, PUT,
    /// read back and checked, `Held`. Returns whether it is `Held` now (false: the segment
    /// died or went meanwhile).
    pub(crate) async fn tier_segment(&self, ns: &Namespace, id: &SegmentId) -> NfsResult<bool> {
        let Some(seg) = ns.segment(id)?.filter(Segment::is_live) else {
            return Ok(false);
        };
        if seg.bucket == SegmentBucket::Held {
            return Ok(true);
        }
        let shard = ns.segment_shard(id);
        let step = |step| Command::SegmentTier {
            shard,
            segment: *id,
            step,
        };
        match ns.execute(step(SegmentTierStep::Sending)).await {
            Ok(_) => {}
            Err(FsError::Changed) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let (bytes, origin) = self.segment_bytes(ns, &from_index_segment(id)).await?;
        if origin != seg.origin {
            // Stored again under another origin between the two looks: the next pass.
            return Ok(false);
        }
        let b = self.bucket()?;
        let oid = object_id(id, origin);
        let key = b.keys.key(&oid);
        let body = tier::object::encode(&oid, 0, bytes.len() as u64, &bytes, None);
        let started = std::time::Instant::now();
        let put = b.store.put(&key, body).await;
        metrics::tier::PUT.observe(started.elapsed());
        put.map_err(|e| {
            metrics::tier::request_failed();
            store_error("PUT", id, e)
        })?;
        metrics::tier::request_ok();
        metrics::tier::UPLOADED_OBJECTS.inc();
        metrics::tier::UPLOADED_BYTES.add(bytes.len() as u64);
        // Read back: the record says `Held` only of an object this node saw whole and right.
        self.get_segment_object(id, origin, seg.stored_len).await?;
        match ns.execute(step(SegmentTierStep::Held)).await {
            Ok(_) => Ok(true),
            Err(FsError::Changed) => {
                // Died meanwhile: the deleting pass deletes its object, unless it went before
                // this PUT landed; then nothing names it but this node.
                if ns.segment(id)?.is_none() {
                    let _ = b.store.delete(&key).await;
                }
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the bucket object of a `Dying` segment that may have one (the deleting pass,
    /// before it forgets the record).
    pub(super) async fn delete_segment_object(&self, d: &SegmentShards) -> NfsResult<()> {
        if d.bucket == SegmentBucket::No {
            return Ok(());
        }
        let b = self.bucket()?;
        b.store
            .delete(&b.keys.key(&object_id(&d.id, d.origin)))
            .await
            .map_err(|e| store_error("DELETE", &d.id, e))
    }

    /// Drops from flash the segments of evicted reduced file `ino` that no file on flash
    /// refers to (see the module comment); returns the bytes freed per data server. A
    /// segment this leaves on flash by an error is found by the sweep (`sweep_cold_segments`).
    pub(crate) async fn drop_cold_segments(
        &self,
        ns: &Namespace,
        ino: u64,
    ) -> NfsResult<Vec<(u64, u64)>> {
        let Some(r) = ns.file_reduce(ino)?.filter(|r| r.is_reduced()) else {
            return Ok(Vec::new());
        };
        let segments = r.reduced().map(|d| d.segments()).unwrap_or_default();
        let mut freed = Vec::new();
        for id in segments {
            freed.extend(self.drop_if_cold(ns, &id).await?);
        }
        Ok(freed)
    }

    /// Segments of the shards this node leads that could leave flash and have not: an
    /// eviction whose drop failed midway (a data server or the MDS restarting), or a segment
    /// whose last referrer on flash went otherwise. Walks `COLD_SWEEP_BATCH` records per
    /// shard per pass from where the last pass stopped, round and round; run with the
    /// reduce clean-up passes when a bucket is configured.
    pub(super) async fn sweep_cold_segments(&self, ns: &Namespace) {
        if self.segment_bucket.get().is_none() {
            return;
        }
        // Looks at referrers (the costly part) for at most this many segments per pass, over
        // every shard: on a node leading many shards a pass stays short.
        let mut checks = COLD_SWEEP_CHECKS;
        for s in 0..ns.shard_count() {
            let shard = meta::namespace::ShardId(s);
            if ns.leader_of(shard) != Some(ns.node_id()) {
                continue;
            }
            let after = self.cold_cursor().get(&s).copied();
            let rows = ns
                .segments_after(shard, after, COLD_SWEEP_BATCH)
                .unwrap_or_default();
            let mut next = (rows.len() == COLD_SWEEP_BATCH)
                .then(|| rows.last().map(|(id, _)| *id))
                .flatten();
            let mut done = after;
            for (id, droppable) in rows {
                if droppable && checks == 0 {
                    // Out of checks: this shard goes on with this segment next pass.
                    next = done;
                    break;
                }
                done = Some(id);
                if !droppable {
                    continue;
                }
                checks -= 1;
                match self.drop_if_cold(ns, &id).await {
                    Ok(freed) if !freed.is_empty() => {
                        tracing::info!(segment = ?id, "segment of evicted files dropped from flash by the sweep")
                    }
                    Ok(_) => {}
                    // This batch is walked again next pass.
                    Err(e) => {
                        tracing::debug!(segment = ?id, "cold segment left on flash: {e:?}");
                        return;
                    }
                }
            }
            let mut c = self.cold_cursor();
            match next {
                Some(n) => c.insert(s, n),
                None => c.remove(&s),
            };
            if checks == 0 {
                return;
            }
        }
    }

    fn cold_cursor(&self) -> std::sync::MutexGuard<'_, HashMap<u16, SegmentId>> {
        self.cold_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops segment `id` from flash if the bucket holds it and every file that refers to
    /// it is evicted: `OffFlash`, its shards deleted, `Freed`. Returns the bytes freed per
    /// data server (none if it stays).
    async fn drop_if_cold(&self, ns: &Namespace, id: &SegmentId) -> NfsResult<Vec<(u64, u64)>> {
        let Some(seg) = ns.segment(id)? else {
            return Ok(Vec::new());
        };
        if !seg.is_live() || seg.bucket != SegmentBucket::Held || !seg.on_flash() {
            return Ok(Vec::new());
        }
        if !self.only_evicted_refer(ns, id)? {
            return Ok(Vec::new());
        }
        let placement = seg.placement.clone();
        let off = Command::SegmentTier {
            shard: ns.segment_shard(id),
            segment: *id,
            step: SegmentTierStep::OffFlash {
                placement: placement.clone(),
            },
        };
        match ns.execute(off).await {
            Ok(_) => {}
            Err(FsError::Changed) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let d = SegmentShards {
            shard: ns.segment_shard(id),
            id: *id,
            origin: seg.origin,
            placement: Vec::new(),
            stored_len: seg.stored_len,
            bucket: seg.bucket,
            dropping: placement,
        };
        // A failure here leaves the drop recorded and unfinished: `free_dropped` ends it.
        if self.free_dropping(ns, &d).await.is_err() {
            return Ok(Vec::new());
        }
        let per = seg.stored_len.div_ceil(d.dropping.len().max(1) as u64);
        Ok(d.dropping.iter().map(|ds| (*ds, per)).collect())
    }

    /// Brings back to flash the segments of reduced file `ino` that only the bucket holds (a
    /// read of the evicted file asked for it back, `tiering::restore`), each once whatever
    /// number of files share it. Returns the stored bytes brought back, or `None` if a
    /// segment found no room on the data servers (it stays in the bucket; the file is asked
    /// for again, as a file too big for flash is).
    pub(crate) async fn warm_segments(&self, ns: &Namespace, ino: u64) -> NfsResult<Option<u64>> {
        let Some(r) = ns.file_reduce(ino)?.filter(|r| r.is_reduced()) else {
            return Ok(Some(0));
        };
        let segments = r.reduced().map(|d| d.segments()).unwrap_or_default();
        let mut back = 0;
        for id in segments {
            match self.warm_segment(ns, &id).await? {
                Some(b) => back += b,
                None => return Ok(None),
            }
        }
        Ok(Some(back))
    }

    /// One segment back to flash: GET and checked, placed anew, `Warming` (the new shards
    /// are ones to delete until adopted), written and sealed, `Warmed`. `None`: no room.
    async fn warm_segment(&self, ns: &Namespace, id: &SegmentId) -> NfsResult<Option<u64>> {
        let Some(seg) = ns.segment(id)? else {
            return Ok(Some(0));
        };
        let wanted = seg.is_live()
            && seg.bucket == SegmentBucket::Held
            && !seg.on_flash()
            && seg.dropping.is_empty();
        if !wanted {
            return Ok(Some(0));
        }
        let Some(placement) = self.place_segment(segment_file(id, seg.origin), seg.stored_len)
        else {
            return Ok(None);
        };
        let bytes = self
            .get_segment_object(id, seg.origin, seg.stored_len)
            .await?;
        let _mark = Warming::mark(self, *id);
        let shard = ns.segment_shard(id);
        let step = |step| Command::SegmentTier {
            shard,
            segment: *id,
            step,
        };
        let warming = SegmentTierStep::Warming {
            placement: placement.clone(),
        };
        match ns.execute(step(warming)).await {
            Ok(_) => {}
            Err(FsError::Changed) => return Ok(Some(0)),
            Err(e) => return Err(e.into()),
        }
        let at = SegmentPlace::new(id, seg.origin, placement.clone(), seg.stored_len);
        // On an error the record keeps the placement as shards to delete: `free_dropped`
        // deletes what was written, and records them freed.
        self.store_segment(&at, &bytes).await?;
        match ns
            .execute(step(SegmentTierStep::Warmed { placement }))
            .await
        {
            Ok(_) => Ok(Some(seg.stored_len)),
            Err(FsError::Changed) => {
                // A pass took the write for a crash's and freed it (another leader's, while
                // this one wrote), or the segment died: what this wrote is no one's. Unless
                // a newer write back is under way or done there (it writes the same names).
                let now = ns.segment(id)?;
                if now.is_none_or(|g| !g.is_live() || (!g.on_flash() && g.dropping.is_empty())) {
                    let _ = self.drop_segment(&at).await;
                }
                Ok(Some(0))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether this node is writing segment `id` back to flash.
    pub(super) fn is_warming(&self, id: &SegmentId) -> bool {
        self.warming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Whether every referrer of segment `id` is an evicted file's reduce, or one that no
    /// longer counts (this node's replicas: a stale answer only keeps a segment on flash, or
    /// sends a new referrer's reads to the bucket, never loses a byte).
    fn only_evicted_refer(&self, ns: &Namespace, id: &SegmentId) -> NfsResult<bool> {
        let refs = ns.segment_referrers(id, None, MAX_REFERRERS_LOOKED_AT + 1)?;
        if refs.len() > MAX_REFERRERS_LOOKED_AT {
            return Ok(false);
        }
        let snap = ns.snapshot()?;
        for r in refs {
            match snap.reduce_status(r.ino, r.epoch)? {
                ReduceStatus::Gone => continue,
                ReduceStatus::UnderWay => return Ok(false),
                ReduceStatus::Finished => {}
            }
            if !ns.tier(r.ino)?.is_some_and(|t| t.evicted) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes the shards of a segment whose flash was dropped (`dropping`), then records
    /// them freed.
    async fn free_dropping(&self, ns: &Namespace, d: &SegmentShards) -> NfsResult<()> {
        let at = SegmentPlace::new(&d.id, d.origin, d.dropping.clone(), d.stored_len);
        self.drop_segment(&at).await?;
        let freed = Command::SegmentTier {
            shard: d.shard,
            segment: d.id,
            step: SegmentTierStep::Freed {
                placement: d.dropping.clone(),
            },
        };
        match ns.execute(freed).await {
            Ok(_) | Err(FsError::Changed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Finishes the flash drops a crash left between `OffFlash` and `Freed`, for the shards
    /// this node leads (from the reduce clean-up pass).
    pub(super) async fn free_dropped(&self, ns: &Namespace) {
        for d in ns.segments_dropping().unwrap_or_default() {
            let waiting =
                d.dropping.iter().any(|s| !self.registry.is_up(DsId(*s))) || self.is_warming(&d.id);
            if ns.leader_of(d.shard) != Some(ns.node_id()) || waiting {
                continue;
            }
            if let Err(e) = self.free_dropping(ns, &d).await {
                tracing::debug!(segment = ?d.id, "dropped segment shards left: {e:?}");
            }
        }
    }
}

/// Marks a segment as being written back to flash by this node while it lives.
struct Warming<'a> {
    cluster: &'a Cluster,
    id: SegmentId,
}

impl<'a> Warming<'a> {
    fn mark(cluster: &'a Cluster, id: SegmentId) -> Self {
        cluster
            .warming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        Warming { cluster, id }
    }
}

impl Drop for Warming<'_> {
    fn drop(&mut self) {
        self.cluster
            .warming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
