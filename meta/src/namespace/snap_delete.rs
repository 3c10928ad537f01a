//! Deleting a snapshot (issue 48; `docs/plans/snapshots.md` §1.6): `delete_snapshot` marks
//! shard 0's record `Deleting` (`SnapDelete`); the rest is a background pass
//! (`merge_deleted`, run with the snapshot recovery on the shards this node leads) that on
//! each shard retires the cut (`SnapRetire`: no view of it any more, no new pre-image for
//! it), merges its pre-images into the next older live cut or drops them (`SnapMerge`, in
//! batches of `MERGE_BATCH` keys), and forgets the cut once none is left (`SnapForget`);
//! shard 0's leader then forgets the record once no shard has the cut (`SnapForgetRecord`).
//!
//! Every step is idempotent and reads only replicated state (the record, the shard's cuts
//! and its pre-images), so a crash or a change of leader at any point leaves the next
//! leader's pass to carry on where the last one stopped. What another snapshot shows never
//! changes: a merge moves a pre-image only to where it already answered the same value
//! (`apply::snap::merge` says why), whatever the order in which deleted snapshots merge.
//!
//! Data: a snapshot holds no data images yet (plan step 6), so a deletion frees no objects.
//!
//! Tests: `tests::snap_delete`.

use std::sync::atomic::Ordering;

use meta_core::snap::{PreKey, SnapId, SnapState};

use super::{Command, FsError, Namespace, ShardId, Time};

/// Most pre-images one `SnapMerge` takes (the plan's `max`): it bounds the work of one apply
/// and what one command leaves for the next checkpoint (the command itself is a few bytes).
const MERGE_BATCH: u32 = 4096;
/// Most `SnapMerge`s one pass proposes on one shard, so the pass, which shares its task with
/// the create recovery, comes round again within about `SNAP_RECOVER_EVERY`; a big snapshot
/// merges over several passes.
const MERGES_PER_PASS: usize = 8;
/// How many times `delete_snapshot` looks a name up again after the record it found was
/// aborted under it (a create that tries again: each attempt gets a new id).
const DELETE_TRIES: usize = 16;

impl Namespace {
    /// Deletes snapshot `name` (as `list_snapshots` names it): its views go at once, its
    /// pre-images in the background (the module comment), after which its record, and with
    /// it the name, goes. Returns its id. `NotFound` if no snapshot has the name; `Busy` if it
    /// is still being made after `BUSY_WAIT`; being deleted already: nothing changes.
    pub async fn delete_snapshot(&self, name: &[u8]) -> Result<SnapId, FsError> {
        // A create under way may give up the id found here (`Busy` or `Aborted`: it tries
        // again under a new one), and the delete then meets an aborted record (`Invalid`):
        // look the name up again, a bounded number of times.
        let mut tries = 0;
        loop {
            let records = self.list_snapshots().await?;
            let snap = (records.into_iter())
                .filter(|(_, r)| r.name == name && !matches!(r.state, SnapState::Aborted { .. }))
                .map(|(id, _)| id)
                .next_back()
                .ok_or(FsError::NotFound)?;
            match self.delete_snapshot_id(snap).await {
                Err(FsError::Invalid) if tries < DELETE_TRIES => tries += 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(snap),
            }
        }
    }

    /// `delete_snapshot` by id (`NotFound`: no record; `Invalid`: it was aborted).
    pub async fn delete_snapshot_id(&self, snap: SnapId) -> Result<(), FsError> {
        // `propose` retries `Busy`: a snapshot being made is deleted once it is ready.
        let step = Command::SnapDelete {
            snap,
            time: Time::now(),
        };
        self.propose(&step).await?;
        tracing::info!(
            snap,
            "snapshot deleted; its pre-images merge in the background"
        );
        Ok(())
    }

    /// One pass of the merge of deleted snapshots (the module comment) over the shards this
    /// node leads, then, on shard 0's leader, the records whose cuts are all gone.
    pub(super) async fn merge_deleted(&self) {
        if !self.inner.merge_snaps {
            return;
        }
        // This replica's registry: a record goes from `Deleting` only to gone, so one seen
        // `Deleting` here is; one this replica has not seen yet waits for a later pass.
        let deleting: Vec<SnapId> = match self.inner.cores.get(&0).map(|c| c.live.read()) {
            Some(Ok(l)) => (l.registry.iter())
                .filter(|(_, r)| matches!(r.state, SnapState::Deleting { .. }))
                .map(|(id, _)| *id)
                .collect(),
            _ => return,
        };
        if deleting.is_empty() {
            return;
        }
        for (sid, core) in &self.inner.cores {
            if !core.leader.load(Ordering::Acquire) {
                continue;
            }
            let shard = ShardId(*sid);
            let Ok(cuts) = core.live.read().map(|l| {
                (l.snaps.cuts.iter())
                    .map(|(s, c)| (*s, c.retired))
                    .collect::<Vec<_>>()
            }) else {
                continue;
            };
            // Only a deleted snapshot's cut: a retired cut is one, but the record says so
            // for every shard, and a cut retired by hand (tests of the storage) stays put.
            for (snap, retired) in cuts {
                if !deleting.contains(&snap) {
                    continue;
                }
                if !retired {
                    let step = Command::SnapRetire { shard, snap };
                    if let Err(e) = self.propose_on(shard, &step).await {
                        tracing::debug!(%shard, snap, "not retired: {e}");
                        continue;
                    }
                }
                self.merge_on(shard, snap).await;
            }
        }
        let led0 = (self.inner.cores.get(&0)).is_some_and(|c| c.leader.load(Ordering::Acquire));
        if led0 {
            for snap in deleting {
                if self.cut_nowhere(snap).await {
                    tracing::info!(snap, "snapshot merged away on every shard");
                    let step = Command::SnapForgetRecord { snap };
                    if let Err(e) = self.propose_on(ShardId(0), &step).await {
                        tracing::debug!(snap, "record not forgotten: {e}");
                    }
                }
            }
        }
    }

    /// Merges the retired `snap`'s pre-images on `shard` (up to `MERGES_PER_PASS` batches),
    /// and forgets the cut once none is left.
    async fn merge_on(&self, shard: ShardId, snap: SnapId) {
        for _ in 0..MERGES_PER_PASS {
            // `propose_on` answers once this replica applied the step, so it shows what is left.
            if !self.has_pre_images(shard, snap) {
                let step = Command::SnapForget { shard, snap };
                if let Err(e) = self.propose_on(shard, &step).await {
                    tracing::debug!(%shard, snap, "cut not forgotten: {e}");
                }
                return;
            }
            let step = Command::SnapMerge {
                shard,
                snap,
                max: MERGE_BATCH,
            };
            if let Err(e) = self.propose_on(shard, &step).await {
                tracing::debug!(%shard, snap, "merge step: {e}");
                return;
            }
        }
    }

    /// Whether this replica of `shard` holds a pre-image at `snap` (unknown: yes).
    fn has_pre_images(&self, shard: ShardId, snap: SnapId) -> bool {
        self.inner.cores.get(&shard.0).is_none_or(|c| {
            c.live.read().map_or(true, |l| {
                (l.pre_by_snap.range((snap, PreKey::Inode(0))..).next())
                    .is_some_and(|(s, _)| *s == snap)
            })
        })
    }

    /// Whether no shard has cut `snap` any more: first this node's replicas as they are (a
    /// cut seen is a cut: one never comes back once forgotten), then each brought up to date.
    async fn cut_nowhere(&self, snap: SnapId) -> bool {
        let has = |core: &crate::storage::shard::ShardCore| {
            core.live
                .read()
                .map_or(true, |l| l.snaps.cuts.contains_key(&snap))
        };
        if self.inner.cores.values().any(|c| has(c)) {
            return false;
        }
        for (sid, core) in &self.inner.cores {
            if self.barrier(ShardId(*sid)).await.is_err() || has(core) {
                return false;
            }
        }
        true
    }
}
