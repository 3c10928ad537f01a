//! Draining a data server (`cfs admin node drain ID`): no new file is placed on it, and every
//! file with a copy on it gets its full mirror count on other DSs, after which the drained DS
//! leaves the file's placement record and its copy there is removed. A DS is "drained" once no
//! placement record names it, nor any live segment of data reduction (whose shards move by
//! `segment_repair`); it can then be stopped without any file losing a mirror.
//!
//! The mark is replicated namespace state (`Command::SetDrain`, kept in the placement table
//! under `DRAIN_INO`), not a file beside the MDS or a flag in the registry: the registry is
//! rebuilt from heartbeats and forgets everything on a restart, and a file next to one MDS would
//! not follow leadership to another MDS of the same shard. What a drain has left to do is not
//! stored at all: it is derived from the placement records (`Namespace::placed_on`), as the
//! repair queue is, so a restart (or a new leader) resumes where the last one stopped.
//!
//! Moving a file follows repair's rules: writes to it wait (DELAY) and its DS handles are fenced
//! and its layouts recalled before its bytes are copied, so no client writes to a copy behind
//! the copy's back; once the new record (without the drained DS) is durable, the file is fenced
//! and recalled again before the drained DS's copy is cut, so a layout granted meanwhile (read
//! layouts do not wait) cannot read the cut copy: its handles are stale, and the client asks
//! for a new layout, which names only the new mirrors.
//!
//! A pass moves up to `PER_PASS` (64) files. A DS down for longer than `[cluster]
//! lost_after_seconds` (default 600) is drained by the MDS itself (`declare_lost`): "lost" is a
//! drain of a server that is not there, its copies and shards rebuilt from the others, and deletes
//! on a drained server that is down count as done (`Cluster::written_off`), so a dead server cannot
//! keep an orphan or a clean-up pending. Test: `cfs/tests/it/drain.rs`.
use layout::{DsId, FileId};

use super::holds::Claim;
use super::placement::{FILE_RECORD, MIRRORS};
use super::Cluster;
use crate::error::NfsError;
use meta::namespace::{Command, FsError, Namespace, DRAIN_INO};

/// Files moved under one fence: they are fenced together and wait out one settle (two
/// heartbeats) instead of one each.
const BATCH: usize = 16;
/// Most files moved per pass of the repair task, which also repairs files short of a mirror:
/// a long drain does not hold those up for more than a few batches.
const PER_PASS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("no data server {0} has registered with this MDS: `cfs admin status` lists them")]
    Unknown(DsId),
    #[error("data server {0} is not being drained: `cfs admin status` lists the drains")]
    NotDraining(DsId),
    #[error("cannot record the drain in the namespace: {0:?}")]
    Namespace(#[from] NfsError),
}

/// One file to move off the drained DS.
struct Move {
    ino: u64,
    /// Its placement record when planned: the move is recorded only if it is still this.
    rec: Vec<u64>,
    /// The mirrors it keeps (up, not the drained DS).
    keep: Vec<DsId>,
    /// Where its copy goes from and to, when `keep` is short of `MIRRORS`.
    copy: Option<(DsId, DsId)>,
}

impl Cluster {
    /// The DSs the namespace says are being drained.
    pub fn drain_marks(&self, ns: &Namespace) -> Result<Vec<DsId>, NfsError> {
        Ok(ns
            .chunks(DRAIN_INO)?
            .into_iter()
            .map(|(ds, _)| DsId(ds))
            .collect())
    }

    /// Brings the registry's cache of drain marks up to date with the namespace (at start, and
    /// every pass: a restart or a change of leader finds the marks there).
    pub fn load_drains(&self, ns: &Namespace) -> Result<Vec<DsId>, NfsError> {
        let marks = self.drain_marks(ns)?;
        self.registry.set_draining(&marks);
        Ok(marks)
    }

    /// Starts draining `ds` (again, harmlessly, if it already is); the files still placed on
    /// it. The repair task moves them.
    pub async fn start_drain(&self, ns: &Namespace, ds: DsId) -> Result<usize, DrainError> {
        if !self.registry.knows(ds) && !self.drain_marks(ns)?.contains(&ds) {
            return Err(DrainError::Unknown(ds));
        }
        let left = self.mark_drained(ns, ds).await?;
        tracing::info!(ds = %ds, files = left, "data server draining: its files move elsewhere");
        Ok(left)
    }

    /// Records the drain mark of `ds` and loads it; the files (and segments) still placed
    /// there.
    async fn mark_drained(&self, ns: &Namespace, ds: DsId) -> Result<usize, NfsError> {
        ns.execute(Command::SetDrain {
            ds: ds.0,
            draining: true,
        })
        .await
        .map_err(NfsError::from)?;
        self.load_drains(ns)?;
        // A placement chosen before the mark may be being recorded: let it finish, so the
        // count below (and every later one) sees it.
        drop(self.placing.lock().await);
        let left = ns.placed_on(ds.0)?.len() + ns.segments_on(ds.0)?.len();
        self.registry.set_files_left(ds, left);
        Ok(left)
    }

    /// Drains the DSs down for longer than `lost_after`: declared lost, their mirror copies and
    /// shards are rebuilt on other DSs by the drain passes. A DS that comes back afterwards
    /// stays drained (new files are not placed on it) until an operator cancels the drain.
    pub async fn declare_lost(&self, ns: &Namespace) {
        let Some(after) = self.cfg.lost_after else {
            return;
        };
        let mut lost = self.registry.down_longer_than(after);
        // Servers the records name that have not heartbeated since this MDS started (they
        // died before it): unknown to the registry, down for at least this MDS's uptime.
        if self.started.elapsed() > after && self.unheard_scan_due() {
            match ns.servers_named() {
                Ok(named) => lost.extend(
                    named
                        .into_iter()
                        .map(DsId)
                        .filter(|d| !self.registry.knows(*d)),
                ),
                Err(e) => tracing::warn!("cannot scan records for data servers: {e:?}"),
            }
        }
        for ds in lost {
            if self.registry.is_draining(ds) {
                continue;
            }
            match self.mark_drained(ns, ds).await {
                Ok(files) => tracing::warn!(
                    ds = %ds,
                    files,
                    down_seconds = after.as_secs(),
                    "data server down too long: declared lost, its copies and shards are rebuilt elsewhere (`cfs admin node drain ID --cancel` puts it back in service)"
                ),
                Err(e) => tracing::warn!(ds = %ds, "cannot declare a data server lost: {e:?}"),
            }
        }
    }

    /// Whether the records are due a scan for servers never heard from: at most once a minute
    /// (the scan walks every placement record).
    fn unheard_scan_due(&self) -> bool {
        let mut last = self.unheard_scan.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    /// Stops draining `ds` (`cfs admin node drain ID --cancel`): new files may be placed on it
    /// again. Files already moved off stay where they are now (each has its full mirror count
    /// elsewhere); a batch the repair task is moving at this moment still completes.
    pub async fn cancel_drain(&self, ns: &Namespace, ds: DsId) -> Result<(), DrainError> {
        if !self.drain_marks(ns)?.contains(&ds) {
            return Err(DrainError::NotDraining(ds));
        }
        ns.execute(Command::SetDrain {
            ds: ds.0,
            draining: false,
        })
        .await
        .map_err(NfsError::from)?;
        self.load_drains(ns)?;
        tracing::info!(ds = %ds, "drain cancelled: new files may be placed on the data server again");
        Ok(())
    }

    /// One pass of draining, from the repair task: counts what each drained DS still holds and
    /// moves up to `PER_PASS` files off. `recall` recalls the layouts of a file.
    pub async fn drain_pass(&self, ns: &Namespace, recall: &(dyn Fn(u64) + Send + Sync)) {
        let marks = match self.load_drains(ns) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot read the drain marks: {e:?}");
                return;
            }
        };
        let mut budget = PER_PASS;
        for ds in marks {
            // Counted whole; each file is moved by its shard's leader, each segment by its
            // index shard's.
            let left = ns
                .placed_on(ds.0)
                .and_then(|f| Ok((f, ns.segments_on(ds.0)?)));
            let (files, segments) = match left {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(ds = %ds, "cannot scan placement records for a drain: {e:?}");
                    continue;
                }
            };
            self.count_left(ds, files.len() + segments.len());
            if (files.is_empty() && segments.is_empty()) || budget == 0 {
                continue;
            }
            let mine: Vec<u64> = files.into_iter().filter(|i| ns.leads_file(*i)).collect();
            let take = mine.len().min(budget);
            budget -= take;
            for batch in mine[..take].chunks(BATCH) {
                self.move_off(ns, ds, batch, recall).await;
            }
            // Segments are read by no client through a layout: nothing to fence or recall.
            let me = Some(ns.node_id());
            for seg in segments.iter().filter(|s| ns.leader_of(s.shard) == me) {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                match self.move_segment(ns, seg).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(segment = ?seg.id, ds = %ds, "segment shard moved later")
                    }
                    Err(e) => {
                        tracing::debug!(segment = ?seg.id, ds = %ds, "segment shard moved later: {e:?}")
                    }
                }
            }
            if let (Ok(f), Ok(s)) = (ns.placed_on(ds.0), ns.segments_on(ds.0)) {
                self.count_left(ds, f.len() + s.len());
            }
        }
    }

    fn count_left(&self, ds: DsId, left: usize) {
        let before = self
            .registry
            .draining()
            .into_iter()
            .find(|(d, _)| *d == ds)
            .and_then(|(_, n)| n);
        self.registry.set_files_left(ds, left);
        if left == 0 && before != Some(0) {
            tracing::info!(ds = %ds, "data server drained: no file is placed on it any more");
        }
    }

    /// Moves `batch` (files placed on `ds`) off `ds`.
    async fn move_off(
        &self,
        ns: &Namespace,
        ds: DsId,
        batch: &[u64],
        recall: &(dyn Fn(u64) + Send + Sync),
    ) {
        let map = self.registry.placement_map();
        let mut plan = Vec::new();
        for &ino in batch {
            if let Ok(Some(code)) = ns.stripes(ino) {
                if code.is_encoded() && code.placement.contains(&ds.0) {
                    // Its shard there is rebuilt on another server from the others.
                    match self.move_shards(ns, ino, recall).await {
                        Ok(true) => {}
                        Ok(false) => tracing::debug!(ino, ds = %ds, "shard moved later"),
                        Err(e) => tracing::debug!(ino, ds = %ds, "shard moved later: {e:?}"),
                    }
                    continue;
                }
            }
            let Ok(Some(rec)) = ns.chunk(ino, FILE_RECORD) else {
                continue;
            };
            if !rec.contains(&ds.0) {
                continue;
            }
            let keep: Vec<DsId> = rec
                .iter()
                .filter(|d| **d != ds.0)
                .map(|d| DsId(*d))
                .filter(|d| self.registry.is_up(*d))
                .collect();
            if keep.len() >= MIRRORS {
                plan.push(Move {
                    ino,
                    rec,
                    keep,
                    copy: None,
                });
                continue;
            }
            // The drained DS's own copy is as good as any, and spares the others the reads.
            let src = if self.registry.is_up(ds) {
                Some(ds)
            } else {
                keep.first().copied()
            };
            let Some(src) = src else {
                tracing::debug!(ino, ds = %ds, "no copy of the file is up: moved later");
                continue;
            };
            let dst = layout::placement::rank(&map, FileId(ino), FILE_RECORD)
                .into_iter()
                .find(|d| {
                    !rec.contains(&d.0) && self.registry.is_up(*d) && !self.registry.is_draining(*d)
                });
            let Some(dst) = dst else {
                tracing::debug!(ino, ds = %ds, "no data server to move the file to: later");
                continue;
            };
            plan.push(Move {
                ino,
                rec,
                keep,
                copy: Some((src, dst)),
            });
        }
        if plan.is_empty() {
            return;
        }
        // Writes wait, every handle out there goes stale and every layout is recalled before
        // a byte is copied (on the other MDS nodes when they take the claim); then the DSs get
        // a heartbeat or two to hear of the fences. A file another job has waits.
        let mut claimed = Vec::new();
        for m in plan {
            let Some(claim) = self.claim(ns, m.ino).await else {
                continue;
            };
            self.fence(m.ino);
            recall(m.ino);
            claimed.push((m, claim));
        }
        if claimed.is_empty() {
            return;
        }
        tokio::time::sleep(self.fence_settle()).await;
        for (m, claim) in &claimed {
            let r = self.move_one(ns, ds, m, claim, recall).await;
            if let Err(e) = r {
                tracing::warn!(ino = m.ino, ds = %ds, "moving a file off a drained data server failed, will retry: {e:?}");
            }
        }
    }

    async fn move_one(
        &self,
        ns: &Namespace,
        ds: DsId,
        m: &Move,
        claim: &Claim<'_>,
        recall: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), NfsError> {
        let mut keep: Vec<u64> = m.keep.iter().map(|d| d.0).collect();
        let mut bytes = 0;
        if let Some((src, dst)) = m.copy {
            bytes = self.copy_file(m.ino, src, dst).await?;
            keep.push(dst.0);
        }
        {
            let _g = self.placing.lock().await;
            claim.check()?;
            match self
                .replace_mirrors(ns, m.ino, Some(&m.rec), keep.clone())
                .await
            {
                Ok(()) => {}
                // Changed meanwhile (a write dropped a mirror, the file went): looked at
                // again on the next pass; what was copied is not recorded, so it goes.
                Err(FsError::Changed | FsError::NotFound | FsError::Stale(_)) => {
                    if let Some((_, dst)) = m.copy {
                        self.discard_copy(ns, m.ino, dst).await;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        if keep.len() < MIRRORS {
            self.mark_degraded(m.ino);
        }
        if let Some(d) = self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&m.ino)
        {
            d.remove(&ds);
        }
        // Layouts granted since the first fence (reads do not wait) still name the drained
        // DS: stale them before its copy is cut. The cut itself carries the new generation, so
        // the DS refuses older handles from then on.
        self.fence(m.ino);
        recall(m.ino);
        if let Err(e) = claim.refence().await {
            // A reader of another node may still read the drained copy: it stays (the DS is
            // leaving anyway).
            tracing::warn!(ino = m.ino, ds = %ds, "copy left on the drained data server: {e:?}");
            return Ok(());
        }
        if self.registry.is_up(ds) {
            if let Err(e) = self.set_size_on(m.ino, ds, 0).await {
                tracing::warn!(ino = m.ino, ds = %ds, "copy left behind on the drained data server: {e:?}");
            }
        }
        tracing::info!(
            ino = m.ino,
            from = %ds,
            to = %m.copy.map(|(_, d)| d.to_string()).unwrap_or_else(|| "-".into()),
            bytes,
            "file moved off a drained data server"
        );
        Ok(())
    }
}
