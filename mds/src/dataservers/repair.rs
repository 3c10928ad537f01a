//! Repair: a file short of a mirror gets a new one. A file is short when its placement record
//! names fewer than `MIRRORS` DSs: a mirror is dropped from the record (durably) when its DS was
//! down while the file was written, or when that DS reported its copy bad (a checksum failure,
//! `bad_copy`). The queue is derived from those records: `degraded` is a cache of them, filled
//! at start and every `RESCAN_TICKS` passes from the namespace (`Namespace::under_mirrored`)
//! as well as when a record is cut, so a restart of the MDS forgets none.
//!
//! Writes to the file wait (DELAY) while it is copied, and its earlier DS handles are fenced
//! first, so no write can reach the survivor behind the copy's back; then the survivor's bytes
//! are copied to a DS the file is not on (the one whose copy was bad, if it is up: that rewrites
//! the bad copy in place), made durable, and the new mirror recorded.
use std::time::{Duration, Instant};

use layout::{DsId, FileId, Rights};
use proto::nfs3::StableHow;

use super::holds::Claim;
use super::placement::{FILE_RECORD, MIRRORS};
use super::Cluster;
use crate::error::{NfsError, NfsResult};
use meta::namespace::{FsError, Namespace};

const COPY_IO: u32 = 1 << 20;
/// Repair passes between two rescans of the namespace for files short of a mirror (one pass
/// every two heartbeats: a minute with the default 1 s). The scan walks every placement record
/// in memory, so it is not done every pass; changes made by this MDS mark files at once.
pub const RESCAN_TICKS: u64 = 30;
/// After a data server went down, every pass rescans for this long: writers drop the lost
/// mirror from their files' records when they next write them (`placement`).
const RESCAN_AFTER_DOWN: Duration = Duration::from_secs(30);
/// Most bad copies whose DS is remembered as the preferred repair target (past this, repair
/// picks a target by placement rank, which is just as correct).
const MAX_REWRITE_HINTS: usize = 64 * 1024;

impl Cluster {
    /// Files known to have fewer mirrors than they should.
    pub fn degraded(&self) -> Vec<u64> {
        let g = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().copied().collect()
    }

    /// `ino` is whole again, or gone: out of the queue, and its rewrite target forgotten.
    fn clear_degraded(&self, ino: u64) {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
        self.rewrite
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
    }

    /// A data server went down: the next passes rescan the records for a while. A file
    /// written through another MDS node loses its mirror in that node's queue; the leader of
    /// its shard, which repairs it, finds it only in the records.
    pub fn want_rescan(&self) {
        *self.rescan_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + RESCAN_AFTER_DOWN);
    }

    /// Whether a pass now should rescan (`want_rescan`).
    pub fn rescan_soon(&self) -> bool {
        self.rescan_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t)
    }

    /// Adds every file whose placement record is short of a mirror to the repair queue.
    pub fn find_degraded(&self, ns: &Namespace) -> NfsResult<usize> {
        let mut found = ns.under_mirrored(MIRRORS)?;
        // The drain marks live in the placement table too, and are no file.
        found.retain(|ino| *ino != meta::namespace::DRAIN_INO);
        let n = found.len();
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(found);
        Ok(n)
    }

    /// One pass of the repair task: rescans the records when `rescan`, then repairs what it
    /// can, one file at a time.
    pub async fn repair_pass(&self, ns: &Namespace, rescan: bool) {
        if rescan {
            match self.find_degraded(ns) {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "files short of a mirror, queued for repair"),
                Err(e) => tracing::warn!("cannot scan placement records for repair: {e:?}"),
            }
        }
        // With fewer DSs up than mirrors, no file can get its second copy: skip the walk.
        if self.registry.map().up().count() < MIRRORS {
            return;
        }
        for ino in self.degraded() {
            if !ns.leads_file(ino) {
                // The file's shard leader repairs it (it finds the file in its own rescan).
                self.clear_degraded(ino);
                continue;
            }
            match self.repair(ns, ino).await {
                Ok(true) => self.clear_degraded(ino),
                Ok(false) => {}
                Err(e) => tracing::warn!(ino, "repair failed, will retry: {e:?}"),
            }
        }
    }

    /// The copy of `ino` on `ds` failed its checksums there (chunk `chunk` of the DS's store).
    /// Unless it is the only copy, the DS stops being a mirror of the file (durably: the record
    /// is what a restart derives the repair queue from) and repair rewrites its copy from a good
    /// one. `Ok(false)`: nothing can be done yet (no other mirror is up), ask again later.
    pub async fn bad_copy(
        &self,
        ns: &Namespace,
        ino: u64,
        ds: DsId,
        chunk: u64,
    ) -> NfsResult<bool> {
        let _g = self.placing.lock().await;
        let Some(rec) = ns.chunk(ino, FILE_RECORD)? else {
            // The file is gone (or never placed): its data goes with it.
            return Ok(true);
        };
        if !rec.contains(&ds.0) {
            // Already dropped: a repeated report.
            return Ok(true);
        }
        let rest: Vec<u64> = rec.iter().copied().filter(|d| *d != ds.0).collect();
        if rest.is_empty() {
            tracing::error!(
                ino,
                ds = %ds,
                chunk,
                "the only copy of the file failed verification: reads of it fail with EIO"
            );
            return Ok(true);
        }
        if !rest.iter().any(|d| self.registry.is_up(DsId(*d))) {
            // Dropping the bad copy now would leave no readable one.
            return Ok(false);
        }
        match self.replace_mirrors(ns, ino, Some(&rec), rest).await {
            Ok(()) => {}
            // Another node changed the record: look again at the next report.
            Err(FsError::Changed) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        {
            let mut h = self.rewrite.lock().unwrap_or_else(|e| e.into_inner());
            if h.len() < MAX_REWRITE_HINTS {
                h.insert(ino, ds);
            }
        }
        self.mark_degraded(ino);
        tracing::warn!(
            ino,
            ds = %ds,
            chunk,
            "copy failed verification on a data server: no longer a mirror, queued for rewrite"
        );
        Ok(true)
    }

    pub(crate) fn mark_degraded(&self, ino: u64) {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ino);
    }

    /// Gives `ino` back its missing mirror if a DS is available; true when it is whole again
    /// (or gone). Runs one file at a time, from the MDS's health task.
    pub async fn repair(&self, ns: &Namespace, ino: u64) -> NfsResult<bool> {
        let Some(rec) = ns.chunk(ino, FILE_RECORD)? else {
            return Ok(true);
        };
        let live: Vec<DsId> = rec
            .iter()
            .map(|d| DsId(*d))
            .filter(|d| self.registry.is_up(*d))
            .collect();
        if live.len() >= MIRRORS || (live.len() == rec.len() && rec.len() >= MIRRORS) {
            return Ok(true);
        }
        let Some(src) = live.first().copied() else {
            return Ok(false);
        };
        let usable = |d: &DsId| {
            !rec.contains(&d.0) && self.registry.is_up(*d) && !self.registry.is_draining(*d)
        };
        // A copy found bad is rewritten where it is, if its DS is up.
        let hint = self
            .rewrite
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            .copied();
        let map = self.registry.placement_map();
        let Some(dst) = hint.filter(usable).or_else(|| {
            layout::placement::rank(&map, FileId(ino), 0)
                .into_iter()
                .find(usable)
        }) else {
            return Ok(false);
        };
        // One maintenance job per file: an encode or copy-back under way goes first.
        let Some(claim) = self.claim(ns, ino).await else {
            return Ok(false);
        };
        self.copy_to_new_mirror(ns, &claim, src, dst, &rec, &live)
            .await
            .map(|()| true)
    }

    async fn copy_to_new_mirror(
        &self,
        ns: &Namespace,
        claim: &Claim<'_>,
        src: DsId,
        dst: DsId,
        rec: &[u64],
        live: &[DsId],
    ) -> NfsResult<()> {
        let ino = claim.ino();
        // Stale every handle out there (the other nodes fenced theirs when they took the
        // claim), and give the DSs a heartbeat or two to hear of it.
        self.fence(ino);
        tokio::time::sleep(self.fence_settle()).await;
        let size = self.copy_file(ino, src, dst).await?;
        let mut mirrors: Vec<u64> = live.iter().map(|d| d.0).collect();
        mirrors.push(dst.0);
        // A writer of another node could have reached the source behind the copy's back.
        claim.check()?;
        match self.replace_mirrors(ns, ino, Some(rec), mirrors).await {
            Ok(()) => {}
            Err(FsError::Changed) => {
                // Changed behind the claim (it should not be): the copy is not recorded, and
                // the next pass starts from the record as it is now.
                tracing::warn!(ino, "the file's record changed during its repair");
                self.discard_copy(ns, ino, dst).await;
                return Err(NfsError::Delay);
            }
            // Removed meanwhile: its data went from the recorded mirrors, and the copy goes
            // too (as a drain move's does), not left behind on `dst`.
            Err(FsError::NotFound | FsError::Stale(_)) => {
                self.discard_copy(ns, ino, dst).await;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        self.clear_degraded(ino);
        tracing::info!(
            ino,
            from = src.0,
            to = dst.0,
            bytes = size,
            "file re-mirrored"
        );
        Ok(())
    }

    /// How long after a fence every DS has heard of it (a heartbeat or two).
    pub(crate) fn fence_settle(&self) -> Duration {
        self.cfg.heartbeat * 2 + Duration::from_millis(200)
    }

    /// Copies the file's bytes (and size) from its copy on `src` to `dst`, durably; the bytes
    /// copied. The caller fenced the file and keeps writes away meanwhile.
    pub(crate) async fn copy_file(&self, ino: u64, src: DsId, dst: DsId) -> NfsResult<u64> {
        let from = self.conn(src).await?;
        let to = self.conn(dst).await?;
        let src_fh = self.handle(ino, src, Rights::Read);
        let dst_fh = self.handle(ino, dst, Rights::ReadWrite);
        let io = |e: proto::nfs3_client::Nfs3ClientError| {
            tracing::warn!(ino, "repair I/O failed: {e}");
            NfsError::Io
        };
        let size = from.getattr(&src_fh).await.map_err(io)?.size;
        // Whatever the new DS may hold of this file from an earlier life goes first.
        to.set_size(&dst_fh, 0).await.map_err(io)?;
        let mut off = 0u64;
        while off < size {
            let want = (size - off).min(u64::from(COPY_IO)) as u32;
            let r = from.read(&src_fh, off, want).await.map_err(io)?;
            if r.data.is_empty() {
                break;
            }
            to.write(&dst_fh, off, &r.data, StableHow::Unstable)
                .await
                .map_err(io)?;
            off += r.data.len() as u64;
        }
        // The size too: a file ending in a hole must end there on the new mirror as well.
        to.set_size(&dst_fh, size).await.map_err(io)?;
        to.commit(&dst_fh, 0, 0).await.map_err(io)?;
        Ok(size)
    }
}
