//! Repair of data reduction's segment shards (issue 46). A segment is one Reed-Solomon stripe
//! over k+m data servers (`segments`), recorded in the reduce index on a shard of its own
//! (`meta_core::reduce_index`). It needs what `rebuild` does for an encoded file's shards,
//! keyed by the segment's record instead of a file's:
//!
//! - **Moved** off a drained or lost server (`move_segment`, from the drain pass), by the
//!   leader of the segment's index shard. The shard is rebuilt on a server the segment has
//!   no shard on, every other holder is told the new placement (PLACE), and only then is it
//!   recorded (`Command::SegmentMoved`, a compare-and-set on the one slot). The order is
//!   `rebuild`'s, for its reason: a crash in between leaves the old record, and the next
//!   pass moves the shard again.
//! - **Rebuilt in place** when a data server reports it bad (its scrub, or a read that hit a
//!   bad block): queued by the node that takes the report, and rebuilt by that node's
//!   repair task. The report is answered "later" until then. The data server's REPAIR clears
//!   its own durable mark of the bad block, so its list of bad blocks is the queue: it
//!   survives a restart of either side, and a report taken by a node that then dies is sent
//!   again to another.
//!
//! The record has no sum for a rebuilt shard to match: a segment's id is the hash of its
//! encoding, not of its shards. So repair first reads the segment from k shards
//! (`fetch_segment_direct`) and checks it against its id (`reduce::check_stored`: opened
//! with the data key, decoded, hashed). Then it encodes it again, for the blake3 of every
//! shard. The data servers rebuild the shard themselves, server to server (REPAIR), and seal
//! it only if it hashes to that sum. So a shard is never rebuilt from damaged bytes.
//! A segment is ~2 MiB: the read costs the MDS little, and the same read path
//! is the fallback of reduced-file reads.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use layout::{DsId, FileId};
use meta::namespace::reduce_index::{SegmentId, SegmentShards};
use meta::namespace::{Command, FsError, Namespace};
use proto::shard::{RepairArgs, ShardServer};

use super::reduced_io::from_index_segment;
use super::segments::{segment_file, SegmentPlace};
use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// One REPAIR rebuilds one shard of one segment (a few MiB at most).
const REPAIR_CALL: Duration = Duration::from_secs(60);
/// A rebuild in place that failed (a holder down, a read error) is not tried again for this
/// long, however often the data server reports the shard meanwhile (every 2 s).
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Most bad segment shards queued at once: a data server's own bound on bad blocks
/// (`ds::server::badchunks::MAX_BAD`). More are answered "later" and come back.
const MAX_QUEUED: usize = 4096;

/// Shards reported bad, by their name in the shard program `(file, epoch, index)`.
#[derive(Default)]
pub(crate) struct BadSegmentShards(BTreeMap<(u64, u64, u8), Queued>);

struct Queued {
    segment: SegmentId,
    ds: DsId,
    /// Not before this (after a failed try).
    not_before: Option<Instant>,
}

impl Cluster {
    fn bad_segments(&self) -> std::sync::MutexGuard<'_, BadSegmentShards> {
        self.bad_segments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Data server `ds` reports shard `index` of shard set `(file, epoch)` bad, where `file`
    /// names a segment's shards (`segments::segment_file`, top bit set). `Ok(true)`: nothing
    /// to repair (the segment is gone or dying, or the shard is no longer on `ds`: the mark
    /// may go); `Ok(false)`: queued, or already queued, to be rebuilt in place (report again
    /// later).
    pub(crate) fn bad_segment_shard(
        &self,
        ns: &Namespace,
        file: u64,
        epoch: u64,
        index: u8,
        ds: DsId,
    ) -> NfsResult<bool> {
        if let Some(q) = self.bad_segments().0.get(&(file, epoch, index)) {
            // Reported again (every 2 s): the repair task's next pass looks, unless a failed
            // try is waiting out `RETRY_AFTER` (a pass also scans every encoding record).
            if q.not_before.is_none_or(|t| t <= Instant::now()) {
                self.shard_reports
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Ok(false);
        }
        // Only the MDS can compute the name from id and origin: among the segments stored
        // by reduces of that epoch (of any file), the one it names.
        let found = ns
            .live_segments_of_epoch(epoch)?
            .into_iter()
            .find(|s| segment_file(&s.id, s.origin) == file);
        let Some(seg) = found else {
            return Ok(true);
        };
        if seg.placement.get(usize::from(index)) != Some(&ds.0) {
            return Ok(true);
        }
        let mut q = self.bad_segments();
        if q.0.len() < MAX_QUEUED {
            q.0.insert(
                (file, epoch, index),
                Queued {
                    segment: seg.id,
                    ds,
                    not_before: None,
                },
            );
            tracing::warn!(segment = ?seg.id, shard = index, ds = %ds,
                "segment shard failed verification on a data server: queued for rebuild in place");
        }
        self.shard_reports
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(false)
    }

    /// Rebuilds the queued bad segment shards in place (from the repair task). One that
    /// cannot be rebuilt now waits `RETRY_AFTER`, and keeps the reports coming.
    pub(crate) async fn bad_segment_shards_pass(&self, ns: &Namespace) {
        let now = Instant::now();
        let due: Vec<((u64, u64, u8), SegmentId, DsId)> = self
            .bad_segments()
            .0
            .iter()
            .filter(|(_, q)| q.not_before.is_none_or(|t| t <= now))
            .map(|(k, q)| (*k, q.segment, q.ds))
            .collect();
        for (key, id, ds) in due {
            let (_, _, index) = key;
            let done = match self
                .rebuild_segment_shard_in_place(ns, &id, index, ds)
                .await
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::warn!(segment = ?id, shard = index, ds = %ds,
                        "bad segment shard not rebuilt, will retry: {e:?}");
                    false
                }
            };
            let mut q = self.bad_segments();
            if done {
                q.0.remove(&key);
            } else if let Some(e) = q.0.get_mut(&key) {
                e.not_before = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    /// `Ok(true)`: rebuilt, or nothing to do any more.
    async fn rebuild_segment_shard_in_place(
        &self,
        ns: &Namespace,
        id: &SegmentId,
        index: u8,
        ds: DsId,
    ) -> NfsResult<bool> {
        let Some(seg) = ns.segment(id)?.filter(|s| s.is_live()) else {
            return Ok(true);
        };
        let i = usize::from(index);
        if seg.placement.get(i) != Some(&ds.0) {
            return Ok(true);
        }
        if !self.key_ready() || seg.placement.iter().any(|d| !self.registry.is_up(DsId(*d))) {
            return Ok(false);
        }
        let at = SegmentPlace::new(id, seg.origin, seg.placement.clone(), seg.stored_len);
        let sums = self.segment_sums(&at, id).await?;
        let servers = self.shard_servers(&at.placement)?;
        self.repair_segment_shard(&at, i, &servers, sums[i]).await?;
        // A move recorded meanwhile (the segment's leader draining another holder) told this
        // holder the new placement before the REPAIR sealed the old one over it: tell it again.
        if let Some(now) = ns.segment(id)?.filter(|s| s.placement != at.placement) {
            if now.placement.get(i) == Some(&ds.0) {
                let servers = self.shard_servers(&now.placement)?;
                self.place(at.file, at.epoch, ds, &servers).await?;
            }
        }
        tracing::info!(segment = ?id, shard = index, ds = %ds, "bad segment shard rebuilt in place");
        Ok(true)
    }

    /// Moves the shards of `seg` that sit on drained (or lost) servers to servers it has
    /// none on. `Ok(false)`: not possible now (no server to move to, a holder down, the data
    /// key not known yet); the drain pass comes back to it.
    pub(crate) async fn move_segment(
        &self,
        ns: &Namespace,
        seg: &SegmentShards,
    ) -> NfsResult<bool> {
        let leaving: Vec<usize> = (0..seg.placement.len())
            .filter(|i| self.registry.is_draining(DsId(seg.placement[*i])))
            .collect();
        if leaving.is_empty() {
            return Ok(true);
        }
        if !self.key_ready() {
            return Ok(false);
        }
        let old = SegmentPlace::new(&seg.id, seg.origin, seg.placement.clone(), seg.stored_len);
        let map = self.registry.placement_map();
        let mut placement = seg.placement.clone();
        let mut candidates = layout::placement::rank(&map, FileId(old.file), 1)
            .into_iter()
            .filter(|d| {
                !seg.placement.contains(&d.0)
                    && self.registry.is_up(*d)
                    && !self.registry.is_draining(*d)
                    && self.registry.has_room(*d)
            });
        for i in &leaving {
            let Some(to) = candidates.next() else {
                tracing::debug!(segment = ?seg.id, "no data server to move a segment shard to: later");
                return Ok(false);
            };
            placement[*i] = to.0;
        }
        if placement.iter().any(|d| !self.registry.is_up(DsId(*d))) {
            tracing::debug!(segment = ?seg.id, "a segment shard holder is down: the move waits");
            return Ok(false);
        }
        let sums = self.segment_sums(&old, &seg.id).await?;
        let new = SegmentPlace {
            placement: placement.clone(),
            ..old.clone()
        };
        let servers = self.shard_servers(&placement)?;
        let moved = async {
            for i in &leaving {
                self.repair_segment_shard(&new, *i, &servers, sums[*i])
                    .await?;
            }
            for (i, ds) in placement.iter().enumerate() {
                if !leaving.contains(&i) {
                    self.place(old.file, old.epoch, DsId(*ds), &servers).await?;
                }
            }
            Ok::<(), NfsError>(())
        };
        if let Err(e) = moved.await {
            // Named by no record: dropped, so the next attempt leaves nothing behind. A new
            // server holds no other shard of this segment, so DROP takes only this attempt's.
            for i in &leaving {
                let _ = self.drop_on(old.file, old.epoch, DsId(placement[*i])).await;
            }
            return Err(e);
        }
        for i in &leaving {
            let r = ns
                .execute(Command::SegmentMoved {
                    shard: seg.shard,
                    segment: seg.id,
                    index: *i as u8,
                    from: seg.placement[*i],
                    to: placement[*i],
                })
                .await;
            match r {
                Ok(_) => tracing::info!(
                    segment = ?seg.id,
                    shard = i,
                    from = seg.placement[*i],
                    to = placement[*i],
                    "segment shard rebuilt on another data server"
                ),
                Err(FsError::Changed) => {
                    self.after_lost_move(ns, seg, &old, &placement).await;
                    return Ok(true);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The leaving servers' shards: deleted where they are up (a lost server's go with it).
        for i in &leaving {
            let from = DsId(seg.placement[*i]);
            if self.registry.is_up(from) {
                if let Err(e) = self.drop_on(old.file, old.epoch, from).await {
                    tracing::debug!(segment = ?seg.id, ds = %from, "moved segment shard left behind: {e:?}");
                }
            }
        }
        Ok(true)
    }

    /// A move was refused (`Changed`): the segment went `Dying`, or another node moved the
    /// shard first. What this attempt rebuilt and no record names is dropped, and the holders
    /// are told the recorded placement again (this attempt's PLACE may have come last).
    async fn after_lost_move(
        &self,
        ns: &Namespace,
        seg: &SegmentShards,
        old: &SegmentPlace,
        tried: &[u64],
    ) {
        let now = ns.segment(&seg.id).ok().flatten();
        let named = now
            .as_ref()
            .map(|s| s.placement.clone())
            .unwrap_or_default();
        for d in tried.iter().filter(|d| !seg.placement.contains(d)) {
            if !named.contains(d) {
                let _ = self.drop_on(old.file, old.epoch, DsId(*d)).await;
            }
        }
        if let Some(now) = now.filter(|s| s.is_live()) {
            if let Ok(servers) = self.shard_servers(&now.placement) {
                for d in &now.placement {
                    let _ = self.place(old.file, old.epoch, DsId(*d), &servers).await;
                }
            }
        }
        tracing::info!(segment = ?seg.id, "segment shard move not recorded: the record changed meanwhile");
    }

    /// The blake3 of each shard of the segment at `at`, from its bytes read from k shards
    /// and checked against its id.
    async fn segment_sums(&self, at: &SegmentPlace, id: &SegmentId) -> NfsResult<Vec<[u8; 32]>> {
        let bytes = self.fetch_segment_direct(at).await?;
        ::reduce::check_stored(&from_index_segment(id), &self.reduce_params(), &bytes).map_err(
            |e| {
                tracing::error!(segment = ?id, "segment read from its shards does not check: {e}");
                NfsError::Io
            },
        )?;
        at.shard_sums(&bytes)
    }

    /// REPAIR of shard `i` of the segment at `at` on its server `at.placement[i]`, from the
    /// others of `servers`; sealed there only if it hashes to `expected`.
    async fn repair_segment_shard(
        &self,
        at: &SegmentPlace,
        i: usize,
        servers: &[ShardServer],
        expected: [u8; 32],
    ) -> NfsResult<()> {
        let to = DsId(at.placement[i]);
        let c = self.shard_client(to, REPAIR_CALL).await?;
        let r = c
            .repair(&self.cfg.secret.sign_shard(RepairArgs {
                to: to.0,
                shard: at.shard_ref(i as u32)?,
                offset: 0,
                len: at.stored_len,
                file_len: at.stored_len,
                expected,
                placement: servers.to_vec(),
                mac: [0; 32],
            }))
            .await;
        c.close();
        r.map(|_| ()).map_err(|e| {
            tracing::warn!(file = at.file, shard = i, ds = %to, "segment shard REPAIR failed: {e}");
            NfsError::Io
        })
    }
}
