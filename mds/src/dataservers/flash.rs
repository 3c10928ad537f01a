//! Data servers' flash as the object-store tier's evictor sees it (issue 45, item 4): how full
//! each data server is, which of them hold a file's bytes, and emptying the copies of a file
//! whose bytes the bucket holds (`mds::tiering::evict`).
//!
//! **Fullness.** Per data server, as its heartbeats report it: with `flash_capacity` set, the
//! bytes of cfs's own store there against it; else its file system's use. A data server
//! measures its store every `USAGE_MAX_AGE` (30 s: a walk), so the bytes this node freed there
//! since the figure it reported are taken off (`Freed`) until a new figure arrives; without
//! that, each pass in between would evict again what the last one freed.
//!
//! **Room.** Each data server admits writes against the capacity the heartbeat replies carry
//! (`flash_limit`; `ds::server::flash`): past it, JUKEBOX while the tier can make room, NOSPC
//! once it cannot (the store failing).
//!
//! **Emptying.** Mirrors are cut to nothing and stay the file's placement: its restore writes
//! them again. An erasure-coded file's encoding is retired first (`SetMirrors` with none, as a
//! write's copy back does), then its shards are dropped, so its restore places fresh mirrors
//! and nothing on a data server is forgotten by the records before it is deleted there (a
//! shard drop that fails is finished by the encoder's pass over retired encodings).
use std::collections::HashMap;

use layout::DsId;
use meta::namespace::{Command, Namespace};

use super::placement::FILE_RECORD;
use super::Cluster;
use crate::error::NfsResult;

/// Bytes this node freed on each data server since the store size it last reported.
#[derive(Default)]
pub(crate) struct Freed(HashMap<DsId, (u64, u64)>);

impl Freed {
    /// `reported`, less what was freed since it was measured.
    fn apply(&mut self, ds: DsId, reported: u64) -> u64 {
        let e = self.0.entry(ds).or_insert((reported, 0));
        if e.0 != reported {
            *e = (reported, 0);
        }
        reported.saturating_sub(e.1)
    }

    fn note(&mut self, ds: DsId, bytes: u64) {
        if let Some(e) = self.0.get_mut(&ds) {
            e.1 = e.1.saturating_add(bytes);
        }
    }
}

impl Cluster {
    /// The object-store tier manages the data servers' flash: `capacity` bytes on each (`None`:
    /// its file system), uploads taking `longest_put` at most.
    pub(crate) fn set_tier_flash(&self, capacity: Option<u64>, longest_put: std::time::Duration) {
        let _ = self.tier_flash.set((capacity.unwrap_or(0), longest_put));
    }

    /// What a heartbeat reply tells a data server of its flash (`proto::cluster::FlashLimit`):
    /// a write that does not fit waits while uploads and eviction can make room, and is
    /// refused at once while the store is failing.
    ///
    /// The store's return lifts the NOSPC marks data servers earned while it was down
    /// (`Registry::lift_nospc`): room is coming there, and new files may go there again.
    pub(crate) fn flash_limit(&self) -> Option<proto::cluster::FlashLimit> {
        use std::sync::atomic::Ordering;
        let &(capacity, longest_put) = self.tier_flash.get()?;
        let failing = metrics::tier::failing_for().is_some();
        if self.store_failed.swap(failing, Ordering::Relaxed) && !failing {
            self.registry.lift_nospc();
        }
        let nospc_after_seconds = match failing {
            true => 0,
            false => u32::try_from(longest_put.as_secs().max(1)).unwrap_or(u32::MAX),
        };
        Some(proto::cluster::FlashLimit {
            capacity,
            nospc_after_seconds,
        })
    }

    /// Whether `per_server` more bytes fit on each of `servers` under the tier's flash
    /// capacity, by their last measures (always without a capacity). The encoder asks first
    /// rather than have its shards refused (`ds::server::flash`) and its work thrown away.
    pub(crate) fn flash_fits(&self, servers: &[u64], per_server: u64) -> bool {
        let Some(&(cap, _)) = self.tier_flash.get().filter(|(cap, _)| *cap > 0) else {
            return true;
        };
        self.flash_usage(Some(cap))
            .iter()
            .filter(|(at, _, _)| servers.contains(at))
            .all(|(_, used, cap)| used.saturating_add(per_server) <= *cap)
    }

    fn freed(&self) -> std::sync::MutexGuard<'_, Freed> {
        self.freed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (data server, bytes used, bytes it may use) of every data server that is up and not
    /// being drained (a drained one empties anyway).
    pub(crate) fn flash_usage(&self, capacity: Option<u64>) -> Vec<(u64, u64, u64)> {
        let mut freed = self.freed();
        self.registry
            .status()
            .into_iter()
            .filter(|d| d.state == proto::cluster::DS_STATE_UP)
            .filter_map(|d| {
                let ds = DsId(d.ds_id);
                match capacity {
                    Some(cap) => Some((d.ds_id, freed.apply(ds, d.used_bytes), cap)),
                    None if d.capacity_bytes > 0 => Some((
                        d.ds_id,
                        d.capacity_bytes.saturating_sub(d.avail_bytes),
                        d.capacity_bytes,
                    )),
                    None => None,
                }
            })
            .collect()
    }

    /// The data servers holding `ino`'s bytes, with how many each holds: every mirror the
    /// whole file, every shard of an encoding its part.
    pub(crate) fn holders_of(
        &self,
        ns: &Namespace,
        ino: u64,
        size: u64,
    ) -> NfsResult<Vec<(u64, u64)>> {
        if self.reduced(ns, ino)?.is_some() {
            // Its bytes are in segments other files may share: no copy is its own, but its
            // eviction frees the shards of those only evicted files refer to
            // (`segment_tier`), each server its share of each segment still on flash.
            let mut out = Vec::new();
            let segments = ns
                .file_reduce(ino)?
                .and_then(|r| r.reduced().map(|d| d.segments()))
                .unwrap_or_default();
            for id in segments {
                if let Some(seg) = ns.segment(&id)?.filter(|s| s.on_flash()) {
                    let per = seg.stored_len.div_ceil(seg.placement.len() as u64);
                    out.extend(seg.placement.iter().map(|d| (*d, per)));
                }
            }
            return Ok(out);
        }
        if let Some(code) = ns.stripes(ino)?.filter(|c| c.is_encoded()) {
            let part = size.div_ceil(u64::from(code.k.max(1)));
            return Ok(code.placement.iter().map(|d| (*d, part)).collect());
        }
        Ok(self
            .holders(ns, ino)?
            .into_iter()
            .map(|d| (d.0, size))
            .collect())
    }

    /// Empties the copies of `ino` (evicted: `TierEvict` is recorded, so nothing reads them
    /// again) on every data server, after fencing the file so a handle minted before cannot
    /// read the holes. Fails if a mirror could not be cut; the file stays evicted and its
    /// copies named by its records (its restore overwrites them).
    pub(crate) async fn drop_evicted(&self, ns: &Namespace, ino: u64) -> NfsResult<()> {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
        if self.reduced(ns, ino)?.is_some() {
            let freed = self.drop_cold_segments(ns, ino).await?;
            let mut f = self.freed();
            for (ds, n) in freed {
                f.note(DsId(ds), n);
            }
            return Ok(());
        }
        let size = ns.getattr(ino)?.size;
        let holders = self.holders_of(ns, ino, size)?;
        self.fence_quietly(ino);
        if let Some(code) = ns.stripes(ino)?.filter(|c| c.is_encoded()) {
            ns.execute(Command::SetMirrors {
                ino,
                chunk: FILE_RECORD,
                mirrors: Vec::new(),
            })
            .await?;
            match self.drop_shards(ino, &code).await {
                Ok(()) => {
                    let _ = ns
                        .execute(Command::ShardsDropped {
                            ino,
                            epoch: code.epoch,
                        })
                        .await;
                    let mut f = self.freed();
                    for (ds, n) in &holders {
                        f.note(DsId(*ds), *n);
                    }
                }
                Err(e) => tracing::debug!(ino, "shards left for the encoder's pass: {e:?}"),
            }
            return Ok(());
        }
        let mut first_err = None;
        for (ds, n) in holders {
            let ds = DsId(ds);
            if self.written_off(ds) {
                continue;
            }
            match self.set_size_on(ino, ds, 0).await {
                Ok(()) => self.freed().note(ds, n),
                Err(e) => {
                    tracing::warn!(ino, ds = %ds, "emptying an evicted file's mirror failed: {e:?}");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_freed_count_until_the_data_server_measures_again() {
        let mut f = Freed::default();
        let ds = DsId(1);
        assert_eq!(f.apply(ds, 1000), 1000);
        f.note(ds, 300);
        assert_eq!(f.apply(ds, 1000), 700);
        f.note(ds, 800);
        assert_eq!(f.apply(ds, 1000), 0);
        // A new measurement includes what was freed.
        assert_eq!(f.apply(ds, 400), 400);
        // A data server never measured is not noted.
        f.note(DsId(2), 5);
        assert_eq!(f.apply(DsId(2), 10), 10);
    }
}
