//! The passes that finish what data reduction (issue 46) leaves to do, run with the encoder's:
//! a reduce a crash left under way is given up; the mirror copies a finished reduce made
//! redundant are deleted; a retired reduce's referrers are dropped; referrers whose reduce is
//! gone (a crash between their `AddReferrer` and the finish) are found and dropped; segments
//! with no referrer left (`Dying`) have their shards deleted, then their records. Each works
//! on the files and segments of the shards this node leads, and is safe to repeat.
use std::collections::HashMap;

use layout::DsId;
use meta::namespace::reduce_index::{self as index, Referrer};
use meta::namespace::reducing::{FileReduce, ReduceStatus};
use meta::namespace::{Command, Namespace, ShardId};

use super::segments::SegmentPlace;
use super::Cluster;
use crate::error::NfsResult;

/// Referrer rows the reclaim pass checks per shard per pass.
const RECLAIM_BATCH: usize = 256;

impl Cluster {
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
        self.free_dropped(ns).await;
        self.sweep_cold_segments(ns).await;
    }

    /// `clean_reduces` for one file the caller has claimed.
    pub(super) async fn clean_reduce_claimed(
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
            for id in r.reduced().map(|d| d.segments()).unwrap_or_default() {
                ns.execute(Command::DropReferrer {
                    shard: ns.segment_shard(&id),
                    segment: id,
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
        'dying: for d in ns.dying_segments().unwrap_or_default() {
            // A data server that is down (and not written off) first comes back: asking it
            // now only fails.
            let waiting = d
                .placement
                .iter()
                .chain(&d.dropping)
                .any(|s| !self.registry.is_up(DsId(*s)) && !self.written_off(DsId(*s)));
            if ns.leader_of(d.shard) != Some(ns.node_id()) || waiting || self.is_warming(&d.id) {
                continue;
            }
            // Its shards on flash, and those of a flash drop a crash left unfinished.
            for placement in [&d.placement, &d.dropping] {
                if placement.is_empty() {
                    continue;
                }
                let at = SegmentPlace::new(&d.id, d.origin, placement.clone(), d.stored_len);
                if let Err(e) = self.drop_segment(&at).await {
                    tracing::debug!(segment = ?d.id, "segment shards left for the next pass: {e:?}");
                    continue 'dying;
                }
            }
            // Its object in the bucket, if an upload of it ever began: the record is the only
            // thing that names it (`segment_tier`). With no bucket configured now, the record
            // waits (and says so).
            if let Err(e) = self.delete_segment_object(&d).await {
                tracing::debug!(segment = ?d.id, "segment object left for the next pass: {e:?}");
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
}
