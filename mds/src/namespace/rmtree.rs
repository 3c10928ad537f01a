//! Lazy removal of a whole tree: the name goes at once, the contents in the background.
//!
//! `Command::Detach` takes a directory out of the tree with its entries: it becomes an orphan
//! directory (nlink 0, in the orphans table like an unlinked file), which gets no new names.
//! The reclaimer, on each shard's leader, empties the orphan directories of the shards it
//! leads a bounded batch at a time: a subdirectory is detached the same way (it becomes an
//! orphan directory of its own shard, so the recursion is in the data, not on a call stack,
//! and a tree deeper than any stack goes the same way), anything else is unlinked with the
//! ordinary `Command::Unlink` (a regular file becomes an ordinary orphan whose data the
//! reaper reclaims, or stays while open); an orphan directory with no entries left is
//! forgotten (`Command::Forget`). Each step is one committed command, and what is left is
//! derived from the replicated state (`Snapshot::detached`), so a new leader or a restart
//! (after a kill -9 at any moment) carries on where the last one stopped.
//!
//! Pacing: a batch is at most `BATCH` entries; its unlinks are proposed together, so the
//! shard's proposer puts them in one log entry (one fdatasync), and the reclaimer pauses
//! `PAUSE` between batches, so client commands queued meanwhile go in the next entries rather
//! than behind a million unlinks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Command, FsError, Namespace, Outcome, ShardId, Time};

/// Most entries one pass takes from the orphan directories of this node's shards.
pub(super) const BATCH: usize = 256;
/// Between two passes that found work: room for client commands.
pub(super) const PAUSE: Duration = Duration::from_millis(5);
/// Between two looks when there was nothing to do (a detach wakes it at once; this finds the
/// work a restart or a new leadership brings).
const IDLE: Duration = Duration::from_secs(1);

/// What one pass does in one orphan directory.
struct Work {
    dir: u64,
    /// (name, inode, is a directory) of up to `BATCH` of its entries; empty: forget it.
    entries: Vec<(Vec<u8>, u64, bool)>,
}

impl Namespace {
    /// Detaches `parent/name` (which must be the directory `child`) with its contents: the
    /// name is gone when this returns, the contents are removed in the background.
    pub async fn detach(&self, parent: u64, name: &[u8], child: u64) -> Result<Outcome, FsError> {
        let out = self
            .execute(Command::Detach {
                parent,
                name: name.to_vec(),
                child,
                time: Time::now(),
            })
            .await?;
        self.inner.effects.1.notify_one();
        Ok(out)
    }

    /// Starts the reclaimer of orphan directories on the shards this node leads.
    pub(super) fn start_reclaimer(&self) {
        if !self.inner.reclaim {
            return;
        }
        let ns = Arc::downgrade(&self.inner);
        let wake = self.inner.effects.clone();
        let task = tokio::spawn(async move {
            loop {
                let did = match ns.upgrade() {
                    Some(inner) => Namespace { inner }.reclaim_pass().await,
                    None => return,
                };
                if did > 0 {
                    tokio::time::sleep(PAUSE).await;
                } else {
                    let _ = tokio::time::timeout(IDLE, wake.1.notified()).await;
                }
            }
        });
        if let Ok(mut t) = self.inner.leadership.lock() {
            t.push(task);
        }
    }

    /// One batch over the orphan directories of the shards this node leads; returns the
    /// commands it proposed (0: nothing to do).
    pub(super) async fn reclaim_pass(&self) -> usize {
        let work = self.reclaim_work();
        let mut done = 0;
        for w in work {
            done += self.reclaim_dir(w).await;
        }
        done
    }

    /// Up to `BATCH` entries of the orphan directories of the shards this node leads.
    fn reclaim_work(&self) -> Vec<Work> {
        let mut work = Vec::new();
        let mut budget = BATCH;
        for core in self.inner.cores.values() {
            if budget == 0 {
                break;
            }
            if !core.leader.load(Ordering::Acquire) {
                continue;
            }
            let Ok(st) = core.live.read() else { continue };
            for &dir in &st.orphan_dirs {
                if budget == 0 {
                    break;
                }
                let names: Vec<(Vec<u8>, u64)> = st
                    .dirindex
                    .range((dir, 0)..=(dir, u64::MAX))
                    .take(budget)
                    .filter_map(|(_, name)| {
                        let (ino, _) = st.dirents.get(&(dir, name.clone()))?;
                        Some((name.clone(), *ino))
                    })
                    .collect();
                // An empty directory still costs its `Forget`.
                budget = budget.saturating_sub(names.len().max(1));
                work.push(Work {
                    dir,
                    entries: names.into_iter().map(|(n, i)| (n, i, false)).collect(),
                });
            }
        }
        // What each entry is: its inode may live on another shard (a directory placed there,
        // a hard link), read from this node's replica of it (every node holds every shard).
        if let Ok(snap) = self.snapshot() {
            for w in &mut work {
                for (_, ino, is_dir) in &mut w.entries {
                    *is_dir = snap.getattr(*ino).is_ok_and(|i| i.kind.is_dir());
                }
            }
        }
        work
    }

    /// Carries out one directory's share of a pass; returns the commands proposed.
    async fn reclaim_dir(&self, w: Work) -> usize {
        let dir = w.dir;
        if w.entries.is_empty() {
            match self.execute(Command::Forget { ino: dir }).await {
                Ok(_) => tracing::debug!(dir, "removed tree: its last directory is gone"),
                Err(e) => note(dir, "forget", &e),
            }
            return 1;
        }
        let time = Time::now();
        let n = w.entries.len();
        let (dirs, others): (Vec<_>, Vec<_>) = w.entries.into_iter().partition(|e| e.2);
        // The unlinks together: one log entry for the batch (group commit).
        let unlinks = others.into_iter().map(|(name, child, _)| {
            let cmd = Command::Unlink {
                parent: dir,
                name,
                child,
                time,
            };
            async move { (child, self.execute(cmd).await) }
        });
        for (child, r) in futures::future::join_all(unlinks).await {
            if let Err(e) = r {
                note(child, "unlink", &e);
            }
        }
        // Subdirectories one at a time: one on another shard is a transaction holding this
        // directory, which would make the others wait.
        for (name, child, _) in dirs {
            let cmd = Command::Detach {
                parent: dir,
                name,
                child,
                time,
            };
            if let Err(e) = self.execute(cmd).await {
                note(child, "detach", &e);
            }
        }
        tracing::trace!(dir, shard = %ShardId::of_ino(dir), entries = n, "reclaimed a batch");
        n
    }
}

/// A step that failed is taken again by a later pass, from the state as it is then: a name
/// that changed meanwhile (`NotFound`, `Changed`) is only noted.
fn note(ino: u64, what: &str, e: &FsError) {
    match e {
        FsError::NotFound | FsError::Changed | FsError::Stale(_) => {
            tracing::debug!(ino, "reclaimer: {what}: {e}")
        }
        _ => tracing::warn!(ino, "reclaimer: {what} failed, will retry: {e}"),
    }
}
