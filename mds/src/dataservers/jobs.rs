//! What the jobs that replace a file's mirrors (erasure coding, `encode`; data reduction,
//! `reduce`) share: the geometry a number of data servers allows, the checks before a job
//! reads the file, the hand-over after it finished, and deleting what it made redundant
//! (mirror copies, a shard set).
use std::time::Duration;

use layout::DsId;
use meta::namespace::{Inode, Namespace, Time};
use proto::shard::DropArgs;

use super::holds::Claim;
use super::Cluster;
use crate::error::{NfsError, NfsResult};

/// A DROP of one shard set on one data server.
const DROP_CALL: Duration = Duration::from_secs(30);

/// (k, m) for `n` data servers: 4+2 from six, 2+1 from three (docs/EC.md); fewer cannot code.
pub fn geometry_for(n: usize) -> Option<(u8, u8)> {
    match n {
        6.. => Some((4, 2)),
        3..=5 => Some((2, 1)),
        _ => None,
    }
}

impl Cluster {
    /// The first steps of a job that replaces a file's mirrors (an encode, a reduce): writers'
    /// handles go stale before the bytes are read (as for a repair's copy), then the file must
    /// still be unchanged since `before`, held for writing by nobody, and linked. The file's
    /// attributes then, or `None` if it is not due after all.
    pub(crate) async fn fenced_and_quiet(
        &self,
        ns: &Namespace,
        ino: u64,
        claim: &Claim<'_>,
        before: Time,
        in_use: &(dyn Fn(u64) -> bool + Sync),
    ) -> NfsResult<Option<Inode>> {
        self.fence(ino);
        tokio::time::sleep(self.fence_settle()).await;
        let i = ns.getattr(ino)?;
        let quiet = i.mtime <= before
            && i.ctime <= before
            && !in_use(ino)
            && !claim.in_use_elsewhere()
            && i.nlink > 0;
        Ok(quiet.then_some(i))
    }

    /// After such a job finished: readers' mirrored layouts go, and their handles on every
    /// node; true once the mirror copies may be deleted (false: left to the next pass, a node
    /// did not fence again).
    pub(crate) async fn mirrors_retired(
        &self,
        ino: u64,
        claim: &Claim<'_>,
        recall: &(dyn Fn(u64) + Sync),
    ) -> bool {
        recall(ino);
        self.fence(ino);
        if let Err(e) = claim.refence().await {
            tracing::debug!(ino, "mirror copies left for the next pass: {e:?}");
            return false;
        }
        tokio::time::sleep(self.fence_settle()).await;
        true
    }

    /// Deletes the file's copies on `copies` (mirror copies a job made redundant); one on a
    /// data server written off counts as deleted.
    pub(crate) async fn delete_copies(&self, ino: u64, copies: &[u64]) -> NfsResult<()> {
        for ds in copies {
            if !self.written_off(DsId(*ds)) {
                self.set_size_on(ino, DsId(*ds), 0).await?;
            }
        }
        Ok(())
    }

    /// Deletes shard set `(file, epoch)` (a file's encoding, or a segment's shards) on every
    /// data server of `placement`; fails if one could not (the others are done anyway).
    pub(crate) async fn drop_shard_set(
        &self,
        file: u64,
        epoch: u64,
        placement: &[u64],
    ) -> NfsResult<()> {
        let mut failed = None;
        for ds in placement.iter().filter(|d| !self.written_off(DsId(**d))) {
            let r = match self.shard_client(DsId(*ds), DROP_CALL).await {
                Ok(c) => {
                    let r = c
                        .drop_shards(&self.cfg.secret.sign_shard(DropArgs {
                            to: *ds,
                            file,
                            epoch,
                            mac: [0; 32],
                        }))
                        .await;
                    c.close();
                    r.map_err(|e| {
                        tracing::warn!(file, epoch, ds, "shard DROP failed: {e}");
                        NfsError::Io
                    })
                }
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
