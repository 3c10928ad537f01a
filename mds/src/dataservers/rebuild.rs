//! Shard repair (issue 13, docs/EC.md "Repair"): a shard of an encoded file is rebuilt from k
//! others by a data server (the shard program's REPAIR: the bytes go data server to data
//! server, never through the MDS, and the rebuilt shard's blake3 must equal the record's sum
//! before it is sealed).
//!
//! - **Moved**: a shard on a data server that is drained, or declared lost after
//!   `ClusterConfig::lost_after` down (`drain`), is rebuilt on a server the file has no shard
//!   on. Every holder of the new placement must be up: they all learn it (PLACE) before the
//!   record names it (`ShardMoved`), so a crash in between leaves the old record, which still
//!   names the drained server, and the next pass does the move again; the other order could
//!   leave a record that no holder's placement matches, and every read of the file STALE.
//! - **In place**: a shard found bad (a data server's read or scrub hit a block that fails its
//!   sum: `Command::ShardBad`) is rebuilt where it is; its placement does not change.
//!
//! Either way the file is claimed (writes wait, as for any maintenance job), and readers'
//! layouts are recalled after a move: their rebuild and assembled handles name the old
//! placement, which the holders no longer answer for.
use layout::{DsId, FileId};
use proto::shard::{DropArgs, PlaceArgs, RepairArgs, ShardRef, ShardServer};

use super::encode::SPAN;
use super::Cluster;
use crate::error::{NfsError, NfsResult};
use meta::namespace::{Command, FileCode, Namespace};

/// One REPAIR rebuilds a whole group (up to 1 GiB of file bytes, 256 MiB of one shard with
/// 4+2): generous for a data server that rebuilds at ~100 MiB/s with foreground reads beside.
const REPAIR_CALL: std::time::Duration = std::time::Duration::from_secs(300);
const PLACE_CALL: std::time::Duration = std::time::Duration::from_secs(10);

impl Cluster {
    /// Moves every shard of `ino` that sits on a drained (or lost) data server to one the file
    /// has no shard on. `Ok(false)`: not possible now (a holder down, no server to move to,
    /// another job has the file); the drain pass comes back to it.
    pub(crate) async fn move_shards(
        &self,
        ns: &Namespace,
        ino: u64,
        recall: &(dyn Fn(u64) + Send + Sync),
    ) -> NfsResult<bool> {
        let Some(claim) = self.claim(ns, ino).await else {
            return Ok(false);
        };
        // Read under the claim: nothing else changes an encoded file's record meanwhile.
        let Some(code) = ns.stripes(ino)?.filter(|c| c.is_encoded()) else {
            return Ok(true);
        };
        let leaving: Vec<usize> = (0..code.placement.len())
            .filter(|i| self.registry.is_draining(DsId(code.placement[*i])))
            .collect();
        if leaving.is_empty() {
            return Ok(true);
        }
        let map = self.registry.placement_map();
        let mut placement = code.placement.clone();
        let mut candidates = layout::placement::rank(&map, FileId(ino), 1)
            .into_iter()
            .filter(|d| {
                !code.placement.contains(&d.0)
                    && self.registry.is_up(*d)
                    && !self.registry.is_draining(*d)
                    && self.registry.has_room(*d)
            });
        for i in &leaving {
            let Some(to) = candidates.next() else {
                tracing::debug!(ino, "no data server to move a shard to: later");
                return Ok(false);
            };
            placement[*i] = to.0;
        }
        // Rebuilding needs k readable shards, and PLACE must reach every holder.
        if placement.iter().any(|d| !self.registry.is_up(DsId(*d))) {
            tracing::debug!(ino, "a shard holder is down: the shard move waits");
            return Ok(false);
        }
        let servers = self.shard_servers(&placement)?;
        let moved = async {
            for i in &leaving {
                self.rebuild_shard(&code, ino, *i, &servers, None).await?;
            }
            for (i, ds) in placement.iter().enumerate() {
                if !leaving.contains(&i) {
                    self.place(ino, code.epoch, DsId(*ds), &servers).await?;
                }
            }
            Ok::<(), NfsError>(())
        };
        if let Err(e) = moved.await {
            // What was rebuilt is named by no record: dropped, so the next attempt (which may
            // pick other servers) leaves no stray shard behind. The new servers hold no other
            // shard of this file and epoch, so DROP takes only what this attempt wrote.
            for i in &leaving {
                let _ = self.drop_on(ino, code.epoch, DsId(placement[*i])).await;
            }
            return Err(e);
        }
        claim.check()?;
        for i in &leaving {
            ns.execute(Command::ShardMoved {
                ino,
                epoch: code.epoch,
                shard: *i as u8,
                ds: placement[*i],
            })
            .await?;
            tracing::info!(
                ino,
                epoch = code.epoch,
                shard = i,
                from = code.placement[*i],
                to = placement[*i],
                "shard rebuilt on another data server"
            );
        }
        recall(ino);
        let _ = claim.refence().await;
        Ok(true)
    }

    /// Rebuilds in place the shards of `ino` recorded bad (`Command::ShardBad`). `Ok(false)`:
    /// not possible now (a shard's server down, another job has the file).
    pub(crate) async fn repair_bad_shards(&self, ns: &Namespace, ino: u64) -> NfsResult<bool> {
        let Some(_claim) = self.claim(ns, ino).await else {
            return Ok(false);
        };
        let Some(code) = ns.stripes(ino)?.filter(|c| c.is_encoded()) else {
            return Ok(true);
        };
        let bad = code.damaged().fold(0u32, |b, (_, g)| b | g);
        if bad == 0 {
            return Ok(true);
        }
        if code
            .placement
            .iter()
            .any(|d| !self.registry.is_up(DsId(*d)))
        {
            return Ok(false);
        }
        let servers = self.shard_servers(&code.placement)?;
        for i in (0..code.placement.len()).filter(|i| bad & (1 << i) != 0) {
            let groups: Vec<u64> = code
                .groups
                .iter()
                .filter(|(_, g)| g.bad & (1 << i) != 0)
                .map(|(g, _)| *g)
                .collect();
            self.rebuild_shard(&code, ino, i, &servers, Some(&groups))
                .await?;
            ns.execute(Command::ShardMoved {
                ino,
                epoch: code.epoch,
                shard: i as u8,
                ds: code.placement[i],
            })
            .await?;
            tracing::info!(
                ino,
                epoch = code.epoch,
                shard = i,
                ds = code.placement[i],
                "bad shard rebuilt in place"
            );
        }
        Ok(true)
    }

    /// REPAIR of shard `i` on `servers[i]`, group by group in file order (a data server seals
    /// a shard's ranges in order), or only `groups`.
    async fn rebuild_shard(
        &self,
        code: &FileCode,
        ino: u64,
        i: usize,
        servers: &[ShardServer],
        groups: Option<&[u64]>,
    ) -> NfsResult<()> {
        let to = DsId(servers[i].ds_id);
        let c = self.shard_client(to, REPAIR_CALL).await?;
        let file_len = code.file_len();
        let mut result = Ok(());
        for (g, group) in &code.groups {
            if groups.is_some_and(|only| !only.contains(g)) {
                continue;
            }
            let offset = g * SPAN;
            let r = c
                .repair(&self.cfg.secret.sign_shard(RepairArgs {
                    to: to.0,
                    shard: ShardRef {
                        file: ino,
                        epoch: code.epoch,
                        index: i as u32,
                        k: u32::from(code.k),
                        m: u32::from(code.m),
                        unit_shift: u32::from(code.unit_shift),
                    },
                    offset,
                    len: group.len,
                    file_len,
                    expected: group.sums[i],
                    placement: servers.to_vec(),
                    mac: [0; 32],
                }))
                .await;
            if let Err(e) = r {
                tracing::warn!(ino, shard = i, ds = %to, group = g, "shard REPAIR failed: {e}");
                result = Err(NfsError::Io);
                break;
            }
        }
        c.close();
        result
    }

    /// Deletes the shards of (ino, epoch) on `ds`.
    pub(super) async fn drop_on(&self, ino: u64, epoch: u64, ds: DsId) -> NfsResult<()> {
        let c = self.shard_client(ds, PLACE_CALL).await?;
        let r = c
            .drop_shards(&self.cfg.secret.sign_shard(DropArgs {
                to: ds.0,
                file: ino,
                epoch,
                mac: [0; 32],
            }))
            .await;
        c.close();
        r.map_err(|e| {
            tracing::warn!(ino, ds = %ds, "shard DROP failed: {e}");
            NfsError::Io
        })
    }

    /// Tells `ds` the placement of (ino, epoch) is now `servers`.
    pub(super) async fn place(
        &self,
        ino: u64,
        epoch: u64,
        ds: DsId,
        servers: &[ShardServer],
    ) -> NfsResult<()> {
        let c = self.shard_client(ds, PLACE_CALL).await?;
        let r = c
            .place(&self.cfg.secret.sign_shard(PlaceArgs {
                to: ds.0,
                file: ino,
                epoch,
                placement: servers.to_vec(),
                mac: [0; 32],
            }))
            .await;
        c.close();
        r.map_err(|e| {
            tracing::warn!(ino, ds = %ds, "shard PLACE failed: {e}");
            NfsError::Io
        })
    }

    /// Whether a bad shard was reported since the last call.
    pub fn take_shard_reports(&self) -> bool {
        self.shard_reports
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Shards recorded bad, repaired in place: one pass over the records (from the repair
    /// task, on its rescans and whenever a report marked one). A file it could not start on
    /// (another job holds it, a server is down) keeps the report standing, so the next pass
    /// tries again rather than the next rescan: a shard reported while the encoder still held
    /// its file waited a whole rescan period (54 s in a test) before. A repair that failed
    /// waits for the rescan, which spaces out the reads of k shards it costs each time.
    pub async fn bad_shards_pass(&self, ns: &Namespace) {
        let files = match ns.codes_damaged() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot scan encoding records for bad shards: {e:?}");
                return;
            }
        };
        let mut left = false;
        for ino in files.into_iter().filter(|i| ns.leads_file(*i)) {
            match self.repair_bad_shards(ns, ino).await {
                Ok(true) => {}
                Ok(false) => left = true,
                Err(e) => tracing::warn!(ino, "bad shard repair failed, will retry: {e:?}"),
            }
        }
        if left {
            self.shard_reports
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.bad_segment_shards_pass(ns).await;
    }

    /// A data server found shard `index` of (ino, epoch) bad on its disk: recorded for every
    /// group (the report does not say which), so repair rebuilds the whole shard in place.
    /// A report of an encoding that no longer counts is done: its shards are being dropped.
    pub async fn bad_shard(
        &self,
        ns: &Namespace,
        ino: u64,
        epoch: u64,
        index: u8,
        ds: DsId,
    ) -> NfsResult<()> {
        let Some(code) = ns
            .stripes(ino)?
            .filter(|c| c.is_encoded() && c.epoch == epoch)
        else {
            return Ok(());
        };
        if code.placement.get(usize::from(index)) != Some(&ds.0) {
            // Not that server's shard (any more): a report from before a move.
            return Ok(());
        }
        for g in code.groups.keys() {
            ns.execute(Command::ShardBad {
                ino,
                epoch,
                group: *g,
                shard: index,
            })
            .await?;
        }
        self.shard_reports
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(ino, epoch, shard = index, ds = %ds, "shard failed verification on a data server: queued for repair in place");
        Ok(())
    }
}
